//! The int8 instructions in Cranelift IR.
//!
//! `dot_u8s8` has two forms, chosen by [`Features::vnni`](super::Features):
//!
//! - **VNNI**: the widening multiply-add tree that Cranelift's x64 backend folds into ONE
//!   `vpdpbusd` (its lowering rule matches this exact shape: in each `imul` the sign-extended
//!   (s8) operand comes first, and the dot product is the FIRST operand of the final `iadd`).
//!   On a host without VNNI the same tree would expand to a dozen instructions, so it is
//!   only emitted when the fold is available.
//! - **No VNNI**: an exact sequence without `pmaddubsw` (which sums u8·s8 pairs into a
//!   SATURATING i16 and so is wrong for full 8-bit activations): bytes are widened to i16
//!   (u8 zero-, s8 sign-extended), multiplied and pair-summed into i32 by the shape Cranelift
//!   lowers to `pmaddwd` (wasm's `i32x4.dot_i16x8_s`), then adjacent pairs of those sums
//!   are added (`phaddd`) and the accumulator last.
//!
//! Both are exact: a u8·s8 product fits in i16 (|p| ≤ 32640) and a pair sum in i32.

use super::Translator;
use crate::ir::Val;
use cranelift_codegen::ir::{InstBuilder, Value};
use kiln_core::{Result, bail};

impl Translator<'_, '_> {
    /// `acc + Σ u8(a)·s8(b)` per group of four bytes.
    pub(super) fn dot_u8s8(&mut self, acc: Val, a: Val, b: Val) -> Result<Value> {
        let (acc, a, b) = (self.v(acc)?, self.v(a)?, self.v(b)?);
        let dot = if self.feat.vnni {
            let s_lo = self.b.ins().swiden_low(b);
            let u_lo = self.b.ins().uwiden_low(a);
            let lo = self.b.ins().imul(s_lo, u_lo);
            let s_hi = self.b.ins().swiden_high(b);
            let u_hi = self.b.ins().uwiden_high(a);
            let hi = self.b.ins().imul(s_hi, u_hi);
            let lo = self.pair_sum_i16(lo);
            let hi = self.pair_sum_i16(hi);
            self.b.ins().iadd_pairwise(lo, hi)
        } else {
            let a_lo = self.b.ins().uwiden_low(a);
            let b_lo = self.b.ins().swiden_low(b);
            let a_hi = self.b.ins().uwiden_high(a);
            let b_hi = self.b.ins().swiden_high(b);
            let lo = self.dot_i16(a_lo, b_lo);
            let hi = self.dot_i16(a_hi, b_hi);
            self.b.ins().iadd_pairwise(lo, hi)
        };
        Ok(self.b.ins().iadd(dot, acc))
    }

    /// `[p0+p1, p2+p3, p4+p5, p6+p7]` of an i16x8, in i32 (part of the `vpdpbusd` tree).
    fn pair_sum_i16(&mut self, p: Value) -> Value {
        let l = self.b.ins().swiden_low(p);
        let h = self.b.ins().swiden_high(p);
        self.b.ins().iadd_pairwise(l, h)
    }

    /// `[x0·y0 + x1·y1, …]` of two i16x8 in i32: the shape lowered to one `pmaddwd`.
    fn dot_i16(&mut self, x: Value, y: Value) -> Value {
        let xl = self.b.ins().swiden_low(x);
        let yl = self.b.ins().swiden_low(y);
        let lo = self.b.ins().imul(xl, yl);
        let xh = self.b.ins().swiden_high(x);
        let yh = self.b.ins().swiden_high(y);
        let hi = self.b.ins().imul(xh, yh);
        self.b.ins().iadd_pairwise(lo, hi)
    }

    /// Sixteen i32 lanes to saturated bytes: `snarrow` (i32 → i16, `packssdw`) then `unarrow`
    /// (signed i16 → u8, `packuswb`). Exact for every i32: a value above 255 is at least 256
    /// after the first step (it saturates to 32767 at most) and so 255 after the second;
    /// a negative value stays negative and becomes 0.
    pub(super) fn narrow_u8(&mut self, vs: [Val; 4]) -> Result<Value> {
        let [a, b, c, d] = [
            self.v(vs[0])?,
            self.v(vs[1])?,
            self.v(vs[2])?,
            self.v(vs[3])?,
        ];
        let ab = self.b.ins().snarrow(a, b);
        let cd = self.b.ins().snarrow(c, d);
        Ok(self.b.ins().unarrow(ab, cd))
    }

    /// `shuffle`: Cranelift's byte shuffle with the mask as an immediate constant.
    pub(super) fn shuffle(&mut self, a: Val, b: Val, m: &[u8; 16]) -> Result<Value> {
        let (x, y) = (self.v(a)?, self.v(b)?);
        let mask = self
            .b
            .func
            .dfg
            .immediates
            .push(cranelift_codegen::ir::ConstantData::from(m.as_slice()));
        Ok(self.b.ins().shuffle(x, y, mask))
    }

    /// Bytes `4·part ..` zero-extended to i32: two `uwiden` steps (low/high half of the
    /// bytes, then of the halfwords).
    pub(super) fn widen_u8(&mut self, v: Val, part: u8) -> Result<Value> {
        let x = self.v(v)?;
        let half = match part {
            0 | 1 => self.b.ins().uwiden_low(x),
            2 | 3 => self.b.ins().uwiden_high(x),
            _ => bail!(
                Verify,
                "kernel @{}: widen_u8 part {part} of an i8x16",
                self.kernel.name
            ),
        };
        Ok(if part.is_multiple_of(2) {
            self.b.ins().uwiden_low(half)
        } else {
            self.b.ins().uwiden_high(half)
        })
    }
}
