//! Grouped (not depthwise) convolution in NHWC, through the NCHW grouped kernel.
//!
//! Grouped convolutions with several channels per group (ShuffleNet, ResNeXt) are rare enough
//! that a dedicated NHWC kernel does not pay yet: the input is transposed to NCHW in scratch,
//! the NCHW grouped kernel adds the bias, and the transpose back applies the rest of the fused
//! epilogue (residual, activation) on the way — `act((conv + b) + Y)`, the reference's order.

use super::conv::{Shape2, grouped};
use super::elementwise::{View, broadcast_strides, dense_strides, map_views};
use super::{Arg, Lowered, NodeCx, act};
use kiln_core::TensorType;
use kiln_graph::ops::activation::{Activation, RESIDUAL, SLOPE};
use kiln_graph::ops::{Conv, Layout};

fn aligned(bytes: usize) -> usize {
    bytes.div_ceil(64) * 64
}

pub(super) fn lower(conv: &Conv, cx: &NodeCx, s: &Shape2, w: &[f32]) -> Option<Vec<Lowered>> {
    let (n, c, h, wd, m, oh, ow) = (s.n, s.c, s.h, s.w, s.m, s.oh, s.ow);
    let x_bytes = n * c * h * wd * 4;
    let y_at = aligned(x_bytes);
    let y_bytes = n * m * oh * ow * 4;
    // 1. x: NHWC → NCHW.
    let to_nchw = map_views(
        &format!("{}_to_nchw", cx.name),
        &[n, c, h, wd],
        &[View {
            arg: Arg::Operand(0),
            len: n * h * wd * c,
            off: 0,
            strides: vec![(h * wd * c) as i64, 1, (wd * c) as i64, c as i64],
        }],
        &View {
            arg: Arg::ScratchAt(0, x_bytes),
            len: n * c * h * wd,
            off: 0,
            strides: dense_strides(&[n, c, h, wd]),
        },
        &|_, v| v[0],
    );
    // 2. The NCHW grouped convolution with bias only.
    let x_ty = TensorType::new(kiln_core::DType::F32, vec![n, c, h, wd]);
    let out_ty = TensorType::new(kiln_core::DType::F32, vec![n, m, oh, ow]);
    let inner = Conv {
        window: conv.window.clone(),
        group: conv.group,
        act: Activation::None,
        layout: Layout::Nchw,
    };
    let icx = NodeCx {
        name: format!("{}_nchw", cx.name),
        ins: vec![
            Some(&x_ty),
            cx.ins.get(1).copied().flatten(),
            cx.ins.get(2).copied().flatten(),
        ],
        consts: vec![
            None,
            cx.consts.get(1).copied().flatten(),
            cx.consts.get(2).copied().flatten(),
        ],
        outs: vec![out_ty],
    };
    let mut s_nchw = s.clone();
    s_nchw.nhwc = false;
    let mut kernels = vec![to_nchw];
    for mut l in grouped(&inner, &icx, &s_nchw, w)? {
        for a in l.args.iter_mut() {
            let new = match &*a {
                Arg::Operand(0) => Arg::ScratchAt(0, x_bytes),
                Arg::Result(0) => Arg::ScratchAt(y_at, y_bytes),
                other => other.clone(),
            };
            *a = new;
        }
        kernels.push(l);
    }
    // 3. Back to NHWC with the residual and the activation.
    let out = [n, oh, ow, m];
    let mut operands = vec![View {
        arg: Arg::ScratchAt(y_at, y_bytes),
        len: n * m * oh * ow,
        off: 0,
        strides: vec![(m * oh * ow) as i64, (ow) as i64, 1, (oh * ow) as i64],
    }];
    let mut has = Vec::new();
    for k in [RESIDUAL, SLOPE] {
        if let Some(sh) = cx.in_shape(k) {
            operands.push(View {
                arg: Arg::Operand(k),
                len: sh.iter().product(),
                off: 0,
                strides: broadcast_strides(sh, &out),
            });
            has.push(k);
        }
    }
    let act_kind = conv.act;
    let res = has.iter().position(|&k| k == RESIDUAL).map(|i| i + 1);
    let slope = has.iter().position(|&k| k == SLOPE).map(|i| i + 1);
    kernels.push(map_views(
        &format!("{}_to_nhwc", cx.name),
        &out,
        &operands,
        &View {
            arg: Arg::Result(0),
            len: n * oh * ow * m,
            off: 0,
            strides: dense_strides(&out),
        },
        &move |b, v| {
            let mut x = v[0];
            if let Some(i) = res {
                x = b.add(x, v[i]);
            }
            act::activation(b, &act_kind, x, slope.map(|i| v[i]))
        },
    ));
    Some(kernels)
}
