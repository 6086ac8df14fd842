//! Integer paths of the element-wise ops: Add/Sub/Mul with requantisation, global average
//! pooling over centred codes, and lookup tables.
//!
//! Codes never leave registers: an operand's centred code `q − z` is an integral f32 (see
//! [`super::quantize`]), and every product or sum formed here stays below 2^24 in
//! magnitude, so f32 holds it exactly — the same numbers the contract computes in i32.

use super::Cx;
use super::coded::{Operand, Output, map_codes};
use super::codes::CodeSpec;
use super::quantize::{self, clamp_codes, round};
use super::tame;
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

/// The centred code of a one-element constant operand, computed as [`code`]
/// would at run time, so the kernel holds a constant instead of a per-lane quantisation.
fn const_code(ncx: &NodeCx, k: usize, s: &CodeSpec) -> Option<f32> {
    use kiln_quant::arith;
    let [mut x] = ncx.const_f32(k)?[..] else {
        return None;
    };
    for p in &s.pre {
        x = arith::dequantize(p.quantize(x, 0), p.s(), p.z());
    }
    let p = &s.p;
    let q = if s.on_grid {
        arith::recover(x, p.s(), p.z(), p.qmin, p.qmax)
    } else {
        arith::quantize(x, p.s(), p.z(), p.qmin, p.qmax, s.r)
    };
    Some((q - p.z()) as f32)
}

/// `dequant(clamp(R(t) + z))` for a float `t`; `tame` when `t` cannot be NaN (see
/// [`super::tame`]).
pub(super) fn requant(b: &mut KernelBuilder, t: Val, out: &QParams, tame: bool) -> Val {
    if tame {
        return tame::dequant_of(b, t, out, out.qmin, out.qmax);
    }
    let ty = b.ty(t);
    let t = round(b, t, out.rounding);
    let c = clamp_codes(b, t, out, out.qmin, out.qmax);
    let s = b.fsplat(ty, out.s());
    b.mul(c, s)
}

pub(super) fn binary(cx: &mut Cx, n: NodeId, ncx: &NodeCx, p: &BinaryPlan) -> Option<Vec<Piece>> {
    let (sa, sb) = (code_spec(cx, n, 0, &p.a)?, code_spec(cx, n, 1, &p.b)?);
    if !narrow(&p.out) {
        return None;
    }
    let shapes = (ncx.in_shape(0)?.to_vec(), ncx.in_shape(1)?.to_vec());
    for (k, s) in [&sa, &sb].into_iter().enumerate() {
        if s.on_grid {
            cx.could_read(n, k);
        }
    }
    cx.could_write(n, 0, &p.out);
    let (kind, m, out) = (p.kind, p.m, p.out.clone());
    // Centred codes are integers within ±255, so `t` is finite when the multipliers are.
    let tame = m.0.is_finite() && (kind == BinaryKind::Mul || m.1.is_finite());
    // `t` from the operands' centred codes (integral f32 scalars or vectors).
    let t = move |b: &mut KernelBuilder, c: &[Val]| {
        let ty = b.ty(c[0]);
        if kind == BinaryKind::Mul {
            let prod = b.mul(c[0], c[1]);
            let mm = b.fsplat(ty, m.0);
            b.mul(prod, mm)
        } else {
            let (ma, mb) = (b.fsplat(ty, m.0), b.fsplat(ty, m.1));
            let x = b.mul(c[0], ma);
            let y = b.mul(c[1], mb);
            if kind == BinaryKind::Sub {
                b.sub(x, y)
            } else {
                b.add(x, y)
            }
        }
    };
    let coded = (
        cx.in_codes(n, 0).is_some(),
        cx.in_codes(n, 1).is_some(),
        cx.out_codes(n, 0).is_some(),
    );
    let consts = [const_code(ncx, 0, &sa), const_code(ncx, 1, &sb)];
    let l = if coded == (false, false, false) {
        map(
            &ncx.name,
            ncx.out_shape(0),
            &[(Arg::Operand(0), shapes.0), (Arg::Operand(1), shapes.1)],
            &move |b, v| {
                // a one-element constant's code is a compile-time constant.
                let mut c = [v[0], v[1]];
                for (k, s) in [&sa, &sb].into_iter().enumerate() {
                    let ty = b.ty(v[k]);
                    c[k] = match consts[k] {
                        Some(x) => b.fsplat(ty, x),
                        None => code(b, v[k], s),
                    };
                }
                let (ca, cb) = (c[0], c[1]);
                let t = t(b, &[ca, cb]);
                requant(b, t, &out, tame)
            },
        )
    } else {
        let ops = [
            Operand {
                shape: shapes.0,
                spec: sa,
                coded: coded.0,
            },
            Operand {
                shape: shapes.1,
                spec: sb,
                coded: coded.1,
            },
        ];
        let o = Output {
            shape: ncx.out_shape(0),
            p: &out,
            coded: coded.2,
            tame,
        };
        Lowered {
            kernel: map_codes(&ncx.name, &ops, &o, &t),
            args: vec![Arg::Operand(0), Arg::Operand(1), Arg::Result(0)],
        }
    };
    let mut pieces = vec![Piece::Kernel(l)];
    pieces.extend(cx.result_fq(n, ncx, Some(&p.out))?);
    Some(pieces)
}

/// The tables of a lookup: one for every element (`channels == 1`), or one per channel,
/// element `i` in channel `(i / inner) % channels` (see [`IntPlan::ChannelLut`]).
///
/// [`IntPlan::ChannelLut`]: kiln_quant::plan::IntPlan::ChannelLut
pub(super) struct Tables<'a> {
    pub table: &'a [i32],
    pub channels: usize,
    pub inner: usize,
}

/// A lookup-table op: each result code is `table[q − qmin]` of its operand's code (in its
/// channel's table), read from codes or quantised from f32 on the way in.
pub(super) fn lut(
    cx: &mut Cx,
    n: NodeId,
    ncx: &NodeCx,
    x: &QParams,
    out: &QParams,
    t: Tables,
) -> Option<Vec<Piece>> {
    let spec = code_spec(cx, n, 0, x)?;
    if !quantize::kernel_params(out) {
        return None;
    }
    if spec.on_grid {
        cx.could_read(n, 0);
    }
    cx.could_write(n, 0, out);
    let (coded_in, coded_out) = (cx.in_codes(n, 0).is_some(), cx.out_codes(n, 0).is_some());
    let len: usize = ncx.out_shape(0).iter().product();
    let codes = (x.qmax - x.qmin + 1) as usize;
    if t.channels == 0 || t.inner == 0 || t.table.len() != t.channels * codes {
        return None;
    }
    let mut b = KernelBuilder::new(&ncx.name);
    let xb = b.buf("x", if coded_in { Type::U8 } else { Type::F32 }, len, true);
    // Result codes as bytes, or their dequantised values.
    let (tb, table_arg) = if coded_out {
        let bytes: Vec<u8> = t.table.iter().map(|&c| c as u8).collect();
        let tb = b.buf("table", Type::U8, bytes.len(), true);
        (tb, Arg::ConstBytes(bytes.into()))
    } else {
        let values: Vec<f32> = t
            .table
            .iter()
            .map(|&c| kiln_quant::arith::dequantize(c, out.s(), out.z()))
            .collect();
        (
            b.buf("table", Type::F32, values.len(), true),
            Arg::Const(values.into()),
        )
    };
    let ob = b.buf(
        "out",
        if coded_out { Type::U8 } else { Type::F32 },
        len,
        false,
    );
    // Element `i + d` through the table starting at `base + tdisp`.
    let one = |b: &mut KernelBuilder, i: Val, d: i64, base: Option<Val>, tdisp: i64| {
        // The table index `q − qmin`.
        let c = if coded_in {
            let q = b.load(Type::U8, xb, i, d);
            let q = b.cast(Type::I32, q);
            let o = b.iconst(Type::I32, -(x.qmin as i64));
            b.add(q, o)
        } else {
            let v = b.load(Type::F32, xb, i, d);
            let c = spec.centred_int(b, v);
            let o = b.iconst(Type::I32, (x.z() - x.qmin) as i64);
            b.add(c, o)
        };
        let c = b.cast(Type::Index, c);
        let c = match base {
            Some(base) => b.add(base, c),
            None => c,
        };
        let ty = if coded_out { Type::U8 } else { Type::F32 };
        let y = b.load(ty, tb, c, tdisp);
        b.store(ob, i, d, y);
    };
    // Eight lookups a step (one index update and branch per eight, where one per element
    // held a byte-coded table to about a cycle an element), over `lo..hi` from `off`.
    const UNROLL: i64 = 8;
    let run = |b: &mut KernelBuilder, off: Option<Val>, hi: i64, base: Option<Val>| {
        let at = |b: &mut KernelBuilder, j: Val| match off {
            Some(o) => b.add(o, j),
            None => j,
        };
        let whole = hi / UNROLL * UNROLL;
        if whole > 0 {
            b.for_(0, whole, UNROLL, |b, j| {
                let i = at(b, j);
                (0..UNROLL).for_each(|d| one(b, i, d, base, 0));
            });
        }
        if whole < hi {
            b.for_(whole, hi, 1, |b, j| {
                let i = at(b, j);
                one(b, i, 0, base, 0)
            });
        }
    };
    if t.channels == 1 {
        let whole = len as i64 / UNROLL * UNROLL;
        if whole > 0 {
            b.parallel(0, whole, UNROLL, |b, i| {
                (0..UNROLL).for_each(|d| one(b, i, d, None, 0));
            });
        }
        if whole < len as i64 {
            b.for_(whole, len as i64, 1, |b, i| one(b, i, 0, None, 0));
        }
    } else if t.inner == 1 {
        // Channels innermost: a row of `channels` elements, the table base moving with the
        // channel (`d` channels on is `d` tables on).
        let (c, nc) = (t.channels as i64, codes as i64);
        b.parallel(0, len as i64 / c, 1, |b, row| {
            let off = b.mul_imm(row, c);
            let whole = c / UNROLL * UNROLL;
            if whole > 0 {
                b.for_(0, whole, UNROLL, |b, ch| {
                    let i = b.add(off, ch);
                    let base = b.mul_imm(ch, nc);
                    (0..UNROLL).for_each(|d| one(b, i, d, Some(base), d * nc));
                });
            }
            if whole < c {
                b.for_(whole, c, 1, |b, ch| {
                    let i = b.add(off, ch);
                    let base = b.mul_imm(ch, nc);
                    one(b, i, 0, Some(base), 0);
                });
            }
        });
    } else {
        // Channels first: each (image, channel) plane through its channel's table.
        let (c, inner) = (t.channels as i64, t.inner as i64);
        let images = len as i64 / (c * inner);
        b.parallel(0, c, 1, |b, ch| {
            let base = b.mul_imm(ch, codes as i64);
            b.for_(0, images, 1, |b, img| {
                let plane = b.mul_imm(img, c);
                let plane = b.add(plane, ch);
                let off = b.mul_imm(plane, inner);
                run(b, Some(off), inner, Some(base));
            });
        });
    }
    let l = Lowered {
        kernel: b.finish(),
        args: vec![Arg::Operand(0), table_arg, Arg::Result(0)],
    };
    let mut pieces = vec![Piece::Kernel(l)];
    pieces.extend(cx.result_fq(n, ncx, Some(out))?);
    Some(pieces)
}

/// Global average pooling: `requant(f32(Σ (q − z))·m)` per (batch, channel).
pub(super) fn global_avg(
    cx: &mut Cx,
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
    if spec.on_grid {
        cx.could_read(n, 0);
    }
    cx.could_write(n, 0, out);
    let (coded_in, coded_out) = (cx.in_codes(n, 0).is_some(), cx.out_codes(n, 0).is_some());
    let hw: usize = shape.iter().product::<usize>() / (bn * c).max(1);
    let len = bn * c * hw;
    // Point p of channel ch in batch i: NHWC (i·hw + p)·c + ch; NCHW (i·c + ch)·hw + p.
    let (pstride, cstride) = if nhwc { (c, 1) } else { (1, hw) };
    let mut b = KernelBuilder::new(&ncx.name);
    let xb = b.buf("x", if coded_in { Type::U8 } else { Type::F32 }, len, true);
    let ob = b.buf(
        "out",
        if coded_out { Type::U8 } else { Type::F32 },
        bn * c,
        false,
    );
    let out = out.clone();
    // Channels last with whole vectors: 16 (codes) or 4 (f32) channels per step, points
    // walked in order; otherwise one channel at a time.
    let lanes: usize = match (nhwc, coded_in) {
        (true, true) if c % 16 == 0 => 16,
        (true, false) if c % 4 == 0 => 4,
        _ => 1,
    };
    let (vty, ity) = if lanes == 1 {
        (Type::F32, Type::I32)
    } else {
        (Type::F32X4, Type::I32X4)
    };
    let parts = lanes.div_ceil(4);
    // Raw codes are summed as they are; `hw·z` comes off at the end (exact in i32).
    let zsum = if coded_in {
        hw as i64 * x.z() as i64
    } else {
        0
    };
    b.parallel(0, (bn * c) as i64, lanes as i64, |b, r| {
        let cv = b.index(c as i64);
        let i = b.binary(crate::ir::BinOp::Div, r, cv);
        let im = b.mul_imm(i, c as i64);
        let ch = b.sub(r, im);
        let base = b.mul_imm(i, (c * hw) as i64);
        let co = b.mul_imm(ch, cstride as i64);
        let base = b.add(base, co);
        let zero = b.iconst(Type::I32, 0);
        let zero = if lanes == 1 { zero } else { b.splat(ity, zero) };
        let sums = b.loop_(0, hw as i64, 1, false, &vec![zero; parts], |b, p, acc| {
            let po = b.mul_imm(p, pstride as i64);
            let o = b.add(base, po);
            match (coded_in, lanes) {
                (true, 16) => {
                    let bytes = b.load(Type::I8X16, xb, o, 0);
                    (0..4)
                        .map(|j| {
                            let w = b.widen_u8(bytes, j as u8);
                            b.add(acc[j], w)
                        })
                        .collect()
                }
                (true, _) => {
                    let q = b.load(Type::U8, xb, o, 0);
                    let q = b.cast(Type::I32, q);
                    vec![b.add(acc[0], q)]
                }
                (false, _) => {
                    let v = b.load(vty, xb, o, 0);
                    let ci = spec.centred_int(b, v);
                    vec![b.add(acc[0], ci)]
                }
            }
        });
        let zs = b.iconst(Type::I32, zsum);
        let zs = if lanes == 1 { zs } else { b.splat(ity, zs) };
        let ys: Vec<Val> = sums
            .iter()
            .map(|&s| {
                let s = b.sub(s, zs);
                let f = b.cast(vty, s);
                let mm = b.fsplat(vty, m);
                let t = b.mul(f, mm);
                if coded_out {
                    code_of(b, t, &out, m.is_finite())
                } else {
                    requant(b, t, &out, m.is_finite())
                }
            })
            .collect();
        if coded_out && lanes == 16 {
            let bytes = b.narrow_u8(ys[0], ys[1], ys[2], ys[3]);
            b.store(ob, r, 0, bytes);
        } else if lanes == 1 {
            let y = if coded_out {
                b.cast(Type::U8, ys[0])
            } else {
                ys[0]
            };
            b.store(ob, r, 0, y);
        } else if coded_out {
            for l in 0..4 {
                let e = b.extract(ys[0], l as u8);
                let e = b.cast(Type::U8, e);
                b.store(ob, r, l as i64, e);
            }
        } else {
            for (j, &y) in ys.iter().enumerate() {
                b.store(ob, r, 4 * j as i64, y);
            }
        }
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

/// The code `clamp(R(t) + z)` of a float `t`, as i32; `tame` as for [`requant`].
pub(super) fn code_of(b: &mut KernelBuilder, t: Val, out: &QParams, tame: bool) -> Val {
    if tame {
        return tame::code_of(b, t, out, out.qmin, out.qmax);
    }
    let t = round(b, t, out.rounding);
    let c = quantize::clamp_int(b, t, out, out.qmin, out.qmax);
    let ity = b.ty(c);
    let z = b.iconst(Type::I32, out.z() as i64);
    let z = if ity.is_vector() { b.splat(ity, z) } else { z };
    b.add(c, z)
}
