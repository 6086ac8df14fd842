//! `graph.fuse-batchnorm`: folds an inference BatchNormalization with constant parameters
//! into the preceding conv, conv_transpose or gemm:
//! `W' = W·s` per output channel and `b' = (b − mean)·s + β`, with `s = γ/√(var + ε)`.
//!
//! Only a compute op with nothing fused yet qualifies (BN after an activation or residual is
//! not linear in the accumulator), whose result the BN alone reads, with constant weights and
//! bias. Chains (Conv-BN-BN) fold one BN at a time; the pass sweeps until nothing changes.
//! Folding happens in f64 and rounds once to the weights' type.

use super::fuse_util::single_private_use;
use super::fuse_util::{absorb, add_const, bare_compute, const_tensor, drop_dead_const};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::Op;
use kiln_core::{DType, Pass, Result, Tensor, TensorType};

pub struct FuseBatchNorm;

impl Pass<Graph> for FuseBatchNorm {
    fn name(&self) -> &'static str {
        "graph.fuse-batchnorm"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        loop {
            let mut swept = false;
            for n in g.topo_order()? {
                if g.contains(n) && try_fold(g, n) {
                    swept = true;
                }
            }
            if !swept {
                break;
            }
            changed = true;
        }
        Ok(changed)
    }
}

/// The folded per-channel scale `s` and shift `β − mean·s` of a BN with constant operands.
fn bn_affine(g: &Graph, bn: NodeId) -> Option<(Vec<f64>, Vec<f64>)> {
    let node = g.node(bn);
    let Op::BatchNormalization(op) = &node.op else {
        return None;
    };
    if node.outputs().len() != 1 {
        return None;
    }
    let mut p = Vec::with_capacity(4);
    for i in 1..=4 {
        p.push(const_tensor(g, node.input(i)?)?.to_f64_vec());
    }
    // Unverified IR may disagree on lengths; such a BN is simply not folded.
    if p.iter().any(|v| v.len() != p[0].len()) {
        return None;
    }
    let (gamma, beta, mean, var) = (&p[0], &p[1], &p[2], &p[3]);
    let eps = op.epsilon as f64;
    let scale: Vec<f64> = gamma
        .iter()
        .zip(var)
        .map(|(g, v)| g / (v + eps).sqrt())
        .collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    Some((scale, shift))
}

fn tensor_like(dtype: DType, shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_f64_fn(&TensorType::new(dtype, shape.to_vec()), |i| v[i])
}

fn try_fold(g: &mut Graph, bn: NodeId) -> bool {
    let Some(x) = g.node(bn).input(0) else {
        return false;
    };
    let Some(p) = g.producer(x) else { return false };
    if !bare_compute(g, p) || !single_private_use(g, x) {
        return false;
    }
    let Some((scale, shift)) = bn_affine(g, bn) else {
        return false;
    };
    let Some(folded) = fold_weights(g, p, &scale, &shift) else {
        return false;
    };
    let (w_old, b_old) = (g.node(p).input(1), g.node(p).input(2));
    let base = g.value(x).name.clone();
    let (w, b) = folded;
    let w = add_const(g, format!("{base}_w"), w);
    let b = add_const(g, format!("{base}_b"), b);
    g.set_input(p, 1, Some(w));
    g.set_input(p, 2, Some(b));
    if let Op::Gemm(gm) = g.op_mut(p) {
        gm.beta = 1.0;
    }
    let params: Vec<Value> = g.node(bn).inputs()[1..].iter().flatten().copied().collect();
    absorb(g, p, bn);
    for v in params.into_iter().chain(w_old).chain(b_old) {
        drop_dead_const(g, v);
    }
    true
}

/// New (weights, bias) of compute op `p` with the BN folded in, or `None` when the op's
/// weights or bias are not constant floats of the expected shape.
fn fold_weights(g: &Graph, p: NodeId, scale: &[f64], shift: &[f64]) -> Option<(Tensor, Tensor)> {
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
        _ => None,
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
