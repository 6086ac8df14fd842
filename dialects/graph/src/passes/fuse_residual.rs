//! `graph.fuse-residual`: `Add(compute(x), Y)` becomes the compute op with Y as its fused
//! residual operand, `act(W·x + b + Y)`, so the Add never materialises a tensor.
//!
//! The compute op (conv, conv_transpose, gemm, matmul) must have no activation and no
//! residual yet, its result must be read by the Add alone and not returned, and the Add's
//! result must have the compute result's shape (Y may broadcast to it, never widen it).
//!
//! When both Add operands qualify, the one whose producer runs *later* in the schedule
//! absorbs the Add: the fused op then sits where the Add was, and the other operand is
//! already computed by then, so no tensor lives longer than in the unfused graph. (Addition
//! is commutative in IEEE arithmetic, so the choice never changes the numbers.)

use super::fuse_util::{absorb, bare_compute, single_private_use};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::activation::RESIDUAL;
use crate::ops::util::broadcast_shapes;
use crate::ops::{BinaryKind, Op};
use kiln_core::{Pass, Result};
use std::collections::HashMap;

pub struct FuseResidual;

impl Pass<Graph> for FuseResidual {
    fn name(&self) -> &'static str {
        "graph.fuse-residual"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let order = g.topo_order()?;
        let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let mut changed = false;
        for &add in &order {
            if !g.contains(add) {
                continue;
            }
            let Some((p, y)) = pick(g, add, &pos) else {
                continue;
            };
            g.set_input(p, RESIDUAL, Some(y));
            absorb(g, p, add);
            changed = true;
        }
        Ok(changed)
    }
}

/// The compute op that absorbs `add` and the residual it gets.
fn pick(g: &Graph, add: NodeId, pos: &HashMap<NodeId, usize>) -> Option<(NodeId, Value)> {
    let node = g.node(add);
    if !matches!(&node.op, Op::Binary(b) if b.kind == BinaryKind::Add) || node.outputs().len() != 1
    {
        return None;
    }
    let (a, b) = (node.input(0)?, node.input(1)?);
    let out_ty = g.value(node.outputs()[0]).ty.as_ref()?;
    let candidate = |c: Value, y: Value| -> Option<(NodeId, Value)> {
        let p = g.producer(c)?;
        if c == y || !bare_compute(g, p) || !single_private_use(g, c) {
            return None;
        }
        let (ct, yt) = (g.value(c).ty.as_ref()?, g.value(y).ty.as_ref()?);
        let fits = ct == out_ty
            && yt.dtype == ct.dtype
            && broadcast_shapes(&yt.shape, &ct.shape).is_ok_and(|s| s == ct.shape);
        fits.then_some((p, y))
    };
    match (candidate(a, b), candidate(b, a)) {
        (Some(x), Some(y)) => Some(if pos.get(&x.0) >= pos.get(&y.0) { x } else { y }),
        (x, y) => x.or(y),
    }
}
