//! The harness of `int8_props.rs`: quantising a case as `kiln quantize` does, running the
//! int8 JIT and the simulator, the bitwise comparison, the family driver with its coverage
//! summary, and the input shrinker that minimises a failing case.

use kiln_core::{Ir, PassManager, Rng, Tensor};
use kiln_graph::{Graph, NodeId};
use kiln_quant::plan::{self, Epilogue, IntPlan};
use kiln_quant::platform::{self, Platform};
use kiln_quant::sim::Simulator;
use kiln_quant::{ObserverKind, QuantGraph, passes};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

pub fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[(rng.next_u64() % xs.len() as u64) as usize]
}

/// True with probability 1/n.
pub fn one_in(rng: &mut Rng, n: u64) -> bool {
    rng.next_u64().is_multiple_of(n)
}

pub fn range(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize
}

pub fn dims(d: &[usize]) -> String {
    d.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// kiln-x86 with the tail of a graph left in int8. An op family's `%o` is its graph's last
/// op (or a `flatten` reads it), which kiln-x86 itself runs in f32 unless it is a compute
/// op ([`Platform::float_tail`]); the families are there to test the op's int8 kernels, so
/// they keep it in int8. Everything else, kernels included, is kiln-x86's. The families
/// of whole networks run on kiln-x86 itself.
pub static KILN_X86_INT8_TAIL: Platform = Platform {
    name: "kiln-x86 (int8 tail)",
    float_tail: false,
    ..platform::KILN_X86
};

/// One generated case: a graph in text form whose op under test computes `%o`.
pub struct Case {
    pub src: String,
    /// `%o` must run as int8 kernels, not a host step.
    pub strict: bool,
    /// Graph passes before quantisation (after shape inference); empty for none.
    pub pipeline: &'static str,
    pub platform: &'static Platform,
    /// `(numerator, divisor)` graph inputs of fp32 divisions (see `cases::through_fp32`):
    /// divisors calibrate in [0.5, 1]; at evaluation some are 0 (and the numerator too,
    /// half the time), so ±inf and NaN reach the op under test.
    pub divisions: Vec<(String, String)>,
}

impl Case {
    pub fn new(src: String, strict: bool) -> Case {
        Case {
            src,
            strict,
            pipeline: "",
            platform: &KILN_X86_INT8_TAIL,
            divisions: Vec::new(),
        }
    }

    /// A whole network: strict, through `graph-opt`, on kiln-x86 itself (its tail in f32).
    pub fn network(src: String) -> Case {
        Case {
            pipeline: "graph-opt",
            platform: &platform::KILN_X86,
            ..Case::new(src, true)
        }
    }

    /// Names and shapes of the graph inputs, from the signature line.
    pub fn inputs(&self) -> Vec<(String, Vec<usize>)> {
        let head = self.src.lines().next().unwrap_or_default();
        head.split('%')
            .skip(1)
            .filter_map(|p| {
                let (name, rest) = p.split_once(": f32[")?;
                let dims = rest.split(']').next()?;
                let shape = dims
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .map(|d| d.trim().parse().unwrap())
                    .collect();
                Some((name.to_string(), shape))
            })
            .collect()
    }
}

/// What one case exercised (for the coverage summary).
pub struct Seen {
    /// `%o` ran as int8 kernels (not a host step).
    pub kernel: bool,
    /// The simulator took `%o`'s integer path.
    pub sim_int: bool,
    /// The integer plan's kind (`requant`, `float+q`, `float`, `binary`, … or `fp32`).
    pub plan: &'static str,
    /// Host steps in the whole program.
    pub host_steps: usize,
    /// Values the program stored as u8 codes between int8 kernels.
    pub coded: usize,
    /// A strict case whose `%o` the plan itself kept off the integer path (the simulator
    /// runs it in fp32 too), e.g. when its bias codes could overflow the i32 accumulator.
    pub refused: bool,
}

/// What a family's cases exercised, for families that assert their coverage.
pub struct Coverage {
    /// Cases whose program stored some value as u8 codes.
    pub coded_cases: usize,
    pub ran: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Some element differs in value.
    Value,
    /// Only the sign of zeros differs (equal under `==`, not bitwise).
    SignOfZero,
    /// A strict case's `%o` ran as a host step.
    HostFallback,
    /// Anything else (an error from quantisation, compilation or a run).
    Error,
}

pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

fn error(message: String) -> Failure {
    Failure {
        kind: Kind::Error,
        message,
    }
}

/// Calibration / evaluation ranges of the case's inputs.
fn input_ranges(case: &Case, rng: &mut Rng) -> Vec<(f32, f32)> {
    case.inputs()
        .iter()
        .map(|(name, _)| {
            if case.divisions.iter().any(|(_, d)| d == name) {
                (0.5, 1.0)
            } else {
                input_range(rng)
            }
        })
        .collect()
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

/// A calibration sample: uniform in each input's range.
fn sample(g: &Graph, ranges: &[(f32, f32)], rng: &mut Rng) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .zip(ranges)
        .map(|(&v, &(lo, hi))| {
            let ty = g.ty(v).unwrap().clone();
            Tensor::from_f64_fn(&ty, |_| rng.uniform(lo, hi) as f64)
        })
        .collect()
}

/// The evaluation input: uniform over the calibration range widened by 10% on each side (so
/// codes clamp); in one case of four snapped to half steps of the input's grid (so rounding
/// ties occur), in one of four with special values sprinkled in (±0, ±inf, NaN, ±1e30).
/// Divisors of the case's fp32 divisions are 0 one element in eight, with the numerator 0
/// too half the time (x/0 = ±inf, 0/0 = NaN).
fn eval_input(case: &Case, q: &QuantGraph, ranges: &[(f32, f32)], rng: &mut Rng) -> Vec<Tensor> {
    let g = &q.graph;
    let mode = range(rng, 0, 3);
    let mut input: Vec<Tensor> = g
        .inputs()
        .iter()
        .zip(ranges)
        .map(|(&v, &(lo, hi))| {
            let ty = g.ty(v).unwrap().clone();
            let pad = (hi - lo) * 0.1;
            let half_step = plan::quantises(q, q.out_tqc(v)).map(|p| p.s() * 0.5);
            Tensor::from_f64_fn(&ty, |_| {
                let x = rng.uniform(lo - pad, hi + pad);
                let x = match (mode, half_step) {
                    (1, Some(h)) => (x / h).round() * h,
                    (2, _) if one_in(rng, 8) => pick(
                        rng,
                        &[
                            0.0,
                            -0.0,
                            f32::NAN,
                            f32::INFINITY,
                            f32::NEG_INFINITY,
                            1e30,
                            -1e30,
                        ],
                    ),
                    _ => x,
                };
                x as f64
            })
        })
        .collect();
    let names: Vec<String> = case.inputs().into_iter().map(|(n, _)| n).collect();
    let at = |n: &str| names.iter().position(|m| m == n).unwrap();
    for (num, den) in &case.divisions {
        let (i, j) = (at(num), at(den));
        let mut x: Vec<f32> = input[i].as_f32().unwrap().iter().copied().collect();
        let mut d: Vec<f32> = input[j].as_f32().unwrap().iter().copied().collect();
        for (x, d) in x.iter_mut().zip(&mut d) {
            if one_in(rng, 8) {
                *d = 0.0;
                if one_in(rng, 2) {
                    *x = 0.0;
                }
            }
        }
        input[i] = Tensor::from_vec(input[i].shape(), x).unwrap();
        input[j] = Tensor::from_vec(input[j].shape(), d).unwrap();
    }
    input
}

/// Parses and shape-infers the case, runs its graph passes, then quantises it as
/// `kiln quantize` does (the CLI's `quantize()`: `QuantGraph::new` on the platform, the
/// min-max observer, the calibration samples `calib` makes, the whole `quant-opt` flow).
pub fn quantise(case: &Case, calib: &mut dyn FnMut(&Graph) -> Vec<Vec<Tensor>>) -> QuantGraph {
    let src = &case.src;
    let mut g: Graph = kiln_graph::text::parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let reg = kiln_graph::passes::registry();
    for pipeline in ["graph.infer-shapes", case.pipeline] {
        if !pipeline.is_empty() {
            PassManager::new(reg.parse(pipeline).unwrap())
                .run(&mut g)
                .unwrap_or_else(|e| panic!("{pipeline}: {e}\n{src}"));
        }
    }
    let calib = calib(&g);
    let mut q = QuantGraph::new(g, case.platform).unwrap_or_else(|e| panic!("{e}\n{src}"));
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
            Epilogue::Table { .. } => "table",
            Epilogue::Float { out: Some(_), .. } => "float+q",
            Epilogue::Float { out: None, .. } => "float",
        },
        Some(IntPlan::Binary(_)) => "binary",
        Some(IntPlan::GlobalAvg { .. }) => "gap",
        Some(IntPlan::Lut { .. }) => "lut",
        Some(IntPlan::ChannelLut { .. }) => "channel lut",
    }
}

/// The node computing `%o` (named `o_nhwc` once the layout pass moved it channels last).
fn op_under_test(g: &Graph) -> Option<NodeId> {
    g.node_ids().into_iter().find(|&n| {
        g.node(n)
            .outputs()
            .iter()
            .any(|&v| matches!(g.value(v).name.as_str(), "o" | "o_nhwc"))
            && !matches!(g.node(n).op, kiln_graph::Op::Transpose(_))
    })
}

/// Bitwise comparison of output lists; NaN equals NaN (payloads carry no meaning).
fn differences(got: &[Tensor], want: &[Tensor]) -> Option<Failure> {
    for (k, (a, b)) in got.iter().zip(want).enumerate() {
        if a.shape() != b.shape() {
            return Some(error(format!(
                "output {k}: shape {:?} vs simulator {:?}",
                a.shape(),
                b.shape()
            )));
        }
        let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
        let (mut values, mut zeros) = ((0, None), (0, None));
        for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            if x.to_bits() == y.to_bits() || x.is_nan() && y.is_nan() {
                continue;
            }
            let d = if x == y { &mut zeros } else { &mut values };
            d.0 += 1;
            d.1.get_or_insert((i, *x, *y));
        }
        if values.0 + zeros.0 == 0 {
            continue;
        }
        let first = |(n, f): (usize, Option<(usize, f32, f32)>), what: &str| match f {
            Some((i, x, y)) => format!(
                "{n} {what}, first at flat index {i}: jit {x:e} ({:#010x}) vs simulator {y:e} \
                 ({:#010x})",
                x.to_bits(),
                y.to_bits()
            ),
            None => format!("0 {what}"),
        };
        return Some(Failure {
            kind: if values.0 > 0 {
                Kind::Value
            } else {
                Kind::SignOfZero
            },
            message: format!(
                "output {k} {:?} ({} elements): {}; {}",
                a.shape(),
                a.len(),
                first(values, "value differences"),
                first(zeros, "sign-of-zero differences (== but not bitwise)"),
            ),
        });
    }
    None
}

/// Compiles `q`, runs it and the simulator on `input`, compares bitwise.
pub fn compare(
    case: &Case,
    q: &QuantGraph,
    input: &[Tensor],
    threads: usize,
) -> Result<Seen, Failure> {
    let g = &q.graph;
    let node = op_under_test(g).ok_or_else(|| error("no node computes %o".into()))?;
    let int_plan = plan::int_plan(q, node).map_err(|e| error(format!("int_plan: {e}")))?;
    let sim = Simulator::new(q).map_err(|e| error(format!("simulator: {e}")))?;
    let want = sim
        .run(input)
        .map_err(|e| error(format!("simulator: {e}")))?;
    let sim_int = sim.integer_ops().contains(&node);
    let mut c = kiln_loop::compile_int8(q, threads).map_err(|e| error(format!("compile: {e}")))?;
    let host = &c.program.host_ops;
    let kernel = !host
        .iter()
        .any(|h| h.starts_with("o (") || h.starts_with("o_nhwc ("));
    let compute = matches!(
        g.node(node).op,
        kiln_graph::Op::Conv(_) | kiln_graph::Op::Gemm(_) | kiln_graph::Op::MatMul(_)
    );
    let refused = case.strict && compute && int_plan.is_none();
    if case.strict && !kernel && !refused {
        let weight = q.in_tqc(node, 1).map(|id| {
            let t = q.effective(id);
            format!(
                "{:?}, axis {:?}, {} scales",
                q.tqc(id).state,
                t.axis,
                t.scale.len()
            )
        });
        return Err(Failure {
            kind: Kind::HostFallback,
            message: format!(
                "%o fell back to a host step (host ops {host:?}, plan {}, weight TQC {weight:?})",
                plan_kind(&int_plan)
            ),
        });
    }
    let got = c.run(input).map_err(|e| error(format!("jit run: {e}")))?;
    if let Some(mut f) = differences(&got, &want) {
        f.message += &format!(
            "; plan {}, host ops {:?}",
            plan_kind(&int_plan),
            c.program.host_ops
        );
        return Err(f);
    }
    Ok(Seen {
        kernel,
        sim_int,
        plan: plan_kind(&int_plan),
        host_steps: c.program.host_ops.len(),
        coded: c.program.coded_values.len(),
        refused,
    })
}

/// Runs one case: quantise with 2–4 seeded samples, a fresh seeded input, compare. With
/// `shrink`, a difference is minimised and printed (see [`shrink_input`]).
fn check(case: &Case, threads: usize, rng: &mut Rng, shrink: bool) -> Result<Seen, Failure> {
    let ranges = input_ranges(case, rng);
    let samples = range(rng, 2, 4);
    let q = quantise(case, &mut |g| {
        (0..samples).map(|_| sample(g, &ranges, rng)).collect()
    });
    let input = eval_input(case, &q, &ranges, rng);
    let r = compare(case, &q, &input, threads);
    match &r {
        Err(f) if shrink && matches!(f.kind, Kind::Value | Kind::SignOfZero) => {
            shrink_input(&q, &ranges, input)
        }
        Err(_) if shrink => println!("{}", q.print()),
        _ => {}
    }
    r
}

/// Minimises a failing input: every element in turn is set to the middle of its input's
/// range, and kept so when the outputs still differ. Prints the elements left, the inputs'
/// quantisation parameters and the quant IR.
fn shrink_input(q: &QuantGraph, ranges: &[(f32, f32)], mut input: Vec<Tensor>) {
    let mut c = kiln_loop::compile_int8(q, 1).unwrap();
    let sim = Simulator::new(q).unwrap();
    let mut differs = |input: &[Tensor]| {
        let got = c.run(input).unwrap();
        differences(&got, &sim.run(input).unwrap())
    };
    for k in 0..input.len() {
        let mid = (ranges[k].0 + ranges[k].1) * 0.5;
        for e in 0..input[k].len() {
            let mut v: Vec<f32> = input[k].as_f32().unwrap().iter().copied().collect();
            if v[e] == mid {
                continue;
            }
            v[e] = mid;
            let t = Tensor::from_vec(input[k].shape(), v).unwrap();
            let old = std::mem::replace(&mut input[k], t);
            if differs(&input).is_none() {
                input[k] = old;
            }
        }
    }
    println!(
        "shrunk: {}",
        differs(&input).map_or("no difference left".into(), |f| f.message)
    );
    for (k, t) in input.iter().enumerate() {
        let mid = (ranges[k].0 + ranges[k].1) * 0.5;
        let left: Vec<(usize, f32)> = t
            .as_f32()
            .unwrap()
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, x)| x != mid)
            .collect();
        let p = plan::quantises(q, q.out_tqc(q.graph.inputs()[k]));
        println!(
            "  input {k}: every element {mid} except (index, value) {left:?}; TQC {:?}",
            p.map(|p| (p.s(), p.z()))
        );
    }
    println!("{}", q.print());
}

/// Case `i` of the family with seed `seed`: its generator's seed.
pub fn case_rng(seed: u64, i: usize) -> Rng {
    Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64))
}

/// Runs `count` cases of a family (case `i` drawn from [`case_rng`]); prints the coverage;
/// fails listing every failing case. `KILN_INT8_CASE=i` runs case `i` alone, printing its
/// source and, when it fails, the shrunk input.
pub fn family(
    name: &str,
    seed: u64,
    count: usize,
    generate: &dyn Fn(&mut Rng) -> Case,
) -> Coverage {
    let only: Option<usize> = std::env::var("KILN_INT8_CASE")
        .ok()
        .and_then(|s| s.parse().ok());
    let t0 = Instant::now();
    let mut plans: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<Kind, usize> = BTreeMap::new();
    let (mut kernels, mut sim_int, mut ran, mut host_steps, mut coded) = (0, 0, 0, 0, 0);
    let mut refused = 0;
    let mut failures = Vec::new();
    for i in 0..count {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let mut rng = case_rng(seed, i);
        let case = generate(&mut rng);
        if only.is_some() {
            println!("{name} case {i}:\n{}", case.src);
        }
        ran += 1;
        match check(&case, 1 + i % 2, &mut rng, only.is_some()) {
            Ok(s) => {
                kernels += s.kernel as usize;
                sim_int += s.sim_int as usize;
                host_steps += s.host_steps;
                coded += (s.coded > 0) as usize;
                refused += s.refused as usize;
                *plans.entry(s.plan).or_default() += 1;
            }
            Err(f) => {
                *kinds.entry(f.kind).or_default() += 1;
                failures.push(format!("{name} case {i}: {f}\n{}", case.src));
            }
        }
    }
    println!(
        "{name}: {ran} cases in {:.1?}, {} failed {kinds:?}; %o as int8 kernels in {kernels}, \
         simulator integer path in {sim_int}, host steps in all {host_steps}, u8-coded values \
         in {coded}; plans {plans:?}",
        t0.elapsed(),
        failures.len(),
    );
    for f in &failures {
        println!("  {}", f.lines().next().unwrap_or_default());
    }
    // A plan may refuse the integer path for a reason of its own (degenerate scales), but
    // rarely: more would mean the kernels lost ground, which the strict check is for.
    assert!(
        refused * 50 <= ran,
        "{name}: the plan kept %o off the integer path in {refused} of {ran} strict cases"
    );
    assert!(
        failures.is_empty(),
        "{name}: {} of {ran} cases differ from the simulator; the first:\n{}",
        failures.len(),
        failures[0]
    );
    Coverage {
        coded_cases: coded,
        ran,
    }
}

/// Runs `src`, calibrated on the one sample `calib` (a slice per input), on `input`.
pub fn fixed(src: &str, calib: &[&[f32]], input: &[&[f32]]) -> Result<Seen, Failure> {
    let case = Case::new(src.to_string(), false);
    let tensors = |g: &Graph, xs: &[&[f32]]| -> Vec<Tensor> {
        g.inputs()
            .iter()
            .zip(xs)
            .map(|(&v, x)| Tensor::from_vec(&g.ty(v).unwrap().shape, x.to_vec()).unwrap())
            .collect()
    };
    let q = quantise(&case, &mut |g| vec![tensors(g, calib)]);
    let inputs = tensors(&q.graph, input);
    compare(&case, &q, &inputs, 1).map_err(|f| Failure {
        kind: f.kind,
        message: format!("{}\n{}", f.message, q.print()),
    })
}
