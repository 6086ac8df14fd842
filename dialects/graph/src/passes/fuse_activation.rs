//! `graph.fuse-activation`: a compute op (conv, conv_transpose, gemm, matmul) followed by
//! an activation becomes one op with a fused activation, so the activation runs on the
//! accumulator before it is ever stored.
//!
//! Fires only when the compute op's result has exactly one reader (the activation) and is
//! not a graph output — otherwise the pre-activation tensor is still needed — and the op
//! has no activation yet (a residual already fused is fine: `act(W·x + b + Y)`). Clip needs
//! constant bounds and PRelu a constant slope, which becomes operand 4.

use super::fuse_util::{absorb, compute_act, compute_act_mut, const_tensor};
use super::fuse_util::{drop_dead_const, single_private_use};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::activation::SLOPE;
use crate::ops::{Activation, Op, UnaryKind};
use kiln_core::{Pass, Result};

pub struct FuseActivation;

impl Pass<Graph> for FuseActivation {
    fn name(&self) -> &'static str {
        "graph.fuse-activation"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for n in g.topo_order()? {
            if !g.contains(n) {
                continue;
            }
            let Some((act, slope)) = activation_of(g, n) else {
                continue;
            };
            let Some(x) = g.node(n).input(0) else {
                continue;
            };
            let Some(p) = g.producer(x) else { continue };
            let no_act_yet = compute_act(&g.node(p).op).is_some_and(|a| a.is_none());
            if !no_act_yet || !single_private_use(g, x) {
                continue;
            }
            let params: Vec<Value> = g.node(n).inputs()[1..].iter().flatten().copied().collect();
            if let Some(a) = compute_act_mut(g.op_mut(p)) {
                *a = act;
            }
            if let Some(s) = slope {
                g.set_input(p, SLOPE, Some(s));
            }
            absorb(g, p, n);
            for v in params {
                drop_dead_const(g, v);
            }
            changed = true;
        }
        Ok(changed)
    }
}

/// A scalar f32 value of a constant that f32 represents exactly.
fn const_bound(g: &Graph, v: Option<Value>, default: f32) -> Option<f32> {
    let Some(v) = v else { return Some(default) };
    let t = const_tensor(g, v)?;
    let vals = t.to_f64_vec();
    let [b] = vals[..] else { return None };
    let f = b as f32;
    (f as f64 == b && !f.is_nan()).then_some(f)
}

/// The fusible activation `n` computes, with the PRelu slope value.
pub(super) fn activation_of(g: &Graph, n: NodeId) -> Option<(Activation, Option<Value>)> {
    let node = g.node(n);
    let act = match &node.op {
        Op::Unary(u) => match u.kind {
            UnaryKind::Relu => Activation::Relu,
            UnaryKind::Sigmoid => Activation::Sigmoid,
            UnaryKind::Tanh => Activation::Tanh,
            UnaryKind::HardSwish => Activation::HardSwish,
            UnaryKind::Swish => Activation::Swish,
            _ => return None,
        },
        Op::LeakyRelu(l) => Activation::LeakyRelu { alpha: l.alpha },
        Op::HardSigmoid(h) => Activation::HardSigmoid {
            alpha: h.alpha,
            beta: h.beta,
        },
        Op::Gelu(ge) => Activation::Gelu {
            tanh: ge.tanh_approx,
        },
        Op::Clip(_) => Activation::Clip {
            min: const_bound(g, node.input(1), f32::NEG_INFINITY)?,
            max: const_bound(g, node.input(2), f32::INFINITY)?,
        },
        Op::PRelu(_) => {
            let s = node.input(1)?;
            const_tensor(g, s)?;
            // The slope must not widen the result (PRelu's rule guarantees it broadcasts).
            return Some((Activation::PRelu, Some(s)));
        }
        _ => return None,
    };
    // A fused op computes in its own (float) type only.
    let x = node.input(0)?;
    let float = g.value(x).ty.as_ref().is_some_and(|t| t.dtype.is_float());
    (float && node.outputs().len() == 1).then_some((act, None))
}
