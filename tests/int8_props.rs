//! Property tests of the int8 JIT: seeded random quantised units, compiled int8 kernels
//! against the simulator, which must agree **bit for bit** (zero differing elements).
//!
//! Each case builds a small graph in the graph dialect's text form, quantises it the way
//! `kiln quantize` does (platform kiln-x86, min-max calibration on 2–4 seeded random
//! samples, the whole `quant-opt` flow), compiles it with `kiln_loop::compile_int8`, runs a
//! fresh seeded input (a little wider than the calibration range, so clamping at the code
//! range is exercised too) and compares every output element's bits with
//! `Simulator::run`. Every family draws ≥ 500 cases; case `i` of a family uses seed
//! `family seed · 1_000_003 + i`, so a failure reproduces on its own (set
//! `KILN_INT8_CASE=i` to run only case `i` of every family and print its source).
//!
//! The op under test is always the node whose result is `%o`. Half of the cases feed it to
//! a `flatten` so that its result is quantised (a requantising epilogue); the others make it
//! a graph output, which kiln-x86 leaves in f32 (the f32 epilogue, unquantised). Where the
//! int8 kernels are expected to handle the op (group-1 convolutions and Gemm/MatMul with a
//! constant weight), the test also asserts that `%o` did not fall back to a host step, so
//! the kernels — not the simulator's own code — are what was checked.

use kiln_core::{Ir, PassManager, Rng, Tensor};
use kiln_graph::Graph;
use kiln_quant::plan::{self, Epilogue, IntPlan};
use kiln_quant::sim::Simulator;
use kiln_quant::{ObserverKind, QuantGraph, passes, platform};
use std::collections::BTreeMap;
use std::time::Instant;

fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[(rng.next_u64() % xs.len() as u64) as usize]
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

/// One generated case.
struct Case {
    src: String,
    /// `%o` must run as int8 kernels, not a host step.
    strict: bool,
}

/// What one case exercised (for the coverage summary).
#[derive(Default)]
struct Seen {
    /// `%o` ran as kernels (not a host step).
    kernel: bool,
    /// The simulator took `%o`'s integer path.
    sim_int: bool,
    /// The integer plan's kind (`requant`, `float+q`, `float`, `binary`, …, or `fp32`).
    plan: &'static str,
}

/// A calibration / evaluation range for one input.
fn input_range(rng: &mut Rng) -> (f32, f32) {
    pick(
        rng,
        &[
            (0.0, 1.0),
            (-1.0, 1.0),
            (-2.0, 0.5),
            (-0.3, 3.0),
            (-4.0, -0.5),
            (0.25, 0.75),
        ],
    )
}

fn sample(g: &Graph, ranges: &[(f32, f32)], widen: f32, rng: &mut Rng) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .zip(ranges)
        .map(|(&v, &(lo, hi))| {
            let ty = g.ty(v).unwrap().clone();
            let pad = (hi - lo) * widen;
            let (lo, hi) = (lo - pad, hi + pad);
            Tensor::from_f64_fn(&ty, |_| rng.uniform(lo, hi) as f64)
        })
        .collect()
}

/// Parses and shape-infers `src`, then quantises it as `kiln quantize` does, with
/// `samples` seeded calibration samples drawn in `ranges`.
fn quantise(src: &str, ranges: &[(f32, f32)], samples: usize, rng: &mut Rng) -> QuantGraph {
    let mut g: Graph = kiln_graph::text::parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    PassManager::new(
        kiln_graph::passes::registry()
            .parse("graph.infer-shapes")
            .unwrap(),
    )
    .run(&mut g)
    .unwrap_or_else(|e| panic!("{e}\n{src}"));
    let calib = (0..samples).map(|_| sample(&g, ranges, 0.0, rng)).collect();
    let mut q = QuantGraph::new(g, &platform::KILN_X86).unwrap_or_else(|e| panic!("{e}\n{src}"));
    q.observer = Some(ObserverKind::MinMax);
    q.calib = calib;
    PassManager::new(passes::registry().parse("quant-opt").unwrap())
        .run(&mut q)
        .unwrap_or_else(|e| panic!("{e}\n{src}"));
    q.verify().unwrap_or_else(|e| panic!("{e}\n{src}"));
    q
}

fn plan_kind(p: &Option<IntPlan>) -> &'static str {
    match p {
        None => "fp32",
        Some(IntPlan::Compute(c)) => match &c.epilogue {
            Epilogue::Requant { .. } => "requant",
            Epilogue::Float { out: Some(_), .. } => "float+q",
            Epilogue::Float { out: None, .. } => "float",
        },
        Some(IntPlan::Binary(_)) => "binary",
        Some(IntPlan::GlobalAvg { .. }) => "gap",
        Some(IntPlan::Lut { .. }) => "lut",
    }
}

/// Runs one case: quantise, compile, run, compare bitwise. Returns what it exercised, or
/// the first difference.
fn check(case: &Case, threads: usize, rng: &mut Rng) -> Result<Seen, String> {
    let src = &case.src;
    let n_inputs = src
        .lines()
        .next()
        .map_or(0, |l| l.matches(": f32[").count());
    let ranges: Vec<(f32, f32)> = (0..n_inputs).map(|_| input_range(rng)).collect();
    let samples = range(rng, 2, 4);
    let q = quantise(src, &ranges, samples, rng);
    let g = &q.graph;
    let node = g
        .node_ids()
        .into_iter()
        .find(|&n| g.node(n).outputs().iter().any(|&v| g.value(v).name == "o"))
        .ok_or("no node computes %o")?;
    let int_plan = plan::int_plan(&q, node).map_err(|e| format!("int_plan: {e}"))?;
    let input = sample(g, &ranges, 0.1, rng);
    let sim = Simulator::new(&q).map_err(|e| format!("simulator: {e}"))?;
    let want = sim.run(&input).map_err(|e| format!("simulator: {e}"))?;
    let sim_int = sim.integer_ops().contains(&node);
    let mut c = kiln_loop::compile_int8(&q, threads).map_err(|e| format!("compile: {e}"))?;
    let kernel = !c.program.host_ops.iter().any(|h| h.starts_with("o ("));
    if case.strict && !kernel {
        return Err(format!(
            "%o fell back to a host step (host ops {:?}, plan {})",
            c.program.host_ops,
            plan_kind(&int_plan)
        ));
    }
    let got = c.run(&input).map_err(|e| format!("jit run: {e}"))?;
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        if a.shape() != b.shape() {
            return Err(format!(
                "output {k}: shape {:?} vs simulator {:?}",
                a.shape(),
                b.shape()
            ));
        }
        let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
        let diff = a
            .iter()
            .zip(b.iter())
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count();
        if let Some((i, (x, y))) = a
            .iter()
            .zip(b.iter())
            .enumerate()
            .find(|(_, (x, y))| x.to_bits() != y.to_bits())
        {
            return Err(format!(
                "output {k} {:?}: {diff} of {} elements differ; first at flat index {i}: \
                 jit {x:e} ({:#010x}) vs simulator {y:e} ({:#010x}); plan {}, host ops {:?}",
                a.shape(),
                a.len(),
                x.to_bits(),
                y.to_bits(),
                plan_kind(&int_plan),
                c.program.host_ops
            ));
        }
    }
    Ok(Seen {
        kernel,
        sim_int,
        plan: plan_kind(&int_plan),
    })
}

/// Runs `count` cases of a family; prints coverage; fails listing every failing case.
fn family(name: &str, seed: u64, count: usize, generate: &dyn Fn(&mut Rng) -> Case) {
    let only: Option<usize> = std::env::var("KILN_INT8_CASE")
        .ok()
        .and_then(|s| s.parse().ok());
    let t0 = Instant::now();
    let mut plans: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut kernels, mut sim_int, mut ran) = (0, 0, 0);
    let mut failures = Vec::new();
    for i in 0..count {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        let case = generate(&mut rng);
        if only.is_some() {
            println!("{name} case {i}:\n{}", case.src);
        }
        ran += 1;
        match check(&case, 1 + i % 2, &mut rng) {
            Ok(s) => {
                kernels += s.kernel as usize;
                sim_int += s.sim_int as usize;
                *plans.entry(s.plan).or_default() += 1;
            }
            Err(e) => failures.push(format!("{name} case {i}: {e}\n{}", case.src)),
        }
    }
    println!(
        "{name}: {ran} cases in {:.1?}, {} failed; %o as int8 kernels in {kernels}, \
         simulator integer path in {sim_int}; plans {plans:?}",
        t0.elapsed(),
        failures.len()
    );
    for f in failures.iter().take(5) {
        println!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {ran} cases differ from the simulator; the first:\n{}",
        failures.len(),
        failures[0]
    );
}

/// Fused activations of compute ops, as attribute text. The first six (the common ones)
/// are listed twice, so they are drawn twice as often.
fn act(rng: &mut Rng) -> String {
    let acts = [
        "",
        "relu",
        "clip",
        "hard_swish",
        "sigmoid",
        "leaky_relu",
        "",
        "relu",
        "clip",
        "hard_swish",
        "sigmoid",
        "leaky_relu",
        "tanh",
        "swish",
        "hard_sigmoid",
        "gelu",
        "gelu_tanh",
    ];
    match pick(rng, &acts) {
        "" => String::new(),
        "clip" => {
            let lo = pick(rng, &[-0.5f32, 0.0, 0.1, -3.0]);
            let hi = pick(rng, &[0.5f32, 1.0, 6.0]);
            format!(", act=\"clip\", act_min={lo:?}, act_max={hi:?}")
        }
        "leaky_relu" => format!(
            ", act=\"leaky_relu\", act_alpha={:?}",
            pick(rng, &[0.1f32, 0.01, 0.3])
        ),
        a => format!(", act=\"{a}\""),
    }
}

/// `%o` as the graph output, or fed to a `flatten` whose result is (so `%o` is requantised).
fn finish(rng: &mut Rng, s: &mut String) {
    if one_in(rng, 2) {
        *s += "  %f = graph.flatten(%o) {axis=0} : ?\n  return %f\n}\n";
    } else {
        *s += "  return %o\n}\n";
    }
}

fn weight_seed(rng: &mut Rng) -> u64 {
    rng.next_u64() % 100_000
}

/// A 2-D convolution; `grouped` draws depthwise and grouped ones instead of group 1.
fn conv_case(rng: &mut Rng, grouped: bool) -> Case {
    let n = range(rng, 1, 2);
    let (c, group, m) = if !grouped {
        (range(rng, 1, 40), 1, range(rng, 1, 40))
    } else if one_in(rng, 2) {
        let c = range(rng, 1, 40);
        (c, c, c * range(rng, 1, 2))
    } else {
        let g = range(rng, 2, 5);
        (g * range(rng, 1, 8), g, g * range(rng, 1, 6))
    };
    let (kh, kw) = (range(rng, 1, 5), range(rng, 1, 5));
    let (sh, sw) = (range(rng, 1, 3), range(rng, 1, 3));
    let (dh, dw) = (range(rng, 1, 2), range(rng, 1, 2));
    let pads: Vec<usize> = (0..4).map(|_| range(rng, 0, 2)).collect();
    let eff = |k: usize, d: usize| (k - 1) * d + 1;
    let lo_h = eff(kh, dh).saturating_sub(pads[0] + pads[2]).max(1);
    let lo_w = eff(kw, dw).saturating_sub(pads[1] + pads[3]).max(1);
    let (h, w) = (range(rng, lo_h, lo_h + 6), range(rng, lo_w, lo_w + 6));
    let nhwc = one_in(rng, 2);
    let x = if nhwc { [n, h, w, c] } else { [n, c, h, w] };
    let oh = (h + pads[0] + pads[2] - eff(kh, dh)) / sh + 1;
    let ow = (w + pads[1] + pads[3] - eff(kw, dw)) / sw + 1;
    let out = if nhwc { [n, oh, ow, m] } else { [n, m, oh, ow] };
    let bias = one_in(rng, 2);
    let residual = one_in(rng, 3);
    let act = act(rng);
    let mut s = format!("graph @conv(%x: f32[{}]", dims(&x));
    if residual {
        s += &format!(", %r: f32[{}]", dims(&out));
    }
    s += &format!(
        ") -> (?) {{\n  %w = const f32[{m},{},{kh},{kw}] random(seed={}, min=-1.0, max=1.0)\n",
        c / group,
        weight_seed(rng)
    );
    if bias {
        s += &format!(
            "  %b = const f32[{m}] random(seed={}, min=-1.0, max=1.0)\n",
            weight_seed(rng)
        );
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
        if residual { ", %r" } else { "" }
    );
    s += &format!(
        "  %o = graph.conv({operands}) {{kernel_shape=[{kh},{kw}], strides=[{sh},{sw}], \
         dilations=[{dh},{dw}], pads=[{}], group={group}{act}{}}} : ?\n",
        dims(&pads),
        if nhwc { ", layout=\"nhwc\"" } else { "" }
    );
    finish(rng, &mut s);
    Case {
        src: s,
        strict: !grouped,
    }
}

#[test]
fn conv_int8_matches_the_simulator() {
    family("conv", 11, 500, &|rng| conv_case(rng, false));
}

#[test]
fn depthwise_and_grouped_conv_int8_match_the_simulator() {
    family("grouped conv", 12, 500, &|rng| conv_case(rng, true));
}

/// Gemm or MatMul. `strict` cases have a constant weight, alpha = beta = 1, no transA and
/// a per-channel (or no) bias: the int8 GEMM must run them.
fn gemm_case(rng: &mut Rng) -> Case {
    let (m, k, n) = (range(rng, 1, 40), range(rng, 1, 40), range(rng, 1, 40));
    let act = act(rng);
    let seed = weight_seed(rng);
    let mut strict = true;
    let mut s;
    match range(rng, 0, 3) {
        0 | 1 => {
            // Gemm; one case in five uses a form the integer path does not take.
            let odd = one_in(rng, 5);
            let tb = one_in(rng, 2);
            let ta = odd && one_in(rng, 2);
            let (alpha, beta) = if odd {
                (pick(rng, &[1.0f32, 0.5]), pick(rng, &[1.0f32, 0.25]))
            } else {
                (1.0, 1.0)
            };
            let bias = if odd {
                pick(rng, &["none", "n", "1", "mn", "m1"])
            } else {
                pick(rng, &["none", "n"])
            };
            strict = !(ta || alpha != 1.0 || beta != 1.0 || matches!(bias, "mn" | "m1" | "1"));
            let a = if ta { [k, m] } else { [m, k] };
            let b = if tb { [n, k] } else { [k, n] };
            s = format!(
                "graph @gemm(%a: f32[{}]) -> (?) {{\n  %b = const f32[{}] random(seed={seed}, min=-1.0, max=1.0)\n",
                dims(&a),
                dims(&b)
            );
            let c = match bias {
                "none" => String::new(),
                shape => {
                    let shape = match shape {
                        "n" => format!("{n}"),
                        "1" => "1".into(),
                        "mn" => format!("{m},{n}"),
                        _ => format!("{m},1"),
                    };
                    s += &format!(
                        "  %c = const f32[{shape}] random(seed={}, min=-1.0, max=1.0)\n",
                        seed + 1
                    );
                    ", %c".into()
                }
            };
            s += &format!(
                "  %o = graph.gemm(%a, %b{c}) {{alpha={alpha:?}, beta={beta:?}, transA={}, transB={}{act}}} : ?\n",
                ta as i32, tb as i32
            );
        }
        2 => {
            // MatMul with a constant 2-D B (transposed or not), batched A.
            let batch = pick(rng, &[&[][..], &[2][..], &[2, 3][..]]);
            let mut a = batch.to_vec();
            a.extend([m, k]);
            let tb = one_in(rng, 2);
            let b = if tb { [n, k] } else { [k, n] };
            s = format!(
                "graph @matmul(%a: f32[{}]) -> (?) {{\n  %b = const f32[{}] random(seed={seed}, min=-1.0, max=1.0)\n",
                dims(&a),
                dims(&b)
            );
            let bias = one_in(rng, 2);
            if bias {
                s += &format!(
                    "  %c = const f32[{n}] random(seed={}, min=-1.0, max=1.0)\n",
                    seed + 1
                );
            }
            let mut attrs = vec![];
            if tb {
                attrs.push("transB=1".to_string());
            }
            if !act.is_empty() {
                attrs.push(act.trim_start_matches(", ").to_string());
            }
            s += &format!(
                "  %o = graph.matmul(%a, %b{}) {{{}}} : ?\n",
                if bias { ", %c" } else { "" },
                attrs.join(", ")
            );
        }
        _ => {
            // MatMul of two activations with broadcast batch dimensions.
            strict = false;
            let batch = pick(rng, &[&[][..], &[2][..], &[3, 2][..]]);
            let mut a: Vec<usize> = batch
                .iter()
                .map(|&d| if one_in(rng, 3) { 1 } else { d })
                .collect();
            let mut b: Vec<usize> = if one_in(rng, 3) {
                vec![]
            } else {
                batch.to_vec()
            };
            a.extend([m, k]);
            b.extend([k, n]);
            s = format!(
                "graph @matmul(%a: f32[{}], %b: f32[{}]) -> (?) {{\n  %o = graph.matmul(%a, %b) {{{}}} : ?\n",
                dims(&a),
                dims(&b),
                act.trim_start_matches(", ")
            );
        }
    }
    finish(rng, &mut s);
    Case { src: s, strict }
}

#[test]
fn gemm_and_matmul_int8_match_the_simulator() {
    family("gemm/matmul", 13, 600, &gemm_case);
}

/// Add, Sub or Mul of two activations with broadcasting.
fn binary_case(rng: &mut Rng) -> Case {
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
    let op = pick(rng, &["add", "sub", "mul"]);
    let mut s = format!(
        "graph @e(%a: f32[{}], %b: f32[{}]) -> (?) {{\n  %o = graph.{op}(%a, %b) : ?\n",
        dims(&a),
        dims(&b)
    );
    finish(rng, &mut s);
    Case {
        src: s,
        strict: false,
    }
}

#[test]
fn binary_int8_matches_the_simulator() {
    family("add/sub/mul", 14, 500, &binary_case);
}

/// A 4-D activation shape in either layout, and the layout attribute.
fn image(rng: &mut Rng) -> (Vec<usize>, bool) {
    let (n, c, h, w) = (
        range(rng, 1, 2),
        range(rng, 1, 20),
        range(rng, 1, 9),
        range(rng, 1, 9),
    );
    let nhwc = one_in(rng, 2);
    (
        if nhwc {
            vec![n, h, w, c]
        } else {
            vec![n, c, h, w]
        },
        nhwc,
    )
}

fn layout_attr(nhwc: bool) -> &'static str {
    if nhwc { "layout=\"nhwc\"" } else { "" }
}

/// Global average pool in either layout.
fn gap_case(rng: &mut Rng) -> Case {
    let (x, nhwc) = image(rng);
    let mut s = format!(
        "graph @gap(%x: f32[{}]) -> (?) {{\n  %o = graph.global_average_pool(%x) {{{}}} : ?\n",
        dims(&x),
        layout_attr(nhwc)
    );
    finish(rng, &mut s);
    Case {
        src: s,
        strict: false,
    }
}

/// Max pooling (or, one case in five, average pooling) in either layout.
fn pool_case(rng: &mut Rng) -> Case {
    let (x, nhwc) = image(rng);
    let (h, w) = if nhwc { (x[1], x[2]) } else { (x[2], x[3]) };
    let (kh, kw) = (range(rng, 1, 3.min(h)), range(rng, 1, 3.min(w)));
    let pads = [
        range(rng, 0, kh - 1),
        range(rng, 0, kw - 1),
        range(rng, 0, kh - 1),
        range(rng, 0, kw - 1),
    ];
    let (sh, sw) = (range(rng, 1, 3), range(rng, 1, 3));
    let op = if one_in(rng, 5) {
        "average_pool"
    } else {
        "max_pool"
    };
    let mut attrs = format!(
        "kernel_shape=[{kh},{kw}], strides=[{sh},{sw}], pads=[{}]",
        dims(&pads)
    );
    if nhwc {
        attrs += ", layout=\"nhwc\"";
    }
    let mut s = format!(
        "graph @pool(%x: f32[{}]) -> (?) {{\n  %o = graph.{op}(%x) {{{attrs}}} : ?\n",
        dims(&x)
    );
    finish(rng, &mut s);
    Case {
        src: s,
        strict: false,
    }
}

/// An element-wise unary op (a lookup table on the integer path).
fn unary_case(rng: &mut Rng) -> Case {
    let rank = range(rng, 1, 4);
    let shape: Vec<usize> = (0..rank).map(|_| range(rng, 1, 9)).collect();
    let op = pick(
        rng,
        &[
            "relu",
            "sigmoid",
            "tanh",
            "hard_swish",
            "swish",
            "exp",
            "abs",
            "neg",
            "erf",
            "softplus",
            "softsign",
            "leaky_relu",
            "hard_sigmoid",
            "gelu",
            "clip",
        ],
    );
    let mut s = format!("graph @u(%x: f32[{}]) -> (?) {{\n", dims(&shape));
    s += &match op {
        "leaky_relu" => format!(
            "  %o = graph.leaky_relu(%x) {{alpha={:?}}} : ?\n",
            pick(rng, &[0.01f32, 0.1, 0.2])
        ),
        "hard_sigmoid" => "  %o = graph.hard_sigmoid(%x) {alpha=0.2, beta=0.5} : ?\n".into(),
        "clip" => format!(
            "  %lo = const f32[] dense<[{:?}]>\n  %hi = const f32[] dense<[{:?}]>\n  %o = graph.clip(%x, %lo, %hi) : ?\n",
            pick(rng, &[-0.5f32, 0.0, 0.2]),
            pick(rng, &[0.5f32, 1.0, 6.0])
        ),
        op => format!("  %o = graph.{op}(%x) : ?\n"),
    };
    finish(rng, &mut s);
    Case {
        src: s,
        strict: false,
    }
}

#[test]
fn global_average_pool_int8_matches_the_simulator() {
    family("global average pool", 15, 500, &gap_case);
}

#[test]
fn pools_int8_match_the_simulator() {
    family("max/average pool", 16, 500, &pool_case);
}

#[test]
fn unary_int8_matches_the_simulator() {
    family("unary (lookup tables)", 17, 500, &unary_case);
}
