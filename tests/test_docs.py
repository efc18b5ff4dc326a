"""The documentation is executed: every command README.md and docs/*.md show is run as written.

The convention (for everyone who writes README.md or docs/*.md):

- Every fenced block tagged ```bash, ```sh or ```console is executed by this test, verbatim,
  from a fresh temporary folder that is a checkout of this project (what `git clone` and `cd`
  give a reader), with the project's `.venv` first on PATH (an activated venv, so `python` is
  the project's Python), a fresh HOME, and none of the `WMS_*`/`ENVIRONMENT` settings: the
  defaults a reader gets. The only substitution is the board's URL: `/srv/board.git` and
  `--repo-url URL` become a real board (a bare repository in a temporary folder) that holds two
  short load-test orders — or, for a block that runs `git init --bare` itself, a path where no
  board exists yet. The folder also holds the sample inputs the examples name (`My Series/`,
  `pages.csv`, `pages.json`, `chapter.cbz`, `page1.jpg`, `page2.png`, `~/manga/MySeries/…`,
  `~/downloads/MySeries/vol1.cbz`), as a reader has their own chapters.
- A ```bash or ```sh block runs with `bash -e -o pipefail` and must exit 0.
- A ```console block's commands run with plain `bash -c`, so their status is the one a reader sees.
- A ```console block: lines starting with `$ ` are commands (run one after another in the same
  folder), the lines after one are the output the text promises. Each promised line must appear,
  in order, in what the command printed (stdout and stderr); `...` inside a line stands for any
  text and a line of just `...` for any lines. A command must exit 0 unless its promised output
  ends with `[exit N]`.
- A block a test cannot run as written (package installs, Windows PowerShell, containers,
  benchmarks that take minutes, commands that run until Ctrl+C) must be immediately preceded by
  the line `<!-- docs-test: covered by tests/FILE.py::TEST -->`, naming the test that covers
  it; this test checks that the named test exists. Blocks in other languages (```python,
  ```powershell, ```text, untagged) are not executed; put commands in a bash/sh/console block
  or name their covering test.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import PY, ROOT, host, make_bare

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_TAGS = ("bash", "sh", "console")
COVERED = re.compile(r"^<!-- docs-test: covered by (tests/[\w/]+\.py)::(\w+)(\[[^\]]*\])? -->$")
BOARD_PLACEHOLDER = "/srv/board.git"
SKIP_IN_CHECKOUT = {".git", "wms_workdir", "demo_board", "__pycache__", ".pytest_cache", ".env"}


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    tag: str
    text: str
    covered_by: tuple[str, str] | None

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    found = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, tag = m.group(1), m.group(2).lower()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:end])
        marker = COVERED.match(lines[i - 1].strip()) if i > 0 else None
        found.append(Block(doc, i + 1, tag, body + "\n", (marker.group(1), marker.group(2)) if marker else None))
        i = end + 1
    return found


ALL = [b for doc in DOCS for b in blocks(doc)]
EXECUTED = [b for b in ALL if b.tag in RUN_TAGS and b.covered_by is None]
COVERED_BLOCKS = [b for b in ALL if b.covered_by is not None]


# ------------------------------------------------------------------ the reader's folder
def _png(path: Path, text: str = "wms") -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (240, 120), "white")
    ImageDraw.Draw(image).text((20, 50), text, fill="black")
    image.save(path)


def make_checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A fresh checkout of the project (links to its files) with the sample inputs; and a fresh HOME."""
    checkout = tmp_path / "wms"
    checkout.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in SKIP_IN_CHECKOUT:
            (checkout / entry.name).symlink_to(entry)
    home = tmp_path / "home"
    for chapter in (checkout / "My Series" / "ch01", home / "manga" / "MySeries" / "ch01",
                    home / "manga" / "MySeries" / "ch02"):
        chapter.mkdir(parents=True)
        _png(chapter / "001.png", "page one")
        _png(chapter / "002.png", "page two")
    for cbz in (checkout / "chapter.cbz", home / "downloads" / "MySeries" / "vol1.cbz"):
        cbz.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(cbz, "w") as zf:
            zf.write(checkout / "My Series" / "ch01" / "001.png", "001.png")
    (checkout / "pages.csv").write_text("series,chapter,page_url\nOnline,ch1,https://example.org/1.png\n")
    (checkout / "pages.json").write_text('[{"series": "Online", "chapter": "ch2", '
                                         '"pages": ["https://example.org/2.png"]}]')
    from pipelines.synthetic import render_page

    render_page(seed=1, lang="en").image.convert("RGB").save(checkout / "page1.jpg")
    render_page(seed=2, lang="ja").image.save(checkout / "page2.png")
    return checkout, home


def reader_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WMS_") and k not in ("ENVIRONMENT", "GITHUB_REPO_URL", "MAX_WORK_ORDERS",
                                                     "MAX_CONSECUTIVE_FAILURES", "MAX_IDLE_HOURS", "PYTHONPATH")}
    env["HOME"] = str(home)
    env["PATH"] = f"{Path(PY).parent}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(Path(PY).parent.parent)
    return env


def make_board(tmp_path: Path, block: Block) -> Path:
    """The board a block's URL stands for: none yet if the block creates it, else one with two orders."""
    path = tmp_path / "boards" / "board.git"
    path.parent.mkdir()
    if "git init --bare" not in block.text:
        make_bare(path)
        host("init", "--repo-url", str(path))
        host("publish", "--repo-url", str(path), "--simulate", "2", "--seconds", "0", "--prefix", "doc")
        host("close", "--repo-url", str(path))  # the campaign's last wave: workers stop once it is done
    return path


def substitute(text: str, board: Path) -> str:
    url = shlex.quote(str(board))
    text = text.replace(BOARD_PLACEHOLDER, url)
    return re.sub(r"(--repo-url[ =])URL\b", lambda m: m.group(1) + url, text)


# ------------------------------------------------------------------ running
def run_shell(script: str, cwd: Path, env: dict, *, strict: bool = True, timeout: float = 600
              ) -> subprocess.CompletedProcess:
    """``strict`` (bash/sh blocks): any failing command fails the block, inside a pipe too; a console
    command's status is what the reader's shell shows, the last command's."""
    return subprocess.run(["bash", *(["-e", "-o", "pipefail"] if strict else []), "-c", script], cwd=cwd, env=env,
                          capture_output=True, timeout=timeout)


def console_steps(text: str) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            if steps[-1][1] or line.strip():
                steps[-1][1].append(line.rstrip())
        elif line.strip():
            raise AssertionError(f"a console block starts with output, not a `$ ` command: {line!r}")
    return steps


def promised(expected: list[str], output: str) -> tuple[int, str | None]:
    """(exit code the text promises, the first promised line not found in order, or None)."""
    while expected and not expected[-1].strip():
        expected = expected[:-1]
    code = 0
    if expected and re.fullmatch(r"\[exit \d+\]", expected[-1].strip()):
        code = int(expected[-1].strip()[6:-1])
        expected = expected[:-1]
    out_lines = output.splitlines()
    pos = 0
    for want in expected:
        if want.strip() in ("", "..."):
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in want.strip().split("...")))
        while pos < len(out_lines) and not pattern.search(out_lines[pos]):
            pos += 1
        if pos == len(out_lines):
            return code, want
        pos += 1
    return code, None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


@pytest.mark.parametrize("block", EXECUTED, ids=[b.name for b in EXECUTED])
def test_documented_commands_run_as_written(block: Block, tmp_path):
    checkout, home = make_checkout(tmp_path)
    env = reader_env(home)
    board = make_board(tmp_path, block)
    text = substitute(block.text, board)
    if block.tag in ("bash", "sh"):
        proc = run_shell(text, checkout, env)
        assert proc.returncode == 0, (f"{block.name}: exit {proc.returncode}\n{block.text}\n"
                                      f"--- output ---\n{_text(proc.stdout)}{_text(proc.stderr)}")
        return
    steps = console_steps(text)
    assert steps, f"{block.name}: a console block without a `$ ` command"
    for command, expected in steps:
        proc = run_shell(command, checkout, env, strict=False)
        output = _text(proc.stdout) + _text(proc.stderr)
        code, missing = promised(expected, output)
        assert proc.returncode == code, f"{block.name}: `{command}` exited {proc.returncode}, the text says " \
                                        f"{code}\n--- output ---\n{output}"
        assert missing is None, f"{block.name}: `{command}` did not print the promised line {missing!r}\n" \
                                f"--- output ---\n{output}"


@pytest.mark.parametrize("block", COVERED_BLOCKS, ids=[b.name for b in COVERED_BLOCKS])
def test_blocks_not_run_here_name_a_test_that_exists(block: Block):
    path, name = block.covered_by
    source = ROOT / path
    assert source.is_file(), f"{block.name}: {path} does not exist"
    assert re.search(rf"^(async )?def {name}\(", source.read_text(encoding="utf-8"), re.M), \
        f"{block.name}: {path} has no test {name}"


def test_the_convention_sees_the_documents():
    """The parser finds the blocks (a change of the fence syntax must not silently run nothing)."""
    readme = [b for b in ALL if b.doc.name == "README.md"]
    assert any(b.tag == "bash" for b in readme) and EXECUTED
    assert any("wms_worker_processor.py" in b.text for b in EXECUTED)
    assert any("host_tools" in b.text for b in EXECUTED if b.doc.name == "HOST.md")


def test_promised_output_matching():
    assert promised(["🎉 Completed work: ...", "...", "📈 Progress: 2/50 ..."],
                    "x 🎉 Completed work: a\ny\nz 📈 Progress: 2/50 (3.0 jobs/hour)") == (0, None)
    assert promised(["b", "a"], "a\nb") == (0, "a")  # in order
    assert promised(["Error: ...", "[exit 4]"], "Error: no") == (4, None)


# ------------------------------------------------------------------ blocks covered here
def _covered_commands(test_name: str) -> list[str]:
    commands = []
    for block in COVERED_BLOCKS:
        if block.covered_by == ("tests/test_docs.py", test_name):
            for line in block.text.splitlines():
                line = line.split(" #")[0].strip()
                if line and not line.startswith("#"):
                    commands.append(line)
    return commands


def test_benchmark_commands_parse(tmp_path):
    """The benchmarks take minutes and are not part of the suite; their documented command lines must at
    least parse: each is run with --help appended, which exits 0 only if every option before it exists."""
    commands = _covered_commands("test_benchmark_commands_parse")
    assert commands
    env = reader_env(tmp_path)
    for command in commands:
        proc = subprocess.run(shlex.split(command) + ["--help"], cwd=ROOT, env=env, capture_output=True, timeout=120)
        assert proc.returncode == 0, f"{command}: {_text(proc.stderr)}"


def test_run_sh_commands(tmp_path):
    """`bash run.sh demo|test|setup` install system and Python packages (not from a test); what they run
    after setting up is: the demo script, and pytest. The demo runs here in a fresh checkout."""
    commands = _covered_commands("test_run_sh_commands")
    assert commands and all(c.startswith("bash run.sh ") for c in commands)
    script = (ROOT / "run.sh").read_text()
    for command in commands:
        assert f"  {command.split()[2]})" in script, f"run.sh has no {command.split()[2]!r} command"
    assert "bash run.sh test" in commands, "the README's test command is the one CI runs"
    assert re.search(r"^bash run\.sh test\b", (ROOT / ".ci" / "run").read_text(), re.M), ".ci/run runs another command"
    checkout, home = make_checkout(tmp_path)
    proc = subprocess.run([PY, "scripts/demo.py"], cwd=checkout, env=reader_env(home), capture_output=True,
                          timeout=600)
    assert proc.returncode == 0, _text(proc.stdout + proc.stderr)


def test_when_work_is_taken_back_is_said_in_the_same_words_everywhere():
    """README.md, docs/HOST.md and `monitor --help` state the take-back rule (the lease, what sets it,
    the role of --offline-after) in the words of `coordination.protocol.liveness.TAKEBACK_RULE`."""
    from click.testing import CliRunner

    from coordination.protocol.liveness import TAKEBACK_RULE
    from host_tools.cli import cli

    def squeezed(text: str) -> str:  # line breaks (and click's wrapping at hyphens) aside
        return re.sub(r"\s+", "", text)

    for doc in (ROOT / "README.md", ROOT / "docs" / "HOST.md"):
        assert squeezed(TAKEBACK_RULE) in squeezed(doc.read_text(encoding="utf-8")), doc.name
    help_text = CliRunner().invoke(cli, ["monitor", "--help"]).output
    assert squeezed(TAKEBACK_RULE) in squeezed(help_text)


def test_generated_tables_are_what_the_code_says():
    """README.md's table of settings and table of exit codes are coordination.runtime.settings.SETTINGS
    and coordination.exceptions.ExitCode as `python scripts/doc_tables.py --write` prints them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("doc_tables", ROOT / "scripts" / "doc_tables.py")
    doc_tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doc_tables)
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, render in doc_tables.TABLES.items():
        assert doc_tables.current(text, name) == render(), \
            f"README.md: the {name} table differs from the code; run python scripts/doc_tables.py --write"
    from coordination.exceptions import ExitCode

    codes = re.findall(r"^\| (\d) \| `(\w+)` \|", doc_tables.current(text, "exit codes"), re.M)
    assert [(int(c), n) for c, n in codes] == [(int(e), e.name) for e in ExitCode]


def test_test_commands_collect():
    """docs/DEVELOPING.md's test commands: `bash run.sh test` is what .ci/run runs; each pytest command
    (a marker expression, a file) collects tests without an error (they are not run here)."""
    commands = _covered_commands("test_test_commands_collect")
    assert "bash run.sh test" in commands and any('-m "not slow"' in c for c in commands)
    assert re.search(r"^bash run\.sh test\b", (ROOT / ".ci" / "run").read_text(), re.M)
    for command in commands:
        if command.startswith("bash run.sh"):
            continue
        argv = shlex.split(command)
        assert argv[:3] == [".venv/bin/python", "-m", "pytest"], command
        proc = subprocess.run([PY, "-m", "pytest", *argv[3:], "--collect-only", "-q", "-p", "no:cacheprovider"],
                              cwd=ROOT, capture_output=True, timeout=300)
        assert proc.returncode == 0 and b" collected" in proc.stdout + proc.stderr, \
            f"{command}: {_text(proc.stdout + proc.stderr)[-2000:]}"


# ------------------------------------------------------------------ links
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(doc: Path, keep_code: bool = False) -> list[tuple[int, str]]:
    """(line number, text) of a document outside its fenced blocks; inline code removed unless
    ``keep_code`` (a heading's anchor is made from its code too)."""
    found, fenced = [], False
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if re.match(r"^\s*```", line):
            fenced = not fenced
            continue
        if not fenced:
            found.append((number, line if keep_code else re.sub(r"(`+).*?\1", "", line)))
    return found


def anchors(doc: Path) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated heading numbered (-1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose(doc, keep_code=True):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def test_anchor_rules():
    assert "4-the-monitor-and-email-alerts" in anchors(ROOT / "docs" / "HOST.md")
    assert "for-volunteers" in anchors(ROOT / "README.md")


def test_every_relative_link_leads_to_a_file_and_heading_that_exist():
    """Links in README.md and docs/*.md to files of the project (and to headings, after `#`) resolve."""
    broken = []
    checked = 0
    for doc in DOCS:
        for number, line in prose(doc):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto: ...
                    continue
                path_part, _, anchor = target.partition("#")
                path = (doc.parent / path_part).resolve() if path_part else doc
                checked += 1
                if not path.exists() or ROOT not in (path, *path.parents):
                    broken.append(f"{doc.relative_to(ROOT)}:{number}: {target} (no such file in the project)")
                elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                    broken.append(f"{doc.relative_to(ROOT)}:{number}: {target} (no such heading)")
    assert checked > 10 and broken == [], "\n".join(broken)
