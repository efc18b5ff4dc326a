"""Installed as a package: `pip install .` gives wms-worker, wms-host and wms-ocr, and they work.

The wheel is built from a copy of this checkout without the network (`--no-build-isolation
--no-index`) and installed with `--no-deps` into a fresh venv that sees this environment's
packages through a .pth file (so the test needs no download); the commands then run from a
fresh folder, away from the checkout, so every import comes from the installed wheel.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.helpers import PY, ROOT, make_bare

sys.path.insert(0, str(ROOT / "scripts"))
import wheel_matrix  # noqa: E402

BIN = "Scripts" if os.name == "nt" else "bin"
EXE = ".exe" if os.name == "nt" else ""


def _run(cmd, cwd, timeout=300, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.setdefault("ENVIRONMENT", "testing")
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                          **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, venv) with this checkout installed as a package."""
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "wms_workdir", "demo_board", ".pytest_cache"))
    built = _run([PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp / "dist",
                  src], cwd=tmp)
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next((tmp / "dist").glob("wms-*.whl"))
    venv = tmp / "venv"
    made = _run([PY, "-m", "venv", venv], cwd=tmp)
    assert made.returncode == 0, made.stderr
    vpy = venv / BIN / f"python{EXE}"
    inst = _run([vpy, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=tmp)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    # then this environment's packages (the runtime dependencies), after the venv's own; only now,
    # or pip would take a wms already installed here for this one and install nothing
    purelib = _run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout.strip()
    Path(purelib, "zz_test_env.pth").write_text("\n".join(
        dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])) + "\n")
    return wheel, venv


def test_the_wheel_holds_the_code_and_the_int8_model_and_no_tests(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("wms_worker_processor.py", "coordination/runtime/worker.py", "host_tools/cli.py", "configurations/config.py",
                   "pipelines/engines/models/PP-OCRv6_det_small.int8.onnx", "pipelines/engines/models/int8.json"):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("tests/", "bench/", "scripts/", "docs/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for line in ("wms-worker = wms_worker_processor:cli", "wms-host = host_tools.cli:cli",
                 "wms-ocr = pipelines.__main__:cli"):
        assert line in text


def test_pip_install_gives_commands_that_finish_a_board(installed, tmp_path):
    """The README's volunteer steps: pip install, then `wms-worker --repo-url URL` from any folder."""
    _, venv = installed
    here = tmp_path / "anywhere"
    here.mkdir()
    bindir = venv / BIN
    for cmd, usage in (("wms-worker", "Usage: wms-worker [OPTIONS]"), ("wms-host", "Usage: wms-host [OPTIONS] COMMAND"),
                       ("wms-ocr", "Usage: wms-ocr [OPTIONS] COMMAND")):
        out = _run([bindir / f"{cmd}{EXE}", "--help"], cwd=here)
        assert out.returncode == 0 and out.stdout.startswith(usage), out.stdout + out.stderr
    where = _run([bindir / f"python{EXE}", "-c", "import wms_worker_processor, pipelines.engines.rapidocr_engine as r; "
                  "print(wms_worker_processor.__file__); print(r.RapidOcrEngine().version)"], cwd=here)
    assert where.returncode == 0, where.stderr
    module_file, version = where.stdout.splitlines()
    assert Path(module_file).resolve().is_relative_to(venv.resolve())  # the installed copy, not the checkout
    assert "det int8" in version  # the shipped int8 model was found inside the installed package

    board = make_bare(tmp_path / "board.git")
    assert _run([bindir / "wms-host", "init", "--repo-url", board], cwd=here).returncode == 0
    pub = _run([bindir / "wms-host", "publish", "--repo-url", board, "--simulate", "2", "--seconds", "0.1"], cwd=here)
    assert pub.returncode == 0, pub.stdout + pub.stderr
    run = _run([bindir / "wms-worker", "--repo-url", board, "--max-failures", "2"], cwd=here)
    assert run.returncode == 0, run.stdout + run.stderr
    log = (here / "wms_workdir" / "worker.log").read_text(encoding="utf-8")  # the default, relative workdir
    assert len(re.findall(r"Completed work: sim-\d+", log)) == 2
    status = _run([bindir / "wms-host", "status", "--repo-url", board, "--json"], cwd=here)
    assert json.loads(status.stdout)["completed"] == 2


def _lock() -> dict:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[req.name.lower()] = str(next(iter(req.specifier)).version)
    return pins


def test_the_lock_is_inside_the_ranges_of_pyproject():
    pins = _lock()
    deps = wheel_matrix.load_dependencies()
    try:
        import tomllib
    except ImportError:
        from pip._vendor import tomli as tomllib
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    named = set()
    for line in deps + extras:
        req = Requirement(line)
        named.add(req.name.lower())
        if req.marker is None or req.marker.evaluate():
            assert req.name.lower() in pins, f"{req.name} is not locked in requirements.txt"
            assert req.specifier.contains(pins[req.name.lower()], prereleases=True), (req, pins[req.name.lower()])
    assert set(pins) <= named, f"locked but not in pyproject.toml: {set(pins) - named}"


def test_the_onnxruntime_marker_leaves_it_out_only_on_intel_macs_from_python_3_14():
    deps = wheel_matrix.load_dependencies()
    dropped = {(py, plat.name) for py in wheel_matrix.PYTHONS for plat in wheel_matrix.PLATFORMS
               if "onnxruntime" in wheel_matrix.requirements_for(deps, py, plat)[1]}
    assert dropped == {("3.14", "macOS x86_64 (13+)")}


def test_the_matrix_flags_a_failed_cell_and_a_needless_fallback(tmp_path):
    deps = wheel_matrix.load_dependencies()
    mac_intel = next(p for p in wheel_matrix.PLATFORMS if p.name.startswith("macOS x86_64"))
    linux = next(p for p in wheel_matrix.PLATFORMS if p.name.startswith("Linux x86_64"))

    def pypi(has_ort_wheel):  # a stand-in index: which wheels exist
        def resolve(reqs, python, platform, no_deps=False):
            names = [Requirement(r).name for r in reqs]
            if "Pillow" in names and python == "3.13" and platform is linux:
                return {"ok": False, "error": "ERROR: No matching distribution found for Pillow<14,>=10"}
            if names == ["onnxruntime"]:
                return {"ok": True, "versions": {"onnxruntime": "1.32.0"}} if has_ort_wheel else \
                    {"ok": False, "error": "ERROR: No matching distribution found for onnxruntime"}
            return {"ok": True, "versions": {n.lower(): "1" for n in names}}
        return resolve

    cache = wheel_matrix.Cache(None)
    fallback = wheel_matrix.resolve_cell(deps, "3.14", mac_intel, cache, resolve=pypi(False))
    assert fallback.ok and fallback.text == "ok, Tesseract only (no onnxruntime wheel)"
    needless = wheel_matrix.resolve_cell(deps, "3.14", mac_intel, cache, resolve=pypi(True))
    assert not needless.ok and needless.text == ("FAIL: a marker leaves onnxruntime out, but a wheel exists: "
                                                 "widen the marker")
    failed = wheel_matrix.resolve_cell(deps, "3.13", linux, cache, resolve=pypi(False))
    assert failed.text == "FAIL: ERROR: No matching distribution found for Pillow<14,>=10"
    fine = wheel_matrix.resolve_cell(deps, "3.12", linux, cache, resolve=pypi(False))
    assert fine.text == "ok (onnxruntime 1)"
    # answers are cached by requirements and cell
    stored = wheel_matrix.Cache(tmp_path, clock=lambda: 1000.0)
    calls = []

    def counting(*a, **k):
        calls.append(a)
        return pypi(False)(*a, **k)

    for _ in range(2):
        wheel_matrix.resolve_cell(deps, "3.12", linux, stored, resolve=counting)
    assert len(calls) == 1
    assert wheel_matrix.Cache(tmp_path, clock=lambda: 1000.0 + 2 * wheel_matrix.CACHE_SECONDS).get(
        {"reqs": wheel_matrix.requirements_for(deps, "3.12", linux)[0], "python": "3.12", "tags": list(linux.tags),
         "no_deps": False}) is None  # a day later pip is asked again


HIDE_ORT = "import sys; sys.modules['onnxruntime'] = None; "  # as where onnxruntime has no wheel


def test_without_onnxruntime_pages_are_read_with_tesseract_and_check_says_so(board, tmp_path):
    from pipelines.synthetic import render_page

    page = render_page(seed=500, lang="en")
    page.image.save(tmp_path / "page.png")
    ocr = subprocess.run(
        [PY, "-c", HIDE_ORT + f"sys.path.insert(0, {str(ROOT)!r}); from pipelines.__main__ import cli; "
         "cli(['ocr', 'page.png', '--format', 'json'], prog_name='wms-ocr')"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ocr.returncode == 0, ocr.stderr
    assert "ONNX Runtime is not installed (it has no wheel for this Python on this platform): RapidOCR cannot run, " \
           "so pages are read with Tesseract instead" in ocr.stderr + ocr.stdout
    from pipelines.metrics import char_f1

    assert char_f1(page.text, json.loads(ocr.stdout.splitlines()[-1])["text"]) > 0.7

    check = subprocess.run(
        [PY, "-c", HIDE_ORT + f"sys.path.insert(0, {str(ROOT)!r}); from wms_worker_processor import cli; "
         f"cli(['--repo-url', {str(board)!r}, '--workdir', 'w', '--check'], prog_name='wms-worker')"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    lines = check.stdout.splitlines()
    assert check.returncode == 0, check.stdout + check.stderr
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert any(line.startswith(f"WARN OCR engine rapidocr: onnxruntime is not installed (it has no wheel for "
                               f"Python {py} on ") and line.endswith(
        "RapidOCR cannot run here, so every chapter is read with Tesseract alone, which finds fewer lines (vertical "
        "Japanese above all); results say engine \"tesseract\"") for line in lines), lines
    assert any(re.fullmatch(r"OK   OCR engine tesseract: loads \(tesseract .*\)", line)
               for line in lines), lines


@pytest.mark.skipif(os.name != "posix", reason="the stand-in ssh is a shell script")
def test_a_deploy_key_named_in_dotenv_is_the_key_git_uses(tmp_path):
    """README: an outside collaborator may use an SSH deploy key, named in .env with GIT_SSH_COMMAND."""
    calls = tmp_path / "ssh-calls.txt"
    fake_ssh = tmp_path / "ssh"  # stands in for ssh: records how git calls it, then fails as a closed port would
    fake_ssh.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\necho "ssh: connect to host github.com port 22: '
                        'Connection refused" >&2\nexit 255\n')
    fake_ssh.chmod(0o755)
    here = tmp_path / "volunteer"
    here.mkdir()
    (here / ".env").write_text("GITHUB_REPO_URL=git@github.com:ORG/BOARD.git\n"
                               f"GIT_SSH_COMMAND={fake_ssh} -i ~/.ssh/wms_board -o IdentitiesOnly=yes -o BatchMode=yes\n")
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_SSH_COMMAND", "GITHUB_REPO_URL", "GIT_SSH")}
    check = subprocess.run([PY, str(ROOT / "wms_worker_processor.py"), "--check"], cwd=here, capture_output=True,
                           text=True, timeout=120, env=env)
    assert check.returncode == 1
    assert any(line.startswith("FAIL board read: git fetch failed talking to git@github.com:ORG/BOARD.git")
               for line in check.stdout.splitlines()), check.stdout
    used = calls.read_text().splitlines()[0]
    home = os.path.expanduser("~")
    assert used.startswith(f"-i {home}/.ssh/wms_board -o IdentitiesOnly=yes -o BatchMode=yes ")
    assert used.endswith("git@github.com git-upload-pack 'ORG/BOARD.git'"), used
