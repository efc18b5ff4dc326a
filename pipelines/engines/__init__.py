"""OCR engines behind one small interface (see `base.Engine`).

Exactly one module talks to each engine: `rapidocr_engine` (default) and
`tesseract_engine`. `get_engine(name)` builds one, lazily importing it.
"""
from __future__ import annotations

import logging

from pipelines.engines.base import Engine, Line
from pipelines.exceptions import OrderFormatError

ENGINES = ("rapidocr", "tesseract")
_warned: set = set()


def onnxruntime_available() -> bool:
    """Can RapidOCR's runtime be imported? (pyproject.toml leaves it out where it has no wheel.)"""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logging.getLogger("wms.ocr").warning(message)


def get_engine(name: str = "rapidocr", *, threads: int | None = None, timeout: float | None = None, **kw) -> Engine:
    """Build the engine called ``name`` ("rapidocr" or "tesseract")."""
    if threads is not None:
        kw["threads"] = threads
    if timeout is not None:
        kw["timeout"] = timeout
    if name == "rapidocr" and not onnxruntime_available():
        _warn_once("ONNX Runtime is not installed (it has no wheel for this Python on this platform): "
                   "RapidOCR cannot run, so pages are read with Tesseract instead")
        name = "tesseract"
    if name == "rapidocr":
        from pipelines.engines.rapidocr_engine import RapidOcrEngine

        return RapidOcrEngine(**kw)
    if name == "tesseract":
        from pipelines.engines.tesseract_engine import TesseractEngine

        return TesseractEngine(**kw)
    raise OrderFormatError(f"unknown OCR engine {name!r}; choose one of {', '.join(ENGINES)}")


def onnxruntime_missing_message() -> str:
    """What `--check` says where onnxruntime cannot be installed (no wheel for this Python/platform)."""
    import platform
    import sys

    return (f"onnxruntime is not installed (it has no wheel for Python {sys.version_info[0]}.{sys.version_info[1]} "
            f"on {platform.system()} {platform.machine()}): RapidOCR cannot run here, so every chapter is read with "
            "Tesseract alone, which finds fewer lines (vertical Japanese above all); results say engine \"tesseract\"")


__all__ = ["ENGINES", "Engine", "Line", "get_engine", "onnxruntime_available"]
