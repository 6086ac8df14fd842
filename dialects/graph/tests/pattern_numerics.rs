//! The pattern-to-op passes change no numbers: each pattern filetest is run through the
//! interpreter on seeded inputs before and after its passes, and the outputs must agree
//! within 1e-5 relative (absolute below 1). Inputs span [-5, 5] so every branch of Relu6,
//! PReLU and the Gelu tails is exercised.

use kiln_core::{PassManager, Rng, Tensor};
use kiln_graph::{Graph, interp, text};

const CASES: &[(&str, &str)] = &[
    (
        "fuse_layer_norm",
        include_str!("../../../tests/filetests/graph/fuse_layer_norm.kir"),
    ),
    (
        "fuse_layer_norm_mul_square",
        include_str!("../../../tests/filetests/graph/fuse_layer_norm_mul_square.kir"),
    ),
    (
        "fuse_gelu",
        include_str!("../../../tests/filetests/graph/fuse_gelu.kir"),
    ),
    (
        "fuse_gelu_half_first",
        include_str!("../../../tests/filetests/graph/fuse_gelu_half_first.kir"),
    ),
    (
        "fuse_gelu_tanh",
        include_str!("../../../tests/filetests/graph/fuse_gelu_tanh.kir"),
    ),
    (
        "fuse_gelu_tanh_cube_mul",
        include_str!("../../../tests/filetests/graph/fuse_gelu_tanh_cube_mul.kir"),
    ),
    (
        "fuse_hard_swish",
        include_str!("../../../tests/filetests/graph/fuse_hard_swish.kir"),
    ),
    (
        "fuse_hard_swish_forms",
        include_str!("../../../tests/filetests/graph/fuse_hard_swish_forms.kir"),
    ),
    (
        "fuse_hard_sigmoid",
        include_str!("../../../tests/filetests/graph/fuse_hard_sigmoid.kir"),
    ),
    (
        "fuse_swish",
        include_str!("../../../tests/filetests/graph/fuse_swish.kir"),
    ),
    (
        "fuse_prelu",
        include_str!("../../../tests/filetests/graph/fuse_prelu.kir"),
    ),
    (
        "fuse_prelu_min",
        include_str!("../../../tests/filetests/graph/fuse_prelu_min.kir"),
    ),
    (
        "fuse_layer_norm_two_axes",
        include_str!("../../../tests/filetests/graph/fuse_layer_norm_two_axes.kir"),
    ),
    (
        "reduce_mean_to_gap_flatten",
        include_str!("../../../tests/filetests/graph/reduce_mean_to_gap_flatten.kir"),
    ),
    (
        "fuse_prelu_where",
        include_str!("../../../tests/filetests/graph/fuse_prelu_where.kir"),
    ),
    (
        "reduce_mean_to_gap",
        include_str!("../../../tests/filetests/graph/reduce_mean_to_gap.kir"),
    ),
];

/// Every pattern pass, in the order a pipeline would run them.
const ALL: &str = "graph.fuse-layer-norm,graph.fuse-gelu,graph.fuse-hard-swish,\
graph.fuse-hard-sigmoid,graph.fuse-swish,graph.fuse-prelu,graph.reduce-mean-to-gap,graph.dce";

fn inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    g.inputs()
        .iter()
        .map(|&v| {
            let ty = g.ty(v).expect("inputs are typed");
            Tensor::from_f64_fn(ty, |_| rng.uniform(-5.0, 5.0) as f64)
        })
        .collect()
}

fn run_passes(g: &mut Graph, list: &str) -> bool {
    let mut pm = PassManager::new(kiln_graph::passes::registry().parse(list).unwrap());
    pm.run(g).unwrap()
}

fn assert_close(name: &str, before: &[Tensor], after: &[Tensor]) {
    assert_eq!(before.len(), after.len(), "{name}: output count");
    for (k, (b, a)) in before.iter().zip(after).enumerate() {
        assert_eq!(b.shape(), a.shape(), "{name}: output {k} shape");
        for (i, (x, y)) in b.to_f64_vec().iter().zip(a.to_f64_vec()).enumerate() {
            let tol = 1e-5 * x.abs().max(1.0);
            assert!(
                (x - y).abs() <= tol,
                "{name}: output {k}[{i}]: {y} after the passes, {x} before"
            );
        }
    }
}

fn check(name: &str, src: &str, list: &str) {
    let original = text::parse(src).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut g = original.clone();
    assert!(run_passes(&mut g, list), "{name}: {list} changed nothing");
    // `<=`: a keepdims=0 mean becomes a pool plus a flatten, which its axes constant pays for.
    assert!(
        g.node_count() <= original.node_count(),
        "{name}: the passes added ops"
    );
    assert_same_numbers(name, &original, &g);
}

/// `original` and `g` agree on three seeded inputs.
fn assert_same_numbers(name: &str, original: &Graph, g: &Graph) {
    for seed in [1, 2, 3] {
        let ins = inputs(original, seed);
        let before = interp::run(original, &ins).unwrap();
        let after = interp::run(g, &ins).unwrap();
        assert_close(name, &before, &after);
    }
}

#[test]
fn each_pattern_keeps_its_numbers() {
    for (name, src) in CASES {
        let run = src
            .lines()
            .find_map(|l| l.trim().strip_prefix("// RUN:"))
            .unwrap_or_else(|| panic!("{name}: no RUN line"))
            .trim();
        check(name, src, run);
    }
}

#[test]
fn all_pattern_passes_together_keep_the_numbers() {
    for (name, src) in CASES {
        check(name, src, ALL);
    }
}

/// A pass that fires must report it, and a second run over its own output must not.
#[test]
fn passes_report_changes_exactly() {
    for (name, src) in CASES {
        let mut g = text::parse(src).unwrap();
        assert!(run_passes(&mut g, ALL), "{name}: first run");
        assert!(
            !run_passes(&mut g, ALL),
            "{name}: second run changed the IR"
        );
    }
}

/// `swish` is x·σ(x) in the interpreter, including far into both tails.
#[test]
fn swish_semantics() {
    let src =
        "graph @s(%x: f32[5]) -> (f32[5]) {\n  %y = graph.swish(%x) : f32[5]\n  return %y\n}\n";
    let g = text::parse(src).unwrap();
    let x = [-30.0f32, -1.5, 0.0, 0.75, 40.0];
    let t = Tensor::from_vec(&[5], x.to_vec()).unwrap();
    let y = interp::run(&g, &[t]).unwrap();
    for (xi, yi) in x.iter().zip(y[0].to_f64_vec()) {
        let xi = *xi as f64;
        let want = xi / (1.0 + (-xi).exp());
        assert!(
            (yi - want).abs() <= 1e-6 * want.abs().max(1e-30),
            "{xi}: {yi} vs {want}"
        );
    }
}

/// `graph.conv-transpose-to-conv` (a rewrite into more ops, so not in `CASES`) computes the
/// same numbers, alone and with the layout pass that then keeps the shuffle channels-last.
#[test]
fn conv_transpose_to_conv_keeps_the_numbers() {
    let cases = [
        (
            include_str!("../../../tests/filetests/graph/conv_transpose_to_conv.kir"),
            "graph.conv-transpose-to-conv",
        ),
        (
            include_str!("../../../tests/filetests/graph/layout_depth_to_space.kir"),
            "graph.conv-transpose-to-conv,graph.layout,graph.dce",
        ),
    ];
    for (src, list) in cases {
        let original = text::parse(src).unwrap();
        let mut g = original.clone();
        assert!(run_passes(&mut g, list), "{list} changed nothing");
        assert!(
            !run_passes(&mut g, list),
            "{list}: a second run changed the IR"
        );
        assert_same_numbers(list, &original, &g);
    }
}
