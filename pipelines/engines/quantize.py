"""Build the int8 text-detection model that `rapidocr_engine` uses by default.

Detection is most of RapidOCR's time on a manga page (a 1024-px pass of the
PP-OCRv6 small detector: 0.77 s on one core of the development machine). The
same network with int8 weights and activations runs in 0.18 s there and reads
the dev set as well as the float model (docs/OCR.md has the figures).
Recognition stays in float: its int8 version lost accuracy for little speed.

The int8 model ships in ``pipelines/engines/models/`` with a manifest
(``int8.json``) naming the float model it was built from (its sha256). The
engine uses it only when that float model is the one installed, so upgrading
rapidocr without rebuilding falls back to float (slower, never wrong).

How it is built (deterministic for the same libraries and fonts):

1. the installed float model is converted from opset 11 to opset 17 (per-channel
   ``DequantizeLinear`` needs opset >= 13);
2. calibration inputs are exactly what RapidOCR feeds its detector for the
   project's own synthetic pages (`pipelines.synthetic`, Japanese and English,
   seeds 500-515, Japanese in Noto Sans CJK when installed; never the
   evaluation set);
3. ONNX Runtime static quantization: QDQ format, MinMax calibration, per-channel
   int8 weights with ``reduce_range`` (7-bit, which avoids the saturation of
   u8s8 arithmetic on CPUs without VNNI), uint8 activations; the two
   transposed convolutions of the output head stay in float (they draw the
   text-probability map; in float they cost nothing measurable and keep the
   dev-set figures equal to the float model's).

Rebuild after upgrading rapidocr or onnxruntime (needs the ``onnx`` package from
requirements.txt and a Japanese font)::

    python -m pipelines.engines.quantize            # writes pipelines/engines/models/
    python -m pipelines.engines.quantize --out /tmp/models
"""
from __future__ import annotations

import argparse
import json
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np

from pipelines.engines.int8_model import INT8_NAME, MANIFEST, MODELS_DIR, sha256_file

CALIBRATION_SEEDS = range(500, 516)
OPSET = 17
NOTO_CJK = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"


def calibration_font() -> str:
    """Noto Sans CJK Regular (Debian fonts-noto-cjk, which run.sh installs) when present, else any Japanese font."""
    from pipelines.synthetic import cjk_font

    noto = Path(NOTO_CJK)
    font = str(noto) if noto.is_file() else cjk_font()
    if not font:
        raise SystemExit("calibration needs a Japanese font: apt-get install fonts-noto-cjk")
    return font


def calibration_inputs() -> list[np.ndarray]:
    """The tensors RapidOCR's float detector receives for the calibration pages."""
    from pipelines.engines.rapidocr_engine import RapidOcrEngine
    from pipelines.synthetic import render_page

    font = calibration_font()
    engine = RapidOcrEngine(precision="fp32", threads=2)
    captured: list[np.ndarray] = []
    try:
        engine.detect(np.asarray(render_page(seed=0, lang="en").image.convert("RGB")))  # loads the detector
        det = engine._ocr.text_det
        inner = det.session

        class Recorder:
            def __call__(self, x):
                captured.append(np.array(x, copy=True))
                return inner(x)

            def __getattr__(self, name):
                return getattr(inner, name)

        det.session = Recorder()
        for lang in ("ja", "en"):
            for seed in CALIBRATION_SEEDS:
                page = render_page(seed=seed, lang=lang, font=font)
                engine.detect(np.asarray(page.image.convert("RGB")))
        det.session = inner
    finally:
        engine.close()
    return captured


def build(out_dir: Path = MODELS_DIR) -> dict:
    """Quantize the installed float detector into ``out_dir``; return the manifest written."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from pipelines.engines.rapidocr_engine import model_paths

    source = model_paths()["det"]
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = calibration_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        converted = Path(tmp) / "det17.onnx"
        prepared = Path(tmp) / "det17_pre.onnx"
        model = onnx.load(str(source))
        onnx.save(version_converter.convert_version(model, OPSET), str(converted))
        quant_pre_process(str(converted), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        input_name = graph.input[0].name
        head = [node.name for node in graph.node if node.op_type == "ConvTranspose"]

        class Reader(CalibrationDataReader):
            def __init__(self):
                self._it = iter([{input_name: x} for x in inputs])

            def get_next(self):
                return next(self._it, None)

        target = out_dir / INT8_NAME
        quantize_static(str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, reduce_range=True, nodes_to_exclude=head)
    manifest = {
        "model": INT8_NAME,
        "sha256": sha256_file(target),
        "source": source.name,
        "source_sha256": sha256_file(source),
        "rapidocr": version("rapidocr"),
        "onnxruntime": version("onnxruntime"),
        "onnx": version("onnx"),
        "opset": OPSET,
        "calibration": f"pipelines.synthetic pages ja+en, seeds {CALIBRATION_SEEDS.start}-{CALIBRATION_SEEDS.stop - 1}"
                       f" ({len(inputs)} detector inputs), Japanese font {Path(calibration_font()).name}",
        "method": "static QDQ, MinMax, per-channel int8 weights with reduce_range, uint8 activations;"
                  f" float: {', '.join(head)}",
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build the int8 detection model from the installed RapidOCR model.")
    ap.add_argument("--out", type=Path, default=MODELS_DIR, help=f"output folder (default: {MODELS_DIR})")
    args = ap.parse_args(argv)
    manifest = build(args.out)
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
