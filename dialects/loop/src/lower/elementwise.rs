//! Element-wise ops with NumPy broadcasting: one loop nest per op.
//!
//! The nest is built over the result shape after merging dimensions that every operand walks
//! contiguously (so `[1,64,56,56] + [1,64,56,56]` is one flat loop), the innermost dimension
//! vectorised four lanes at a time with a scalar tail, an operand whose innermost stride is 0
//! loaded once and splatted, and the outermost dimension parallel.

use super::{Arg, Lowered, NodeCx, act};
use crate::builder::KernelBuilder;
use crate::ir::{Buf, Helper, Type, Val};
use kiln_core::Result;
use kiln_graph::ops::{Activation, BinaryKind, Op};

/// Element strides of an operand of `shape` broadcast to `out` (0 on broadcast dimensions).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<i64> {
    let mut strides = vec![0i64; out.len()];
    let mut s = 1i64;
    for (i, &d) in shape.iter().enumerate().rev() {
        let j = out.len() - (shape.len() - i);
        strides[j] = if d == 1 && out[j] != 1 { 0 } else { s };
        s *= d as i64;
    }
    strides
}

/// Row-major element strides of `shape`.
pub fn dense_strides(shape: &[usize]) -> Vec<i64> {
    broadcast_strides(shape, shape)
}

/// Merges adjacent dimensions that every stride list walks contiguously; drops size-1 dims.
pub fn collapse(out: &[usize], strides: &[Vec<i64>]) -> (Vec<usize>, Vec<Vec<i64>>) {
    let keep: Vec<usize> = (0..out.len()).filter(|&i| out[i] != 1).collect();
    let mut dims: Vec<usize> = Vec::new();
    let mut st: Vec<Vec<i64>> = vec![Vec::new(); strides.len()];
    for &i in &keep {
        let mergeable = !dims.is_empty()
            && strides.iter().enumerate().all(|(k, s)| {
                let prev = *st[k].last().expect("same length");
                prev == s[i] * out[i] as i64
            });
        if mergeable {
            *dims.last_mut().expect("non-empty") *= out[i];
            for (k, s) in strides.iter().enumerate() {
                *st[k].last_mut().expect("non-empty") = s[i];
            }
        } else {
            dims.push(out[i]);
            for (k, s) in strides.iter().enumerate() {
                st[k].push(s[i]);
            }
        }
    }
    if dims.is_empty() {
        dims.push(1);
        for s in st.iter_mut() {
            s.push(0);
        }
    }
    // A long flat loop is split in two so the outer part can run in parallel.
    if dims.len() == 1 && dims[0] >= 8192 {
        let n = dims[0];
        if let Some(c) = [2048usize, 1024, 512, 256, 128, 64]
            .into_iter()
            .find(|c| n.is_multiple_of(*c))
        {
            dims = vec![n / c, c];
            for s in st.iter_mut() {
                let inner = s[0];
                *s = vec![inner * c as i64, inner];
            }
        }
    }
    (dims, st)
}

/// The body of an element-wise kernel: operand values (all `f32` or all `f32x4`) → result.
pub type Body<'f> = dyn Fn(&mut KernelBuilder, &[Val]) -> Val + 'f;

/// Builds `out[i] = f(a[i], b[i], ...)` over `out_shape`, operands broadcast to it.
pub fn map(name: &str, out_shape: &[usize], operands: &[(Arg, Vec<usize>)], f: &Body) -> Lowered {
    let ops: Vec<View> = operands
        .iter()
        .map(|(a, s)| View {
            arg: a.clone(),
            len: s.iter().product(),
            off: 0,
            strides: broadcast_strides(s, out_shape),
        })
        .collect();
    let n_out: usize = out_shape.iter().product();
    let out = View {
        arg: Arg::Result(0),
        len: n_out,
        off: 0,
        strides: dense_strides(out_shape),
    };
    map_views(name, out_shape, &ops, &out, f)
}

/// A buffer seen through an offset and per-dimension element strides of the iteration space.
#[derive(Debug, Clone)]
pub struct View {
    pub arg: Arg,
    /// Elements in the whole buffer.
    pub len: usize,
    pub off: i64,
    pub strides: Vec<i64>,
}

/// The general form of [`map`]: every operand and the result are views over the iteration
/// space `dims` (transposes, slices, concatenation slots are all views).
pub fn map_views(name: &str, dims: &[usize], operands: &[View], out: &View, f: &Body) -> Lowered {
    let mut b = KernelBuilder::new(name);
    let bufs: Vec<Buf> = operands
        .iter()
        .enumerate()
        .map(|(k, v)| b.buf(format!("in{k}"), Type::F32, v.len, true))
        .collect();
    let ob = b.buf("out", Type::F32, out.len, false);
    let mut strides: Vec<Vec<i64>> = operands.iter().map(|v| v.strides.clone()).collect();
    strides.push(out.strides.clone());
    let (cd, st) = collapse(dims, &strides);
    let offs: Vec<Val> = operands
        .iter()
        .chain(std::iter::once(out))
        .map(|v| b.index(v.off))
        .collect();
    nest(&mut b, &cd, &st, 0, &offs, &bufs, ob, f);
    let mut args: Vec<Arg> = operands.iter().map(|v| v.arg.clone()).collect();
    args.push(out.arg.clone());
    Lowered {
        kernel: b.finish(),
        args,
    }
}

#[allow(clippy::too_many_arguments)]
fn nest(
    b: &mut KernelBuilder,
    dims: &[usize],
    st: &[Vec<i64>],
    level: usize,
    offs: &[Val],
    bufs: &[Buf],
    out: Buf,
    f: &Body,
) {
    let last = level + 1 == dims.len();
    let n = dims[level] as i64;
    if !last {
        let body = |b: &mut KernelBuilder, i: Val| {
            let offs: Vec<Val> = offs
                .iter()
                .zip(st)
                .map(|(&o, s)| {
                    let d = b.mul_imm(i, s[level]);
                    b.add(o, d)
                })
                .collect();
            nest(b, dims, st, level + 1, &offs, bufs, out, f);
        };
        if level == 0 {
            b.parallel(0, n, 1, body);
        } else {
            b.for_(0, n, 1, body);
        }
        return;
    }
    // Innermost: operands with stride 0 are loop-invariant scalars.
    let k_out = st.len() - 1;
    let invariant: Vec<Option<Val>> = bufs
        .iter()
        .enumerate()
        .map(|(k, &buf)| (st[k][level] == 0).then(|| b.load(Type::F32, buf, offs[k], 0)))
        .collect();
    let contiguous = st.iter().all(|s| s[level] == 0 || s[level] == 1);
    let vec_end = if contiguous { n / 4 * 4 } else { 0 };
    let body = |b: &mut KernelBuilder, i: Val, ty: Type| {
        let vals: Vec<Val> = bufs
            .iter()
            .enumerate()
            .map(|(k, &buf)| match invariant[k] {
                Some(s) if ty.is_vector() => b.splat(ty, s),
                Some(s) => s,
                None => {
                    let d = b.mul_imm(i, st[k][level]);
                    let o = b.add(offs[k], d);
                    b.load(ty, buf, o, 0)
                }
            })
            .collect();
        let r = f(b, &vals);
        let d = b.mul_imm(i, st[k_out][level]);
        let o = b.add(offs[k_out], d);
        b.store(out, o, 0, r);
    };
    let parallel = dims.len() == 1;
    if vec_end > 0 && !(parallel && vec_end < n) {
        let go = |b: &mut KernelBuilder, i: Val| body(b, i, Type::F32X4);
        if parallel {
            b.parallel(0, vec_end, 4, go);
        } else {
            b.for_(0, vec_end, 4, go);
        }
        if vec_end < n {
            b.for_(vec_end, n, 1, |b, i| body(b, i, Type::F32));
        }
    } else if parallel {
        b.parallel(0, n, 1, |b, i| body(b, i, Type::F32));
    } else {
        b.for_(0, n, 1, |b, i| body(b, i, Type::F32));
    }
}

fn operands(cx: &NodeCx, ks: &[usize]) -> Option<Vec<(Arg, Vec<usize>)>> {
    ks.iter()
        .map(|&k| Some((Arg::Operand(k), cx.in_shape(k)?.to_vec())))
        .collect()
}

/// Lowers the element-wise ops; `None` for anything else.
pub fn lower(op: &Op, cx: &NodeCx) -> Result<Option<Vec<Lowered>>> {
    let out = cx.out_shape(0).to_vec();
    let name = cx.name.as_str();
    let one =
        |f: &Body| -> Option<Vec<Lowered>> { Some(vec![map(name, &out, &operands(cx, &[0])?, f)]) };
    let two = |f: &Body| -> Option<Vec<Lowered>> {
        Some(vec![map(name, &out, &operands(cx, &[0, 1])?, f)])
    };
    Ok(match op {
        Op::Unary(u) => {
            // Probe on a scratch builder: kinds without a lowering take the reference path.
            let mut probe = KernelBuilder::new("probe");
            let x = probe.fconst(0.0);
            if act::unary(&mut probe, u.kind, x).is_none() {
                return Ok(None);
            }
            let kind = u.kind;
            one(&move |b, v| act::unary(b, kind, v[0]).expect("probed"))
        }
        Op::Binary(bin) => {
            let kind = bin.kind;
            match kind {
                BinaryKind::Add => two(&|b, v| b.add(v[0], v[1])),
                BinaryKind::Sub => two(&|b, v| b.sub(v[0], v[1])),
                BinaryKind::Mul => two(&|b, v| b.mul(v[0], v[1])),
                BinaryKind::Div => two(&|b, v| b.div(v[0], v[1])),
                BinaryKind::Max => two(&|b, v| b.max(v[0], v[1])),
                BinaryKind::Min => two(&|b, v| b.min(v[0], v[1])),
                BinaryKind::Pow => two(&|b, v| act::per_lane(b, Helper::Pow, v)),
                _ => None,
            }
        }
        Op::Clip(_) => {
            let bound = |k: usize, dflt: f32| -> Option<f32> {
                match cx.ins.get(k).copied().flatten() {
                    None => Some(dflt),
                    Some(_) => cx.const_f32(k).and_then(|v| v.first().copied()),
                }
            };
            match (bound(1, f32::NEG_INFINITY), bound(2, f32::INFINITY)) {
                (Some(lo), Some(hi)) => one(&move |b, v| act::clip(b, v[0], lo, hi)),
                _ => None,
            }
        }
        Op::LeakyRelu(l) => {
            let act = Activation::LeakyRelu { alpha: l.alpha };
            one(&move |b, v| act::activation(b, &act, v[0], None))
        }
        Op::HardSigmoid(h) => {
            let act = Activation::HardSigmoid {
                alpha: h.alpha,
                beta: h.beta,
            };
            one(&move |b, v| act::activation(b, &act, v[0], None))
        }
        Op::Gelu(g) => {
            let act = Activation::Gelu {
                tanh: g.tanh_approx,
            };
            one(&move |b, v| act::activation(b, &act, v[0], None))
        }
        Op::PRelu(_) => two(&|b, v| act::activation(b, &Activation::PRelu, v[0], Some(v[1]))),
        Op::EltwiseSum(e) => {
            let ks: Vec<usize> = (0..e.coeffs.len()).collect();
            let coeffs = e.coeffs.clone();
            operands(cx, &ks).map(|ops| {
                // `kiln_quant::arith::eltwise_sum`'s arithmetic (multiply, then add; no
                // fused multiply-add), so the int8 program runs this kernel as it is.
                vec![map(name, &out, &ops, &move |b, v| {
                    let ty = b.ty(v[0]);
                    let c0 = b.fsplat(ty, coeffs[0]);
                    let mut acc = b.mul(v[0], c0);
                    for (x, &c) in v[1..].iter().zip(&coeffs[1..]) {
                        let cv = b.fsplat(ty, c);
                        let t = b.mul(*x, cv);
                        acc = b.add(acc, t);
                    }
                    acc
                })]
            })
        }
        _ => None,
    })
}
