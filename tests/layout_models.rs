//! `graph.layout` on the example models: `graph-opt` (which ends with the layout pass)
//! must compute what the imported graph computes, within 1e-5 relative, with every conv
//! channels last and only the conversions the pass reports left in the graph. The light
//! model-zoo CNNs are laid out too (not run: their interpreter time belongs to
//! `tests/models.rs`), and each must end with every conv channels last and few conversions.

mod common;

use kiln::onnx::{ImportOptions, load_model};
use kiln_core::{PassManager, Tensor};
use kiln_graph::{Graph, Op, interp};
use std::path::Path;

/// Runs `graph-opt`; returns the conversions `graph.layout` reports.
fn optimise(g: &mut Graph) -> u64 {
    let mut pm = PassManager::new(kiln_graph::passes::registry().parse("graph-opt").unwrap());
    pm.run(g).unwrap();
    pm.statistics()
        .iter()
        .find(|s| s.0 == "graph.layout" && s.1 == "conversions inserted")
        .map_or(0, |s| s.2)
}

/// (convs, channels-last convs, transposes) of `g`.
fn census(g: &Graph) -> (usize, usize, usize) {
    let mut c = (0, 0, 0);
    for n in g.node_ids() {
        match &g.node(n).op {
            Op::Conv(conv) => {
                c.0 += 1;
                c.1 += conv.layout.is_nhwc() as usize;
            }
            Op::Transpose(_) => c.2 += 1,
            _ => {}
        }
    }
    c
}

fn inputs(dir: &Path, g: &Graph) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .map(|&v| {
            let stem = kiln::model::file_stem(&g.value(v).name);
            kiln::model::read_npy(&dir.join("inputs").join(format!("{stem}.npy"))).unwrap()
        })
        .collect()
}

#[test]
fn example_models_keep_outputs_after_layout() {
    let root = common::repo_root().join("examples/models");
    // (model, conversions expected): the CNNs convert their input once (the global pool's
    // [1, C, 1, 1] result reaches the classifier through a free reshape); the transformer
    // has no conv, so the pass leaves it alone.
    for (name, want) in [
        ("resnet_style", 1),
        ("mobilenet_v3_style", 1),
        ("transformer_block", 0),
    ] {
        let dir = root.join(name);
        let g = load_model(&dir.join("model.onnx"), &ImportOptions::default()).unwrap();
        let ins = inputs(&dir, &g);
        let before = interp::run(&g, &ins).unwrap();
        let mut opt = g.clone();
        let inserted = optimise(&mut opt);
        let after = interp::run(&opt, &ins).unwrap();
        for (k, (a, b)) in after.iter().zip(&before).enumerate() {
            let err = common::max_rel_error(a, b);
            println!("{name}: output {k}: max relative error {err:.2e}");
            assert!(err <= 1e-5, "{name}: output {k} differs by {err:.2e}");
        }
        let (convs, nhwc, transposes) = census(&opt);
        println!("{name}: {nhwc}/{convs} convs NHWC, {inserted} conversions");
        assert_eq!(convs, nhwc, "{name}: a conv kept NCHW");
        assert_eq!(inserted, want, "{name}: conversions");
        if convs > 0 {
            // These models have no transposes of their own.
            assert_eq!(transposes as u64, inserted, "{name}: transposes left");
        }
    }
}

#[test]
fn light_zoo_cnns_go_channels_last() {
    let light = common::data_dir("light");
    common::require_dir(&light);
    let mut paths: Vec<_> = std::fs::read_dir(&light)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 9, "expected the 9 light models");
    for path in paths {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let mut g = load_model(&path, &ImportOptions::default()).unwrap();
        let own_transposes = census(&g).2;
        let inserted = optimise(&mut g);
        let (convs, nhwc, transposes) = census(&g);
        println!(
            "{name}: {nhwc}/{convs} convs NHWC, {inserted} conversions, {transposes} transposes"
        );
        assert_eq!(convs, nhwc, "{name}: a conv kept NCHW");
        assert!(inserted >= 1, "{name}: the NCHW input must be converted");
        // The input converts once, and the classifier's flatten at most once (a global
        // pool's [1, C, 1, 1] needs no conversion, a 6×6 map does). The model's own
        // transposes (ShuffleNet's channel shuffles: reshape → transpose → reshape over
        // channel groups) are layout-sensitive and cost a conversion on each side. A
        // region that failed to grow would leave a pair per conv instead.
        assert!(
            inserted as usize <= 2 + 2 * own_transposes,
            "{name}: {inserted} conversions for {convs} convs"
        );
    }
}
