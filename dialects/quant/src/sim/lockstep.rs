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
    mut before: impl FnMut(&mut QuantGraph, NodeId, &[Vec<Option<&Tensor>>]) -> Result<()>,
) -> Result<()> {
    let order = q.graph.topo_order()?;
    let last_use = kiln_graph::memory::last_reads(&q.graph, &order);
    let mut vals: Vec<HashMap<Value, Tensor>> = Vec::with_capacity(samples.len());
    for s in samples {
        let mut m = HashMap::new();
        for (&v, t) in q.graph.inputs().iter().zip(s) {
            m.insert(v, input_value(q, v, t)?);
        }
        vals.push(m);
    }
    // Samples are independent within an op: one thread each, as many as there are cores.
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let per = vals.len().div_ceil(threads).max(1);
    for (i, &n) in order.iter().enumerate() {
        let node = q.graph.node(n);
        if matches!(node.op, Op::Const(_)) {
            continue;
        }
        let inputs: Vec<Option<Value>> = node.inputs().to_vec();
        let operands: Vec<Vec<Option<&Tensor>>> = vals
            .iter()
            .map(|m| inputs.iter().map(|v| m.get(&(*v)?)).collect())
            .collect();
        before(q, n, &operands)?;
        let q: &QuantGraph = q;
        // Constants are read after `before`, which may have changed them.
        let operands: Vec<Vec<Option<&Tensor>>> = operands
            .into_iter()
            .map(|ops| {
                ops.into_iter()
                    .zip(&inputs)
                    .map(|(t, v)| v.and_then(|v| const_data(&q.graph, v)).or(t))
                    .collect()
            })
            .collect();
        let plan = plan::int_plan(q, n).map_err(|e| q.graph.node(n).locate(e))?;
        let results = std::thread::scope(|scope| -> Result<Vec<Vec<Tensor>>> {
            let jobs: Vec<_> = operands
                .chunks(per)
                .map(|os| {
                    let plan = plan.as_ref();
                    scope.spawn(move || -> Result<Vec<Vec<Tensor>>> {
                        os.iter()
                            .map(|ops| Ok(eval_planned(q, n, ops, plan)?.0))
                            .collect()
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(operands.len());
            for j in jobs {
                all.extend(j.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?);
            }
            Ok(all)
        })?;
        drop(operands);
        let outputs = q.graph.node(n).outputs();
        for (m, outs) in vals.iter_mut().zip(results) {
            for (&v, t) in outputs.iter().zip(outs) {
                m.insert(v, t);
            }
            m.retain(|v, _| last_use[v.index()] > i);
        }
        if n == last {
            break;
        }
    }
    Ok(())
}
