//! `graph.fuse-pad`: a constant-mode, zero-valued Pad feeding a conv becomes the conv's own
//! padding (conv pads are zeros), so the padded copy is never made. Chains of Pads fold one
//! after another into the same conv.
//!
//! The Pad must have constant non-negative amounts on the spatial dims only (none on N or
//! C), a zero (or absent) constant value, and its result must be read by the conv's X
//! operand alone and not returned. Convs with SAME auto-padding are left alone (their pads
//! depend on the input size); VALID ones become explicit pads.

use super::fuse_util::{const_tensor, drop_dead_const, single_private_use};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::pad::pad_amounts;
use crate::ops::{AutoPad, Op, PadMode};
use kiln_core::{Pass, Result};

pub struct FusePad;

impl Pass<Graph> for FusePad {
    fn name(&self) -> &'static str {
        "graph.fuse-pad"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for conv in g.topo_order()? {
            while let Some((pad, data, amounts)) = foldable(g, conv) {
                let params: Vec<Value> = g.node(pad).inputs()[1..]
                    .iter()
                    .flatten()
                    .copied()
                    .collect();
                if let Op::Conv(c) = g.op_mut(conv) {
                    let nd = amounts.len();
                    let mut pads =
                        if c.window.pads.is_empty() || c.window.auto_pad == AutoPad::Valid {
                            vec![0; 2 * nd]
                        } else {
                            c.window.pads.clone()
                        };
                    for (i, (b, e)) in amounts.iter().enumerate() {
                        pads[i] += b;
                        pads[i + nd] += e;
                    }
                    c.window.pads = pads;
                    c.window.auto_pad = AutoPad::NotSet;
                }
                g.set_input(conv, 0, Some(data));
                g.remove_node(pad);
                for v in params {
                    drop_dead_const(g, v);
                }
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// A Pad node, its data operand and its (begin, end) amounts per spatial dim.
type Foldable = (NodeId, Value, Vec<(i64, i64)>);

/// The Pad feeding `conv`'s X, its data operand, and the (begin, end) amounts per spatial
/// dim, when the Pad can become conv padding.
fn foldable(g: &Graph, conv: NodeId) -> Option<Foldable> {
    let node = g.node(conv);
    let Op::Conv(c) = &node.op else { return None };
    // layout: the pads below are read as channels-first spatial dims.
    if c.layout.is_nhwc() {
        return None;
    }
    if !matches!(c.window.auto_pad, AutoPad::NotSet | AutoPad::Valid) {
        return None;
    }
    let x = node.input(0)?;
    let pad = g.producer(x)?;
    let pn = g.node(pad);
    let Op::Pad(p) = &pn.op else { return None };
    if p.mode != PadMode::Constant || !single_private_use(g, x) {
        return None;
    }
    let data = pn.input(0)?;
    let rank = g.value(data).ty.as_ref()?.rank();
    let pads = const_tensor(g, pn.input(1)?)?.to_i64_vec().ok()?;
    if let Some(v) = pn.input(2)
        && const_tensor(g, v)?.to_f64_vec().iter().any(|&z| z != 0.0)
    {
        return None;
    }
    let axes = match pn.input(3) {
        Some(v) => Some(const_tensor(g, v)?.to_i64_vec().ok()?),
        None => None,
    };
    let amounts = pad_amounts(rank, &pads, axes.as_deref()).ok()?;
    let (batch, spatial) = amounts.split_at(2.min(rank));
    let ok = rank >= 3
        && (c.window.pads.is_empty() || c.window.pads.len() == 2 * (rank - 2))
        && batch.iter().all(|&(b, e)| b == 0 && e == 0)
        && spatial.iter().all(|&(b, e)| b >= 0 && e >= 0);
    ok.then(|| (pad, data, spatial.to_vec()))
}
