//! The f32 contracts: the arithmetic of the fp32 kernels that int8 programs run for
//! Softmax, LayerNormalization, BatchNormalization and EltwiseSum, written with [`arith`]'s
//! functions so the simulator computes what those kernels compute, bit for bit.

use crate::arith;
use kiln_core::{Error, ErrorKind, Result, Tensor, bail};
use kiln_graph::ops::BatchNormalization;
use ndarray::{ArrayD, IxDyn};

/// `axis` of a rank-`rank` tensor, counted from the front.
fn axis_of(op: &str, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let ax = if axis < 0 { axis + r } else { axis };
    if !(0..r).contains(&ax) {
        bail!(Eval, "{op}: axis {axis} is out of range for rank {rank}");
    }
    Ok(ax as usize)
}

/// LayerNormalization (its normalised result only) by [`arith::layer_norm`].
pub(super) fn layer_norm(ins: &[Option<&Tensor>], axis: i64, eps: f32) -> Result<Tensor> {
    let (Some(Some(x)), Some(Some(scale))) = (ins.first(), ins.get(1)) else {
        bail!(Eval, "layer_normalization: an operand is missing");
    };
    let x = x.as_f32()?;
    let shape = x.shape().to_vec();
    let ax = axis_of("layer_normalization", axis, shape.len())?;
    let full = |t: &Tensor, what: &str| -> Result<Vec<f32>> {
        let a = t.as_f32()?;
        let b = a.broadcast(IxDyn(&shape)).ok_or_else(|| {
            Error::new(
                ErrorKind::Shape,
                format!("layer_normalization: {what} does not broadcast to X {shape:?}"),
            )
        })?;
        Ok(b.iter().copied().collect())
    };
    let s = full(scale, "Scale")?;
    let b = match ins.get(2) {
        Some(Some(b)) => Some(full(b, "B")?),
        _ => None,
    };
    let xs: Vec<f32> = x.iter().copied().collect();
    let cols = shape[ax..].iter().product();
    Tensor::from_vec(&shape, arith::layer_norm(&xs, cols, eps, &s, b.as_deref()))
}

/// BatchNormalization by [`arith::batch_norm`], its operands checked as the graph op does.
pub(super) fn batch_norm(bn: &BatchNormalization, ins: &[Option<&Tensor>]) -> Result<Tensor> {
    let operand = |k: usize| match ins.get(k) {
        Some(Some(t)) => Ok(t.as_f32()?),
        _ => bail!(Eval, "batch_normalization: operand {k} is missing"),
    };
    let x = operand(0)?;
    let shape = x.shape().to_vec();
    let nhwc = bn.layout.is_nhwc();
    if shape.len() < 2 + nhwc as usize {
        bail!(
            Shape,
            "batch_normalization: X of shape {shape:?} has no channel axis"
        );
    }
    let (c, inner) = if nhwc {
        (shape[shape.len() - 1], 1)
    } else {
        (shape[1], shape[2..].iter().product())
    };
    let mut p = Vec::with_capacity(4);
    for k in 1..5 {
        let t = operand(k)?;
        if t.shape() != [c] {
            bail!(
                Shape,
                "batch_normalization: operand {k} must have shape [{c}], got {:?}",
                t.shape()
            );
        }
        p.push(t.iter().copied().collect::<Vec<f32>>());
    }
    let k = bn.multipliers(&p[0], &p[3]);
    let xs: Vec<f32> = x.iter().copied().collect();
    let y = arith::batch_norm(&xs, |i| i / inner.max(1) % c, &p[2], &k, &p[1]);
    Tensor::from_vec(&shape, y)
}

/// Softmax by [`arith::softmax`] (f32, kiln's `exp`, the kernel's order of additions).
pub(super) fn softmax(ins: &[Option<&Tensor>], axis: i64) -> Result<Tensor> {
    let Some(Some(t)) = ins.first() else {
        bail!(Eval, "softmax: the operand is missing");
    };
    let a = t.as_f32()?;
    let shape = a.shape().to_vec();
    let ax = axis_of("softmax", axis, shape.len())?;
    let x: Vec<f32> = a.iter().copied().collect();
    let y = arith::softmax(&x, shape[ax], shape[ax + 1..].iter().product());
    Tensor::from_vec(&shape, y)
}

/// EltwiseSum by [`arith::eltwise_sum`], with broadcasting; f32 operands only.
pub(super) fn eltwise_sum(ins: &[Option<&Tensor>], coeffs: &[f32]) -> Result<Tensor> {
    let mut xs = Vec::with_capacity(ins.len());
    let mut shape: Vec<usize> = Vec::new();
    for (i, t) in ins.iter().enumerate() {
        let Some(t) = t else {
            bail!(Eval, "eltwise_sum: operand {i} is missing");
        };
        let a = t.as_f32()?;
        shape = kiln_graph::ops::util::broadcast_shapes(&shape, a.shape())?;
        xs.push(a);
    }
    if xs.len() != coeffs.len() || xs.is_empty() {
        bail!(
            Eval,
            "eltwise_sum: {} operands for {} coefficients",
            xs.len(),
            coeffs.len()
        );
    }
    let dim = IxDyn(&shape);
    // Row-major operands of the full shape or of one element read by index (the common
    // case); anything else through broadcast views.
    let flat = kiln_graph::ops::eltwise_sum::flat_operands(&xs, &shape);
    let n: usize = shape.iter().product();
    let data: Vec<f32> = match flat {
        Some(ops) => (0..n)
            .map(|i| {
                arith::eltwise_sum(
                    ops.iter().map(|(s, one)| s[if *one { 0 } else { i }]),
                    coeffs,
                )
            })
            .collect(),
        None => {
            let views: Vec<_> = xs
                .iter()
                .map(|a| a.broadcast(dim.clone()).expect("shapes broadcast"))
                .collect();
            let mut its: Vec<_> = views.iter().map(|v| v.iter()).collect();
            (0..n)
                .map(|_| {
                    let vals: Vec<f32> = its
                        .iter_mut()
                        .map(|it| *it.next().expect("n elements"))
                        .collect();
                    arith::eltwise_sum(vals.into_iter(), coeffs)
                })
                .collect()
        }
    };
    Ok(Tensor::F32(
        ArrayD::from_shape_vec(dim, data).expect("same shape"),
    ))
}
