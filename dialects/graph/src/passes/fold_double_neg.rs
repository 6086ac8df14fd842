//! `graph.fold-double-neg`: `neg(neg(x))` is `x`, for every float (NaN and −0 included),
//! so readers of the outer neg read `x`. The inner neg stays if someone else reads it;
//! `graph.dce` removes it otherwise.

use crate::graph::Graph;
use crate::ops::{Op, UnaryKind};
use kiln_core::{Pass, Result};

pub struct FoldDoubleNeg;

fn is_neg(op: &Op) -> bool {
    matches!(op, Op::Unary(u) if u.kind == UnaryKind::Neg)
}

impl Pass<Graph> for FoldDoubleNeg {
    fn name(&self) -> &'static str {
        "graph.fold-double-neg"
    }

    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for n in g.topo_order()? {
            let node = g.node(n);
            let (Some(inner), out) = (node.input(0), node.outputs()[0]) else {
                continue;
            };
            let Some(p) = g.producer(inner) else { continue };
            if !is_neg(&node.op) || !is_neg(&g.node(p).op) || g.outputs().contains(&out) {
                continue;
            }
            let x = g.node(p).input(0).expect("neg has an operand");
            g.remove_node(n);
            g.replace_all_uses(out, x);
            changed = true;
        }
        Ok(changed)
    }
}
