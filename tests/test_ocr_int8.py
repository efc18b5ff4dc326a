"""The int8 text detector: built from the installed float model, as accurate, and a safe fallback."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines.engines import quantize
from pipelines.engines import rapidocr_engine as re_
from pipelines.exceptions import EngineUnavailable
from pipelines.synthetic import cjk_font, render_page


def rect_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def matched_share(lines_a, lines_b, iou=0.5) -> float:
    """Share of lines in a that have a line in b overlapping at least ``iou``."""
    if not lines_a:
        return 1.0 if not lines_b else 0.0
    hits = sum(1 for la in lines_a if any(rect_iou(la.rect, lb.rect) >= iou for lb in lines_b))
    return hits / len(lines_a)


@pytest.fixture(scope="module")
def detectors():
    int8 = re_.RapidOcrEngine(threads=2, precision="int8")
    fp32 = re_.RapidOcrEngine(threads=2, precision="fp32")
    yield int8, fp32
    int8.close()
    fp32.close()


@pytest.fixture(scope="module")
def pages():
    langs = (["ja"] if cjk_font() else []) + ["en"]
    # seeds away from the calibration seeds (500-515)
    return [np.asarray(render_page(seed=seed, lang=lang).image.convert("RGB")) for lang in langs for seed in (3, 4)]


def test_shipped_int8_model_was_built_from_the_installed_detector():
    manifest = json.loads((re_.INT8_DIR / "int8.json").read_text(encoding="utf-8"))
    model = re_.INT8_DIR / manifest["model"]
    assert quantize.sha256_file(model) == manifest["sha256"]
    assert quantize.sha256_file(re_.model_paths()["det"]) == manifest["source_sha256"]
    assert manifest["source"] == re_.model_paths()["det"].name
    assert re_.detection_model() == (model, "int8")
    assert re_.detection_model("fp32") == (re_.model_paths()["det"], "fp32")


def test_engine_reports_its_detector_precision(detectors):
    int8, fp32 = detectors
    assert "det int8" in int8.version and int8.precision == "int8"
    assert "det fp32" in fp32.version and fp32.precision == "fp32"


def test_int8_detector_finds_the_lines_the_float_one_finds(detectors, pages):
    int8, fp32 = detectors
    for page in pages:
        a, b = fp32.read_page(page), int8.read_page(page)
        assert len(a) >= 5
        assert matched_share(a, b) >= 0.95 and matched_share(b, a) >= 0.95
        # and the lines read the same
        from collections import Counter

        same = sum((Counter(ln.text for ln in a) & Counter(ln.text for ln in b)).values())
        assert same >= 0.9 * len(a)


SHIPPED = re_.INT8_DIR


def copy_models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    shutil.copytree(SHIPPED, folder)
    return folder


@pytest.mark.parametrize("damage, why", [
    ("built_elsewhere", "built from another PP-OCRv6_det_small.onnx"),
    ("damaged", "is damaged"),
    ("missing", "is missing"),
    ("bad_manifest", "unreadable"),
])
def test_int8_model_not_trusted_falls_back_to_float(tmp_path, monkeypatch, caplog, damage, why):
    folder = copy_models(tmp_path)
    manifest_path = folder / "int8.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    model = folder / manifest["model"]
    if damage == "built_elsewhere":
        manifest["source_sha256"] = "0" * 64
        manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    elif damage == "damaged":
        with open(model, "r+b") as fh:
            fh.seek(1000)
            fh.write(b"\0" * 16)
    elif damage == "missing":
        model.unlink()
    else:
        manifest_path.write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(re_, "INT8_DIR", folder)
    with caplog.at_level(logging.WARNING, logger=re_.__name__):
        path, precision = re_.detection_model()
    assert (path, precision) == (re_.model_paths()["det"], "fp32")
    assert why in caplog.text and "using the float model" in caplog.text
    # an intact copy of the same files is trusted
    good = copy_models(tmp_path / "good")
    monkeypatch.setattr(re_, "INT8_DIR", good)
    assert re_.detection_model() == (good / manifest["model"], "int8")


def test_precision_from_environment_and_bad_values(monkeypatch, caplog):
    monkeypatch.setenv("WMS_OCR_PRECISION", "fp32")
    assert re_.detection_model()[1] == "fp32"
    monkeypatch.setenv("WMS_OCR_PRECISION", "int4")
    with caplog.at_level(logging.WARNING, logger=re_.__name__):
        assert re_.detection_model()[1] == "int8"
    assert "WMS_OCR_PRECISION=int4 is not one of int8, fp32" in caplog.text
    with pytest.raises(EngineUnavailable, match="unknown OCR precision 'int4'"):
        re_.detection_model("int4")


def test_cli_precision_option(tmp_path):
    from click.testing import CliRunner

    from pipelines.__main__ import cli

    page = tmp_path / "page.png"
    render_page(seed=3, lang="en").image.save(page)
    texts = {}
    for precision in ("int8", "fp32"):
        res = CliRunner().invoke(cli, ["ocr", str(page), "--lang", "eng", "--precision", precision])
        assert res.exit_code == 0, res.output
        texts[precision] = res.output
    assert texts["int8"] == texts["fp32"] and len(texts["int8"].split()) > 10
    res = CliRunner().invoke(cli, ["ocr", str(page), "--precision", "int4"])
    assert res.exit_code == 2 and "'int4' is not one of 'int8', 'fp32'" in res.output


@pytest.mark.skipif(not Path(quantize.NOTO_CJK).is_file() and cjk_font() is None, reason="no Japanese font")
def test_rebuilding_the_int8_model_reproduces_the_shipped_one(tmp_path, pages):
    """python -m pipelines.engines.quantize rebuilds a model that detects what the shipped one does."""
    pytest.importorskip("onnx")
    manifest = quantize.build(tmp_path)
    shipped = json.loads((re_.INT8_DIR / "int8.json").read_text(encoding="utf-8"))
    assert manifest["source_sha256"] == shipped["source_sha256"]
    assert {k: manifest[k] for k in ("model", "opset", "method")} == {k: shipped[k] for k in ("model", "opset", "method")}
    shipped_engine = re_.RapidOcrEngine(threads=2, precision="int8")
    try:
        from rapidocr import RapidOCR

        params = {"Global.log_level": "error", "Global.use_cls": False, "Det.model_path": str(tmp_path / manifest["model"]),
                  "Rec.model_path": str(re_.model_paths()["rec"]), "Det.limit_type": "max",
                  "Det.limit_side_len": re_.DET_SIDE, "Global.max_side_len": re_.MAX_SIDE}
        other = RapidOCR(params=params)
        for page in pages:
            bgr = np.ascontiguousarray(page[:, :, ::-1])
            a = shipped_engine.detect(page)
            boxes = other(bgr, use_det=True, use_cls=False, use_rec=False).boxes
            b = [re_.Line([[float(x), float(y)] for x, y in np.asarray(box).tolist()]) for box in boxes]
            assert matched_share(a, b) >= 0.95 and matched_share(b, a) >= 0.95
    finally:
        shipped_engine.close()
