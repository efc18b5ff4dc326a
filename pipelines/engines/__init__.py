"""OCR engines behind one small interface (see `base.Engine`).

Exactly one module talks to each engine: `rapidocr_engine` (default) and
`tesseract_engine`. `get_engine(name)` builds one, lazily importing it.
"""
from __future__ import annotations

from pipelines.engines.base import Engine, Line
from pipelines.exceptions import OrderFormatError

ENGINES = ("rapidocr", "tesseract")


def get_engine(name: str = "rapidocr", *, threads: int | None = None, timeout: float | None = None, **kw) -> Engine:
    """Build the engine called ``name`` ("rapidocr" or "tesseract")."""
    if threads is not None:
        kw["threads"] = threads
    if timeout is not None:
        kw["timeout"] = timeout
    if name == "rapidocr":
        from pipelines.engines.rapidocr_engine import RapidOcrEngine

        return RapidOcrEngine(**kw)
    if name == "tesseract":
        from pipelines.engines.tesseract_engine import TesseractEngine

        return TesseractEngine(**kw)
    raise OrderFormatError(f"unknown OCR engine {name!r}; choose one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Engine", "Line", "get_engine"]
