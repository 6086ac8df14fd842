//! The int8 simulator on the example models: simulated output vs fp32 (graph-opt'd, as
//! `kiln quantize` runs them), with seeded calibration and evaluation inputs. Bounds sit a
//! few dB under the measured figures (see the quant dialect's report in ARCHITECTURE.md /
//! the closing note) so that a real regression — a wrong multiplier, offset or
//! rounding costs tens of dB — fails while noise-level changes do not.

use kiln_core::{PassManager, Tensor};
use kiln_quant::{QuantGraph, analysis, calib, passes, platform};
use std::collections::HashMap;
use std::path::Path;

fn load(name: &str) -> kiln_graph::Graph {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/models/{name}/model.onnx"));
    let mut g = kiln::model::load(Some(&path), &HashMap::new(), &HashMap::new()).unwrap();
    let reg = kiln_graph::passes::registry();
    PassManager::new(reg.parse("graph-opt").unwrap())
        .run(&mut g)
        .unwrap();
    g
}

fn snr(name: &str, observer: &str) -> f64 {
    let g = load(name);
    let mut q = QuantGraph::new(g, &platform::KILN_X86).unwrap();
    q.observer = Some(kiln_quant::ObserverKind::from_name(observer).unwrap());
    q.calib = calib::random_samples(&q.graph, 8).unwrap();
    PassManager::new(passes::registry().parse("quant-opt").unwrap())
        .run(&mut q)
        .unwrap_or_else(|e| panic!("{name} {observer}: {e}"));
    let eval: Vec<Vec<Tensor>> = (0..2)
        .map(|i| {
            q.graph
                .inputs()
                .iter()
                .enumerate()
                .map(|(k, &v)| {
                    kiln::model::seeded_input(
                        q.graph.value(v).ty.as_ref().unwrap(),
                        (k + 7 * i) as u64,
                    )
                })
                .collect()
        })
        .collect();
    let (_, outs) = analysis::graph_wise(&q, &eval).unwrap();
    outs.snr_db()
}

/// Measured on kiln-x86 with 8 seeded calibration samples and 2 evaluation samples
/// (dB, simulated int8 output vs fp32) for minmax / percentile / kl / mse:
/// resnet_style 50.8 / 49.7 / 50.7 / 48.8, mobilenet_v3_style 38.3 / 40.2 / 40.8 / 39.2,
/// transformer_block 26.1 / 26.1 / 23.1 / 26.0. The bounds leave ~4 dB of slack.
const BOUNDS: [(&str, [f64; 4]); 3] = [
    ("resnet_style", [46.0, 45.0, 46.0, 44.0]),
    ("mobilenet_v3_style", [34.0, 36.0, 36.0, 35.0]),
    ("transformer_block", [22.0, 22.0, 19.0, 22.0]),
];

#[test]
fn example_models_int8_snr_per_observer() {
    let mut failures = Vec::new();
    for (model, bounds) in BOUNDS {
        for (obs, bound) in ["minmax", "percentile", "kl", "mse"]
            .into_iter()
            .zip(bounds)
        {
            let s = snr(model, obs);
            println!("{model} {obs}: {s:.2} dB");
            if s.is_nan() || s < bound {
                failures.push(format!("{model} {obs}: {s:.2} dB < {bound} dB"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The integer path, not the fp32 fallback, must run every compute op of the CNNs: the
/// bit-exactness contract is only worth something if it is exercised.
#[test]
fn cnn_compute_ops_take_the_integer_path() {
    for model in ["resnet_style", "mobilenet_v3_style"] {
        let g = load(model);
        let mut q = QuantGraph::new(g, &platform::KILN_X86).unwrap();
        q.calib = calib::random_samples(&q.graph, 2).unwrap();
        PassManager::new(passes::registry().parse("quant-opt").unwrap())
            .run(&mut q)
            .unwrap();
        let input: Vec<Tensor> = q
            .graph
            .inputs()
            .iter()
            .map(|&v| kiln::model::seeded_input(q.graph.value(v).ty.as_ref().unwrap(), 0))
            .collect();
        let sim = kiln_quant::sim::Simulator::new(&q).unwrap();
        sim.run(&input).unwrap();
        let int = sim.integer_ops();
        let g = &q.graph;
        let missing: Vec<String> = g
            .node_ids()
            .into_iter()
            .filter(|&n| platform::is_compute(&g.node(n).op) && !int.contains(&n))
            .map(|n| format!("{} ({})", g.node(n).name, g.node(n).op.name()))
            .collect();
        let names: Vec<&str> = int.iter().map(|&n| g.node(n).op.name()).collect();
        println!("{model}: integer path for {names:?}");
        assert!(missing.is_empty(), "{model}: fp32 fallback for {missing:?}");
    }
}
