//! Conv, Gemm and MatMul on their integer path: operand → u8 codes (padded, im2col'd) →
//! the `vpdpbusd` GEMM with the plan's epilogue.
//!
//! Supported here: constant s8 weights with zero offset (kiln-x86's symmetric weights),
//! u8 activation codes, 2-D convolutions with one group in either layout, Gemm and MatMul
//! with a 2-D constant B (a transposed A when its K is a multiple of 4). Anything else returns `None` and the node runs
//! the simulator's code instead (a host step, still exact).

use super::codes::{self, Im2col, RowMap};
use super::epilogue;
use super::gemm::{self, OutLayout, QGemm};
use super::quantize;
use super::{Cx, Scratch};
use crate::lower::{Arg, Lowered, NodeCx};
use crate::program::Piece;
use kiln_core::Result;
use kiln_graph::NodeId;
use kiln_graph::ops::activation::RESIDUAL;
use kiln_graph::ops::spatial::Geometry;
use kiln_graph::ops::{Layout, Op};
use kiln_quant::plan::{ComputePlan, Epilogue};
use std::sync::Arc;

/// The weight as a matrix `w(channel, k)` over the panel's k order.
type WeightFn<'a> = Box<dyn Fn(usize, usize) -> i32 + 'a>;

pub(super) fn lower(
    cx: &mut Cx,
    n: NodeId,
    ncx: &NodeCx,
    p: &ComputePlan,
) -> Result<Option<Vec<Piece>>> {
    let q = cx.q;
    let node = q.graph.node(n);
    let Some(w) = p.w_codes.as_ref() else {
        return Ok(None);
    };
    let weights_ok =
        p.w.zero.iter().all(|&z| z == 0) && w.iter().all(|&c| (-128..=127).contains(&c));
    let slope = matches!(p.epilogue, Epilogue::Float { slope: true, .. });
    if !quantize::u8_codes(&p.x) || !weights_ok || slope {
        return Ok(None);
    }
    if let Epilogue::Requant { out, .. } | Epilogue::Float { out: Some(out), .. } = &p.epilogue
        && !quantize::kernel_params(out)
    {
        return Ok(None);
    }
    let out_shape = ncx.out_shape(0).to_vec();
    if let Epilogue::Float { residual: true, .. } = p.epilogue
        && ncx.in_shape(RESIDUAL) != Some(out_shape.as_slice())
    {
        return Ok(None);
    }
    // How operand 0 becomes codes (see `eltwise::code_spec`).
    let Some(spec) = super::eltwise::code_spec(cx, n, 0, &p.x) else {
        return Ok(None);
    };
    let mut scratch = Scratch::default();
    let mut pieces = Vec::new();
    let name = &ncx.name;
    let x_shape = ncx.in_shape(0).unwrap_or_default().to_vec();
    let x_len: usize = x_shape.iter().product();
    let z = p.x.z() as u8;
    // Operand 0 stored as codes (the panel is then made by copying bytes, or is the
    // operand itself), and whether this op's result will be.
    let coded_in = cx.in_codes(n, 0).is_some();
    let code_grid = epilogue::code_grid(&p.epilogue).cloned();
    // An implicit GEMM's layout and row table (see `gemm::Implicit`).
    let mut implicit: Option<(gemm::Implicit, Vec<i32>)> = None;
    // Groups of a grouped conv, each its own GEMM over its channel slice; without whole
    // channel words per group, each gets its own im2col (into one shared panel).
    let mut groups = 1;
    let mut group_im2col: Option<(Im2col, Arg)> = None;
    let (panel, rows, k_len, kp, nout, out, wfn): (
        Arg,
        usize,
        usize,
        usize,
        usize,
        OutLayout,
        WeightFn,
    ) = match &node.op {
        Op::Conv(c) => {
            let nhwc = c.layout == Layout::Nhwc;
            if x_shape.len() != 4 || w.ndim() != 4 {
                return Ok(None);
            }
            let ws = w.shape().to_vec();
            let depthwise = ws[1] == 1 && ws[0] == c.group && x_shape[3] == c.group;
            if c.group != 1 && nhwc && depthwise {
                return super::depthwise::lower(cx, n, ncx, c, p, w, spec.clone());
            }
            // Other grouped convs (ShuffleNet's 1×1 groups) need whole channel words per
            // group for the implicit GEMM (codes out also need whole output words, below).
            let grouped_ok = nhwc && c.group > 1 && ws[0] % c.group == 0;
            if c.group != 1 && !grouped_ok {
                return Ok(None);
            }
            groups = c.group;
            if nhwc && spec.on_grid {
                cx.could_read(n, 0);
            }
            let (bn, ch, h, wd) = if nhwc {
                (x_shape[0], x_shape[3], x_shape[1], x_shape[2])
            } else {
                (x_shape[0], x_shape[1], x_shape[2], x_shape[3])
            };
            let geo = Geometry::forward(&c.window, "conv", &[h, wd], Some(&ws[2..]), false)?;
            let (pt, pl) = (geo.pad_begin[0] as usize, geo.pad_begin[1] as usize);
            let (pb, pr) = (geo.pad_end[0] as usize, geo.pad_end[1] as usize);
            let (hp, wp) = (h + pt + pb, wd + pl + pr);
            let (oh, ow) = (geo.output[0], geo.output[1]);
            let (kh, kw) = (geo.kernel[0], geo.kernel[1]);
            // Channels per group (all of them for one group).
            let cg = ws[1];
            let k_len = cg * kh * kw;
            let kp = k_len.div_ceil(4) * 4;
            let rows = bn * oh * ow;
            let direct = groups == 1
                && nhwc
                && kh == 1
                && kw == 1
                && geo.strides == [1, 1]
                && pt + pl + pb + pr == 0
                && ch % 4 == 0;
            let panel = if direct && coded_in {
                Arg::Operand(0)
            } else if direct {
                let panel = scratch.alloc(rows * kp);
                let k = codes::quantize_rows(
                    &format!("{name}_codes"),
                    x_len,
                    &RowMap::dense(bn * h, wd * ch, wd * ch),
                    &spec,
                );
                pieces.push(kernel(k, vec![Arg::Operand(0), panel.clone()]));
                panel
            } else {
                let image_len = bn * hp * wp * ch;
                let in_place = cg % 4 == 0 && ch % 4 == 0 && image_len / 4 <= i32::MAX as usize;
                // Codes needing no padding are the image already.
                let image = if in_place && coded_in && nhwc && image_len == x_len {
                    Arg::Operand(0)
                } else {
                    let image = scratch.alloc(image_len);
                    if image_len != x_len {
                        let k = codes::fill(&format!("{name}_pad"), image_len, z);
                        pieces.push(kernel(k, vec![image.clone()]));
                    }
                    let map = RowMap::padded_nhwc([bn, h, wd, ch], hp, wp, pt, pl, image_len);
                    let k = if coded_in {
                        codes::copy_rows(&format!("{name}_copy"), x_len, &map)
                    } else if nhwc {
                        codes::quantize_rows(&format!("{name}_codes"), x_len, &map, &spec)
                    } else {
                        let dims = [bn, ch, h, wd];
                        codes::quantize_nchw(&format!("{name}_codes"), dims, &map, &spec)
                    };
                    pieces.push(kernel(k, vec![Arg::Operand(0), image.clone()]));
                    image
                };
                if in_place {
                    let cw = ch / 4;
                    let (sy, sx) = (geo.strides[0], geo.strides[1]);
                    let (dy, dx) = (geo.dilations[0], geo.dilations[1]);
                    let table = (0..rows)
                        .map(|r| {
                            let (n, p) = (r / (oh * ow), r % (oh * ow));
                            let (y, x) = (p / ow, p % ow);
                            (((n * hp + y * sy) * wp + x * sx) * cw) as i32
                        })
                        .collect();
                    let taps = (0..kh * kw)
                        .map(|t| (((t / kw) * dy * wp + (t % kw) * dx) * cw) as i64)
                        .collect();
                    let words = image_len / 4;
                    // A group reads `cg` channels per tap; `Implicit::group` moves it on.
                    let cw = cg / 4;
                    implicit = Some((gemm::Implicit { words, taps, cw }, table));
                    image
                } else {
                    let panel = scratch.alloc(rows * kp);
                    let g = Im2col {
                        n: bn,
                        hp,
                        wp,
                        c: cg,
                        pixel: ch,
                        c_off: 0,
                        oh,
                        ow,
                        kh,
                        kw,
                        stride: [geo.strides[0], geo.strides[1]],
                        dilation: [geo.dilations[0], geo.dilations[1]],
                        kp,
                    };
                    if groups > 1 {
                        group_im2col = Some((g, image));
                    } else {
                        let k = codes::im2col(&format!("{name}_im2col"), &g);
                        pieces.push(kernel(k, vec![image, panel.clone()]));
                    }
                    panel
                }
            };
            let co = ws[0];
            if let Some(grid) = &code_grid
                && nhwc
                && (co / groups) % 4 == 0
            {
                cx.could_write(n, 0, grid);
            }
            let out = if nhwc {
                OutLayout {
                    base: 0,
                    per_batch: 0,
                    bs: 0,
                    rs: co,
                    cs: 1,
                    len: rows * co,
                }
            } else {
                OutLayout {
                    base: 0,
                    per_batch: oh * ow,
                    bs: co * oh * ow,
                    rs: 1,
                    cs: oh * ow,
                    len: rows * co,
                }
            };
            let wfn: WeightFn = Box::new(move |o, k| {
                let (tap, cc) = (k / cg, k % cg);
                w[[o, cc, tap / kw, tap % kw]]
            });
            (panel, rows, k_len, kp, co, out, wfn)
        }
        Op::Gemm(_) | Op::MatMul(_) => {
            let (trans_a, trans_b) = match &node.op {
                Op::Gemm(gm) => (gm.trans_a, gm.trans_b),
                Op::MatMul(m) => (m.trans_a, m.trans_b),
                _ => (false, false),
            };
            let rank = x_shape.len();
            if w.ndim() != 2 || rank < 2 {
                return Ok(None);
            }
            let k_len = x_shape[if trans_a { rank - 2 } else { rank - 1 }];
            let rows = x_len / k_len.max(1);
            let nout = w.shape()[if trans_b { 0 } else { 1 }];
            let kp = k_len.div_ceil(4) * 4;
            // A transposed operand is gathered into rows by a transposing quantiser, whose
            // rows are `k_len` bytes apart: it needs no padding, and f32 input.
            if trans_a && (kp != k_len || coded_in) {
                return Ok(None);
            }
            if spec.on_grid && !trans_a {
                cx.could_read(n, 0);
            }
            if let Some(grid) = &code_grid
                && nout % 4 == 0
            {
                cx.could_write(n, 0, grid);
            }
            let panel = if trans_a {
                // [.., K, M] read as NCHW [batches, K, 1, M] into NHWC rows (m, k).
                let m_len = x_shape[rank - 1];
                let batches = rows / m_len.max(1);
                let panel = scratch.alloc(rows * kp);
                let map =
                    RowMap::padded_nhwc([batches, 1, m_len, k_len], 1, m_len, 0, 0, rows * kp);
                let k = codes::quantize_nchw(
                    &format!("{name}_codes"),
                    [batches, k_len, 1, m_len],
                    &map,
                    &spec,
                );
                pieces.push(kernel(k, vec![Arg::Operand(0), panel.clone()]));
                panel
            } else if coded_in && kp == k_len {
                Arg::Operand(0)
            } else {
                let panel = scratch.alloc(rows * kp);
                let map = RowMap::dense(rows, k_len, kp);
                let k = if coded_in {
                    codes::copy_rows(&format!("{name}_copy"), x_len, &map)
                } else {
                    codes::quantize_rows(&format!("{name}_codes"), x_len, &map, &spec)
                };
                pieces.push(kernel(k, vec![Arg::Operand(0), panel.clone()]));
                panel
            };
            let out = OutLayout {
                base: 0,
                per_batch: 0,
                bs: 0,
                rs: nout,
                cs: 1,
                len: rows * nout,
            };
            let wfn: WeightFn = Box::new(move |o, k| if trans_b { w[[o, k]] } else { w[[k, o]] });
            (panel, rows, k_len, kp, nout, out, wfn)
        }
        _ => return Ok(None),
    };
    // One GEMM per group: its output channels `gi·mg..`, its weights' rows, its slice of
    // the image's channels (a group of one is the whole conv).
    let mg = nout / groups;
    for gi in 0..groups {
        let g = QGemm {
            rows,
            n: mg,
            kp,
            out: OutLayout {
                base: out.base + gi * mg * out.cs,
                ..out
            },
            epilogue: p.epilogue.clone(),
            codes_out: cx.out_codes(n, 0).is_some(),
            implicit: implicit.as_ref().map(|(im, _)| im.group(gi)),
        };
        let wg = |o: usize, k: usize| wfn(gi * mg + o, k);
        let np = g.np();
        // Folded bias: b[c] − z_x·Σ_k w(c, k), in wrapping i32.
        let zx = p.x.z() as i64;
        let mut bias = vec![0i32; np];
        for (c, b) in bias.iter_mut().enumerate().take(mg) {
            let b0 = p
                .bias
                .as_ref()
                .map_or(0, |v| v[if v.len() == 1 { 0 } else { gi * mg + c }] as i64);
            let sum: i64 = (0..k_len).map(|k| wg(c, k) as i64).sum();
            *b = (b0 - zx * sum) as i32;
        }
        let per = |v: &[f32]| -> Vec<f32> {
            (0..np)
                .map(|c| {
                    if c < mg {
                        v[if v.len() == 1 { 0 } else { gi * mg + c }]
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let scales = epilogue::scale_data(&p.epilogue, per(epilogue::channel_scales(&p.epilogue)));
        let packed = gemm::pack_weights(mg, k_len, kp, &wg);
        let bias_bytes: Vec<u8> = bias.iter().flat_map(|b| b.to_le_bytes()).collect();
        if let Some((ig, image)) = &group_im2col {
            let ig = Im2col {
                c_off: gi * ig.c,
                ..ig.clone()
            };
            let k = codes::im2col(&format!("{name}_g{gi}_im2col"), &ig);
            pieces.push(kernel(k, vec![image.clone(), panel.clone()]));
        }
        let kname = if groups == 1 {
            format!("{name}_gemm")
        } else {
            format!("{name}_g{gi}_gemm")
        };
        let table: Option<Arc<[u8]>> = implicit
            .as_ref()
            .map(|(_, t)| t.iter().flat_map(|w| w.to_le_bytes()).collect());
        // Shared by the GEMM's kernels (main tiles, row and column tails).
        let packed: Arc<[u8]> = packed.into();
        let bias_bytes: Arc<[u8]> = bias_bytes.into();
        let scales: Arc<[f32]> = scales.into();
        for k in gemm::kernels(&kname, &g) {
            let mut args = vec![panel.clone()];
            if let Some(table) = &table {
                args.push(Arg::ConstBytes(table.clone()));
            }
            args.extend([
                Arg::ConstBytes(packed.clone()),
                Arg::ConstBytes(bias_bytes.clone()),
                Arg::Const(scales.clone()),
            ]);
            if g.residual() {
                args.push(Arg::Operand(RESIDUAL));
            }
            args.push(Arg::Result(0));
            pieces.push(kernel(k, args));
        }
    }
    // The residual operand as the simulator sees it (its TQC may fake-quantise it).
    if matches!(p.epilogue, Epilogue::Float { residual: true, .. }) {
        let mut extra = Vec::new();
        let Some(res) = cx.operand_f32(n, RESIDUAL, ncx, &mut scratch, &mut extra) else {
            return Ok(None);
        };
        if res != Arg::Operand(RESIDUAL) {
            for piece in &mut pieces {
                if let Piece::Kernel(l) = piece {
                    for a in &mut l.args {
                        if *a == Arg::Operand(RESIDUAL) {
                            *a = res.clone();
                        }
                    }
                }
            }
            extra.append(&mut pieces);
            pieces = extra;
        }
    }
    Ok(cx.finish_compute(n, ncx, p, pieces))
}

fn kernel(kernel: crate::ir::Kernel, args: Vec<Arg>) -> Piece {
    Piece::Kernel(Lowered { kernel, args })
}
