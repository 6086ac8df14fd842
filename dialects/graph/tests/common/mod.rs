//! The harness every rewrite-numerics test shares: run passes on text IR and check that
//! the interpreter computes the same before and after, and that passes report `changed`
//! exactly (a second run changes nothing and says so).
#![allow(dead_code)]

use kiln_core::{PassManager, Tensor};
use kiln_graph::ops::Const;
use kiln_graph::{Graph, interp, passes, text};
use std::path::PathBuf;

/// `tests/filetests/graph` at the repository root.
pub fn filetest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/filetests/graph")
}

/// The graph filetests whose names start with one of `prefixes`, sorted: `(file name, text)`.
pub fn filetests(prefixes: &[&str]) -> Vec<(String, String)> {
    let dir = filetest_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".kir") && prefixes.iter().any(|pre| name.starts_with(pre))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The `// RUN:` pass lists of a filetest, in order.
pub fn run_lines(src: &str) -> Vec<String> {
    src.lines()
        .filter_map(|l| l.trim().strip_prefix("// RUN:"))
        .map(|l| l.trim().to_string())
        .collect()
}

/// Seeded uniform [-2, 2) data for every graph input (input i uses seed `seed + i`).
pub fn seeded_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ty = g.value(v).ty.clone().expect("typed input");
            let c = Const::random(ty, seed + i as u64, -2.0, 2.0);
            (*c.value.expect("random data")).clone()
        })
        .collect()
}

/// Outputs agree within `tol` relative to the largest reference magnitude.
pub fn assert_close(label: &str, got: &[Tensor], want: &[Tensor], tol: f64) {
    assert_eq!(got.len(), want.len(), "{label}: output count");
    for (k, (a, b)) in got.iter().zip(want).enumerate() {
        assert_eq!(a.ty(), b.ty(), "{label}: output {k} type");
        let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
        let scale = b.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let err = (x - y).abs() / scale;
            assert!(
                err <= tol,
                "{label}: output {k} element {i}: {x} vs before {y} (rel {err:.2e})"
            );
        }
    }
}

/// Runs each pass list in turn; returns whether any reported a change.
pub fn run_lists(label: &str, g: &mut Graph, lists: &[String]) -> bool {
    let registry = passes::registry();
    let mut changed = false;
    for list in lists {
        let mut pm = PassManager::new(registry.parse(list).unwrap());
        changed |= pm.run(g).unwrap_or_else(|e| panic!("{label}: {list}: {e}"));
    }
    changed
}

/// Runs `lists` on the graph in `src` and compares the interpreter before and after on
/// seeded inputs; returns the op counts before and after.
pub fn check(label: &str, src: &str, lists: &[String], tol: f64) -> (usize, usize) {
    let before = text::parse(src).unwrap_or_else(|e| panic!("{label}: {e}"));
    let mut after = before.clone();
    if !run_lists(label, &mut after, lists) {
        assert_eq!(
            text::print(&after),
            text::print(&before),
            "{label}: unreported change"
        );
    }
    let printed = text::print(&after);
    assert!(
        !run_lists(label, &mut after, lists),
        "{label}: a second run reported a change"
    );
    assert_eq!(
        text::print(&after),
        printed,
        "{label}: a second run changed the IR"
    );
    let ins = seeded_inputs(&before, 100);
    let want = interp::run(&before, &ins).unwrap_or_else(|e| panic!("{label}: {e}"));
    let got = interp::run(&after, &ins).unwrap_or_else(|e| panic!("{label}: after: {e}"));
    assert_close(label, &got, &want, tol);
    (before.node_count(), after.node_count())
}
