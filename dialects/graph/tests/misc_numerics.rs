//! `graph.fuse-cast`, `graph.fuse-transpose-matmul` and `graph.fuse-eltwise-sum` must not
//! change what a graph computes: each of their filetests runs through the interpreter
//! before and after its passes on seeded inputs, and the outputs must agree within 1e-5
//! relative to the largest output magnitude.

mod common;

fn check(label: &str, src: &str, lists: &[String]) -> (usize, usize) {
    common::check(label, src, lists, 1e-5)
}

const PREFIXES: &[&str] = &["fuse_cast", "fuse_transpose_matmul", "fuse_eltwise_sum"];

#[test]
fn misc_filetests_keep_semantics() {
    let files = common::filetests(PREFIXES);
    assert!(files.len() >= 6, "filetests missing");
    for (label, src) in &files {
        let (b, a) = check(label, src, &common::run_lines(src));
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
