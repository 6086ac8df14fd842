//! Quantisation arithmetic in loop IR, written to equal kiln-quant's `arith` bit for bit.
//!
//! Activations stay f32 tensors holding `dequant(q)` exactly, as in the simulator, so a value
//! is quantised where the simulator quantises it and nowhere else. In f32, with `c = q − z`:
//! `quantise` then `dequantise` is `clamp(R(x / s), qmin − z, qmax − z) · s` (the clamp on
//! integral floats equals the integer clamp, and `c` converts to f32 exactly), which is
//! what every kernel here computes — one division, the rounding, two clamps, one multiply.

use super::tame;
use crate::builder::KernelBuilder;
use crate::ir::{CmpOp, Type, UnOp, Val};
use kiln_quant::Rounding;
use kiln_quant::arith::QParams;

/// `R(x)` for f32 scalars or vectors, as [`Rounding::round`] computes it: from `f = floor(x)`
/// and the exact `d = x − f`.
pub fn round(b: &mut KernelBuilder, x: Val, r: Rounding) -> Val {
    match r {
        Rounding::HalfEven => return b.unary(UnOp::Nearest, x),
        Rounding::Up => return b.unary(UnOp::Ceil, x),
        _ => {}
    }
    let ty = b.ty(x);
    let f = b.unary(UnOp::Floor, x);
    let d = b.sub(x, f);
    let half = b.fsplat(ty, 0.5);
    let zero = b.fsplat(ty, 0.0);
    let one = b.fsplat(ty, 1.0);
    let f1 = b.add(f, one);
    let above = b.cmp(CmpOp::Gt, d, half);
    let tie = b.cmp(CmpOp::Eq, d, half);
    // The result on a tie.
    let on_tie = match r {
        Rounding::HalfUp => f1,
        Rounding::HalfDown => f,
        Rounding::HalfTowardZero => {
            let neg = b.cmp(CmpOp::Lt, x, zero);
            b.select(neg, f1, f)
        }
        Rounding::HalfAwayFromZero | Rounding::ToNearestInt => {
            let neg = b.cmp(CmpOp::Lt, x, zero);
            b.select(neg, f, f1)
        }
        Rounding::HalfEven | Rounding::Up => unreachable!("handled above"),
    };
    let r = b.select(tie, on_tie, f);
    b.select(above, f1, r)
}

/// The centred code `clamp(R(x / s), qmin − z, qmax − z)` as an `i32` (vector); NaN has
/// code `z` (centred 0), as in `arith::quantize`. The clamp runs on integers: the saturating
/// conversion maps NaN to 0 and ±inf or huge values to the i32 limits (which the clamp
/// then takes to the code range), exactly `arith::quantize`'s i64 saturation; and integer
/// min/max are one instruction where IEEE float min/max are seven.
pub fn centred_int(b: &mut KernelBuilder, x: Val, p: &QParams, r: Rounding) -> Val {
    let t = code_units(b, x, p, Div::Exact);
    centred_int_of(b, t, p, r)
}

/// How a value becomes code units: `x / s` (the contract's `quantize`), or `x·f32(1/s)`
/// (a compute op's epilogue, `QParams::quantize_epilogue`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Div {
    Exact,
    Recip,
}

fn code_units(b: &mut KernelBuilder, x: Val, p: &QParams, d: Div) -> Val {
    let ty = b.ty(x);
    match d {
        Div::Exact => {
            let s = b.fsplat(ty, p.s());
            b.div(x, s)
        }
        Div::Recip => {
            let inv = b.fsplat(ty, p.recip());
            b.mul(x, inv)
        }
    }
}

/// [`centred_int`] with the epilogue's multiply by `1/s`.
pub fn centred_int_recip(b: &mut KernelBuilder, x: Val, p: &QParams, r: Rounding) -> Val {
    let t = code_units(b, x, p, Div::Recip);
    centred_int_of(b, t, p, r)
}

/// The centred code of `t`, already in code units.
fn centred_int_of(b: &mut KernelBuilder, t: Val, p: &QParams, r: Rounding) -> Val {
    let ty = b.ty(t);
    if small_codes(p) {
        let c = centred_f32(b, t, p, r);
        let ity = if ty.is_vector() {
            Type::I32X4
        } else {
            Type::I32
        };
        let m = b.fsplat(ty, tame::MAGIC);
        let sum = b.add(c, m);
        let bits = b.bitcast(ity, sum);
        let k = b.iconst(Type::I32, tame::MAGIC_BITS);
        let k = if ty.is_vector() { b.splat(ity, k) } else { k };
        return b.sub(bits, k);
    }
    let t = round(b, t, r);
    clamp_int(b, t, p, p.qmin, p.qmax)
}

/// Whether centred codes stay within ±2^22, where the 1.5·2^23 trick converts exactly.
fn small_codes(p: &QParams) -> bool {
    let z = p.z() as i64;
    (p.qmin as i64 - z).abs() < 1 << 22 && (p.qmax as i64 - z).abs() < 1 << 22
}

/// The clamped, rounded (not yet converted) centred code of `t = x / s`: NaN is made +0
/// first (one compare and one and, where the saturating conversion took six), then the
/// cheap clamp of [`tame`] applies.
fn centred_f32(b: &mut KernelBuilder, t: Val, p: &QParams, r: Rounding) -> Val {
    let ty = b.ty(t);
    let ordered = b.cmp(CmpOp::Eq, t, t);
    let zero = b.fsplat(ty, 0.0);
    let t = b.select(ordered, t, zero);
    let p = QParams {
        rounding: r,
        ..p.clone()
    };
    tame::clamp_rounded(b, t, &p, p.qmin, p.qmax)
}

/// `clamp(t, lo − z, hi − z)` of an integral f32 `t`, as an `i32` (vector).
pub fn clamp_int(b: &mut KernelBuilder, t: Val, p: &QParams, lo: i32, hi: i32) -> Val {
    let ity = if b.ty(t).is_vector() {
        Type::I32X4
    } else {
        Type::I32
    };
    let i = b.cast(ity, t);
    let lo = b.iconst(
        Type::I32,
        (lo as i64 - p.z() as i64).clamp(i32::MIN as i64, i32::MAX as i64),
    );
    let hi = b.iconst(
        Type::I32,
        (hi as i64 - p.z() as i64).clamp(i32::MIN as i64, i32::MAX as i64),
    );
    let (lo, hi) = if ity == Type::I32X4 {
        (b.splat(ity, lo), b.splat(ity, hi))
    } else {
        (lo, hi)
    };
    let i = b.max(i, lo);
    b.min(i, hi)
}

/// `clamp(t, lo − z, hi − z)` of an integral f32 `t`, back in f32 (+0 for a zero code,
/// as the contract's `f32(q − z)`).
pub fn clamp_codes(b: &mut KernelBuilder, t: Val, p: &QParams, lo: i32, hi: i32) -> Val {
    let ty = b.ty(t);
    let i = clamp_int(b, t, p, lo, hi);
    b.cast(ty, i)
}

/// Fake quantisation `dequant(quant(x))`; NaN gives 0 (it quantises to `z`).
pub fn fake_quant(b: &mut KernelBuilder, x: Val, p: &QParams) -> Val {
    fake_quant_with(b, x, p, Div::Exact)
}

/// Fake quantisation as `quant` divides (`Div::Exact`) or as an epilogue does.
pub fn fake_quant_with(b: &mut KernelBuilder, x: Val, p: &QParams, d: Div) -> Val {
    let ty = b.ty(x);
    if small_codes(p) {
        let s = b.fsplat(ty, p.s());
        let t = code_units(b, x, p, d);
        let c = centred_f32(b, t, p, p.rounding);
        // Adding and removing 1.5·2^23 rounds half to even and turns −0 into +0.
        let m = b.fsplat(ty, tame::MAGIC);
        let sum = b.add(c, m);
        let c = b.sub(sum, m);
        return b.mul(c, s);
    }
    let t = code_units(b, x, p, d);
    let i = centred_int_of(b, t, p, p.rounding);
    let c = b.cast(ty, i);
    let s = b.fsplat(ty, p.s());
    b.mul(c, s)
}

/// Whether two parameter sets define the same grid (rounding aside).
pub fn same_grid(a: &QParams, b: &QParams) -> bool {
    a.scale == b.scale && a.zero == b.zero && a.qmin == b.qmin && a.qmax == b.qmax
}

/// The centred code `q − z` of a value known to be on `p`'s grid, as i32: `x·(1/s)`
/// rounded to nearest by the 1.5·2^23 trick (adding it leaves the integer in the low
/// mantissa bits). Exact: `x = f32(c)·s` and `f32(1/s)` each carry one rounding, so
/// `x·(1/s)` is within `|c|·3·2^-24 < 0.5` of `c` for `|c| < 2^21`; the contract's
/// `R(x / s)` lands on `c` too (no ties are that close), and the clamp cannot act.
pub fn recover_on_grid(b: &mut KernelBuilder, x: Val, p: &QParams) -> Val {
    let ty = b.ty(x);
    let ity = if ty.is_vector() {
        Type::I32X4
    } else {
        Type::I32
    };
    let inv = b.fsplat(ty, 1.0 / p.s());
    let magic = b.fsplat(ty, 12_582_912.0);
    let t = b.mul(x, inv);
    let t = b.add(t, magic);
    let bits = b.bitcast(ity, t);
    let m = b.iconst(Type::I32, 0x4B40_0000);
    let m = if ty.is_vector() { b.splat(ity, m) } else { m };
    b.sub(bits, m)
}

/// Whether kernels handle these parameters: per tensor, codes within u8 after the offset.
pub fn kernel_params(p: &QParams) -> bool {
    p.axis.is_none() && p.scale.len() == 1 && p.zero.len() == 1 && p.s() > 0.0 && p.s().is_finite()
}

/// Whether activation codes fit the u8 operand of `vpdpbusd`.
pub fn u8_codes(p: &QParams) -> bool {
    kernel_params(p) && p.qmin >= 0 && p.qmax <= 255
}

/// Stores an i32 code (within 0..=255) as a byte.
pub fn store_code(b: &mut KernelBuilder, buf: crate::ir::Buf, off: Val, code: Val) {
    store_code_at(b, buf, off, 0, code);
}

/// [`store_code`] at `off + disp`.
pub fn store_code_at(b: &mut KernelBuilder, buf: crate::ir::Buf, off: Val, disp: i64, code: Val) {
    let u = b.cast(Type::U8, code);
    b.store(buf, off, disp, u);
}
