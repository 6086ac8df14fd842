//! `graph.conv-transpose-to-conv`: a transposed convolution whose kernel equals its stride
//! (the ×2 upsampling of segmentation and text-detection heads, DBNet's included) writes
//! every output pixel from exactly one input pixel: output `(h·b + i, w·b + j, c)` is
//! `Σ_ci x[ci, h, w]·W[ci, c, i, j] + bias[c]`. That is a 1×1 convolution to `b²·C_out`
//! channels — channel `(i·b + j)·C_out + c` — followed by a DCR `depth_to_space`, which
//! moves those channels into the `b × b` block. The rewrite turns an op kiln has no kernel
//! for into the GEMM every level handles (fp32, int8, layouts) and a pure copy. The bias
//! and a fused activation are per channel and element-wise, so they stay in the conv.
//!
//! Matched: 2-D, one group, square kernel equal to the strides, no padding, dilation 1,
//! no output padding or explicit output shape, constant f32 weight (and bias), no fused
//! residual or PRelu slope.

use super::pattern::{add_const, const_tensor, out, replace};
use crate::graph::{Graph, NodeId};
use crate::ops::activation::{RESIDUAL, SLOPE};
use crate::ops::{
    Activation, BlockMode, Conv, DepthToSpace, Op, spatial::AutoPad, spatial::Window,
};
use kiln_core::{Pass, Result, Tensor, TensorType};

pub struct ConvTransposeToConv;

impl Pass<Graph> for ConvTransposeToConv {
    fn name(&self) -> &'static str {
        "graph.conv-transpose-to-conv"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        super::pattern::for_each_node(g, rewrite)
    }
}

/// The block size `b` and fused activation when `n` is a transposed conv the rewrite
/// applies to. A fused residual or PRelu slope has the upsampled shape, which the 1×1 conv
/// does not produce, so such an op is left alone.
fn block(g: &Graph, n: NodeId) -> Option<(usize, Activation)> {
    let node = g.node(n);
    let Op::ConvTranspose(ct) = &node.op else {
        return None;
    };
    let w = &ct.window;
    let b = *w.kernel_shape.first()?;
    let ones = |v: &[i64]| v.iter().all(|&d| d == 1);
    let zeros = |v: &[i64]| v.iter().all(|&d| d == 0);
    let plain = ct.group == 1
        && w.kernel_shape == [b, b]
        && w.strides == [b, b]
        && b >= 2
        && zeros(&w.pads)
        && ones(&w.dilations)
        && w.auto_pad == AutoPad::NotSet
        && zeros(&ct.output_padding)
        && ct.output_shape.is_empty()
        && node.input(RESIDUAL).is_none()
        && node.input(SLOPE).is_none()
        && ct.act != Activation::PRelu
        && node.outputs().len() == 1;
    let x = g.value(node.input(0)?).ty.as_ref()?;
    (plain && x.shape.len() == 4).then_some((b as usize, ct.act))
}

fn rewrite(g: &mut Graph, n: NodeId) -> bool {
    let Some((b, act)) = block(g, n) else {
        return false;
    };
    let node = g.node(n);
    let (Some(wv), x) = (node.input(1), node.input(0)) else {
        return false;
    };
    let Some(Ok(w)) = const_tensor(g, wv).map(|t| t.as_f32()) else {
        return false;
    };
    let bias = match node.input(2) {
        None => None,
        Some(v) => match const_tensor(g, v).map(|t| t.as_f32()) {
            Some(Ok(t)) if t.ndim() == 1 => Some(t.iter().copied().collect::<Vec<f32>>()),
            _ => return false,
        },
    };
    let &[ci, co, kh, kw] = w.shape() else {
        return false;
    };
    let Some(xt) = x.and_then(|v| g.value(v).ty.clone()) else {
        return false;
    };
    if kh != b
        || kw != b
        || xt.dtype != kiln_core::DType::F32
        || bias.as_ref().is_some_and(|v| v.len() != co)
    {
        return false;
    }
    let wide = b * b * co;
    // W'[(i·b + j)·C_out + c, ci] = W[ci, c, i, j].
    let mut w2 = vec![0.0f32; wide * ci];
    for (k, row) in w2.chunks_mut(ci).enumerate() {
        let (ij, c) = (k / co, k % co);
        let (i, j) = (ij / b, ij % b);
        for (cin, dst) in row.iter_mut().enumerate() {
            *dst = w[[cin, c, i, j]];
        }
    }
    let b2: Option<Vec<f32>> = bias.map(|v| (0..wide).map(|k| v[k % co]).collect());
    let (name, vname) = (node.name.clone(), g.value(out(g, n)).name.clone());
    let Ok(wt) = Tensor::from_vec(&[wide, ci, 1, 1], w2) else {
        return false;
    };
    let wc = add_const(g, format!("{vname}_conv_w"), wt);
    let bc = match b2.map(|v| Tensor::from_vec(&[wide], v)) {
        Some(Ok(t)) => Some(add_const(g, format!("{vname}_conv_b"), t)),
        Some(Err(_)) => return false,
        None => None,
    };
    let conv = Op::Conv(Conv {
        window: Window {
            kernel_shape: vec![1, 1],
            strides: vec![1, 1],
            pads: vec![0; 4],
            dilations: vec![1, 1],
            auto_pad: AutoPad::NotSet,
        },
        group: 1,
        act,
        layout: Default::default(),
    });
    let mut inputs = vec![x, Some(wc)];
    inputs.extend(bc.map(Some));
    let loc = format!("{}/conv", if name.is_empty() { &vname } else { &name });
    let (_, outs) = g.add_node(loc, conv, inputs, vec![format!("{vname}_wide")]);
    let wide_ty = TensorType::new(xt.dtype, vec![xt.shape[0], wide, xt.shape[2], xt.shape[3]]);
    g.value_mut(outs[0]).ty = Some(wide_ty);
    let shuffle = Op::DepthToSpace(DepthToSpace {
        blocksize: b,
        mode: BlockMode::Dcr,
        layout: Default::default(),
    });
    replace(g, n, shuffle, vec![Some(outs[0])], &[n]);
    true
}
