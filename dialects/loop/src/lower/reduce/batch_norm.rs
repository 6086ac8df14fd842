//! A standalone `batch_normalization` (one `graph.fuse-batchnorm` could not fold into a conv,
//! e.g. after a concat in DenseNet): `(x - mean) · k + B` per channel, with
//! `k = scale / sqrt(var + epsilon)` folded at compile time in f64 as the interpreter does.
//! A subtract, a multiply and an add, never a fused multiply-add: that is the int8
//! simulator's contract (`kiln_quant::arith::batch_norm`), so the int8 program runs this
//! kernel as it is.
//!
//! Channels first, each (image, channel) plane is a contiguous lane with its three constants
//! splat (parallel over channels); channels last, and for `[N, C]`, each position's channels
//! are a lane read alongside the constant vectors (parallel over positions).

use super::super::{Arg, Lowered, NodeCx};
use super::lanes::map_lane;
use crate::builder::KernelBuilder;
use crate::ir::Type;
use kiln_graph::ops::BatchNormalization;

pub fn lower(cx: &NodeCx, bn: &BatchNormalization) -> Option<Vec<Lowered>> {
    let shape = cx.in_shape(0)?;
    let r = shape.len();
    if r < 2 || cx.outs.len() != 1 {
        return None;
    }
    let nhwc = bn.layout.is_nhwc();
    if nhwc && r < 3 {
        return None;
    }
    let c = if nhwc { shape[r - 1] } else { shape[1] };
    let p: Vec<Vec<f32>> = (1..5)
        .map(|k| cx.const_f32(k).filter(|v| v.len() == c))
        .collect::<Option<_>>()?;
    let k = bn.multipliers(&p[0], &p[3]);
    let total: usize = shape.iter().product();
    if total == 0 {
        return None;
    }
    let mut b = KernelBuilder::new(cx.name.as_str());
    let x = b.buf("x", Type::F32, total, true);
    let mb = b.buf("mean", Type::F32, c, true);
    let kb = b.buf("k", Type::F32, c, true);
    let bb = b.buf("bias", Type::F32, c, true);
    let y = b.buf("y", Type::F32, total, false);
    let inner: usize = shape[2..].iter().product();
    if nhwc || inner == 1 {
        // Rows of `c` channels.
        b.parallel(0, (total / c) as i64, 1, |b, row| {
            let off = b.mul_imm(row, c as i64);
            map_lane(b, off, c, &|b, ty, pos| {
                let v = b.load(ty, x, pos.abs, pos.disp);
                let m = b.load(ty, mb, pos.col, pos.disp);
                let kv = b.load(ty, kb, pos.col, pos.disp);
                let bv = b.load(ty, bb, pos.col, pos.disp);
                let d = b.sub(v, m);
                let o = b.mul(d, kv);
                let o = b.add(o, bv);
                b.store(y, pos.abs, pos.disp, o);
            });
        });
    } else {
        let n = shape[0];
        b.parallel(0, c as i64, 1, |b, ch| {
            let m = b.load(Type::F32, mb, ch, 0);
            let kv = b.load(Type::F32, kb, ch, 0);
            let bv = b.load(Type::F32, bb, ch, 0);
            let m4 = b.splat(Type::F32X4, m);
            let k4 = b.splat(Type::F32X4, kv);
            let b4 = b.splat(Type::F32X4, bv);
            b.for_(0, n as i64, 1, |b, img| {
                let plane = b.mul_imm(img, c as i64);
                let plane = b.add(plane, ch);
                let off = b.mul_imm(plane, inner as i64);
                map_lane(b, off, inner, &|b, ty, pos| {
                    let vec = ty.is_vector();
                    let v = b.load(ty, x, pos.abs, pos.disp);
                    let d = b.sub(v, if vec { m4 } else { m });
                    let o = b.mul(d, if vec { k4 } else { kv });
                    let o = b.add(o, if vec { b4 } else { bv });
                    b.store(y, pos.abs, pos.disp, o);
                });
            });
        });
    }
    let args = vec![
        Arg::Operand(0),
        Arg::Const(p[2].as_slice().into()),
        Arg::Const(k.into()),
        Arg::Const(p[1].as_slice().into()),
        Arg::Result(0),
    ];
    Some(vec![Lowered {
        kernel: b.finish(),
        args,
    }])
}
