//! `graph.fuse-batchnorm`: folds an inference BatchNormalization with constant parameters
//! into the preceding conv, conv_transpose or gemm:
//! `W' = W·s` per output channel and `b' = (b − mean)·s + β`, with `s = γ/√(var + ε)`.
//!
//! Only a compute op with nothing fused yet qualifies (BN after an activation or residual is
//! not linear in the accumulator), whose result the BN alone reads, with constant weights and
//! bias. Chains (Conv-BN-BN) fold one BN at a time; the pass sweeps until nothing changes.
//! Folding happens in f64 and rounds once to the weights' type.

use super::fuse_util::{absorb, bare_compute, const_tensor, drop_dead_const};
use super::fuse_util::{fold_affine, install_weights, single_private_use};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::Op;
use kiln_core::{Pass, Result};

pub struct FuseBatchNorm;

impl Pass<Graph> for FuseBatchNorm {
    fn name(&self) -> &'static str {
        "graph.fuse-batchnorm"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        super::fuse_util::sweep(g, try_fold)
    }
}

/// The folded per-channel scale `s` and shift `β − mean·s` of a BN with constant operands.
fn bn_affine(g: &Graph, bn: NodeId) -> Option<(Vec<f64>, Vec<f64>)> {
    let node = g.node(bn);
    let Op::BatchNormalization(op) = &node.op else {
        return None;
    };
    // layout: a channels-last BN scales the last axis, which fold_affine does not handle.
    if node.outputs().len() != 1 || op.layout.is_nhwc() {
        return None;
    }
    let mut p = Vec::with_capacity(4);
    for i in 1..=4 {
        p.push(const_tensor(g, node.input(i)?)?.to_f64_vec());
    }
    // Unverified IR may disagree on lengths; such a BN is simply not folded.
    if p.iter().any(|v| v.len() != p[0].len()) {
        return None;
    }
    let (gamma, beta, mean, var) = (&p[0], &p[1], &p[2], &p[3]);
    let eps = op.epsilon as f64;
    let scale: Vec<f64> = gamma
        .iter()
        .zip(var)
        .map(|(g, v)| g / (v + eps).sqrt())
        .collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    Some((scale, shift))
}

fn try_fold(g: &mut Graph, bn: NodeId) -> bool {
    let Some(x) = g.node(bn).input(0) else {
        return false;
    };
    let Some(p) = g.producer(x) else { return false };
    if !bare_compute(g, p) || !single_private_use(g, x) {
        return false;
    }
    let Some((scale, shift)) = bn_affine(g, bn) else {
        return false;
    };
    // BN's channels are dim 1; a matmul's output channels are its last dim.
    if matches!(g.node(p).op, Op::MatMul(_)) {
        return false;
    }
    let Some((w, b)) = fold_affine(g, p, &scale, &shift) else {
        return false;
    };
    let params: Vec<Value> = g.node(bn).inputs()[1..].iter().flatten().copied().collect();
    install_weights(g, p, w, b);
    absorb(g, p, bn);
    for v in params {
        drop_dead_const(g, v);
    }
    true
}
