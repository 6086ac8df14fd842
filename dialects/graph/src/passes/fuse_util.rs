//! Helpers shared by the fusion passes (`graph.fuse-*`, `graph.remove-identity`).

use crate::graph::{Graph, NodeId, Value};
use crate::ops::activation::{RESIDUAL, SLOPE};
use crate::ops::{Activation, Const, Op};
use kiln_core::Tensor;

/// The loaded data of a constant value.
pub fn const_tensor(g: &Graph, v: Value) -> Option<&Tensor> {
    match &g.node(g.producer(v)?).op {
        Op::Const(c) => c.value.as_deref(),
        _ => None,
    }
}

/// Whether `v` has exactly one reader, an op operand, and is not returned by the graph:
/// only then may its producer be merged into that reader.
pub fn single_private_use(g: &Graph, v: Value) -> bool {
    g.use_count(v) == 1 && !g.outputs().contains(&v)
}

/// The fused activation of a compute op (conv, conv_transpose, gemm, matmul).
pub fn compute_act(op: &Op) -> Option<Activation> {
    match op {
        Op::Conv(o) => Some(o.act),
        Op::ConvTranspose(o) => Some(o.act),
        Op::Gemm(o) => Some(o.act),
        Op::MatMul(o) => Some(o.act),
        _ => None,
    }
}

/// Mutable access to a compute op's fused activation.
pub fn compute_act_mut(op: &mut Op) -> Option<&mut Activation> {
    match op {
        Op::Conv(o) => Some(&mut o.act),
        Op::ConvTranspose(o) => Some(&mut o.act),
        Op::Gemm(o) => Some(&mut o.act),
        Op::MatMul(o) => Some(&mut o.act),
        _ => None,
    }
}

/// A compute op with nothing fused after its bias yet (no activation, no residual).
pub fn bare_compute(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    compute_act(&node.op).is_some_and(|a| a.is_none())
        && node.input(RESIDUAL).is_none()
        && node.input(SLOPE).is_none()
}

/// Merges the single-result `consumer` into `producer`, whose result `inner` the consumer
/// read: the producer's result takes the consumer's name and uses (so graph outputs keep
/// their names) and the consumer is removed.
pub fn absorb(g: &mut Graph, producer: NodeId, consumer: NodeId) {
    let inner = g.node(producer).outputs()[0];
    let outer = g.node(consumer).outputs()[0];
    g.value_mut(inner).name = g.value(outer).name.clone();
    g.value_mut(inner).ty = g.value(outer).ty.clone();
    g.remove_node(consumer);
    g.replace_all_uses(outer, inner);
}

/// Removes the constant producing `v` if nothing reads it any more (weights replaced by
/// folded copies, parameters of a removed op).
pub fn drop_dead_const(g: &mut Graph, v: Value) {
    if let Some(p) = g.producer(v)
        && matches!(g.node(p).op, Op::Const(_))
        && g.use_count(v) == 0
    {
        g.remove_node(p);
    }
}

/// Adds a constant holding `t`, named after `name`.
pub fn add_const(g: &mut Graph, name: String, t: Tensor) -> Value {
    let ty = t.ty();
    let (_, outs) = g.add_node("", Op::Const(Const::new(t)), vec![], vec![name]);
    g.value_mut(outs[0]).ty = Some(ty);
    outs[0]
}
