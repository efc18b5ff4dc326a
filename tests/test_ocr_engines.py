"""The two engines, real: RapidOCR from packaged models (no download), Tesseract by subprocess."""
from __future__ import annotations

import site
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from pipelines.engines.base import BlockRequest
from pipelines.exceptions import EngineError, EngineTimeout, EngineUnavailable
from tests.ocr_fixtures.helpers import guard_network
from pipelines.synthetic import cjk_font, latin_font

needs_cjk = pytest.mark.skipif(cjk_font() is None, reason="no Japanese font: install the Debian package fonts-ipafont-gothic")


def english_line(text="HELLO WORLD", size=(420, 90)):
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((20, 25), text, font=ImageFont.truetype(latin_font(), 36), fill="black")
    return np.asarray(img)


def japanese_column(text="今日は学校", fsize=36):
    img = Image.new("RGB", (fsize * 3, fsize * (len(text) + 2)), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(cjk_font(), fsize)
    for i, ch in enumerate(text):
        draw.text((fsize, fsize + i * fsize * 1.05), ch, font=font, fill="black")
    return np.asarray(img)


@pytest.fixture(scope="module")
def rapid():
    """RapidOCR built with the network blocked and RapidOCR's downloader booby-trapped."""
    import rapidocr.inference_engine.onnxruntime.main as ort_main
    from rapidocr.utils import download_file

    def no_download(*a, **kw):
        raise AssertionError("RapidOCR tried to download a file")

    saved = (download_file.DownloadFile.run, ort_main.DownloadFile.run)
    download_file.DownloadFile.run = ort_main.DownloadFile.run = staticmethod(no_download)
    try:
        with guard_network() as attempts:
            from pipelines.engines.rapidocr_engine import RapidOcrEngine

            engine = RapidOcrEngine(threads=2, timeout=60)
            lines = engine.read_page(english_line())
        assert attempts == []
    finally:
        download_file.DownloadFile.run, ort_main.DownloadFile.run = saved
    engine.first_lines = lines
    yield engine
    engine.close()


def test_rapidocr_models_come_from_the_installed_package(rapid):
    from pipelines.engines.rapidocr_engine import model_paths

    roots = [Path(p).resolve() for p in site.getsitepackages() + [site.getusersitepackages()]]
    for path in model_paths().values():
        assert path.is_file()
        assert any(root in path.resolve().parents for root in roots), f"{path} is not inside site-packages"
        assert "rapidocr" in path.parts
    # the engine was configured with exactly those files; detection with the
    # project's int8 copy of the installed detector (tests/test_ocr_int8.py)
    from pipelines.engines.rapidocr_engine import detection_model

    assert rapid.precision == "int8"
    assert Path(str(rapid._ocr.cfg.Det.model_path)) == detection_model("int8")[0]
    assert Path(str(rapid._ocr.cfg.Rec.model_path)) == model_paths()["rec"]


def test_rapidocr_read_with_network_blocked(rapid):
    assert [ln.text for ln in rapid.first_lines] == ["HELLO WORLD"]
    line = rapid.first_lines[0]
    x1, y1, x2, y2 = line.rect
    assert 10 <= x1 < 40 and 15 <= y1 < 40 and x2 > 250 and line.score > 0.9


@needs_cjk
def test_rapidocr_reads_vertical_japanese(rapid):
    lines = rapid.read_page(japanese_column("今日は学校"))
    assert [ln.text for ln in lines] == ["今日は学校"]
    x1, y1, x2, y2 = lines[0].rect
    assert y2 - y1 > 3 * (x2 - x1)  # reported as a tall (vertical) box


def test_rapidocr_blank_page_has_no_lines(rapid):
    assert rapid.read_page(np.full((200, 300, 3), 255, np.uint8)) == []


def test_rapidocr_timeout_policy(rapid, monkeypatch):
    real = rapid._ocr

    def slow(*a, **kw):
        time.sleep(1.0)
        return real(*a, **kw)

    monkeypatch.setattr(rapid, "_ocr", slow)
    monkeypatch.setattr(rapid, "timeout", 0.2)
    with pytest.raises(EngineTimeout, match="longer than") as err:
        rapid.read_page(english_line())
    assert not err.value.permanent
    monkeypatch.setattr(rapid, "_ocr", real)
    monkeypatch.setattr(rapid, "timeout", 60)
    assert [ln.text for ln in rapid.read_page(english_line())] == ["HELLO WORLD"]  # works again afterwards


def test_rapidocr_internal_failure_is_transient_engine_error(rapid, monkeypatch):
    def broken(*a, **kw):
        raise RuntimeError("onnxruntime: bad allocation")

    monkeypatch.setattr(rapid, "_ocr", broken)
    with pytest.raises(EngineError, match="RapidOCR failed.*bad allocation") as err:
        rapid.read_page(english_line())
    assert not err.value.permanent


def test_rapidocr_missing_model_is_permanent(monkeypatch, tmp_path):
    from pipelines.engines import rapidocr_engine

    monkeypatch.setattr(rapidocr_engine, "model_paths", lambda: {"det": tmp_path / "gone.onnx", "rec": tmp_path / "gone2.onnx"})
    with pytest.raises(EngineUnavailable, match="model .* is missing; reinstall") as err:
        rapidocr_engine.RapidOcrEngine()
    assert err.value.permanent


# -- Tesseract -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tess(rapid):
    from pipelines.engines.tesseract_engine import TesseractEngine

    return TesseractEngine(detector=rapid, timeout=60)


def test_tesseract_reads_english_block(tess):
    img = english_line("OPEN THE DOOR")
    out = tess.read_blocks(img, [BlockRequest((0, 0, img.shape[1], img.shape[0]), False, "eng")])
    assert out == [["OPEN THE DOOR"]]


@needs_cjk
def test_tesseract_reads_vertical_and_horizontal_japanese(tess, tmp_path):
    col = japanese_column("今日は学校", fsize=40)
    page = Image.new("RGB", (700, 400), "white")
    ImageDraw.Draw(page).text((20, 20), "明日は雨", font=ImageFont.truetype(cjk_font(), 40), fill="black")
    page.paste(Image.fromarray(col), (560, 0))
    arr = np.asarray(page)
    blocks = [BlockRequest((560, 0, 560 + col.shape[1], col.shape[0]), True, "jpn"),
              BlockRequest((0, 0, 220, 90), False, "jpn")]
    out = tess.read_blocks(arr, blocks, str(tmp_path))
    assert ["".join(t).replace(" ", "") for t in out] == ["今日は学校", "明日は雨"]
    assert list(tmp_path.iterdir()) == []  # crops are cleaned up


def test_tesseract_missing_language_names_debian_package(tess, monkeypatch):
    monkeypatch.setattr(tess, "languages", tess.languages - {"jpn_vert"})
    img = english_line()
    with pytest.raises(EngineUnavailable, match="tesseract-ocr-jpn-vert") as err:
        tess.read_blocks(img, [BlockRequest((0, 0, 50, 50), True, "jpn")])
    assert err.value.permanent


def test_tesseract_missing_binary_names_debian_package(rapid, monkeypatch):
    import pytesseract

    from pipelines.engines.tesseract_engine import TesseractEngine

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    with pytest.raises(EngineUnavailable, match="sudo apt-get install tesseract-ocr"):
        TesseractEngine(detector=rapid)


def test_tesseract_timeout_kills_the_run(tess, monkeypatch):
    monkeypatch.setattr(tess, "timeout", 0.001)
    img = english_line()
    with pytest.raises(EngineTimeout, match="took longer than") as err:
        tess.read_blocks(img, [BlockRequest((0, 0, img.shape[1], img.shape[0]), False, "eng")])
    assert not err.value.permanent


def test_tesseract_engine_reports_version(tess):
    assert tess.version.startswith("tesseract 5") or tess.version.startswith("tesseract 4")
    assert tess.reads_lines is False and len(tess.read_page(english_line())) == 1
