"""Where `pip install wms` works: resolve every runtime dependency as wheels, per Python and platform.

    python scripts/wheel_matrix.py                 # the matrix as a Markdown table; exit 1 if a cell fails
    python scripts/wheel_matrix.py --json          # one object per cell
    python scripts/wheel_matrix.py --python 3.14   # other Python versions

For each cell it asks pip to resolve pyproject.toml's dependencies for that platform with
`pip install --dry-run --report --only-binary=:all: --platform TAG... --python-version X.Y
--implementation cp` (pip reads wheel metadata only: nothing is installed or built). The
project's own environment markers are evaluated here for the target cell (pip would evaluate
them for this machine); where a marker leaves onnxruntime out, the cell says so, and the
script checks that onnxruntime really has no wheel there (a marker must not drop it needlessly).
Markers inside dependencies' own metadata are still evaluated by pip for this machine: they
only choose pure-Python helpers (colorama on Windows, jeepney on Linux, typing-extensions on
old Pythons), which have wheels everywhere.

Answers are cached for a day in ~/.cache/wms/wheel-matrix/ (WMS_WHEEL_MATRIX_CACHE moves it),
keyed by the requirements and the cell, so CI pays for the network once a day.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")  # 3.14: beyond the aim; shows the fallback
FALLBACK_PACKAGE = "onnxruntime"  # without it, RapidOCR cannot run: Tesseract reads the pages
CACHE_SECONDS = 24 * 3600


def _manylinux(arch: str) -> tuple[str, ...]:
    # pip does not widen a PEP 600 tag to older glibc tags by itself: name them all
    return tuple(f"manylinux_2_{minor}_{arch}" for minor in range(28, 16, -1)) + (
        f"manylinux2014_{arch}",)


@dataclass(frozen=True)
class Platform:
    name: str
    tags: tuple
    markers: dict  # environment-marker values of that platform


PLATFORMS = (
    Platform("Windows x64", ("win_amd64",),
             {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64", "os_name": "nt"}),
    # pip widens a macOS tag to every older macOS version itself
    Platform("macOS arm64 (14+)", ("macosx_14_0_arm64",),
             {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64", "os_name": "posix"}),
    Platform("macOS x86_64 (13+)", ("macosx_13_0_x86_64",),
             {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "x86_64", "os_name": "posix"}),
    Platform("Linux x86_64 (glibc 2.28+)", _manylinux("x86_64"),
             {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"}),
    Platform("Linux aarch64 (glibc 2.28+)", _manylinux("aarch64"),
             {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64", "os_name": "posix"}),
)


@dataclass
class Cell:
    python: str
    platform: str
    ok: bool
    fallback: bool = False  # onnxruntime left out by a marker: Tesseract only
    versions: dict = field(default_factory=dict)  # package -> version pip chose
    error: str = ""

    @property
    def text(self) -> str:
        if not self.ok:
            return f"FAIL: {self.error}"
        if self.fallback:
            return "ok, Tesseract only (no onnxruntime wheel)"
        return f"ok (onnxruntime {self.versions.get('onnxruntime', '?')})"


def load_dependencies(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        from pip._vendor import tomli as tomllib
    with open(pyproject, "rb") as fh:
        return list(tomllib.load(fh)["project"]["dependencies"])


def target_environment(python: str, platform: Platform) -> dict:
    """Marker values for a CPython ``python`` on ``platform`` (the rest taken from this machine)."""
    env = dict(default_environment())
    env.update(platform.markers)
    env.update({"python_version": python, "python_full_version": f"{python}.0", "implementation_name": "cpython",
                "platform_python_implementation": "CPython"})
    return env


def requirements_for(deps: list[str], python: str, platform: Platform) -> tuple[list[str], list[str]]:
    """(requirements that apply to the cell, without markers; names that a marker leaves out)."""
    env = target_environment(python, platform)
    kept, dropped = [], []
    for line in deps:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            dropped.append(req.name)
            continue
        req.marker = None
        kept.append(str(req))
    return kept, dropped


def pip_resolve(requirements: list[str], python: str, platform: Platform, *, no_deps: bool = False) -> dict:
    """Ask pip which wheels it would install: {"ok", "versions"} or {"ok": False, "error"}."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--disable-pip-version-check", "--report", str(report), "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp"]
        for tag in platform.tags:
            cmd += ["--platform", tag]
        if no_deps:
            cmd.append("--no-deps")
        proc = subprocess.run(cmd + requirements, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            lines = [ln.strip() for ln in proc.stderr.splitlines()
                     if ln.strip().startswith("ERROR") and "is ignored" not in ln]
            return {"ok": False, "error": (lines[0] if lines else proc.stderr.strip()[-300:])[:300]}
        data = json.loads(report.read_text(encoding="utf-8"))
        return {"ok": True, "versions": {item["metadata"]["name"].lower(): item["metadata"]["version"]
                                         for item in data.get("install", [])}}


class Cache:
    def __init__(self, folder: Path | None, max_age: float = CACHE_SECONDS, clock=time.time):
        self.folder = folder
        self.max_age = max_age
        self.clock = clock

    def _path(self, key: object) -> Path | None:
        if self.folder is None:
            return None
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        return self.folder / f"{digest}.json"

    def get(self, key: object) -> dict | None:
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8")) if path else None
        except (OSError, ValueError):
            return None
        if not entry or self.clock() - entry.get("at", 0) > self.max_age:
            return None
        return entry["answer"]

    def put(self, key: object, answer: dict) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"at": self.clock(), "key": key, "answer": answer}), encoding="utf-8")


def resolve_cell(deps: list[str], python: str, platform: Platform, cache: Cache, resolve=pip_resolve) -> Cell:
    def cached(reqs: list[str], no_deps: bool = False) -> dict:
        key = {"reqs": reqs, "python": python, "tags": list(platform.tags), "no_deps": no_deps}
        answer = cache.get(key)
        if answer is None:
            answer = resolve(reqs, python, platform, no_deps=no_deps)
            if answer.get("ok") or answer.get("error"):
                cache.put(key, answer)
        return answer

    kept, dropped = requirements_for(deps, python, platform)
    answer = cached(kept)
    if not answer["ok"]:
        return Cell(python, platform.name, False, error=answer["error"])
    cell = Cell(python, platform.name, True, versions=answer["versions"])
    if FALLBACK_PACKAGE in dropped:
        cell.fallback = True
        spec = next(str(Requirement(d)).split(";")[0] for d in deps if Requirement(d).name == FALLBACK_PACKAGE)
        if cached([spec], no_deps=True)["ok"]:
            cell.ok = False
            cell.error = f"a marker leaves {FALLBACK_PACKAGE} out, but a wheel exists: widen the marker"
    if cell.ok and not cell.fallback and FALLBACK_PACKAGE not in cell.versions:
        cell.ok = False
        cell.error = f"{FALLBACK_PACKAGE} was not resolved"
    return cell


def render_table(cells: list[Cell], pythons: list[str], platforms=PLATFORMS) -> str:
    by = {(c.python, c.platform): c for c in cells}
    lines = ["| Python | " + " | ".join(p.name for p in platforms) + " |",
             "|---|" + "---|" * len(platforms)]
    for py in pythons:
        lines.append(f"| {py} | " + " | ".join(by[(py, p.name)].text for p in platforms) + " |")
    return "\n".join(lines)


def default_cache_dir() -> Path:
    env = os.environ.get("WMS_WHEEL_MATRIX_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "wms" / "wheel-matrix"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", nargs="+", default=list(PYTHONS), help="Python versions (default 3.9 to 3.14)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per cell instead of the table")
    parser.add_argument("--no-cache", action="store_true", help="ask pip again for every cell")
    parser.add_argument("--jobs", type=int, default=4, help="pip processes at once (default 4)")
    args = parser.parse_args(argv)
    deps = load_dependencies()
    cache = Cache(None if args.no_cache else default_cache_dir())
    started = time.monotonic()
    cells_wanted = [(py, plat) for py in args.python for plat in PLATFORMS]
    with cf.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        cells = list(pool.map(lambda c: resolve_cell(deps, c[0], c[1], cache), cells_wanted))
    if args.json:
        for cell in cells:
            print(json.dumps(asdict(cell)))
    else:
        print(render_table(cells, args.python))
    failed = [c for c in cells if not c.ok]
    print(f"{len(cells) - len(failed)} of {len(cells)} cells resolve "
          f"({sum(c.fallback for c in cells)} with the Tesseract fallback) in {time.monotonic() - started:.1f} s",
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
