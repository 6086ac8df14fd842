//! `graph.fold-constants`: replaces every op whose operands are all constants — or whose
//! results follow from operand types alone, like Shape — by constants holding its results.
//!
//! This is what turns exporter noise (Shape → Gather → Unsqueeze → Concat → Reshape chains,
//! ConstantOfShape, weight transposes) into plain constants, using the interpreter's own
//! kernels so folding can never disagree with execution. Folded results keep their value
//! names, so graph outputs keep theirs.

use crate::graph::{Graph, NodeId, Value};
use crate::ops::{Const, InferInput, InferInputs, Op};
use kiln_core::{Pass, Result, Tensor};

pub struct FoldConstants;

impl Pass<Graph> for FoldConstants {
    fn name(&self) -> &'static str {
        "graph.fold-constants"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for n in g.topo_order()? {
            if let Some(results) = fold(g, n)? {
                replace_with_consts(g, n, results);
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// The constant data behind `v`, if it is produced by a loaded constant.
fn const_value(g: &Graph, v: Value) -> Option<&Tensor> {
    match &g.node(g.producer(v)?).op {
        Op::Const(c) => c.value.as_deref(),
        _ => None,
    }
}

fn fold(g: &Graph, n: NodeId) -> Result<Option<Vec<Tensor>>> {
    let node = g.node(n);
    if matches!(node.op, Op::Const(_)) {
        return Ok(None);
    }
    // Results known from types alone (Shape of a non-constant tensor).
    let tys: Vec<Option<_>> = node
        .inputs()
        .iter()
        .map(|v| v.and_then(|v| g.value(v).ty.as_ref()))
        .collect();
    if tys
        .iter()
        .zip(node.inputs())
        .all(|(t, v)| t.is_some() || v.is_none())
    {
        let vals: Vec<Option<&Tensor>> = node
            .inputs()
            .iter()
            .map(|v| v.and_then(|v| const_value(g, v)))
            .collect();
        let ins: Vec<Option<InferInput>> = tys
            .iter()
            .zip(&vals)
            .map(|(t, v)| t.map(|ty| InferInput { ty, value: *v }))
            .collect();
        let ctx = InferInputs {
            ins: &ins,
            n_outputs: node.outputs().len(),
        };
        if let Some(v) = node.op.value_from_types(ctx) {
            return Ok(Some(v));
        }
    }
    let mut operands = Vec::with_capacity(node.inputs().len());
    for v in node.inputs() {
        match v {
            None => operands.push(None),
            Some(v) => match const_value(g, *v) {
                Some(t) => operands.push(Some(t)),
                None => return Ok(None),
            },
        }
    }
    if operands.iter().all(Option::is_none) {
        return Ok(None);
    }
    let results = node
        .op
        .eval(&operands, node.outputs().len())
        .map_err(|e| node.locate(e))?;
    Ok(Some(results))
}

fn replace_with_consts(g: &mut Graph, n: NodeId, results: Vec<Tensor>) {
    let outputs = g.node(n).outputs().to_vec();
    let name = g.node(n).name.clone();
    for (old, t) in outputs.into_iter().zip(results) {
        let value_name = g.value(old).name.clone();
        let ty = Some(t.ty());
        let (_, new) = g.add_node(
            name.clone(),
            Op::Const(Const::new(t)),
            vec![],
            vec![value_name],
        );
        g.value_mut(new[0]).ty = ty;
        g.replace_all_uses(old, new[0]);
    }
    g.remove_node(n);
}
