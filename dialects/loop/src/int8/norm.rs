//! Softmax and LayerNormalization in the int8 program: the reference arithmetic on the
//! operands as the simulator sees them, as lean host code.
//!
//! Why host code and not loop-IR kernels: the contract is the graph dialect's `eval` of
//! these ops (kiln-quant gives them no integer path), and that evaluation runs in **f64** —
//! `exp` of f64 differences and f64 sums for Softmax, f64 mean, variance, `sqrt` and the
//! affine step for LayerNormalization — rounding to f32 once at the end. The loop dialect
//! has no f64 type and its math helpers are f32 functions, so no kernel can reproduce those
//! bits. What made the simulator's own step slow was not that arithmetic but its generic
//! tensor plumbing (per-node plan queries, ndarray broadcasting over dynamic dimensions,
//! whole-tensor fake quantisation); the functions here do the same f64 operations, in the
//! same order, on flat slices — and they are checked against the simulator bit for bit by
//! the int8 property tests.
//!
//! Fake quantisation happens where the simulator applies it: the operand chain of
//! [`Cx::operand_fq`] (a raw graph input's TQC, then the op's operand TQC) before the
//! arithmetic, the result's TQC after.

use super::Cx;
use crate::lower::{Arg, NodeCx};
use crate::program::{HostFn, Piece};
use kiln_core::{Result, Tensor, bail};
use kiln_graph::NodeId;
use kiln_graph::ops::util::broadcast_shapes;
use kiln_graph::ops::{Op, SoftmaxKind};
use kiln_quant::arith::{self, QParams};
use kiln_quant::plan;
use std::sync::Arc;

/// Fake quantisation of one value by a chain of per-tensor parameter sets, as
/// `sim::fake_quant_params` computes it element by element.
fn fq(mut x: f32, chain: &[QParams]) -> f32 {
    for p in chain {
        x = arith::dequantize(quantize(x, p), p.s(), p.z());
    }
    x
}

/// [`fq`] over a slice. For round-half-even grids with small codes it is branch-free,
/// so it vectorises: `t = x/s` with NaN made 0, clamped to the centred code range (the
/// clamp commutes with rounding, whose fixed points the integral bounds are), rounded by
/// adding and removing 1.5·2^23, times `s` — `dequant(quantize(x))` exactly, +0 for zero.
fn fq_slice(xs: &mut [f32], chain: &[QParams]) {
    for p in chain {
        let z = p.z() as i64;
        let (lo, hi) = (p.qmin as i64 - z, p.qmax as i64 - z);
        if p.rounding != kiln_quant::Rounding::HalfEven
            || lo.abs() >= 1 << 22
            || hi.abs() >= 1 << 22
        {
            xs.iter_mut()
                .for_each(|x| *x = arith::dequantize(quantize(*x, p), p.s(), p.z()));
            continue;
        }
        const M: f32 = 12_582_912.0;
        let (s, lo, hi) = (p.s(), lo as f32, hi as f32);
        for x in xs.iter_mut() {
            let t = *x / s;
            let t = if t.is_nan() { 0.0 } else { t };
            let t = if t < lo {
                lo
            } else if t > hi {
                hi
            } else {
                t
            };
            *x = ((t + M) - M) * s;
        }
    }
}

/// `p.quantize(x, 0)`, with round-half-even done by the 1.5·2^23 addition (no libm call):
/// below 2^22 in magnitude the sum lands where the ulp is 1, so the hardware's
/// round-to-nearest-even is the rounding; anything larger clamps to `qmin` or `qmax`
/// whatever its rounding, as codes and offset are far smaller (checked).
fn quantize(x: f32, p: &QParams) -> i32 {
    let small = |v: i32| v.abs() <= 1 << 20;
    if p.rounding != kiln_quant::Rounding::HalfEven
        || !small(p.qmin)
        || !small(p.qmax)
        || !small(p.z())
    {
        return p.quantize(x, 0);
    }
    let t = x / p.s();
    if t.is_nan() {
        return p.z().clamp(p.qmin, p.qmax);
    }
    const M: f32 = 12_582_912.0;
    let r = if t.abs() < 4_194_304.0 {
        (t + M) - M
    } else {
        t
    };
    (r as i64)
        .saturating_add(p.z() as i64)
        .clamp(p.qmin as i64, p.qmax as i64) as i32
}

fn per_tensor(chain: &[QParams]) -> bool {
    chain
        .iter()
        .all(|p| p.axis.is_none() && p.scale.len() == 1 && p.zero.len() == 1)
}

/// Operand `k` as f32 values after its fake quantisations.
fn operand(ins: &[Option<Tensor>], k: usize, chain: &[QParams]) -> Result<Vec<f32>> {
    let Some(Some(t)) = ins.get(k) else {
        bail!(Eval, "operand {k} is missing");
    };
    let a = t.as_f32()?;
    Ok(match a.as_slice() {
        Some(s) if chain.is_empty() => s.to_vec(),
        Some(s) => {
            let mut v = s.to_vec();
            fq_slice(&mut v, chain);
            v
        }
        None => a.iter().map(|&x| fq(x, chain)).collect(),
    })
}

/// Where each element of `x` reads a broadcast operand of shape `s`: `i mod len` when `s`
/// is (up to leading ones) X's trailing dims, else an explicit index table.
enum Bcast {
    Cyclic(usize),
    Table(Vec<u32>),
}

impl Bcast {
    fn new(s: &[usize], x: &[usize]) -> Option<Bcast> {
        if broadcast_shapes(x, s).ok()? != x {
            return None;
        }
        let trimmed: Vec<usize> = s.iter().copied().skip_while(|&d| d == 1).collect();
        if x.ends_with(&trimmed) {
            return Some(Bcast::Cyclic(trimmed.iter().product::<usize>().max(1)));
        }
        // Element strides of `s` over X's dimensions (0 where broadcast).
        let pad = x.len() - s.len();
        let mut strides = vec![0usize; x.len()];
        let mut st = 1;
        for i in (0..s.len()).rev() {
            strides[i + pad] = if s[i] == 1 { 0 } else { st };
            st *= s[i];
        }
        let total: usize = x.iter().product();
        if total > u32::MAX as usize {
            return None;
        }
        let mut idx = vec![0usize; x.len()];
        let mut table = Vec::with_capacity(total);
        for _ in 0..total {
            table.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>() as u32);
            for d in (0..x.len()).rev() {
                idx[d] += 1;
                if idx[d] < x[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Some(Bcast::Table(table))
    }
}

/// The op's f64 results from the operands as the executor hands them over.
type Body = Box<dyn Fn(&[Option<Tensor>]) -> Result<Vec<f64>> + Send + Sync>;

/// Softmax (`kind` Softmax only) and LayerNormalization with one result; `None` for
/// anything else (the simulator's own step then runs it).
pub(super) fn lower(cx: &Cx, n: NodeId, ncx: &NodeCx) -> Option<Vec<Piece>> {
    let q = &cx.q;
    let node = q.graph.node(n);
    if node.outputs().len() != 1 {
        return None;
    }
    let x_shape = ncx.in_shape(0)?.to_vec();
    if ncx
        .ins
        .iter()
        .flatten()
        .any(|t| t.dtype != kiln_core::DType::F32)
        || ncx.outs[0].dtype != kiln_core::DType::F32
    {
        return None;
    }
    let chains: Vec<Vec<QParams>> = (0..node.inputs().len())
        .map(|k| cx.operand_fq(n, k))
        .collect();
    let out_fq: Vec<QParams> = plan::quantises(q, q.out_tqc(node.outputs()[0]))
        .into_iter()
        .collect();
    if !chains.iter().all(|c| per_tensor(c)) || !per_tensor(&out_fq) {
        return None;
    }
    let rank = x_shape.len() as i64;
    let norm_axis = |a: i64| -> Option<usize> {
        let a = if a < 0 { a + rank } else { a };
        (0..rank).contains(&a).then_some(a as usize)
    };
    let body: Body = match &node.op {
        Op::Softmax(s) if s.kind == SoftmaxKind::Softmax => {
            let axis = norm_axis(s.axis)?;
            let len = x_shape[axis];
            let inner: usize = x_shape[axis + 1..].iter().product();
            let chain = chains[0].clone();
            Box::new(move |ins| {
                let x = operand(ins, 0, &chain)?;
                Ok(softmax(&x, len, inner))
            })
        }
        Op::LayerNormalization(ln) => {
            let axis = norm_axis(ln.axis)?;
            let cols: usize = x_shape[axis..].iter().product();
            if cols == 0 {
                return None;
            }
            let scale = Bcast::new(ncx.in_shape(1)?, &x_shape)?;
            let bias = match node.input(2) {
                Some(_) => Some(Bcast::new(ncx.in_shape(2)?, &x_shape)?),
                None => None,
            };
            let eps = ln.epsilon as f64;
            let chains = chains.clone();
            Box::new(move |ins| {
                let x = operand(ins, 0, &chains[0])?;
                let s = operand(ins, 1, &chains[1])?;
                let b = match &bias {
                    Some(bc) => Some((operand(ins, 2, &chains[2])?, bc)),
                    None => None,
                };
                Ok(layer_norm(&x, cols, eps, (&s, &scale), b))
            })
        }
        _ => return None,
    };
    let shape = x_shape.clone();
    let run = HostFn(Arc::new(move |ins: &[Option<Tensor>]| {
        let v = body(ins)?;
        let mut y: Vec<f32> = v.into_iter().map(|e| e as f32).collect();
        fq_slice(&mut y, &out_fq);
        Ok(vec![Tensor::from_vec(&shape, y)?])
    }));
    Some(vec![Piece::Host {
        run,
        inputs: (0..node.inputs().len())
            .map(|k| node.input(k).map(|_| Arg::Operand(k)))
            .collect(),
        outputs: vec![Arg::Result(0)],
    }])
}

/// The graph dialect's Softmax, lane by lane (`Softmax::lane`): the lane's f64 maximum,
/// `exp(x − max)` summed in order from +0, each divided by the sum; a `+inf` maximum
/// makes the lane NaN.
fn softmax(x: &[f32], len: usize, inner: usize) -> Vec<f64> {
    let mut v: Vec<f64> = x.iter().map(|&e| e as f64).collect();
    if len == 0 || inner == 0 {
        return v;
    }
    let lane = |x: &mut [f64]| {
        let Some(max) = x.iter().copied().reduce(f64::max) else {
            return;
        };
        if max.is_infinite() && max > 0.0 {
            x.iter_mut().for_each(|v| *v = f64::NAN);
            return;
        }
        let mut sum = 0.0;
        for v in x.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        x.iter_mut().for_each(|v| *v /= sum);
    };
    if inner == 1 {
        v.chunks_mut(len).for_each(lane);
    } else {
        let mut buf = vec![0.0; len];
        for block in v.chunks_mut(len * inner) {
            for i in 0..inner {
                buf.iter_mut()
                    .enumerate()
                    .for_each(|(j, l)| *l = block[j * inner + i]);
                lane(&mut buf);
                buf.iter()
                    .enumerate()
                    .for_each(|(j, &l)| block[j * inner + i] = l);
            }
        }
    }
    v
}

/// The graph dialect's LayerNormalization: per row of `cols`, the f64 mean and variance
/// (`Iterator::sum` in order), `inv = 1 / sqrt(var + ε)`, `(x − mean)·inv`; then
/// `·scale`, then `+bias`, each broadcast to X.
fn layer_norm(
    x: &[f32],
    cols: usize,
    eps: f64,
    scale: (&[f32], &Bcast),
    bias: Option<(Vec<f32>, &Bcast)>,
) -> Vec<f64> {
    let mut v: Vec<f64> = x.iter().map(|&e| e as f64).collect();
    for chunk in v.chunks_mut(cols) {
        let n = chunk.len().max(1) as f64;
        let mean = chunk.iter().sum::<f64>() / n;
        let var = chunk.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        chunk.iter_mut().for_each(|e| *e = (*e - mean) * inv);
    }
    let (s, sb) = scale;
    apply(&mut v, s, sb, |e, k| *e *= k);
    if let Some((b, bb)) = bias {
        apply(&mut v, &b, bb, |e, k| *e += k);
    }
    v
}

/// `f(v[i], operand[at(i)])` for every element, in order.
fn apply(v: &mut [f64], operand: &[f32], at: &Bcast, f: impl Fn(&mut f64, f64)) {
    match at {
        Bcast::Cyclic(n) => v
            .chunks_mut(*n)
            .for_each(|c| c.iter_mut().zip(operand).for_each(|(e, &k)| f(e, k as f64))),
        Bcast::Table(t) => v
            .iter_mut()
            .zip(t)
            .for_each(|(e, &i)| f(e, operand[i as usize] as f64)),
    }
}
