//! The int8 JIT equals the int8 simulator bit for bit on the example models, on both
//! code paths of the dot product (`vpdpbusd` where the host has VNNI, and the exact
//! `pmaddwd` widening forced), for several observers and inputs. The compute ops must run
//! int8 kernels, not the simulator fallback.

use kiln_core::{PassManager, Tensor};
use kiln_loop::codegen::HostIsa;
use kiln_loop::exec::Compiled;
use kiln_quant::{QuantGraph, calib, passes, platform, sim::Simulator};
use std::collections::HashMap;
use std::path::Path;

fn quantised(name: &str, observer: &str) -> QuantGraph {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/models/{name}/model.onnx"));
    let mut g = kiln::model::load(Some(&path), &HashMap::new(), &HashMap::new()).unwrap();
    PassManager::new(kiln_graph::passes::registry().parse("graph-opt").unwrap())
        .run(&mut g)
        .unwrap();
    let mut q = QuantGraph::new(g, &platform::KILN_X86).unwrap();
    q.observer = Some(kiln_quant::ObserverKind::from_name(observer).unwrap());
    q.calib = calib::random_samples(&q.graph, 3).unwrap();
    PassManager::new(passes::registry().parse("quant-opt").unwrap())
        .run(&mut q)
        .unwrap();
    q
}

fn inputs(q: &QuantGraph, seed: u64) -> Vec<Tensor> {
    q.graph
        .inputs()
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            let ty = q.graph.value(v).ty.as_ref().unwrap();
            // Wider than calibration ([0, 1)) so clamping paths run too.
            let t = kiln::model::seeded_input(ty, seed + k as u64);
            Tensor::F32(t.as_f32().unwrap().mapv(|x| 2.5 * x - 0.75))
        })
        .collect()
}

fn assert_exact(name: &str, observer: &str, vnni: bool) {
    let q = quantised(name, observer);
    let program = kiln_loop::int8::build(&q).unwrap();
    let compute_fallbacks: Vec<&String> = program
        .host_ops
        .iter()
        .filter(|s| s.ends_with("(conv)") || s.ends_with("(gemm)"))
        .collect();
    assert!(
        compute_fallbacks.is_empty(),
        "{name}: compute ops fell back to the simulator: {compute_fallbacks:?}"
    );
    let isa = HostIsa {
        avx_vnni: vnni && HostIsa::detect().avx_vnni,
        ..HostIsa::detect()
    };
    let mut c = Compiled::with_isa(program, 1, isa).unwrap();
    let s = Simulator::new(&q).unwrap();
    for seed in [0u64, 11] {
        let x = inputs(&q, seed);
        let want = s.run(&x).unwrap();
        let got = c.run(&x).unwrap();
        for (k, (w, g)) in want.iter().zip(&got).enumerate() {
            let (w, g) = (w.as_f32().unwrap(), g.as_f32().unwrap());
            assert_eq!(w.shape(), g.shape());
            let diff: Vec<usize> = w
                .iter()
                .zip(g.iter())
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .map(|(i, _)| i)
                .collect();
            assert!(
                diff.is_empty(),
                "{name} {observer} vnni={vnni} seed {seed} output {k}: {} elements differ, first at {}: sim {} jit {}",
                diff.len(),
                diff[0],
                w.iter().nth(diff[0]).unwrap(),
                g.iter().nth(diff[0]).unwrap()
            );
        }
    }
}

#[test]
fn resnet_style_is_bit_exact() {
    for observer in ["minmax", "percentile"] {
        assert_exact("resnet_style", observer, true);
    }
    assert_exact("resnet_style", "minmax", false);
}

#[test]
fn mobilenet_style_is_bit_exact() {
    assert_exact("mobilenet_v3_style", "minmax", true);
    assert_exact("mobilenet_v3_style", "mse", false);
}

#[test]
fn transformer_block_is_bit_exact() {
    assert_exact("transformer_block", "minmax", true);
    assert_exact("transformer_block", "kl", false);
}
