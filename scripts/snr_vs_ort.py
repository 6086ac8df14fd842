#!/usr/bin/env python3
"""Simulated int8 SNR of kiln against onnxruntime's quantize_static, on the same data.

    .venv/bin/python scripts/snr_vs_ort.py [MODEL.onnx ...] [--observer minmax,mse,...]
        [--kiln target/release/kiln] [--shape NAME=D0,D1,..] [--kiln-arg=ARG ..] [--json OUT]

The peer figure is the one ../shared/peers/ort_bench.py reports: onnxruntime's
recommended static path (quant_pre_process, QDQ, per-channel s8 weights, u8
activations, MinMax) calibrated on 8 samples drawn from default_rng(1000 + k), then
evaluated on the samples drawn from default_rng(1..4), the SNR being the worst of the
four. With `--evals N` (N > 4) the seeds 11, 12, .. are added and each column also
prints the mean over all N inputs: the worst of four swings by a decibel or more on
models whose SNR varies from input to input (PP-OCRv4 rec), and on open_nsfw, whose
output is two probabilities, by several. kiln gets exactly the same calibration files (`--calib DIR`) and evaluation
inputs (`kiln run --precision int8 --engine sim --input ..`), once per observer, so
the two columns differ only by the quantiser. Without MODEL arguments the three
example models are measured. With more than four inputs a third line pools every
input's signal and error into one SNR. A last line scores a constant output (fp32's
mean over the calibration samples): where it comes near onnxruntime, the inputs barely
move the model's output and neither column says much. `--samples DIR` replaces the seeded noise by
scripts/photo_samples.py's photographs (the first four evaluation photos are the
worst-of-4 set).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_real_models import INPUT_KINDS  # noqa: E402
from ort_quantize import file_stem, input_shapes, quantize_qdq, samples, save_samples  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CALIB_SEED, CALIB_N = 1000, 8
EVAL_SEEDS = range(1, 5)


def snr_db(ref, x):
    ref, x = ref.astype(np.float64).ravel(), x.astype(np.float64).ravel()
    noise = np.sum((ref - x) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref**2) / noise))


def pooled_db(refs, outs):
    """One SNR over every evaluation input: all signal over all error, so an input whose
    output sits near a grid level by luck cannot lift the figure as it lifts a mean of dB."""
    return snr_db(np.concatenate([r.ravel() for r in refs]), np.concatenate([x.ravel() for x in outs]))


def samples_from(model, directory):
    """--samples DIR: DIR/calib/<k>.npy and DIR/eval/<k>.npy for a one-input model."""
    import onnx

    names = [i.name for i in onnx.load(model, load_external_data=False).graph.input]
    if len(names) != 1:
        sys.exit(f"--samples: {model} has {len(names)} inputs; it takes one-input models")

    def load(sub):
        files = sorted((Path(directory) / sub).glob("*.npy"), key=lambda f: int(f.stem))
        if not files:
            sys.exit(f"--samples: no {sub}/<k>.npy in {directory} (scripts/photo_samples.py writes them)")
        return [{names[0]: np.load(f)} for f in files]

    return load("calib"), load("eval")


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def kiln_outputs(kiln, model, feed, tmp, args, shapes):
    """The first output of `kiln run MODEL --input .. ARGS`."""
    out = Path(tempfile.mkdtemp(dir=tmp))
    cmd = [kiln, "run", model, "-o", str(out)] + [f"--shape={s}" for s in shapes]
    for name, v in feed.items():
        f = out / f"in_{file_stem(name)}.npy"
        np.save(f, v)
        cmd += ["--input", f"{name}={f}"]
    subprocess.run(cmd + args, check=True, stdout=subprocess.DEVNULL)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*")
    ap.add_argument("--observer", default="minmax,percentile,kl,mse")
    ap.add_argument("--kiln", default=str(REPO / "target" / "release" / "kiln"))
    ap.add_argument("--json")
    ap.add_argument("--shape", action="append", default=[], help="NAME=D0,D1,.. (repeatable)")
    ap.add_argument("--evals", type=int, default=4,
                    help="evaluation inputs: seeds 1..4, then 11, 12, ..; the table adds their mean")
    ap.add_argument("--input-range", metavar="LO,HI",
                    help="scale every calibration and evaluation sample from [0, 1) to [LO, HI) "
                         "(models that expect pixel values, e.g. open_nsfw's BGR minus mean: "
                         "-117,138); a supplementary figure, the peer's own is uniform [0, 1)")
    ap.add_argument("--input-kind", choices=sorted(INPUT_KINDS), default="uniform",
                    help="map every calibration and evaluation sample from [0, 1) to the range "
                         "the model's own preprocessing gives, as scripts/real_models.txt does "
                         "(PP-OCRv4 det: imagenet; PP-OCR rec and cls: signed); a supplementary "
                         "figure, the peer's own is uniform [0, 1)")
    ap.add_argument("--samples", metavar="DIR",
                    help="calibrate on DIR/calib/*.npy and evaluate on DIR/eval/*.npy instead of seeded "
                         "noise (scripts/photo_samples.py makes them from photographs); one-input "
                         "models; a supplementary figure, the peer's own is uniform [0, 1)")
    ap.add_argument("--per-input", action="store_true",
                    help="also print each evaluation input's SNR, onnxruntime's and kiln's per observer")
    ap.add_argument("--kiln-arg", action="append", default=[],
                    help="extra argument for `kiln run`, e.g. --kiln-arg=--weight-rounding=nearest")
    a = ap.parse_args()
    if a.input_range and a.input_kind != "uniform":
        ap.error("--input-range and --input-kind both map the [0, 1) draw; give one")
    if a.samples and (a.input_range or a.input_kind != "uniform"):
        ap.error("--samples brings its own inputs; --input-range and --input-kind map the seeded draw")
    models = a.models or [str(p) for p in sorted((REPO / "examples" / "models").glob("*/model.onnx"))]
    observers = a.observer.split(",")
    rows = []
    for model in models:
        shapes = input_shapes(model, a.shape)
        if a.samples:
            calib, evals = samples_from(model, a.samples)
        else:
            calib = samples(shapes, CALIB_N, CALIB_SEED)
            seeds = list(EVAL_SEEDS) + list(range(11, 11 + max(0, a.evals - len(EVAL_SEEDS))))
            evals = [samples(shapes, 1, s)[0] for s in seeds]
        kind = INPUT_KINDS[a.input_kind]
        calib = [{k: kind(v) for k, v in f.items()} for f in calib]
        evals = [{k: kind(v) for k, v in f.items()} for f in evals]
        if a.input_range:
            lo, hi = (float(v) for v in a.input_range.split(","))
            scale = lambda feed: {k: (v * (hi - lo) + lo).astype(np.float32) for k, v in feed.items()}  # noqa: E731
            calib, evals = [scale(f) for f in calib], [scale(f) for f in evals]
        with tempfile.TemporaryDirectory() as tmp:
            cdir = Path(tmp) / "calib"
            save_samples(calib, cdir)
            qdq = os.path.join(tmp, "int8.onnx")
            quantize_qdq(model, qdq, calib, tmp, symbolic_shapes=True)  # as ort_bench.py does
            fp32, q = session(model), session(qdq)
            refs = [fp32.run(None, f)[0] for f in evals]
            n4 = len(EVAL_SEEDS)
            ort_outs = [q.run(None, f)[0] for f in evals]
            ort_snrs = [snr_db(r, o) for r, o in zip(refs, ort_outs)]
            # The trivial quantiser: one output for every input, fp32's mean over the
            # calibration samples. Where it scores near onnxruntime, the inputs barely move
            # the model's output and the comparison measures luck, not quantisation.
            const = np.mean([fp32.run(None, f)[0] for f in calib], axis=0)
            const_snrs = [snr_db(r, const) for r in refs]
            row = {"model": Path(model).parent.name if Path(model).name == "model.onnx" else Path(model).stem,
                   "ort": min(ort_snrs[:n4]), "ort_mean": float(np.mean(ort_snrs)),
                   "ort_pooled": pooled_db(refs, ort_outs), "constant": min(const_snrs[:n4]),
                   "constant_pooled": pooled_db(refs, [const] * len(refs))}
            out_name = fp32.get_outputs()[0].name
            for obs in observers:
                outs = []
                for f in evals:
                    d = kiln_outputs(a.kiln, model, f, tmp, ["--precision", "int8", "--engine", "sim",
                                                             "--calib", str(cdir), "--observer", obs]
                                     + a.kiln_arg, a.shape)
                    outs.append(np.load(d / f"{file_stem(out_name)}.npy"))
                snrs = [snr_db(r, o) for r, o in zip(refs, outs)]
                if a.per_input:
                    print(f"  {obs:10} per input: " + "  ".join(
                        f"{k:.1f}/{o:.1f}" for k, o in zip(snrs, ort_snrs)) + "  (kiln/ort)", flush=True)
                row[obs] = min(snrs[:n4])
                row[obs + "_mean"] = float(np.mean(snrs))
                row[obs + "_pooled"] = pooled_db(refs, outs)
            rows.append(row)
            lines = [(row["model"], "")]
            if len(evals) > n4:
                lines += [(f"  mean of {len(evals)}", "_mean"), (f"  pooled over {len(evals)}", "_pooled")]
            for label, sfx in lines:
                peer = row["ort" + sfx]
                print(f"{label:24} ort {peer:6.2f} dB  " + "  ".join(
                    f"{o} {row[o + sfx]:6.2f} ({row[o + sfx] - peer:+.2f})" for o in observers), flush=True)
            print(f"{'  a constant output':24} {row['constant']:6.2f} dB worst of 4"
                  + (f", {row['constant_pooled']:6.2f} dB pooled" if len(evals) > n4 else "")
                  + " (fp32's mean over the calibration samples, whatever the input)", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
