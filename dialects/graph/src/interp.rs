//! The reference interpreter: runs a graph op by op with each op's [`crate::OpDef::eval`].
//!
//! It is the oracle every lower level is tested against and the engine calibration will
//! run on, so it favours obvious correctness: values live in a slot per SSA value, are freed
//! after their last use, and constants are shared, not copied, on every run.

use crate::graph::{Graph, NodeId, Value};
use crate::ops::Op;
use kiln_core::{Error, ErrorKind, Result, Tensor};
use std::sync::Arc;

/// A graph prepared for repeated execution: schedule and last-use counts are computed once.
pub struct Interpreter<'g> {
    g: &'g Graph,
    order: Vec<NodeId>,
    /// Number of reads of each value (operands and graph outputs).
    reads: Vec<usize>,
}

enum Slot {
    Empty,
    Owned(Tensor),
    Shared(Arc<Tensor>),
}

impl Slot {
    fn get(&self) -> Option<&Tensor> {
        match self {
            Slot::Empty => None,
            Slot::Owned(t) => Some(t),
            Slot::Shared(t) => Some(t),
        }
    }
}

impl<'g> Interpreter<'g> {
    pub fn new(g: &'g Graph) -> Result<Self> {
        let order = g.topo_order()?;
        let mut reads = vec![0usize; g.num_values()];
        for &n in &order {
            for v in g.node(n).inputs().iter().flatten() {
                reads[v.index()] += 1;
            }
        }
        for v in g.outputs() {
            reads[v.index()] += 1;
        }
        Ok(Interpreter { g, order, reads })
    }

    /// Runs the graph on `inputs` (in graph-input order) and returns the graph outputs.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.run_observed(inputs, |_, _| {})
    }

    /// Like [`Interpreter::run`], calling `observe(value, tensor)` on every op result as it
    /// is produced (calibration and per-layer error analysis hook in here).
    pub fn run_observed(
        &self,
        inputs: &[Tensor],
        mut observe: impl FnMut(Value, &Tensor),
    ) -> Result<Vec<Tensor>> {
        let g = self.g;
        if inputs.len() != g.inputs().len() {
            return Err(Error::new(
                ErrorKind::Input,
                format!(
                    "the graph takes {} inputs, {} given",
                    g.inputs().len(),
                    inputs.len()
                ),
            ));
        }
        let mut slots: Vec<Slot> = (0..g.num_values()).map(|_| Slot::Empty).collect();
        let mut left = self.reads.clone();
        for (i, (&v, t)) in g.inputs().iter().zip(inputs).enumerate() {
            let data = g.value(v);
            if let Some(ty) = &data.ty
                && *ty != t.ty()
            {
                return Err(Error::new(
                    ErrorKind::Input,
                    format!("input {i} '{}' must be {ty}, got {}", data.name, t.ty()),
                ));
            }
            slots[v.index()] = Slot::Owned(t.clone());
        }
        for &n in &self.order {
            let node = g.node(n);
            let results = if let Op::Const(c) = &node.op {
                let t = c
                    .value
                    .clone()
                    .ok_or_else(|| node.locate(c.tensor().expect_err("value is absent")))?;
                vec![Slot::Shared(t)]
            } else {
                let mut ops: Vec<Option<&Tensor>> = Vec::with_capacity(node.inputs().len());
                for v in node.inputs() {
                    ops.push(match v {
                        None => None,
                        Some(v) => Some(slots[v.index()].get().ok_or_else(|| {
                            node.locate(Error::new(
                                ErrorKind::UndefinedValue,
                                format!("operand '%{}' was not computed", g.value(*v).name),
                            ))
                        })?),
                    });
                }
                let outs = node
                    .op
                    .eval(&ops, node.outputs().len())
                    .map_err(|e| node.locate(e))?;
                if outs.len() != node.outputs().len() {
                    return Err(node.locate(Error::new(
                        ErrorKind::Eval,
                        format!(
                            "op produced {} results, node has {}",
                            outs.len(),
                            node.outputs().len()
                        ),
                    )));
                }
                outs.into_iter().map(Slot::Owned).collect()
            };
            for v in node.inputs().iter().flatten() {
                left[v.index()] -= 1;
                if left[v.index()] == 0 {
                    slots[v.index()] = Slot::Empty;
                }
            }
            for (&v, slot) in node.outputs().iter().zip(results) {
                if let Some(t) = slot.get() {
                    observe(v, t);
                }
                if left[v.index()] > 0 {
                    slots[v.index()] = slot;
                }
            }
        }
        // Outputs count as reads, so their slots are still filled (even when a value is
        // returned twice or a graph input is returned directly).
        g.outputs()
            .iter()
            .map(|&v| {
                slots[v.index()].get().cloned().ok_or_else(|| {
                    Error::new(
                        ErrorKind::Eval,
                        format!("output '%{}' was not computed", g.value(v).name),
                    )
                })
            })
            .collect()
    }
}

/// Convenience: prepare and run once.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    Interpreter::new(g)?.run(inputs)
}
