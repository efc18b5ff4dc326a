"""Tesseract via pytesseract: the only module that runs Tesseract.

Tesseract cannot find speech bubbles on a manga page, so line detection comes
from the RapidOCR detector (through `rapidocr_engine`, detection only) and the
layout step; Tesseract then reads each block crop with the language model that
fits it: ``jpn_vert`` for vertical blocks, ``jpn`` for horizontal Japanese,
``eng`` for English. One Tesseract process reads all crops of one page that
share a model (a list file of crop images), so process start is paid once per
model per page, not once per bubble.

Failure policy:

* tesseract binary missing -> `EngineUnavailable` naming ``tesseract-ocr``;
  a language missing -> `EngineUnavailable` naming ``tesseract-ocr-jpn``,
  ``tesseract-ocr-jpn-vert`` or ``tesseract-ocr-eng`` (permanent).
* a run longer than ``timeout`` seconds -> the process is killed,
  `EngineTimeout` (transient).
* a non-zero exit -> `EngineError` with Tesseract's message (transient).

Example::

    >>> from pipelines.engines.tesseract_engine import DEBIAN_PACKAGES
    >>> DEBIAN_PACKAGES["jpn_vert"]
    'tesseract-ocr-jpn-vert'
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from coordination.portable import child_process_options
from pipelines.engines.base import BlockRequest, Line
from pipelines.exceptions import EngineError, EngineTimeout, EngineUnavailable

DEBIAN_PACKAGES = {
    "jpn": "tesseract-ocr-jpn",
    "jpn_vert": "tesseract-ocr-jpn-vert",
    "eng": "tesseract-ocr-eng",
}
DEFAULT_TIMEOUT = 120.0
PAD = 12
MIN_TEXT_PX = 40  # crops whose text is smaller are scaled up to about this size


def _pytesseract():
    try:
        import pytesseract
    except ImportError:
        raise EngineUnavailable("pytesseract is not installed; run: pip install -r requirements.txt") from None
    _out_of_terminal_signals(pytesseract.pytesseract)
    return pytesseract


INSTALL_HINT = ("Windows: the installer from github.com/UB-Mannheim/tesseract/wiki (tick Japanese, Japanese "
                "vertical), then add its folder to PATH; macOS: brew install tesseract tesseract-lang; Debian/Ubuntu: "
                "sudo apt-get install tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert tesseract-ocr-eng")


def _out_of_terminal_signals(module) -> None:
    """Start tesseract processes apart from the terminal's process group, as the worker starts git
    (`coordination.runtime.signals`): a Ctrl+C meant for the worker must not kill the page being read.
    pytesseract builds the arguments of every OCR run's Popen in its `subprocess_args()`; this
    extends them."""
    original = module.subprocess_args
    if getattr(original, "wms_own_group", False):
        return

    def subprocess_args(include_stdout=True):
        kwargs = original(include_stdout)
        kwargs.update(child_process_options())
        return kwargs

    subprocess_args.wms_own_group = True
    module.subprocess_args = subprocess_args


class TesseractEngine:
    name = "tesseract"
    reads_lines = False

    def __init__(self, *, threads: int | None = None, timeout: float = DEFAULT_TIMEOUT, detector=None,
                 precision: str | None = None):
        self.timeout = timeout
        pt = self._pt = _pytesseract()
        try:
            self.version = f"tesseract {pt.get_tesseract_version()}"
            self.languages = set(pt.get_languages(config=""))
        except pt.TesseractNotFoundError:
            raise EngineUnavailable(
                f"the tesseract program is not installed; install it ({INSTALL_HINT})"
            ) from None
        except Exception as exc:
            raise EngineUnavailable(f"tesseract does not run: {exc}") from None
        # Tesseract's own OpenMP threads fight with parallel pages on 2 cores.
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        if detector is None:
            from pipelines.engines import onnxruntime_available

            if onnxruntime_available():
                from pipelines.engines.rapidocr_engine import RapidOcrEngine

                detector = RapidOcrEngine(threads=threads, timeout=timeout, precision=precision)
            else:  # no ONNX Runtime for this platform: Tesseract finds the lines too
                detector = TesseractLineDetector(self, timeout)
        self._detector = detector
        if getattr(detector, "precision", None):
            self.version += f" (lines by RapidOCR det {detector.precision})"
        elif isinstance(detector, TesseractLineDetector):
            self.version += " (lines by Tesseract's own layout: no ONNX Runtime)"

    def require(self, lang: str) -> None:
        if lang not in self.languages:
            pkg = DEBIAN_PACKAGES.get(lang, f"tesseract-ocr-{lang.replace('_', '-')}")
            raise EngineUnavailable(
                f"tesseract language {lang!r} is not installed; install the Debian package {pkg} (apt-get install {pkg}); "
                f"elsewhere: {INSTALL_HINT}"
            )

    def read_page(self, image: np.ndarray) -> list[Line]:
        return self._detector.detect(image)

    @property
    def last_timings(self) -> dict[str, float]:
        """The line detector's seconds on the last page (``read_blocks`` is timed by the pipeline)."""
        return dict(getattr(self._detector, "last_timings", {}) or {})

    def read_blocks(self, image: np.ndarray, blocks: list[BlockRequest], workdir: str | None = None) -> list[list[str]]:
        groups: dict[tuple[str, int], list[int]] = {}
        for i, block in enumerate(blocks):
            model = "jpn_vert" if block.vertical and block.lang == "jpn" else block.lang
            psm = 5 if model == "jpn_vert" else 6
            groups.setdefault((model, psm), []).append(i)
        out: list[list[str]] = [[] for _ in blocks]
        if not blocks:
            return out
        with tempfile.TemporaryDirectory(dir=workdir, prefix="tess-") as tmp:
            for (model, psm), idxs in groups.items():
                self.require(model)
                paths = []
                for i in idxs:
                    p = Path(tmp) / f"{model}-{i:04d}.png"
                    _crop(image, blocks[i]).save(p)
                    paths.append(str(p))
                listing = Path(tmp) / f"{model}-{psm}.txt"
                listing.write_text("\n".join(paths) + "\n", encoding="utf-8")
                texts = self._run(str(listing), model, psm, len(paths))
                for i, text in zip(idxs, texts):
                    out[i] = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return out

    def _run(self, listing: str, lang: str, psm: int, count: int) -> list[str]:
        pt = self._pt
        try:
            raw = pt.image_to_string(listing, lang=lang, config=f"--psm {psm}", timeout=self.timeout)
        except pt.TesseractNotFoundError:
            raise EngineUnavailable("the tesseract program disappeared; install the Debian package tesseract-ocr") from None
        except RuntimeError as exc:
            if "timeout" in str(exc).lower():
                raise EngineTimeout(
                    f"tesseract ({lang}) took longer than {self.timeout:.0f} s on {count} crops and was stopped"
                ) from None
            raise EngineError(f"tesseract ({lang}) failed: {exc}") from exc
        except pt.TesseractError as exc:
            raise EngineError(f"tesseract ({lang}) failed with status {exc.status}: {exc.message}") from exc
        pages = raw.split("\f")
        # Tesseract ends every page with a form feed, so the split leaves one trailing piece.
        if len(pages) < count:
            raise EngineError(f"tesseract ({lang}) returned {len(pages)} pages of text for {count} crops")
        return pages[:count]

    def read_whole_page(self, image: np.ndarray, lang: str) -> list[str]:
        """Tesseract alone on the whole page (its own layout analysis): the bench's baseline."""
        self.require(lang)
        with tempfile.TemporaryDirectory(prefix="tess-") as tmp:
            p = Path(tmp) / "page.png"
            Image.fromarray(image).convert("L").save(p)
            text = self._run(str(p), lang, 3, 1)[0]
        return [ln.strip() for ln in text.splitlines() if ln.strip()]

    def close(self) -> None:
        self._detector.close()


class TesseractLineDetector:
    """Line boxes from Tesseract's own page layout analysis.

    The detector where ONNX Runtime cannot be installed (see pyproject.toml): it finds
    fewer bubbles than RapidOCR's detector, vertical Japanese above all, but the worker
    still reads every chapter."""

    precision = None

    def __init__(self, engine: "TesseractEngine", timeout: float = DEFAULT_TIMEOUT):
        self._engine = engine
        self.timeout = timeout

    def detect(self, image: np.ndarray) -> list[Line]:
        pt = self._engine._pt
        # jpn_vert with sparse-text layout (--psm 12) found the lines of vertical Japanese and of
        # English best of jpn/jpn_vert/eng x psm 3/11/12 on synthetic pages (README, "Where it installs")
        lang = next((m for m in ("jpn_vert", "jpn", "eng") if m in self._engine.languages), "eng")
        self._engine.require(lang)
        try:
            data = pt.image_to_data(Image.fromarray(image).convert("L"), lang=lang, config="--psm 12",
                                    output_type=pt.Output.DICT, timeout=self.timeout)
        except RuntimeError as exc:
            if "timeout" in str(exc).lower():
                raise EngineTimeout(f"tesseract took longer than {self.timeout:.0f} s to find the lines and "
                                    "was stopped") from None
            raise EngineError(f"tesseract failed to find the lines: {exc}") from exc
        except pt.TesseractError as exc:
            raise EngineError(f"tesseract failed to find the lines (status {exc.status}): {exc.message}") from exc
        boxes: dict[tuple, list[float]] = {}
        for i, text in enumerate(data["text"]):
            if data["level"][i] != 5 or not str(text).strip() or float(data["conf"][i]) < 0:
                continue
            key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
            x1, y1 = data["left"][i], data["top"][i]
            x2, y2 = x1 + data["width"][i], y1 + data["height"][i]
            box = boxes.setdefault(key, [x1, y1, x2, y2])
            box[:] = [min(box[0], x1), min(box[1], y1), max(box[2], x2), max(box[3], y2)]
        return [Line([[float(x1), float(y1)], [float(x2), float(y1)], [float(x2), float(y2)], [float(x1), float(y2)]])
                for x1, y1, x2, y2 in boxes.values()]

    def close(self) -> None:
        pass


def _crop(image: np.ndarray, block: BlockRequest) -> Image.Image:
    h, w = image.shape[:2]
    x1, y1, x2, y2 = block.box
    x1, y1 = max(0, int(x1) - 2), max(0, int(y1) - 2)
    x2, y2 = min(w, int(x2) + 2), min(h, int(y2) + 2)
    crop = Image.fromarray(image[y1:y2, x1:x2]).convert("L")
    sizes = [min(ln.rect[2] - ln.rect[0], ln.rect[3] - ln.rect[1]) for ln in block.lines] or [MIN_TEXT_PX]
    text_px = float(np.median(sizes))
    if 0 < text_px < MIN_TEXT_PX:
        f = MIN_TEXT_PX / text_px
        crop = crop.resize((max(1, round(crop.width * f)), max(1, round(crop.height * f))), Image.LANCZOS)
    canvas = Image.new("L", (crop.width + 2 * PAD, crop.height + 2 * PAD), 255)
    canvas.paste(crop, (PAD, PAD))
    return canvas
