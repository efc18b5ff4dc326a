"""The folder layout is the architecture: coordination never imports OCR code, nor the settings
loaders of configurations/ (which depend on coordination, not the reverse); its board protocol
(coordination/protocol/) never imports the worker runtime (coordination/runtime/), which host
tools and pipelines do not need; git is started in coordination/protocol/git/ only."""
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


# -- git starts in coordination/protocol/git/ only ------------------------------------------------

GIT_PACKAGE = ROOT / "coordination" / "protocol" / "git"
#: functions that start a process when given a command line
_STARTERS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput", "system",
             "popen", "create_subprocess_exec", "create_subprocess_shell", "execute"} | {
    f"{name}{suffix}" for name in ("exec", "spawn") for suffix in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}


def product_files():
    for top in ("coordination", "pipelines", "host_tools", "configurations", "scripts"):
        yield from sorted((ROOT / top).rglob("*.py"))
    yield ROOT / "wms_worker_processor.py"


def _names_git(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and (
        node.value.split(" ", 1)[0].lower() in ("git", "git.exe") or node.value.lower().endswith(("/git", "\\git.exe")))


def git_starts(source: str) -> list[str]:
    """Where ``source`` starts git itself, read from its syntax: GitPython imported (its Repo and Git run
    git) or reached through a LocalRepo (``repo._repo.git``), a command line that begins with git
    (``["git", ...]``, ``("git", ...)``), or a process function given ``"git ..."`` or ``shutil.which("git")``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "git" for a in node.names):
            found.append(f"line {line}: imports GitPython")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "git":
            found.append(f"line {line}: imports GitPython")
        elif isinstance(node, (ast.List, ast.Tuple)) and node.elts and _names_git(node.elts[0]):
            found.append(f"line {line}: a command line starting with git")
        elif isinstance(node, ast.Attribute) and node.attr == "git" and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "_repo":
            found.append(f"line {line}: GitPython's command runner of a LocalRepo")
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "which" and node.args and _names_git(node.args[0]):
                found.append(f"line {line}: looks git up to run it")
            elif name in _STARTERS and node.args and _names_git(node.args[0]):
                found.append(f"line {line}: {name}() of a git command")
    return found


def test_git_starts_only_in_the_git_package():
    """Every git process starts in coordination/protocol/git/run.py (GitRunner: the environment,
    redaction, timeouts, failure classes, and the process group that keeps a terminal's Ctrl+C
    away from git); product code elsewhere asks GitRunner or LocalRepo."""
    offenders = {}
    for path in product_files():
        if GIT_PACKAGE in path.parents:
            continue
        found = git_starts(path.read_text(encoding="utf-8"))
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}


def test_inside_the_git_package_run_py_starts_processes_and_objects_py_holds_gitpython():
    modules = {p.name: imports_of(p) for p in GIT_PACKAGE.glob("*.py")}
    assert {name for name, found in modules.items() if "subprocess" in found} == {"run.py"}
    assert {name for name, found in modules.items() if found & {"git", "git.cmd", "git.repo"}} == {"objects.py"}


def test_the_git_start_check_sees_each_way_of_starting_git():
    planted = ['subprocess.run(["git", "fetch"], check=True)', 'subprocess.Popen(("git", "cat-file", "--batch"))',
               'cmd = ["git"] + args', 'os.system("git gc --auto")', 'subprocess.run("git push", shell=True)',
               'import git', 'from git import Repo', 'exe = shutil.which("git")',
               'subprocess.check_output(["/usr/bin/git", "--version"])', 'repo._repo.git.execute(cmd)',
               'board.repo._repo.git.ls_tree("main")']
    assert [bool(git_starts(line)) for line in planted] == [True] * len(planted)
    fine = ['subprocess.run(["tesseract", "--version"])', 'log.info("git fetch failed")',
            'GitRunner(path, url).run(["fetch", "origin"])', 'raise GitNotFound("git is not installed")']
    assert [git_starts(line) for line in fine] == [[]] * len(fine)
