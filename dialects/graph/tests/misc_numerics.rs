//! `graph.fuse-cast`, `graph.fuse-transpose-matmul` and `graph.fuse-eltwise-sum` must not
//! change what a graph computes: each of their filetests runs through the interpreter
//! before and after its passes on seeded inputs, and the outputs must agree within 1e-5
//! relative to the largest output magnitude.

use kiln_core::{PassManager, Tensor};
use kiln_graph::ops::Const;
use kiln_graph::{Graph, interp, passes, text};
use std::path::Path;

const PREFIXES: &[&str] = &["fuse_cast", "fuse_transpose_matmul", "fuse_eltwise_sum"];

fn seeded_inputs(g: &Graph) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ty = g.value(v).ty.clone().expect("typed input");
            let c = Const::random(ty, 200 + i as u64, -300.0, 300.0);
            (*c.value.expect("random data")).clone()
        })
        .collect()
}

fn assert_close(label: &str, got: &[Tensor], want: &[Tensor]) {
    assert_eq!(got.len(), want.len(), "{label}: output count");
    for (k, (a, b)) in got.iter().zip(want).enumerate() {
        assert_eq!(a.ty(), b.ty(), "{label}: output {k} type");
        let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
        let scale = b.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let err = (x - y).abs() / scale;
            assert!(
                err <= 1e-5,
                "{label}: output {k} element {i}: {x} vs original {y} (rel {err:.2e})"
            );
        }
    }
}

/// Runs `pipelines` and compares the interpreter before and after; a second run must change
/// nothing and say so. Returns the op counts before and after.
fn check(label: &str, src: &str, pipelines: &[String]) -> (usize, usize) {
    let before = text::parse(src).unwrap_or_else(|e| panic!("{label}: {e}"));
    let mut after = before.clone();
    let registry = passes::registry();
    let run = |g: &mut Graph| {
        let mut changed = false;
        for list in pipelines {
            let mut pm = PassManager::new(registry.parse(list).unwrap());
            changed |= pm.run(g).unwrap_or_else(|e| panic!("{label}: {list}: {e}"));
        }
        changed
    };
    let changed = run(&mut after);
    if !changed {
        assert_eq!(
            text::print(&after),
            text::print(&before),
            "{label}: unreported change"
        );
    }
    let printed = text::print(&after);
    assert!(!run(&mut after), "{label}: a second run reported a change");
    assert_eq!(
        text::print(&after),
        printed,
        "{label}: a second run changed the IR"
    );
    let ins = seeded_inputs(&before);
    let want = interp::run(&before, &ins).unwrap_or_else(|e| panic!("{label}: {e}"));
    let got = interp::run(&after, &ins).unwrap_or_else(|e| panic!("{label}: rewritten: {e}"));
    assert_close(label, &got, &want);
    (before.node_count(), after.node_count())
}

#[test]
fn misc_filetests_keep_semantics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/filetests/graph");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".kir") && PREFIXES.iter().any(|pre| name.starts_with(pre))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 6, "filetests missing in {}", dir.display());
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let runs: Vec<String> = src
            .lines()
            .filter_map(|l| l.trim().strip_prefix("// RUN:"))
            .map(|l| l.trim().to_string())
            .collect();
        let label = f.file_name().unwrap().to_string_lossy();
        let (b, a) = check(&label, &src, &runs);
        println!("{label}: {b} → {a} ops");
        if ["lossy", "perm", "shared"]
            .iter()
            .any(|k| label.contains(k))
        {
            assert_eq!(b, a, "{label}: a pass fired where it must not");
        }
    }
}

#[test]
fn attention_scores_and_f64_sums() {
    // Q·Kᵀ/√d with the Kᵀ folded into the matmul, and a weighted residual sum in f64.
    let src = r#"graph @att(%q: f32[2,3,5,4], %k: f32[2,3,5,4], %a: f64[3,4], %b: f64[3,4]) -> (f32[2,3,5,5], f64[3,4]) {
  %kt = graph.transpose(%k) {perm=[0,1,3,2]} : f32[2,3,4,5]
  %s = graph.matmul(%q, %kt) : f32[2,3,5,5]
  %d = const f32[] dense<[0.5]>
  %y = graph.mul(%s, %d) : f32[2,3,5,5]
  %c = const f64[] dense<[0.25]>
  %ma = graph.mul(%a, %c) : f64[3,4]
  %e = const f64[1] dense<[-1.5]>
  %mb = graph.mul(%e, %b) : f64[3,4]
  %z = graph.sub(%ma, %mb) : f64[3,4]
  return %y, %z
}
"#;
    let passes = ["graph.fuse-transpose-matmul,graph.fuse-eltwise-sum,graph.dce".to_string()];
    assert_eq!(check("attention", src, &passes), (9, 4));
}
