"""Run an ONNX model with onnxruntime on .npy inputs and write each output as .npy.

    python scripts/ort_run.py MODEL.onnx OUTDIR NAME=FILE.npy [NAME=FILE.npy ...]
        [--opt-level disable|basic|extended|all] [--check]

Outputs go to OUTDIR/<name>.npy with `/` and `:` in names replaced by `_` (kiln's rule).
The CPU provider runs with one thread, so results are deterministic. `--check` first
runs onnx.checker on the model (full check, with shape inference). `--opt-level` picks
onnxruntime's graph optimisation level; the default `all` is what a deployment uses and
is where onnxruntime fuses QDQ node groups into its integer kernels (QLinearConv,
QLinearMatMul, ...).
"""

import argparse
import os
import sys

import numpy as np
import onnxruntime as ort

LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def file_stem(name):
    return name.replace("/", "_").replace(":", "_")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("outdir")
    ap.add_argument("inputs", nargs="*", metavar="NAME=FILE.npy")
    ap.add_argument("--opt-level", choices=sorted(LEVELS), default="all")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()

    if a.check:
        import onnx

        onnx.checker.check_model(onnx.load(a.model), full_check=True)

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = LEVELS[a.opt_level]
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])

    feeds = {}
    for spec in a.inputs:
        name, sep, path = spec.partition("=")
        if not sep:
            sys.exit(f"input '{spec}' is not NAME=FILE.npy")
        feeds[name] = np.load(path)
    wanted = [i.name for i in sess.get_inputs()]
    missing = [n for n in wanted if n not in feeds]
    if missing:
        sys.exit(f"missing inputs: {', '.join(missing)} (the model takes {', '.join(wanted)})")

    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, feeds)
    os.makedirs(a.outdir, exist_ok=True)
    for name, value in zip(names, outs):
        path = os.path.join(a.outdir, file_stem(name) + ".npy")
        np.save(path + ".tmp.npy", value)
        os.replace(path + ".tmp.npy", path)
        print(f"{name}: {value.dtype} {list(value.shape)} -> {path}")


if __name__ == "__main__":
    main()
