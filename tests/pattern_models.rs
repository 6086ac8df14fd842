//! The pattern-to-op passes on the example models: the decomposed LayerNorm, Gelu and
//! HardSwish patterns the exporters emitted become single ops, and the outputs still equal
//! the unoptimised interpreter's within 1e-4 relative.

mod common;

use kiln::onnx::{ImportOptions, load_model};
use kiln_core::{PassManager, Tensor};
use kiln_graph::{Graph, interp};
use std::collections::BTreeMap;
use std::path::Path;

const PATTERNS: &str = "graph.infer-shapes,graph.fuse-layer-norm,graph.fuse-gelu,\
graph.fuse-hard-swish,graph.fuse-hard-sigmoid,graph.fuse-swish,graph.fuse-prelu,\
graph.reduce-mean-to-gap,graph.dce";

fn load(name: &str) -> (Graph, Vec<Tensor>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/models")
        .join(name);
    let g = load_model(&dir.join("model.onnx"), &ImportOptions::default()).unwrap();
    let ins = g
        .inputs()
        .iter()
        .map(|&v| {
            let stem = kiln::model::file_stem(&g.value(v).name);
            kiln::model::read_npy(&dir.join("inputs").join(format!("{stem}.npy"))).unwrap()
        })
        .collect();
    (g, ins)
}

fn op_counts(g: &Graph) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for n in g.node_ids() {
        let name = g.node(n).op.name();
        if name != "const" {
            *m.entry(name).or_insert(0) += 1;
        }
    }
    m
}

fn total(m: &BTreeMap<&str, usize>) -> usize {
    m.values().sum()
}

/// Runs the pattern passes over `name` and checks the outputs; returns the op counts
/// after, printing before → after.
fn optimise(name: &str) -> BTreeMap<&'static str, usize> {
    let (g, ins) = load(name);
    let before = op_counts(&g);
    let expected = interp::run(&g, &ins).unwrap();
    let mut opt = g.clone();
    let mut pm = PassManager::new(kiln_graph::passes::registry().parse(PATTERNS).unwrap());
    pm.run(&mut opt).unwrap();
    let after = op_counts(&opt);
    println!(
        "{name}: {} → {} ops\n  before: {before:?}\n  after:  {after:?}",
        total(&before),
        total(&after)
    );
    let got = interp::run(&opt, &ins).unwrap();
    assert_eq!(expected.len(), got.len());
    for (k, (e, o)) in expected.iter().zip(&got).enumerate() {
        let err = common::max_rel_error(o, e);
        println!("  output {k}: max relative error {err:.2e}");
        // The same bounds as the model tests: 1e-4 relative plus 1e-6 absolute, for
        // values that cancel to nearly zero in f32.
        if let Err(m) = common::compare(o, e, 1e-4, 1e-6) {
            panic!("{name} output {k} after the pattern passes: {m}");
        }
    }
    after
}

#[test]
fn transformer_block_fuses_layer_norm_and_gelu() {
    let after = optimise("transformer_block");
    assert_eq!(after.get("layer_normalization"), Some(&2));
    assert_eq!(after.get("gelu"), Some(&1));
    for gone in ["reduce_mean", "erf", "pow", "sqrt", "sub"] {
        assert_eq!(after.get(gone), None, "a {gone} survived");
    }
}

#[test]
fn mobilenet_v3_style_fuses_hard_swish() {
    let after = optimise("mobilenet_v3_style");
    // Six x·relu6(x+3)/6 activations; the three native HardSigmoid gates multiply a
    // different tensor (squeeze-excite), so they stay.
    assert_eq!(after.get("hard_swish"), Some(&6));
    assert_eq!(after.get("hard_sigmoid"), Some(&3));
    for gone in ["clip", "div"] {
        assert_eq!(after.get(gone), None, "a {gone} survived");
    }
}

#[test]
fn resnet_style_is_unchanged() {
    let (g, _) = load("resnet_style");
    let after = optimise("resnet_style");
    assert_eq!(after, op_counts(&g));
}

/// ONNX's own function bodies for HardSwish and Gelu (the `_expanded` backend cases) are
/// exporter-style decompositions too: after `cleanup` folds their CastLikes, the pattern
/// passes turn each back into the one op, and the results still match the test data.
#[test]
fn onnx_expanded_functions_fuse_back() {
    use kiln::onnx::{proto::TensorProto, tensor_from_proto};
    use prost::Message;
    let root = common::data_dir("conformance");
    common::require_dir(&root);
    let cases = [
        ("test_hardswish_expanded", "hard_swish"),
        ("test_gelu_default_1_expanded", "gelu"),
        ("test_gelu_default_2_expanded", "gelu"),
        ("test_gelu_tanh_1_expanded", "gelu"),
        ("test_gelu_tanh_2_expanded", "gelu"),
        ("test_prelu_example_expanded", "prelu"),
        ("test_prelu_broadcast_expanded", "prelu"),
    ];
    let read = |p: &Path| {
        let proto = TensorProto::decode(std::fs::read(p).unwrap().as_slice()).unwrap();
        tensor_from_proto(&proto, None).unwrap()
    };
    for (case, op) in cases {
        let dir = root.join(case);
        let set = dir.join("test_data_set_0");
        let ins: Vec<Tensor> = (0..)
            .map(|k| set.join(format!("input_{k}.pb")))
            .take_while(|p| p.exists())
            .map(|p| read(&p))
            .collect();
        let want = read(&set.join("output_0.pb"));
        let mut g = load_model(&dir.join("model.onnx"), &ImportOptions::default()).unwrap();
        let list = format!("cleanup,{PATTERNS}");
        let mut pm = PassManager::new(kiln_graph::passes::registry().parse(&list).unwrap());
        pm.run(&mut g).unwrap();
        let counts = op_counts(&g);
        println!("{case}: {counts:?}");
        assert_eq!(counts.get(op), Some(&1), "{case}: no single {op}");
        assert_eq!(total(&counts), 1, "{case}: ops left besides {op}");
        let got = interp::run(&g, &ins).unwrap();
        if let Err(m) = common::compare(&got[0], &want, 1e-4, 1e-6) {
            panic!("{case}: {m}");
        }
    }
}
