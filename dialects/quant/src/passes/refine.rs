//! `quant.refine`: config refine. The dispatcher decides per op; an fp32 op's TQCs become
//! FP32, shape/index operands SOI, biases, clip bounds and pad values PASSIVE_INIT (they
//! take their parameters from others later). Values that are not floating point are never
//! quantised, and on platforms with `float_outputs` neither are the values that leave the
//! int8 region (FP32): graph outputs, and a compute op's result that only fp32 ops read
//! (an add or multiply by a constant on the way there runs in fp32 too).
//!
//! The second kind is the quantise/dequantise pair PPQ puts at an fp32 fallback. On kiln's
//! own device it buys nothing: the int8 kernel holds an exact i32 accumulator and writes f32
//! as cheaply as u8, and the fp32 reader wants f32. Skipping the rounding matters most where
//! the reader amplifies it: attention scores feed a Softmax, whose `exp` turns a score's
//! absolute rounding error into a relative error of every probability.

use crate::ir::{QuantGraph, Site, is_const};
use crate::platform::{self, Dispatch, Role};
use crate::tqc::State;
use kiln_core::{Pass, Result};
use kiln_graph::ops::BinaryKind;
use kiln_graph::{NodeId, Op, Value};

pub struct Refine;

impl Pass<QuantGraph> for Refine {
    fn name(&self) -> &'static str {
        "quant.refine"
    }

    fn run(&mut self, q: &mut QuantGraph) -> Result<bool> {
        let mut changed = false;
        for id in q.ids() {
            if q.tqc(id).state != State::Initial && q.tqc(id).state != State::PassiveInit {
                continue;
            }
            let site = q.site(id);
            let role = q.role(site);
            let fp32_op = match site {
                Site::In(n, _) => runs_fp32(q, n),
                Site::Out(v) => q.graph.producer(v).is_some_and(|n| runs_fp32(q, n)),
            };
            let float_output =
                q.platform.float_outputs && matches!(site, Site::Out(v) if leaves_int8(q, v));
            let want = match role {
                Role::Soi => State::Soi,
                Role::Activation if float_output => State::Fp32,
                Role::Fp32 => State::Fp32,
                _ if fp32_op => State::Fp32,
                r => platform::initial_state(r),
            };
            if q.tqc(id).state != want {
                q.tqc_mut(id).state = want;
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// Whether `v` leaves the int8 region: it is returned by the graph, or a compute op
/// produces it and it only flows into fp32 ops.
fn leaves_int8(q: &QuantGraph, v: Value) -> bool {
    let g = &q.graph;
    g.outputs().contains(&v)
        || (g
            .producer(v)
            .is_some_and(|p| platform::is_compute(&g.node(p).op))
            && flows_out(q, v))
}

/// Whether `v` is returned, or read, and only by ops that run in fp32.
fn flows_out(q: &QuantGraph, v: Value) -> bool {
    let uses = q.graph.uses(v);
    q.graph.outputs().contains(&v)
        || (!uses.is_empty() && uses.iter().all(|&(n, _)| runs_fp32(q, n)))
}

/// Whether node `n` runs in fp32: the dispatcher says so, or (on platforms with
/// `float_outputs`) it adds or multiplies a constant into a value on its way out of the
/// int8 region — attention's `scores · 1/√d` between Q·Kᵀ and the Softmax. Rounding its
/// operand to u8 first would only add the rounding the float boundary avoids.
fn runs_fp32(q: &QuantGraph, n: NodeId) -> bool {
    let g = &q.graph;
    let node = g.node(n);
    if platform::dispatch(&node.op) == Dispatch::Fp32 {
        return true;
    }
    let by_constant = matches!(&node.op, Op::Binary(b)
        if matches!(b.kind, BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul | BinaryKind::Div))
        && node.inputs().len() == 2
        && node.inputs().iter().flatten().any(|&v| is_const(g, v))
        && node.outputs().len() == 1;
    q.platform.float_outputs && by_constant && flows_out(q, node.outputs()[0])
}
