//! The simulator against independent references: a hand-written integer convolution (the
//! arithmetic contract of `kiln_quant::arith`, re-derived with plain loops), the fp32
//! interpreter (accuracy), and the state rules (only ACTIVATED and SLAVE quantise).

use kiln_core::{Ir, PassManager, Rng, Tensor};
use kiln_quant::arith::{self, QParams};
use kiln_quant::ir::const_data;
use kiln_quant::sim::Simulator;
use kiln_quant::{QuantGraph, analysis, calib, passes, text};

/// The conv's result is requantised to u8 (a max-pool reads it, whose result a third conv
/// reads: kiln-x86 runs a graph's tail after its last compute op in f32); the second graph
/// output is the second conv's, which kiln-x86 leaves in f32.
const CONV: &str = "graph @conv(%x: f32[1,2,5,5]) -> (f32[1,3,5,5], f32[1,3,5,5], f32[1,1,5,5]) {
  %w = const f32[3,2,3,3] random(seed=1, min=-1.0, max=1.0)
  %b = const f32[3] dense<[0.3, -0.2, 0.05]>
  %y = graph.conv(%x, %w, %b) {pads=[1,1,1,1], act=\"relu\"} : f32[1,3,5,5]
  %p = graph.max_pool(%y) {kernel_shape=[1,1]} : f32[1,3,5,5]
  %w2 = const f32[3,2,3,3] random(seed=1, min=-1.0, max=1.0)
  %b2 = const f32[3] dense<[0.3, -0.2, 0.05]>
  %f = graph.conv(%x, %w2, %b2) {pads=[1,1,1,1], act=\"relu\"} : f32[1,3,5,5]
  %w3 = const f32[1,3,1,1] dense<[0.5, -0.25, 1.0]>
  %z = graph.conv(%p, %w3) : f32[1,1,5,5]
  return %p, %f, %z
}
";

fn quantised(src: &str, samples: usize) -> QuantGraph {
    let mut q = text::parse(src).unwrap();
    q.calib = calib::random_samples(&q.graph, samples).unwrap();
    let mut pm = PassManager::new(passes::registry().parse("quant-opt").unwrap());
    pm.run(&mut q).unwrap();
    q.verify().unwrap();
    q
}

fn sample(q: &QuantGraph, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    q.graph
        .inputs()
        .iter()
        .map(|&v| {
            let ty = q.graph.value(v).ty.clone().unwrap();
            Tensor::from_f64_fn(&ty, |_| rng.next_f32() as f64)
        })
        .collect()
}

#[test]
fn conv_matches_a_hand_written_integer_kernel() {
    let q = quantised(CONV, 4);
    let g = &q.graph;
    let pool = g.producer(g.outputs()[0]).unwrap();
    let yv = g.node(pool).input(0).unwrap();
    let conv = g.producer(yv).unwrap();
    let p = |k: usize| QParams::from_tqc(q.effective(q.in_tqc(conv, k).unwrap())).unwrap();
    let (xp, wp, bp) = (p(0), p(1), p(2));
    let yp = QParams::from_tqc(q.effective(q.out_tqc(yv).unwrap())).unwrap();
    assert_eq!(
        q.tqc(q.out_tqc(g.outputs()[1]).unwrap()).state,
        kiln_quant::State::Fp32,
        "kiln-x86 graph outputs stay f32"
    );
    let w = const_data(g, g.node(conv).input(1).unwrap())
        .unwrap()
        .as_f32()
        .unwrap()
        .clone();
    let b = const_data(g, g.node(conv).input(2).unwrap())
        .unwrap()
        .as_f32()
        .unwrap()
        .clone();
    let input = sample(&q, 99);
    let mut conv_out = None;
    let outs = Simulator::new(&q)
        .unwrap()
        .run_observed(&input, |v, t| {
            if v == yv {
                conv_out = Some(t.clone());
            }
        })
        .unwrap();
    let got = conv_out.unwrap();
    let got = got.as_f32().unwrap();
    let float_out = outs[1].as_f32().unwrap();
    let x = input[0].as_f32().unwrap();
    let mut mismatches = 0;
    for m in 0..3 {
        let wq = |c: usize, i: usize, j: usize| {
            arith::recover(w[[m, c, i, j]], wp.scale[m], 0, -127, 127)
        };
        let bq = arith::recover(b[[m]], bp.scale[m], 0, bp.qmin, bp.qmax);
        assert_eq!(bp.scale[m], arith::product_scale(xp.s(), wp.scale[m]));
        let mult = arith::multiplier(xp.s(), wp.scale[m], yp.s());
        for oy in 0..5 {
            for ox in 0..5 {
                let mut acc: i64 = bq as i64;
                for c in 0..2 {
                    for i in 0..3 {
                        for j in 0..3 {
                            let (iy, ix) = (oy as i64 + i as i64 - 1, ox as i64 + j as i64 - 1);
                            if !(0..5).contains(&iy) || !(0..5).contains(&ix) {
                                continue; // zero padding is the code z_x: (z_x - z_x) = 0
                            }
                            let xq = xp.quantize(x[[0, c, iy as usize, ix as usize]], 0);
                            acc += (xq - xp.z()) as i64 * wq(c, i, j) as i64;
                        }
                    }
                }
                let want = arith::requantize(
                    acc as i32,
                    mult,
                    yp.z(),
                    yp.z().max(yp.qmin),
                    yp.qmax,
                    yp.rounding,
                );
                let have = arith::recover(got[[0, m, oy, ox]], yp.s(), yp.z(), yp.qmin, yp.qmax);
                if want != have {
                    mismatches += 1;
                }
                // The f32 graph output: the same accumulator, dequantised, then the relu.
                let v = (acc as i32 as f32 * arith::product_scale(xp.s(), wp.scale[m])).max(0.0);
                if v != float_out[[0, m, oy, ox]] {
                    mismatches += 1;
                }
            }
        }
    }
    assert_eq!(
        mismatches, 0,
        "the simulator must equal the integer contract bit for bit"
    );
}

const NET: &str = "graph @net(%x: f32[1,3,8,8]) -> (f32[1,4]) {
  %w1 = const f32[8,3,3,3] random(seed=1, min=-0.5, max=0.5)
  %b1 = const f32[8] random(seed=2, min=-0.1, max=0.1)
  %c1 = graph.conv(%x, %w1, %b1) {pads=[1,1,1,1], act=\"relu\"} : f32[1,8,8,8]
  %w2 = const f32[8,8,3,3] random(seed=3, min=-0.3, max=0.3)
  %c2 = graph.conv(%c1, %w2) {pads=[1,1,1,1]} : f32[1,8,8,8]
  %s = graph.add(%c2, %c1) : f32[1,8,8,8]
  %r = graph.relu(%s) : f32[1,8,8,8]
  %p = graph.max_pool(%r) {kernel_shape=[2,2], strides=[2,2]} : f32[1,8,4,4]
  %g = graph.global_average_pool(%p) : f32[1,8,1,1]
  %sig = graph.tanh(%g) : f32[1,8,1,1]
  %shape = const i64[2] dense<[1, 8]>
  %f = graph.reshape(%sig, %shape) : f32[1,8]
  %w3 = const f32[4,8] random(seed=4, min=-1.0, max=1.0)
  %o = graph.gemm(%f, %w3) {transB=1} : f32[1,4]
  return %o
}
";

#[test]
fn small_network_is_close_to_fp32_and_deterministic() {
    let q = quantised(NET, 8);
    let samples: Vec<Vec<Tensor>> = (0..4).map(|i| sample(&q, 500 + i)).collect();
    let (rows, outs) = analysis::report(&q, &samples, true).unwrap();
    // Measured 8-bit figures on this net sit well above 25 dB; a broken requantisation
    // (wrong multiplier, offset or rounding) drops far below.
    assert!(
        outs.snr_db() > 25.0,
        "output SNR {:.2} dB\n{}",
        outs.snr_db(),
        analysis::table(&rows)
    );
    assert!(outs.cosine() > 0.99);
    assert!(rows.iter().all(|r| r.layer_wise.is_some()));
    let again = quantised(NET, 8);
    assert_eq!(
        kiln_core::Ir::print(&q),
        kiln_core::Ir::print(&again),
        "calibration is deterministic"
    );
}

#[test]
fn only_activated_and_slave_quantise() {
    let q = quantised(NET, 2);
    let input = sample(&q, 7);
    let fp = kiln_graph::interp::run(&q.graph, &input).unwrap();
    // Every quantising TQC switched off: the simulator is the fp32 interpreter.
    let mut off = q.clone();
    for id in off.ids().collect::<Vec<_>>() {
        if off.tqc(id).state.quantises() || off.tqc(id).state == kiln_quant::State::Overlapped {
            off.tqc_mut(id).state = kiln_quant::State::Dequantized;
        }
    }
    let sim = Simulator::new(&off).unwrap().run(&input).unwrap();
    assert_eq!(sim, fp);
    let sim = Simulator::new(&q).unwrap().run(&input).unwrap();
    assert_ne!(sim, fp, "with quantisation on, the output changes");
}

/// The flow with `list` instead of `quant-opt`.
fn quantised_with(src: &str, list: &str) -> QuantGraph {
    let mut q = text::parse(src).unwrap();
    q.calib = calib::random_samples(&q.graph, 8).unwrap();
    PassManager::new(passes::registry().parse(list).unwrap())
        .run(&mut q)
        .unwrap();
    q
}

#[test]
fn gptq_rounding_beats_nearest_on_held_out_inputs() {
    // Bias correction off in both: it takes back the mean of whatever error the weights'
    // rounding leaves, part of what GPTQ gains, and this compares the roundings alone.
    let gptq = passes::QUANT_OPT.replace(",quant.bias-correct", "");
    let nearest = gptq.replace("quant.gptq,", "");
    assert_ne!(gptq, passes::QUANT_OPT, "quant-opt runs quant.bias-correct");
    assert_ne!(nearest, gptq, "quant-opt runs quant.gptq");
    let (qg, qn) = (quantised_with(NET, &gptq), quantised_with(NET, &nearest));
    // Evaluation inputs the calibration never saw.
    let samples: Vec<Vec<Tensor>> = (0..8).map(|i| sample(&qg, 900 + i)).collect();
    let (_, g) = analysis::graph_wise(&qg, &samples).unwrap();
    let (_, n) = analysis::graph_wise(&qn, &samples).unwrap();
    // The same TQCs (grids, states), other weights: only which grid point each weight
    // takes differs.
    let tqcs = |q: &QuantGraph| {
        let t = text::print(q);
        t[t.find("quant platform").unwrap()..].to_string()
    };
    assert_eq!(tqcs(&qg), tqcs(&qn));
    assert!(
        g.snr_db() > n.snr_db() + 1.0,
        "gptq {:.2} dB vs nearest {:.2} dB",
        g.snr_db(),
        n.snr_db()
    );
}

#[test]
fn error_analysis_compares_against_the_unrounded_weights() {
    // Weights rounded, activations not quantised at all: the only error left is the
    // weights'. Against the baked graph itself it would read as no error.
    let mut q = quantised_with(NET, "quant-opt");
    for id in q.ids().collect::<Vec<_>>() {
        if q.tqc(id).state == kiln_quant::State::Activated {
            q.tqc_mut(id).state = kiln_quant::State::Dequantized;
        }
    }
    let samples: Vec<Vec<Tensor>> = (0..2).map(|i| sample(&q, 700 + i)).collect();
    let (_, outs) = analysis::graph_wise(&q, &samples).unwrap();
    assert!(
        outs.snr_db().is_finite() && outs.snr_db() > 30.0,
        "weights-only error: {:.2} dB",
        outs.snr_db()
    );
}

/// A learnable affine block (PP-OCRv4): `0.63·x + 1.0·k` after a hard-swish conv, read by a
/// max pool (and the pool by a conv) so its result is requantised.
const AFFINE: &str = "graph @affine(%x: f32[1,2,5,5]) -> (f32[1,3,5,5], f32[1,1,5,5]) {
  %w = const f32[3,2,3,3] random(seed=1, min=-1.0, max=1.0)
  %b = const f32[3] dense<[0.3, -0.2, 0.05]>
  %y = graph.conv(%x, %w, %b) {pads=[1,1,1,1], act=\"hard_swish\"} : f32[1,3,5,5]
  %k = const f32[1] dense<[-0.54658866]>
  %a = graph.eltwise_sum(%y, %k) {coeffs=[0.63296586, 1.0]} : f32[1,3,5,5]
  %p = graph.max_pool(%a) {kernel_shape=[1,1]} : f32[1,3,5,5]
  %w3 = const f32[1,3,1,1] dense<[0.5, -0.25, 1.0]>
  %z = graph.conv(%p, %w3) : f32[1,1,5,5]
  return %p, %z
}
";

/// The table an affine EltwiseSum runs as holds the fp32 path's own values: the sum of
/// the dequantised operand and the constant (as its TQC leaves it), quantised.
#[test]
fn affine_eltwise_sum_table_equals_the_fp32_formula() {
    let q = quantised(AFFINE, 4);
    let g = &q.graph;
    let pool = g.producer(g.outputs()[0]).unwrap();
    let av = g.node(pool).input(0).unwrap();
    let sum = g.producer(av).unwrap();
    let yv = g.node(sum).input(0).unwrap();
    let plan = kiln_quant::plan::int_plan(&q, sum).unwrap();
    let Some(kiln_quant::plan::IntPlan::Lut { out, .. }) = plan else {
        panic!("an affine eltwise_sum is a table, got {plan:?}");
    };
    let k = const_data(g, g.node(sum).input(1).unwrap()).unwrap();
    let k = match kiln_quant::plan::quantises(&q, q.in_tqc(sum, 1)) {
        Some(p) => kiln_quant::sim::fake_quant_params(k, &p).unwrap(),
        None => k.clone(),
    };
    let k = k.as_f32().unwrap().iter().copied().next().unwrap();
    let sim = Simulator::new(&q).unwrap();
    let (mut y, mut a) = (None, None);
    sim.run_observed(&sample(&q, 7), |v, t| {
        if v == yv {
            y = Some(t.clone());
        } else if v == av {
            a = Some(t.clone());
        }
    })
    .unwrap();
    assert!(sim.integer_ops().contains(&sum), "the table path ran");
    let (y, a) = (y.unwrap(), a.unwrap());
    let (y, a) = (y.as_f32().unwrap(), a.as_f32().unwrap());
    let mut codes = std::collections::HashSet::new();
    for (&yv, &av) in y.iter().zip(a.iter()) {
        let t = yv * 0.632_965_86 + k * 1.0;
        let c = out.quantize(t, 0);
        codes.insert(c);
        assert_eq!(av, arith::dequantize(c, out.s(), out.z()), "at y = {yv}");
    }
    assert!(
        codes.len() > 10,
        "the sample spans the grid: {} codes",
        codes.len()
    );
}
