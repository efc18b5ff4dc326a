"""RapidOCR (PP-OCR models on ONNX Runtime): the only module that imports rapidocr.

Models load from the files shipped inside the installed ``rapidocr`` wheel; the
engine passes their paths explicitly, so RapidOCR never reaches its download
code. Nothing is fetched at run time.

Detection runs on an int8 copy of the detector by default (built by
`pipelines.engines.quantize`, shipped in ``models/``; about 4x faster, same
accuracy on the dev set). ``precision="fp32"`` or ``WMS_OCR_PRECISION=fp32``
uses the float model. When the shipped int8 model is missing, damaged or was
built from another float model than the installed one, the engine logs a
warning and uses the float model: slower, never wrong.

Failure policy:

* rapidocr/onnxruntime missing or a model file missing -> `EngineUnavailable`
  (permanent; reinstall with ``pip install -r requirements.txt``).
* a page takes longer than ``timeout`` seconds -> `EngineTimeout` (transient).
  The stuck inference thread cannot be killed; it is abandoned and later pages
  run on a fresh thread.
* any other exception inside RapidOCR -> `EngineError` (transient).

Example::

    >>> from pipelines.engines.rapidocr_engine import RapidOcrEngine, model_paths
    >>> sorted(model_paths())
    ['det', 'rec']
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipelines.engines import int8_model
from pipelines.engines.base import BlockRequest, Line
from pipelines.exceptions import EngineError, EngineTimeout, EngineUnavailable

DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"
#: Pages are scaled so that the long side is at most this many pixels before
#: detection and recognition (text on a 2400x3400 page stays ~40 px tall).
MAX_SIDE = 1600
DET_SIDE = 1024
#: Recognition pads each batch of line crops (48 px tall) to at least this width. RapidOCR's
#: default, 320, pads a manga column of 3-8 characters to 2-3 times its width: 160 read the
#: dev pages in 0.53 s of recognition a page instead of 0.98, with F1, CER and block recall
#: the same or better on both halves; 128 and 96 lost held-out block recall (0.89).
REC_MIN_WIDTH = 160
DEFAULT_TIMEOUT = 120.0
PRECISIONS = ("int8", "fp32")
INT8_DIR = int8_model.MODELS_DIR

log = logging.getLogger(__name__)


def _package_dir() -> Path:
    try:
        import rapidocr
    except ImportError as exc:
        raise EngineUnavailable(
            f"RapidOCR is not installed ({exc}); run: pip install -r requirements.txt"
        ) from None
    return Path(rapidocr.__file__).resolve().parent


def model_paths() -> dict[str, Path]:
    """Paths of the model files this engine loads (inside the rapidocr package)."""
    models = _package_dir() / "models"
    return {"det": models / DET_MODEL, "rec": models / REC_MODEL}


@lru_cache(maxsize=None)
def _int8_detector(models_dir: Path, source: Path) -> tuple[Path | None, str]:
    """The shipped int8 detector if it was built from ``source``, else (None, why not); checked once."""
    return int8_model.verify(models_dir, source)


def detection_model(precision: str | None = None) -> tuple[Path, str]:
    """Path of the detector to load and its precision ("int8" or "fp32").

    ``precision`` defaults to $WMS_OCR_PRECISION (a value other than int8 or fp32
    there is logged and ignored), then "int8".
    """
    if precision is None:
        precision = (os.environ.get("WMS_OCR_PRECISION") or "int8").strip().lower()
        if precision not in PRECISIONS:
            log.warning("WMS_OCR_PRECISION=%s is not one of %s; using int8", precision, ", ".join(PRECISIONS))
            precision = "int8"
    elif precision not in PRECISIONS:
        raise EngineUnavailable(f"unknown OCR precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    source = model_paths()["det"]
    if precision == "fp32":
        return source, "fp32"
    path, why = _int8_detector(INT8_DIR, source)
    if path is None:
        log.warning("int8 detection model not used: %s; using the float model (slower)", why)
        return source, "fp32"
    return path, "int8"


def engine_version(det_precision: str = "int8") -> str:
    try:
        from importlib.metadata import version

        return f"rapidocr {version('rapidocr')} (PP-OCRv6 small, det {det_precision}, rec fp32)"
    except Exception:
        return "rapidocr (unknown version)"


def _no_busy_waiting() -> None:
    """ONNX Runtime sessions that RapidOCR builds from now on let their idle threads sleep.

    By default the threads of a session spin while they wait for work. With one page on both
    cores (the worker's default) the 30 dev pages took 55-62 s of CPU and 76-106 s with the
    machine shared, against 34-36 s and 39-62 s without spinning, the same text; a session
    with one thread (``--jobs 2`` on 2 cores) has no thread to spin. RapidOCR does not expose
    the setting, so its session options are wrapped once; when it cannot be (another
    RapidOCR), the sessions keep ONNX Runtime's default.
    """
    try:
        from rapidocr.inference_engine.onnxruntime import main as ort_main

        cls = ort_main.OrtInferSession
        make = cls._init_sess_opts
    except (ImportError, AttributeError) as exc:
        log.debug("RapidOCR's session options cannot be wrapped (%s); threads spin while idle", exc)
        return
    if getattr(make, "_wms_no_spin", False):
        return

    def init_sess_opts(cfg):
        opts = make(cfg)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts

    init_sess_opts._wms_no_spin = True
    cls._init_sess_opts = staticmethod(init_sess_opts)


def _model_seconds(res, detect_only: bool = False) -> dict[str, float]:
    """The detector's and the recogniser's seconds in a RapidOCR result ({} where it has none)."""
    if detect_only:  # a detection result has its one figure in ``elapse``
        sec = getattr(res, "elapse", None)
        return {"detect": float(sec)} if isinstance(sec, (int, float)) else {}
    elapse = getattr(res, "elapse_list", None) or ()
    names = ("detect", None, "recognize")  # RapidOCR's order: det, cls, rec
    return {name: float(sec) for name, sec in zip(names, elapse) if name and isinstance(sec, (int, float))}


class RapidOcrEngine:
    name = "rapidocr"
    reads_lines = True

    def __init__(self, *, threads: int | None = None, timeout: float = DEFAULT_TIMEOUT, max_side: int = MAX_SIDE,
                 det_side: int = DET_SIDE, precision: str | None = None):
        self.timeout = timeout
        self.max_side = max_side
        paths = model_paths()
        for kind, path in paths.items():
            if not path.is_file():
                raise EngineUnavailable(
                    f"RapidOCR {kind} model {path} is missing; reinstall: pip install --force-reinstall rapidocr==3.10.0"
                )
        det_model, self.precision = detection_model(precision)
        self.version = engine_version(self.precision)
        threads = threads or os.cpu_count() or 1
        params = {
            "Global.log_level": "error",
            "Global.use_cls": False,  # manga text is never upside down
            "Global.max_side_len": max_side,
            "Global.text_score": 0.3,  # low-confidence lines are filtered by the layout rules
            "Det.model_path": str(det_model),
            "Rec.model_path": str(paths["rec"]),
            "Rec.rec_batch_num": 8,
            "Rec.rec_img_shape": [3, 48, REC_MIN_WIDTH],
            # Detection runs on a copy scaled to at most det_side on the long side;
            # lines are cut for recognition from the max_side image.
            "Det.limit_type": "max",
            "Det.limit_side_len": det_side,
            "EngineConfig.onnxruntime.intra_op_num_threads": int(threads),
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        try:
            from rapidocr import RapidOCR

            _no_busy_waiting()
            self._ocr = RapidOCR(params=params)
        except EngineUnavailable:
            raise
        except ImportError as exc:
            raise EngineUnavailable(
                f"RapidOCR cannot be imported ({exc}); run: pip install -r requirements.txt"
            ) from None
        except Exception as exc:
            raise EngineUnavailable(f"RapidOCR failed to start: {exc}") from exc
        self._pool = cf.ThreadPoolExecutor(1, thread_name_prefix="rapidocr")
        #: seconds of the last ``read_page`` / ``detect`` inside the models: {"detect", "recognize"}
        self.last_timings: dict[str, float] = {}

    # -- the one place that calls into RapidOCR -------------------------------
    def _call(self, bgr, fn=None, **kw):
        fut = self._pool.submit(fn or self._ocr, bgr, **kw)
        try:
            return fut.result(timeout=self.timeout)
        except cf.TimeoutError:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = cf.ThreadPoolExecutor(1, thread_name_prefix="rapidocr")
            raise EngineTimeout(
                f"RapidOCR took longer than {self.timeout:.0f} s on one page; the page may be huge or the machine overloaded"
            ) from None
        except Exception as exc:
            raise EngineError(f"RapidOCR failed on the page: {type(exc).__name__}: {exc}") from exc

    def read_page(self, image: np.ndarray) -> list[Line]:
        """Detect and read lines on an RGB page."""
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        res = self._call(bgr, use_det=True, use_cls=False, use_rec=True)
        self.last_timings = _model_seconds(res)
        boxes = getattr(res, "boxes", None)
        txts = getattr(res, "txts", None)
        if boxes is None or txts is None or len(boxes) == 0:
            return []
        scores = getattr(res, "scores", None) or [1.0] * len(txts)
        return [
            Line([[float(x), float(y)] for x, y in np.asarray(box).tolist()], str(txt), float(score))
            for box, txt, score in zip(boxes, txts, scores)
        ]

    def detect(self, image: np.ndarray) -> list[Line]:
        """Detect lines only (no recognition): used to lay out pages for other engines."""
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        res = self._call(bgr, use_det=True, use_cls=False, use_rec=False)
        self.last_timings = _model_seconds(res, detect_only=True)
        boxes = getattr(res, "boxes", None)
        if boxes is None or len(boxes) == 0:
            return []
        return [Line([[float(x), float(y)] for x, y in np.asarray(b).tolist()]) for b in boxes]

    def read_quads(self, image: np.ndarray, quads: list[list[list[float]]]) -> list[tuple[str, float]]:
        """Read the text in each box (four [x, y] points) of an RGB page, in one batch: [(text, score)]."""
        if not quads:
            return []
        from rapidocr.utils.process_img import get_rotate_crop_image

        bgr = np.ascontiguousarray(image[:, :, ::-1])
        crops = [get_rotate_crop_image(bgr, np.array(q, dtype=np.float32)) for q in quads]
        res = self._call(crops, fn=self._ocr.recognize_txt)
        txts = getattr(res, "txts", None) or ()
        scores = getattr(res, "scores", None) or ()
        return [(str(t), float(sc)) for t, sc in zip(txts, scores)] + [("", 0.0)] * (len(quads) - len(txts))

    def read_blocks(self, image: np.ndarray, blocks: list[BlockRequest], workdir: str | None = None) -> list[list[str]]:
        return [[line.text for line in block.lines] for block in blocks]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
