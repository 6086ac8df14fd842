//! `lrn`: `x / (bias + alpha / size · Σ x²)^beta`, the sum over a window of channels clipped
//! to the tensor.
//!
//! The channel window is a 1-D window like a pool's, so channels are split the same way at
//! compile time into runs whose windows have one shape (the clipped borders, the interior),
//! each with constant tap counts. Channels first, spatial positions are contiguous and go in
//! the vector lanes (parallel over blocks of positions); channels last, four neighbouring
//! channels of the interior share one unaligned load per tap (parallel over positions).
//! `beta` = 0.75 (every published model), 0.5 and 1 use square roots and a division; other
//! values call the runtime's `pow` per lane.

use super::super::{Arg, Lowered, NodeCx};
use super::lanes::{lane_blocks, lane_group};
use crate::builder::KernelBuilder;
use crate::ir::{Buf, Helper, Type, UnOp, Val};
use kiln_graph::ops::Lrn;

/// Channels `[lo, hi)` whose windows start at `ch + shift` and have `count` taps.
struct Run {
    lo: usize,
    hi: usize,
    shift: i64,
    count: usize,
}

fn runs(c: usize, before: usize, after: usize) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for ch in 0..c {
        let lo = ch.saturating_sub(before);
        let count = (ch + after + 1).min(c) - lo;
        let shift = lo as i64 - ch as i64;
        if let Some(r) = out.last_mut()
            && r.hi == ch
            && r.shift == shift
            && r.count == count
        {
            r.hi += 1;
            continue;
        }
        out.push(Run {
            lo: ch,
            hi: ch + 1,
            shift,
            count,
        });
    }
    out
}

/// `x / (bias + k · sum)^beta` for a lane of `x` and its window's sum of squares.
fn finish(b: &mut KernelBuilder, l: &Lrn, k: f32, x: Val, sum: Val) -> Val {
    let ty = b.ty(x);
    let kv = b.fsplat(ty, k);
    let bias = b.fsplat(ty, l.bias);
    let t = b.fma(sum, kv, bias);
    let d = if l.beta == 1.0 {
        t
    } else if l.beta == 0.5 {
        b.unary(UnOp::Sqrt, t)
    } else if l.beta == 0.75 {
        let r2 = b.unary(UnOp::Sqrt, t);
        let r4 = b.unary(UnOp::Sqrt, r2);
        b.mul(r2, r4)
    } else {
        let p = b.fsplat(ty, l.beta);
        crate::lower::act::per_lane(b, Helper::Pow, &[t, p])
    };
    b.div(x, d)
}

pub fn lower(cx: &NodeCx, l: &Lrn) -> Option<Vec<Lowered>> {
    let shape = cx.in_shape(0)?;
    let r = shape.len();
    if r < 3 || cx.outs.len() != 1 || l.size < 1 {
        return None;
    }
    let nhwc = l.layout.is_nhwc();
    let (n, c) = if nhwc {
        (shape[0], shape[r - 1])
    } else {
        (shape[0], shape[1])
    };
    let s: usize = if nhwc {
        shape[1..r - 1].iter().product()
    } else {
        shape[2..].iter().product()
    };
    let total = n * c * s;
    if total == 0 {
        return None;
    }
    let size = l.size as usize;
    let (before, after) = ((size - 1) / 2, size / 2);
    let k = l.alpha / size as f32;
    let runs = runs(c, before, after);
    let name = cx.name.as_str();
    if !nhwc {
        // Spatial positions in lanes; channel `ch` of image `img` is the plane at
        // `(img·c + ch)·s`.
        let body = |b: &mut KernelBuilder, x: Buf, y: Buf, base: Val, lanes: &[(Type, i64)]| {
            b.for_(0, n as i64, 1, |b, img| {
                let ib = b.mul_imm(img, (c * s) as i64);
                let ib = b.add(base, ib);
                for run in &runs {
                    b.for_(run.lo as i64, run.hi as i64, 1, |b, ch| {
                        let o = b.mul_imm(ch, s as i64);
                        let o = b.add(ib, o);
                        for &(ty, d) in lanes {
                            let mut sum = b.fsplat(ty, 0.0);
                            for j in 0..run.count as i64 {
                                let v = b.load(ty, x, o, d + (run.shift + j) * s as i64);
                                sum = b.fma(v, v, sum);
                            }
                            let xv = b.load(ty, x, o, d);
                            let r = finish(b, l, k, xv, sum);
                            b.store(y, o, d, r);
                        }
                    });
                }
            });
        };
        return Some(lane_blocks(name, s, total, total, &body));
    }
    // Channels last: one parallel iteration per position, channels of a run in vectors.
    let mut b = KernelBuilder::new(name);
    let x = b.buf("x", Type::F32, total, true);
    let y = b.buf("y", Type::F32, total, false);
    b.parallel(0, (n * s) as i64, 1, |b, p| {
        let base = b.mul_imm(p, c as i64);
        for run in &runs {
            let len = run.hi - run.lo;
            let point = |b: &mut KernelBuilder, ch: Val, disp: i64, ty: Type| {
                let mut sum = b.fsplat(ty, 0.0);
                for j in 0..run.count as i64 {
                    let v = b.load(ty, x, ch, disp + run.shift + j);
                    sum = b.fma(v, v, sum);
                }
                let xv = b.load(ty, x, ch, disp);
                let r = finish(b, l, k, xv, sum);
                b.store(y, ch, disp, r);
            };
            if len >= 8 {
                let v_end = run.lo + len / 4 * 4;
                b.for_(run.lo as i64, v_end as i64, 4, |b, ch| {
                    let o = b.add(base, ch);
                    point(b, o, 0, Type::F32X4);
                });
                for (ty, d) in lane_group(v_end as i64, run.hi - v_end) {
                    point(b, base, d, ty);
                }
            } else {
                for (ty, d) in lane_group(run.lo as i64, len) {
                    point(b, base, d, ty);
                }
            }
        }
    });
    Some(vec![Lowered {
        kernel: b.finish(),
        args: vec![Arg::Operand(0), Arg::Result(0)],
    }])
}
