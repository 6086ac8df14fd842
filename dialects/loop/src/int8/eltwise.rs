//! Integer paths of the element-wise ops: Add/Sub/Mul with requantisation, global average
//! pooling over centred codes, and lookup tables.
//!
//! Codes never leave registers: an operand's centred code `q − z` is an integral f32 (see
//! [`super::quantize`]), and every product or sum formed here stays below 2^24 in
//! magnitude, so f32 holds it exactly — the same numbers the contract computes in i32.

use super::Cx;
use super::codes::CodeSpec;
use super::quantize::{self, clamp_codes, round};
use crate::builder::KernelBuilder;
use crate::ir::{Type, Val};
use crate::lower::elementwise::map;
use crate::lower::{Arg, Lowered, NodeCx};
use crate::program::Piece;
use kiln_core::Result;
use kiln_graph::NodeId;
use kiln_graph::ops::{BinaryKind, Layout, Op};
use kiln_quant::Rounding;
use kiln_quant::arith::QParams;
use kiln_quant::plan::{BinaryPlan, quantises};

/// Whether codes of `p` are narrow enough for exact f32 products (8-bit ranges).
fn narrow(p: &QParams) -> bool {
    quantize::kernel_params(p) && p.qmax - p.qmin <= 255
}

/// How operand `k` becomes codes of `p`, as the simulator does it: a raw graph input is
/// fake-quantised first; then the operand quantises with its TQC's rounding when that TQC
/// quantises, else its codes are recovered (round half to even). When the stored value is
/// known to be on `p`'s grid, both are the exact integer `(x·(1/s))` rounded to nearest
/// (see [`quantize::recover_on_grid`]).
pub(super) fn code_spec(cx: &Cx, n: NodeId, k: usize, p: &QParams) -> Option<CodeSpec> {
    let q = &cx.q;
    let v = q.graph.node(n).input(k)?;
    let pre: Vec<QParams> = cx.pending.get(&v).cloned().into_iter().collect();
    if !pre.iter().all(quantize::kernel_params) || !narrow(p) {
        return None;
    }
    let r = quantises(q, q.in_tqc(n, k)).map_or(Rounding::HalfEven, |pin| pin.rounding);
    let on_grid = pre.is_empty()
        && r != Rounding::Up
        && cx
            .on_grid
            .get(&v)
            .is_some_and(|g| quantize::same_grid(g, p));
    Some(CodeSpec {
        pre,
        p: p.clone(),
        r,
        on_grid,
    })
}

/// The centred code of one stored value or vector, as an integral f32.
fn code(b: &mut KernelBuilder, x: Val, s: &CodeSpec) -> Val {
    let ty = b.ty(x);
    let i = s.centred_int(b, x);
    b.cast(ty, i)
}

/// `dequant(clamp(R(t) + z))` for a float `t`.
fn requant(b: &mut KernelBuilder, t: Val, out: &QParams) -> Val {
    let ty = b.ty(t);
    let t = round(b, t, out.rounding);
    let c = clamp_codes(b, t, out, out.qmin, out.qmax);
    let s = b.fsplat(ty, out.s());
    b.mul(c, s)
}

pub(super) fn binary(cx: &Cx, n: NodeId, ncx: &NodeCx, p: &BinaryPlan) -> Option<Vec<Piece>> {
    let (sa, sb) = (code_spec(cx, n, 0, &p.a)?, code_spec(cx, n, 1, &p.b)?);
    if !narrow(&p.out) {
        return None;
    }
    let shapes = (ncx.in_shape(0)?.to_vec(), ncx.in_shape(1)?.to_vec());
    let (kind, m, out) = (p.kind, p.m, p.out.clone());
    let l = map(
        &ncx.name,
        ncx.out_shape(0),
        &[(Arg::Operand(0), shapes.0), (Arg::Operand(1), shapes.1)],
        &move |b, v| {
            let ty = b.ty(v[0]);
            let ca = code(b, v[0], &sa);
            let cb = code(b, v[1], &sb);
            let t = if kind == BinaryKind::Mul {
                let prod = b.mul(ca, cb);
                let mm = b.fsplat(ty, m.0);
                b.mul(prod, mm)
            } else {
                let (ma, mb) = (b.fsplat(ty, m.0), b.fsplat(ty, m.1));
                let x = b.mul(ca, ma);
                let y = b.mul(cb, mb);
                if kind == BinaryKind::Sub {
                    b.sub(x, y)
                } else {
                    b.add(x, y)
                }
            };
            requant(b, t, &out)
        },
    );
    let mut pieces = vec![Piece::Kernel(l)];
    pieces.extend(cx.result_fq(n, ncx, Some(&p.out))?);
    Some(pieces)
}

/// `out = table[code(x) − qmin]`, the table holding the dequantised result codes.
pub(super) fn lut(
    cx: &Cx,
    n: NodeId,
    ncx: &NodeCx,
    x: &QParams,
    out: &QParams,
    table: &[i32],
) -> Option<Vec<Piece>> {
    let spec = code_spec(cx, n, 0, x)?;
    if !quantize::kernel_params(out) {
        return None;
    }
    let len: usize = ncx.out_shape(0).iter().product();
    let values: Vec<f32> = table
        .iter()
        .map(|&c| kiln_quant::arith::dequantize(c, out.s(), out.z()))
        .collect();
    let mut b = KernelBuilder::new(&ncx.name);
    let xb = b.buf("x", Type::F32, len, true);
    let tb = b.buf("table", Type::F32, values.len(), true);
    let ob = b.buf("out", Type::F32, len, false);
    let off = (x.z() - x.qmin) as i64;
    b.parallel(0, len as i64, 1, |b, i| {
        let v = b.load(Type::F32, xb, i, 0);
        let c = spec.centred_int(b, v);
        let o = b.iconst(Type::I32, off);
        let c = b.add(c, o);
        let c = b.cast(Type::Index, c);
        let y = b.load(Type::F32, tb, c, 0);
        b.store(ob, i, 0, y);
    });
    let l = Lowered {
        kernel: b.finish(),
        args: vec![Arg::Operand(0), Arg::Const(values), Arg::Result(0)],
    };
    let mut pieces = vec![Piece::Kernel(l)];
    pieces.extend(cx.result_fq(n, ncx, Some(out))?);
    Some(pieces)
}

/// Global average pooling: `requant(f32(Σ (q − z))·m)` per (batch, channel).
pub(super) fn global_avg(
    cx: &Cx,
    n: NodeId,
    ncx: &NodeCx,
    x: &QParams,
    out: &QParams,
    m: f32,
) -> Result<Option<Vec<Piece>>> {
    let node = cx.q.graph.node(n);
    let Op::GlobalPool(gp) = &node.op else {
        return Ok(None);
    };
    let (Some(spec), Some(shape)) = (code_spec(cx, n, 0, x), ncx.in_shape(0)) else {
        return Ok(None);
    };
    if !narrow(out) || shape.len() < 3 {
        return Ok(None);
    }
    let nhwc = gp.layout == Layout::Nhwc;
    let (bn, c) = (
        shape[0],
        if nhwc {
            shape[shape.len() - 1]
        } else {
            shape[1]
        },
    );
    let hw: usize = shape.iter().product::<usize>() / (bn * c).max(1);
    let len = bn * c * hw;
    // Point p of channel ch in batch i: NHWC (i·hw + p)·c + ch; NCHW (i·c + ch)·hw + p.
    let (pstride, cstride) = if nhwc { (c, 1) } else { (1, hw) };
    let mut b = KernelBuilder::new(&ncx.name);
    let xb = b.buf("x", Type::F32, len, true);
    let ob = b.buf("out", Type::F32, bn * c, false);
    let out = out.clone();
    // Channels last with whole vectors: four channels per step, points walked in order.
    let lanes = if nhwc && c % 4 == 0 { 4 } else { 1 };
    let (vty, ity) = if lanes == 4 {
        (Type::F32X4, Type::I32X4)
    } else {
        (Type::F32, Type::I32)
    };
    b.parallel(0, (bn * c) as i64, lanes, |b, r| {
        let cv = b.index(c as i64);
        let i = b.binary(crate::ir::BinOp::Div, r, cv);
        let im = b.mul_imm(i, c as i64);
        let ch = b.sub(r, im);
        let base = b.mul_imm(i, (c * hw) as i64);
        let co = b.mul_imm(ch, cstride as i64);
        let base = b.add(base, co);
        let zero = b.iconst(Type::I32, 0);
        let zero = if lanes == 4 { b.splat(ity, zero) } else { zero };
        let sum = b.loop_(0, hw as i64, 1, false, &[zero], |b, p, acc| {
            let po = b.mul_imm(p, pstride as i64);
            let o = b.add(base, po);
            let v = b.load(vty, xb, o, 0);
            let ci = spec.centred_int(b, v);
            vec![b.add(acc[0], ci)]
        });
        let f = b.cast(vty, sum[0]);
        let mm = b.fsplat(vty, m);
        let t = b.mul(f, mm);
        let y = requant(b, t, &out);
        b.store(ob, r, 0, y);
    });
    let l = Lowered {
        kernel: b.finish(),
        args: vec![Arg::Operand(0), Arg::Result(0)],
    };
    let mut pieces = vec![Piece::Kernel(l)];
    let Some(fq) = cx.result_fq(n, ncx, Some(&out)) else {
        return Ok(None);
    };
    pieces.extend(fq);
    Ok(Some(pieces))
}
