"""The host's first steps as people take them: a repository from plain `git init`, pages that are
not what they seem, a first monitor pass."""
import subprocess
import time

from tests.helpers import PY, ROOT, board_files, git_out, host, make_bare, start_worker, wait_for
from tests.test_host_monitor import invoke


def test_init_on_a_repository_with_main_checked_out_names_the_problem(tmp_path):
    repo = tmp_path / "board"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=h", "-c", "user.email=h@h", "commit", "-q",
                    "--allow-empty", "-m", "start"], check=True)
    started = time.monotonic()
    proc = host("init", "--repo-url", str(repo), check=False)
    assert time.monotonic() - started < 30  # not minutes of retries
    assert proc.returncode == 5
    assert proc.stderr.startswith(f"Error: The board at {repo} is a repository with its branch main checked out "
                                  "(not a bare repository), and git refuses every push to a checked-out branch.")
    assert "git init --bare NEW.git" in proc.stderr


def _png(path):
    from PIL import Image

    Image.new("RGB", (20, 20), "white").save(path)


def test_publish_refuses_a_broken_link_and_a_non_image_before_pushing(board, tmp_path):
    chapter = tmp_path / "Series" / "ch1"
    chapter.mkdir(parents=True)
    for name in ("001.png", "002.png"):
        _png(chapter / name)
    (chapter / "003.png").symlink_to(tmp_path / "gone.png")  # a broken link: it used to vanish silently
    head = git_out(board, "rev-parse", "main")
    proc = host("publish", "--repo-url", str(board), str(tmp_path / "Series"), check=False)
    assert proc.returncode == 1
    assert proc.stderr == f"Error: {chapter / '003.png'} is a broken symbolic link; copy the image itself into " \
                          "the chapter folder\n"
    (chapter / "003.png").unlink()
    (chapter / "003.png").write_text("<html>not found</html>")  # a download that went wrong
    proc = host("publish", "--repo-url", str(board), str(tmp_path / "Series"), check=False)
    assert proc.returncode == 1
    assert proc.stderr == f"Error: {chapter / '003.png'} is not an image (its content is not PNG, JPEG, GIF, " \
                          "WebP, BMP or TIFF); remove it or replace it with the page image\n"
    assert git_out(board, "rev-parse", "main") == head  # nothing published
    _png(chapter / "003.png")
    proc = host("publish", "--repo-url", str(board), str(tmp_path / "Series"))
    work_id = proc.stdout.split()[1].rstrip(":")
    assert proc.stdout == f"Published {work_id}: Series / ch1, 3 page(s)\nPublished 1 order(s), 0.0 MB\n"
    assert len([f for f in board_files(board) if f.startswith(f"pages/{work_id}/")]) == 3


def test_a_first_monitor_pass_says_it_starts_watching(board, tmp_path):
    host("publish", "--repo-url", str(board), "--simulate", "1", "--seconds", "60", "--prefix", "mon")
    proc = start_worker(str(board), tmp_path / "w", log=tmp_path / "log")
    try:
        wait_for(lambda: "Claimed work: mon-00001" in (tmp_path / "log").read_text(), 30, what="the claim")
        args = ["monitor", "--repo-url", str(board), "--once"]
        first = invoke(*args)
        assert first.exit_code == 0
        assert first.stdout.splitlines()[0] == (
            "Watching 1 worker(s); silent ones are judged from the next pass (a worker is taken as gone once "
            "this monitor has seen it silent for 6 s)")
        second = invoke(*args)
        assert second.exit_code == 0 and "Watching" not in second.stdout
    finally:
        proc.kill()
        proc.wait()
