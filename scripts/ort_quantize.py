"""Quantise an ONNX model with onnxruntime's static QDQ flow (the models kiln's QDQ
importer is tested on).

    python scripts/ort_quantize.py MODEL.onnx OUT.qdq.onnx [--calib N] [--seed S]
        [--per-tensor] [--save-calib DIR] [--exclude NODE ..]

onnxruntime's recommended path: `quant_pre_process` (ONNX shape inference and
onnxruntime's basic graph optimisations, which fold BatchNormalization into Conv; the
symbolic shape pass is skipped, it needs sympy), then `quantize_static` with
QuantFormat.QDQ, u8 activations, s8 weights (per channel unless --per-tensor) and MinMax
calibration. Calibration samples are seeded uniform [0, 1) float32 tensors of each input's
static shape, sample k drawn from numpy.random.default_rng(seed + k), so the same
arguments give the same model on every machine. `--save-calib DIR` also writes them as
`DIR/<k>.npy` (one-input models) or `DIR/<k>_<input>.npy`, the layout `kiln --calib DIR`
reads.
"""

import argparse
import os
import tempfile

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process


def input_shapes(path, fixed=()):
    """(name, dims) of each graph input; `fixed` gives dynamic ones as NAME=D0,D1,..."""
    given = dict((k, [int(d) for d in v.split(",")]) for k, v in (f.split("=", 1) for f in fixed))
    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    shapes = []
    for i in m.graph.input:
        if i.name in inits:
            continue
        dims = given.get(i.name) or [d.dim_value for d in i.type.tensor_type.shape.dim]
        if any(d <= 0 for d in dims):
            raise SystemExit(f"input '{i.name}' has a dynamic shape; give a static model or its shape")
        shapes.append((i.name, dims))
    return shapes


def samples(shapes, n, seed):
    out = []
    for k in range(n):
        rng = np.random.default_rng(seed + k)
        out.append({name: rng.random(dims, dtype=np.float32) for name, dims in shapes})
    return out


class Reader(CalibrationDataReader):
    def __init__(self, data):
        self.it = iter(data)

    def get_next(self):
        return next(self.it, None)


def file_stem(name):
    return name.replace("/", "_").replace(":", "_")


def save_samples(data, out_dir):
    """Writes samples as `kiln --calib DIR` reads them: `<k>.npy`, or `<k>_<input>.npy`."""
    os.makedirs(out_dir, exist_ok=True)
    for k, feed in enumerate(data):
        for name, v in feed.items():
            stem = f"{k}" if len(feed) == 1 else f"{k}_{file_stem(name)}"
            np.save(os.path.join(out_dir, stem + ".npy"), v)


def quantize_qdq(model, dst, data, tmp, per_channel=True, symbolic_shapes=False, exclude=()):
    """onnxruntime's static QDQ model of `model` calibrated on `data`, written to `dst`.

    `symbolic_shapes` first tries quant_pre_process's symbolic shape pass (needs sympy;
    ../shared/peers/ort_bench.py does so) and falls back to skipping it."""
    pre = os.path.join(tmp, "pre.onnx")
    try:
        quant_pre_process(model, pre, skip_symbolic_shape=not symbolic_shapes)
    except Exception:
        if not symbolic_shapes:
            raise
        quant_pre_process(model, pre, skip_symbolic_shape=True)
    m = onnx.load(pre)
    opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        # Per-axis DequantizeLinear needs opset 13.
        from onnx import version_converter

        onnx.save(version_converter.convert_version(m, 13), pre)
    quantize_static(
        pre,
        dst,
        Reader(data),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=list(exclude),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--calib", type=int, default=8, help="calibration samples (default 8)")
    ap.add_argument("--seed", type=int, default=1000, help="seed of sample 0 (default 1000)")
    ap.add_argument("--per-tensor", action="store_true", help="per-tensor weights")
    ap.add_argument("--save-calib", metavar="DIR")
    ap.add_argument("--exclude", action="append", default=[], metavar="NODE",
                    help="leave node NODE in float (quantize_static's nodes_to_exclude; repeatable)")
    a = ap.parse_args()

    shapes = input_shapes(a.model)
    data = samples(shapes, a.calib, a.seed)
    if a.save_calib:
        save_samples(data, a.save_calib)

    with tempfile.TemporaryDirectory() as tmp:
        out_tmp = os.path.join(tmp, "out.onnx")
        quantize_qdq(a.model, out_tmp, data, tmp, per_channel=not a.per_tensor, exclude=a.exclude)
        # Written next to the destination, then renamed: never half a model.
        dst_tmp = a.out + ".tmp"
        onnx.save(onnx.load(out_tmp), dst_tmp)
        os.replace(dst_tmp, a.out)
    print(f"{a.model} -> {a.out} ({a.calib} calibration samples, seed {a.seed})")


if __name__ == "__main__":
    main()
