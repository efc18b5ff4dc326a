"""Order processors: what a worker does with an order once it holds the claim.

`default_registry()` is what the worker uses: `simulate` for load tests and the
demo, `ocr_chapter` for manga pages. Processors are imported lazily so that a
worker that only runs `simulate` orders never loads an OCR engine.
"""
from __future__ import annotations

from coordination.processors import ProcessorRegistry


def _load_simulate():
    from pipelines.simulate import process

    return process


def _load_ocr_chapter():
    from pipelines.ocr_chapter import make_processor

    return make_processor()


def default_registry() -> ProcessorRegistry:
    registry = ProcessorRegistry()
    registry.register("simulate", _load_simulate)
    registry.register("ocr_chapter", _load_ocr_chapter)
    return registry
