//! The scalar semantics of the loop dialect's instructions, one lane at a time (see the
//! parent module for the rules). Shared by the evaluator and `loop.fold-constants`.

use crate::ir::*;
use kiln_core::float::{maximum as fmax, minimum as fmin};
use kiln_core::{Error, ErrorKind, Result};

/// One lane of a value: integers (all widths, bool, index) as canonical i64, floats as f32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    I(i64),
    F(f32),
}

impl Scalar {
    pub fn int(self) -> i64 {
        match self {
            Scalar::I(x) => x,
            Scalar::F(f) => f as i64,
        }
    }
    pub fn float(self) -> f32 {
        match self {
            Scalar::F(f) => f,
            Scalar::I(x) => x as f32,
        }
    }
}

/// An integer wrapped to the canonical form of its type (see the module docs).
pub fn wrap(t: Type, x: i64) -> i64 {
    match t.lane() {
        Type::Bool => x & 1,
        Type::I8 => x as i8 as i64,
        Type::U8 => x as u8 as i64,
        Type::I16 => x as i16 as i64,
        Type::I32 => x as i32 as i64,
        _ => x,
    }
}

fn bits(t: Type) -> u32 {
    match t.lane() {
        Type::Bool => 1,
        Type::I8 | Type::U8 => 8,
        Type::I16 => 16,
        Type::I32 | Type::F32 => 32,
        _ => 64,
    }
}

/// A binary op on one lane of type `t` (the lane type).
pub fn binary(op: BinOp, t: Type, a: Scalar, b: Scalar) -> Result<Scalar> {
    if t.is_float() {
        let (a, b) = (a.float(), b.float());
        return Ok(Scalar::F(match op {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
            BinOp::Min => fmin(a, b),
            BinOp::Max => fmax(a, b),
            _ => {
                return Err(Error::new(
                    ErrorKind::Eval,
                    format!("{} of floats", op.name()),
                ));
            }
        }));
    }
    let (a, b) = (a.int(), b.int());
    let r = match op {
        BinOp::Add => a.wrapping_add(b),
        BinOp::Sub => a.wrapping_sub(b),
        BinOp::Mul => a.wrapping_mul(b),
        BinOp::Div => {
            let q = a.checked_div(b).ok_or_else(|| {
                Error::new(ErrorKind::Eval, "integer division by zero or overflow")
            })?;
            if wrap(t, q) != q {
                return Err(Error::new(ErrorKind::Eval, "integer division overflow"));
            }
            q
        }
        BinOp::Rem => {
            if b == 0 {
                return Err(Error::new(ErrorKind::Eval, "integer remainder by zero"));
            }
            a.checked_rem(b).unwrap_or(0)
        }
        BinOp::Min => a.min(b),
        BinOp::Max => a.max(b),
        BinOp::And => a & b,
        BinOp::Or => a | b,
        BinOp::Shl => a.wrapping_shl((b as u32) & (bits(t) - 1)),
        BinOp::Shr => a.wrapping_shr((b as u32) & (bits(t) - 1)),
    };
    Ok(Scalar::I(wrap(t, r)))
}

pub fn unary(op: UnOp, t: Type, a: Scalar) -> Scalar {
    if t.is_float() {
        let a = a.float();
        return Scalar::F(match op {
            UnOp::Neg => -a,
            UnOp::Abs => a.abs(),
            UnOp::Sqrt => a.sqrt(),
            UnOp::Floor => a.floor(),
            UnOp::Ceil => a.ceil(),
            UnOp::Nearest => a.round_ties_even(),
            UnOp::Trunc => a.trunc(),
        });
    }
    let a = a.int();
    Scalar::I(wrap(
        t,
        match op {
            UnOp::Neg => a.wrapping_neg(),
            UnOp::Abs => a.wrapping_abs(),
            _ => a,
        },
    ))
}

pub fn fma(a: Scalar, b: Scalar, c: Scalar) -> Scalar {
    Scalar::F(a.float().mul_add(b.float(), c.float()))
}

pub fn compare(op: CmpOp, t: Type, a: Scalar, b: Scalar) -> bool {
    if t.is_float() {
        let (a, b) = (a.float(), b.float());
        match op {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    } else {
        let (a, b) = (a.int(), b.int());
        match op {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
}

/// Converts one lane from type `from` to type `to` (lane types).
pub fn cast(from: Type, to: Type, x: Scalar) -> Scalar {
    match (from.is_float(), to.is_float()) {
        (_, true) => Scalar::F(x.float()),
        (true, false) => {
            let f = x.float();
            Scalar::I(match to.lane() {
                Type::I32 => f as i32 as i64,
                Type::I16 => f as i16 as i64,
                Type::I8 => f as i8 as i64,
                Type::U8 => f as u8 as i64,
                Type::Bool => i64::from(f != 0.0),
                _ => f as i64,
            })
        }
        (false, false) => Scalar::I(wrap(to, x.int())),
    }
}

/// Reinterprets the bits of a value of type `from` (lanes little-endian, as in memory) as
/// type `to` of the same width.
pub fn bitcast(from: Type, to: Type, x: &Lanes) -> Lanes {
    let mut bytes = [0u8; 16];
    let fw = from.lane().bytes() as usize;
    for j in 0..from.lanes() as usize {
        let b = match x[j] {
            Scalar::F(f) => u64::from(f.to_bits()),
            Scalar::I(i) => i as u64,
        };
        bytes[j * fw..(j + 1) * fw].copy_from_slice(&b.to_le_bytes()[..fw]);
    }
    let mut out = [Scalar::I(0); 16];
    let tw = to.lane().bytes() as usize;
    for (j, o) in out.iter_mut().enumerate().take(to.lanes() as usize) {
        let mut b = [0u8; 8];
        b[..tw].copy_from_slice(&bytes[j * tw..(j + 1) * tw]);
        let raw = u64::from_le_bytes(b);
        *o = if to.is_float() {
            Scalar::F(f32::from_bits(raw as u32))
        } else {
            Scalar::I(wrap(to, raw as i64))
        };
    }
    out
}

/// The runtime's math helpers, on f32 arguments.
pub fn call(h: Helper, a: &[f32]) -> f32 {
    let x = a.first().copied().unwrap_or(0.0);
    let y = a.get(1).copied().unwrap_or(0.0);
    match h {
        Helper::Exp => x.exp(),
        Helper::Log => x.ln(),
        Helper::Tanh => x.tanh(),
        Helper::Erf => erf(x as f64) as f32,
        Helper::Pow => x.powf(y),
        Helper::Sin => x.sin(),
        Helper::Cos => x.cos(),
        Helper::Atan => x.atan(),
        Helper::Fmod => x % y,
    }
}

/// erf by its Maclaurin series near 0 and a continued fraction of erfc beyond, in f64: far
/// more accurate than the f32 result needs.
fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let r = if ax < 2.5 {
        // erf x = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))
        let (mut term, mut sum, x2) = (ax, ax, ax * ax);
        for n in 1..80 {
            term *= -x2 / n as f64;
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else if ax > 6.0 {
        1.0
    } else {
        // erfc x = e^{-x²}/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))), evaluated bottom up.
        let mut f = ax;
        for k in (1..60).rev() {
            f = ax + (k as f64 / 2.0) / f;
        }
        1.0 - (-ax * ax).exp() / (f * std::f64::consts::PI.sqrt())
    };
    r.copysign(x)
}

/// All lanes of a value (a scalar uses lane 0).
pub type Lanes = [Scalar; 16];
