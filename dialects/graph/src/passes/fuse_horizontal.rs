//! `graph.fuse-horizontal`: sibling compute ops reading the same input with identical
//! geometry become one wide op followed by a `split` whose results replace the siblings'.
//!
//! Siblings are convs (group 1, same kernel size, strides, pads, dilations, auto_pad and
//! input channels), or matmuls / gemms with the same attributes sharing operand A with
//! constant 2-D B. Weights concatenate along the output channels (conv W axis 0, matmul
//! and gemm B axis 0 or 1 by `transB`), biases too (zeros for a sibling without one);
//! the split cuts the result along the channel axis (1 for conv, the last for the matrix
//! products). Siblings may carry the same fused activation (it is element-wise, so it
//! applies to the wide result unchanged), but no residual or PRelu slope.
//!
//! **Policy: a sibling whose only reader is an activation `graph.fuse-activation` could
//! fuse stays out of the group** (the others still fuse when at least two remain).
//! Horizontal fusion and activation fusion compete (seed notes §3 rule 8): once the
//! sibling's result comes out of a split, the Relu after it can no longer fuse and runs as
//! its own op over a stored tensor. Activation fusion removes an op and a full write + read
//! of the branch's result; horizontal fusion of that branch only saves re-reading the
//! shared input, which the other siblings already share. So activation fusion wins, and the
//! pass does not depend on running after `graph.fuse-activation` to get that right (run
//! after it, such a branch carries an epilogue instead and groups only with siblings of the
//! same activation).

use super::fuse_activation::activation_of;
use super::fuse_util::{add_const, const_tensor, drop_dead_const};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::activation::{RESIDUAL, SLOPE};
use crate::ops::{Op, Split};
use kiln_core::{DType, Pass, Result, Tensor, TensorType};

pub struct FuseHorizontal;

impl Pass<Graph> for FuseHorizontal {
    fn name(&self) -> &'static str {
        "graph.fuse-horizontal"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        // Readers per shared input, in topological order, grouped by their geometry key.
        let mut groups: Vec<(Value, String, Vec<NodeId>)> = Vec::new();
        for n in g.topo_order()? {
            let Some((x, key)) = candidate(g, n) else {
                continue;
            };
            match groups.iter_mut().find(|(v, k, _)| *v == x && *k == key) {
                Some((_, _, members)) => members.push(n),
                None => groups.push((x, key, vec![n])),
            }
        }
        for (x, _, members) in groups {
            if members.len() >= 2 && fuse(g, x, &members).is_some() {
                changed = true;
            }
        }
        Ok(changed)
    }
}

/// Where a sibling's weights are concatenated and its result split.
struct Axes {
    weight: usize,
    result: usize,
}

fn axes(g: &Graph, n: NodeId) -> Option<Axes> {
    let rank = g.value(g.node(n).outputs()[0]).ty.as_ref()?.rank();
    match &g.node(n).op {
        Op::Conv(_) => Some(Axes {
            weight: 0,
            result: 1,
        }),
        Op::MatMul(mm) => Some(Axes {
            weight: if mm.trans_b { 0 } else { 1 },
            result: rank.checked_sub(1)?,
        }),
        Op::Gemm(gm) => Some(Axes {
            weight: if gm.trans_b { 0 } else { 1 },
            result: 1,
        }),
        _ => None,
    }
}

/// The shared input and the grouping key (op attributes, weight shape without the output
/// axis, element type) of a node that may join a horizontal group.
fn candidate(g: &Graph, n: NodeId) -> Option<(Value, String)> {
    let node = g.node(n);
    let ok_op = match &node.op {
        // layout: the split below cuts channels-first axis 1.
        Op::Conv(c) => c.group == 1 && !c.layout.is_nhwc(),
        Op::MatMul(_) | Op::Gemm(_) => true,
        _ => false,
    };
    if !ok_op || node.input(RESIDUAL).is_some() || node.input(SLOPE).is_some() {
        return None;
    }
    let x = node.input(0)?;
    let w = const_tensor(g, node.input(1)?)?;
    let ax = axes(g, n)?;
    if !w.dtype().is_float() || (!matches!(node.op, Op::Conv(_)) && w.shape().len() != 2) {
        return None;
    }
    let out_ch = *w.shape().get(ax.weight)?;
    if let Some(b) = node.input(2) {
        let b = const_tensor(g, b)?;
        let shape = b.shape();
        let row = shape.len() <= 2 && shape.iter().rev().skip(1).all(|&d| d == 1);
        if !row || b.len() != out_ch || b.dtype() != w.dtype() {
            return None;
        }
    }
    // The weight must not be the input, and the result must be one plain tensor.
    let out = node.outputs()[0];
    if node.inputs()[1..].contains(&Some(x)) || g.value(out).ty.is_none() {
        return None;
    }
    if let Some(&(reader, _)) = g.uses(out).first()
        && g.use_count(out) == 1
        && !g.outputs().contains(&out)
        && activation_of(g, reader).is_some()
        && super::fuse_util::compute_act(&node.op).is_some_and(|a| a.is_none())
    {
        return None;
    }
    let mut rest = w.shape().to_vec();
    rest.remove(ax.weight);
    Some((x, format!("{:?}|{rest:?}|{}", node.op, w.dtype())))
}

/// `parts` (row-major, shapes equal but for `axis`) concatenated along `axis`.
fn concat(parts: &[(Vec<f64>, Vec<usize>)], axis: usize) -> (Vec<f64>, Vec<usize>) {
    let shape0 = &parts[0].1;
    let outer: usize = shape0[..axis].iter().product();
    let inner: usize = shape0[axis + 1..].iter().product();
    let total: usize = parts.iter().map(|(_, s)| s[axis]).sum();
    let mut out = Vec::with_capacity(outer * total * inner);
    for o in 0..outer {
        for (v, s) in parts {
            let len = s[axis] * inner;
            out.extend_from_slice(&v[o * len..(o + 1) * len]);
        }
    }
    let mut shape = shape0.clone();
    shape[axis] = total;
    (out, shape)
}

/// Replaces the siblings `members` by the wide op and its split; `None` (with the graph
/// untouched) when a sibling no longer fits, which [`candidate`] rules out.
fn fuse(g: &mut Graph, x: Value, members: &[NodeId]) -> Option<()> {
    let first = *members.first()?;
    let ax = axes(g, first)?;
    let op = g.node(first).op.clone();
    let mut weights = Vec::new();
    let mut sizes = Vec::new();
    let mut biases = Vec::new();
    let mut dtype = DType::F32;
    for &n in members {
        let w = const_tensor(g, g.node(n).input(1)?)?;
        dtype = w.dtype();
        let m = *w.shape().get(ax.weight)?;
        sizes.push(m);
        weights.push((w.to_f64_vec(), w.shape().to_vec()));
        let b = g.node(n).input(2).and_then(|b| const_tensor(g, b));
        biases.push(b.map(|b| b.to_f64_vec()));
    }
    let (wv, ws) = concat(&weights, ax.weight);
    let bias = biases.iter().any(Option::is_some).then(|| {
        let b: Vec<f64> = biases
            .iter()
            .zip(&sizes)
            .flat_map(|(b, &m)| b.clone().unwrap_or_else(|| vec![0.0; m]))
            .collect();
        b
    });
    let outs: Vec<Value> = members.iter().map(|&n| g.node(n).outputs()[0]).collect();
    let names: Vec<String> = outs.iter().map(|&v| g.value(v).name.clone()).collect();
    let base = names.join("_");
    let tensor = |shape: &[usize], v: &[f64]| {
        Tensor::from_f64_fn(&TensorType::new(dtype, shape.to_vec()), |i| v[i])
    };
    let mut wide_ty = g.value(outs[0]).ty.clone()?;
    *wide_ty.shape.get_mut(ax.result)? = sizes.iter().sum();
    let split_sizes =
        Tensor::from_vec(&[sizes.len()], sizes.iter().map(|&m| m as i64).collect()).ok()?;
    let w = add_const(g, format!("{base}_w"), tensor(&ws, &wv));
    let b = bias.map(|b| add_const(g, format!("{base}_b"), tensor(&[b.len()], &b)));
    let (_, wide) = g.add_node("", op, vec![Some(x), Some(w), b], vec![base.clone()]);
    g.value_mut(wide[0]).ty = Some(wide_ty);
    let sizes_v = add_const(g, format!("{base}_sizes"), split_sizes);
    let split = Split {
        axis: ax.result as i64,
        num_outputs: None,
    };
    let tmp: Vec<String> = names.iter().map(|n| format!("{n}_part")).collect();
    let (_, parts) = g.add_node(
        "",
        Op::Split(split),
        vec![Some(wide[0]), Some(sizes_v)],
        tmp,
    );
    let mut old = Vec::new();
    for ((&n, &o), (&p, name)) in members.iter().zip(&outs).zip(parts.iter().zip(names)) {
        g.value_mut(p).name = name;
        g.value_mut(p).ty = g.value(o).ty.clone();
        old.extend(g.node(n).inputs()[1..].iter().flatten().copied());
        g.remove_node(n);
        g.replace_all_uses(o, p);
    }
    for v in old {
        drop_dead_const(g, v);
    }
    Some(())
}
