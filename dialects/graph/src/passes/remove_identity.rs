//! `graph.remove-identity`: removes Identity ops (the importer turns inference Dropout into
//! Identity, so Dropout goes too).
//!
//! Readers of the Identity's result read its operand instead. When the result is a graph
//! output, the operand takes over the output's name — unless the operand is a graph input or
//! itself returned, where the Identity is what gives the output its own name, and it stays.

use crate::graph::Graph;
use crate::ops::{Op, UnaryKind};
use kiln_core::{Pass, Result};

pub struct RemoveIdentity;

impl Pass<Graph> for RemoveIdentity {
    fn name(&self) -> &'static str {
        "graph.remove-identity"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for n in g.topo_order()? {
            let node = g.node(n);
            let is_identity = matches!(&node.op, Op::Unary(u) if u.kind == UnaryKind::Identity);
            if !is_identity || node.outputs().len() != 1 || node.inputs().len() != 1 {
                continue;
            }
            let (Some(x), out) = (node.input(0), node.outputs()[0]) else {
                continue;
            };
            if g.outputs().contains(&out) {
                if g.producer(x).is_none() || g.outputs().contains(&x) {
                    continue;
                }
                g.value_mut(x).name = g.value(out).name.clone();
            }
            g.remove_node(n);
            g.replace_all_uses(out, x);
            changed = true;
        }
        Ok(changed)
    }
}
