//! Helpers shared by the fusion passes (`graph.fuse-*`, `graph.remove-identity`).

use crate::graph::{Graph, NodeId, Value};
use crate::ops::activation::{RESIDUAL, SLOPE};
use crate::ops::{Activation, BinaryKind, Const, Op};
use kiln_core::{DType, Tensor, TensorType};

/// The loaded data of a constant value.
pub fn const_tensor(g: &Graph, v: Value) -> Option<&Tensor> {
    match &g.node(g.producer(v)?).op {
        Op::Const(c) => c.value.as_deref(),
        _ => None,
    }
}

/// `n` as a binary op of a value and a constant operand: (kind, the value, the constant).
/// Add and Mul take the constant on either side; Sub and Div only as their second
/// operand (`x − c`, `x / c`), the forms that fold into a producer's parameters.
pub fn binary_by_const(g: &Graph, n: NodeId) -> Option<(BinaryKind, Value, Value)> {
    let node = g.node(n);
    let Op::Binary(b) = &node.op else { return None };
    if node.inputs().len() != 2 || node.outputs().len() != 1 {
        return None;
    }
    let (a0, a1) = (node.input(0)?, node.input(1)?);
    let (x, c) = match b.kind {
        BinaryKind::Add | BinaryKind::Mul if const_tensor(g, a1).is_some() => (a0, a1),
        BinaryKind::Add | BinaryKind::Mul if const_tensor(g, a0).is_some() => (a1, a0),
        BinaryKind::Sub | BinaryKind::Div if const_tensor(g, a1).is_some() => (a0, a1),
        _ => return None,
    };
    Some((b.kind, x, c))
}

/// Whether `v` has exactly one reader, an op operand, and is not returned by the graph:
/// only then may its producer be merged into that reader.
pub fn single_private_use(g: &Graph, v: Value) -> bool {
    g.use_count(v) == 1 && !g.outputs().contains(&v)
}

/// The fused activation of a compute op (conv, conv_transpose, gemm, matmul).
pub fn compute_act(op: &Op) -> Option<Activation> {
    match op {
        Op::Conv(o) => Some(o.act),
        Op::ConvTranspose(o) => Some(o.act),
        Op::Gemm(o) => Some(o.act),
        Op::MatMul(o) => Some(o.act),
        _ => None,
    }
}

/// Mutable access to a compute op's fused activation.
pub fn compute_act_mut(op: &mut Op) -> Option<&mut Activation> {
    match op {
        Op::Conv(o) => Some(&mut o.act),
        Op::ConvTranspose(o) => Some(&mut o.act),
        Op::Gemm(o) => Some(&mut o.act),
        Op::MatMul(o) => Some(&mut o.act),
        _ => None,
    }
}

/// A compute op with nothing fused after its bias yet (no activation, no residual).
pub fn bare_compute(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    compute_act(&node.op).is_some_and(|a| a.is_none())
        && node.input(RESIDUAL).is_none()
        && node.input(SLOPE).is_none()
}

/// Merges the single-result `consumer` into `producer`, whose result `inner` the consumer
/// read: the producer's result takes the consumer's name and uses (so graph outputs keep
/// their names) and the consumer is removed.
pub fn absorb(g: &mut Graph, producer: NodeId, consumer: NodeId) {
    let inner = g.node(producer).outputs()[0];
    let outer = g.node(consumer).outputs()[0];
    g.value_mut(inner).name = g.value(outer).name.clone();
    g.value_mut(inner).ty = g.value(outer).ty.clone();
    g.remove_node(consumer);
    g.replace_all_uses(outer, inner);
}

/// Removes the constant producing `v` if nothing reads it any more (weights replaced by
/// folded copies, parameters of a removed op).
pub fn drop_dead_const(g: &mut Graph, v: Value) {
    if let Some(p) = g.producer(v)
        && matches!(g.node(p).op, Op::Const(_))
        && g.use_count(v) == 0
    {
        g.remove_node(p);
    }
}

/// Adds a constant holding `t`, named after `name`.
pub fn add_const(g: &mut Graph, name: String, t: Tensor) -> Value {
    let ty = t.ty();
    let (_, outs) = g.add_node("", Op::Const(Const::new(t)), vec![], vec![name]);
    g.value_mut(outs[0]).ty = Some(ty);
    outs[0]
}

fn tensor_like(dtype: DType, shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_f64_fn(&TensorType::new(dtype, shape.to_vec()), |i| v[i])
}

/// New (weights, bias) of compute op `p` whose result is followed by the per-output-channel
/// affine map `y·scale + shift` (a BatchNormalization, or a Mul/Add by constants), or `None`
/// when the op's weights or bias are not constant floats of the expected shape. The output
/// channel is W's dim 0 for conv, the `M/group` blocks of dim 1 for conv_transpose, and the
/// result's columns for gemm and matmul (a 2-D B). Computed in f64, rounded once.
pub fn fold_affine(g: &Graph, p: NodeId, scale: &[f64], shift: &[f64]) -> Option<(Tensor, Tensor)> {
    let node = g.node(p);
    let w = const_tensor(g, node.input(1)?)?;
    if !w.dtype().is_float() {
        return None;
    }
    let b = match node.input(2) {
        Some(v) => Some(const_tensor(g, v)?),
        None => None,
    };
    let ws = w.shape().to_vec();
    let mut wv = w.to_f64_vec();
    let m = scale.len();
    if b.is_some_and(|b| b.len() != m && !matches!(node.op, Op::Gemm(_))) {
        return None;
    }
    let bias_out = |bv: Option<Vec<f64>>| -> Vec<f64> {
        (0..m)
            .map(|c| bv.as_ref().map_or(0.0, |b| b[c]) * scale[c] + shift[c])
            .collect()
    };
    match &node.op {
        // layout: per-channel constants of a channels-last conv are not recognised here.
        Op::Conv(c) if c.layout.is_nhwc() => None,
        Op::Conv(_) => {
            if ws.first() != Some(&m) {
                return None;
            }
            let block = wv.len() / m.max(1);
            for (i, v) in wv.iter_mut().enumerate() {
                *v *= scale[i / block.max(1)];
            }
            let bias = bias_out(b.map(|b| b.to_f64_vec()));
            Some((
                tensor_like(w.dtype(), &ws, &wv),
                tensor_like(w.dtype(), &[m], &bias),
            ))
        }
        Op::ConvTranspose(ct) => {
            // W is [C, M/group, k…]: output channel of W[c, j] is group(c)·M/group + j.
            let (c, mg) = (*ws.first()?, *ws.get(1)?);
            let group = ct.group;
            if mg * group != m || c % group != 0 {
                return None;
            }
            let kp: usize = ws[2..].iter().product();
            let cg = c / group;
            for (i, v) in wv.iter_mut().enumerate() {
                let (ci, j) = (i / (mg * kp), (i / kp) % mg);
                *v *= scale[(ci / cg) * mg + j];
            }
            let bias = bias_out(b.map(|b| b.to_f64_vec()));
            Some((
                tensor_like(w.dtype(), &ws, &wv),
                tensor_like(w.dtype(), &[m], &bias),
            ))
        }
        Op::Gemm(gm) => {
            // The result is [M, N]: BN's channels are the N columns of B'.
            if ws.len() != 2 {
                return None;
            }
            let n = if gm.trans_b { ws[0] } else { ws[1] };
            if n != m {
                return None;
            }
            for (i, v) in wv.iter_mut().enumerate() {
                let col = if gm.trans_b { i / ws[1] } else { i % n };
                *v *= scale[col];
            }
            let (c_shape, c_vals) = match b {
                None => (vec![n], bias_out(None)),
                Some(c) => gemm_bias(c, gm.beta as f64, n, scale, shift)?,
            };
            Some((
                tensor_like(w.dtype(), &ws, &wv),
                tensor_like(w.dtype(), &c_shape, &c_vals),
            ))
        }
        Op::MatMul(mm) => {
            // B is [K, N] ([N, K] with transB); the bias (if any) is one value per column.
            if ws.len() != 2 {
                return None;
            }
            let n = if mm.trans_b { ws[0] } else { ws[1] };
            if n != m {
                return None;
            }
            for (i, v) in wv.iter_mut().enumerate() {
                let col = if mm.trans_b { i / ws[1] } else { i % n };
                *v *= scale[col];
            }
            let bias = bias_out(b.map(|b| b.to_f64_vec()));
            Some((
                tensor_like(w.dtype(), &ws, &wv),
                tensor_like(w.dtype(), &[m], &bias),
            ))
        }
        _ => None,
    }
}

/// Gives compute op `p` the folded weights and bias (named after its result; an all-zero
/// bias where there was none is left out) and drops the old constants if nothing else reads
/// them. A gemm's `beta` is folded into the new C.
pub fn install_weights(g: &mut Graph, p: NodeId, w: Tensor, b: Tensor) {
    let (mut w_old, b_old) = (g.node(p).input(1), g.node(p).input(2));
    let base = g.value(g.node(p).outputs()[0]).name.clone();
    // A pure shift (a bias folded in) leaves the weights as they were: the same constant
    // keeps its name, by which a QDQ model's weight grid finds it again.
    if w_old.and_then(|v| const_tensor(g, v)) != Some(&w) {
        let w = add_const(g, format!("{base}_w"), w);
        g.set_input(p, 1, Some(w));
    } else {
        w_old = None;
    }
    // A scale alone leaves a missing bias zero: no need to add one.
    if b_old.is_some() || b.to_f64_vec().iter().any(|&v| v != 0.0) {
        let b = add_const(g, format!("{base}_b"), b);
        g.set_input(p, 2, Some(b));
    }
    if let Op::Gemm(gm) = g.op_mut(p) {
        gm.beta = 1.0;
    }
    for v in w_old.into_iter().chain(b_old) {
        drop_dead_const(g, v);
    }
}

/// `(beta·C − mean)·s + β` in the shape C and a row of N broadcast to.
fn gemm_bias(
    c: &Tensor,
    beta: f64,
    n: usize,
    scale: &[f64],
    shift: &[f64],
) -> Option<(Vec<usize>, Vec<f64>)> {
    let shape = crate::ops::util::broadcast_shapes(c.shape(), &[n]).ok()?;
    if shape.len() > 2 || shape.last() != Some(&n) {
        return None;
    }
    let c64 = c.cast(DType::F64);
    let arr = c64.as_array::<f64>().ok()?;
    let view = arr.broadcast(ndarray::IxDyn(&shape))?;
    let vals = view
        .iter()
        .enumerate()
        .map(|(i, v)| beta * v * scale[i % n] + shift[i % n])
        .collect();
    Some((shape, vals))
}

/// Applies `rewrite` to every node in schedule order, sweep after sweep, until a sweep
/// changes nothing (one rewrite can enable the next: Conv-BN-BN folds twice). Returns
/// whether anything changed.
pub fn sweep(
    g: &mut Graph,
    mut rewrite: impl FnMut(&mut Graph, NodeId) -> bool,
) -> kiln_core::Result<bool> {
    let mut changed = false;
    loop {
        let mut swept = false;
        for n in g.topo_order()? {
            if g.contains(n) && rewrite(g, n) {
                swept = true;
            }
        }
        if !swept {
            return Ok(changed);
        }
        changed = true;
    }
}
