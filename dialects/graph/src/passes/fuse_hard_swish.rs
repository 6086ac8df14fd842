//! `graph.fuse-hard-swish`: `x · relu6(x + 3) / 6` becomes one `hard_swish`.
//!
//! Forms matched (every product in either operand order, `/ 6` also as `· 0.16666667`):
//! - `div(mul(x, clip(add(x, 3), 0, 6)), 6)` — PyTorch's `x * F.relu6(x + 3) / 6`;
//! - `mul(x, div(clip(add(x, 3), 0, 6), 6))` — `x * hardsigmoid(x)` spelled out;
//! - `mul(x, hard_sigmoid(x) {alpha=1/6, beta=0.5})` — what `graph.fuse-hard-sigmoid` or
//!   an exporter's native HardSigmoid leaves.
//!
//! Running it before `graph.fuse-hard-sigmoid` or after gives the same result: the second
//! form turns into the third.

use super::pattern::{
    div_by, is_const, only_user, only_user_multi, other, out, replace, same_float_type,
};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::{BinaryKind, Op, Unary, UnaryKind};
use kiln_core::{Pass, Result};

pub struct FuseHardSwish;

impl Pass<Graph> for FuseHardSwish {
    fn name(&self) -> &'static str {
        "graph.fuse-hard-swish"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        super::pattern::for_each_node(g, rewrite)
    }
}

/// For a `clip` node `n` computing `clip(x + 3, 0, 6)` whose `x + 3` is read by the clip
/// alone, returns `(x, add)`.
pub(super) fn relu6_of_x_plus_3(g: &Graph, n: NodeId) -> Option<(Value, NodeId)> {
    let node = g.node(n);
    if !matches!(node.op, Op::Clip(_)) || node.inputs().len() != 3 {
        return None;
    }
    let (a, lo, hi) = (node.input(0)?, node.input(1)?, node.input(2)?);
    if super::pattern::const_scalar(g, lo) != Some(0.0) || !is_const(g, hi, 6.0) {
        return None;
    }
    let add = g.producer(a)?;
    let (p, q) = super::pattern::binary(g, add, BinaryKind::Add)?;
    let x = if is_const(g, q, 3.0) {
        p
    } else if is_const(g, p, 3.0) {
        q
    } else {
        return None;
    };
    (only_user(g, a) == Some(n) && same_float_type(g, a, x)).then_some((x, add))
}

/// The node computing `v / 6` (or `v · 1/6`) when it is `v`'s only reader.
pub(super) fn div6(g: &Graph, v: Value) -> Option<NodeId> {
    let n = only_user(g, v)?;
    (div_by(g, n, 6.0)? == v).then_some(n)
}

/// `mul(x, v)` (either order) when it is `v`'s only reader.
fn times_x(g: &Graph, v: Value, x: Value) -> Option<NodeId> {
    let n = only_user_multi(g, v)?;
    (other(g, n, BinaryKind::Mul, v)? == x && x != v).then_some(n)
}

fn rewrite(g: &mut Graph, n: NodeId) -> bool {
    let matched = match &g.node(n).op {
        Op::Clip(_) => clip_form(g, n),
        Op::HardSigmoid(h) => {
            let sixth = 1.0 / 6.0;
            let exact = super::pattern::close(h.alpha as f64, sixth)
                && super::pattern::close(h.beta as f64, 0.5);
            let x = g.node(n).input(0);
            match (exact, x) {
                (true, Some(x)) => times_x(g, out(g, n), x).map(|m| (x, m, vec![n, m])),
                _ => None,
            }
        }
        _ => None,
    };
    let Some((x, root, dead)) = matched else {
        return false;
    };
    if !same_float_type(g, out(g, root), x) {
        return false;
    }
    let op = Op::Unary(Unary {
        kind: UnaryKind::HardSwish,
    });
    replace(g, root, op, vec![Some(x)], &dead);
    true
}

/// The Clip-rooted forms: returns `(x, root, nodes)`.
fn clip_form(g: &Graph, clip: NodeId) -> Option<(Value, NodeId, Vec<NodeId>)> {
    let (x, add) = relu6_of_x_plus_3(g, clip)?;
    let c = out(g, clip);
    if let Some(m) = times_x(g, c, x) {
        // (x · relu6) / 6
        let d = div6(g, out(g, m))?;
        return Some((x, d, vec![add, clip, m, d]));
    }
    // x · (relu6 / 6)
    let d = div6(g, c)?;
    let m = times_x(g, out(g, d), x)?;
    Some((x, m, vec![add, clip, d, m]))
}
