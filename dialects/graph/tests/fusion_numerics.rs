//! The fusion passes must not change what a graph computes: every fusion filetest (and a
//! few extra graphs covering the corners of the BN fold and the epilogue) runs through the
//! interpreter before and after its passes on seeded inputs, and the outputs must agree
//! within 1e-5 relative to the largest output magnitude.

use kiln_core::PassManager;
use kiln_graph::{interp, passes, text};

mod common;

fn check(label: &str, src: &str, lists: &[String]) -> (usize, usize) {
    common::check(label, src, lists, 1e-5)
}

/// The filetests written for the fusion passes.
const PREFIXES: &[&str] = &[
    "fuse_activation",
    "fuse_batchnorm",
    "fuse_bias",
    "fuse_pad",
    "fuse_residual",
    "remove_identity",
    "fusion_lecture",
    "fusion_multi_edge",
];

#[test]
fn fusion_filetests_keep_semantics() {
    let files = common::filetests(PREFIXES);
    assert!(files.len() >= 10, "fusion filetests missing");
    for (label, src) in &files {
        let (b, a) = check(label, src, &common::run_lines(src));
        println!("{label}: {b} → {a} ops");
        // The files showing a pass *not* firing must come out unchanged.
        if ["two_uses", "graph_output", "not_constant"]
            .iter()
            .any(|k| label.contains(k))
        {
            assert_eq!(b, a, "{label}: a pass fired where it must not");
        }
    }
}

const ALL: &str = "graph.remove-identity,graph.fuse-pad,graph.fuse-batchnorm,graph.fuse-bias,graph.fuse-residual,graph.fuse-activation";

#[test]
fn gemm_bn_with_column_bias_and_f64() {
    // C is a column [3, 1] scaled by beta: the folded C becomes [3, 4]. In f64 the fold
    // must hold too.
    let src = r#"graph @g(%a: f32[3,5]) -> (f32[3,4]) {
  %b = const f32[5,4] random(seed=1, min=-1.0, max=1.0)
  %c = const f32[3,1] random(seed=2, min=-1.0, max=1.0)
  %g = graph.gemm(%a, %b, %c) {alpha=0.75, beta=-2.0} : f32[3,4]
  %s = const f32[4] random(seed=3, min=0.5, max=1.5)
  %o = const f32[4] random(seed=4, min=-1.0, max=1.0)
  %m = const f32[4] random(seed=5, min=-1.0, max=1.0)
  %v = const f32[4] random(seed=6, min=0.5, max=2.0)
  %y = graph.batch_normalization(%g, %s, %o, %m, %v) : f32[3,4]
  %r = graph.hard_swish(%y) : f32[3,4]
  return %r
}
"#;
    assert_eq!(check("gemm", src, &[ALL.into()]), (9, 3));
    let f64_src = src.replace("f32", "f64");
    assert_eq!(check("gemm f64", &f64_src, &[ALL.into()]), (9, 3));
}

#[test]
fn grouped_conv_bn_prelu_residual() {
    // Conv → BN → Add(x) → PRelu on a grouped, strided conv: everything lands in one op.
    let src = r#"graph @c(%x: f32[2,4,5,5]) -> (f32[2,4,3,3], f32[2,4,3,3]) {
  %w = const f32[4,2,3,3] random(seed=1, min=-1.0, max=1.0)
  %b = const f32[4] random(seed=2, min=-1.0, max=1.0)
  %c = graph.conv(%x, %w, %b) {strides=[2,2], pads=[1,1,1,1], group=2} : f32[2,4,3,3]
  %s = const f32[4] random(seed=3, min=0.5, max=1.5)
  %o = const f32[4] random(seed=4, min=-1.0, max=1.0)
  %m = const f32[4] random(seed=5, min=-1.0, max=1.0)
  %v = const f32[4] random(seed=6, min=0.5, max=2.0)
  %y = graph.batch_normalization(%c, %s, %o, %m, %v) : f32[2,4,3,3]
  %skip = graph.max_pool(%x) {kernel_shape=[3,3], strides=[2,2], pads=[1,1,1,1]} : f32[2,4,3,3]
  %sum = graph.add(%skip, %y) : f32[2,4,3,3]
  %slope = const f32[4,1,1] dense<[0.1, -0.2, 0.3, 0.5]>
  %r = graph.prelu(%sum, %slope) : f32[2,4,3,3]
  %id = graph.identity(%r) : f32[2,4,3,3]
  return %id, %skip
}
"#;
    let (before, after) = check("grouped conv", src, &[ALL.into()]);
    assert_eq!((before, after), (13, 5));
}

#[test]
fn swish_and_gelu_fuse_exactly() {
    let src = r#"graph @s(%x: f32[2,3,4]) -> (f32[2,3,6], f32[2,3,6]) {
  %w = const f32[4,6] random(seed=1, min=-1.0, max=1.0)
  %m1 = graph.matmul(%x, %w) : f32[2,3,6]
  %s = graph.swish(%m1) : f32[2,3,6]
  %m2 = graph.matmul(%x, %w) : f32[2,3,6]
  %g = graph.gelu(%m2) : f32[2,3,6]
  return %s, %g
}
"#;
    let g0 = text::parse(src).unwrap();
    let mut g1 = g0.clone();
    PassManager::new(passes::registry().parse(ALL).unwrap())
        .run(&mut g1)
        .unwrap();
    let ins = common::seeded_inputs(&g0, 100);
    // The fused activation uses the same f64 expression as the op: bit-identical.
    assert_eq!(
        interp::run(&g0, &ins).unwrap(),
        interp::run(&g1, &ins).unwrap()
    );
    assert_eq!(g1.node_count(), 3);
}
