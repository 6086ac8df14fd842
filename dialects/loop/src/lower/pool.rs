//! Pooling: `max_pool`, `average_pool` and the global pools, channels first or channels last.
//!
//! Padding is resolved at compile time. Along each spatial dim the output positions are split
//! into *segments*: runs of consecutive positions whose windows have the same number of taps
//! inside the input and start at `o * stride + shift` for one `shift` (the interior is one
//! segment, each border position usually its own). Every segment gets its own loop (or, for a
//! single position, straight-line code with constant displacements), so the tap loops have
//! constant trip counts, no load ever leaves the input, and no select or clamp sits in the hot
//! loop. The average divisor is then a constant per segment combination.
//!
//! Vectorisation: channels last (`layout="nhwc"`) loads 4-channel vectors, up to four of them
//! per output position so four independent accumulators hide the latency of the combine;
//! channels first vectorises along the output width when the stride there is 1 (four adjacent
//! outputs read four adjacent inputs for each tap) and is scalar otherwise.
//!
//! Max pooling combines with `v > acc ? v : acc` from −∞, which is exactly the reference's
//! NaN-skipping scan (NaN never wins; an empty window gives −∞), and is no dearer than `fmax`.

use super::reduce::{Comb, fold_lane, lane_blocks};
use super::{Arg, Lowered, NodeCx};
use crate::builder::KernelBuilder;
use crate::ir::{Buf, Type, Val};
use kiln_core::Result;
use kiln_graph::ops::spatial::{DimWindow, Geometry, row_major_strides};
use kiln_graph::ops::{GlobalPoolKind, Layout, Op};

/// How a window's taps become one value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Max,
    Avg { include_pad: bool },
}

impl Kind {
    fn comb(self) -> Comb {
        match self {
            Kind::Max => Comb::MaxSkipNan,
            Kind::Avg { .. } => Comb::Add,
        }
    }
}

/// A run of output positions `[lo, hi)` along one dim whose windows all have `count` taps in
/// the input (`padded` in the explicitly padded input), the first at `o * stride + shift`.
#[derive(Debug, Clone, PartialEq)]
struct Seg {
    lo: usize,
    hi: usize,
    shift: i64,
    count: usize,
    padded: usize,
}

fn segments(wins: &[DimWindow], stride: usize) -> Vec<Seg> {
    let mut segs: Vec<Seg> = Vec::new();
    for (o, w) in wins.iter().enumerate() {
        let shift = w.start as i64 - (o * stride) as i64;
        if let Some(s) = segs.last_mut()
            && s.hi == o
            && (s.shift == shift || w.count == 0)
            && s.count == w.count
            && s.padded == w.padded
        {
            s.hi += 1;
            continue;
        }
        segs.push(Seg {
            lo: o,
            hi: o + 1,
            shift,
            count: w.count,
            padded: w.padded,
        });
    }
    segs
}

/// One spatial dim of the nest: its segments, and element strides in the input and output.
struct Dim {
    segs: Vec<Seg>,
    stride: i64,
    dilation: i64,
    in_st: i64,
    out_st: i64,
}

/// An element offset: a runtime index value plus a constant displacement.
type Off = (Val, i64);

/// The loads of one output position: `(type, displacement)` per accumulator.
type Lanes = [(Type, i64)];

/// Per lane: the initial accumulator and the average's `1 / divisor`.
type Pre = Vec<(Val, Option<Val>)>;

/// Taps unrolled per output position at most (the rest loop).
const UNROLL_TAPS: usize = 16;

struct Nest<'a> {
    kind: Kind,
    x: Buf,
    y: Buf,
    dims: &'a [Dim],
    /// Channels first with stride 1 along the last dim: vectorise along it.
    vec_last: bool,
}

impl Nest<'_> {
    /// Emits the loops over output positions of dims `i..`, then each position's taps.
    fn level(
        &self,
        b: &mut KernelBuilder,
        i: usize,
        inp: Off,
        out: Off,
        win: &mut Vec<Seg>,
        lanes: &Lanes,
    ) {
        if i == self.dims.len() {
            let pre = self.prepare(b, win, lanes);
            self.point(b, inp, out, win, lanes, &pre);
            return;
        }
        let d = &self.dims[i];
        let last = i + 1 == self.dims.len();
        for seg in &d.segs {
            win.push(seg.clone());
            let shift = seg.shift * d.in_st;
            if seg.hi - seg.lo == 1 {
                let o = seg.lo as i64;
                let inp = (inp.0, inp.1 + o * d.stride * d.in_st + shift);
                let out = (out.0, out.1 + o * d.out_st);
                self.level(b, i + 1, inp, out, win, lanes);
            } else {
                let run =
                    |b: &mut KernelBuilder, lo: usize, hi: usize, step: usize, lanes: &Lanes| {
                        let win = win.clone();
                        // The innermost loop's constants are made once, outside it.
                        let pre = last.then(|| self.prepare(b, &win, lanes));
                        b.for_(lo as i64, hi as i64, step as i64, |b, o| {
                            let io = b.mul_imm(o, d.stride * d.in_st);
                            let io = b.add(inp.0, io);
                            let oo = b.mul_imm(o, d.out_st);
                            let oo = b.add(out.0, oo);
                            let (io, oo) = ((io, inp.1 + shift), (oo, out.1));
                            match &pre {
                                Some(pre) => self.point(b, io, oo, &win, lanes, pre),
                                None => self.level(b, i + 1, io, oo, &mut win.clone(), lanes),
                            }
                        });
                    };
                let n = seg.hi - seg.lo;
                if last && self.vec_last && n >= 4 {
                    let v = seg.lo + n / 4 * 4;
                    run(b, seg.lo, v, 4, &[(Type::F32X4, 0)]);
                    if v < seg.hi {
                        run(b, v, seg.hi, 1, lanes);
                    }
                } else {
                    run(b, seg.lo, seg.hi, 1, lanes);
                }
            }
            win.pop();
        }
    }

    /// The constants of the output positions with windows `win`: each lane's initial
    /// accumulator and, for averages, its `1 / divisor` multiplier.
    fn prepare(&self, b: &mut KernelBuilder, win: &[Seg], lanes: &Lanes) -> Pre {
        let comb = self.kind.comb();
        let div: usize = match self.kind {
            Kind::Max => 1,
            Kind::Avg { include_pad: true } => win.iter().map(|s| s.padded).product(),
            Kind::Avg { include_pad: false } => win.iter().map(|s| s.count).product(),
        };
        lanes
            .iter()
            .map(|&(ty, _)| {
                let init = b.fsplat(self.acc_ty(ty), comb.ident());
                // An empty window divides 0 by 0, NaN, like the reference.
                let k =
                    matches!(self.kind, Kind::Avg { .. }).then(|| b.fsplat(ty, 1.0 / div as f32));
                (init, k)
            })
            .collect()
    }

    /// One output position (or four adjacent ones, or a block of channels).
    fn point(
        &self,
        b: &mut KernelBuilder,
        inp: Off,
        out: Off,
        win: &[Seg],
        lanes: &Lanes,
        pre: &Pre,
    ) {
        let inits: Vec<Val> = pre.iter().map(|p| p.0).collect();
        // Taps unrolled from the innermost dim outwards while the budget lasts.
        let mut unrolled = vec![false; win.len()];
        let mut budget = UNROLL_TAPS;
        for k in (0..win.len()).rev() {
            if win[k].count <= budget {
                budget /= win[k].count.max(1);
                unrolled[k] = true;
            } else {
                break;
            }
        }
        let accs = self.taps(b, 0, inp, win, &unrolled, inits, lanes);
        for ((&acc, &(ty, disp)), &(_, k)) in accs.iter().zip(lanes).zip(pre) {
            let r = match k {
                Some(k) => b.mul(acc, k),
                None if ty != self.acc_ty(ty) => b.extract(acc, 0),
                None => acc,
            };
            b.store(self.y, out.0, out.1 + disp, r);
        }
    }

    /// The accumulator type of a lane: a scalar max keeps its accumulator splat in a vector,
    /// because Cranelift lowers a scalar float `select` to a branch, and the max of random
    /// data mispredicts it every other tap; the vector `bitselect` has no branch.
    fn acc_ty(&self, ty: Type) -> Type {
        if self.kind == Kind::Max && ty == Type::F32 {
            Type::F32X4
        } else {
            ty
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn taps(
        &self,
        b: &mut KernelBuilder,
        i: usize,
        inp: Off,
        win: &[Seg],
        unrolled: &[bool],
        accs: Vec<Val>,
        lanes: &Lanes,
    ) -> Vec<Val> {
        if i == win.len() {
            let comb = self.kind.comb();
            return accs
                .iter()
                .zip(lanes)
                .map(|(&a, &(ty, disp))| {
                    let v = b.load(ty, self.x, inp.0, inp.1 + disp);
                    let acc_ty = self.acc_ty(ty);
                    let v = if acc_ty != ty { b.splat(acc_ty, v) } else { v };
                    comb.apply(b, a, v)
                })
                .collect();
        }
        let count = win[i].count;
        let step = self.dims[i].dilation * self.dims[i].in_st;
        if count == 0 {
            return accs;
        }
        if unrolled[i] {
            let mut accs = accs;
            for k in 0..count as i64 {
                accs = self.taps(
                    b,
                    i + 1,
                    (inp.0, inp.1 + k * step),
                    win,
                    unrolled,
                    accs,
                    lanes,
                );
            }
            return accs;
        }
        b.loop_(0, count as i64, 1, false, &accs, |b, k, args| {
            let o = b.mul_imm(k, step);
            let o = b.add(inp.0, o);
            self.taps(b, i + 1, (o, inp.1), win, unrolled, args.to_vec(), lanes)
        })
    }
}

/// Runs `f(input offset, output offset)` for each of `n` images of `in_st` / `out_st`
/// elements from `base`: a loop, or straight-line code for a batch of one.
fn per_image(
    b: &mut KernelBuilder,
    n: usize,
    base: Val,
    in_st: usize,
    out_st: usize,
    f: &dyn Fn(&mut KernelBuilder, Off, Off),
) {
    if n == 1 {
        f(b, (base, 0), (base, 0));
        return;
    }
    b.for_(0, n as i64, 1, |b, img| {
        let i = b.mul_imm(img, in_st as i64);
        let i = b.add(base, i);
        let o = b.mul_imm(img, out_st as i64);
        let o = b.add(base, o);
        f(b, (i, 0), (o, 0));
    });
}

/// Border segment combinations above which a pool is left to the reference path (a huge
/// padded 3-D window would otherwise unroll into thousands of loop nests).
const MAX_NESTS: usize = 1024;

fn window_pool(
    cx: &NodeCx,
    kind: Kind,
    window: &kiln_graph::ops::Window,
    ceil_mode: bool,
    layout: Layout,
) -> Result<Option<Vec<Lowered>>> {
    let Some(xs) = cx.in_shape(0) else {
        return Ok(None);
    };
    if cx.outs.len() != 1 || xs.len() < 3 {
        return Ok(None);
    }
    let r = xs.len();
    let nhwc = layout.is_nhwc();
    let (n, c, spatial) = if nhwc {
        (xs[0], xs[r - 1], &xs[1..r - 1])
    } else {
        (xs[0], xs[1], &xs[2..])
    };
    let what = if kind == Kind::Max {
        "max_pool"
    } else {
        "average_pool"
    };
    let geo = Geometry::forward(window, what, spatial, None, ceil_mode)?;
    let wins = geo.pool_windows();
    let (ip, op) = (geo.input_size(), geo.output_size());
    let x_len = n * c * ip;
    let y_len = n * c * op;
    if x_len == 0 || y_len == 0 {
        return Ok(None);
    }
    let chan = if nhwc { c as i64 } else { 1 };
    let in_rm = row_major_strides(&geo.input);
    let out_rm = row_major_strides(&geo.output);
    let dims: Vec<Dim> = (0..spatial.len())
        .map(|i| Dim {
            segs: segments(&wins[i], geo.strides[i]),
            stride: geo.strides[i] as i64,
            dilation: geo.dilations[i] as i64,
            in_st: in_rm[i] as i64 * chan,
            out_st: out_rm[i] as i64 * chan,
        })
        .collect();
    if dims.iter().map(|d| d.segs.len()).product::<usize>() > MAX_NESTS {
        return Ok(None);
    }
    let name = cx.name.as_str();
    if nhwc {
        let body = |b: &mut KernelBuilder, x: Buf, y: Buf, base: Val, lanes: &Lanes| {
            let nest = Nest {
                kind,
                x,
                y,
                dims: &dims,
                vec_last: false,
            };
            per_image(b, n, base, ip * c, op * c, &|b, i0, o0| {
                nest.level(b, 0, i0, o0, &mut Vec::new(), lanes);
            });
        };
        return Ok(Some(lane_blocks(name, c, x_len, y_len, &body)));
    }
    let mut b = KernelBuilder::new(name);
    let x = b.buf("x", Type::F32, x_len, true);
    let y = b.buf("y", Type::F32, y_len, false);
    let nest = Nest {
        kind,
        x,
        y,
        dims: &dims,
        vec_last: *geo.strides.last().expect("spatial") == 1,
    };
    b.parallel(0, (n * c) as i64, 1, |b, p| {
        let io = b.mul_imm(p, ip as i64);
        let oo = b.mul_imm(p, op as i64);
        nest.level(b, 0, (io, 0), (oo, 0), &mut Vec::new(), &[(Type::F32, 0)]);
    });
    Ok(Some(vec![Lowered {
        kernel: b.finish(),
        args: vec![Arg::Operand(0), Arg::Result(0)],
    }]))
}

fn global_pool(cx: &NodeCx, kind: Kind, layout: Layout) -> Option<Vec<Lowered>> {
    let xs = cx.in_shape(0)?;
    let r = xs.len();
    if r < 3 || cx.outs.len() != 1 {
        return None;
    }
    let nhwc = layout.is_nhwc();
    let (n, c) = if nhwc {
        (xs[0], xs[r - 1])
    } else {
        (xs[0], xs[1])
    };
    let s: usize = if nhwc {
        xs[1..r - 1].iter().product()
    } else {
        xs[2..].iter().product()
    };
    if n * c * s == 0 {
        return None;
    }
    let name = cx.name.as_str();
    let finish = |b: &mut KernelBuilder, acc: Val| match kind {
        Kind::Max => acc,
        Kind::Avg { .. } => {
            let ty = b.ty(acc);
            let k = b.fsplat(ty, 1.0 / s as f32);
            b.mul(acc, k)
        }
    };
    if nhwc {
        // One window covering the whole image: a tap loop over positions, channels in lanes.
        let body = |b: &mut KernelBuilder, x: Buf, y: Buf, base: Val, lanes: &Lanes| {
            let comb = kind.comb();
            per_image(b, n, base, s * c, c, &|b, i0, o0| {
                let inits: Vec<Val> = lanes
                    .iter()
                    .map(|&(ty, _)| b.fsplat(ty, comb.ident()))
                    .collect();
                let accs = b.loop_(0, s as i64, 1, false, &inits, |b, k, a| {
                    let o = b.mul_imm(k, c as i64);
                    let o = b.add(i0.0, o);
                    a.iter()
                        .zip(lanes)
                        .map(|(&acc, &(ty, d))| {
                            let v = b.load(ty, x, o, i0.1 + d);
                            comb.apply(b, acc, v)
                        })
                        .collect()
                });
                for (&acc, &(_, d)) in accs.iter().zip(lanes) {
                    let v = finish(b, acc);
                    b.store(y, o0.0, o0.1 + d, v);
                }
            });
        };
        return Some(lane_blocks(name, c, n * s * c, n * c, &body));
    }
    let mut b = KernelBuilder::new(name);
    let x = b.buf("x", Type::F32, n * c * s, true);
    let y = b.buf("y", Type::F32, n * c, false);
    b.parallel(0, (n * c) as i64, 1, |b, p| {
        let off = b.mul_imm(p, s as i64);
        let acc = fold_lane(b, off, s, kind.comb(), &|b, ty, pos| {
            b.load(ty, x, pos.abs, pos.disp)
        });
        let v = finish(b, acc);
        b.store(y, p, 0, v);
    });
    Some(vec![Lowered {
        kernel: b.finish(),
        args: vec![Arg::Operand(0), Arg::Result(0)],
    }])
}

/// Lowers the pools; `None` for other ops and for what they do not cover (max_pool's
/// Indices result, lp_pool).
pub fn lower(op: &Op, cx: &NodeCx) -> Result<Option<Vec<Lowered>>> {
    match op {
        Op::MaxPool(p) => window_pool(cx, Kind::Max, &p.window, p.ceil_mode, p.layout),
        Op::AveragePool(p) => window_pool(
            cx,
            Kind::Avg {
                include_pad: p.count_include_pad,
            },
            &p.window,
            p.ceil_mode,
            p.layout,
        ),
        Op::GlobalPool(g) => Ok(match g.kind {
            GlobalPoolKind::Average => global_pool(cx, Kind::Avg { include_pad: false }, g.layout),
            GlobalPoolKind::Max => global_pool(cx, Kind::Max, g.layout),
            GlobalPoolKind::Lp(_) => None,
        }),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_split_borders_from_interior() {
        // 7 wide, kernel 3, stride 2, pads 1/1: 4 outputs. o=0 and o=3 each lose a tap to
        // the padding; o=1..3 are full windows starting at 2·o − 1.
        let win = kiln_graph::ops::Window {
            kernel_shape: vec![3],
            strides: vec![2],
            pads: vec![1, 1],
            dilations: vec![],
            auto_pad: kiln_graph::ops::AutoPad::NotSet,
        };
        let geo = Geometry::forward(&win, "t", &[7], None, false).unwrap();
        let segs = segments(&geo.pool_windows()[0], 2);
        let got: Vec<_> = segs
            .iter()
            .map(|s| (s.lo, s.hi, s.count, s.shift, s.padded))
            .collect();
        assert_eq!(
            got,
            vec![(0, 1, 2, 0, 3), (1, 3, 3, -1, 3), (3, 4, 2, -1, 3)]
        );
    }
}
