"""Page stores: pages in git repositories beside the board, fetched by object id, checked by sha256.

Real git throughout: stores served by git daemon and by smart HTTP with a token, a store that is
gone, a store that refuses the token, a tampered page, stores that fill up and roll over.
"""
import hashlib
import json
import subprocess

import pytest
from PIL import Image, ImageDraw

from coordination.exceptions import InvalidRepoUrl
from coordination.protocol.remote import parse_repo_url, related_remote
from coordination.protocol.states import make_work_id
from host_tools.page_store import MANIFEST, store_url
from tests.helpers import ROOT, board_files, git_out, host, ids_by_state, make_bare, read_board_json, worker_cmd
from tests.servers import GitHttpServer
from tests.test_invariants import client


def text_chapter(root, series="Stored", chapter="C1", pages=2, size=(420, 160)):
    folder = root / series / chapter
    folder.mkdir(parents=True)
    for n in range(1, pages + 1):
        image = Image.new("RGB", size, "white")
        ImageDraw.Draw(image).text((30, 60), f"PAGE {n} OF {chapter}", fill="black")
        image.save(folder / f"{n:03d}.png")
    return folder


def run_worker(url, workdir, *extra, timeout=300):
    proc = subprocess.run(worker_cmd(url, workdir, "--max-failures", "1", *extra), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def completed_record(bare, work_id):
    path = next(f for f in board_files(bare) if f.startswith("completed_work/") and f.endswith(f"/{work_id}.json"))
    return read_board_json(bare, path)


def last_error(bare, work_id):
    state = ids_by_state(bare)
    assert state["retry"] == [work_id], state  # retried later, nothing lost
    return read_board_json(bare, f"retry_queue/{work_id}.json")["errors"][-1]["error"]


def test_store_over_git_daemon_keeps_pages_out_of_the_board(served_board, tmp_path):
    daemon, url, bare = served_board
    chapter = text_chapter(tmp_path / "src")
    work_id = make_work_id("Stored", "C1")
    base = daemon.url("pages.git")
    # a store on a server is the host's to create: publish says so and publishes nothing
    missing = host("publish", "--repo-url", url, "--page-store", base, str(chapter), check=False)
    assert missing.returncode == 1
    assert f"Error: Page store {daemon.url('pages-0001.git')} cannot be read:" in missing.stderr
    assert "Create it as an empty repository" in missing.stderr
    assert ids_by_state(bare)["available"] == []
    store = make_bare(daemon.root / "pages-0001.git")
    out = host("publish", "--repo-url", url, "--page-store", base, str(chapter))
    assert f"Pages of 1 chapter(s) in page store {daemon.url('pages-0001.git')}" in out.stdout
    order = read_board_json(bare, f"available_work/{work_id}.json")
    assert not any(f.startswith("pages/") and not f.endswith(".gitkeep") for f in board_files(bare))
    for page in order["pages"]:
        assert page["store"] == daemon.url("pages-0001.git")
        data = subprocess.run(["git", "--git-dir", str(store), "cat-file", "blob", f"main:{page['path']}"],
                              capture_output=True, check=True).stdout
        assert hashlib.sha256(data).hexdigest() == page["sha256"]
        assert git_out(store, "rev-parse", f"main:{page['path']}").strip() == page["blob"]
    assert json.loads(git_out(store, "show", f"main:{MANIFEST}"))["chapters"] == 1

    run_worker(url, tmp_path / "w")
    record = completed_record(bare, work_id)
    assert [p["text"].replace(" ", "") for p in record["result"]["pages"]] == ["PAGE1OFC1", "PAGE2OFC1"]
    # the worker keeps its copy of the store, but not the pages it read
    (cache,) = (tmp_path / "w" / "stores").iterdir()
    assert git_out(cache, "count-objects", "-v").split("\n")[:1] == ["count: 0"]
    assert not any((cache / "objects" / "pack").iterdir())


def test_store_over_smart_http_is_read_with_the_boards_token(http_board, tmp_path):
    server, url, bare = http_board
    make_bare(server.root / "pages-0001.git")
    chapter = text_chapter(tmp_path / "src", chapter="C2")
    host("publish", "--repo-url", url, "--page-store", server.url("pages.git"), str(chapter))
    work_id = make_work_id("Stored", "C2")
    raw_order = git_out(bare, "show", f"main:available_work/{work_id}.json")
    assert server.token not in raw_order  # the order names the store without credentials
    assert read_board_json(bare, f"available_work/{work_id}.json")["pages"][0]["store"] == \
        server.url("pages-0001.git", with_token=False)
    run_worker(url, tmp_path / "w")
    assert ids_by_state(bare)["completed"] == [work_id]
    assert any("pages-0001.git" in r for r in server.requests)


def test_store_that_refuses_the_token_sends_the_order_to_retry(http_board, tmp_path):
    server, url, bare = http_board
    other_root = tmp_path / "other-host"
    other_root.mkdir()
    make_bare(other_root / "pages-0001.git")
    with GitHttpServer(other_root, token="another-token") as other:  # another host: the board's token is not sent
        chapter = text_chapter(tmp_path / "src", chapter="C3")
        host("publish", "--repo-url", url, "--page-store", other.url("pages.git"), str(chapter))
        proc = run_worker(url, tmp_path / "w")
    work_id = make_work_id("Stored", "C3")
    error = last_error(bare, work_id)
    assert error.startswith(f"page 001.png: page store {other.url('pages-0001.git', with_token=False)} refused "
                            "access (")
    assert "the board's token must be able to read it (same host), or the store must be public. Will retry." in error
    assert "another-token" not in proc.stdout + proc.stderr + error


def test_store_that_is_gone_sends_the_order_to_retry_and_nothing_is_lost(board, tmp_path):
    chapter = text_chapter(tmp_path / "src", chapter="C4")
    base = tmp_path / "stores" / "pages.git"
    base.parent.mkdir()
    host("publish", "--repo-url", str(board), "--page-store", str(base), str(chapter))
    store = tmp_path / "stores" / "pages-0001.git"
    moved = store.rename(tmp_path / "stores" / "elsewhere.git")
    run_worker(str(board), tmp_path / "w")
    work_id = make_work_id("Stored", "C4")
    error = last_error(board, work_id)
    assert error.startswith(f"page 001.png: page store {store} is gone (")
    assert error.endswith("the host must restore it. Will retry.")
    moved.rename(store)  # the host restores it: the retry succeeds
    run_worker(str(board), tmp_path / "w", "--max-failures", "30", "--poll-seconds", "0.5", "--max-work", "1")
    assert ids_by_state(board)["completed"] == [work_id]


def test_tampered_store_page_is_refused_by_sha256(board, tmp_path):
    chapter = text_chapter(tmp_path / "src", chapter="C5")
    base = tmp_path / "pages.git"
    host("publish", "--repo-url", str(board), "--page-store", str(base), str(chapter))
    store = tmp_path / "pages-0001.git"
    work_id = make_work_id("Stored", "C5")
    # someone adds another image to the store and points the order's first page at it
    other = subprocess.run(["git", "--git-dir", str(store), "hash-object", "-w", "--stdin"],
                           input=(chapter / "002.png").read_bytes() + b"tampered", capture_output=True,
                           check=True).stdout.decode().strip()
    tree = subprocess.run(["git", "--git-dir", str(store), "mktree"], input=f"100644 blob {other}\tx.png\n",
                          capture_output=True, text=True, check=True).stdout.strip()
    commit = subprocess.run(["git", "--git-dir", str(store), "commit-tree", tree, "-p", "main", "-m", "tamper"],
                            capture_output=True, text=True, check=True, env={"GIT_AUTHOR_NAME": "x",
                            "GIT_AUTHOR_EMAIL": "x@x", "GIT_COMMITTER_NAME": "x", "GIT_COMMITTER_EMAIL": "x@x",
                            "PATH": "/usr/bin:/bin"}).stdout.strip()
    subprocess.run(["git", "--git-dir", str(store), "update-ref", "refs/heads/main", commit], check=True)
    order = read_board_json(board, f"available_work/{work_id}.json")
    order["pages"][0]["blob"] = other
    editor = client(board, tmp_path / "editor")
    editor.update_main(lambda v: ({f"available_work/{work_id}.json": editor.repo.write_blob(
        json.dumps(order).encode())}, "test: someone edits an order"))
    run_worker(str(board), tmp_path / "w")
    error = last_error(board, work_id)
    assert error.startswith(f"page 1 of 2: page 001.png: sha256 mismatch: order says {order['pages'][0]['sha256']}, file has ")
    assert error.endswith(f"; from page store {store}")


def test_stores_roll_over_when_full_and_chapters_are_never_split(board, tmp_path):
    src = tmp_path / "src"
    for n in range(1, 4):
        text_chapter(src, series="Big", chapter=f"ch{n}", pages=2, size=(600, 400))
    chapter_bytes = sum(p.stat().st_size for p in (src / "Big" / "ch1").iterdir())
    limit_gb = 1.5 * chapter_bytes / 1e9  # one chapter a store
    base = tmp_path / "pages.git"
    out = host("publish", "--repo-url", str(board), "--page-store", str(base), "--store-limit", f"{limit_gb:.9f}",
               str(src / "Big"))
    assert out.stdout.splitlines()[:3] == [f"Pages of 1 chapter(s) in page store {tmp_path / f'pages-000{n}.git'}"
                                           for n in (1, 2, 3)]
    for n in (1, 2, 3):
        store = tmp_path / f"pages-000{n}.git"
        manifest = json.loads(git_out(store, "show", f"main:{MANIFEST}"))
        assert manifest["chapters"] == 1 and manifest["number"] == n
        work_id = make_work_id("Big", f"ch{n}")
        order = read_board_json(board, f"available_work/{work_id}.json")
        assert {p["store"] for p in order["pages"]} == {str(store)}
    # publishing again adds nothing to any store
    again = host("publish", "--repo-url", str(board), "--page-store", str(base), str(src / "Big"))
    assert "Pages of" not in again.stdout and "skipped 3" in again.stdout
    assert json.loads(git_out(tmp_path / "pages-0003.git", "show", f"main:{MANIFEST}"))["chapters"] == 1
    # a fourth chapter goes into the last store while it has room
    text_chapter(src, series="Big", chapter="ch4", pages=1, size=(60, 40))
    more = host("publish", "--repo-url", str(board), "--page-store", str(base), "--store-limit", f"{limit_gb:.9f}",
                str(src / "Big" / "ch4"))
    assert f"page store {tmp_path / 'pages-0001.git'}" in more.stdout


def test_local_pages_warn_once_the_board_is_large_and_still_publish(board, tmp_path):
    chapter = text_chapter(tmp_path / "src", chapter="C6")
    out = host("publish", "--repo-url", str(board), str(chapter), env={**__import__("os").environ,
                                                                    "WMS_PAGES_WARNING_MB": "0.001"})
    assert "Published 1 order(s), 0.0 MB" in out.stdout.splitlines()
    assert "Warning: this board holds about 0 MB and these chapters add 0 MB of pages to it; history keeps them " \
           "for good. Past 0 MB, publish with --page-store URL" in out.stderr
    chapter2 = text_chapter(tmp_path / "src", chapter="C7")
    quiet = host("publish", "--repo-url", str(board), str(chapter2))
    assert "Warning" not in quiet.stderr


def test_store_urls_and_credentials():
    assert store_url("https://h/org/pages.git", 1) == "https://h/org/pages-0001.git"
    assert store_url("https://h/org/pages/", 12) == "https://h/org/pages-0012"
    board = parse_repo_url("https://x-access-token:tok-abc@h.example/org/board.git")
    same = related_remote("https://h.example/org/pages-0001.git", board)
    assert same.env == board.env and same.env  # the board's token
    other = related_remote("https://elsewhere.example/org/pages-0001.git", board)
    assert other.env == {}
    port = related_remote("https://h.example:8443/org/pages-0001.git", board)
    assert port.env == {}
    with pytest.raises(InvalidRepoUrl, match="is on this machine, but the board is not; refused"):
        related_remote("/home/volunteer/photos.git", board)
    assert related_remote("/srv/pages-0001.git", parse_repo_url("/srv/board.git")).url == "/srv/pages-0001.git"


def test_after_collect_the_store_can_be_deleted_and_the_dataset_loses_nothing(board, tmp_path):
    import shutil

    chapter = text_chapter(tmp_path / "src", chapter="C8")
    host("publish", "--repo-url", str(board), "--page-store", str(tmp_path / "pages.git"), str(chapter))
    run_worker(str(board), tmp_path / "w")
    host("collect", "--repo-url", str(board), "--out", str(tmp_path / "ds"))
    shutil.rmtree(tmp_path / "pages-0001.git")  # what docs/HOST.md says the host may do after collect
    again = host("collect", "--repo-url", str(board), "--out", str(tmp_path / "ds2"), "--include-archived")
    assert "Collected 1 new chapter(s)" in again.stdout
    for folder in ("ds", "ds2"):
        (line,) = (tmp_path / folder / "results.jsonl").read_text().splitlines()
        record = json.loads(line)
        assert [p["text"].replace(" ", "") for p in record["pages"]] == ["PAGE1OFC8", "PAGE2OFC8"]
