//! Reductions along axes: `softmax` / `log_softmax`, `layer_normalization`,
//! `instance_normalization`, every `reduce_*`, and, in their
//! own files, `lrn` and a standalone `batch_normalization`.
//!
//! Every op here is one of two shapes once its dims are merged: a reduction over a
//! *contiguous* lane (`[outer, len]`, the softmax over the last axis, layer norm, a global
//! mean), or over a *strided* lane (`[outer, len, inner]`, a softmax over channels). The
//! contiguous form runs one lane per parallel iteration, four vector accumulators (16
//! elements per iteration, independent dependency chains) then a horizontal reduce and a
//! scalar tail. The strided form puts `inner` in the vector lanes instead: 4..16 neighbouring
//! lanes are reduced side by side, with no horizontal step, parallel over blocks of lanes.
//!
//! Statistics are f32 here where the interpreter uses f64; the multi-accumulator sums keep
//! the difference within the rtol 1e-5 the JIT promises for the lane lengths of real models.

mod batch_norm;
mod lanes;
mod lrn;

pub use lanes::{
    BlockFn, Comb, LaneFn, Pos, StridedFn, fold_lane, fold_strided, lane_blocks,
    lane_blocks_between, lane_group, map_lane, map_strided,
};

use super::elementwise::broadcast_strides;
use super::{Arg, Lowered, NodeCx, act};
use crate::builder::KernelBuilder;
use crate::ir::{Buf, CmpOp, Helper, Type, UnOp, Val};
use kiln_core::Result;
use kiln_graph::ops::{Op, ReduceKind, SoftmaxKind};

/// The dims of `shape` as runs of `(reduced?, size)`: size-1 dims dropped (reducing them is
/// free), adjacent dims of the same kind merged.
fn merged_groups(shape: &[usize], reduced: &[bool]) -> Vec<(bool, usize)> {
    let mut groups: Vec<(bool, usize)> = Vec::new();
    for (&d, &r) in shape.iter().zip(reduced) {
        if d == 1 {
            continue;
        }
        match groups.last_mut() {
            Some(g) if g.0 == r => g.1 *= d,
            _ => groups.push((r, d)),
        }
    }
    groups
}

fn one_kernel(b: KernelBuilder, args: Vec<Arg>) -> Vec<Lowered> {
    vec![Lowered {
        kernel: b.finish(),
        args,
    }]
}

fn softmax(cx: &NodeCx, kind: SoftmaxKind, axis: i64) -> Option<Vec<Lowered>> {
    if kind == SoftmaxKind::Hardmax {
        return None;
    }
    let shape = cx.in_shape(0)?;
    let r = shape.len() as i64;
    if r == 0 || axis < -r || axis >= r {
        return None;
    }
    let a = if axis < 0 { axis + r } else { axis } as usize;
    let outer: usize = shape[..a].iter().product();
    let len = shape[a];
    let inner: usize = shape[a + 1..].iter().product();
    let total = outer * len * inner;
    if total == 0 {
        return None;
    }
    let log = kind == SoftmaxKind::LogSoftmax;
    let name = cx.name.as_str();
    if inner == 1 {
        let mut b = KernelBuilder::new(name);
        let x = b.buf("x", Type::F32, total, true);
        let y = b.buf("y", Type::F32, total, false);
        b.parallel(0, outer as i64, 1, |b, row| {
            let off = b.mul_imm(row, len as i64);
            let m = fold_lane(b, off, len, Comb::Max, &|b, ty, p| {
                b.load(ty, x, p.abs, p.disp)
            });
            let m4 = b.splat(Type::F32X4, m);
            let pick = move |ty: Type| if ty.is_vector() { m4 } else { m };
            let sum = fold_lane(b, off, len, Comb::Add, &|b, ty, p| {
                let v = b.load(ty, x, p.abs, p.disp);
                let d = b.sub(v, pick(ty));
                let e = act::exp(b, d);
                if !log {
                    b.store(y, p.abs, p.disp, e);
                }
                e
            });
            if log {
                // (x - m) - ln s: subtracting m first keeps large inputs exact.
                let t = b.call(Helper::Log, &[sum]);
                let t4 = b.splat(Type::F32X4, t);
                map_lane(b, off, len, &|b, ty, p| {
                    let v = b.load(ty, x, p.abs, p.disp);
                    let v = b.sub(v, pick(ty));
                    let o = b.sub(v, if ty.is_vector() { t4 } else { t });
                    b.store(y, p.abs, p.disp, o);
                });
            } else {
                let one = b.fconst(1.0);
                let inv = b.div(one, sum);
                let inv4 = b.splat(Type::F32X4, inv);
                map_lane(b, off, len, &|b, ty, p| {
                    let v = b.load(ty, y, p.abs, p.disp);
                    let o = b.mul(v, if ty.is_vector() { inv4 } else { inv });
                    b.store(y, p.abs, p.disp, o);
                });
            }
        });
        return Some(one_kernel(b, vec![Arg::Operand(0), Arg::Result(0)]));
    }
    // Strided: `inner` neighbouring lanes side by side in vectors.
    let body = |b: &mut KernelBuilder, x: Buf, y: Buf, base: Val, lanes: &[(Type, i64)]| {
        let st = inner;
        b.for_(0, outer as i64, 1, |b, o| {
            let rb = b.mul_imm(o, (len * inner) as i64);
            let rb = b.add(base, rb);
            let ms = fold_strided(b, rb, len, st, lanes, Comb::Max, &|b, ty, off, d, _| {
                b.load(ty, x, off, d)
            });
            let sums = fold_strided(b, rb, len, st, lanes, Comb::Add, &|b, ty, off, d, g| {
                let v = b.load(ty, x, off, d);
                let t = b.sub(v, ms[g]);
                let e = act::exp(b, t);
                if !log {
                    b.store(y, off, d, e);
                }
                e
            });
            if log {
                let ts: Vec<Val> = sums
                    .iter()
                    .map(|&s| act::per_lane(b, Helper::Log, &[s]))
                    .collect();
                map_strided(b, rb, len, st, lanes, &|b, ty, off, d, g| {
                    let v = b.load(ty, x, off, d);
                    let v = b.sub(v, ms[g]);
                    let r = b.sub(v, ts[g]);
                    b.store(y, off, d, r);
                });
            } else {
                let invs: Vec<Val> = sums
                    .iter()
                    .map(|&s| {
                        let ty = b.ty(s);
                        let one = b.fsplat(ty, 1.0);
                        b.div(one, s)
                    })
                    .collect();
                map_strided(b, rb, len, st, lanes, &|b, ty, off, d, g| {
                    let v = b.load(ty, y, off, d);
                    let r = b.mul(v, invs[g]);
                    b.store(y, off, d, r);
                });
            }
        });
    };
    Some(lane_blocks(name, inner, total, total, &body))
}

/// Scale or bias of a layer norm as `cols` values per row: the operand itself when it is
/// already laid out that way, its broadcast when constant, else `None`.
fn row_param(cx: &NodeCx, k: usize, x: &[usize], axis: usize, cols: usize) -> Option<Arg> {
    let s = cx.in_shape(k)?;
    if s.len() > x.len() {
        return None;
    }
    let st = broadcast_strides(s, x);
    if st[..axis].iter().any(|&v| v != 0) {
        return None;
    }
    let n: usize = s.iter().product();
    if n == cols {
        return Some(Arg::Operand(k));
    }
    let data = cx.const_f32(k)?;
    let tail = &x[axis..];
    let mut out = Vec::with_capacity(cols);
    for i in 0..cols {
        let (mut rem, mut src) = (i, 0i64);
        for d in (0..tail.len()).rev() {
            src += (rem % tail[d]) as i64 * st[axis + d];
            rem /= tail[d];
        }
        out.push(*data.get(src as usize)?);
    }
    Some(Arg::Const(out.into()))
}

fn layer_norm(cx: &NodeCx, axis: i64, eps: f32) -> Option<Vec<Lowered>> {
    if cx.outs.len() != 1 {
        return None;
    }
    let shape = cx.in_shape(0)?;
    let r = shape.len() as i64;
    if r == 0 || axis < -r || axis >= r {
        return None;
    }
    let a = if axis < 0 { axis + r } else { axis } as usize;
    let rows: usize = shape[..a].iter().product();
    let cols: usize = shape[a..].iter().product();
    if rows * cols == 0 {
        return None;
    }
    let scale = row_param(cx, 1, shape, a, cols)?;
    let bias = match cx.ins.get(2).copied().flatten() {
        Some(_) => Some(row_param(cx, 2, shape, a, cols)?),
        None => None,
    };
    let mut b = KernelBuilder::new(cx.name.as_str());
    let x = b.buf("x", Type::F32, rows * cols, true);
    let sb = b.buf("scale", Type::F32, cols, true);
    let bb = bias.as_ref().map(|_| b.buf("bias", Type::F32, cols, true));
    let y = b.buf("y", Type::F32, rows * cols, false);
    let inv_n = 1.0 / cols as f32;
    b.parallel(0, rows as i64, 1, |b, row| {
        let off = b.mul_imm(row, cols as i64);
        let sum = fold_lane(b, off, cols, Comb::Add, &|b, ty, p| {
            b.load(ty, x, p.abs, p.disp)
        });
        let k = b.fconst(inv_n);
        let mean = b.mul(sum, k);
        let mean4 = b.splat(Type::F32X4, mean);
        let pick = move |ty: Type, s: Val, v: Val| if ty.is_vector() { v } else { s };
        let ss = fold_lane(b, off, cols, Comb::Add, &|b, ty, p| {
            let v = b.load(ty, x, p.abs, p.disp);
            let d = b.sub(v, pick(ty, mean, mean4));
            b.mul(d, d)
        });
        let var = b.mul(ss, k);
        let e = b.fconst(eps);
        let ve = b.add(var, e);
        let sd = b.unary(UnOp::Sqrt, ve);
        let one = b.fconst(1.0);
        let inv = b.div(one, sd);
        let inv4 = b.splat(Type::F32X4, inv);
        map_lane(b, off, cols, &|b, ty, p| {
            let v = b.load(ty, x, p.abs, p.disp);
            let d = b.sub(v, pick(ty, mean, mean4));
            let t = b.mul(d, pick(ty, inv, inv4));
            let s = b.load(ty, sb, p.col, p.disp);
            // A multiply and an add, not `fma` (fused only on FMA hosts): the int8
            // contract (`arith::layer_norm`) is this kernel's arithmetic on every host.
            let ts = b.mul(t, s);
            let o = match bb {
                Some(bb) => {
                    let c = b.load(ty, bb, p.col, p.disp);
                    b.add(ts, c)
                }
                None => ts,
            };
            b.store(y, p.abs, p.disp, o);
        });
    });
    let mut args = vec![Arg::Operand(0), scale];
    args.extend(bias);
    args.push(Arg::Result(0));
    Some(one_kernel(b, args))
}

fn instance_norm(cx: &NodeCx, eps: f32) -> Option<Vec<Lowered>> {
    let shape = cx.in_shape(0)?;
    if shape.len() < 3 || cx.outs.len() != 1 {
        return None;
    }
    let (n, c) = (shape[0], shape[1]);
    let s: usize = shape[2..].iter().product();
    if cx.in_shape(1)? != [c] || cx.in_shape(2)? != [c] || n * c * s == 0 {
        return None;
    }
    let mut b = KernelBuilder::new(cx.name.as_str());
    let x = b.buf("x", Type::F32, n * c * s, true);
    let sb = b.buf("scale", Type::F32, c, true);
    let bb = b.buf("bias", Type::F32, c, true);
    let y = b.buf("y", Type::F32, n * c * s, false);
    let inv_n = 1.0 / s as f32;
    b.parallel(0, c as i64, 1, |b, ch| {
        let sc = b.load(Type::F32, sb, ch, 0);
        let bi = b.load(Type::F32, bb, ch, 0);
        b.for_(0, n as i64, 1, |b, img| {
            let plane = b.mul_imm(img, c as i64);
            let plane = b.add(plane, ch);
            let off = b.mul_imm(plane, s as i64);
            let sum = fold_lane(b, off, s, Comb::Add, &|b, ty, p| {
                b.load(ty, x, p.abs, p.disp)
            });
            let k = b.fconst(inv_n);
            let mean = b.mul(sum, k);
            let mean4 = b.splat(Type::F32X4, mean);
            let ss = fold_lane(b, off, s, Comb::Add, &|b, ty, p| {
                let v = b.load(ty, x, p.abs, p.disp);
                let d = b.sub(v, if ty.is_vector() { mean4 } else { mean });
                b.mul(d, d)
            });
            let var = b.mul(ss, k);
            let e = b.fconst(eps);
            let ve = b.add(var, e);
            let sd = b.unary(UnOp::Sqrt, ve);
            let g = b.div(sc, sd);
            let g4 = b.splat(Type::F32X4, g);
            let bi4 = b.splat(Type::F32X4, bi);
            map_lane(b, off, s, &|b, ty, p| {
                let v = b.load(ty, x, p.abs, p.disp);
                let vec = ty.is_vector();
                let d = b.sub(v, if vec { mean4 } else { mean });
                let o = b.fma(d, if vec { g4 } else { g }, if vec { bi4 } else { bi });
                b.store(y, p.abs, p.disp, o);
            });
        });
    });
    Some(one_kernel(
        b,
        vec![
            Arg::Operand(0),
            Arg::Operand(1),
            Arg::Operand(2),
            Arg::Result(0),
        ],
    ))
}

/// `m + ln s`, the log-sum-exp of a lane with maximum `m` and `s = Σ e^(x - m)`; an
/// infinite `m` is the answer itself (any +∞ gives +∞, all −∞ gives ln 0 = −∞), where the
/// formula would compute ∞ − ∞.
fn log_sum_exp(b: &mut KernelBuilder, m: Val, s: Val) -> Val {
    let ty = b.ty(m);
    let ls = act::per_lane(b, Helper::Log, &[s]);
    let t = b.add(m, ls);
    let z = b.sub(m, m);
    let zero = b.fsplat(ty, 0.0);
    let finite = b.cmp(CmpOp::Eq, z, zero);
    b.select(finite, t, m)
}

/// A per-element function applied before folding (`|x|`, `x²`).
type ElemMap = fn(&mut KernelBuilder, Val) -> Val;

/// The fold and the per-element map of a reduce kind.
fn reduce_parts(kind: ReduceKind) -> (Comb, ElemMap) {
    fn id(_: &mut KernelBuilder, v: Val) -> Val {
        v
    }
    fn sq(b: &mut KernelBuilder, v: Val) -> Val {
        b.mul(v, v)
    }
    fn abs(b: &mut KernelBuilder, v: Val) -> Val {
        b.unary(UnOp::Abs, v)
    }
    match kind {
        ReduceKind::Sum | ReduceKind::Mean => (Comb::Add, id),
        ReduceKind::Max => (Comb::Max, id),
        ReduceKind::Min => (Comb::Min, id),
        ReduceKind::SumSquare | ReduceKind::L2 => (Comb::Add, sq),
        ReduceKind::L1 => (Comb::Add, abs),
        ReduceKind::LogSum => (Comb::Add, id),
        ReduceKind::Prod => (Comb::Mul, id),
        // Folded in two passes by `log_sum_exp`; the pair here is unused.
        ReduceKind::LogSumExp => (Comb::Max, id),
    }
}

/// One pass of a reduction: `src` viewed as `[outer, len, inner]` folded over `len` into
/// `dst` (`[outer, inner]`). `first` applies the kind's element map, `last` its finish.
struct Stage<'a> {
    name: String,
    src: (Arg, usize),
    dst: (Arg, usize),
    outer: usize,
    len: usize,
    inner: usize,
    first: bool,
    finish: &'a dyn Fn(&mut KernelBuilder, Val) -> Val,
}

fn reduce_stage(kind: ReduceKind, st: Stage) -> Vec<Lowered> {
    let (comb, map) = reduce_parts(kind);
    let id: ElemMap = |_, v| v;
    let map = if st.first { map } else { id };
    let lse = kind == ReduceKind::LogSumExp;
    let (outer, len, inner, finish) = (st.outer, st.len, st.inner, st.finish);
    if inner == 1 {
        let mut b = KernelBuilder::new(st.name);
        let x = b.buf("x", Type::F32, st.src.1, true);
        let y = b.buf("y", Type::F32, st.dst.1, false);
        b.parallel(0, outer as i64, 1, |b, o| {
            let off = b.mul_imm(o, len as i64);
            let r = if lse {
                let m = fold_lane(b, off, len, Comb::Max, &|b, ty, p| {
                    b.load(ty, x, p.abs, p.disp)
                });
                let m4 = b.splat(Type::F32X4, m);
                let s = fold_lane(b, off, len, Comb::Add, &|b, ty, p| {
                    let v = b.load(ty, x, p.abs, p.disp);
                    let d = b.sub(v, if ty.is_vector() { m4 } else { m });
                    act::exp(b, d)
                });
                log_sum_exp(b, m, s)
            } else {
                let s = fold_lane(b, off, len, comb, &|b, ty, p| {
                    let v = b.load(ty, x, p.abs, p.disp);
                    map(b, v)
                });
                finish(b, s)
            };
            b.store(y, o, 0, r);
        });
        return one_kernel(b, vec![st.src.0, st.dst.0]);
    }
    let body = |b: &mut KernelBuilder, x: Buf, y: Buf, base: Val, lanes: &[(Type, i64)]| {
        b.for_(0, outer as i64, 1, |b, o| {
            let rb = b.mul_imm(o, (len * inner) as i64);
            let rb = b.add(base, rb);
            let load = |b: &mut KernelBuilder, ty, off, d, _| b.load(ty, x, off, d);
            let (accs, ms) = if lse {
                let ms = fold_strided(b, rb, len, inner, lanes, Comb::Max, &load);
                let sums =
                    fold_strided(b, rb, len, inner, lanes, Comb::Add, &|b, ty, off, d, g| {
                        let v = b.load(ty, x, off, d);
                        let t = b.sub(v, ms[g]);
                        act::exp(b, t)
                    });
                (sums, Some(ms))
            } else {
                let accs = fold_strided(b, rb, len, inner, lanes, comb, &|b, ty, off, d, _| {
                    let v = b.load(ty, x, off, d);
                    map(b, v)
                });
                (accs, None)
            };
            let ob = b.mul_imm(o, inner as i64);
            let ob = b.add(base, ob);
            for (g, (&acc, &(_, d))) in accs.iter().zip(lanes).enumerate() {
                let r = match &ms {
                    Some(ms) => log_sum_exp(b, ms[g], acc),
                    None => finish(b, acc),
                };
                b.store(y, ob, d, r);
            }
        });
    };
    lane_blocks_between(&st.name, inner, st.src, st.dst, &body)
}

/// Reductions over one run of adjacent axes take one pass; over two runs (`[a, b, c]` over
/// axes 0 and 2), two: the inner run into scratch, then the outer one. Every kind composes
/// (sums of partial sums, maxima of maxima, log-sum-exp of log-sum-exps), with the element
/// map in the first pass and the finish (mean's scale, L2's root, the log) in the last.
fn reduce(cx: &NodeCx, kind: ReduceKind, noop_empty: bool) -> Option<Vec<Lowered>> {
    let shape = cx.in_shape(0)?;
    if cx.outs.len() != 1 {
        return None;
    }
    let axes: Vec<i64> = match cx.ins.get(1).copied().flatten() {
        None => Vec::new(),
        Some(_) => cx.consts.get(1).copied().flatten()?.to_i64_vec().ok()?,
    };
    let rank = shape.len() as i64;
    let mut reduced = vec![axes.is_empty() && !noop_empty; shape.len()];
    for &a in &axes {
        if a < -rank || a >= rank {
            return None;
        }
        reduced[if a < 0 { a + rank } else { a } as usize] = true;
    }
    let total: usize = shape.iter().product();
    if total == 0 {
        return None;
    }
    let groups = merged_groups(shape, &reduced);
    let rs: Vec<usize> = (0..groups.len()).filter(|&i| groups[i].0).collect();
    let prod = |g: &[(bool, usize)]| g.iter().map(|g| g.1).product::<usize>();
    let all_len: usize = rs.iter().map(|&i| groups[i].1).product();
    let finish_last = move |b: &mut KernelBuilder, v: Val| -> Val {
        let ty = b.ty(v);
        match kind {
            ReduceKind::Mean => {
                let k = b.fsplat(ty, 1.0 / all_len as f32);
                b.mul(v, k)
            }
            ReduceKind::L2 => b.unary(UnOp::Sqrt, v),
            ReduceKind::LogSum => act::per_lane(b, Helper::Log, &[v]),
            _ => v,
        }
    };
    let raw = |_: &mut KernelBuilder, v: Val| v;
    let name = cx.name.clone();
    let out_len = total / all_len;
    match rs.as_slice() {
        [] | [_] => {
            let (outer, len, inner) = match rs.as_slice() {
                [i] => (prod(&groups[..*i]), groups[*i].1, prod(&groups[i + 1..])),
                _ => (total, 1, 1),
            };
            let st = Stage {
                name,
                src: (Arg::Operand(0), total),
                dst: (Arg::Result(0), out_len),
                outer,
                len,
                inner,
                first: true,
                finish: &finish_last,
            };
            Some(reduce_stage(kind, st))
        }
        [i, j] => {
            let (i, j) = (*i, *j);
            let mid = total / groups[j].1;
            let mut out = reduce_stage(
                kind,
                Stage {
                    name: format!("{name}_pre"),
                    src: (Arg::Operand(0), total),
                    dst: (Arg::Scratch(mid * 4), mid),
                    outer: prod(&groups[..j]),
                    len: groups[j].1,
                    inner: prod(&groups[j + 1..]),
                    first: true,
                    finish: &raw,
                },
            );
            out.extend(reduce_stage(
                kind,
                Stage {
                    name,
                    src: (Arg::Scratch(mid * 4), mid),
                    dst: (Arg::Result(0), out_len),
                    outer: prod(&groups[..i]),
                    len: groups[i].1,
                    inner: mid / prod(&groups[..=i]),
                    first: false,
                    finish: &finish_last,
                },
            ));
            Some(out)
        }
        _ => None,
    }
}

/// Lowers the reductions; `None` for other ops and for the cases not covered (hardmax,
/// reduced axes in three or more separate runs, layer norm with its
/// Mean / InvStdDev results or a row-dependent scale).
pub fn lower(op: &Op, cx: &NodeCx) -> Result<Option<Vec<Lowered>>> {
    Ok(match op {
        Op::Softmax(s) => softmax(cx, s.kind, s.axis),
        Op::LayerNormalization(l) => layer_norm(cx, l.axis, l.epsilon),
        Op::InstanceNormalization(i) => instance_norm(cx, i.epsilon),
        Op::Reduce(r) => reduce(cx, r.kind, r.noop_with_empty_axes),
        Op::Lrn(l) => lrn::lower(cx, l),
        Op::BatchNormalization(bn) => batch_norm::lower(cx, bn),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::merged_groups;

    #[test]
    fn adjacent_dims_merge_and_size_one_dims_vanish() {
        let r = |m: &[u8]| m.iter().map(|&x| x == 1).collect::<Vec<_>>();
        let g = |s: &[usize], m: &[u8]| merged_groups(s, &r(m));
        assert_eq!(
            g(&[2, 3, 4, 5], &[0, 1, 1, 0]),
            vec![(false, 2), (true, 12), (false, 5)]
        );
        // A size-1 kept dim between reduced dims does not split them.
        assert_eq!(
            g(&[2, 3, 1, 5], &[0, 1, 0, 1]),
            vec![(false, 2), (true, 15)]
        );
        assert_eq!(
            g(&[2, 3, 4], &[1, 0, 1]),
            vec![(true, 2), (false, 3), (true, 4)]
        );
        assert_eq!(g(&[1, 1], &[1, 0]), vec![]);
    }
}
