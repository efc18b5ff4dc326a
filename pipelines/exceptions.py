"""Typed errors of the OCR pipeline.

Every error carries a message a person can act on. ``permanent`` says whether
retrying the same order can help: a page that is not an image will never become
one, while a server answering 503 may recover.
"""
from __future__ import annotations


class OcrError(Exception):
    """Base class for errors raised by the OCR library."""

    permanent = True

    def __init__(self, message: str, *, permanent: bool | None = None):
        super().__init__(message)
        if permanent is not None:
            self.permanent = permanent


class PageError(OcrError):
    """One page cannot be fetched, verified or decoded."""

    def __init__(self, page: str, message: str, *, permanent: bool = True):
        super().__init__(f"page {page}: {message}", permanent=permanent)
        self.page = page
        self.reason = message


class OrderFormatError(OcrError):
    """The order itself is malformed (missing pages, unknown engine...)."""


class EngineError(OcrError):
    """The OCR engine failed while reading a page."""

    permanent = False


class EngineUnavailable(EngineError):
    """The engine (or one of its languages) is not installed on this machine."""

    permanent = True


class EngineTimeout(EngineError):
    """The engine did not answer within its time limit."""

    permanent = False
