"""The folder layout is the architecture: coordination never imports OCR code, nor the settings
loaders of configurations/ (which depend on coordination, not the reverse); its board protocol
(coordination/protocol/) never imports the worker runtime (coordination/runtime/), which host
tools and pipelines do not need."""
import ast
import pkgutil
import subprocess
import sys

import coordination
from tests.helpers import ROOT


def coordination_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(coordination.__path__, "coordination."))


def imports_of(path) -> set[str]:
    """The modules a file imports (absolute names)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_coordination_imports_no_ocr_code():
    modules = coordination_modules()
    assert "coordination.runtime.worker" in modules and "coordination.protocol.board" in modules
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pipelines', 'configurations', 'rapidocr', 'onnxruntime', 'pytesseract', 'cv2', 'PIL', 'numpy'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_protocol_never_imports_the_runtime():
    offenders = {str(p.relative_to(ROOT)): sorted(i for i in imports_of(p) if i.startswith("coordination.runtime"))
                 for p in (ROOT / "coordination" / "protocol").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_top_of_coordination_holds_only_shared_pieces():
    """coordination/*.py (exceptions, defaults, portable, ...) are used by both halves and import
    neither, except the seed manual's Python API (api.py, github_bridge.py), which uses both."""
    for path in (ROOT / "coordination").glob("*.py"):
        if path.name in ("api.py", "github_bridge.py"):
            continue
        inner = sorted(i for i in imports_of(path) if i.startswith(("coordination.runtime", "coordination.protocol")))
        assert inner == [], path.name
