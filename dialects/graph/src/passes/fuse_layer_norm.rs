//! `graph.fuse-layer-norm`: the decomposed LayerNorm that PyTorch's exporter emits for
//! opsets < 17 becomes one `layer_normalization`:
//!
//! ```text
//! mean = reduce_mean(x, axes)          d = sub(x, mean)
//! var  = reduce_mean(pow(d, 2), axes)  (or mul(d, d))
//! y    = div(d, sqrt(add(var, eps)))   [· gamma] [+ beta]
//! ```
//!
//! The axes must be the trailing dimensions (`[-1]`, `[rank-1]`, `[-2, -1]`, ...), the
//! same in both reductions, with `keepdims`. gamma and beta must be constants; without the
//! Mul the scale is a ones constant, and without the Add the bias operand is omitted.
//! Every intermediate must be read by the pattern alone — `d` by exactly the Pow (or the
//! multi-edge Mul) and the Div.

use super::pattern::{
    add_const, const_scalar, const_tensor, def_binary, def_unary, only_user, only_user_multi,
    other, out, replace, same_float_type, used_only_by,
};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::{BinaryKind, LayerNormalization, Op, ReduceKind, UnaryKind};
use kiln_core::{Pass, Result, Tensor, TensorType};

pub struct FuseLayerNorm;

impl Pass<Graph> for FuseLayerNorm {
    fn name(&self) -> &'static str {
        "graph.fuse-layer-norm"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        super::pattern::for_each_node(g, rewrite)
    }
}

/// The first normalised axis of `reduce_mean(v, axes) {keepdims}` when the axes are the
/// trailing dimensions of a rank-`rank` tensor.
fn trailing_mean(g: &Graph, n: NodeId, rank: usize) -> Option<(Value, usize)> {
    let node = g.node(n);
    let Op::Reduce(r) = &node.op else { return None };
    if r.kind != ReduceKind::Mean || !r.keepdims || node.inputs().len() != 2 {
        return None;
    }
    let axes = const_tensor(g, node.input(1)?)?.to_i64_vec().ok()?;
    let mut axes: Vec<usize> = axes
        .iter()
        .map(|&a| {
            let a = if a < 0 { a + rank as i64 } else { a };
            (0..rank as i64).contains(&a).then_some(a as usize)
        })
        .collect::<Option<_>>()?;
    axes.sort_unstable();
    axes.dedup();
    let first = *axes.first()?;
    (axes == (first..rank).collect::<Vec<_>>()).then_some((node.input(0)?, first))
}

/// Matches the pattern ending at `div = d / std` and returns `(x, axis, eps, nodes)`.
fn match_core(g: &Graph, div: NodeId) -> Option<(Value, usize, f64, Vec<NodeId>)> {
    let (d, std) = super::pattern::binary(g, div, BinaryKind::Div)?;
    let (sqrt, var_eps) = def_unary(g, std, UnaryKind::Sqrt)?;
    let (add_eps, a, b) = def_binary(g, var_eps, BinaryKind::Add)?;
    let (var, eps) = match (const_scalar(g, a), const_scalar(g, b)) {
        (None, Some(e)) => (a, e),
        (Some(e), None) => (b, e),
        _ => return None,
    };
    let (sub, x, mean) = def_binary(g, d, BinaryKind::Sub)?;
    let rank = g.value(x).ty.as_ref()?.shape.len();
    let mean_n = g.producer(mean)?;
    let (mx, axis) = trailing_mean(g, mean_n, rank)?;
    let var_n = g.producer(var)?;
    let (p, var_axis) = trailing_mean(g, var_n, rank)?;
    if mx != x || var_axis != axis {
        return None;
    }
    let sq = g.producer(p)?;
    let squares_d = match def_binary(g, p, BinaryKind::Pow) {
        Some((_, base, e)) => base == d && const_scalar(g, e) == Some(2.0),
        None => def_binary(g, p, BinaryKind::Mul).is_some_and(|(_, a, b)| a == d && b == d),
    };
    let single = [
        (mean, sub),
        (p, var_n),
        (var, add_eps),
        (var_eps, sqrt),
        (std, div),
    ];
    if !squares_d
        || !single.iter().all(|&(v, n)| only_user(g, v) == Some(n))
        || !used_only_by(g, d, &[sq, div])
        || !same_float_type(g, d, x)
        || !same_float_type(g, out(g, div), x)
    {
        return None;
    }
    Some((
        x,
        axis,
        eps,
        vec![mean_n, sub, sq, var_n, add_eps, sqrt, div],
    ))
}

/// For `n` reading `v` as `v ∘ c` with `c` a constant and the result shaped like `x`,
/// returns `(c, n)`.
fn const_step(g: &Graph, v: Value, kind: BinaryKind, x: Value) -> Option<(Value, NodeId)> {
    let n = only_user_multi(g, v)?;
    let c = other(g, n, kind, v)?;
    (c != v && const_tensor(g, c).is_some() && same_float_type(g, out(g, n), x)).then_some((c, n))
}

fn rewrite(g: &mut Graph, div: NodeId) -> bool {
    let Some((x, axis, eps, mut dead)) = match_core(g, div) else {
        return false;
    };
    let mut root = div;
    let gamma = const_step(g, out(g, div), BinaryKind::Mul, x);
    if let Some((_, n)) = gamma {
        root = n;
        dead.push(n);
    }
    let beta = const_step(g, out(g, root), BinaryKind::Add, x);
    if let Some((_, n)) = beta {
        root = n;
        dead.push(n);
    }
    let Some(xty) = g.value(x).ty.clone() else {
        return false;
    };
    let scale = match gamma {
        Some((c, _)) => c,
        None => {
            let ty = TensorType::new(xty.dtype, xty.shape[axis..].to_vec());
            let name = format!("{}_scale", g.value(out(g, root)).name);
            add_const(g, name, Tensor::from_f64_fn(&ty, |_| 1.0))
        }
    };
    let op = Op::LayerNormalization(LayerNormalization {
        axis: axis as i64 - xty.shape.len() as i64,
        epsilon: eps as f32,
    });
    replace(
        g,
        root,
        op,
        vec![Some(x), Some(scale), beta.map(|(c, _)| c)],
        &dead,
    );
    true
}
