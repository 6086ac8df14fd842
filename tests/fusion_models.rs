//! The fusion passes on the example models: after cleanup + fusion the interpreter must
//! give the unoptimised graph's outputs within 1e-4 relative, and the op counts (constants
//! not counted) must drop where the models have something to fuse.

mod common;

use kiln::onnx::{ImportOptions, load_model};
use kiln_core::{PassManager, Tensor};
use kiln_graph::{Graph, Op, interp};
use std::collections::BTreeMap;

/// The fusion passes in the order that fuses most: identities and pads first (they hide
/// the patterns), BN before anything is fused after the bias, the matmul bias before the
/// residual (which would otherwise take the constant as Y), the residual before the
/// activation (so `act(W·x + b + Y)` forms), and DCE at the end.
const FUSION: &str = "cleanup,graph.remove-identity,graph.fuse-pad,graph.fuse-batchnorm,graph.fuse-bias,graph.fuse-residual,graph.fuse-activation,graph.dce";

fn op_counts(g: &Graph) -> (usize, BTreeMap<&'static str, usize>) {
    let mut by_op = BTreeMap::new();
    let mut total = 0;
    for n in g.node_ids() {
        let op = &g.node(n).op;
        if matches!(op, Op::Const(_)) {
            continue;
        }
        total += 1;
        *by_op.entry(op.name()).or_insert(0) += 1;
    }
    (total, by_op)
}

fn inputs(dir: &std::path::Path, g: &Graph) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .map(|&v| {
            let stem = kiln::model::file_stem(&g.value(v).name);
            kiln::model::read_npy(&dir.join("inputs").join(format!("{stem}.npy"))).unwrap()
        })
        .collect()
}

#[test]
fn example_models_fuse_and_keep_outputs() {
    let root = common::repo_root().join("examples/models");
    let registry = kiln_graph::passes::registry();
    for name in ["resnet_style", "mobilenet_v3_style", "transformer_block"] {
        let dir = root.join(name);
        let g = load_model(&dir.join("model.onnx"), &ImportOptions::default()).unwrap();
        let ins = inputs(&dir, &g);
        let want = interp::run(&g, &ins).unwrap();
        let mut fused = g.clone();
        PassManager::new(registry.parse(FUSION).unwrap())
            .run(&mut fused)
            .unwrap();
        let got = interp::run(&fused, &ins).unwrap();
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            let err = common::max_rel_error(a, b);
            println!("{name}: output {k}: max relative error {err:.2e}");
            assert!(
                err <= 1e-4,
                "{name}: output {k}: fused differs by {err:.2e}"
            );
        }
        let ((before, ops_b), (after, ops_a)) = (op_counts(&g), op_counts(&fused));
        println!("{name}: {before} → {after} ops\n  before: {ops_b:?}\n  after:  {ops_a:?}");
        assert!(after <= before, "{name}: fusion added ops");
        // No BN or activation is left directly after a compute op that could absorb it.
        for n in fused.node_ids() {
            let node = fused.node(n);
            let fusible = matches!(
                node.op.name(),
                "relu" | "batch_normalization" | "hard_swish" | "hard_sigmoid" | "sigmoid"
            );
            let Some(x) = node.input(0).filter(|_| fusible) else {
                continue;
            };
            let absorbable = fused.producer(x).is_some_and(|p| {
                let bare = match &fused.node(p).op {
                    Op::Conv(c) => c.act.is_none(),
                    Op::Gemm(c) => c.act.is_none(),
                    Op::MatMul(c) => c.act.is_none(),
                    _ => false,
                };
                bare && fused.use_count(x) == 1 && !fused.outputs().contains(&x)
            });
            assert!(
                !absorbable,
                "{name}: '{}' ({}) was left unfused after a compute op",
                node.name,
                node.op.name()
            );
        }
    }
}
