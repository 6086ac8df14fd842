#!/usr/bin/env python3
"""Materialise the ONNX node conformance suite as on-disk test data.

Usage: gen_conformance.py OUTDIR

The onnx wheel ships the *generators* of its node tests but not their data
(onnx/backend/test/data/node is absent from the wheel), so we run
`collect_testcases()` and write each case in the standard backend-test layout
that the Rust test harness reads:

    OUTDIR/<case>/model.onnx
    OUTDIR/<case>/test_data_set_<k>/input_<i>.pb     (serialised TensorProto)
    OUTDIR/<case>/test_data_set_<k>/output_<i>.pb

kiln only handles plain tensors, so cases with a sequence / optional / map /
sparse input or output are skipped (and counted) rather than written in a
form the harness would have to special-case.
"""

import hashlib
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper


def stamp_text() -> str:
    # The data depends on the onnx version (the cases and their reference
    # outputs) and on this script (the layout); hashing the script means an
    # edit here regenerates stale data instead of silently keeping it.
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return f"onnx=={onnx.__version__} generator={digest}\n"


def to_tensor_proto(value, name: str) -> TensorProto:
    # Most values are numpy arrays (or numpy scalars, hence asarray); cases for
    # exotic dtypes (float8, int4, ...) hand over ready-made TensorProtos.
    if isinstance(value, TensorProto):
        tensor = TensorProto()
        tensor.CopyFrom(value)
        tensor.name = name
        return tensor
    return numpy_helper.from_array(np.asarray(value), name)


def all_plain_tensors(graph: onnx.GraphProto) -> bool:
    return all(
        vi.type.WhichOneof("value") == "tensor_type"
        for vi in list(graph.input) + list(graph.output)
    )


def write_case(case, case_dir: Path) -> None:
    graph = case.model.graph
    case_dir.mkdir()
    (case_dir / "model.onnx").write_bytes(case.model.SerializeToString())
    for k, (inputs, outputs) in enumerate(case.data_sets):
        ds_dir = case_dir / f"test_data_set_{k}"
        ds_dir.mkdir()
        for kind, values, infos in (
            ("input", inputs, graph.input),
            ("output", outputs, graph.output),
        ):
            if len(values) != len(infos):
                raise ValueError(
                    f"{case.name}: {len(values)} {kind} values for {len(infos)} graph {kind}s"
                )
            for i, (value, info) in enumerate(zip(values, infos)):
                tensor = to_tensor_proto(value, info.name)
                (ds_dir / f"{kind}_{i}.pb").write_bytes(tensor.SerializeToString())


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} OUTDIR", file=sys.stderr)
        return 2
    out_dir = Path(sys.argv[1])
    stamp = stamp_text()
    stamp_path = out_dir / ".stamp"
    if stamp_path.is_file() and stamp_path.read_text() == stamp:
        return 0

    # Imported late: collecting the cases takes seconds, which the up-to-date
    # path above should not pay.
    from onnx.backend.test.case import node

    # The case generators deliberately overflow / divide by zero (inf and NaN
    # cases) and numpy warns about it; that is noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cases = node.collect_testcases()

    # Build beside OUTDIR and rename at the end so an interrupted run never
    # leaves a half-written suite that carries a valid stamp.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp_dir.chmod(0o755)  # mkdtemp makes it private; the suite is ordinary data
    try:
        written = skipped = 0
        for case in cases:
            if all_plain_tensors(case.model.graph):
                write_case(case, tmp_dir / case.name)
                written += 1
            else:
                skipped += 1
        (tmp_dir / ".stamp").write_text(stamp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise

    print(
        f"conformance: wrote {written} cases to {out_dir}, "
        f"skipped {skipped} with non-tensor inputs/outputs (onnx {onnx.__version__})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
