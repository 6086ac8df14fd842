//! `graph.fuse-eltwise-sum`: `x1·c1 + x2·c2` with scalar constants `c1`, `c2` becomes
//! `eltwise_sum(x1, x2) {coeffs=[c1, c2]}`. A term without a Mul has coefficient 1, the
//! right side of a Sub is negated, and an Add/Sub whose side is already an eltwise_sum
//! extends it, so `x1·c1 + x2·c2 - x3·c3` ends as one op.
//!
//! A term is taken apart only when its Mul (or inner eltwise_sum) is read by this Add alone
//! and the Mul keeps its operand's type (a `[1,1,1]` constant would broadcast `[4]` to
//! `[1,1,4]`); otherwise the term is kept whole, with coefficient 1. At least one side
//! must contribute a coefficient or an eltwise_sum: a plain `x + y` stays an Add.

use super::fuse_util::single_private_use;
use super::pattern::{binary, const_scalar, for_each_node, replace, same_float_type};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::{BinaryKind, EltwiseSum, Op};
use kiln_core::{Pass, Result};

pub struct FuseEltwiseSum;

/// One side of the Add/Sub: its weighted terms, and the node(s) the rewrite removes.
struct Side {
    terms: Vec<(Value, f64)>,
    dead: Option<NodeId>,
}

fn side(g: &Graph, v: Value) -> Side {
    let whole = Side {
        terms: vec![(v, 1.0)],
        dead: None,
    };
    let Some(p) = g.producer(v) else {
        return whole;
    };
    if !single_private_use(g, v) {
        return whole;
    }
    if let Op::EltwiseSum(e) = &g.node(p).op {
        let ins = g.node(p).inputs();
        if ins.len() != e.coeffs.len() || ins.iter().any(|i| i.is_none()) {
            return whole;
        }
        let terms = ins
            .iter()
            .flatten()
            .zip(&e.coeffs)
            .map(|(&x, &c)| (x, c as f64))
            .collect();
        return Side {
            terms,
            dead: Some(p),
        };
    }
    if let Some((a, b)) = binary(g, p, BinaryKind::Mul) {
        let term = |x: Value, c: Value| {
            let k = const_scalar(g, c)?;
            same_float_type(g, x, v).then_some((x, k))
        };
        if let Some(t) = term(a, b).or_else(|| term(b, a)) {
            return Side {
                terms: vec![t],
                dead: Some(p),
            };
        }
    }
    whole
}

fn rewrite(g: &mut Graph, n: NodeId) -> bool {
    let (sign, (a, b)) = match (binary(g, n, BinaryKind::Add), binary(g, n, BinaryKind::Sub)) {
        (Some(ab), _) => (1.0, ab),
        (_, Some(ab)) => (-1.0, ab),
        _ => return false,
    };
    let out = g.node(n).outputs()[0];
    // Each term keeps its type, so the weighted sum broadcasts exactly as the Add did.
    if !g.value(out).ty.as_ref().is_some_and(|t| t.dtype.is_float()) {
        return false;
    }
    let (l, r) = (side(g, a), side(g, b));
    if l.dead.is_none() && r.dead.is_none() {
        return false;
    }
    // Mul(x, c) read twice by this Add (`m + m`) is one node: take it apart once only.
    if l.dead.is_some() && l.dead == r.dead {
        return false;
    }
    let terms: Vec<(Value, f64)> = l
        .terms
        .into_iter()
        .chain(r.terms.into_iter().map(|(x, c)| (x, sign * c)))
        .collect();
    let op = Op::EltwiseSum(EltwiseSum {
        coeffs: terms.iter().map(|&(_, c)| c as f32).collect(),
    });
    let inputs = terms.iter().map(|&(x, _)| Some(x)).collect();
    let mut dead = vec![n];
    dead.extend(l.dead);
    dead.extend(r.dead);
    replace(g, n, op, inputs, &dead);
    true
}

impl Pass<Graph> for FuseEltwiseSum {
    fn name(&self) -> &'static str {
        "graph.fuse-eltwise-sum"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        for_each_node(g, rewrite)
    }
}
