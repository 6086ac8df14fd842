//! Many samples through the simulator at once, op by op: for passes that must see every
//! sample's operands of an op before any sample goes past it (bias correction measures a
//! layer's mean error over all of them, then changes the layer).

use super::{eval_planned, input_value};
use crate::ir::{QuantGraph, const_data};
use crate::plan;
use kiln_core::{Result, Tensor};
use kiln_graph::{NodeId, Op, Value};
use std::collections::HashMap;

/// Runs `samples` through the unit op by op in lockstep, as the simulator does one sample:
/// `before(q, n, operands)` sees op `n`'s computed operands for every sample (as stored,
/// before its input TQCs act; constant operands are `None` there, they are in `q`) before
/// `n` runs, and may change `q`'s constants (`n`'s own included: its plan is made and its
/// constants read after). Values are dropped after their last reader, and nothing runs
/// after `last`.
pub fn lockstep(
    q: &mut QuantGraph,
    samples: &[Vec<Tensor>],
    last: NodeId,
    mut before: impl FnMut(&mut QuantGraph, NodeId, &[Vec<Option<Tensor>>]) -> Result<()>,
) -> Result<()> {
    let order = q.graph.topo_order()?;
    let mut last_use: HashMap<Value, usize> = HashMap::new();
    for (i, &n) in order.iter().enumerate() {
        for v in q.graph.node(n).inputs().iter().flatten() {
            last_use.insert(*v, i);
        }
    }
    let mut vals: Vec<HashMap<Value, Tensor>> = Vec::with_capacity(samples.len());
    for s in samples {
        let mut m = HashMap::new();
        for (&v, t) in q.graph.inputs().iter().zip(s) {
            m.insert(v, input_value(q, v, t)?);
        }
        vals.push(m);
    }
    for (i, &n) in order.iter().enumerate() {
        let node = q.graph.node(n);
        if matches!(node.op, Op::Const(_)) {
            continue;
        }
        let inputs: Vec<Option<Value>> = node.inputs().to_vec();
        let mut operands: Vec<Vec<Option<Tensor>>> = vals
            .iter()
            .map(|m| inputs.iter().map(|v| m.get(&(*v)?).cloned()).collect())
            .collect();
        before(q, n, &operands)?;
        // Constants are read after `before`, which may have changed them.
        for ops in &mut operands {
            for (slot, v) in ops.iter_mut().zip(&inputs) {
                if let Some(t) = v.and_then(|v| const_data(&q.graph, v)) {
                    *slot = Some(t.clone());
                }
            }
        }
        let plan = plan::int_plan(q, n).map_err(|e| q.graph.node(n).locate(e))?;
        let outputs = q.graph.node(n).outputs().to_vec();
        let q: &QuantGraph = q;
        // Samples are independent here: one thread each, as many as there are cores.
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        let per = vals.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| -> Result<()> {
            let jobs: Vec<_> = vals
                .chunks_mut(per)
                .zip(operands.chunks(per))
                .map(|(vs, os)| {
                    let (plan, outputs, last_use) = (plan.as_ref(), &outputs, &last_use);
                    scope.spawn(move || -> Result<()> {
                        for (m, ops) in vs.iter_mut().zip(os) {
                            let (outs, _) = eval_planned(q, n, ops, plan)?;
                            for (&v, t) in outputs.iter().zip(outs) {
                                m.insert(v, t);
                            }
                            m.retain(|v, _| last_use.get(v).is_some_and(|&u| u > i));
                        }
                        Ok(())
                    })
                })
                .collect();
            jobs.into_iter()
                .try_for_each(|j| j.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })?;
        if n == last {
            break;
        }
    }
    Ok(())
}
