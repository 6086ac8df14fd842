//! `graph.fold-arith`: chains of Add/Sub/Mul/Div by constants collapse into one op.
//!
//! Every step is an op `x ∘ c` with `c` a float constant (on either side of Add and Mul).
//! It is first written in a canonical form: `x − c` as `x + (−c)` and `x / c` as
//! `x · (1/c)` when `c` is a power of two, so `1/c` is exact and the product rounds to the
//! same f32 as the quotient. Any other division stays (`x / 3` and `x · 0.333…` round
//! differently). Then:
//! - `(x + c1) + c2 → x + (c1 + c2)` and `(x · c1) · c2 → x · (c1 · c2)`, when the inner
//!   result is read by the outer op alone and is not a graph output;
//! - `x + 0 → x` and `x · 1 → x` when the broadcast leaves `x`'s type unchanged.
//!
//! `(x + c1) · c2` is left alone: `x · c2 + c1 · c2` is two ops as well (seed notes §3.3).
//!
//! Rounding: the merged constant is computed in f64 and rounded once to the constant's type,
//! so `x + (c1 + c2)` rounds twice where the chain rounded `x + c1` and then `+ c2`. The
//! results can differ by an ulp or so of the values involved (more where `x + c1` cancels),
//! which is the same freedom every reassociating compiler takes; the negation and the
//! power-of-two reciprocal are exact.

use super::fuse_util::{add_const, const_tensor, drop_dead_const, single_private_use};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::{Binary, BinaryKind, Op};
use kiln_core::{Pass, Result, Tensor};

pub struct FoldArith;

impl Pass<Graph> for FoldArith {
    fn name(&self) -> &'static str {
        "graph.fold-arith"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for n in g.topo_order()? {
            if !g.contains(n) {
                continue;
            }
            changed |= canonicalise(g, n);
            // A merge leaves `n` in place with new operands, so it may merge again with the
            // op before the one it absorbed.
            while g.contains(n) && merge(g, n) {
                changed = true;
            }
            if g.contains(n) && drop_neutral(g, n) {
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// `n` as `x ∘ c` with `∘` one of Add/Sub/Mul/Div and `c` a float constant of the result's
/// element type: (kind, x, c, operand index of `c`).
fn by_const(g: &Graph, n: NodeId) -> Option<(BinaryKind, Value, Value, usize)> {
    let node = g.node(n);
    let Op::Binary(b) = &node.op else {
        return None;
    };
    if node.inputs().len() != 2 || node.outputs().len() != 1 {
        return None;
    }
    let (a, c) = (node.input(0)?, node.input(1)?);
    let is_const =
        |v: Value| const_tensor(g, v).is_some_and(|t| t.dtype().is_float() && !t.is_empty());
    let found = match b.kind {
        BinaryKind::Add | BinaryKind::Mul if is_const(c) && !is_const(a) => (b.kind, a, c, 1),
        BinaryKind::Add | BinaryKind::Mul if is_const(a) && !is_const(c) => (b.kind, c, a, 0),
        BinaryKind::Sub | BinaryKind::Div if is_const(c) && !is_const(a) => (b.kind, a, c, 1),
        _ => return None,
    };
    let out_ty = g.value(node.outputs()[0]).ty.as_ref()?;
    let ct = const_tensor(g, found.2)?;
    (ct.dtype() == out_ty.dtype).then_some(found)
}

/// Whether `v` is a power of two whose reciprocal the f32/f64 element type holds exactly.
fn exact_reciprocal(v: f64, is_f32: bool) -> bool {
    let r = 1.0 / v;
    let (m, rm) = (v.abs(), r.abs());
    let mantissa = |x: f64| x.to_bits() & ((1u64 << 52) - 1);
    let normal = |x: f64| {
        if is_f32 {
            (x as f32).is_normal() && (x as f32) as f64 == x
        } else {
            x.is_normal()
        }
    };
    normal(m) && normal(rm) && mantissa(m) == 0 && mantissa(rm) == 0
}

/// Rewrites `x − c` as `x + (−c)` and `x / 2^k` as `x · 2^−k`, both exact.
fn canonicalise(g: &mut Graph, n: NodeId) -> bool {
    let Some((kind, x, c, 1)) = by_const(g, n) else {
        return false;
    };
    let Some(t) = const_tensor(g, c) else {
        return false;
    };
    let is_f32 = t.dtype() == kiln_core::DType::F32;
    let (new_kind, new_t) = match kind {
        BinaryKind::Sub => (BinaryKind::Add, map_tensor(t, |v| -v)),
        BinaryKind::Div if t.to_f64_vec().iter().all(|&v| exact_reciprocal(v, is_f32)) => {
            (BinaryKind::Mul, map_tensor(t, |v| 1.0 / v))
        }
        _ => return false,
    };
    let name = format!("{}_c", g.value(g.node(n).outputs()[0]).name);
    let nc = add_const(g, name, new_t);
    *g.op_mut(n) = Op::Binary(Binary::new(new_kind));
    g.set_input(n, 0, Some(x));
    g.set_input(n, 1, Some(nc));
    drop_dead_const(g, c);
    true
}

fn map_tensor(t: &Tensor, f: impl Fn(f64) -> f64) -> Tensor {
    let v = t.to_f64_vec();
    Tensor::from_f64_fn(&t.ty(), |i| f(v[i]))
}

/// `(x ∘ c1) ∘ c2 → x ∘ (c1 ∘ c2)` for `∘` both Add or both Mul, rewriting the outer op `n`
/// and removing the inner one.
fn merge(g: &mut Graph, n: NodeId) -> bool {
    let Some((kind, inner, c2, _)) = by_const(g, n) else {
        return false;
    };
    if !matches!(kind, BinaryKind::Add | BinaryKind::Mul) || !single_private_use(g, inner) {
        return false;
    }
    let Some(p) = g.producer(inner) else {
        return false;
    };
    let Some((pk, x, c1, _)) = by_const(g, p) else {
        return false;
    };
    if pk != kind {
        return false;
    }
    let (Some(t1), Some(t2)) = (const_tensor(g, c1), const_tensor(g, c2)) else {
        return false;
    };
    if t1.dtype() != t2.dtype() {
        return false;
    }
    // The merged constant broadcasts like the two did, so the result's shape is unchanged;
    // Binary's eval computes in f64 and rounds once to the element type.
    let Ok(mut merged) = Op::Binary(Binary::new(kind)).eval(&[Some(t1), Some(t2)], 1) else {
        return false;
    };
    let Some(t) = merged.pop() else { return false };
    let name = format!("{}_c", g.value(g.node(n).outputs()[0]).name);
    let nc = add_const(g, name, t);
    g.set_input(n, 0, Some(x));
    g.set_input(n, 1, Some(nc));
    g.remove_node(p);
    drop_dead_const(g, c1);
    drop_dead_const(g, c2);
    true
}

/// Removes `x + 0` and `x · 1` when the result has `x`'s type. A returned result passes its
/// name to `x`, unless `x` is a graph input or itself returned (then the op stays).
fn drop_neutral(g: &mut Graph, n: NodeId) -> bool {
    let Some((kind, x, c, _)) = by_const(g, n) else {
        return false;
    };
    let neutral = match kind {
        BinaryKind::Add => 0.0,
        BinaryKind::Mul => 1.0,
        _ => return false,
    };
    let Some(t) = const_tensor(g, c) else {
        return false;
    };
    if t.to_f64_vec().iter().any(|&v| v != neutral) {
        return false;
    }
    let out = g.node(n).outputs()[0];
    match (&g.value(x).ty, &g.value(out).ty) {
        (Some(a), Some(b)) if a == b => {}
        _ => return false,
    }
    if g.outputs().contains(&out) {
        if g.producer(x).is_none() || g.outputs().contains(&x) {
            return false;
        }
        g.value_mut(x).name = g.value(out).name.clone();
    }
    g.remove_node(n);
    g.replace_all_uses(out, x);
    drop_dead_const(g, c);
    true
}
