//! `graph.fold-scalar-scale`: a Mul or Div by a scalar constant folds into the weights of
//! the linear op it scales, even when layout ops or an activation×activation MatMul stand
//! in between.
//!
//! Attention is the case this is for: `softmax(Q·Kᵀ · 1/√d)` with `Q = reshape/transpose
//! (x·Wq + bq)`. A scalar commutes with reshapes and transposes and with either operand of
//! a product, so `(Q·Kᵀ)·c = ((x·(c·Wq) + c·bq) reshaped)·Kᵀ`. Folded, the fp32 model runs
//! one element-wise pass less, and the int8 model loses a quantisation point: the scores are
//! rounded to the u8 grid once, not before and after the scaling — on the example
//! transformer that Mul's own rounding cost more SNR than any other op's but one.
//! `graph.fuse-scale-shift` folds per-channel scales that directly follow a compute op;
//! this pass takes scalars only, but from further away.
//!
//! Walking up from the Mul's operand, each step must be the single private use of the value
//! it came from (nothing else may see the scaled values): reshape, flatten, squeeze,
//! unsqueeze and transpose pass through, as does a MatMul of two activations with nothing
//! fused into it (either operand, first A then B, is tried). The walk ends at a compute op
//! with constant weights and nothing fused after its bias, whose weights and bias take the
//! factor (in f64, rounded once). `x / c` counts as `x · (1/c)`; zero and non-finite factors
//! are left alone.

use super::fuse_util::{
    absorb, bare_compute, binary_by_const, const_tensor, drop_dead_const, fold_affine,
    install_weights, single_private_use,
};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::activation::RESIDUAL;
use crate::ops::{BinaryKind, Op};
use kiln_core::{Pass, Result};

pub struct FoldScalarScale;

impl Pass<Graph> for FoldScalarScale {
    fn name(&self) -> &'static str {
        "graph.fold-scalar-scale"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        super::fuse_util::sweep(g, try_fold)
    }
}

fn try_fold(g: &mut Graph, n: NodeId) -> bool {
    let Some((x, c, factor)) = scalar_scale(g, n) else {
        return false;
    };
    let Some(target) = linear_source(g, x, 0) else {
        return false;
    };
    let ch = output_channels(g, target);
    let Some((w, b)) = fold_affine(g, target, &vec![factor; ch], &vec![0.0; ch]) else {
        return false;
    };
    install_weights(g, target, w, b);
    // The Mul becomes the identity: `x`'s producer absorbs it (x is its only result, which
    // `linear_source` checked), taking its name so a graph output keeps its name.
    let p = g.producer(x).expect("linear_source walked up from x");
    absorb(g, p, n);
    drop_dead_const(g, c);
    true
}

/// `n` as `x · factor` with a scalar constant factor: (x, the constant, factor).
fn scalar_scale(g: &Graph, n: NodeId) -> Option<(Value, Value, f64)> {
    let (kind, x, c) = binary_by_const(g, n)?;
    if !matches!(kind, BinaryKind::Mul | BinaryKind::Div) {
        return None;
    }
    let t = const_tensor(g, c)?;
    let (xt, ot) = (
        g.value(x).ty.as_ref()?,
        g.value(g.node(n).outputs()[0]).ty.as_ref()?,
    );
    if xt != ot || !xt.dtype.is_float() || t.dtype() != xt.dtype || t.len() != 1 {
        return None;
    }
    if t.shape().len() > xt.rank() {
        return None;
    }
    let v = t.to_f64_vec()[0];
    let factor = if kind == BinaryKind::Div { 1.0 / v } else { v };
    (factor.is_finite() && factor != 0.0).then_some((x, c, factor))
}

/// The compute op whose weights may take a scalar factor meant for `v`, walking up through
/// layout ops and activation×activation MatMuls; `None` when the walk meets anything else.
fn linear_source(g: &Graph, v: Value, depth: usize) -> Option<NodeId> {
    // Real graphs put a handful of layout ops between a projection and its product; the
    // bound only keeps a pathological chain from recursing deeply.
    if depth > 16 || !single_private_use(g, v) {
        return None;
    }
    let p = g.producer(v)?;
    let node = g.node(p);
    if node.outputs().len() != 1 {
        return None;
    }
    match &node.op {
        Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) | Op::Transpose(_) => {
            linear_source(g, node.input(0)?, depth + 1)
        }
        Op::MatMul(m) if m.act.is_none() && node.inputs().len() == 2 => {
            let (a, b) = (node.input(0)?, node.input(1)?);
            if const_tensor(g, b).is_some() {
                // `x·W` with constant W and no bias: the weights themselves take the factor.
                return bare_compute(g, p).then_some(p);
            }
            linear_source(g, a, depth + 1).or_else(|| linear_source(g, b, depth + 1))
        }
        _ if bare_compute(g, p) && node.input(RESIDUAL).is_none() && has_const_weights(g, p) => {
            Some(p)
        }
        _ => None,
    }
}

fn has_const_weights(g: &Graph, p: NodeId) -> bool {
    g.node(p)
        .input(1)
        .is_some_and(|w| const_tensor(g, w).is_some())
}

/// How many output channels `fold_affine` expects a scale for: the last dim of a gemm or
/// matmul result, dim 1 of a conv's.
fn output_channels(g: &Graph, p: NodeId) -> usize {
    let shape = g
        .value(g.node(p).outputs()[0])
        .ty
        .as_ref()
        .map(|t| t.shape.clone())
        .unwrap_or_default();
    match g.node(p).op {
        Op::Gemm(_) | Op::MatMul(_) => shape.last().copied().unwrap_or(1),
        _ => shape.get(1).copied().unwrap_or(1),
    }
}
