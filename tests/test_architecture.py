"""The folder layout is the architecture: coordination never imports OCR code, nor the settings
loaders of configurations/ (which depend on coordination, not the reverse)."""
import pkgutil
import subprocess
import sys

import coordination
from tests.helpers import ROOT


def test_coordination_imports_no_ocr_code():
    modules = [f"coordination.{m.name}" for m in pkgutil.iter_modules(coordination.__path__)]
    assert "coordination.worker" in modules and "coordination.board" in modules
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pipelines', 'configurations', 'rapidocr', 'onnxruntime', 'pytesseract', 'cv2', 'PIL', 'numpy'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
