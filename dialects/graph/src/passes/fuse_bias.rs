//! `graph.fuse-bias`: `Add(MatMul(a, b), c)` with a constant vector `c` along the result's
//! last dim becomes the matmul's bias operand — the Gemm-style bias that exporters split
//! off when they emit MatMul + Add for a Linear layer.
//!
//! The matmul must have no bias, activation or residual yet, its result must be read by the
//! Add alone and not returned, and `c` must hold exactly one value per result column (shape
//! `[N]` or `[1, …, 1, N]`, never widening the result).

use super::fuse_util::{absorb, bare_compute, const_tensor, single_private_use};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::{BinaryKind, Op};
use kiln_core::{Pass, Result};

pub struct FuseBias;

impl Pass<Graph> for FuseBias {
    fn name(&self) -> &'static str {
        "graph.fuse-bias"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for add in g.topo_order()? {
            if !g.contains(add) {
                continue;
            }
            let Some((mm, bias)) = find(g, add) else {
                continue;
            };
            g.set_input(mm, 2, Some(bias));
            absorb(g, mm, add);
            changed = true;
        }
        Ok(changed)
    }
}

fn find(g: &Graph, add: NodeId) -> Option<(NodeId, Value)> {
    let node = g.node(add);
    if !matches!(&node.op, Op::Binary(b) if b.kind == BinaryKind::Add) || node.outputs().len() != 1
    {
        return None;
    }
    let (a, b) = (node.input(0)?, node.input(1)?);
    let out_ty = g.value(node.outputs()[0]).ty.as_ref()?;
    let try_side = |m: Value, c: Value| -> Option<(NodeId, Value)> {
        let p = g.producer(m)?;
        let gn = g.node(p);
        if !matches!(gn.op, Op::MatMul(_))
            || gn.input(2).is_some()
            || !bare_compute(g, p)
            || !single_private_use(g, m)
        {
            return None;
        }
        let mt = g.value(m).ty.as_ref()?;
        let t = const_tensor(g, c)?;
        let n = *mt.shape.last()?;
        let shape = t.shape();
        let vector = shape.last() == Some(&n)
            && shape[..shape.len() - 1].iter().all(|&d| d == 1)
            && shape.len() <= mt.rank();
        (mt == out_ty && t.dtype() == mt.dtype && vector).then_some((p, c))
    };
    try_side(a, b).or_else(|| try_side(b, a))
}
