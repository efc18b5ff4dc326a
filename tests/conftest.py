import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import host, make_bare  # noqa: E402
from tests.servers import GitDaemon, GitHttpServer  # noqa: E402

# The fast tier, `pytest -m "not slow"`: decisions, pacing and worker turns on the in-memory board,
# with no git, no server and no subprocess (tests/test_tiers.py runs it with git off the PATH). Every
# other test module is marked slow here: real git, servers, OCR engines, whole processes. The default
# test command runs both tiers.
FAST_MODULES = {"test_architecture", "test_backoff", "test_claims", "test_config", "test_fold", "test_ocr_layout", "test_open_board",
                "test_pacing", "test_stopping", "test_verify", "test_worker_decisions", "test_worker_turns"}


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No .env or user settings leak into tests; host tools keep their clones in tmp_path."""
    for key in list(os.environ):
        if key.startswith("WMS_") or key in ("GITHUB_REPO_URL", "ENVIRONMENT", "MAX_WORK_ORDERS",
                                             "MAX_CONSECUTIVE_FAILURES", "MAX_IDLE_HOURS"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WMS_HOST_WORKDIR", str(tmp_path / "host"))
    monkeypatch.setenv("ENVIRONMENT", "testing")  # host tools too: boards get the testing retry policy
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def board(tmp_path):
    """A board on a local bare repository, initialised: returns its path (the --repo-url)."""
    path = make_bare(tmp_path / "board.git")
    host("init", "--repo-url", str(path))
    return path


@pytest.fixture
def served_board(tmp_path):
    """A board served by `git daemon` on 127.0.0.1 that a test may stop and start: (daemon, url, bare path)."""
    root = tmp_path / "served"
    root.mkdir()
    path = make_bare(root / "board.git")
    daemon = GitDaemon(root).start()
    try:
        url = daemon.url("board.git")
        host("init", "--repo-url", url)
        yield daemon, url, path
    finally:
        daemon.stop()


@pytest.fixture
def daemon_board(served_board):
    """A board served by `git daemon` on 127.0.0.1: returns (url, bare path)."""
    _, url, path = served_board
    return url, path


@pytest.fixture
def http_board(tmp_path):
    """A board behind `git http-backend` with basic auth: returns (server, url with token, bare path)."""
    root = tmp_path / "served-http"
    root.mkdir()
    path = make_bare(root / "board.git")
    with GitHttpServer(root) as server:
        url = server.url("board.git")
        host("init", "--repo-url", url)
        yield server, url, path


def pytest_collection_modifyitems(config, items):
    """Every module outside FAST_MODULES is marked slow. Container builds run only when asked for (`-m
    container`), also when another `-m` (such as the fast tier's `-m "not slow"`) replaces pytest.ini's
    `-m "not container"`."""
    for item in items:
        path = Path(str(item.fspath))
        if path.parent == ROOT / "tests" and path.stem not in FAST_MODULES:
            item.add_marker(pytest.mark.slow)
    if "container" in (config.getoption("markexpr") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("container") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("container")])
        items[:] = kept
