//! `graph.fold-arith` and `graph.fuse-scale-shift` on the example and light model-zoo
//! models: the outputs must equal the unoptimised interpreter's within 1e-4 relative, and the
//! op counts (constants not counted) are printed before → after. Inception v2 is the model
//! these passes exist for: its 69 Conv→BN→Mul→Add blocks must lose every Mul and Add.

mod common;

use kiln::onnx::{ImportOptions, load_model};
use kiln_core::{PassManager, Tensor};
use kiln_graph::{Graph, interp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PIPELINE: &str = "graph.fold-constants,graph.fold-arith,graph.fuse-scale-shift,graph.dce";

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

fn example_inputs(dir: &Path, g: &Graph) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .map(|&v| {
            let stem = kiln::model::file_stem(&g.value(v).name);
            kiln::model::read_npy(&dir.join("inputs").join(format!("{stem}.npy"))).unwrap()
        })
        .collect()
}

/// The reference input of the light models: arange(n)/n in the input's shape.
fn light_inputs(g: &Graph) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .map(|&v| {
            let ty = g.value(v).ty.clone().unwrap();
            let n = ty.numel();
            Tensor::from_f64_fn(&ty, |i| (i as f32 / n as f32) as f64)
        })
        .collect()
}

/// Optimises one model, checks its outputs and returns the op counts after.
fn optimise(name: &str, path: &Path, light: bool) -> BTreeMap<&'static str, usize> {
    let g = load_model(path, &ImportOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let ins = if light {
        light_inputs(&g)
    } else {
        example_inputs(path.parent().unwrap(), &g)
    };
    let want = interp::run(&g, &ins).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut opt = g.clone();
    let registry = kiln_graph::passes::registry();
    PassManager::new(registry.parse(PIPELINE).unwrap())
        .run(&mut opt)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = interp::run(&opt, &ins).unwrap_or_else(|e| panic!("{name}: optimised: {e}"));
    let (before, after) = (op_counts(&g), op_counts(&opt));
    println!(
        "{name}: {} → {} ops\n  before: {before:?}\n  after:  {after:?}",
        total(&before),
        total(&after)
    );
    assert_eq!(got.len(), want.len(), "{name}: output count");
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        let err = common::max_rel_error(a, b);
        println!("  output {k}: max relative error {err:.2e}");
        common::compare(a, b, 1e-4, 1e-6).unwrap_or_else(|e| panic!("{name} output {k}: {e}"));
    }
    assert!(total(&after) <= total(&before), "{name}: ops were added");
    after
}

#[test]
fn models_fold_arith_and_scale_shift_and_keep_outputs() {
    let root = common::repo_root();
    let mut models: Vec<(String, PathBuf, bool)> =
        ["resnet_style", "mobilenet_v3_style", "transformer_block"]
            .iter()
            .map(|n| {
                let p = root.join("examples/models").join(n).join("model.onnx");
                (n.to_string(), p, false)
            })
            .collect();
    let light = common::data_dir("light");
    common::require_dir(&light);
    let mut zoo: Vec<_> = std::fs::read_dir(&light)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().to_string(),
                p,
                true,
            )
        })
        .collect();
    zoo.sort();
    assert!(zoo.len() >= 9, "expected the 9 light models");
    models.extend(zoo);
    for (name, path, light) in &models {
        let after = optimise(name, path, *light);
        if name == "light_inception_v2" {
            assert_eq!(after.get("mul"), None, "{name}: a post-conv mul survived");
            assert_eq!(after.get("add"), None, "{name}: a post-conv add survived");
            assert_eq!(after.get("batch_normalization"), Some(&69));
        }
    }
}
