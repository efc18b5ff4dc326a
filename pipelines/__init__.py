"""Order processors: what a worker does with an order once it holds the claim.

`default_registry()` is what the worker uses: `simulate` for load tests and the
demo, `ocr_chapter` for manga pages. Processors are imported lazily so that a
worker that only runs `simulate` orders never loads an OCR engine.
"""
from __future__ import annotations

from coordination.runtime.processors import KindCheck, ProcessorRegistry


def _load_simulate():
    from pipelines.simulate import process

    return process


def _load_ocr_chapter():
    from pipelines.ocr_chapter import make_processor

    return make_processor()


def _check_ocr_chapter() -> list[KindCheck]:
    """Load each OCR engine for real (Tesseract with its languages), for `--check`. RapidOCR, the
    default, is required; Tesseract only for chapters published with `--engine tesseract`."""
    from pipelines.engines import ENGINES, get_engine, onnxruntime_available, onnxruntime_missing_message
    from pipelines.exceptions import EngineUnavailable

    checks = []
    detector = None
    ort = onnxruntime_available()
    if not ort:  # no onnxruntime wheel here: Tesseract reads every chapter, so it is the one required
        checks.append(KindCheck("OCR engine rapidocr", False, onnxruntime_missing_message(), False))
    for name in ENGINES if ort else ("tesseract",):
        required = name == "rapidocr" or not ort
        try:
            engine = get_engine(name, threads=1, **({"detector": detector} if name == "tesseract" and detector else {}))
            if name == "rapidocr":
                detector = engine
            for lang in ("jpn", "jpn_vert", "eng") if name == "tesseract" else ():
                engine.require(lang)
            checks.append(KindCheck(f"OCR engine {name}", True, f"loads ({engine.version})", required))
        except EngineUnavailable as exc:
            why = str(exc) if required else f"{exc} (chapters published with --engine tesseract would fail here)"
            checks.append(KindCheck(f"OCR engine {name}", False, why, required))
        except ModuleNotFoundError as exc:
            checks.append(KindCheck(f"OCR engine {name}", False, f"No module named {exc.name!r}: run pip install "
                                    "-r requirements.txt in this folder", required))
    return checks


def default_registry() -> ProcessorRegistry:
    registry = ProcessorRegistry()
    registry.register("simulate", _load_simulate)
    registry.register("ocr_chapter", _load_ocr_chapter, check=_check_ocr_chapter)
    return registry
