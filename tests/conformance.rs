//! ONNX backend node tests (generated from the `onnx` package's own case definitions by
//! `scripts/gen_conformance.py`) run through import + the reference interpreter, and every
//! case that passes also through the JIT, which must agree with the interpreter.
//!
//! Every case whose ops kiln supports must pass. Cases that kiln refuses (unsupported op or
//! feature) are counted and listed. The cases of the ops the spine promises must pass too,
//! except the ones named with a reason in `tests/conformance_exceptions.txt`; an exception
//! that starts passing fails the test, so the list cannot go stale.
//!
//! `KILN_CONF_FILTER=substr` runs only matching cases; `--nocapture` shows the report.

mod common;

use kiln::onnx::{ImportOptions, load_model, proto::TensorProto, tensor_from_proto};
use kiln_core::{ErrorKind, Tensor};
use kiln_graph::interp::Interpreter;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// ONNX's own backend-test tolerances.
const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;
/// The JIT against the interpreter (issue: rtol 1e-4); the absolute floor covers results
/// that cancel to near zero, where a different summation order moves the last bits.
const JIT_RTOL: f64 = 1e-4;
const JIT_ATOL: f64 = 1e-6;

/// Cases whose JIT program runs some op through the reference path (reported, not failed).
static JIT_REFERENCE_CASES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

enum Outcome {
    Pass,
    Fail(String),
    Unsupported(String),
}

/// Reads `<prefix>_0.pb`, `<prefix>_1.pb`, ... with the tensor names they carry.
fn named_tensors(dir: &Path, prefix: &str) -> Result<Vec<(String, Tensor)>, String> {
    numbered(dir, prefix)
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|e| e.to_string())?;
            let proto = TensorProto::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
            let t = tensor_from_proto(&proto, None).map_err(|e| e.to_string())?;
            Ok((proto.name.clone().unwrap_or_default(), t))
        })
        .collect()
}

fn numbered(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    while dir.join(format!("{prefix}_{}.pb", v.len())).exists() {
        v.push(dir.join(format!("{prefix}_{}.pb", v.len())));
    }
    v
}

fn run_case(dir: &Path) -> Outcome {
    let mut sets: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    sets.sort();
    // Cases run the way a user would run them: dynamic dims fixed with `--shape` from the
    // test inputs, and the inputs given as known values, so that those feeding shape
    // operands (Reshape shapes, Resize scales, reduction axes) become constants.
    let first: Vec<(String, Tensor)> = match sets.first() {
        Some(set) => match named_tensors(set, "input") {
            Ok(v) => v,
            Err(e) => return Outcome::Unsupported(format!("test data: {e}")),
        },
        None => Vec::new(),
    };
    let opts = ImportOptions {
        shapes: first
            .iter()
            .map(|(n, t)| (n.clone(), t.shape().to_vec()))
            .collect(),
        static_inputs: first.into_iter().collect(),
        ..ImportOptions::default()
    };
    let g = match load_model(&dir.join("model.onnx"), &opts) {
        Ok(g) => g,
        Err(e) if matches!(e.kind, ErrorKind::UnsupportedOp | ErrorKind::Unsupported) => {
            return Outcome::Unsupported(e.to_string());
        }
        Err(e) => return Outcome::Fail(format!("import: {e}")),
    };
    let interp = match Interpreter::new(&g) {
        Ok(i) => i,
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    // The JIT runs every case too and must agree with the interpreter.
    let mut jit = match kiln_loop::compile(&g, 2) {
        Ok(c) => c,
        Err(e) => return Outcome::Fail(format!("jit compile: {e}")),
    };
    if !jit.program.reference_ops.is_empty() {
        JIT_REFERENCE_CASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    for set in sets {
        let (given, expected) = match (named_tensors(&set, "input"), named_tensors(&set, "output"))
        {
            (Ok(i), Ok(o)) => (i, o.into_iter().map(|(_, t)| t).collect::<Vec<_>>()),
            (Err(e), _) | (_, Err(e)) => return Outcome::Unsupported(format!("test data: {e}")),
        };
        // Frozen inputs are gone from the signature; feed the rest by name.
        let mut inputs = Vec::new();
        for &v in g.inputs() {
            match given.iter().find(|(n, _)| *n == g.value(v).name) {
                Some((_, t)) => inputs.push(t.clone()),
                None => {
                    return Outcome::Fail(format!("no test data for input '{}'", g.value(v).name));
                }
            }
        }
        let got = match interp.run(&inputs) {
            Ok(g) => g,
            Err(e) if matches!(e.kind, ErrorKind::UnsupportedOp | ErrorKind::Unsupported) => {
                return Outcome::Unsupported(e.to_string());
            }
            Err(e) => return Outcome::Fail(format!("run: {e}")),
        };
        if got.len() != expected.len() {
            return Outcome::Fail(format!(
                "{} outputs, expected {}",
                got.len(),
                expected.len()
            ));
        }
        for (k, (g, w)) in got.iter().zip(&expected).enumerate() {
            if let Err(e) = common::compare(g, w, RTOL, ATOL) {
                return Outcome::Fail(format!("output {k}: {e}"));
            }
        }
        let from_jit = match jit.run(&inputs) {
            Ok(t) => t,
            Err(e) => return Outcome::Fail(format!("jit run: {e}")),
        };
        for (k, (j, i)) in from_jit.iter().zip(&got).enumerate() {
            if let Err(e) = common::compare(j, i, JIT_RTOL, JIT_ATOL) {
                return Outcome::Fail(format!("jit output {k} vs interpreter: {e}"));
            }
        }
    }
    Outcome::Pass
}

/// Case-name prefixes of the ops the spine issue requires, lower-cased as the ONNX test
/// names spell them (`test_<op>...`).
const REQUIRED: &[&str] = &[
    "conv",
    "convtranspose",
    "gemm",
    "matmul",
    "relu",
    "clip",
    "leakyrelu",
    "prelu",
    "sigmoid",
    "hardsigmoid",
    "hardswish",
    "tanh",
    "erf",
    "gelu",
    "softmax",
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "sqrt",
    "exp",
    "log",
    "neg",
    "abs",
    "reciprocal",
    "max",
    "min",
    "sum",
    "mean",
    "batchnorm",
    "instancenorm",
    "layer_normalization",
    "lrn",
    "maxpool",
    "averagepool",
    "globalaveragepool",
    "globalmaxpool",
    "concat",
    "split",
    "slice",
    "reshape",
    "flatten",
    "transpose",
    "squeeze",
    "unsqueeze",
    "pad",
    "resize",
    "upsample",
    "reduce_mean",
    "reduce_sum",
    "reduce_max",
    "reduce_min",
    "cast",
    "constant",
    "constantofshape",
    "shape",
    "gather",
    "expand",
    "tile",
    "where",
    "equal",
    "identity",
    "dropout",
];

/// The op a case tests, judged by its name: the longest required prefix after `test_`.
fn required_op(case: &str) -> Option<&'static str> {
    let rest = case.strip_prefix("test_")?;
    REQUIRED
        .iter()
        .filter(|op| rest == **op || rest.starts_with(&format!("{op}_")))
        .max_by_key(|op| op.len())
        .copied()
}

/// `*` matches any run of characters; patterns let one justified line cover a family of
/// cases (every float16 variant of Cast, say).
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len()).any(|i| glob(tail, &name[head.len() + i..]))
        }
    }
}

fn exceptions() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(common::repo_root().join("tests/conformance_exceptions.txt"))
            .unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (case, why) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (case.to_string(), why.trim().to_string())
        })
        .collect()
}

#[test]
fn onnx_backend_node_tests() {
    let root = common::data_dir("conformance");
    common::require_dir(&root);
    let filter = std::env::var("KILN_CONF_FILTER").unwrap_or_default();
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("readable")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").exists())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(&filter))
        .collect();
    cases.sort();
    let exceptions = exceptions();
    let excuse = |name: &str| exceptions.keys().find(|p| glob(p, name)).cloned();
    let (mut passed, mut failed, mut unsupported) = (0, Vec::new(), Vec::new());
    let mut excused = BTreeSet::new();
    let mut used_patterns = BTreeSet::new();
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let outcome = std::panic::catch_unwind(|| run_case(dir))
            .unwrap_or_else(|_| Outcome::Fail("panicked".into()));
        match outcome {
            Outcome::Pass => {
                passed += 1;
                if let Some(p) = excuse(&name) {
                    failed.push((
                        name,
                        format!(
                            "passes now, but '{p}' in tests/conformance_exceptions.txt excuses it"
                        ),
                    ));
                }
            }
            Outcome::Fail(why) | Outcome::Unsupported(why) if excuse(&name).is_some() => {
                used_patterns.insert(excuse(&name).expect("checked"));
                excused.insert((name, why));
            }
            Outcome::Fail(why) => failed.push((name, why)),
            Outcome::Unsupported(why) if required_op(&name).is_some() => {
                failed.push((name, format!("required op unsupported: {why}")))
            }
            Outcome::Unsupported(why) => unsupported.push((name, why)),
        }
    }
    println!("\n== unsupported ({}) ==", unsupported.len());
    for (n, why) in &unsupported {
        println!("  {n}: {why}");
    }
    println!(
        "\n== excused by tests/conformance_exceptions.txt ({}) ==",
        excused.len()
    );
    for (n, why) in &excused {
        println!("  {n}: {why}");
    }
    if filter.is_empty() {
        for p in exceptions.keys().filter(|p| !used_patterns.contains(*p)) {
            failed.push((
                p.clone(),
                "stale exception: it matches no failing case".to_string(),
            ));
        }
    }
    println!("\n== failed ({}) ==", failed.len());
    for (n, why) in &failed {
        println!("  {n}: {why}");
    }
    println!(
        "\nconformance: {} cases: {passed} passed, {} failed, {} unsupported, {} excused",
        cases.len(),
        failed.len(),
        unsupported.len(),
        excused.len()
    );
    println!(
        "jit: every passing case also ran through the JIT; {} of them use the reference path for some op",
        JIT_REFERENCE_CASES.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(!cases.is_empty(), "no conformance cases matched");
    assert!(
        failed.is_empty(),
        "{} conformance cases failed (see the report above)",
        failed.len()
    );
}
