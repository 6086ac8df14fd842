//! The int8 instructions, lane by lane. Byte lanes of an `i8x16` are held sign-extended
//! (as every `i8` value is); each function reads them with the signedness its instruction
//! defines, and results are wrapped to their lane type's canonical form.

use super::{Lanes, Scalar, wrap};
use crate::ir::Type;

/// `dot_u8s8`: lane `i` is `acc[i] + Σ_{j<4} u8(a[4i+j]) · s8(b[4i+j])`, wrapping to i32.
pub fn dot_u8s8(acc: &Lanes, a: &Lanes, b: &Lanes) -> Lanes {
    let mut out = [Scalar::I(0); 16];
    for (i, o) in out.iter_mut().enumerate().take(4) {
        let dot: i64 = (4 * i..4 * i + 4)
            .map(|j| i64::from(a[j].int() as u8) * i64::from(b[j].int() as i8))
            .sum();
        *o = Scalar::I(wrap(Type::I32, acc[i].int().wrapping_add(dot)));
    }
    out
}

/// `narrow_u8`: the sixteen i32 lanes of `vs` (in order) saturated to `[0, 255]`, as bytes.
pub fn narrow_u8(vs: [&Lanes; 4]) -> Lanes {
    let mut out = [Scalar::I(0); 16];
    for (k, v) in vs.iter().enumerate() {
        for i in 0..4 {
            let x = wrap(Type::I32, v[i].int()).clamp(0, 255);
            out[4 * k + i] = Scalar::I(wrap(Type::I8, x));
        }
    }
    out
}

/// `shuffle`: byte `j` is byte `m[j]` of `a` then `b`.
pub fn shuffle(a: &Lanes, b: &Lanes, m: &[u8; 16]) -> Lanes {
    let mut out = [Scalar::I(0); 16];
    for (o, &i) in out.iter_mut().zip(m) {
        let i = usize::from(i);
        *o = if i < 16 { a[i] } else { b[i - 16] };
    }
    out
}

/// `widen_u8`: bytes `4·part .. 4·part+3` of `v`, zero-extended to i32 lanes.
pub fn widen_u8(v: &Lanes, part: u8) -> Lanes {
    let mut out = [Scalar::I(0); 16];
    let base = 4 * usize::from(part);
    for (i, o) in out.iter_mut().enumerate().take(4) {
        *o = Scalar::I(i64::from(v[base + i].int() as u8));
    }
    out
}
