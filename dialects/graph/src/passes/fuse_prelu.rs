//! `graph.fuse-prelu`: a PReLU spelled with Relu becomes one `prelu(x, slope)`.
//!
//! PyTorch exports PReLU natively, but Keras through tf2onnx emits
//! `relu(x) + (−alpha) · relu(−x)`. Forms matched (products and sums in either order):
//! - `add(relu(x), mul(c, relu(neg(x))))` → slope `−c` (tf2onnx);
//! - `sub(relu(x), mul(c, relu(neg(x))))` → slope `c`;
//! - `add(relu(x), mul(c, min(x, 0)))` → slope `c`, and its `sub` form → slope `−c`.
//!
//! - `where(less(x, 0), mul(s, x), x)` → slope `s` (ONNX's own PRelu function body;
//!   also `less_or_equal`, and `greater`/`greater_or_equal` with the branches swapped —
//!   at 0 both branches are 0). Here `s` may be any tensor, a graph input included.
//!
//! `c` must be a float constant; every slope must broadcast into `x`'s shape (PReLU's
//! slope rule).

use super::pattern::{
    add_const, const_scalar, const_tensor, def_unary, only_user, other, out, replace,
    same_float_type, unary,
};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::{BinaryKind, Op, PRelu, UnaryKind};
use kiln_core::{Pass, Result, Tensor};

pub struct FusePRelu;

impl Pass<Graph> for FusePRelu {
    fn name(&self) -> &'static str {
        "graph.fuse-prelu"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        super::pattern::for_each_node(g, rewrite)
    }
}

/// The negative part, rooted at `n`: `relu(neg(x))` (sign −1) or `min(x, 0)` (sign +1).
/// Returns `(x, sign, top node, nodes)`.
fn negative_part(g: &Graph, n: NodeId) -> Option<(Value, f64, NodeId, Vec<NodeId>)> {
    if let Some(x) = unary(g, n, UnaryKind::Neg) {
        let r = only_user(g, out(g, n))?;
        unary(g, r, UnaryKind::Relu)?;
        return Some((x, -1.0, r, vec![n, r]));
    }
    let (a, b) = super::pattern::binary(g, n, BinaryKind::Min)?;
    let x = if const_scalar(g, b) == Some(0.0) {
        a
    } else if const_scalar(g, a) == Some(0.0) {
        b
    } else {
        return None;
    };
    same_float_type(g, out(g, n), x).then_some((x, 1.0, n, vec![n]))
}

fn rewrite(g: &mut Graph, n: NodeId) -> bool {
    if let Some((x, slope, dead)) = where_form(g, n) {
        replace(g, n, Op::PRelu(PRelu), vec![Some(x), Some(slope)], &dead);
        return true;
    }
    let Some((x, mut sign, top, mut dead)) = negative_part(g, n) else {
        return false;
    };
    let neg = out(g, top);
    let Some(m) = only_user(g, neg) else {
        return false;
    };
    let Some(c) = other(g, m, BinaryKind::Mul, neg) else {
        return false;
    };
    let Some(ct) = const_tensor(g, c).filter(|t| t.dtype().is_float()).cloned() else {
        return false;
    };
    let mv = out(g, m);
    let Some(y) = only_user(g, mv) else {
        return false;
    };
    let r1 = if let Some(r1) = other(g, y, BinaryKind::Add, mv) {
        r1
    } else if let Some((r1, s)) = super::pattern::binary(g, y, BinaryKind::Sub) {
        if s != mv {
            return false;
        }
        sign = -sign;
        r1
    } else {
        return false;
    };
    let Some((r1n, rx)) = def_unary(g, r1, UnaryKind::Relu) else {
        return false;
    };
    if rx != x || only_user(g, r1) != Some(y) || !same_float_type(g, out(g, y), x) {
        return false;
    }
    let slope = if sign > 0.0 {
        c
    } else {
        let vals = ct.to_f64_vec();
        let neg = Tensor::from_f64_fn(&ct.ty(), |i| -vals[i]);
        let name = format!("{}_slope", g.value(out(g, y)).name);
        add_const(g, name, neg)
    };
    dead.extend([m, r1n, y]);
    replace(g, y, Op::PRelu(PRelu), vec![Some(x), Some(slope)], &dead);
    true
}

/// `where(x < 0, s·x, x)` and its variants at the `where` node `w`: `(x, s, nodes)`.
fn where_form(g: &Graph, w: NodeId) -> Option<(Value, Value, Vec<NodeId>)> {
    let node = g.node(w);
    if !matches!(node.op, Op::Where(_)) || node.inputs().len() != 3 {
        return None;
    }
    let (cond, a, b) = (node.input(0)?, node.input(1)?, node.input(2)?);
    let cn = g.producer(cond)?;
    let (x, zero, negative_first) = match &g.node(cn).op {
        Op::Binary(k) => match k.kind {
            BinaryKind::Less | BinaryKind::LessOrEqual => {
                let (x, z) = super::pattern::binary(g, cn, k.kind)?;
                (x, z, true)
            }
            BinaryKind::Greater | BinaryKind::GreaterOrEqual => {
                let (x, z) = super::pattern::binary(g, cn, k.kind)?;
                (x, z, false)
            }
            _ => return None,
        },
        _ => return None,
    };
    let (scaled, plain) = if negative_first { (a, b) } else { (b, a) };
    let mn = g.producer(scaled)?;
    let s = other(g, mn, BinaryKind::Mul, x)?;
    let ok = const_scalar(g, zero) == Some(0.0)
        && plain == x
        && s != x
        && only_user(g, cond) == Some(w)
        && only_user(g, scaled) == Some(w)
        && same_float_type(g, scaled, x)
        && same_float_type(g, out(g, w), x);
    ok.then(|| (x, s, vec![cn, mn, w]))
}
