"""The ocr_chapter kind end to end: a chapter folder published, a worker OCRs it, text on the board."""
import json
import subprocess

import pytest

from pipelines.metrics import cer
from tests.helpers import ROOT, board_files, host, ids_by_state, read_board_json, worker_cmd
from pipelines.synthetic import cjk_font, write_sample_chapter
from tests.test_invariants import client


@pytest.mark.skipif(cjk_font() is None, reason="needs a Japanese font: apt-get install fonts-noto-cjk")
def test_published_chapter_is_read_in_reading_order(board, tmp_path):
    chapter = tmp_path / "Demo Series" / "Chapter 7"
    truth = write_sample_chapter(chapter, pages=2)
    host("publish", "--repo-url", str(board), str(chapter))
    proc = subprocess.run(worker_cmd(str(board), tmp_path / "w", "--max-failures", "1"), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (work_id,) = ids_by_state(board)["completed"]
    path = next(f for f in board_files(board) if f.startswith("completed_work/") and f.endswith(f"{work_id}.json"))
    record = read_board_json(board, path)
    assert (record["series"], record["chapter"], record["kind"]) == ("Demo Series", "Chapter 7", "ocr_chapter")
    result = record["result"]
    assert result["engine"] == "rapidocr" and result["engine_version"] and result["timings"]["total"] > 0
    assert [p["name"] for p in result["pages"]] == ["001.png", "002.png"]
    for page, expected in zip(result["pages"], truth):
        assert (page["img_width"], page["img_height"]) == expected.image.size
        assert cer(expected.text, page["text"]) <= 0.05
        assert all({"box", "vertical", "font_size", "lines_coords", "lines"} <= set(b) for b in page["blocks"])


def test_tampered_page_on_the_board_fails_with_a_clear_error(board, tmp_path):
    chapter = tmp_path / "S" / "C1"
    chapter.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (200, 300), "white").save(chapter / "001.png")
    host("publish", "--repo-url", str(board), str(chapter))
    (work_id,) = ids_by_state(board)["available"]
    editor = client(board, tmp_path / "editor")
    editor.update_main(lambda v: ({f"pages/{work_id}/001.png": editor.repo.write_blob(b"not the page")},
                                  "test: someone replaced a page"))
    proc = subprocess.run(worker_cmd(str(board), tmp_path / "w", "--max-failures", "1"), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    state = ids_by_state(board)
    assert state["failed"] == [work_id] or state["retry"] == [work_id]
    folder = "failed_work" if state["failed"] else "retry_queue"
    error = read_board_json(board, f"{folder}/{work_id}.json")["errors"][-1]["error"]
    assert "sha256" in error and "001.png" in error
