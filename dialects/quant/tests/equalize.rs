//! `quant.equalize` on a stem-like pair (a conv without activation feeding a depthwise
//! conv, as PP-OCRv4's recogniser starts): channels whose ranges differ by 2^7 quantise far
//! better equalised, and the float function does not change.

use kiln_core::{PassManager, Rng, Tensor};
use kiln_quant::passes::QUANT_OPT;
use kiln_quant::{QuantGraph, analysis, calib, passes, text};

/// Channel `c` of the first conv is scaled by 2^-c (the constants are rewritten below).
const PAIR: &str = "graph @pair(%x: f32[1,3,8,8]) -> (f32[1,8,8,8]) {
  %w1 = const f32[8,3,3,3] random(seed=1, min=-1.0, max=1.0)
  %b1 = const f32[8] random(seed=2, min=-0.1, max=0.1)
  %a = graph.conv(%x, %w1, %b1) {pads=[1,1,1,1]} : f32[1,8,8,8]
  %w2 = const f32[8,1,3,3] random(seed=3, min=-1.0, max=1.0)
  %y = graph.conv(%a, %w2) {pads=[1,1,1,1], group=8} : f32[1,8,8,8]
  return %y
}
";

fn unit() -> QuantGraph {
    let mut q = text::parse(PAIR).unwrap();
    let g = &q.graph;
    let first_conv = g.producer(
        g.node(g.producer(g.outputs()[0]).unwrap())
            .input(0)
            .unwrap(),
    );
    let node = g.node(first_conv.unwrap());
    let (w1, b1) = (node.input(1).unwrap(), node.input(2).unwrap());
    for v in [w1, b1] {
        let t = kiln_quant::ir::const_data(&q.graph, v).unwrap().clone();
        let a = t.as_f32().unwrap();
        let per = a.len() / 8;
        let data: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(i, &w)| w * 0.5f32.powi((i / per) as i32))
            .collect();
        q.rewrite_const(v, Tensor::from_vec(a.shape(), data).unwrap());
    }
    q.calib = calib::random_samples(&q.graph, 8).unwrap();
    q
}

fn samples(q: &QuantGraph) -> Vec<Vec<Tensor>> {
    let mut rng = Rng::new(77);
    (0..4)
        .map(|_| {
            let ty = q.graph.ty(q.graph.inputs()[0]).unwrap().clone();
            vec![Tensor::from_f64_fn(&ty, |_| rng.next_f32() as f64)]
        })
        .collect()
}

#[test]
fn equalising_a_conv_and_its_depthwise_reader_gains_what_per_channel_grids_would() {
    let run = |list: &str| {
        let mut q = unit();
        PassManager::new(passes::registry().parse(list).unwrap())
            .run(&mut q)
            .unwrap();
        q
    };
    let with = run(QUANT_OPT);
    let without = run(&QUANT_OPT.replace("quant.equalize,", ""));
    let s = samples(&with);
    let snr = |q: &QuantGraph| analysis::graph_wise(q, &s).unwrap().1.snr_db();
    let (e, n) = (snr(&with), snr(&without));
    // Channel 7 spans 1/128 of the grid unequalised, about 2 of its levels; the output's
    // SNR weighs channels by energy, so the wide ones dominate it (measured: +3.2 dB).
    assert!(e > n + 2.0, "equalised {e:.2} dB, not {n:.2} dB");

    // The same function: the equalised float model (the analysis's reference) against the
    // given one.
    let given = unit();
    let mut only = unit();
    PassManager::new(
        passes::registry()
            .parse("quant.refine,quant.fuse,quant.reduce-points,quant.equalize")
            .unwrap(),
    )
    .run(&mut only)
    .unwrap();
    let a = kiln_graph::interp::run(&given.graph, &s[0]).unwrap();
    let b = kiln_graph::interp::run(&only.graph, &s[0]).unwrap();
    let (a, b) = (a[0].as_f32().unwrap(), b[0].as_f32().unwrap());
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (x, y) in a.iter().zip(b.iter()) {
        assert!((x - y).abs() <= scale * 1e-5, "{x} vs {y}");
    }
    assert_ne!(
        text::print(&given),
        text::print(&only),
        "the weights were rewritten"
    );
}
