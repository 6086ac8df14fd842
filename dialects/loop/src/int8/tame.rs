//! The cheap form of an epilogue whose values are *tame*: finite, never NaN, never −0.
//!
//! Without a residual, the epilogue starts from `t = f32(acc)·m` with `m > 0` and
//! `|acc| < 2^31`; when `m < 2^97` that is finite, not NaN, and +0 (not −0) when zero. The
//! activations below keep those properties, and on such values the contract's IEEE `max`,
//! `min` and `clamp` agree with x86's `maxps`/`minps` (`a > b ? a : b`), which are one
//! instruction each where the NaN- and zero-sign-exact forms are six or seven. The code
//! then needs no saturating conversion either: the clamp runs in f32 on the integral
//! bounds first (rounding is monotonic and fixes integers, so `R(clamp(t)) = clamp(R(t))`),
//! and the clamped value, within ±2^22, becomes an integer by the 1.5·2^23 trick: adding
//! it rounds half to even (the contract's default) and leaves the integer in the low
//! mantissa bits; subtracting it again gives the integral f32 with +0 for zero.
//!
//! Anything else — a residual, PRelu's slope, transcendental activations, a −0 bound —
//! takes the exact general form in [`super::gemm`].

use super::epilogue::{MinMax, activation_with};
use super::quantize::round;
use crate::builder::KernelBuilder;
use crate::ir::{CmpOp, Type, Val};
use kiln_graph::ops::Activation;
use kiln_quant::Rounding;
use kiln_quant::arith::QParams;
use kiln_quant::plan::Epilogue;

/// 1.5·2^23: added to |x| ≤ 2^22, the sum's low mantissa bits hold `x` rounded.
pub(super) const MAGIC: f32 = 12_582_912.0;
/// The bits of [`MAGIC`].
pub(super) const MAGIC_BITS: i64 = 0x4B40_0000;

/// Scales for which `f32(acc)·m` is finite for every i32 `acc`.
fn tame_scales(m: &[f32]) -> bool {
    m.iter().all(|&m| m > 0.0 && m < 2f32.powi(97))
}

fn neg_zero(x: f32) -> bool {
    x == 0.0 && x.is_sign_negative()
}

/// Activations that map tame values to tame values with only `max`/`min`/arithmetic, or
/// (sigmoid, swish) to finite non-NaN values: the contract's `exp` clamps its argument, so
/// `1 + e^−v` is finite and ≥ 1. A swish may underflow to −0, which quantises exactly as
/// +0 does (code `z`), so their quantisation can take the tame form too; YOLO's SiLU
/// epilogues save the NaN compare-and-blend per vector.
fn tame_act(act: &Activation) -> bool {
    match *act {
        Activation::None
        | Activation::Relu
        | Activation::HardSwish
        | Activation::Sigmoid
        | Activation::Swish => true,
        Activation::Clip { min, max } => {
            !min.is_nan() && !max.is_nan() && !neg_zero(min) && !neg_zero(max)
        }
        Activation::HardSigmoid { alpha, beta } => {
            alpha.is_finite() && beta.is_finite() && !neg_zero(beta)
        }
        _ => false,
    }
}

/// An output grid with the epilogue's code bounds `lo..=hi`.
type Grid<'e> = (&'e QParams, i32, i32);

/// The epilogue's pre-quantisation value and output grid, or `None` when it is not tame.
fn tame_value<'e>(
    b: &mut KernelBuilder,
    e: &'e Epilogue,
    t: Val,
) -> Option<(Val, Option<Grid<'e>>)> {
    match e {
        Epilogue::Requant { out, m, lo, hi } if tame_scales(m) => Some((t, Some((out, *lo, *hi)))),
        Epilogue::Float {
            out,
            sc,
            act,
            residual: false,
            slope: false,
        } if tame_scales(sc)
            && tame_act(act)
            && out.as_ref().is_none_or(|p| p.recip().is_finite()) =>
        {
            let v = activation_with(b, act, t, MinMax::Pseudo);
            Some((v, out.as_ref().map(|p| (p, p.qmin, p.qmax))))
        }
        _ => None,
    }
}

/// The epilogue's stored f32 result (`dequant(q)`, or the activation when unquantised).
pub(super) fn value(b: &mut KernelBuilder, e: &Epilogue, t: Val) -> Option<Val> {
    let (v, grid) = tame_value(b, e, t)?;
    let Some((p, lo, hi)) = grid else {
        return Some(v);
    };
    let x = scaled(b, e, v, p);
    Some(dequant_of(b, x, p, lo, hi))
}

/// The epilogue's code `q = c + z` as `i32x4`.
pub(super) fn code(b: &mut KernelBuilder, e: &Epilogue, t: Val) -> Option<Val> {
    let (v, grid) = tame_value(b, e, t)?;
    let (p, lo, hi) = grid?;
    let x = scaled(b, e, v, p);
    Some(code_of(b, x, p, lo, hi))
}

/// The code `clamp(R(x) + z, lo, hi)` of a non-NaN `x` in code units (f32 or f32x4), as
/// i32 (or i32x4): the contract's quantisation without its NaN and saturation handling.
pub(super) fn code_of(b: &mut KernelBuilder, x: Val, p: &QParams, lo: i32, hi: i32) -> Val {
    let ty = b.ty(x);
    let c = clamp_rounded(b, x, p, lo, hi);
    let m = b.fsplat(ty, MAGIC);
    let sum = b.add(c, m);
    let ity = if ty.is_vector() {
        Type::I32X4
    } else {
        Type::I32
    };
    let bits = b.bitcast(ity, sum);
    let k = b.iconst(Type::I32, MAGIC_BITS - p.z() as i64);
    let k = if ty.is_vector() { b.splat(ity, k) } else { k };
    b.sub(bits, k)
}

/// `dequant(code_of(x))`: the centred code as an integral f32 (+0 for zero) times `s`.
pub(super) fn dequant_of(b: &mut KernelBuilder, x: Val, p: &QParams, lo: i32, hi: i32) -> Val {
    let ty = b.ty(x);
    let c = clamp_rounded(b, x, p, lo, hi);
    let m = b.fsplat(ty, MAGIC);
    let sum = b.add(c, m);
    let c = b.sub(sum, m);
    let s = b.fsplat(ty, p.s());
    b.mul(c, s)
}

/// `clamp(x, lo − z, hi − z)`, rounded unless the rounding is half to even (which the
/// 1.5·2^23 addition that follows performs).
pub(super) fn clamp_rounded(b: &mut KernelBuilder, x: Val, p: &QParams, lo: i32, hi: i32) -> Val {
    let ty = b.ty(x);
    let lo = b.fsplat(ty, (lo as i64 - p.z() as i64) as f32);
    let hi = b.fsplat(ty, (hi as i64 - p.z() as i64) as f32);
    let x = pmax(b, x, lo);
    let c = pmin(b, x, hi);
    if p.rounding == Rounding::HalfEven {
        c
    } else {
        round(b, c, p.rounding)
    }
}

/// `v·(1/s)` for the f32 epilogue (`QParams::quantize_epilogue`); Requant's `t` is
/// already in code units.
fn scaled(b: &mut KernelBuilder, e: &Epilogue, v: Val, p: &QParams) -> Val {
    match e {
        Epilogue::Requant { .. } => v,
        Epilogue::Float { .. } => {
            let inv = b.fsplat(Type::F32X4, p.recip());
            b.mul(v, inv)
        }
        Epilogue::Table { .. } => unreachable!("tame_value declines table epilogues"),
    }
}

/// `a > b ? a : b` (one `maxps`).
pub(super) fn pmax(b: &mut KernelBuilder, x: Val, y: Val) -> Val {
    let c = b.cmp(CmpOp::Lt, y, x);
    b.select(c, x, y)
}

/// `a < b ? a : b` (one `minps`).
pub(super) fn pmin(b: &mut KernelBuilder, x: Val, y: Val) -> Val {
    let c = b.cmp(CmpOp::Lt, x, y);
    b.select(c, x, y)
}
