"""The int8 detector shipped in ``models/`` and its manifest: the contract between
the builder (`pipelines.engines.quantize`) and the engine that loads it
(`pipelines.engines.rapidocr_engine`), so neither imports the other.

The manifest (``int8.json``) names the model file, its sha256 and the sha256 of
the float model it was built from. The engine trusts the int8 model only when
both still match:

    >>> from pathlib import Path
    >>> verify(Path("/nonexistent"), Path("/nonexistent/det.onnx"))[0] is None
    True
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "models"
MANIFEST = "int8.json"
INT8_NAME = "PP-OCRv6_det_small.int8.onnx"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(models_dir: Path, source: Path) -> tuple[Path | None, str]:
    """The int8 detector in ``models_dir`` if it was built from ``source``, else (None, why not)."""
    try:
        manifest = json.loads((models_dir / MANIFEST).read_text(encoding="utf-8"))
        path = models_dir / manifest["model"]
        if not path.is_file():
            return None, f"{path} is missing"
        if sha256_file(path) != manifest["sha256"]:
            return None, f"{path} is damaged (sha256 differs from {MANIFEST})"
        if sha256_file(source) != manifest["source_sha256"]:
            return None, (f"it was built from another {source.name} than the installed one "
                          "(rebuild: python -m pipelines.engines.quantize)")
        return path, ""
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"its manifest {models_dir / MANIFEST} is unreadable ({exc})"
