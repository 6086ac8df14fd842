//! Pool and reduction lowerings against the reference interpreter: seeded random shapes and
//! attributes per op family, each compiled by the JIT (one and two threads) and also run
//! through the loop-IR evaluator, whose bounds-checked loads prove no kernel reads outside
//! its buffers.

use kiln_core::{Attrs, DType, Rng, Tensor, TensorType};
use kiln_graph::ops::{Const, Op};
use kiln_graph::{Graph, infer, interp};
use kiln_loop::eval::{self, Data};
use kiln_loop::exec::Compiled;
use kiln_loop::program::{self, Loc, Program, Step};
use std::collections::HashMap;

/// An operand of the node under test.
enum In {
    Input(Vec<usize>),
    Const(Tensor),
    Absent,
}

fn rand_tensor(rng: &mut Rng, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.uniform(lo, hi)).collect();
    Tensor::from_vec(shape, v).unwrap()
}

/// A graph with the one node `op` over `ins`; `None` when shape inference rejects it.
fn graph(op: Op, ins: &[In]) -> Option<Graph> {
    let mut g = Graph::new("t");
    let mut operands = Vec::new();
    for (k, i) in ins.iter().enumerate() {
        operands.push(match i {
            In::Input(s) => Some(g.add_input(
                format!("in{k}"),
                Some(TensorType::new(DType::F32, s.clone())),
            )),
            In::Const(t) => {
                let (_, o) = g.add_node(
                    format!("c{k}"),
                    Op::Const(Const::new(t.clone())),
                    vec![],
                    vec![format!("c{k}")],
                );
                Some(o[0])
            }
            In::Absent => None,
        });
    }
    let (_, outs) = g.add_node("n", op, operands, vec!["y".into()]);
    g.set_outputs(outs);
    infer::infer_shapes(&mut g).ok()?;
    Some(g)
}

/// A hashable name for a buffer location.
fn key(l: Loc) -> (u8, usize) {
    match l {
        Loc::Input(i) => (0, i),
        Loc::Const(i) => (1, i),
        Loc::Arena(o) => (2, o),
    }
}

/// Runs `p` kernel by kernel through the loop-IR evaluator (bounds-checked).
fn run_eval(p: &Program, inputs: &[Tensor]) -> Vec<f32> {
    let mut bufs: HashMap<(u8, usize), Vec<f32>> = HashMap::new();
    for (i, t) in inputs.iter().enumerate() {
        bufs.insert(
            key(Loc::Input(i)),
            t.as_f32().unwrap().iter().copied().collect(),
        );
    }
    for (i, c) in p.consts.iter().enumerate() {
        // SAFETY: constant data holds `bytes` initialised bytes of f32s.
        let b = unsafe { std::slice::from_raw_parts(c.ptr(), c.bytes) };
        let v = b
            .chunks(4)
            .map(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        bufs.insert(key(Loc::Const(i)), v);
    }
    for s in &p.steps {
        let Step::Kernel { kernel, args } = s else {
            panic!("reference step")
        };
        let k = &p.module.kernels[*kernel];
        let mut data: Vec<Data> = args
            .iter()
            .zip(&k.bufs)
            .map(|(l, d)| {
                let mut v = bufs.get(&key(*l)).cloned().unwrap_or_default();
                v.resize(d.len, f32::NAN);
                Data::F32(v)
            })
            .collect();
        eval::run(k, &mut data).unwrap_or_else(|e| panic!("eval: {e}"));
        for (l, d) in args.iter().zip(data) {
            let Data::F32(v) = d else { unreachable!() };
            bufs.insert(key(*l), v);
        }
    }
    bufs[&key(p.outputs[0].0)].clone()
}

/// Compares against the reference; `exact` for max/min kinds.
fn check(label: &str, got: &[f64], want: &[f64], exact: bool) {
    assert_eq!(got.len(), want.len(), "{label}: length");
    let scale = want
        .iter()
        .filter(|v| v.is_finite())
        .fold(0f64, |m, v| m.max(v.abs()));
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let ok = if b.is_nan() {
            a.is_nan()
        } else if exact || b.is_infinite() {
            a == b
        } else {
            (a - b).abs() <= 1e-5 * (b.abs() + scale)
        };
        assert!(ok, "{label}: element {i}: got {a}, want {b}");
    }
}

/// Builds, compiles and runs one configuration on inputs in [-3, 3); returns false when
/// the graph is invalid.
fn case(
    label: &str,
    op: Op,
    ins: Vec<In>,
    rng: &mut Rng,
    threads: usize,
    exact: bool,
    use_eval: bool,
) -> bool {
    case_in(label, op, ins, rng, (threads, exact, use_eval), (-3.0, 3.0))
}

/// [`case`] with inputs uniform in `range`; `how` is (threads, exact, use_eval).
fn case_in(
    label: &str,
    op: Op,
    ins: Vec<In>,
    rng: &mut Rng,
    how: (usize, bool, bool),
    range: (f32, f32),
) -> bool {
    let (threads, exact, use_eval) = how;
    let Some(g) = graph(op, &ins) else {
        return false;
    };
    let inputs: Vec<Tensor> = g
        .inputs()
        .iter()
        .map(|&v| rand_tensor(rng, &g.ty(v).unwrap().shape, range.0, range.1))
        .collect();
    let want = interp::run(&g, &inputs).unwrap_or_else(|e| panic!("{label}: interp: {e}"));
    let p = program::build(&g).unwrap_or_else(|e| panic!("{label}: build: {e}"));
    assert!(
        p.reference_ops.is_empty(),
        "{label}: not lowered: {:?}",
        p.reference_ops
    );
    for k in p.kernels() {
        kiln_loop::verify::verify_kernel(k).unwrap_or_else(|e| panic!("{label}: {e}"));
    }
    let want = want[0].to_f64_vec();
    if use_eval {
        let ev: Vec<f64> = run_eval(&p, &inputs).iter().map(|&v| v as f64).collect();
        check(&format!("{label} (eval)"), &ev, &want, exact);
    }
    let mut c = Compiled::new(p, threads).unwrap_or_else(|e| panic!("{label}: jit: {e}"));
    let got = c
        .run(&inputs)
        .unwrap_or_else(|e| panic!("{label}: run: {e}"));
    check(label, &got[0].to_f64_vec(), &want, exact);
    true
}

fn pick(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

fn op(name: &str, a: Attrs) -> Op {
    Op::from_attrs(name, a).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn spatial_attrs(rng: &mut Rng, nd: usize, dims: &[usize], dilate: bool) -> Attrs {
    let k: Vec<i64> = (0..nd)
        .map(|i| 1 + pick(rng, 4.min(dims[i] + 1)) as i64)
        .collect();
    let st: Vec<i64> = (0..nd).map(|_| 1 + pick(rng, 3) as i64).collect();
    let dl: Vec<i64> = (0..nd)
        .map(|_| if dilate { 1 + pick(rng, 2) as i64 } else { 1 })
        .collect();
    let mut pads = vec![0i64; 2 * nd];
    if pick(rng, 4) != 0 {
        for i in 0..nd {
            pads[i] = pick(rng, k[i] as usize) as i64;
            pads[i + nd] = pick(rng, k[i] as usize) as i64;
        }
    }
    let mut a = Attrs::new().ints("kernel_shape", &k).ints("strides", &st);
    if dilate {
        a = a.ints("dilations", &dl);
    }
    match pick(rng, 8) {
        0 => a.str("auto_pad", "SAME_UPPER", "NOTSET"),
        1 => a.str("auto_pad", "SAME_LOWER", "NOTSET"),
        2 => a.str("auto_pad", "VALID", "NOTSET"),
        _ => a.ints("pads", &pads),
    }
}

const CHANNELS: &[usize] = &[1, 2, 3, 4, 5, 7, 8, 12, 16, 17, 24, 33, 64, 70];

/// `(stored shape, layout attrs)` of a random pooling input.
fn pool_input(rng: &mut Rng, nd: usize, max_side: usize) -> (Vec<usize>, Vec<usize>, bool) {
    let n = 1 + pick(rng, 2);
    let c = CHANNELS[pick(rng, CHANNELS.len())];
    let dims: Vec<usize> = (0..nd).map(|_| 1 + pick(rng, max_side)).collect();
    let nhwc = pick(rng, 2) == 0;
    let shape = if nhwc {
        std::iter::once(n)
            .chain(dims.iter().copied())
            .chain(std::iter::once(c))
            .collect()
    } else {
        [n, c].into_iter().chain(dims.iter().copied()).collect()
    };
    (shape, dims, nhwc)
}

#[test]
fn max_and_average_pools_match_the_interpreter() {
    let mut rng = Rng::new(0x9001);
    let (mut done, mut tries) = (0, 0);
    while done < 300 {
        tries += 1;
        assert!(tries < 5000, "too many invalid configurations");
        let nd = [1, 2, 2, 2, 3][pick(&mut rng, 5)];
        let max_side = if nd == 3 { 6 } else { 13 };
        let (shape, dims, nhwc) = pool_input(&mut rng, nd, max_side);
        let max = pick(&mut rng, 2) == 0;
        let dilate = pick(&mut rng, 2) == 0;
        let mut a = spatial_attrs(&mut rng, nd, &dims, dilate);
        a = a.int("ceil_mode", pick(&mut rng, 2) as i64, 0);
        if !max {
            a = a.int("count_include_pad", pick(&mut rng, 2) as i64, 0);
        }
        if nhwc {
            a = a.str("layout", "nhwc", "nchw");
        }
        let name = if max { "max_pool" } else { "average_pool" };
        let label = format!("#{done} {name} {shape:?} {a:?}");
        let Ok(o) = Op::from_attrs(name, a) else {
            continue;
        };
        let threads = 1 + done % 2;
        if case(
            &label,
            o,
            vec![In::Input(shape)],
            &mut rng,
            threads,
            max,
            done % 3 == 0,
        ) {
            done += 1;
        }
    }
}

#[test]
fn global_pools_match_the_interpreter() {
    let mut rng = Rng::new(0x9002);
    for i in 0..200 {
        let nd = 1 + pick(&mut rng, 3);
        let (shape, _, nhwc) = pool_input(&mut rng, nd, if nd == 3 { 6 } else { 20 });
        let max = pick(&mut rng, 2) == 0;
        let name = if max {
            "global_max_pool"
        } else {
            "global_average_pool"
        };
        let mut a = Attrs::new();
        if nhwc {
            a = a.str("layout", "nhwc", "nchw");
        }
        let label = format!("#{i} {name} {shape:?} nhwc={nhwc}");
        assert!(
            case(
                &label,
                op(name, a),
                vec![In::Input(shape)],
                &mut rng,
                1 + i % 2,
                max,
                i % 3 == 0
            ),
            "{label}"
        );
    }
}

fn rand_shape(rng: &mut Rng, rank: usize, max: usize) -> Vec<usize> {
    (0..rank)
        .map(|_| {
            if pick(rng, 4) == 0 {
                1
            } else {
                1 + pick(rng, max)
            }
        })
        .collect()
}

#[test]
fn softmax_family_matches_the_interpreter() {
    let mut rng = Rng::new(0x9003);
    for i in 0..240 {
        let rank = 1 + pick(&mut rng, 4);
        let mut shape = rand_shape(&mut rng, rank, if rank > 2 { 12 } else { 40 });
        let axis = pick(&mut rng, rank) as i64
            - if pick(&mut rng, 2) == 0 {
                rank as i64
            } else {
                0
            };
        if pick(&mut rng, 5) == 0 {
            let a = axis.rem_euclid(rank as i64) as usize;
            shape[a] = 50 + pick(&mut rng, 150);
        }
        let name = if pick(&mut rng, 2) == 0 {
            "softmax"
        } else {
            "log_softmax"
        };
        let label = format!("#{i} {name} {shape:?} axis={axis}");
        let o = op(name, Attrs::new().int("axis", axis, -1));
        assert!(
            case(
                &label,
                o,
                vec![In::Input(shape)],
                &mut rng,
                1 + i % 2,
                false,
                i % 3 == 0
            ),
            "{label}"
        );
    }
}

#[test]
fn reductions_match_the_interpreter() {
    let mut rng = Rng::new(0x9004);
    let kinds = [
        "reduce_sum",
        "reduce_mean",
        "reduce_max",
        "reduce_min",
        "reduce_sum_square",
        "reduce_l1",
        "reduce_l2",
        "reduce_log_sum",
        "reduce_log_sum_exp",
        "reduce_prod",
    ];
    let mut done = 0;
    let mut fallback = 0;
    while done < 300 {
        let rank = 1 + pick(&mut rng, 4);
        let shape = rand_shape(&mut rng, rank, if rank > 2 { 10 } else { 70 });
        let name = kinds[pick(&mut rng, kinds.len())];
        let keep = pick(&mut rng, 2) as i64;
        let a = Attrs::new().int("keepdims", keep, 1);
        // One run of adjacent axes, or two runs with a kept axis between them (what the
        // lowering covers), sometimes all, sometimes none given; negative half the time.
        let axes: Option<Vec<i64>> = match pick(&mut rng, 6) {
            0 => None,
            k => {
                let mut set: Vec<usize> = Vec::new();
                if k <= 2 && rank >= 3 {
                    let a = pick(&mut rng, rank - 2);
                    let a_end = a + 1 + pick(&mut rng, rank - 2 - a);
                    let b = a_end + 1 + pick(&mut rng, rank - a_end - 1);
                    let b_end = b + 1 + pick(&mut rng, rank - b);
                    set.extend(a..a_end);
                    set.extend(b..b_end);
                } else {
                    let lo = pick(&mut rng, rank);
                    let hi = lo + 1 + pick(&mut rng, rank - lo);
                    set.extend(lo..hi);
                }
                let neg = |x: usize, rng: &mut Rng| {
                    if pick(rng, 2) == 0 {
                        x as i64 - rank as i64
                    } else {
                        x as i64
                    }
                };
                Some(set.into_iter().map(|x| neg(x, &mut rng)).collect())
            }
        };
        let mut ins = vec![In::Input(shape.clone())];
        if let Some(ax) = &axes {
            ins.push(In::Const(
                Tensor::from_vec(&[ax.len()], ax.clone()).unwrap(),
            ));
        }
        let label = format!("#{done} {name} {shape:?} axes={axes:?} keepdims={keep}");
        let exact = matches!(name, "reduce_max" | "reduce_min");
        let Some(g) = graph(op(name, a.clone()), &ins) else {
            continue;
        };
        if !program::build(&g).unwrap().reference_ops.is_empty() {
            fallback += 1;
            continue;
        }
        // A log of a sum near zero amplifies rounding without bound: positive data there.
        let range = if name == "reduce_log_sum" {
            (0.1, 3.0)
        } else {
            (-3.0, 3.0)
        };
        let how = (1 + done % 2, exact, done % 3 == 0);
        assert!(
            case_in(&label, op(name, a), ins, &mut rng, how, range),
            "{label}"
        );
        done += 1;
    }
    assert_eq!(fallback, 0, "adjacent axes always lower");
}

#[test]
fn layer_and_instance_norms_match_the_interpreter() {
    let mut rng = Rng::new(0x9005);
    for i in 0..240 {
        let rank = 1 + pick(&mut rng, 4);
        let shape = rand_shape(&mut rng, rank, if rank > 2 { 10 } else { 60 });
        let axis = pick(&mut rng, rank);
        let tail = shape[axis..].to_vec();
        let eps = [1e-5f32, 1e-3, 0.1][pick(&mut rng, 3)];
        // Scale and bias: the full tail as inputs, or constants broadcasting to it.
        let param = |rng: &mut Rng| -> In {
            match pick(rng, 3) {
                0 => In::Input(tail.clone()),
                1 => In::Const(rand_tensor(rng, &tail, -2.0, 2.0)),
                _ => {
                    let last = *tail.last().unwrap();
                    In::Const(rand_tensor(rng, &[last], -2.0, 2.0))
                }
            }
        };
        let scale = param(&mut rng);
        let bias = if pick(&mut rng, 3) == 0 {
            In::Absent
        } else {
            param(&mut rng)
        };
        let ax = if pick(&mut rng, 2) == 0 {
            axis as i64 - rank as i64
        } else {
            axis as i64
        };
        let a = Attrs::new().int("axis", ax, -1).float("epsilon", eps, 1e-5);
        let label = format!("#{i} layer_normalization {shape:?} axis={ax}");
        let mut ins = vec![In::Input(shape.clone()), scale];
        if !matches!(bias, In::Absent) {
            ins.push(bias);
        }
        assert!(
            case(
                &label,
                op("layer_normalization", a),
                ins,
                &mut rng,
                1 + i % 2,
                false,
                i % 3 == 0
            ),
            "{label}"
        );
    }
    for i in 0..200 {
        let rank = 3 + pick(&mut rng, 2);
        let mut shape = rand_shape(&mut rng, rank, if rank > 3 { 9 } else { 40 });
        shape[1] = 1 + pick(&mut rng, 9);
        let c = shape[1];
        let eps = [1e-5f32, 1e-2][pick(&mut rng, 2)];
        let ins = vec![
            In::Input(shape.clone()),
            In::Input(vec![c]),
            In::Const(rand_tensor(&mut rng, &[c], -1.0, 1.0)),
        ];
        let label = format!("#{i} instance_normalization {shape:?}");
        let a = Attrs::new().float("epsilon", eps, 1e-5);
        assert!(
            case(
                &label,
                op("instance_normalization", a),
                ins,
                &mut rng,
                1 + i % 2,
                false,
                i % 3 == 0
            ),
            "{label}"
        );
    }
}

#[test]
fn windows_entirely_in_the_padding() {
    // Pads wider than the window: some windows see no input at all (max gives -inf, an
    // average without the padding divides 0 by 0, with it gives 0).
    let mut rng = Rng::new(0x9006);
    for (k, name, include) in [
        (0, "max_pool", 0),
        (1, "average_pool", 0),
        (2, "average_pool", 1),
    ] {
        for nhwc in [false, true] {
            let mut a = Attrs::new()
                .ints("kernel_shape", &[2, 1])
                .ints("pads", &[3, 0, 4, 0])
                .ints("strides", &[1, 2]);
            if name == "average_pool" {
                a = a.int("count_include_pad", include, 0);
            }
            let shape = if nhwc {
                a = a.str("layout", "nhwc", "nchw");
                vec![1, 3, 5, 6]
            } else {
                vec![1, 6, 3, 5]
            };
            let label = format!("{k} {name} nhwc={nhwc}");
            assert!(case(
                &label,
                op(name, a),
                vec![In::Input(shape)],
                &mut rng,
                2,
                k == 0,
                true
            ));
        }
    }
}

#[test]
fn model_sized_cases() {
    let mut rng = Rng::new(0x9007);
    let pool = |l: &str| {
        let a = Attrs::new()
            .ints("kernel_shape", &[3, 3])
            .ints("strides", &[2, 2])
            .ints("pads", &[1, 1, 1, 1])
            .str("layout", l, "nchw");
        op("max_pool", a)
    };
    assert!(case(
        "stem nhwc",
        pool("nhwc"),
        vec![In::Input(vec![1, 112, 112, 64])],
        &mut rng,
        2,
        true,
        false
    ));
    assert!(case(
        "stem nchw",
        pool("nchw"),
        vec![In::Input(vec![1, 64, 112, 112])],
        &mut rng,
        2,
        true,
        false
    ));
    let gap = op(
        "global_average_pool",
        Attrs::new().str("layout", "nhwc", "nchw"),
    );
    assert!(case(
        "gap",
        gap,
        vec![In::Input(vec![2, 7, 7, 2048])],
        &mut rng,
        2,
        false,
        false
    ));
    let sm = op("softmax", Attrs::new());
    assert!(case(
        "softmax",
        sm,
        vec![In::Input(vec![8, 1000])],
        &mut rng,
        2,
        false,
        false
    ));
    let ln = op("layer_normalization", Attrs::new());
    let ins = vec![
        In::Input(vec![64, 768]),
        In::Input(vec![768]),
        In::Input(vec![768]),
    ];
    assert!(case("layer norm", ln, ins, &mut rng, 2, false, false));
}

#[test]
fn lrn_matches_the_interpreter() {
    let mut rng = Rng::new(0x900a);
    for i in 0..200 {
        let nd = 1 + pick(&mut rng, 2);
        let (shape, _, nhwc) = pool_input(&mut rng, nd, 9);
        let size = 1 + pick(&mut rng, 7) as i64;
        let beta = [0.75f32, 0.75, 0.5, 1.0, 0.6][pick(&mut rng, 5)];
        let alpha = [1e-4f32, 1e-2, 0.5][pick(&mut rng, 3)];
        let bias = [1.0f32, 2.0, 0.5][pick(&mut rng, 3)];
        let mut a = Attrs::new()
            .int("size", size, 0)
            .float("alpha", alpha, 1e-4)
            .float("beta", beta, 0.75)
            .float("bias", bias, 1.0);
        if nhwc {
            a = a.str("layout", "nhwc", "nchw");
        }
        let label = format!("#{i} lrn {shape:?} {a:?}");
        let o = op("lrn", a);
        assert!(
            case(
                &label,
                o,
                vec![In::Input(shape)],
                &mut rng,
                1 + i % 2,
                false,
                i % 3 == 0
            ),
            "{label}"
        );
    }
}

#[test]
fn batch_norm_matches_the_interpreter() {
    let mut rng = Rng::new(0x900c);
    for i in 0..200 {
        let nhwc = pick(&mut rng, 2) == 0;
        let rank = if nhwc {
            3 + pick(&mut rng, 2)
        } else {
            2 + pick(&mut rng, 3)
        };
        let mut shape = rand_shape(&mut rng, rank, 12);
        let c = CHANNELS[pick(&mut rng, CHANNELS.len())];
        if nhwc {
            shape[rank - 1] = c;
        } else {
            shape[1] = c;
        }
        let var = Tensor::from_vec(
            &[c],
            (0..c).map(|_| rng.uniform(0.0, 2.0)).collect::<Vec<f32>>(),
        )
        .unwrap();
        let mut ins = vec![In::Input(shape.clone())];
        for _ in 0..3 {
            ins.push(In::Const(rand_tensor(&mut rng, &[c], -2.0, 2.0)));
        }
        ins.push(In::Const(var));
        let mut a = Attrs::new().float("epsilon", [1e-5f32, 1e-3][pick(&mut rng, 2)], 1e-5);
        if nhwc {
            a = a.str("layout", "nhwc", "nchw");
        }
        let label = format!("#{i} batch_normalization {shape:?} nhwc={nhwc}");
        let o = op("batch_normalization", a);
        assert!(
            case(&label, o, ins, &mut rng, 1 + i % 2, false, i % 3 == 0),
            "{label}"
        );
    }
}

/// Masked logits (-inf, -1e9) give zero probability and -inf log-probability, along the
/// contiguous and the strided axis.
#[test]
fn masked_softmax() {
    let mut rng = Rng::new(0x900b);
    for name in ["softmax", "log_softmax"] {
        for axis in [1i64, 0] {
            let shape = [37usize, 37];
            let mut v: Vec<f32> = (0..37 * 37).map(|_| rng.uniform(-4.0, 4.0)).collect();
            for (i, x) in v.iter_mut().enumerate() {
                if (i * 7) % 5 == 0 {
                    *x = f32::NEG_INFINITY;
                } else if (i * 3) % 11 == 0 {
                    *x = -1e9;
                }
            }
            let t = Tensor::from_vec(&shape, v).unwrap();
            let g = graph(
                op(name, Attrs::new().int("axis", axis, -1)),
                &[In::Input(shape.to_vec())],
            )
            .unwrap();
            let want = interp::run(&g, std::slice::from_ref(&t)).unwrap();
            let p = program::build(&g).unwrap();
            assert!(p.reference_ops.is_empty());
            let got = Compiled::new(p, 2).unwrap().run(&[t]).unwrap();
            check(
                &format!("{name} axis {axis}"),
                &got[0].to_f64_vec(),
                &want[0].to_f64_vec(),
                false,
            );
        }
    }
}

/// A chain of these ops, so intermediates live in the planned arena, not caller memory.
#[test]
fn chains_through_the_arena() {
    let mut rng = Rng::new(0x9009);
    for nhwc in [false, true] {
        let layout = if nhwc { "nhwc" } else { "nchw" };
        let mut g = Graph::new("chain");
        let shape = if nhwc {
            vec![2, 9, 11, 20]
        } else {
            vec![2, 20, 9, 11]
        };
        let x = g.add_input("x", Some(TensorType::new(DType::F32, shape.clone())));
        let mp = op(
            "max_pool",
            Attrs::new()
                .ints("kernel_shape", &[3, 3])
                .ints("strides", &[2, 2])
                .ints("pads", &[1, 1, 1, 1])
                .str("layout", layout, "nchw"),
        );
        let (_, a) = g.add_node("mp", mp, vec![Some(x)], vec!["a".into()]);
        let ap = op(
            "average_pool",
            Attrs::new()
                .ints("kernel_shape", &[2, 2])
                .ints("pads", &[0, 0, 1, 1])
                .str("layout", layout, "nchw"),
        );
        // A batch norm that the memory plan runs in place over `a`.
        let mut bn_ins = vec![Some(a[0])];
        for k in 0..4 {
            let t = rand_tensor(&mut rng, &[20], 0.5, 2.0);
            let (_, v) = g.add_node(
                format!("p{k}"),
                Op::Const(Const::new(t)),
                vec![],
                vec![format!("p{k}")],
            );
            bn_ins.push(Some(v[0]));
        }
        let bn = op(
            "batch_normalization",
            Attrs::new().str("layout", layout, "nchw"),
        );
        let (_, a) = g.add_node("bn", bn, bn_ins, vec!["a2".into()]);
        let (_, b) = g.add_node("ap", ap, vec![Some(a[0])], vec!["b".into()]);
        let gp = op(
            "global_max_pool",
            Attrs::new().str("layout", layout, "nchw"),
        );
        let (_, c) = g.add_node("gp", gp, vec![Some(b[0])], vec!["c".into()]);
        let axes = Tensor::from_vec(&[2], vec![2i64, 3]).unwrap();
        let (_, ax) = g.add_node(
            "axes",
            Op::Const(Const::new(axes)),
            vec![],
            vec!["axes".into()],
        );
        let rm = op("reduce_mean", Attrs::new().int("keepdims", 0, 1));
        let (_, d) = g.add_node("rm", rm, vec![Some(c[0]), Some(ax[0])], vec!["d".into()]);
        let sm = op("log_softmax", Attrs::new());
        let (_, e) = g.add_node("sm", sm, vec![Some(d[0])], vec!["e".into()]);
        g.set_outputs(vec![e[0], b[0]]);
        infer::infer_shapes(&mut g).unwrap();
        let t = rand_tensor(&mut rng, &shape, -3.0, 3.0);
        let want = interp::run(&g, std::slice::from_ref(&t)).unwrap();
        let p = program::build(&g).unwrap();
        assert!(p.reference_ops.is_empty(), "{:?}", p.reference_ops);
        let got = Compiled::new(p, 2).unwrap().run(&[t]).unwrap();
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            check(
                &format!("{layout} output {k}"),
                &a.to_f64_vec(),
                &b.to_f64_vec(),
                false,
            );
        }
    }
}

/// Ops and attribute combinations without a lowering still run, through the reference path.
#[test]
fn uncovered_cases_take_the_reference_path() {
    let mut rng = Rng::new(0x9008);
    let cases: Vec<(&str, Op, Vec<In>)> = vec![
        (
            "hardmax",
            op("hardmax", Attrs::new()),
            vec![In::Input(vec![3, 5])],
        ),
        (
            "lp_pool",
            op("lp_pool", Attrs::new().ints("kernel_shape", &[2, 2])),
            vec![In::Input(vec![1, 2, 4, 4])],
        ),
        (
            "reduce over three separate runs of axes",
            op("reduce_sum", Attrs::new()),
            vec![
                In::Input(vec![2, 3, 4, 5, 6]),
                In::Const(Tensor::from_vec(&[3], vec![0i64, 2, 4]).unwrap()),
            ],
        ),
        (
            "global_lp_pool",
            op("global_lp_pool", Attrs::new()),
            vec![In::Input(vec![1, 3, 4, 4])],
        ),
    ];
    for (label, o, ins) in cases {
        let g = graph(o, &ins).unwrap();
        let inputs: Vec<Tensor> = g
            .inputs()
            .iter()
            .map(|&v| rand_tensor(&mut rng, &g.ty(v).unwrap().shape, -3.0, 3.0))
            .collect();
        let want = interp::run(&g, &inputs).unwrap();
        let p = program::build(&g).unwrap();
        assert_eq!(p.reference_ops.len(), 1, "{label}");
        let got = Compiled::new(p, 1).unwrap().run(&inputs).unwrap();
        check(label, &got[0].to_f64_vec(), &want[0].to_f64_vec(), true);
    }
}

#[test]
fn smoke_max_pool() {
    let mut rng = Rng::new(1);
    let a = Attrs::new()
        .ints("kernel_shape", &[3, 3])
        .ints("strides", &[2, 2])
        .ints("pads", &[1, 1, 1, 1]);
    assert!(case(
        "smoke",
        op("max_pool", a),
        vec![In::Input(vec![1, 4, 9, 9])],
        &mut rng,
        1,
        true,
        true
    ));
}
