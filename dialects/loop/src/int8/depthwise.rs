//! Depthwise convolution (one input channel per group, channels last) on u8 codes.
//!
//! Channels are the vector dimension, 16 per step. Taps go four at a time through
//! `dot_u8s8` (`vpdpbusd`): the four taps' byte vectors are interleaved (two rounds of
//! unpacks) so each 32-bit lane holds one channel's four taps, and the weights are packed
//! the same way at compile time — 4 dot products per 4 taps × 16 channels, where widening
//! each byte to i32 and multiplying took 16 multiplies. The zero point is
//! folded into the bias (`Σ (a − z)·w = Σ a·w − z·Σ w`) and padding holds `z`, so taps need
//! no bounds checks. The image buffer is allocated 16 bytes long so the last channel group's
//! load may read past the final pixel.

use super::codes::{self, CodeSpec, RowMap};
use super::epilogue::{self, code_grid, epilogue, epilogue_code};
use super::{Cx, Scratch};
use crate::builder::KernelBuilder;
use crate::ir::{Type, Val};
use crate::lower::{Arg, Lowered, NodeCx};
use crate::program::Piece;
use kiln_core::Result;
use kiln_graph::NodeId;
use kiln_graph::ops::Conv;
use kiln_graph::ops::activation::RESIDUAL;
use kiln_graph::ops::spatial::Geometry;
use kiln_quant::plan::{ComputePlan, Epilogue};
use ndarray::ArrayD;

/// Byte interleavings (`punpcklbw`, `punpckhbw`, `punpcklwd`, `punpckhwd`).
const UNPACK_LO8: [u8; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
const UNPACK_HI8: [u8; 16] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];
const UNPACK_LO16: [u8; 16] = [0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23];
const UNPACK_HI16: [u8; 16] = [8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31];

#[allow(clippy::too_many_arguments)]
pub(super) fn lower(
    cx: &mut Cx,
    n: NodeId,
    ncx: &NodeCx,
    conv: &Conv,
    p: &ComputePlan,
    w: &ArrayD<i32>,
    spec: CodeSpec,
) -> Result<Option<Vec<Piece>>> {
    let x = ncx.in_shape(0).unwrap_or_default().to_vec();
    let ws = w.shape().to_vec();
    if x.len() != 4 || ws.len() != 4 || ws[1] != 1 {
        return Ok(None);
    }
    let (bn, h, wd, c) = (x[0], x[1], x[2], x[3]);
    if conv.group != c || ws[0] != c {
        return Ok(None);
    }
    let geo = Geometry::forward(&conv.window, "conv", &[h, wd], Some(&ws[2..]), false)?;
    let (pt, pl) = (geo.pad_begin[0] as usize, geo.pad_begin[1] as usize);
    let (hp, wp) = (
        h + pt + geo.pad_end[0] as usize,
        wd + pl + geo.pad_end[1] as usize,
    );
    let (oh, ow, kh, kw) = (geo.output[0], geo.output[1], geo.kernel[0], geo.kernel[1]);
    let (sh, sw, dh, dw) = (
        geo.strides[0],
        geo.strides[1],
        geo.dilations[0],
        geo.dilations[1],
    );
    let name = &ncx.name;
    let mut scratch = Scratch::default();
    let mut pieces = Vec::new();
    let image_len = bn * hp * wp * c;
    let image = scratch.alloc(image_len + 16);
    pieces.push(Piece::Kernel(Lowered {
        kernel: codes::fill(&format!("{name}_pad"), image_len + 16, p.x.z() as u8),
        args: vec![image.clone()],
    }));
    let map = RowMap::padded_nhwc([bn, h, wd, c], hp, wp, pt, pl, image_len + 16);
    if spec.on_grid {
        cx.could_read(n, 0);
    }
    let x_len = bn * h * wd * c;
    pieces.push(Piece::Kernel(Lowered {
        kernel: if cx.in_codes(n, 0).is_some() {
            codes::copy_rows(&format!("{name}_copy"), x_len, &map)
        } else {
            codes::quantize_rows(&format!("{name}_codes"), x_len, &map, &spec)
        },
        args: vec![Arg::Operand(0), image.clone()],
    }));
    if let Some(grid) = code_grid(&p.epilogue) {
        cx.could_write(n, 0, grid);
    }
    let codes_out = cx.out_codes(n, 0).is_some();
    // Weights as s8, four taps of one channel per 32-bit lane (the bytes `dot_u8s8` sums):
    // tap group `g`, channel vector `cv` (4 channels) at byte `(g·cp/4 + cv)·16`; taps past
    // the filter weigh 0. Folded bias and scales per channel, padded to whole vectors.
    let cp = c.div_ceil(16) * 16;
    let taps = kh * kw;
    let tap_groups = taps.div_ceil(4);
    let mut wt = vec![0u8; tap_groups * cp * 4];
    let mut bias = vec![0i32; cp];
    let mut scales = vec![0f32; cp];
    let zx = p.x.z() as i64;
    let sc = epilogue::channel_scales(&p.epilogue);
    for ch in 0..c {
        let mut sum = 0i64;
        for t in 0..taps {
            let v = w[[ch, 0, t / kw, t % kw]];
            wt[((t / 4) * cp / 4 + ch / 4) * 16 + 4 * (ch % 4) + t % 4] = v as i8 as u8;
            sum += v as i64;
        }
        let b0 = p
            .bias
            .as_ref()
            .map_or(0, |v| v[if v.len() == 1 { 0 } else { ch }] as i64);
        bias[ch] = (b0 - zx * sum) as i32;
        scales[ch] = sc[if sc.len() == 1 { 0 } else { ch }];
    }
    let residual = matches!(p.epilogue, Epilogue::Float { residual: true, .. });
    let out_len = bn * oh * ow * c;
    let mut b = KernelBuilder::new(format!("{name}_dw"));
    let img = b.buf("image", Type::U8, image_len + 16, true);
    let wb = b.buf("weights", Type::U8, tap_groups * cp * 4, true);
    let bb = b.buf("bias", Type::I32, cp, true);
    let scb = b.buf(
        "scales",
        Type::F32,
        epilogue::table_len(&p.epilogue) + cp,
        true,
    );
    let rb = residual.then(|| b.buf("residual", Type::F32, out_len, true));
    let ob = if codes_out {
        b.buf("out", Type::U8, out_len, false)
    } else {
        b.buf("out", Type::F32, out_len, false)
    };
    b.parallel(0, (bn * oh) as i64, 1, |b, r| {
        let ohv = b.index(oh as i64);
        let i = b.binary(crate::ir::BinOp::Div, r, ohv);
        let im = b.mul_imm(i, oh as i64);
        let y = b.sub(r, im);
        let s0 = b.mul_imm(i, (hp * wp * c) as i64);
        let s1 = b.mul_imm(y, (sh * wp * c) as i64);
        let sbase = b.add(s0, s1);
        let obase = b.mul_imm(r, (ow * c) as i64);
        b.for_(0, ow as i64, 1, |b, xo| {
            let sx = b.mul_imm(xo, (sw * c) as i64);
            let sx = b.add(sbase, sx);
            let ox = b.mul_imm(xo, c as i64);
            let ox = b.add(obase, ox);
            // One group of up to 16 channels at `cg`, of which `lanes` exist.
            let group = |b: &mut KernelBuilder, cg, lanes: usize| {
                let nvec = lanes.div_ceil(4);
                let mut acc: Vec<_> = (0..nvec)
                    .map(|v| b.load(Type::I32X4, bb, cg, 4 * v as i64))
                    .collect();
                let src = b.add(sx, cg);
                let wo = b.mul_imm(cg, 4);
                for g in 0..tap_groups {
                    // Four taps' 16 channels, interleaved into 4 channels × 4 taps per vector.
                    let rows: Vec<Val> = (0..4)
                        .map(|j| {
                            let t = if 4 * g + j < taps { 4 * g + j } else { 0 };
                            let (ti, tj) = (t / kw, t % kw);
                            let d = (ti * dh * wp * c + tj * dw * c) as i64;
                            b.load(Type::I8X16, img, src, d)
                        })
                        .collect();
                    let lo01 = b.shuffle(rows[0], rows[1], UNPACK_LO8);
                    let lo23 = b.shuffle(rows[2], rows[3], UNPACK_LO8);
                    let hi01 = b.shuffle(rows[0], rows[1], UNPACK_HI8);
                    let hi23 = b.shuffle(rows[2], rows[3], UNPACK_HI8);
                    let quads = [
                        b.shuffle(lo01, lo23, UNPACK_LO16),
                        b.shuffle(lo01, lo23, UNPACK_HI16),
                        b.shuffle(hi01, hi23, UNPACK_LO16),
                        b.shuffle(hi01, hi23, UNPACK_HI16),
                    ];
                    for (v, a) in acc.iter_mut().enumerate() {
                        let wv = b.load(Type::I8X16, wb, wo, ((g * cp / 4 + v) * 16) as i64);
                        *a = b.dot_u8s8(*a, quads[v], wv);
                    }
                }
                let o = b.add(ox, cg);
                if codes_out {
                    let codes: Vec<Val> = acc
                        .iter()
                        .enumerate()
                        .map(|(v, &a)| {
                            let ch = b.add_imm(cg, 4 * v as i64);
                            epilogue_code(b, &p.epilogue, a, scb, ch, None)
                        })
                        .collect();
                    if lanes == 16 {
                        let bytes = b.narrow_u8(codes[0], codes[1], codes[2], codes[3]);
                        b.store(ob, o, 0, bytes);
                    } else {
                        for l in 0..lanes {
                            let e = b.extract(codes[l / 4], (l % 4) as u8);
                            let e = b.cast(Type::U8, e);
                            b.store(ob, o, l as i64, e);
                        }
                    }
                    return;
                }
                for (v, &a) in acc.iter().enumerate() {
                    let ch = b.add_imm(cg, 4 * v as i64);
                    let n = (lanes - 4 * v).min(4);
                    let res = rb.map(|rb| {
                        if n == 4 {
                            b.load(Type::F32X4, rb, o, 4 * v as i64)
                        } else {
                            let mut r = b.fsplat(Type::F32X4, 0.0);
                            for l in 0..n {
                                let e = b.load(Type::F32, rb, o, (4 * v + l) as i64);
                                r = b.insert(r, e, l as u8);
                            }
                            r
                        }
                    });
                    let yv = epilogue(b, &p.epilogue, a, scb, ch, res);
                    if n == 4 {
                        b.store(ob, o, 4 * v as i64, yv);
                    } else {
                        for l in 0..n {
                            let e = b.extract(yv, l as u8);
                            b.store(ob, o, (4 * v + l) as i64, e);
                        }
                    }
                }
            };
            if c >= 16 {
                b.for_(0, (c / 16 * 16) as i64, 16, |b, cg| group(b, cg, 16));
            }
            if c % 16 != 0 {
                let cg = b.index((c / 16 * 16) as i64);
                group(b, cg, c % 16);
            }
        });
    });
    let mut args = vec![
        image,
        Arg::ConstBytes(wt.into()),
        Arg::ConstBytes(bias.iter().flat_map(|v| v.to_le_bytes()).collect()),
        Arg::Const(epilogue::scale_data(&p.epilogue, scales).into()),
    ];
    if residual {
        let mut extra = Vec::new();
        let Some(r) = cx.operand_f32(n, RESIDUAL, ncx, &mut scratch, &mut extra) else {
            return Ok(None);
        };
        pieces.extend(extra);
        args.push(r);
    }
    args.push(Arg::Result(0));
    pieces.push(Piece::Kernel(Lowered {
        kernel: b.finish(),
        args,
    }));
    Ok(cx.finish_compute(n, ncx, p, pieces))
}
