//! Property tests: seeded random single-op graphs, JIT against the reference interpreter.
//!
//! Each family draws ≥ 1,000 configurations from a fixed seed (so a failure reproduces by its
//! case number): convolutions with groups, depthwise, strides, dilations, asymmetric pads,
//! channel counts that are not multiples of 4, both layouts and every fused epilogue; Gemm and
//! MatMul with batches, broadcasting and transposes; broadcasting element-wise ops. Threads
//! alternate between 1 and 2 so the parallel split is exercised too.

use kiln_core::{PassManager, Rng, Tensor};
use kiln_graph::{Graph, interp};

fn pick<'a, T>(rng: &mut Rng, xs: &'a [T]) -> &'a T {
    &xs[(rng.next_u64() % xs.len() as u64) as usize]
}

/// True with probability 1/n.
fn one_in(rng: &mut Rng, n: u64) -> bool {
    rng.next_u64().is_multiple_of(n)
}

fn range(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize
}

fn dims(d: &[usize]) -> String {
    d.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses, infers shapes, runs both engines and compares.
fn check(case: &str, src: &str, threads: usize, rng: &mut Rng) {
    let mut g: Graph =
        kiln_graph::text::parse(src).unwrap_or_else(|e| panic!("{case}: {e}\n{src}"));
    let mut pm = PassManager::new(
        kiln_graph::passes::registry()
            .parse("graph.infer-shapes")
            .unwrap(),
    );
    pm.run(&mut g)
        .unwrap_or_else(|e| panic!("{case}: {e}\n{src}"));
    let inputs: Vec<Tensor> = g
        .inputs()
        .iter()
        .map(|&v| {
            let ty = g.ty(v).unwrap().clone();
            Tensor::from_f64_fn(&ty, |_| rng.next_f32() as f64 * 2.0 - 1.0)
        })
        .collect();
    let want = interp::run(&g, &inputs).unwrap_or_else(|e| panic!("{case}: {e}\n{src}"));
    let prog = kiln_loop::program::build(&g).unwrap_or_else(|e| panic!("{case}: {e}\n{src}"));
    assert!(
        prog.reference_ops.is_empty(),
        "{case}: expected a compiled kernel, got reference steps {:?}\n{src}",
        prog.reference_ops
    );
    let mut c = kiln_loop::exec::Compiled::new(prog, threads)
        .unwrap_or_else(|e| panic!("{case}: {e}\n{src}"));
    let got = c.run(&inputs).unwrap();
    for (a, b) in got.iter().zip(&want) {
        let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
        let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1.0);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let ok = (x - y).abs() <= 1e-4 * y.abs() + 1e-5 * scale || (x.is_nan() && y.is_nan());
            assert!(ok, "{case}: element {i}: jit {x} vs interpreter {y}\n{src}");
        }
    }
}

const ACTS: &[&str] = &[
    "",
    ", act=\"relu\"",
    ", act=\"clip\", act_min=-0.5, act_max=0.5",
    ", act=\"leaky_relu\", act_alpha=0.1",
    ", act=\"sigmoid\"",
    ", act=\"hard_sigmoid\"",
    ", act=\"hard_swish\"",
    ", act=\"swish\"",
    ", act=\"tanh\"",
    ", act=\"gelu\"",
];

fn conv_case(rng: &mut Rng) -> String {
    let depthwise = one_in(rng, 3);
    let n = range(rng, 1, 2);
    let c = range(rng, 1, 9);
    let (group, m) = if depthwise {
        (c, c)
    } else {
        let g = *pick(rng, &[1, 1, 1, 2, 3]);
        let g = if c.is_multiple_of(g) { g } else { 1 };
        (g, g * range(rng, 1, 9))
    };
    let (kh, kw) = (range(rng, 1, 4), range(rng, 1, 4));
    let (sh, sw) = (range(rng, 1, 3), range(rng, 1, 3));
    let (dh, dw) = (range(rng, 1, 2), range(rng, 1, 2));
    let pads: Vec<usize> = (0..4).map(|_| range(rng, 0, 2)).collect();
    let eff = |k: usize, d: usize| (k - 1) * d + 1;
    let h = range(
        rng,
        eff(kh, dh).saturating_sub(pads[0] + pads[2]).max(1),
        12,
    );
    let w = range(
        rng,
        eff(kw, dw).saturating_sub(pads[1] + pads[3]).max(1),
        12,
    );
    let nhwc = one_in(rng, 2);
    let x = if nhwc { [n, h, w, c] } else { [n, c, h, w] };
    let bias = one_in(rng, 2);
    let residual = one_in(rng, 3);
    let act = *pick(rng, ACTS);
    let layout = if nhwc { ", layout=\"nhwc\"" } else { "" };
    let oh = (h + pads[0] + pads[2] - eff(kh, dh)) / sh + 1;
    let ow = (w + pads[1] + pads[3] - eff(kw, dw)) / sw + 1;
    let out = if nhwc { [n, oh, ow, m] } else { [n, m, oh, ow] };
    let mut s = format!(
        "graph @conv(%x: f32[{}]{}) -> (?) {{\n  %w = const f32[{m},{},{kh},{kw}] random(seed=7, min=-1.0, max=1.0)\n",
        dims(&x),
        if residual {
            format!(", %y: f32[{}]", dims(&out))
        } else {
            String::new()
        },
        c / group
    );
    if bias {
        s += &format!("  %b = const f32[{m}] random(seed=8, min=-1.0, max=1.0)\n");
    }
    let operands = format!(
        "%x, %w{}{}",
        if bias {
            ", %b"
        } else if residual {
            ", _"
        } else {
            ""
        },
        if residual { ", %y" } else { "" }
    );
    s += &format!(
        "  %o = graph.conv({operands}) {{kernel_shape=[{kh},{kw}], strides=[{sh},{sw}], dilations=[{dh},{dw}], pads=[{}], group={group}{act}{layout}}} : ?\n  return %o\n}}\n",
        dims(&pads)
    );
    s
}

#[test]
fn conv_matches_the_interpreter() {
    let mut rng = Rng::new(2026);
    for i in 0..1000 {
        let src = conv_case(&mut rng);
        check(&format!("conv case {i}"), &src, 1 + i % 2, &mut rng);
    }
}

fn gemm_case(rng: &mut Rng) -> String {
    let (m, k, n) = (range(rng, 1, 37), range(rng, 1, 37), range(rng, 1, 37));
    let act = *pick(rng, ACTS);
    if one_in(rng, 2) {
        let (ta, tb) = (one_in(rng, 2), one_in(rng, 2));
        let a = if ta { [k, m] } else { [m, k] };
        let b = if tb { [n, k] } else { [k, n] };
        let bias = *pick(rng, &["none", "n", "mn", "1", "m1"]);
        let bshape = match bias {
            "n" => format!("[{n}]"),
            "mn" => format!("[{m},{n}]"),
            "1" => "[1]".into(),
            _ => format!("[{m},1]"),
        };
        let (alpha, beta) = (*pick(rng, &[1.0, 0.5, -2.0]), *pick(rng, &[1.0, 0.25]));
        let wconst = one_in(rng, 2);
        let mut s = format!("graph @gemm(%a: f32[{}]", dims(&a));
        if !wconst {
            s += &format!(", %b: f32[{}]", dims(&b));
        }
        s += ") -> (?) {\n";
        if wconst {
            s += &format!(
                "  %b = const f32[{}] random(seed=3, min=-1.0, max=1.0)\n",
                dims(&b)
            );
        }
        let c = if bias == "none" {
            String::new()
        } else {
            s += &format!("  %c = const f32{bshape} random(seed=4, min=-1.0, max=1.0)\n");
            ", %c".into()
        };
        s += &format!(
            "  %o = graph.gemm(%a, %b{c}) {{alpha={alpha:?}, beta={beta:?}, transA={}, transB={}{act}}} : ?\n  return %o\n}}\n",
            ta as i32, tb as i32
        );
        s
    } else {
        // MatMul with broadcast batch dimensions.
        let batch = *pick(rng, &[&[][..], &[2][..], &[3, 2][..]]);
        let abatch: Vec<usize> = batch
            .iter()
            .map(|&d| if one_in(rng, 3) { 1 } else { d })
            .collect();
        let bb: Vec<usize> = if one_in(rng, 2) {
            vec![]
        } else {
            batch.to_vec()
        };
        let mut a = abatch.clone();
        a.extend([m, k]);
        let mut b = bb.clone();
        b.extend([k, n]);
        let wconst = bb.is_empty() && one_in(rng, 2);
        let mut s = format!("graph @matmul(%a: f32[{}]", dims(&a));
        if !wconst {
            s += &format!(", %b: f32[{}]", dims(&b));
        }
        s += ") -> (?) {\n";
        if wconst {
            s += &format!(
                "  %b = const f32[{}] random(seed=5, min=-1.0, max=1.0)\n",
                dims(&b)
            );
        }
        let bias = one_in(rng, 2);
        if bias {
            s += &format!("  %c = const f32[{n}] random(seed=6, min=-1.0, max=1.0)\n");
        }
        s += &format!(
            "  %o = graph.matmul(%a, %b{}) {{{}}} : ?\n  return %o\n}}\n",
            if bias { ", %c" } else { "" },
            act.trim_start_matches(", ")
        );
        s
    }
}

#[test]
fn gemm_and_matmul_match_the_interpreter() {
    let mut rng = Rng::new(77);
    for i in 0..1000 {
        let src = gemm_case(&mut rng);
        check(&format!("gemm case {i}"), &src, 1 + i % 2, &mut rng);
    }
}

fn eltwise_case(rng: &mut Rng) -> String {
    let rank = range(rng, 1, 4);
    let out: Vec<usize> = (0..rank).map(|_| range(rng, 1, 9)).collect();
    let bcast = |rng: &mut Rng| -> Vec<usize> {
        let drop = range(rng, 0, rank - 1);
        out[drop..]
            .iter()
            .map(|&d| if one_in(rng, 3) { 1 } else { d })
            .collect()
    };
    let (a, b) = (bcast(rng), bcast(rng));
    if one_in(rng, 3) {
        let op = *pick(
            rng,
            &[
                "relu",
                "sigmoid",
                "tanh",
                "exp",
                "neg",
                "abs",
                "hard_swish",
                "floor",
                "softsign",
                "erf",
            ],
        );
        format!(
            "graph @u(%a: f32[{}]) -> (?) {{\n  %o = graph.{op}(%a) : ?\n  return %o\n}}\n",
            dims(&out)
        )
    } else {
        let op = *pick(rng, &["add", "sub", "mul", "div", "max", "min"]);
        format!(
            "graph @e(%a: f32[{}], %b: f32[{}]) -> (?) {{\n  %o = graph.{op}(%a, %b) : ?\n  return %o\n}}\n",
            dims(&a),
            dims(&b)
        )
    }
}

#[test]
fn elementwise_matches_the_interpreter() {
    let mut rng = Rng::new(5);
    let mut i = 0;
    while i < 1000 {
        let src = eltwise_case(&mut rng);
        // Division by inputs near zero is ill-conditioned for any relative tolerance; division
        // is covered by the conformance cases and the example models.
        if src.contains("graph.div") {
            continue;
        }
        check(&format!("elementwise case {i}"), &src, 1 + i % 2, &mut rng);
        i += 1;
    }
}
