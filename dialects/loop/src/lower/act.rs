//! Scalar functions as loop IR, usable on `f32` and `f32x4` alike: the activations of the fused
//! epilogue and the element-wise unary ops.
//!
//! `exp` is a polynomial (Cephes' single-precision range reduction and degree-6 minimax), so
//! sigmoid, swish and softmax stay vectorised; functions with no cheap accurate polynomial here
//! (tanh, erf, log, sin, cos, pow) call the runtime's scalar routine once per lane.

use crate::builder::KernelBuilder;
use crate::ir::{BinOp, CmpOp, Helper, Type, UnOp, Val};
use kiln_graph::ops::activation::HARD_SWISH_ALPHA;
use kiln_graph::ops::{Activation, UnaryKind};

/// `max(x, y)` as the reference computes it (Rust's `f64::max`: a NaN operand yields the other
/// one). On vectors a compare and a blend — Cranelift's `fmax` is an eight-instruction
/// IEEE-754 sequence, too slow for a Relu applied to every element.
pub fn max_of(b: &mut KernelBuilder, x: Val, y: Val) -> Val {
    if b.ty(x).is_vector() {
        let gt = b.cmp(CmpOp::Gt, x, y);
        b.select(gt, x, y)
    } else {
        b.max(x, y)
    }
}

/// `min(x, y)`, the counterpart of [`max_of`].
pub fn min_of(b: &mut KernelBuilder, x: Val, y: Val) -> Val {
    if b.ty(x).is_vector() {
        let lt = b.cmp(CmpOp::Lt, x, y);
        b.select(lt, x, y)
    } else {
        b.min(x, y)
    }
}

/// `e^x` exactly as the int8 contract writes it ([`kiln_quant::arith::exp`], a few ulp from
/// the true value): the same operations in the same order, so an fp32 kernel and an int8
/// epilogue agree with the simulator on every host. Plain multiplies and adds, because
/// the loop dialect's `fma` fuses only where the host has FMA.
pub fn exp(b: &mut KernelBuilder, x: Val) -> Val {
    use kiln_quant::arith::exp_poly::{HI, LN2_HI, LN2_LO, LO, P};
    let ty = b.ty(x);
    let int = if ty.is_vector() {
        Type::I32X4
    } else {
        Type::I32
    };
    let c = |b: &mut KernelBuilder, v: f32| b.fsplat(ty, v);
    let hi = c(b, HI);
    let lo = c(b, LO);
    // Compare and select in scalar code too (where `min_of` is IEEE `fmin`), so a NaN
    // becomes `HI` in every lane as in the contract.
    let below = b.cmp(CmpOp::Lt, x, hi);
    let x = b.select(below, x, hi);
    // `lo < x` rather than `x > lo` (the same on the non-NaN x left): the form x64 lowers
    // to one `maxps`.
    let above = b.cmp(CmpOp::Lt, lo, x);
    let x = b.select(above, x, lo);
    // n = ⌊x·log2(e) + ½⌋, r = x − n·ln 2 (ln 2 split in two for an exact product).
    let log2e = c(b, std::f32::consts::LOG2_E);
    let half = c(b, 0.5);
    let t = b.mul(x, log2e);
    let t = b.add(t, half);
    let n = b.unary(UnOp::Floor, t);
    let (c1, c2) = (c(b, LN2_HI), c(b, LN2_LO));
    let nc = b.mul(n, c1);
    let r = b.sub(x, nc);
    let nc = b.mul(n, c2);
    let r = b.sub(r, nc);
    let mut p = c(b, P[0]);
    for &k in &P[1..] {
        let kc = c(b, k);
        let pr = b.mul(p, r);
        p = b.add(pr, kc);
    }
    let r2 = b.mul(r, r);
    let one = c(b, 1.0);
    let r1 = b.add(r, one);
    let p = b.mul(p, r2);
    let p = b.add(p, r1);
    // 2^n from its exponent bits, `(n + 127) << 23`, without a float → int conversion:
    // adding 1.5·2^23 + 127 to the integral n ∈ [−126, 128] leaves n + 127 in the low
    // mantissa bits, and the shift drops everything above them.
    let magic = c(b, 12_582_912.0 + 127.0);
    let t = b.add(n, magic);
    let bits = b.bitcast(int, t);
    let e = b.iconst(Type::I32, 23);
    let bits = b.binary(BinOp::Shl, bits, e);
    let pow2 = b.bitcast(ty, bits);
    b.mul(p, pow2)
}

/// `1 / (1 + e^-x)`.
pub fn sigmoid(b: &mut KernelBuilder, x: Val) -> Val {
    let nx = b.unary(UnOp::Neg, x);
    let e = exp(b, nx);
    let ty = b.ty(x);
    let one = b.fsplat(ty, 1.0);
    let d = b.add(one, e);
    b.div(one, d)
}

/// A runtime helper applied to each lane.
pub fn per_lane(b: &mut KernelBuilder, h: Helper, args: &[Val]) -> Val {
    let ty = b.ty(args[0]);
    if !ty.is_vector() {
        return b.call(h, args);
    }
    let mut out = args[0];
    for lane in 0..ty.lanes() as u8 {
        let lanes: Vec<Val> = args.iter().map(|&a| b.extract(a, lane)).collect();
        let r = b.call(h, &lanes);
        out = b.insert(out, r, lane);
    }
    out
}

fn clamp01(b: &mut KernelBuilder, x: Val) -> Val {
    let ty = b.ty(x);
    let zero = b.fsplat(ty, 0.0);
    let one = b.fsplat(ty, 1.0);
    let x = max_of(b, x, zero);
    min_of(b, x, one)
}

/// `x < 0 ? x * slope : x`.
fn leaky(b: &mut KernelBuilder, x: Val, slope: Val) -> Val {
    let ty = b.ty(x);
    let zero = b.fsplat(ty, 0.0);
    let neg = b.cmp(CmpOp::Lt, x, zero);
    let scaled = b.mul(x, slope);
    b.select(neg, scaled, x)
}

fn gelu(b: &mut KernelBuilder, x: Val, tanh: bool) -> Val {
    let ty = b.ty(x);
    let inner = if tanh {
        // sqrt(2/pi) * (x + 0.044715 x^3)
        let k = b.fsplat(ty, 0.044715);
        let x2 = b.mul(x, x);
        let x3 = b.mul(x2, x);
        let t = b.fma(x3, k, x);
        let s = b.fsplat(ty, (2.0f64 / std::f64::consts::PI).sqrt() as f32);
        let t = b.mul(t, s);
        per_lane(b, Helper::Tanh, &[t])
    } else {
        let s = b.fsplat(ty, std::f32::consts::FRAC_1_SQRT_2);
        let t = b.mul(x, s);
        per_lane(b, Helper::Erf, &[t])
    };
    let one = b.fsplat(ty, 1.0);
    let half = b.fsplat(ty, 0.5);
    let t = b.add(one, inner);
    let hx = b.mul(half, x);
    b.mul(hx, t)
}

/// The fused activation of a compute op applied to `x`; `slope` is the PRelu slope value.
pub fn activation(b: &mut KernelBuilder, act: &Activation, x: Val, slope: Option<Val>) -> Val {
    let ty = b.ty(x);
    match *act {
        Activation::None => x,
        Activation::Relu => {
            let zero = b.fsplat(ty, 0.0);
            max_of(b, x, zero)
        }
        Activation::Clip { min, max } => clip(b, x, min, max),
        Activation::LeakyRelu { alpha } => {
            let a = b.fsplat(ty, alpha);
            leaky(b, x, a)
        }
        Activation::PRelu => match slope {
            Some(s) => leaky(b, x, s),
            None => x,
        },
        Activation::Sigmoid => sigmoid(b, x),
        Activation::HardSigmoid { alpha, beta } => {
            let a = b.fsplat(ty, alpha);
            let c = b.fsplat(ty, beta);
            let t = b.fma(x, a, c);
            clamp01(b, t)
        }
        Activation::HardSwish => hard_swish(b, x),
        Activation::Swish => {
            let s = sigmoid(b, x);
            b.mul(x, s)
        }
        Activation::Tanh => per_lane(b, Helper::Tanh, &[x]),
        Activation::Gelu { tanh } => gelu(b, x, tanh),
    }
}

/// `min(max(x, lo), hi)`, skipping infinite bounds.
pub fn clip(b: &mut KernelBuilder, x: Val, lo: f32, hi: f32) -> Val {
    let ty = b.ty(x);
    let mut y = x;
    if lo > f32::NEG_INFINITY {
        let l = b.fsplat(ty, lo);
        y = max_of(b, y, l);
    }
    if hi < f32::INFINITY {
        let h = b.fsplat(ty, hi);
        y = min_of(b, y, h);
    }
    y
}

fn hard_swish(b: &mut KernelBuilder, x: Val) -> Val {
    let ty = b.ty(x);
    let alpha = b.fsplat(ty, HARD_SWISH_ALPHA);
    let half = b.fsplat(ty, 0.5);
    let t = b.mul(x, alpha);
    let t = b.add(t, half);
    let t = clamp01(b, t);
    b.mul(x, t)
}

/// An element-wise unary op, or `None` when this kind has no lowering.
pub fn unary(b: &mut KernelBuilder, kind: UnaryKind, x: Val) -> Option<Val> {
    let ty = b.ty(x);
    Some(match kind {
        UnaryKind::Relu => activation(b, &Activation::Relu, x, None),
        UnaryKind::Sigmoid => sigmoid(b, x),
        UnaryKind::Tanh => per_lane(b, Helper::Tanh, &[x]),
        UnaryKind::Erf => per_lane(b, Helper::Erf, &[x]),
        UnaryKind::Sqrt => b.unary(UnOp::Sqrt, x),
        UnaryKind::Exp => exp(b, x),
        UnaryKind::Log => per_lane(b, Helper::Log, &[x]),
        UnaryKind::Neg => b.unary(UnOp::Neg, x),
        UnaryKind::Abs => b.unary(UnOp::Abs, x),
        UnaryKind::Reciprocal => {
            let one = b.fsplat(ty, 1.0);
            b.div(one, x)
        }
        UnaryKind::HardSwish => hard_swish(b, x),
        UnaryKind::Swish => {
            let s = sigmoid(b, x);
            b.mul(x, s)
        }
        UnaryKind::Identity => x,
        UnaryKind::Floor => b.unary(UnOp::Floor, x),
        UnaryKind::Ceil => b.unary(UnOp::Ceil, x),
        UnaryKind::Round => b.unary(UnOp::Nearest, x),
        UnaryKind::Sign => {
            let zero = b.fsplat(ty, 0.0);
            let one = b.fsplat(ty, 1.0);
            let mone = b.fsplat(ty, -1.0);
            let pos = b.cmp(CmpOp::Gt, x, zero);
            let neg = b.cmp(CmpOp::Lt, x, zero);
            let t = b.select(neg, mone, x);
            b.select(pos, one, t)
        }
        UnaryKind::Softsign => {
            let one = b.fsplat(ty, 1.0);
            let a = b.unary(UnOp::Abs, x);
            let d = b.add(one, a);
            b.div(x, d)
        }
        UnaryKind::Sin => per_lane(b, Helper::Sin, &[x]),
        UnaryKind::Cos => per_lane(b, Helper::Cos, &[x]),
        // Softplus needs log1p for accuracy at large negative x; Not is boolean.
        UnaryKind::Softplus | UnaryKind::Not => return None,
    })
}
