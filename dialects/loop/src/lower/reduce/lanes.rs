//! Lane walks shared by the reductions and the pools: folding or mapping a contiguous lane
//! (vector accumulators, horizontal reduce, scalar tail), walking neighbouring strided lanes
//! side by side, and splitting a set of lanes into parallel blocks.

use super::super::{Arg, Lowered};
use crate::builder::KernelBuilder;
use crate::ir::{Buf, CmpOp, RedOp, Type, Val};

/// How values are folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comb {
    Add,
    /// `v > acc ? v : acc` from −∞: NaN never wins (max_pool's scan).
    MaxSkipNan,
    /// `fmax` / `fmin`: NaN propagates (numpy's reductions).
    Max,
    Min,
    Mul,
}

impl Comb {
    pub fn ident(self) -> f32 {
        match self {
            Comb::Add => 0.0,
            Comb::MaxSkipNan | Comb::Max => f32::NEG_INFINITY,
            Comb::Min => f32::INFINITY,
            Comb::Mul => 1.0,
        }
    }

    pub fn apply(self, b: &mut KernelBuilder, acc: Val, v: Val) -> Val {
        match self {
            Comb::Add => b.add(acc, v),
            Comb::MaxSkipNan if !b.ty(acc).is_vector() => {
                // Through a vector: a scalar float select is a branch in Cranelift's x64
                // lowering, mispredicted half the time on data; bitselect is branch-free.
                let a4 = b.splat(Type::F32X4, acc);
                let v4 = b.splat(Type::F32X4, v);
                let r = Comb::MaxSkipNan.apply(b, a4, v4);
                b.extract(r, 0)
            }
            Comb::MaxSkipNan => {
                let gt = b.cmp(CmpOp::Gt, v, acc);
                b.select(gt, v, acc)
            }
            Comb::Max => b.max(acc, v),
            Comb::Min => b.min(acc, v),
            Comb::Mul => b.mul(acc, v),
        }
    }

    /// Folds the lanes of a vector accumulator (which never holds a NaN for `MaxSkipNan`).
    fn horizontal(self, b: &mut KernelBuilder, v: Val) -> Val {
        match self {
            Comb::Add => b.reduce(RedOp::Add, v),
            Comb::MaxSkipNan | Comb::Max => b.reduce(RedOp::Max, v),
            Comb::Min => b.reduce(RedOp::Min, v),
            Comb::Mul => {
                // No horizontal product instruction: lane by lane.
                let mut p = b.extract(v, 0);
                for lane in 1..4 {
                    let e = b.extract(v, lane);
                    p = b.mul(p, e);
                }
                p
            }
        }
    }
}

/// An element of a contiguous lane: column `col + disp` at buffer offset `abs + disp`.
#[derive(Debug, Clone, Copy)]
pub struct Pos {
    pub col: Val,
    pub abs: Val,
    pub disp: i64,
}

/// Per-element code of a lane walk: `(builder, f32 or f32x4, where) -> value`.
pub type LaneFn<'f> = dyn Fn(&mut KernelBuilder, Type, Pos) -> Val + 'f;

/// Folds `f` over the `len` elements of the contiguous lane at offset `off`; returns a scalar.
pub fn fold_lane(b: &mut KernelBuilder, off: Val, len: usize, comb: Comb, f: &LaneFn) -> Val {
    let zero = b.index(0);
    let n16 = len / 16 * 16;
    let mut acc: Option<Val> = None;
    if n16 > 0 {
        let init = b.fsplat(Type::F32X4, comb.ident());
        let r = b.loop_(0, n16 as i64, 16, false, &[init; 4], |b, i, a| {
            let abs = b.add(off, i);
            (0..4)
                .map(|j| {
                    let pos = Pos {
                        col: i,
                        abs,
                        disp: 4 * j as i64,
                    };
                    let v = f(b, Type::F32X4, pos);
                    comb.apply(b, a[j], v)
                })
                .collect()
        });
        let x = comb.apply(b, r[0], r[1]);
        let y = comb.apply(b, r[2], r[3]);
        acc = Some(comb.apply(b, x, y));
    }
    let mut k = n16;
    while k + 4 <= len {
        let pos = Pos {
            col: zero,
            abs: off,
            disp: k as i64,
        };
        let v = f(b, Type::F32X4, pos);
        let a = match acc {
            Some(a) => a,
            None => b.fsplat(Type::F32X4, comb.ident()),
        };
        acc = Some(comb.apply(b, a, v));
        k += 4;
    }
    let mut s = match acc {
        Some(a) => comb.horizontal(b, a),
        None => b.fconst(comb.ident()),
    };
    while k < len {
        let pos = Pos {
            col: zero,
            abs: off,
            disp: k as i64,
        };
        let v = f(b, Type::F32, pos);
        s = comb.apply(b, s, v);
        k += 1;
    }
    s
}

/// Runs `f` (which stores) over the `len` elements of the contiguous lane at `off`.
pub fn map_lane(
    b: &mut KernelBuilder,
    off: Val,
    len: usize,
    f: &dyn Fn(&mut KernelBuilder, Type, Pos),
) {
    let zero = b.index(0);
    let n4 = len / 4 * 4;
    if n4 >= 8 {
        b.for_(0, n4 as i64, 4, |b, i| {
            let abs = b.add(off, i);
            f(
                b,
                Type::F32X4,
                Pos {
                    col: i,
                    abs,
                    disp: 0,
                },
            );
        });
    } else if n4 == 4 {
        f(
            b,
            Type::F32X4,
            Pos {
                col: zero,
                abs: off,
                disp: 0,
            },
        );
    }
    for k in n4..len {
        f(
            b,
            Type::F32,
            Pos {
                col: zero,
                abs: off,
                disp: k as i64,
            },
        );
    }
}

/// The `(type, displacement)` loads covering `n` neighbouring lanes from `start`: vectors,
/// then scalars.
pub fn lane_group(start: i64, n: usize) -> Vec<(Type, i64)> {
    let mut v: Vec<(Type, i64)> = (0..n / 4)
        .map(|j| (Type::F32X4, start + 4 * j as i64))
        .collect();
    v.extend((n / 4 * 4..n).map(|j| (Type::F32, start + j as i64)));
    v
}

/// Lanes per block of [`lane_blocks`]: wide blocks give independent accumulators, narrower
/// ones leave blocks for a second thread when there are few lanes.
fn block_width(c: usize) -> usize {
    match c {
        64.. => 16,
        16.. => 8,
        _ => 4,
    }
}

/// The body of a lane-blocked kernel: `(builder, x, y, base, lanes)` handles the lanes
/// `base + disp` for each `(type, disp)` of `lanes`, for every outer index.
pub type BlockFn<'f> = dyn Fn(&mut KernelBuilder, Buf, Buf, Val, &[(Type, i64)]) + 'f;

/// Kernels over `c` neighbouring lanes (channels last, or the inner dims of a strided
/// reduction): a main kernel parallel over blocks of lanes and, for the lanes left over, a
/// second kernel with a one-iteration parallel loop.
pub fn lane_blocks(
    name: &str,
    c: usize,
    x_len: usize,
    y_len: usize,
    body: &BlockFn,
) -> Vec<Lowered> {
    lane_blocks_between(
        name,
        c,
        (Arg::Operand(0), x_len),
        (Arg::Result(0), y_len),
        body,
    )
}

/// [`lane_blocks`] reading `src` and writing `dst` (each a buffer and its length).
pub fn lane_blocks_between(
    name: &str,
    c: usize,
    src: (Arg, usize),
    dst: (Arg, usize),
    body: &BlockFn,
) -> Vec<Lowered> {
    let (x_len, y_len) = (src.1, dst.1);
    let bw = block_width(c);
    let blocks = c / bw;
    let mut out = Vec::new();
    let new = |suffix: &str| {
        let mut b = KernelBuilder::new(format!("{name}{suffix}"));
        let x = b.buf("x", Type::F32, x_len, true);
        let y = b.buf("y", Type::F32, y_len, false);
        (b, x, y)
    };
    if blocks > 0 {
        let (mut b, x, y) = new("");
        b.parallel(0, blocks as i64, 1, |b, cb| {
            let base = b.mul_imm(cb, bw as i64);
            body(b, x, y, base, &lane_group(0, bw));
        });
        out.push(Lowered {
            kernel: b.finish(),
            args: vec![src.0.clone(), dst.0.clone()],
        });
    }
    let rest = c - blocks * bw;
    if rest > 0 {
        let (mut b, x, y) = new(if blocks > 0 { "_tail" } else { "" });
        let lanes = lane_group((blocks * bw) as i64, rest);
        b.parallel(0, 1, 1, |b, _| {
            let zero = b.index(0);
            body(b, x, y, zero, &lanes);
        });
        out.push(Lowered {
            kernel: b.finish(),
            args: vec![src.0, dst.0],
        });
    }
    out
}

/// Per-element code of a strided walk: `(builder, type, offset, displacement, group) -> value`.
pub type StridedFn<'f> = dyn Fn(&mut KernelBuilder, Type, Val, i64, usize) -> Val + 'f;

/// Folds `len` steps of `stride` elements from `base` for each lane group of `lanes` (one
/// accumulator each, starting at `comb`'s identity).
pub fn fold_strided(
    b: &mut KernelBuilder,
    base: Val,
    len: usize,
    stride: usize,
    lanes: &[(Type, i64)],
    comb: Comb,
    f: &StridedFn,
) -> Vec<Val> {
    let inits: Vec<Val> = lanes
        .iter()
        .map(|&(ty, _)| b.fsplat(ty, comb.ident()))
        .collect();
    b.loop_(0, len as i64, 1, false, &inits, |b, j, a| {
        let o = b.mul_imm(j, stride as i64);
        let o = b.add(base, o);
        lanes
            .iter()
            .enumerate()
            .map(|(g, &(ty, d))| {
                let v = f(b, ty, o, d, g);
                comb.apply(b, a[g], v)
            })
            .collect()
    })
}

/// Runs `f` (which stores) for `len` steps of `stride` elements from `base`, per lane group.
pub fn map_strided(
    b: &mut KernelBuilder,
    base: Val,
    len: usize,
    stride: usize,
    lanes: &[(Type, i64)],
    f: &dyn Fn(&mut KernelBuilder, Type, Val, i64, usize),
) {
    b.for_(0, len as i64, 1, |b, j| {
        let o = b.mul_imm(j, stride as i64);
        let o = b.add(base, o);
        for (g, &(ty, d)) in lanes.iter().enumerate() {
            f(b, ty, o, d, g);
        }
    });
}
