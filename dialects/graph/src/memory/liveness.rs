//! Live ranges of intermediate tensors over the schedule.

use crate::graph::{Graph, NodeId, Value};
use crate::ops::Op;
use kiln_core::Result;
use std::collections::HashMap;

/// One intermediate tensor's live range: from the step that writes it to the step that
/// last reads it, both inclusive. A result nobody reads (an unused second output) is live
/// for its defining step only: the op still writes it somewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorLife {
    pub value: Value,
    pub bytes: usize,
    pub def: usize,
    pub last: usize,
}

impl TensorLife {
    /// Whether both tensors exist at some common step.
    pub fn overlaps(&self, o: &TensorLife) -> bool {
        self.def <= o.last && o.def <= self.last
    }
}

/// Liveness of every arena tensor over one schedule.
#[derive(Debug, Clone)]
pub struct Liveness {
    /// The schedule: step `s` runs `order[s]`.
    pub order: Vec<NodeId>,
    /// Arena tensors (op results that are neither constants nor graph outputs), ordered by
    /// definition step, then result index.
    pub tensors: Vec<TensorLife>,
    index: HashMap<Value, usize>,
}

impl Liveness {
    /// Liveness over [`Graph::topo_order`]. Needs every value typed (shape inference).
    pub fn compute(g: &Graph) -> Result<Liveness> {
        Self::with_order(g, g.topo_order()?)
    }

    /// Liveness over a given schedule (which must be topological).
    pub fn with_order(g: &Graph, order: Vec<NodeId>) -> Result<Liveness> {
        let outputs: std::collections::HashSet<Value> = g.outputs().iter().copied().collect();
        let mut tensors = Vec::new();
        let mut index = HashMap::new();
        for (s, &n) in order.iter().enumerate() {
            let node = g.node(n);
            for &v in node.inputs().iter().flatten() {
                if let Some(&i) = index.get(&v) {
                    let t: &mut TensorLife = &mut tensors[i];
                    t.last = t.last.max(s);
                }
            }
            if matches!(node.op, Op::Const(_)) {
                continue;
            }
            for &v in node.outputs() {
                if outputs.contains(&v) {
                    continue;
                }
                let bytes = g.ty(v).map_err(|e| node.locate(e))?.size_bytes();
                index.insert(v, tensors.len());
                tensors.push(TensorLife {
                    value: v,
                    bytes,
                    def: s,
                    last: s,
                });
            }
        }
        Ok(Liveness {
            order,
            tensors,
            index,
        })
    }

    /// The live range of `v`, if it is an arena tensor.
    pub fn get(&self, v: Value) -> Option<&TensorLife> {
        self.index.get(&v).map(|&i| &self.tensors[i])
    }

    /// Position of `v` in [`Liveness::tensors`].
    pub fn position(&self, v: Value) -> Option<usize> {
        self.index.get(&v).copied()
    }

    /// Number of steps in the schedule.
    pub fn steps(&self) -> usize {
        self.order.len()
    }

    /// The sum of all arena tensors' sizes: what one buffer per tensor would take.
    pub fn naive_bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.bytes).sum()
    }
}

/// Per value (by index), the step of `order` that reads it last: where an executor that
/// keeps values in a map may free it. A graph output reads as `usize::MAX` (never freed); a
/// value nobody reads as 0.
pub fn last_reads(g: &Graph, order: &[NodeId]) -> Vec<usize> {
    let mut last = vec![0; g.num_values()];
    for (s, &n) in order.iter().enumerate() {
        for v in g.node(n).inputs().iter().flatten() {
            last[v.index()] = s;
        }
    }
    for &v in g.outputs() {
        last[v.index()] = usize::MAX;
    }
    last
}
