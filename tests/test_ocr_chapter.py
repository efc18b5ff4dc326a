"""End to end: synthetic pages through the ocr_chapter processor and the CLI (real engines)."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from coordination.runtime.processors import OrderError, WorkContext
from pipelines import default_registry
from pipelines.__main__ import cli
from pipelines.metrics import cer, char_f1
from tests.ocr_fixtures.helpers import LocalServer, image_bytes, no_outside_network, server  # noqa: F401 (fixtures)
from pipelines.synthetic import cjk_font, render_page

needs_cjk = pytest.mark.skipif(cjk_font() is None, reason="no Japanese font: install the Debian package fonts-ipafont-gothic")
WORK = "test-series--ch-001"


class DictBoard:
    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.reads: list[str] = []

    def read_file(self, path: str) -> bytes:
        self.reads.append(path)
        if path not in self.files:
            raise FileNotFoundError(f"{path} is not in the board")
        return self.files[path]


@pytest.fixture(scope="module")
def process():
    """The registry's ocr_chapter processor: the engine loads once for the module."""
    return default_registry().get("ocr_chapter")


def board_page(files, name, data):
    path = f"pages/{WORK}/{name}"
    files[path] = data
    return {"name": name, "path": path, "sha256": hashlib.sha256(data).hexdigest()}


def make_ctx(tmp_path, files):
    progress = []
    ctx = WorkContext(work_id=WORK, workdir=tmp_path, board=DictBoard(files), log=logging.getLogger("t"),
                      on_progress=lambda d, t, m: progress.append((d, t)))
    return ctx, progress


def order(pages, **options):
    return {"schema": 1, "work_id": WORK, "kind": "ocr_chapter", "series": "S", "chapter": "ch 001",
            "pages": pages, "options": {"engine": "rapidocr", "lang": "auto", **options}}


@needs_cjk
def test_chapter_from_board_and_url(process, server, tmp_path):
    ja = render_page(seed=7, lang="ja")
    en = render_page(seed=7, lang="en")
    files: dict[str, bytes] = {}
    p1 = board_page(files, "001.png", image_bytes(ja.image))
    server.routes["/002.jpg"] = LocalServer.body(image_bytes(en.image, "JPEG", quality=92), "image/jpeg")
    p2 = {"name": "002.jpg", "url": server.base + "/002.jpg"}
    ctx, progress = make_ctx(tmp_path, files)
    result = process(order([p1, p2]), ctx)
    json.dumps(result)  # JSON-serialisable
    assert result["engine"] == "rapidocr" and "rapidocr 3.10.0" in result["engine_version"]
    timings = result["timings"]
    assert timings["total"] > 0 and timings["engine"] > 0 and "layout" in timings
    # the models' own seconds, inside the engine's call
    assert 0 < timings["detect"] and 0 < timings["recognize"] and timings["detect"] + timings["recognize"] <= timings["engine"]
    assert timings["layout"] >= 0 and timings["scale"] >= 0
    assert [p["name"] for p in result["pages"]] == ["001.png", "002.jpg"]
    assert progress[0] == (0, 2) and progress[-1] == (2, 2)
    for page, truth in zip(result["pages"], (ja, en)):
        assert (page["img_width"], page["img_height"]) == truth.image.size
        assert char_f1(truth.text, page["text"]) >= 0.97, page["text"]
        assert cer(truth.text, page["text"]) <= 0.06, page["text"]
        for block in page["blocks"]:
            assert set(block) == {"box", "vertical", "font_size", "lines_coords", "lines"}
            assert len(block["lines_coords"]) == len(block["lines"])
            assert block["vertical"] is (truth.lang == "ja")
        assert len(page["text"].split("\n")) == len(truth.blocks)  # one block per bubble
    assert result["pages"][0]["lang"] == "ja" and result["pages"][1]["lang"] == "en"


@needs_cjk
@pytest.mark.parametrize("seed", [11, 12])
def test_japanese_synthetic_quality(process, tmp_path, seed):
    truth = render_page(seed=seed, lang="ja")
    files: dict[str, bytes] = {}
    ctx, _ = make_ctx(tmp_path, files)
    page = process(order([board_page(files, "p.png", image_bytes(truth.image))]), ctx)["pages"][0]
    assert char_f1(truth.text, page["text"]) >= 0.98
    assert cer(truth.text, page["text"]) <= 0.05, (truth.text, page["text"])


def test_english_synthetic_reading_order(process, tmp_path):
    truth = render_page(seed=21, lang="en")
    files: dict[str, bytes] = {}
    ctx, _ = make_ctx(tmp_path, files)
    page = process(order([board_page(files, "p.png", image_bytes(truth.image))], lang="eng"), ctx)["pages"][0]
    assert cer(truth.text, page["text"]) <= 0.03, (truth.text, page["text"])
    assert not any(line.strip().isdigit() for line in page["text"].split("\n"))  # page number dropped


@needs_cjk
def test_tesseract_engine_through_the_processor(process, tmp_path):
    truth = render_page(seed=31, lang="ja")
    files: dict[str, bytes] = {}
    ctx, _ = make_ctx(tmp_path, files)
    result = process(order([board_page(files, "p.png", image_bytes(truth.image))], engine="tesseract"), ctx)
    assert result["engine"] == "tesseract" and result["engine_version"].startswith("tesseract")
    page = result["pages"][0]
    assert char_f1(truth.text, page["text"]) >= 0.85, page["text"]
    assert " " not in page["text"]  # no stray spaces inside Japanese
    assert result["timings"]["recognize"] > 0 and result["timings"]["detect"] > 0  # Tesseract's reading, the detector
    assert result["timings"]["layout"] >= 0


# -- failures become OrderError, never a crash ----------------------------------------

def test_traversal_path_refused_without_reading(process, tmp_path):
    ctx, _ = make_ctx(tmp_path, {})
    with pytest.raises(OrderError, match=r"page 1 of 1: .*refused") as err:
        process(order([{"name": "x", "path": f"pages/{WORK}/../../etc/passwd", "sha256": "0" * 64}]), ctx)
    assert err.value.permanent and ctx.board.reads == []


def test_non_image_page_is_permanent(process, tmp_path):
    files: dict[str, bytes] = {}
    ok = board_page(files, "001.png", image_bytes(Image.new("RGB", (100, 100), "white")))
    bad = board_page(files, "002.png", b"<html>not an image</html>")
    ctx, _ = make_ctx(tmp_path, files)
    with pytest.raises(OrderError, match=r"page 2 of 2: page 002.png: not an image") as err:
        process(order([ok, bad]), ctx)
    assert err.value.permanent


def test_server_error_is_transient(process, server, tmp_path, monkeypatch):
    from pipelines import pages

    monkeypatch.setattr(pages, "BACKOFF", 0.01)
    monkeypatch.setattr(pages.fetch_url, "__kwdefaults__", {**pages.fetch_url.__kwdefaults__, "backoff": 0.01})
    server.routes["/503.png"] = LocalServer.status(503)
    ctx, _ = make_ctx(tmp_path, {})
    with pytest.raises(OrderError, match="HTTP 503") as err:
        process(order([{"name": "a.png", "url": server.base + "/503.png"}]), ctx)
    assert not err.value.permanent


def test_file_url_refused(process, tmp_path):
    ctx, _ = make_ctx(tmp_path, {})
    with pytest.raises(OrderError, match="scheme 'file' is not accepted") as err:
        process(order([{"name": "a.png", "url": "file:///etc/hostname"}]), ctx)
    assert err.value.permanent


@pytest.mark.parametrize("bad, message", [
    ({"pages": []}, "lists no pages"),
    ({"options": {"engine": "magic"}}, "unknown OCR engine 'magic'"),
    ({"options": {"lang": "fr"}}, "unknown language 'fr'"),
    ({"work_id": "../x"}, "no usable work_id"),
    ({"pages": [{"name": "x"}]}, "needs a 'path' or a 'url'"),
])
def test_malformed_orders_are_permanent(process, tmp_path, bad, message):
    ctx, _ = make_ctx(tmp_path, {})
    o = {**order([{"name": "a", "url": "http://127.0.0.1:9/a.png"}]), **bad}
    with pytest.raises(OrderError, match=message) as err:
        process(o, ctx)
    assert err.value.permanent


def test_stop_request_is_honoured(process, tmp_path):
    files: dict[str, bytes] = {}
    page = board_page(files, "001.png", image_bytes(Image.new("RGB", (100, 100), "white")))
    ctx, _ = make_ctx(tmp_path, files)
    ctx.stop_requested = lambda: True
    with pytest.raises(OrderError, match="stopped on request") as err:
        process(order([page]), ctx)
    assert not err.value.permanent


# -- CLI -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def page_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    out = {}
    for lang in (["ja"] if cjk_font() else []) + ["en"]:
        page = render_page(seed=41, lang=lang)
        path = d / f"{lang}.png"
        page.image.save(path)
        out[lang] = (str(path), page)
    return out


def test_cli_json_lines_are_mokuro_pages(page_files):
    paths = [p for p, _ in page_files.values()]
    res = CliRunner().invoke(cli, ["ocr", *paths, "--format", "json", "--jobs", "2"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["image"] for r in rows] == paths  # input order kept with --jobs 2
    for row, (_, truth) in zip(rows, page_files.values()):
        assert set(row) == {"image", "img_width", "img_height", "blocks", "text"}
        assert cer(truth.text, row["text"]) <= 0.06


def test_cli_text_format(page_files):
    path, truth = page_files["en"]
    res = CliRunner().invoke(cli, ["ocr", path, "--lang", "eng"])
    assert res.exit_code == 0
    assert cer(truth.text, res.stdout) <= 0.03


def test_cli_bad_image_is_a_plain_error_and_others_still_print(page_files, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    path, _ = page_files["en"]
    res = CliRunner().invoke(cli, ["ocr", str(bad), path, "--format", "json"])
    assert res.exit_code == 1
    assert "not an image" in res.stderr and "1 of 2 images failed" in res.stderr
    assert "Traceback" not in res.output
    assert len(res.stdout.splitlines()) == 1


def test_cli_refuses_other_url_schemes():
    res = CliRunner().invoke(cli, ["ocr", "file:///etc/hostname"])
    assert res.exit_code == 1 and "scheme 'file' is not accepted" in res.stderr


def test_cli_engine_unavailable_is_a_click_error(monkeypatch, page_files):
    import pytesseract

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    path, _ = page_files["en"]
    res = CliRunner().invoke(cli, ["ocr", path, "--engine", "tesseract"])
    assert res.exit_code == 1 and "tesseract-ocr" in res.stderr


def test_cli_refuses_unknown_option_values(page_files):
    path, _ = page_files["en"]
    res = CliRunner().invoke(cli, ["ocr", path, "--engine", "magic"])
    assert res.exit_code == 2 and "magic" in res.stderr


def test_module_entry_point_help():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pipelines", "ocr", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert out.returncode == 0 and "--jobs" in out.stdout and "Example" in out.stdout


def test_large_page_coordinates_are_in_original_pixels(process, tmp_path):
    truth = render_page(seed=51, lang="en", size=(2000, 2828))  # read at 1600 px, reported at 2000
    files: dict[str, bytes] = {}
    ctx, _ = make_ctx(tmp_path, files)
    page = process(order([board_page(files, "big.jpg", image_bytes(truth.image, "JPEG", quality=90))]), ctx)["pages"][0]
    assert (page["img_width"], page["img_height"]) == (2000, 2828)
    assert cer(truth.text, page["text"]) <= 0.03
    assert len(page["blocks"]) == len(truth.blocks)
    for block, tb in zip(page["blocks"], truth.blocks):
        for got, want in zip(block["box"], tb.box):
            assert abs(got - want) <= 30, (block["box"], tb.box)
        xs = [x for quad in block["lines_coords"] for x, _ in quad]
        assert min(xs) >= block["box"][0] - 1 and max(xs) <= block["box"][2] + 1


# -- pages in parallel (WMS_OCR_PAGE_JOBS) ------------------------------------------

def test_page_jobs_setting(monkeypatch):
    from pipelines.ocr_chapter import page_jobs

    for value, expected in (("", 1), ("2", 2), ("0", 1), ("lots", 1), ("99", 8)):
        monkeypatch.setenv("WMS_OCR_PAGE_JOBS", value)
        assert page_jobs() == expected


def test_two_page_jobs_keep_page_order_and_name_the_failing_page(monkeypatch, tmp_path):
    from pipelines.ocr_chapter import make_processor

    monkeypatch.setenv("WMS_OCR_PAGE_JOBS", "2")
    process2 = make_processor()
    files: dict[str, bytes] = {}
    truths = [render_page(seed=40 + i, lang="en") for i in range(4)]
    pages = [board_page(files, f"{i + 1:03d}.png", image_bytes(t.image)) for i, t in enumerate(truths)]
    ctx, progress = make_ctx(tmp_path, files)
    result = process2(order(pages, lang="eng"), ctx)
    assert [p["name"] for p in result["pages"]] == ["001.png", "002.png", "003.png", "004.png"]
    for truth, page in zip(truths, result["pages"]):
        assert cer(truth.text, page["text"]) <= 0.03
    assert progress[-1] == (4, 4) and [d for d, _ in progress] == [0, 1, 2, 3, 4]

    bad = board_page(files, "005.png", b"GIF89a truncated")
    ctx, _ = make_ctx(tmp_path, files)
    with pytest.raises(OrderError, match=r"page 3 of 4: page 005.png: ") as err:
        process2(order(pages[:2] + [bad] + pages[3:], lang="eng"), ctx)
    assert err.value.permanent
