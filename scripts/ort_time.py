#!/usr/bin/env python3
"""onnxruntime fp32 latency of one model, for `kiln bench --ort`.

Usage: ort_time.py MODEL.onnx [--shape NAME=D0,D1,...] [--threads N] [--runs N]
Prints one JSON object: {"median_ms": ..., "threads": ..., "runs": ...}. Inputs are uniform
[0, 1) from a fixed seed; latency of these models does not depend on the values.
"""
import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--shape", action="append", default=[])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    fixed = {}
    for s in a.shape:
        name, dims = s.split("=")
        fixed[name] = [int(d) for d in dims.split(",")]
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for i in sess.get_inputs():
        dims = fixed.get(i.name) or [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        feeds[i.name] = rng.random(dims, dtype=np.float32)
    sess.run(None, feeds)
    times = []
    for _ in range(max(1, a.runs)):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"median_ms": statistics.median(times), "threads": a.threads, "runs": len(times)}))


if __name__ == "__main__":
    main()
