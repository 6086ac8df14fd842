//! `graph.fuse-cast`: `cast(cast(x, T1), T2)` becomes `cast(x, T2)` when the middle cast
//! cannot change what the final one produces, and a cast to the type its operand already
//! has disappears (so `f32 → f64 → f32` vanishes entirely).
//!
//! The outer cast is rewired to read `x` even when the inner cast has other readers: the
//! inner cast then stays for them, and no work is added.

use super::fuse_util::single_private_use;
use crate::graph::{Graph, NodeId};
use crate::ops::Op;
use kiln_core::{DType, Pass, Result};

pub struct FuseCast;

/// The value range of an integer type (bool counts as `0..=1`).
fn int_range(t: DType) -> Option<(i128, i128)> {
    Some(match t {
        DType::Bool => (0, 1),
        DType::I8 => (i8::MIN as i128, i8::MAX as i128),
        DType::U8 => (0, u8::MAX as i128),
        DType::I16 => (i16::MIN as i128, i16::MAX as i128),
        DType::U16 => (0, u16::MAX as i128),
        DType::I32 => (i32::MIN as i128, i32::MAX as i128),
        DType::U32 => (0, u32::MAX as i128),
        DType::I64 => (i64::MIN as i128, i64::MAX as i128),
        DType::U64 => (0, u64::MAX as i128),
        DType::F32 | DType::F64 => return None,
    })
}

/// Whether every value of `from` is exactly a value of `to` (a lossless widening).
/// Integers fit a float when their magnitude fits its mantissa (24 bits for f32, 53 for f64).
pub fn exact(from: DType, to: DType) -> bool {
    if from == to {
        return true;
    }
    match (int_range(from), int_range(to)) {
        (Some((lo, hi)), Some((tlo, thi))) => tlo <= lo && hi <= thi,
        (Some((lo, hi)), None) => {
            let bits = if to == DType::F32 { 24 } else { 53 };
            lo.abs().max(hi) <= 1i128 << bits
        }
        (None, Some(_)) => false,
        (None, None) => from == DType::F32 && to == DType::F64,
    }
}

/// Whether `cast(cast(x: src, mid), dst)` equals `cast(x, dst)` for every `x`:
/// - the middle type holds every source value exactly (`i32 → i64 → f32`, `u8 → f32 → i64`,
///   `f32 → f64 → T`): the second cast then sees the source value itself;
/// - or all three are integer types and the middle range contains the final one
///   (`i64 → i32 → i8`): kiln's casts saturate, ONNX runtimes wrap, and either way the
///   middle step keeps every bit the final type keeps.
///
/// Not: `f32 → i32 → f32` (truncation), `f64 → f32 → i32` (rounding before truncation),
/// `i32 → u16 → i8` (the middle loses negative values that i8 keeps).
pub fn chain_is_exact(src: DType, mid: DType, dst: DType) -> bool {
    if exact(src, mid) {
        return true;
    }
    let ints = [src, mid, dst]
        .iter()
        .all(|&t| t != DType::Bool && int_range(t).is_some());
    ints && exact(dst, mid)
}

impl Pass<Graph> for FuseCast {
    fn name(&self) -> &'static str {
        "graph.fuse-cast"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for n in g.topo_order()? {
            if g.contains(n) && matches!(g.node(n).op, Op::Cast(_)) {
                changed |= skip_inner_cast(g, n);
                changed |= remove_same_type(g, n);
            }
        }
        Ok(changed)
    }
}

/// Makes cast `n` read its operand's operand when that operand is an exact middle cast.
fn skip_inner_cast(g: &mut Graph, n: NodeId) -> bool {
    let Op::Cast(c) = &g.node(n).op else {
        return false;
    };
    let to = c.to;
    let Some(x) = g.node(n).input(0) else {
        return false;
    };
    let Some(inner) = g.producer(x) else {
        return false;
    };
    let Op::Cast(ic) = &g.node(inner).op else {
        return false;
    };
    let mid = ic.to;
    let Some(src) = g.node(inner).input(0) else {
        return false;
    };
    let Some(src_ty) = g.value(src).ty.as_ref().map(|t| t.dtype) else {
        return false;
    };
    if !chain_is_exact(src_ty, mid, to) {
        return false;
    }
    let inner_dead = single_private_use(g, x);
    g.set_input(n, 0, Some(src));
    if inner_dead {
        g.remove_node(inner);
    }
    true
}

/// Removes cast `n` when its operand already has the target type. A returned result keeps
/// its name through the operand, unless the operand is a graph input or itself returned:
/// then the cast is what names the output, and it stays.
fn remove_same_type(g: &mut Graph, n: NodeId) -> bool {
    let Op::Cast(c) = &g.node(n).op else {
        return false;
    };
    let to = c.to;
    let Some(x) = g.node(n).input(0) else {
        return false;
    };
    if g.value(x).ty.as_ref().is_none_or(|t| t.dtype != to) {
        return false;
    }
    let out = g.node(n).outputs()[0];
    if g.outputs().contains(&out) {
        if g.producer(x).is_none() || g.outputs().contains(&x) {
            return false;
        }
        g.value_mut(x).name = g.value(out).name.clone();
    }
    g.remove_node(n);
    g.replace_all_uses(out, x);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use DType::*;

    #[test]
    fn widening_table() {
        assert!(exact(I32, I64) && exact(U8, I16) && exact(U16, F32) && exact(I32, F64));
        assert!(exact(Bool, U8) && exact(F32, F64));
        assert!(!exact(I32, F32) && !exact(I64, F64) && !exact(I8, U8) && !exact(U8, I8));
        assert!(!exact(F32, I64) && !exact(F64, F32) && !exact(I8, Bool));
    }

    #[test]
    fn chains() {
        assert!(chain_is_exact(I32, I64, F32));
        assert!(chain_is_exact(F32, F64, F32));
        assert!(chain_is_exact(U8, F32, I64));
        assert!(chain_is_exact(I64, I32, I8));
        assert!(!chain_is_exact(F32, I32, F32));
        assert!(!chain_is_exact(F64, F32, I32));
        assert!(!chain_is_exact(I32, U16, I8));
        assert!(!chain_is_exact(F64, F32, Bool));
        assert!(!chain_is_exact(I32, I8, Bool));
    }
}
