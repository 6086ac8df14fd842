//! `graph.fold-arith`, `graph.fuse-scale-shift` and `graph.fold-scalar-scale` must not change what a graph computes:
//! their filetests and a few extra graphs run through the interpreter before and after the
//! passes on seeded inputs. Reassociating constants rounds differently by about an ulp, so
//! fold-arith is held to 1e-6 and the weight folds to 1e-5, relative to the largest output
//! magnitude.

use std::path::Path;

mod common;

fn check(label: &str, src: &str, pipeline: &str, tol: f64) -> (usize, usize) {
    common::check(label, src, &[pipeline.to_string()], tol)
}

#[test]
fn filetests_keep_semantics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/filetests/graph");
    for (file, tol) in [
        ("fold_arith.kir", 1e-6),
        ("fold_arith_shared.kir", 1e-6),
        ("fuse_scale_shift.kir", 1e-5),
        ("fuse_scale_shift_not_per_channel.kir", 1e-5),
        ("fold_scalar_scale.kir", 1e-5),
    ] {
        let src = std::fs::read_to_string(dir.join(file)).unwrap();
        let run: Vec<&str> = src
            .lines()
            .filter_map(|l| l.trim().strip_prefix("// RUN:"))
            .map(str::trim)
            .collect();
        let (b, a) = check(file, &src, &run.join(","), tol);
        println!("{file}: {b} → {a} ops");
        if file.contains("shared") || file.contains("not_per_channel") {
            assert_eq!(b, a, "{file}: a pass fired where it must not");
        } else {
            assert!(a < b, "{file}: nothing folded");
        }
    }
}

const BOTH: &str = "graph.fold-arith,graph.fuse-scale-shift,graph.dce";

#[test]
fn conv_sub_div_chain_folds_into_weights() {
    // Exporter-style normalisation after a conv: (conv − mean) / std · gamma + beta, with
    // per-channel constants; fold-arith makes the sub an add (the div by non-powers of two
    // stays a div) and fuse-scale-shift takes all four into the conv.
    let src = r#"graph @g(%x: f32[2,3,6,6]) -> (f32[2,4,6,6]) {
  %w = const f32[4,3,3,3] random(seed=1, min=-1.0, max=1.0)
  %b = const f32[4] random(seed=2, min=-1.0, max=1.0)
  %c = graph.conv(%x, %w, %b) {pads=[1,1,1,1]} : f32[2,4,6,6]
  %mean = const f32[4,1,1] random(seed=3, min=-1.0, max=1.0)
  %std = const f32[1,4,1,1] random(seed=4, min=0.5, max=2.0)
  %gamma = const f32[4,1,1] random(seed=5, min=0.5, max=1.5)
  %beta = const f32[4,1,1] random(seed=6, min=-1.0, max=1.0)
  %s = graph.sub(%c, %mean) : f32[2,4,6,6]
  %d = graph.div(%s, %std) : f32[2,4,6,6]
  %m = graph.mul(%d, %gamma) : f32[2,4,6,6]
  %y = graph.add(%m, %beta) : f32[2,4,6,6]
  return %y
}
"#;
    assert_eq!(check("conv chain", src, BOTH, 1e-5), (11, 3));
    let f64_src = src.replace("f32", "f64");
    assert_eq!(check("conv chain f64", &f64_src, BOTH, 1e-5), (11, 3));
}

#[test]
fn grouped_conv_transpose_and_matmul_with_bias() {
    // Per-channel scale and shift after a grouped conv_transpose (W is [C, M/group, k…]), a
    // matmul that already has a bias and batch dims in A, and a matmul with a transposed B.
    let src = r#"graph @g(%x: f32[1,4,3,3], %a: f32[2,3,5]) -> (f32[1,6,6,6], f32[2,3,4], f32[2,3,4]) {
  %w = const f32[4,3,2,2] random(seed=1, min=-1.0, max=1.0)
  %t = graph.conv_transpose(%x, %w) {group=2, strides=[2,2]} : f32[1,6,6,6]
  %s = const f32[1,6,1,1] random(seed=2, min=-1.5, max=1.5)
  %o = const f32[6,1,1] random(seed=3, min=-1.0, max=1.0)
  %ts = graph.mul(%s, %t) : f32[1,6,6,6]
  %y = graph.add(%ts, %o) : f32[1,6,6,6]
  %wm = const f32[5,4] random(seed=4, min=-1.0, max=1.0)
  %bm = const f32[4] random(seed=5, min=-1.0, max=1.0)
  %m = graph.matmul(%a, %wm, %bm) : f32[2,3,4]
  %sm = const f32[4] random(seed=6, min=0.5, max=1.5)
  %k = const f32[] dense<[0.125]>
  %ms = graph.mul(%m, %sm) : f32[2,3,4]
  %z = graph.add(%k, %ms) : f32[2,3,4]
  %wt = const f32[4,5] random(seed=7, min=-1.0, max=1.0)
  %mt = graph.matmul(%a, %wt) {transB=1} : f32[2,3,4]
  %u = graph.mul(%mt, %sm) : f32[2,3,4]
  return %y, %z, %u
}
"#;
    assert_eq!(check("convT matmul", src, BOTH, 1e-5), (16, 8));
}

#[test]
fn batchnorm_then_scale_shift_then_fuse_batchnorm() {
    // The Inception v2 form Conv→BN→Mul→Add: the Mul/Add fold into the BN, which
    // fuse-batchnorm then folds into the conv, and the other order ends the same.
    let src = r#"graph @g(%x: f32[1,3,5,5]) -> (f32[1,4,5,5]) {
  %w = const f32[4,3,3,3] random(seed=1, min=-1.0, max=1.0)
  %c = graph.conv(%x, %w) {pads=[1,1,1,1]} : f32[1,4,5,5]
  %g = const f32[4] random(seed=2, min=0.5, max=1.5)
  %b = const f32[4] random(seed=3, min=-1.0, max=1.0)
  %mu = const f32[4] random(seed=4, min=-1.0, max=1.0)
  %v = const f32[4] random(seed=5, min=0.5, max=2.0)
  %bn = graph.batch_normalization(%c, %g, %b, %mu, %v) : f32[1,4,5,5]
  %s = const f32[4,1,1] random(seed=6, min=0.5, max=1.5)
  %o = const f32[4,1,1] random(seed=7, min=-1.0, max=1.0)
  %m = graph.mul(%bn, %s) : f32[1,4,5,5]
  %y = graph.add(%m, %o) : f32[1,4,5,5]
  %r = graph.relu(%y) : f32[1,4,5,5]
  return %r
}
"#;
    let a = "graph.fuse-scale-shift,graph.fuse-batchnorm,graph.dce";
    let b = "graph.fuse-batchnorm,graph.fuse-scale-shift,graph.dce";
    assert_eq!(check("ss then bn", src, a, 1e-5), (12, 4));
    assert_eq!(check("bn then ss", src, b, 1e-5), (12, 4));
}

#[test]
fn arith_chains_reassociate_within_an_ulp() {
    // Long chains with mixed broadcasting, a power-of-two divisor and values that do not
    // add exactly (0.1 + 0.2): the folded graph stays within 1e-6 relative.
    let src = r#"graph @g(%x: f32[3,4], %y: f64[5]) -> (f32[3,4], f32[3,4], f64[5]) {
  %a = const f32[4] random(seed=1, min=-1.0, max=1.0)
  %p1 = const f32[] dense<[0.1]>
  %p2 = const f32[3,1] dense<[0.2, 0.3, -0.7]>
  %q = const f32[] dense<[4.0]>
  %s1 = graph.add(%p1, %x) : f32[3,4]
  %s2 = graph.sub(%s1, %a) : f32[3,4]
  %s3 = graph.add(%s2, %p2) : f32[3,4]
  %m1 = graph.mul(%x, %a) : f32[3,4]
  %m2 = graph.div(%m1, %q) : f32[3,4]
  %m3 = graph.mul(%p2, %m2) : f32[3,4]
  %e = const f64[] dense<[1e-3]>
  %f = const f64[5] random(seed=2, min=-1.0, max=1.0)
  %y1 = graph.add(%y, %e) : f64[5]
  %y2 = graph.sub(%y1, %f) : f64[5]
  return %s3, %m3, %y2
}
"#;
    assert_eq!(check("chains", src, BOTH, 1e-6), (14, 6));
}
