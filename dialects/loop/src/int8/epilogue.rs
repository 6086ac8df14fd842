//! The contract's epilogue in loop IR, shared by every int8 compute kernel (GEMM tiles,
//! depthwise, MatMul of two activations): `f32(acc)·m`, then requantisation with clamps,
//! a table lookup, or the f32 epilogue (residual, activation, quantisation), as
//! `kiln_quant::arith` writes them.

use super::quantize::{self, clamp_codes, clamp_int, round};
use super::tame;
use crate::builder::KernelBuilder;
use crate::ir::{Buf, CmpOp, Helper, Type, Val};
use crate::lower::act::per_lane;
use kiln_graph::ops::Activation;
use kiln_graph::ops::activation::HARD_SWISH_ALPHA;
use kiln_quant::act_table::ActTable;
use kiln_quant::plan::Epilogue;

/// `f32(acc)·m[ch..ch+4]`: where every epilogue starts.
fn scaled(b: &mut KernelBuilder, e: &Epilogue, acc: Val, scales: Buf, ch: Val) -> Val {
    let f = b.cast(Type::F32X4, acc);
    let m = b.load(Type::F32X4, scales, ch, table_len(e) as i64);
    b.mul(f, m)
}

/// Entries before the per-channel multipliers in an epilogue's `scales` buffer: a table
/// epilogue keeps its result codes there (as f32), so it needs no buffer of its own.
pub fn table_len(e: &Epilogue) -> usize {
    match e {
        Epilogue::Table { table, .. } => table.table.len(),
        _ => 0,
    }
}

/// The per-channel multipliers an epilogue starts from (`m`, or `sc`).
pub fn channel_scales(e: &Epilogue) -> &[f32] {
    match e {
        Epilogue::Requant { m, .. } | Epilogue::Table { m, .. } => m,
        Epilogue::Float { sc, .. } => sc,
    }
}

/// An epilogue's `scales` buffer: its table's codes, if any, then `per_channel`.
pub fn scale_data(e: &Epilogue, per_channel: Vec<f32>) -> Vec<f32> {
    match e {
        Epilogue::Table { table, .. } => table
            .table
            .iter()
            .map(|&c| c as f32)
            .chain(per_channel)
            .collect(),
        _ => per_channel,
    }
}

/// A table epilogue's result codes (as f32) for `t = f32(acc)·m`: the fine-grid index
/// `clamp(R_even(t) − base, 0, n − 1)`, exact in f32 (|t| below 2^24 rounds to an
/// integer; beyond, the clamp decides either way), then one table load per lane.
fn table_codes(b: &mut KernelBuilder, t: Val, table: &ActTable, scales: Buf) -> Val {
    let r = round(b, t, kiln_quant::Rounding::HalfEven);
    let base = b.fsplat(Type::F32X4, table.base as f32);
    let i = b.sub(r, base);
    let zero = b.fsplat(Type::F32X4, 0.0);
    let last = b.fsplat(Type::F32X4, (table.table.len() - 1) as f32);
    let i = tame::pmax(b, i, zero);
    let i = tame::pmin(b, i, last);
    let i = b.cast(Type::I32X4, i);
    let mut codes = b.fsplat(Type::F32X4, 0.0);
    for lane in 0..4 {
        let k = b.extract(i, lane);
        let k = b.cast(Type::Index, k);
        let c = b.load(Type::F32, scales, k, 0);
        codes = b.insert(codes, c, lane);
    }
    codes
}

/// The f32 epilogue's value before quantisation: `act(t + residual)`.
fn activated(b: &mut KernelBuilder, act: &Activation, t: Val, residual: Option<Val>) -> Val {
    let v = match residual {
        Some(y) => b.add(t, y),
        None => t,
    };
    activation(b, act, v)
}

/// The contract's epilogue on one accumulator vector (channels `ch..ch+4`).
pub fn epilogue(
    b: &mut KernelBuilder,
    e: &Epilogue,
    acc: Val,
    scales: Buf,
    ch: Val,
    residual: Option<Val>,
) -> Val {
    let t = scaled(b, e, acc, scales, ch);
    if let Some(v) = tame::value(b, e, t) {
        return v;
    }
    match e {
        Epilogue::Table { out, table, .. } => {
            let c = table_codes(b, t, table, scales);
            let z = b.fsplat(Type::F32X4, out.z() as f32);
            let c = b.sub(c, z);
            let s = b.fsplat(Type::F32X4, out.s());
            b.mul(c, s)
        }
        Epilogue::Requant { out, lo, hi, .. } => {
            let t = round(b, t, out.rounding);
            let c = clamp_codes(b, t, out, *lo, *hi);
            let s = b.fsplat(Type::F32X4, out.s());
            b.mul(c, s)
        }
        Epilogue::Float { out, act, .. } => {
            let v = activated(b, act, t, residual);
            match out {
                Some(p) => quantize::fake_quant_with(b, v, p, quantize::Div::Recip),
                None => v,
            }
        }
    }
}

/// The epilogue's result as its code `q` (an `i32x4` within the grid's range), for
/// results stored as codes: the same steps as [`epilogue`] up to the integer clamp.
pub fn epilogue_code(
    b: &mut KernelBuilder,
    e: &Epilogue,
    acc: Val,
    scales: Buf,
    ch: Val,
    residual: Option<Val>,
) -> Val {
    let t = scaled(b, e, acc, scales, ch);
    if let Some(q) = tame::code(b, e, t) {
        return q;
    }
    let (c, p) = match e {
        Epilogue::Table { table, .. } => {
            let c = table_codes(b, t, table, scales);
            return b.cast(Type::I32X4, c);
        }
        Epilogue::Requant { out, lo, hi, .. } => {
            let t = round(b, t, out.rounding);
            (clamp_int(b, t, out, *lo, *hi), out)
        }
        Epilogue::Float { out, act, .. } => {
            let p = out.as_ref().expect("coded results have a grid");
            let v = activated(b, act, t, residual);
            (quantize::centred_int_recip(b, v, p, p.rounding), p)
        }
    };
    let z = b.iconst(Type::I32, p.z() as i64);
    let z = b.splat(Type::I32X4, z);
    b.add(c, z)
}

/// The grid an epilogue's results can be stored as codes of: a quantised result without
/// residual (a fused residual may share the result's buffer in place, as f32).
pub fn code_grid(e: &Epilogue) -> Option<&kiln_quant::arith::QParams> {
    match e {
        Epilogue::Requant { out, .. } | Epilogue::Table { out, .. } => Some(out),
        Epilogue::Float {
            out: Some(out),
            residual: false,
            ..
        } => Some(out),
        Epilogue::Float { .. } => None,
    }
}

/// `kiln_quant::arith::activation` in loop IR, operation for operation.
pub fn activation(b: &mut KernelBuilder, act: &Activation, v: Val) -> Val {
    activation_with(b, act, v, MinMax::Ieee)
}

/// How `max`/`min` are computed: IEEE (NaN and the sign of zero exact), or x86's
/// `maxps`/`minps`, equal to it on the tame values of [`super::tame`].
#[derive(Clone, Copy)]
pub(super) enum MinMax {
    Ieee,
    Pseudo,
}

impl MinMax {
    fn max(self, b: &mut KernelBuilder, x: Val, y: Val) -> Val {
        match self {
            MinMax::Ieee => b.max(x, y),
            MinMax::Pseudo => tame::pmax(b, x, y),
        }
    }

    fn min(self, b: &mut KernelBuilder, x: Val, y: Val) -> Val {
        match self {
            MinMax::Ieee => b.min(x, y),
            MinMax::Pseudo => tame::pmin(b, x, y),
        }
    }
}

/// [`activation`] with the given `max`/`min`.
pub(super) fn activation_with(b: &mut KernelBuilder, act: &Activation, v: Val, mm: MinMax) -> Val {
    let ty = b.ty(v);
    let c = |b: &mut KernelBuilder, x: f32| b.fsplat(ty, x);
    match *act {
        Activation::None | Activation::PRelu => v,
        Activation::Relu => {
            let z = c(b, 0.0);
            mm.max(b, v, z)
        }
        Activation::Clip { min, max } => {
            let lo = c(b, min);
            let hi = c(b, max);
            let t = mm.max(b, v, lo);
            mm.min(b, t, hi)
        }
        Activation::LeakyRelu { alpha } => {
            let z = c(b, 0.0);
            let a = c(b, alpha);
            let neg = b.mul(a, v);
            let pos = b.cmp(CmpOp::Ge, v, z);
            b.select(pos, v, neg)
        }
        Activation::HardSigmoid { alpha, beta } => {
            let a = c(b, alpha);
            let be = c(b, beta);
            let t = b.mul(a, v);
            let t = b.add(t, be);
            clamp01(b, t, mm)
        }
        Activation::HardSwish => {
            let alpha = c(b, HARD_SWISH_ALPHA);
            let half = c(b, 0.5);
            let t = b.mul(v, alpha);
            let t = b.add(t, half);
            let t = clamp01(b, t, mm);
            b.mul(v, t)
        }
        Activation::Sigmoid => {
            let one = c(b, 1.0);
            let d = exp_neg_plus_one(b, v);
            b.div(one, d)
        }
        Activation::Swish => {
            let d = exp_neg_plus_one(b, v);
            b.div(v, d)
        }
        Activation::Tanh => per_lane(b, Helper::Tanh, &[v]),
        Activation::Gelu { tanh: false } => {
            let r2 = c(b, std::f32::consts::SQRT_2);
            let u = b.div(v, r2);
            let e = per_lane(b, Helper::Erf, &[u]);
            let half = c(b, 0.5);
            let one = c(b, 1.0);
            let h = b.mul(half, v);
            let s = b.add(one, e);
            b.mul(h, s)
        }
        Activation::Gelu { tanh: true } => {
            let k = c(b, (2.0 / std::f64::consts::PI).sqrt() as f32);
            let a = c(b, 0.044715);
            let t = b.mul(a, v);
            let t = b.mul(t, v);
            let t = b.mul(t, v);
            let t = b.add(v, t);
            let t = b.mul(k, t);
            let t = per_lane(b, Helper::Tanh, &[t]);
            let half = c(b, 0.5);
            let one = c(b, 1.0);
            let h = b.mul(half, v);
            let s = b.add(one, t);
            b.mul(h, s)
        }
    }
}

/// `1 + exp(−v)` with the contract's `exp`, as it writes sigmoid and swish.
fn exp_neg_plus_one(b: &mut KernelBuilder, v: Val) -> Val {
    let ty = b.ty(v);
    let n = b.unary(crate::ir::UnOp::Neg, v);
    let e = crate::lower::act::exp(b, n);
    let one = b.fsplat(ty, 1.0);
    b.add(one, e)
}

fn clamp01(b: &mut KernelBuilder, t: Val, mm: MinMax) -> Val {
    let ty = b.ty(t);
    let z = b.fsplat(ty, 0.0);
    let one = b.fsplat(ty, 1.0);
    let t = mm.max(b, t, z);
    mm.min(b, t, one)
}
