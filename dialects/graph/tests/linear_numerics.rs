//! `graph.merge-linear` and `graph.fuse-horizontal` must not change what a graph computes:
//! each of their filetests, and a few extra corners (transposed gemm operands, f64, a
//! strided and dilated second conv, a graph-output sibling), runs through the interpreter
//! before and after the passes on seeded inputs, agreeing within 1e-5 relative to the
//! largest output magnitude. A second run of the passes must change nothing.

mod common;

fn check(label: &str, src: &str, lists: &[String]) -> (usize, usize) {
    common::check(label, src, lists, 1e-5)
}

const FILES: &[&str] = &[
    "merge_linear.kir",
    "merge_linear_two_uses.kir",
    "fuse_horizontal.kir",
    "fuse_horizontal_relu.kir",
    "fuse_horizontal_geometry.kir",
];

#[test]
fn linear_filetests_keep_semantics() {
    let dir = common::filetest_dir();
    for name in FILES {
        let src = std::fs::read_to_string(dir.join(name)).unwrap();
        let runs = common::run_lines(&src);
        let (b, a) = check(name, &src, &runs);
        println!("{name}: {b} → {a} ops");
        if name.contains("two_uses") || name.contains("geometry") {
            assert_eq!(b, a, "{name}: a pass fired where it must not");
        } else {
            assert!(
                a < b || name.contains("horizontal"),
                "{name}: nothing merged"
            );
        }
    }
}

#[test]
fn gemm_transposes_and_f64() {
    let src = r#"graph @g(%a: f32[5,3]) -> (f32[3,2]) {
  %b1 = const f32[4,5] random(seed=1, min=-1.0, max=1.0)
  %c1 = const f32[4] random(seed=2, min=-1.0, max=1.0)
  %g1 = graph.gemm(%a, %b1, %c1) {alpha=-1.5, beta=0.25, transA=1, transB=1} : f32[3,4]
  %b2 = const f32[2,4] random(seed=3, min=-1.0, max=1.0)
  %g2 = graph.gemm(%g1, %b2) {alpha=2.0, transB=1, act="tanh"} : f32[3,2]
  return %g2
}
"#;
    let runs = ["graph.merge-linear".to_string()];
    assert_eq!(check("gemm", src, &runs), (5, 3));
    assert_eq!(check("gemm f64", &src.replace("f32", "f64"), &runs), (5, 3));
}

#[test]
fn pointwise_then_strided_dilated_conv() {
    let src = r#"graph @c(%x: f32[2,3,9,9]) -> (f32[2,4,3,3]) {
  %w1 = const f32[6,3,1,1] random(seed=1, min=-1.0, max=1.0)
  %b1 = const f32[6] random(seed=2, min=-1.0, max=1.0)
  %c1 = graph.conv(%x, %w1, %b1) : f32[2,6,9,9]
  %w2 = const f32[4,6,3,3] random(seed=3, min=-1.0, max=1.0)
  %c2 = graph.conv(%c1, %w2) {strides=[2,2], dilations=[2,2]} : f32[2,4,3,3]
  return %c2
}
"#;
    assert_eq!(
        check("conv", src, &["graph.merge-linear".to_string()]),
        (5, 3)
    );
}

#[test]
fn horizontal_siblings_as_graph_outputs_and_transposed_gemm() {
    let src = r#"graph @h(%a: f32[3,5]) -> (f32[3,4], f32[3,2], f32[3,2]) {
  %w1 = const f32[4,5] random(seed=1, min=-1.0, max=1.0)
  %c1 = const f32[1,4] random(seed=2, min=-1.0, max=1.0)
  %g1 = graph.gemm(%a, %w1, %c1) {beta=0.5, transB=1} : f32[3,4]
  %w2 = const f32[2,5] random(seed=3, min=-1.0, max=1.0)
  %g2 = graph.gemm(%a, %w2) {beta=0.5, transB=1} : f32[3,2]
  %r = graph.sigmoid(%g2) : f32[3,2]
  return %g1, %g2, %r
}
"#;
    // %g2 has two readers (the sigmoid and the graph output), so it is no activation
    // candidate and fuses with %g1.
    let (b, a) = check("gemm siblings", src, &["graph.fuse-horizontal".to_string()]);
    assert_eq!((b, a), (6, 6));
}
