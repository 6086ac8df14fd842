//! Static shape inference over a whole graph.
//!
//! Ops declare their own shape rules ([`crate::OpDef::infer`]); this module walks the graph
//! in topological order and feeds each rule the operand types — and the operand *values*
//! where they are known, because a Reshape's result shape is the value of its shape operand,
//! which is often computed by a Shape → Gather → Concat chain. Small values are therefore
//! propagated: constants, the results of Shape/Size (known from types alone), and anything
//! computed from known values that stays small.

use crate::graph::{Graph, NodeId, Value};
use crate::ops::{InferInput, InferInputs, Op};
use kiln_core::{Error, ErrorKind, Result, Tensor, TensorType};
use std::collections::HashMap;
use std::sync::Arc;

/// Values larger than this are not propagated (they are weights, not shape arithmetic);
/// `graph.fold-constants` folds them instead.
const MAX_PROPAGATED: usize = 1 << 16;

/// Infers every value's type. Returns whether any type changed.
pub fn infer_shapes(g: &mut Graph) -> Result<bool> {
    check_inputs(g)?;
    let mut known = KnownValues::new();
    let mut changed = false;
    for n in g.topo_order()? {
        let out_tys = derive(g, n, &mut known)?;
        for (v, ty) in g.node(n).outputs().to_vec().into_iter().zip(out_tys) {
            let slot = &mut g.value_mut(v).ty;
            if slot.as_ref() != Some(&ty) {
                *slot = Some(ty);
                changed = true;
            }
        }
    }
    Ok(changed)
}

/// Re-derives every type and fails where it disagrees with the recorded one (the verifier's
/// "types agree" rule).
pub fn check_shapes(g: &Graph) -> Result<()> {
    check_inputs(g)?;
    let mut known = KnownValues::new();
    for n in g.topo_order()? {
        let out_tys = derive(g, n, &mut known)?;
        let node = g.node(n);
        for (k, (&v, ty)) in node.outputs().iter().zip(out_tys).enumerate() {
            match &g.value(v).ty {
                Some(old) if *old == ty => {}
                Some(old) => {
                    return Err(node.locate(Error::new(
                        ErrorKind::Verify,
                        format!("result {k} is declared {old} but its shape rule gives {ty}"),
                    )));
                }
                None => {
                    return Err(node.locate(Error::new(
                        ErrorKind::Verify,
                        format!("result {k} has no type"),
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The values shape inference can know at compile time, by value handle.
pub type KnownValues = HashMap<Value, Arc<Tensor>>;

fn check_inputs(g: &Graph) -> Result<()> {
    for &v in g.inputs() {
        if g.value(v).ty.is_none() {
            return Err(Error::new(
                ErrorKind::Input,
                format!("graph input '{}' has no type", g.value(v).name),
            ));
        }
    }
    Ok(())
}

/// Applies node `n`'s shape rule; records the values it can know in `known`.
fn derive(g: &Graph, n: NodeId, known: &mut KnownValues) -> Result<Vec<TensorType>> {
    let node = g.node(n);
    let mut tys: Vec<Option<&TensorType>> = Vec::with_capacity(node.inputs().len());
    for v in node.inputs() {
        tys.push(match v {
            None => None,
            Some(v) => Some(g.value(*v).ty.as_ref().ok_or_else(|| {
                node.locate(Error::new(
                    ErrorKind::UndefinedValue,
                    format!(
                        "operand '%{}' has no type (is it defined?)",
                        g.value(*v).name
                    ),
                ))
            })?),
        });
    }
    let ins: Vec<Option<InferInput>> = node
        .inputs()
        .iter()
        .zip(&tys)
        .map(|(v, t)| {
            Some(InferInput {
                ty: (*t)?,
                value: v.and_then(|v| known.get(&v)).map(|a| a.as_ref()),
            })
        })
        .collect();
    let ctx = InferInputs {
        ins: &ins,
        n_outputs: node.outputs().len(),
    };
    let out_tys = node.op.infer(ctx).map_err(|e| node.locate(e))?;
    if out_tys.len() != node.outputs().len() {
        return Err(node.locate(Error::new(
            ErrorKind::InvalidModel,
            format!(
                "op yields {} results but the node has {}",
                out_tys.len(),
                node.outputs().len()
            ),
        )));
    }
    if let Some(vals) =
        compute_values(&node.op, ctx, node.inputs(), known, &out_tys).map_err(|e| node.locate(e))?
    {
        for (&v, t) in node.outputs().iter().zip(vals) {
            known.insert(v, t);
        }
    }
    Ok(out_tys)
}
/// The node's results, when they can and should be known at compile time.
fn compute_values(
    op: &Op,
    ctx: InferInputs,
    inputs: &[Option<Value>],
    known: &KnownValues,
    out_tys: &[TensorType],
) -> Result<Option<Vec<Arc<Tensor>>>> {
    if let Op::Const(c) = op {
        // Share the constant's storage: weights can be large.
        return Ok(c.value.clone().map(|t| vec![t]));
    }
    if let Some(v) = op.value_from_types(ctx) {
        return Ok(Some(v.into_iter().map(Arc::new).collect()));
    }
    let small = out_tys.iter().all(|t| t.numel() <= MAX_PROPAGATED);
    let operands: Option<Vec<Option<&Tensor>>> = inputs
        .iter()
        .map(|v| match v {
            None => Some(None),
            Some(v) => known.get(v).map(|t| Some(t.as_ref())),
        })
        .collect();
    match operands {
        Some(ops) if small && !inputs.is_empty() => Ok(Some(
            op.eval(&ops, out_tys.len())?
                .into_iter()
                .map(Arc::new)
                .collect(),
        )),
        _ => Ok(None),
    }
}
