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
//!
//! With `float_tail` (kiln-x86) the region ends at its last compute op, not at the first
//! fp32 op: an op that is not a compute op (data movement, a table, an add) whose every
//! result only leaves runs in fp32 too, so the decision walks back through it, and a
//! compute op's residual operand is read in f32. A detector's head is the case: its last
//! convs' logits are concatenated, reshaped and split before a Softmax (box distributions)
//! and a Sigmoid (class scores) that are returned. Quantising that tail would round the
//! box logits that the Softmax amplifies and put class scores near 0 on a u8 grid made for
//! [0, 1]; running it in f32 costs a few thousand element moves.

use crate::ir::{QuantGraph, Site, is_const};
use crate::platform::{self, Dispatch, Role};
use crate::tqc::State;
use kiln_core::{Pass, Result};
use kiln_graph::ops::BinaryKind;
use kiln_graph::ops::activation::RESIDUAL;
use kiln_graph::{NodeId, Op, Value};
use std::collections::HashSet;

pub struct Refine;

impl Pass<QuantGraph> for Refine {
    fn name(&self) -> &'static str {
        "quant.refine"
    }

    fn run(&mut self, q: &mut QuantGraph) -> Result<bool> {
        let fp32 = Fp32Ops::new(q)?;
        let mut changed = false;
        for id in q.ids() {
            if q.tqc(id).state != State::Initial && q.tqc(id).state != State::PassiveInit {
                continue;
            }
            let site = q.site(id);
            let role = q.role(site);
            let fp32_op = match site {
                Site::In(n, _) => fp32.runs(n),
                Site::Out(v) => q.graph.producer(v).is_some_and(|n| fp32.runs(n)),
            };
            let float_output =
                q.platform.float_outputs && matches!(site, Site::Out(v) if fp32.leaves_int8(q, v));
            let want = match role {
                Role::Soi => State::Soi,
                _ if matches!(site, Site::In(n, k) if f32_residual(q, n, k)) => State::Fp32,
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

/// Which nodes run in fp32, decided once for the whole graph from the last node back, since
/// whether a node runs in fp32 can depend on every op downstream of it.
struct Fp32Ops(HashSet<NodeId>);

impl Fp32Ops {
    fn new(q: &QuantGraph) -> Result<Fp32Ops> {
        let mut fp32 = HashSet::new();
        for n in q.graph.topo_order()?.into_iter().rev() {
            if Self::decide(q, &fp32, n) {
                fp32.insert(n);
            }
        }
        Ok(Fp32Ops(fp32))
    }

    /// Whether node `n` runs in fp32, given the decisions for every node after it: the
    /// dispatcher says so, or (on platforms with `float_outputs`) all it produces leaves the
    /// int8 region and it adds or multiplies a constant on the way (attention's `scores ·
    /// 1/√d` between Q·Kᵀ and the Softmax) or, with `float_tail`, it is any op but a compute
    /// op. Rounding its operands to u8 first would only add the rounding the float boundary
    /// avoids.
    fn decide(q: &QuantGraph, fp32: &HashSet<NodeId>, n: NodeId) -> bool {
        let node = q.graph.node(n);
        if q.dispatch(n) == Dispatch::Fp32 {
            return true;
        }
        if !q.platform.float_outputs || node.outputs().is_empty() {
            return false;
        }
        let leaves = || node.outputs().iter().all(|&v| flows_out(q, fp32, v));
        let by_constant = matches!(&node.op, Op::Binary(b)
            if matches!(b.kind, BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul | BinaryKind::Div))
            && node.inputs().len() == 2
            && node
                .inputs()
                .iter()
                .flatten()
                .any(|&v| is_const(&q.graph, v));
        let tail = q.platform.float_tail && !platform::is_compute(&node.op);
        (tail || by_constant) && leaves()
    }

    fn runs(&self, n: NodeId) -> bool {
        self.0.contains(&n)
    }

    /// Whether `v` leaves the int8 region: it is returned by the graph, or a compute op
    /// produces it (or it is a graph input) and it only flows into fp32 ops.
    fn leaves_int8(&self, q: &QuantGraph, v: Value) -> bool {
        let g = &q.graph;
        g.outputs().contains(&v)
            || ((g.inputs().contains(&v)
                || g.producer(v)
                    .is_some_and(|p| platform::is_compute(&g.node(p).op)))
                && flows_out(q, &self.0, v))
    }
}

/// Whether `v` is returned or read, and read only by ops that run in fp32 or as a compute
/// op's residual. A returned value that an int8 op reads too does not leave: its producer
/// stays in the region (its operands keep their grids), and the value is returned in f32
/// like every graph output.
fn flows_out(q: &QuantGraph, fp32: &HashSet<NodeId>, v: Value) -> bool {
    let uses = q.graph.uses(v);
    (q.graph.outputs().contains(&v) || !uses.is_empty())
        && uses
            .iter()
            .all(|&(n, k)| fp32.contains(&n) || f32_residual(q, n, k))
}

/// Whether operand `k` of `n` is a compute op's residual read in f32. The f32 epilogue adds
/// the residual as an f32 value (arith.rs, item 4), so on a platform with `float_tail` it
/// is not rounded to u8 first: a transformer's residual stream, which a LayerNorm and the
/// next block's residual add read, then never leaves f32, as in the int8 transformer
/// kernels that keep the skip connection in floating point.
fn f32_residual(q: &QuantGraph, n: NodeId, k: usize) -> bool {
    q.platform.float_outputs
        && q.platform.float_tail
        && k == RESIDUAL
        && platform::is_compute(&q.graph.node(n).op)
}
