//! `quant.fuse`: simulate the device's fusions by editing TQCs (seed notes §6).
//!
//! - Compute op + Relu/Clip/BatchNormalization with a single reader: the compute op's
//!   output and the activation's input are OVERLAPPED by the activation's output (on the
//!   device that intermediate lives in an i32 register).
//! - Passive ops: their data input and outputs are OVERLAPPED by the upstream TQC.
//! - Add/Sub/Max/Min: operand 0 is the master, operand 1 becomes its SLAVE; an upstream
//!   output read only by this op is turned off (OVERLAPPED into the input's group).
//! - Concat: every input is OVERLAPPED by the output; an upstream output read only by the
//!   Concat is overlapped too, one read elsewhere stays active and joins the group — when
//!   it already belongs to another group (a Relu feeding two Concats) the groups merge and
//!   the losing root becomes SLAVE.

use crate::ir::{QuantGraph, TqcId};
use crate::platform::{self, Dispatch};
use crate::tqc::State;
use kiln_core::{Pass, Result};
use kiln_graph::ops::BinaryKind;
use kiln_graph::{NodeId, Op, Value};

pub struct Fuse;

/// Whether a TQC will quantise (an activation not yet turned off).
fn active(q: &QuantGraph, id: TqcId) -> bool {
    q.tqc(id).state.is_active() && !matches!(q.tqc(id).state, State::Overlapped)
}

/// The value's only reader, when it has exactly one and is not a graph output.
fn single_reader(q: &QuantGraph, v: Value) -> Option<(NodeId, usize)> {
    let uses = q.graph.uses(v);
    (uses.len() == 1 && !q.graph.outputs().contains(&v)).then(|| uses[0])
}

impl Pass<QuantGraph> for Fuse {
    fn name(&self) -> &'static str {
        "quant.fuse"
    }

    fn run(&mut self, q: &mut QuantGraph) -> Result<bool> {
        let mut changed = false;
        for n in q.graph.topo_order()? {
            let op = q.graph.node(n).op.clone();
            let outs = q.graph.node(n).outputs().to_vec();
            let d = q.dispatch(n);
            if d == Dispatch::Fp32 {
                continue;
            }
            // Compute op (or an op already fused into one) + activation.
            if platform::is_compute(&op) || absorbed(q, n) {
                changed |= fuse_activation(q, outs[0]);
            }
            match &op {
                Op::Binary(b)
                    if matches!(
                        b.kind,
                        BinaryKind::Add | BinaryKind::Sub | BinaryKind::Max | BinaryKind::Min
                    ) =>
                {
                    changed |= master_slave(q, n);
                }
                Op::Concat(_) => changed |= concat(q, n),
                _ if d == Dispatch::Passive => changed |= passive(q, n),
                _ => {}
            }
        }
        Ok(changed)
    }
}

/// Whether `n` is an activation whose input was already overlapped by its output (so a
/// chain Conv → BN → Relu keeps absorbing).
fn absorbed(q: &QuantGraph, n: NodeId) -> bool {
    let node = q.graph.node(n);
    platform::fusable_activation(&node.op)
        && q.in_tqc(n, 0).is_some_and(|i| {
            q.tqc(i).state == State::Overlapped
                && q.root(i) == q.root(q.out_tqc(node.outputs()[0]).expect("result"))
        })
}

fn fuse_activation(q: &mut QuantGraph, v: Value) -> bool {
    let Some((m, 0)) = single_reader(q, v) else {
        return false;
    };
    if !platform::fusable_activation(&q.graph.node(m).op) {
        return false;
    }
    let (Some(up), Some(inp), Some(out)) = (
        q.out_tqc(v),
        q.in_tqc(m, 0),
        q.out_tqc(q.graph.node(m).outputs()[0]),
    ) else {
        return false;
    };
    if !active(q, out) || !q.tqc(up).state.is_active() {
        return false;
    }
    q.overlap(out, up) | q.overlap(out, inp)
}

fn passive(q: &mut QuantGraph, n: NodeId) -> bool {
    let node = q.graph.node(n);
    let (Some(x), Some(inp)) = (node.input(0), q.in_tqc(n, 0)) else {
        return false;
    };
    let outs: Vec<TqcId> = node
        .outputs()
        .iter()
        .filter_map(|&o| q.out_tqc(o))
        .collect();
    if !q.tqc(inp).state.is_active() {
        return false;
    }
    let mut changed = false;
    // The group's anchor: the upstream output when it quantises, else this op's input.
    let anchor = match q.out_tqc(x) {
        Some(up) if q.tqc(up).state.is_active() || q.tqc(up).state == State::Overlapped => {
            changed |= q.overlap(up, inp);
            up
        }
        _ => inp,
    };
    for o in outs {
        if q.tqc(o).state.is_active() {
            changed |= q.overlap(anchor, o);
        }
    }
    changed
}

fn master_slave(q: &mut QuantGraph, n: NodeId) -> bool {
    let node = q.graph.node(n);
    let ins: Vec<Option<Value>> = node.inputs().to_vec();
    let (Some(m), Some(s)) = (q.in_tqc(n, 0), q.in_tqc(n, 1)) else {
        return false;
    };
    if !q.tqc(m).state.is_active() || !q.tqc(s).state.is_active() {
        return false;
    }
    let mut changed = q.tqc(s).state != State::Slave;
    q.tqc_mut(s).state = State::Slave;
    changed |= q.merge(m, s);
    for (k, tq) in [(0, m), (1, s)] {
        let Some(x) = ins[k] else { continue };
        if let (Some(up), Some(_)) = (q.out_tqc(x), single_reader(q, x))
            && q.tqc(up).state.is_active()
            && q.tqc(up).state != State::Overlapped
        {
            changed |= q.overlap(tq, up);
        }
    }
    changed
}

fn concat(q: &mut QuantGraph, n: NodeId) -> bool {
    let node = q.graph.node(n);
    let ins: Vec<Option<Value>> = node.inputs().to_vec();
    let Some(out) = q.out_tqc(node.outputs()[0]) else {
        return false;
    };
    if !q.tqc(out).state.is_active() {
        return false;
    }
    let mut changed = false;
    for (k, x) in ins.iter().enumerate() {
        let (Some(x), Some(inp)) = (*x, q.in_tqc(n, k)) else {
            continue;
        };
        if !q.tqc(inp).state.is_active() {
            continue;
        }
        changed |= q.overlap(out, inp);
        let Some(up) = q.out_tqc(x) else { continue };
        if !q.tqc(up).state.is_active() {
            continue;
        }
        if single_reader(q, x).is_some() {
            changed |= q.overlap(out, up);
        } else {
            // Read elsewhere too: stays active, shares the Concat's parameters.
            changed |= q.merge(out, up);
        }
    }
    changed
}
