//! Matching helpers shared by the pattern-to-op passes (`graph.fuse-layer-norm`,
//! `graph.fuse-gelu`, ...).
//!
//! Every pattern is a small tree of element-wise ops hanging off one input `x`. A pattern may
//! only be replaced when each of its intermediate values is read by the pattern alone (not by
//! another op, not as a graph output): otherwise the intermediate would have to be kept and
//! the rewrite would add work instead of removing it. The helpers below make that check part
//! of every step, so a pass cannot forget it.

use crate::graph::{Graph, NodeId, Value};
use crate::ops::{BinaryKind, Const, Op, UnaryKind};
use kiln_core::{DType, Tensor, TensorType};

/// Relative tolerance for comparing exporter constants (`1.4142135`, `0.044715`, `1/6`)
/// with their exact values: exporters round them to f32 or to a few printed digits.
pub const TOL: f64 = 1e-4;

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOL * b.abs().max(1e-12)
}

/// The constant data behind `v`, if it is produced by a loaded constant.
pub fn const_tensor(g: &Graph, v: Value) -> Option<&Tensor> {
    match &g.node(g.producer(v)?).op {
        Op::Const(c) => c.value.as_deref(),
        _ => None,
    }
}

/// The value of a constant whose elements are all equal (a scalar, a one-element tensor or a
/// splat), as f64. Integer constants count too: a Pow's exponent may be an `i64` 2.
///
/// Looks through short scalar chains that `graph.fold-constants` cannot fold because they
/// read a non-constant operand's type: ONNX function bodies write `cast_like(2.0, x)` and
/// `sqrt(cast_like(2.0, x))` for their constants.
pub fn const_scalar(g: &Graph, v: Value) -> Option<f64> {
    const_scalar_depth(g, v, 4)
}

fn const_scalar_depth(g: &Graph, v: Value, depth: usize) -> Option<f64> {
    let n = g.producer(v)?;
    let node = g.node(n);
    let through = |k: usize| {
        let w = node.input(k)?;
        if depth == 0 {
            None
        } else {
            const_scalar_depth(g, w, depth - 1)
        }
    };
    match &node.op {
        Op::Const(c) => {
            let t = c.value.as_deref()?;
            if t.is_empty() || t.dtype() == DType::Bool {
                return None;
            }
            let vals = t.to_f64_vec();
            let first = vals[0];
            vals.iter().all(|&x| x == first).then_some(first)
        }
        Op::CastLike(_) | Op::Cast(_) if g.value(v).ty.as_ref()?.dtype.is_float() => through(0),
        Op::Unary(u) if u.kind == UnaryKind::Sqrt => through(0).map(f64::sqrt),
        _ => None,
    }
}

/// Whether `v` is a constant whose every element is close to `want`.
pub fn is_const(g: &Graph, v: Value, want: f64) -> bool {
    const_scalar(g, v).is_some_and(|c| close(c, want))
}

/// The node reading `v`, when `v` has exactly one reader, counting every operand slot and
/// graph outputs. Use [`only_user_multi`] where a node may read `v` twice.
pub fn only_user(g: &Graph, v: Value) -> Option<NodeId> {
    if g.use_count(v) != 1 {
        return None;
    }
    g.uses(v).first().map(|&(n, _)| n)
}

/// The node reading `v`, when all readers are one node (`mul(%a, %a)` reads `%a` twice) and
/// `v` is not a graph output.
pub fn only_user_multi(g: &Graph, v: Value) -> Option<NodeId> {
    if g.outputs().contains(&v) {
        return None;
    }
    let uses = g.uses(v);
    let first = uses.first()?.0;
    uses.iter().all(|&(n, _)| n == first).then_some(first)
}

/// Whether every reader of `v` is one of `nodes` (and `v` is no graph output).
pub fn used_only_by(g: &Graph, v: Value, nodes: &[NodeId]) -> bool {
    !g.outputs().contains(&v) && g.uses(v).iter().all(|(n, _)| nodes.contains(n))
}

/// The single result of node `n`.
pub fn out(g: &Graph, n: NodeId) -> Value {
    g.node(n).outputs()[0]
}

/// `n`'s operands, when it is the binary op `kind` with both present.
pub fn binary(g: &Graph, n: NodeId, kind: BinaryKind) -> Option<(Value, Value)> {
    let node = g.node(n);
    match &node.op {
        Op::Binary(b) if b.kind == kind && node.inputs().len() == 2 => {
            Some((node.input(0)?, node.input(1)?))
        }
        _ => None,
    }
}

/// For a commutative binary `n` that reads `v`, the other operand.
pub fn other(g: &Graph, n: NodeId, kind: BinaryKind, v: Value) -> Option<Value> {
    let (a, b) = binary(g, n, kind)?;
    if a == v {
        Some(b)
    } else if b == v {
        Some(a)
    } else {
        None
    }
}

/// The operand of `n` when it is the unary op `kind`.
pub fn unary(g: &Graph, n: NodeId, kind: UnaryKind) -> Option<Value> {
    match &g.node(n).op {
        Op::Unary(u) if u.kind == kind => g.node(n).input(0),
        _ => None,
    }
}

/// The producer of `v` when it is the binary op `kind`, with its operands.
pub fn def_binary(g: &Graph, v: Value, kind: BinaryKind) -> Option<(NodeId, Value, Value)> {
    let n = g.producer(v)?;
    let (a, b) = binary(g, n, kind)?;
    Some((n, a, b))
}

/// The producer of `v` when it is the unary op `kind`, with its operand.
pub fn def_unary(g: &Graph, v: Value, kind: UnaryKind) -> Option<(NodeId, Value)> {
    let n = g.producer(v)?;
    Some((n, unary(g, n, kind)?))
}

/// For `v = x·c` or `v = c·x` with `c` a constant close to `want`, the `x`.
pub fn mul_by(g: &Graph, n: NodeId, want: f64) -> Option<Value> {
    let (a, b) = binary(g, n, BinaryKind::Mul)?;
    if is_const(g, b, want) {
        Some(a)
    } else if is_const(g, a, want) {
        Some(b)
    } else {
        None
    }
}

/// For `x·(1/c)` (either order) or `x / c`, the `x`: the two forms exporters use for a
/// division by a constant.
pub fn div_by(g: &Graph, n: NodeId, c: f64) -> Option<Value> {
    if let Some((a, b)) = binary(g, n, BinaryKind::Div)
        && is_const(g, b, c)
    {
        return Some(a);
    }
    mul_by(g, n, 1.0 / c)
}

/// Whether the values' types are known, equal and floating-point: a rewrite that replaces
/// a broadcasting pattern by a shape-preserving op is only right when the pattern preserved
/// the shape, and every op these passes create is defined on floats only.
pub fn same_float_type(g: &Graph, a: Value, b: Value) -> bool {
    match (&g.value(a).ty, &g.value(b).ty) {
        (Some(x), Some(y)) => x == y && x.dtype.is_float(),
        _ => false,
    }
}

/// Adds a constant node holding `t`.
pub fn add_const(g: &mut Graph, name: String, t: Tensor) -> Value {
    let ty = t.ty();
    let (_, outs) = g.add_node(name.clone(), Op::Const(Const::new(t)), vec![], vec![name]);
    g.value_mut(outs[0]).ty = Some(ty);
    outs[0]
}

/// Replaces the pattern whose result is `root`'s output by `op(inputs)`, then removes the
/// pattern's ops (`dead`, which includes `root`). The new op takes the root's node and value
/// names, so graph outputs keep theirs. Constants the pattern read are left to `graph.dce`.
pub fn replace(g: &mut Graph, root: NodeId, op: Op, inputs: Vec<Option<Value>>, dead: &[NodeId]) {
    let old = out(g, root);
    let name = g.node(root).name.clone();
    let vname = g.value(old).name.clone();
    let ty: Option<TensorType> = g.value(old).ty.clone();
    let (_, outs) = g.add_node(name, op, inputs, vec![vname]);
    g.value_mut(outs[0]).ty = ty;
    g.replace_all_uses(old, outs[0]);
    for &n in dead {
        g.remove_node(n);
    }
}

/// Runs `rewrite` on every live node in a topological order and reports whether any fired.
/// Nodes removed by an earlier rewrite are skipped.
pub fn for_each_node(
    g: &mut Graph,
    mut rewrite: impl FnMut(&mut Graph, NodeId) -> bool,
) -> kiln_core::Result<bool> {
    let mut changed = false;
    for n in g.topo_order()? {
        if g.contains(n) && rewrite(g, n) {
            changed = true;
        }
    }
    Ok(changed)
}
