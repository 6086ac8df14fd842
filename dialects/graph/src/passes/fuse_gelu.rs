//! `graph.fuse-gelu`: the decomposed Gelu exporters emit becomes one `gelu`.
//!
//! The core is `a = 1 + f(x)` with either
//! - `f = erf(x / 1.4142135)` (or `erf(x · 0.70710677)`): exact Gelu, or
//! - `f = tanh(0.7978846 · (x + 0.044715 · x³))`, `x³` as `pow(x, 3)` or `x·x·x`:
//!   `gelu {approximate="tanh"}`;
//!
//! and the result is `0.5 · x · a` in any of the association orders exporters produce:
//! `(x·a)·0.5` (PyTorch), `(x·0.5)·a` (`x * 0.5 * (1 + ...)`) or `x·(a·0.5)`, each
//! product in either operand order. Constants match within 1e-4 relative.

use super::pattern::{
    def_binary, div_by, is_const, mul_by, only_user, only_user_multi, other, out, replace,
    same_float_type,
};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::{BinaryKind, Gelu, Op, UnaryKind};
use kiln_core::{Pass, Result};

pub struct FuseGelu;

impl Pass<Graph> for FuseGelu {
    fn name(&self) -> &'static str {
        "graph.fuse-gelu"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        super::pattern::for_each_node(g, rewrite)
    }
}

/// `erf(x/√2)`'s argument: returns `(x, nodes)`.
fn erf_arg(g: &Graph, u: Value) -> Option<(Value, Vec<NodeId>)> {
    let n = g.producer(u)?;
    let x = div_by(g, n, std::f64::consts::SQRT_2)?;
    Some((x, vec![n]))
}

/// `√(2/π)·(x + 0.044715·x³)`'s nodes: returns `(x, nodes)`.
fn tanh_arg(g: &Graph, u: Value) -> Option<(Value, Vec<NodeId>)> {
    let scale = g.producer(u)?;
    let s = mul_by(g, scale, (2.0 / std::f64::consts::PI).sqrt())?;
    let (add, a, b) = def_binary(g, s, BinaryKind::Add)?;
    // One of the Add's operands is x, the other 0.044715·x³.
    for (x, t) in [(a, b), (b, a)] {
        let Some(tn) = g.producer(t) else { continue };
        let Some(cube) = mul_by(g, tn, 0.044715) else {
            continue;
        };
        let Some(mut nodes) = cube_of(g, cube, x, tn) else {
            continue;
        };
        if only_user(g, s) == Some(scale) && only_user(g, t) == Some(add) {
            nodes.extend([tn, add, scale]);
            return Some((x, nodes));
        }
    }
    None
}

/// The nodes computing `v = x³` (`pow(x, 3)`, `(x·x)·x` or `x·(x·x)`), read only by `user`.
fn cube_of(g: &Graph, v: Value, x: Value, user: NodeId) -> Option<Vec<NodeId>> {
    if only_user(g, v)? != user {
        return None;
    }
    if let Some((n, base, e)) = def_binary(g, v, BinaryKind::Pow) {
        return (base == x && is_const(g, e, 3.0)).then(|| vec![n]);
    }
    let (n, a, b) = def_binary(g, v, BinaryKind::Mul)?;
    let sq = if a == x { b } else { a };
    let (sn, p, q) = def_binary(g, sq, BinaryKind::Mul)?;
    let ok = (a == x || b == x) && p == x && q == x && only_user(g, sq) == Some(n);
    ok.then(|| vec![sn, n])
}

/// From `a = 1 + f(x)`, the outer `0.5 · x · a`: returns `(root, nodes)`.
fn outer(g: &Graph, a: Value, x: Value) -> Option<(NodeId, Vec<NodeId>)> {
    let m1 = only_user_multi(g, a)?;
    let o = other(g, m1, BinaryKind::Mul, a)?;
    let v1 = out(g, m1);
    if o == x {
        // (x·a)·0.5
        let m2 = only_user(g, v1)?;
        mul_by(g, m2, 0.5).filter(|&v| v == v1)?;
        return Some((m2, vec![m1, m2]));
    }
    if is_const(g, o, 0.5) {
        // x·(a·0.5)
        let m2 = only_user(g, v1)?;
        (other(g, m2, BinaryKind::Mul, v1)? == x).then_some(())?;
        return Some((m2, vec![m1, m2]));
    }
    // (x·0.5)·a
    let h = g.producer(o)?;
    (mul_by(g, h, 0.5)? == x && only_user(g, o) == Some(m1)).then_some(())?;
    Some((m1, vec![h, m1]))
}

fn rewrite(g: &mut Graph, n: NodeId) -> bool {
    let (tanh, u) = if let Some(u) = super::pattern::unary(g, n, UnaryKind::Erf) {
        (false, u)
    } else if let Some(u) = super::pattern::unary(g, n, UnaryKind::Tanh) {
        (true, u)
    } else {
        return false;
    };
    let Some((x, mut dead)) = (if tanh { tanh_arg(g, u) } else { erf_arg(g, u) }) else {
        return false;
    };
    let f = out(g, n);
    let Some(add) = only_user(g, f) else {
        return false;
    };
    if only_user(g, u) != Some(n) || !is_const_other(g, add, f) {
        return false;
    }
    let a = out(g, add);
    let Some((root, outer_nodes)) = outer(g, a, x) else {
        return false;
    };
    if !same_float_type(g, out(g, root), x) {
        return false;
    }
    dead.extend([n, add]);
    dead.extend(outer_nodes);
    let op = Op::Gelu(Gelu { tanh_approx: tanh });
    replace(g, root, op, vec![Some(x)], &dead);
    true
}

/// Whether `add` is `f + 1` in either order.
fn is_const_other(g: &Graph, add: NodeId, f: Value) -> bool {
    other(g, add, BinaryKind::Add, f).is_some_and(|c| c != f && is_const(g, c, 1.0))
}
