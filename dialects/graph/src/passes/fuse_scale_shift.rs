//! `graph.fuse-scale-shift`: a Mul and/or Add by per-output-channel constants after a compute
//! op folds into its weights and bias: `W' = W·s` per output channel, `b' = b·s + t`.
//!
//! This is the Mul/Add form of BatchNormalization that old exporters and Caffe converters
//! emit (Inception v2 in the ONNX model zoo has a Mul and an Add after each of its convs,
//! behind a BatchNormalization). The compute op is a conv, conv_transpose, gemm or matmul
//! (with a constant 2-D B) with nothing fused after its bias, whose result the Mul/Add alone
//! reads. The same scale-shift after a BatchNormalization with constant parameters folds
//! into the BN instead (`γ' = γ·s`, `β' = β·s + t`), so `graph.fuse-batchnorm` can then take
//! the whole affine map into the conv in one step, whichever pass runs first.
//!
//! The constant must hold one value per output channel or be a scalar: `[C,1,1]` or
//! `[1,C,1,1]` after a conv, `[N]` or `[1,N]` after a gemm/matmul — never a full-shape
//! tensor, and never widening the result. `x − c` and `x / c` count as `x + (−c)` and
//! `x · (1/c)`. One Mul or Add is folded at a time; the pass sweeps until nothing changes.
//! Folding happens in f64 and rounds once to the weights' type.

use super::fuse_util::{
    absorb, add_const, bare_compute, binary_by_const, const_tensor, drop_dead_const, fold_affine,
    install_weights, single_private_use,
};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::{BinaryKind, Op};
use kiln_core::{Pass, Result, Tensor};

pub struct FuseScaleShift;

impl Pass<Graph> for FuseScaleShift {
    fn name(&self) -> &'static str {
        "graph.fuse-scale-shift"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        super::fuse_util::sweep(g, try_fold)
    }
}

/// `n` as `x·s + t` per channel of `x`'s producer: (x, the constant operand, s, t).
fn affine_of(g: &Graph, n: NodeId, axis_of: impl Fn(usize) -> usize) -> Option<Affine> {
    let (kind, x, c) = binary_by_const(g, n)?;
    let (xt, ot) = (
        g.value(x).ty.as_ref()?,
        g.value(g.node(n).outputs()[0]).ty.as_ref()?,
    );
    let t = const_tensor(g, c)?;
    if xt != ot || !xt.dtype.is_float() || t.dtype() != xt.dtype || xt.rank() == 0 {
        return None;
    }
    let axis = axis_of(xt.rank());
    if axis >= xt.rank() {
        return None;
    }
    let vals = per_channel(t, &xt.shape, axis)?;
    // A zero divisor or an infinite factor would turn `W·s` into NaNs the unfused graph
    // may not have.
    if vals
        .iter()
        .any(|v| !v.is_finite() || (kind == BinaryKind::Div && *v == 0.0))
    {
        return None;
    }
    let ch = vals.len();
    let (scale, shift) = match kind {
        BinaryKind::Mul => (vals, vec![0.0; ch]),
        BinaryKind::Div => (vals.iter().map(|v| 1.0 / v).collect(), vec![0.0; ch]),
        BinaryKind::Add => (vec![1.0; ch], vals),
        _ => (vec![1.0; ch], vals.iter().map(|v| -v).collect()),
    };
    Some(Affine { x, c, scale, shift })
}

struct Affine {
    x: Value,
    c: Value,
    scale: Vec<f64>,
    shift: Vec<f64>,
}

/// The constant `t` as one value per channel along `axis` of `shape` (a scalar repeats),
/// or `None` when it varies along another dim or would widen the result.
fn per_channel(t: &Tensor, shape: &[usize], axis: usize) -> Option<Vec<f64>> {
    let (ts, r) = (t.shape(), shape.len());
    if ts.len() > r || t.is_empty() {
        return None;
    }
    let pad = r - ts.len();
    let mut varies = false;
    for (i, &d) in ts.iter().enumerate() {
        if d == 1 {
            continue;
        }
        if i + pad != axis || d != shape[axis] {
            return None;
        }
        varies = true;
    }
    let v = t.to_f64_vec();
    if varies {
        Some(v)
    } else {
        Some(vec![v[0]; shape[axis]])
    }
}

/// The output-channel axis of a compute op's (or a BN's) result of rank `r`.
fn channel_axis(op: &Op, r: usize) -> usize {
    match op {
        Op::Gemm(_) | Op::MatMul(_) => r - 1,
        _ => 1,
    }
}

fn try_fold(g: &mut Graph, n: NodeId) -> bool {
    let node = g.node(n);
    if !matches!(&node.op, Op::Binary(_)) {
        return false;
    }
    // Find the producer first: the channel axis depends on it.
    let Some(p) = node
        .inputs()
        .iter()
        .flatten()
        .filter_map(|&v| g.producer(v))
        .find(|&p| foldable_producer(g, p))
    else {
        return false;
    };
    let op = g.node(p).op.clone();
    let Some(a) = affine_of(g, n, |r| channel_axis(&op, r)) else {
        return false;
    };
    if g.producer(a.x) != Some(p) || !single_private_use(g, a.x) {
        return false;
    }
    let folded = if matches!(op, Op::BatchNormalization(_)) {
        fold_into_bn(g, p, &a)
    } else {
        fold_affine(g, p, &a.scale, &a.shift).map(|(w, b)| install_weights(g, p, w, b))
    };
    if folded.is_none() {
        return false;
    }
    absorb(g, p, n);
    drop_dead_const(g, a.c);
    true
}

fn foldable_producer(g: &Graph, p: NodeId) -> bool {
    match g.node(p).op {
        // layout: channel_axis reads a channels-first BN's axis 1.
        Op::BatchNormalization(bn) => g.node(p).outputs().len() == 1 && !bn.layout.is_nhwc(),
        _ => bare_compute(g, p),
    }
}

/// `BN(x)·s + t` is a BN with `γ·s` and `β·s + t`.
fn fold_into_bn(g: &mut Graph, bn: NodeId, a: &Affine) -> Option<()> {
    let node = g.node(bn);
    let (gv, bv) = (node.input(1)?, node.input(2)?);
    let (gamma, beta) = (const_tensor(g, gv)?, const_tensor(g, bv)?);
    let ch = a.scale.len();
    if gamma.len() != ch || beta.len() != ch || gamma.dtype() != beta.dtype() {
        return None;
    }
    let (gs, bs) = (gamma.to_f64_vec(), beta.to_f64_vec());
    let new_g = Tensor::from_f64_fn(&gamma.ty(), |i| gs[i] * a.scale[i]);
    let new_b = Tensor::from_f64_fn(&beta.ty(), |i| bs[i] * a.scale[i] + a.shift[i]);
    let base = g.value(g.node(bn).outputs()[0]).name.clone();
    let ng = add_const(g, format!("{base}_scale"), new_g);
    let nb = add_const(g, format!("{base}_bias"), new_b);
    g.set_input(bn, 1, Some(ng));
    g.set_input(bn, 2, Some(nb));
    drop_dead_const(g, gv);
    drop_dead_const(g, bv);
    Some(())
}
