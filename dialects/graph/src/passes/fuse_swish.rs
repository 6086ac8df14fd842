//! `graph.fuse-swish`: `x · sigmoid(x)` (SiLU, either operand order) becomes one `swish`.

use super::pattern::{only_user, other, out, replace, same_float_type, unary};
use crate::graph::{Graph, NodeId};
use crate::ops::{BinaryKind, Op, Unary, UnaryKind};
use kiln_core::{Pass, Result};

pub struct FuseSwish;

impl Pass<Graph> for FuseSwish {
    fn name(&self) -> &'static str {
        "graph.fuse-swish"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        super::pattern::for_each_node(g, rewrite)
    }
}

fn rewrite(g: &mut Graph, sig: NodeId) -> bool {
    let Some(x) = unary(g, sig, UnaryKind::Sigmoid) else {
        return false;
    };
    let s = out(g, sig);
    let Some(m) = only_user(g, s) else {
        return false;
    };
    if other(g, m, BinaryKind::Mul, s) != Some(x) || !same_float_type(g, out(g, m), x) {
        return false;
    }
    let op = Op::Unary(Unary {
        kind: UnaryKind::Swish,
    });
    replace(g, m, op, vec![Some(x)], &[sig, m]);
    true
}
