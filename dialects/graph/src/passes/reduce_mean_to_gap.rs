//! `graph.reduce-mean-to-gap`: a spatial mean over a rank-4 NCHW tensor becomes
//! `global_average_pool`, which later levels lower to a pooling kernel instead of a
//! generic reduction. Matched: `reduce_mean(x, axes=[2,3]) {keepdims=1}`, and the two-step
//! `reduce_mean(reduce_mean(x, [3]), [2])` (`x.mean(3, keepdim=True).mean(2, keepdim=True)`,
//! in either order, negative axes allowed) whose inner result is read by the outer alone.
//! `x.mean([2, 3])` without keepdims (ShuffleNet's head) becomes the pool followed by
//! `flatten {axis=1}`, which is exactly the `[N, C]` result.

use super::pattern::{const_tensor, only_user, out, replace};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::{Flatten, GlobalPool, GlobalPoolKind, Op, ReduceKind};
use kiln_core::{Pass, Result, TensorType};

pub struct ReduceMeanToGap;

impl Pass<Graph> for ReduceMeanToGap {
    fn name(&self) -> &'static str {
        "graph.reduce-mean-to-gap"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        super::pattern::for_each_node(g, rewrite)
    }
}

/// For `reduce_mean(v, axes)` on a rank-4 float tensor, `(v, sorted axes, keepdims)`.
fn spatial_mean(g: &Graph, n: NodeId) -> Option<(Value, Vec<usize>, bool)> {
    let node = g.node(n);
    let Op::Reduce(r) = &node.op else { return None };
    if r.kind != ReduceKind::Mean || node.inputs().len() != 2 {
        return None;
    }
    let v = node.input(0)?;
    let ty = g.value(v).ty.as_ref()?;
    if ty.shape.len() != 4 || !ty.dtype.is_float() {
        return None;
    }
    let mut axes = const_tensor(g, node.input(1)?)?
        .to_i64_vec()
        .ok()?
        .into_iter()
        .map(|a| usize::try_from(if a < 0 { a + 4 } else { a }).ok())
        .collect::<Option<Vec<_>>>()?;
    axes.sort_unstable();
    axes.dedup();
    Some((v, axes, r.keepdims))
}

fn rewrite(g: &mut Graph, n: NodeId) -> bool {
    let Some((v, axes, keepdims)) = spatial_mean(g, n) else {
        return false;
    };
    if !keepdims {
        return axes == [2, 3] && flattened(g, n, v);
    }
    let (x, root, dead) = if axes == [2, 3] {
        (v, n, vec![n])
    } else if axes == [2] || axes == [3] {
        let Some(m) = only_user(g, out(g, n)) else {
            return false;
        };
        match spatial_mean(g, m) {
            Some((w, axes2, true)) if w == out(g, n) && axes2.len() == 1 && axes2 != axes => {
                (v, m, vec![n, m])
            }
            _ => return false,
        }
    } else {
        return false;
    };
    let root_ty = g.value(out(g, root)).ty.clone();
    let x_ty = g.value(x).ty.clone();
    let shape_ok = match (root_ty, x_ty) {
        (Some(r), Some(t)) => r.shape == [t.shape[0], t.shape[1], 1, 1] && r.dtype == t.dtype,
        _ => false,
    };
    if !shape_ok {
        return false;
    }
    let op = Op::GlobalPool(GlobalPool {
        layout: Default::default(),
        kind: GlobalPoolKind::Average,
    });
    replace(g, root, op, vec![Some(x)], &dead);
    true
}

/// `reduce_mean(x, [2, 3]) {keepdims=0}` at `n` → `flatten(global_average_pool(x))`.
fn flattened(g: &mut Graph, n: NodeId, x: Value) -> bool {
    let (Some(xt), Some(rt)) = (g.value(x).ty.clone(), g.value(out(g, n)).ty.clone()) else {
        return false;
    };
    if rt.shape != [xt.shape[0], xt.shape[1]] || rt.dtype != xt.dtype {
        return false;
    }
    let pool = Op::GlobalPool(GlobalPool {
        layout: Default::default(),
        kind: GlobalPoolKind::Average,
    });
    let name = g.node(n).name.clone();
    let pooled = format!("{}_pool", g.value(out(g, n)).name);
    let (_, outs) = g.add_node(name, pool, vec![Some(x)], vec![pooled]);
    let ty = TensorType::new(xt.dtype, vec![xt.shape[0], xt.shape[1], 1, 1]);
    g.value_mut(outs[0]).ty = Some(ty);
    replace(
        g,
        n,
        Op::Flatten(Flatten { axis: 1 }),
        vec![Some(outs[0])],
        &[n],
    );
    true
}
