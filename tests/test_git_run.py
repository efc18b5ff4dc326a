"""The one place that starts git (coordination/protocol/git/run.py), with a real git: typed timeouts and
redaction hold for every caller, the board-file reader of job threads included."""
import subprocess

import pytest

from coordination.exceptions import GitTimeout, WorkdirError
from coordination.protocol.git import TreeFileReader
from coordination.protocol.git.run import GitRunner
from coordination.secrets import register_secret


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "r.git"
    subprocess.run(["git", "init", "--bare", "-q", str(path)], check=True)
    blob = subprocess.run(["git", "--git-dir", str(path), "hash-object", "-w", "--stdin"], input=b"page",
                          capture_output=True, check=True).stdout.decode().strip()
    tree = subprocess.run(["git", "--git-dir", str(path), "mktree"], input=f"100644 blob {blob}\tp.txt\n".encode(),
                          capture_output=True, check=True).stdout.decode().strip()
    commit = subprocess.run(["git", "--git-dir", str(path), "commit-tree", tree, "-m", "x"], capture_output=True,
                            check=True, env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                                             "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
                            ).stdout.decode().strip()
    return path, commit


def test_output_leaves_the_runner_redacted(repo):
    path, _ = repo
    register_secret("hunter2-token")
    code, out, err = GitRunner(path, "the board").run(["rev-parse", "hunter2-token"], network=False)
    assert code != 0 and "***" in err and "hunter2-token" not in err + out


def test_a_git_command_out_of_time_is_a_typed_timeout(repo):
    path, commit = repo
    with pytest.raises(GitTimeout, match="did not finish within"):
        GitRunner(path, "the board", timeout=1e-6).run(["cat-file", "-t", commit], network=False)
    # the job threads' reader goes through the same runner
    assert TreeFileReader(path, commit).read_file("p.txt") == b"page"
    with pytest.raises(GitTimeout):
        TreeFileReader(path, commit, timeout=1e-6).read_file("p.txt")


def test_git_that_cannot_run_in_its_folder_is_a_workdir_error(tmp_path):
    with pytest.raises(WorkdirError, match="Cannot run git in"):
        GitRunner(tmp_path / "gone", "the board").run(["status"], cwd=tmp_path / "gone", network=False)


def test_the_persistent_reader_reads_its_own_repository_whatever_the_shell_says(repo, tmp_path, monkeypatch):
    """GitPython starts its `cat-file --batch` readers with this process's environment: a GIT_DIR or a
    `git -c` setting of the caller's shell (a worker started from a git hook) must not reach them."""
    from coordination.protocol.git.objects import ObjectStore

    path, commit = repo
    other = tmp_path / "other.git"
    subprocess.run(["git", "init", "--bare", "-q", str(other)], check=True)
    monkeypatch.setenv("GIT_DIR", str(other))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.bigfilethreshold'='not a size'")
    store = ObjectStore(path)
    store.open_reader(GitRunner(path, "the board").env())
    try:
        assert store.read_raw(commit)[0] == "commit"
    finally:
        store.close()
