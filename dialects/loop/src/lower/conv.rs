//! 2-D convolution: im2col + the GEMM micro-kernel for dense convolutions, a tap-by-tap
//! vectorised kernel for grouped and depthwise ones.
//!
//! NCHW dense: `out[oc, p] = Σ_k W[oc, k] · col[k, p]` — A is the weights (packed into 4-row
//! panels at compile time), B the im2col panel (or the input itself for a 1×1, stride-1,
//! unpadded conv), vectorised along output pixels. NHWC dense: `out[p, oc] = Σ_k col[p, k] ·
//! W[k, oc]` — the weights become B (packed into 8-column panels), vectorised along output
//! channels, and a pointwise conv reads the input directly as A.
//!
//! im2col is generated with the kernel taps unrolled, so for every tap the rows and columns
//! that fall into the padding are compile-time ranges: the copy loops never test bounds.

use super::gemm::{self, AOperand, BOperand, GemmSpec, Strided};
use super::{Arg, Lowered, NodeCx, act, elementwise::broadcast_strides};
use crate::builder::KernelBuilder;
use crate::ir::{Buf, Type, Val};
use kiln_core::Result;
use kiln_graph::ops::activation::{RESIDUAL, SLOPE};
use kiln_graph::ops::spatial::Geometry;
use kiln_graph::ops::{Conv, Layout, Op};

/// Resolved sizes of a 2-D convolution.
#[derive(Debug, Clone)]
pub(super) struct Shape2 {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) m: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) sh: usize,
    pub(super) sw: usize,
    pub(super) dh: usize,
    pub(super) dw: usize,
    pub(super) ph: isize,
    pub(super) pw: isize,
    pub(super) group: usize,
    pub(super) nhwc: bool,
}

impl Shape2 {
    fn k(&self) -> usize {
        self.c / self.group * self.kh * self.kw
    }
    pub(super) fn p(&self) -> usize {
        self.oh * self.ow
    }
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
            // Trailing padding makes the output larger than the input: not a plain GEMM.
            && self.oh == self.h
            && self.ow == self.w
    }
    /// Output positions `o` whose tap at offset `t` (in input coordinates: `o·s - pad + t·d`)
    /// lands inside `[0, size)`.
    fn valid(out: usize, size: usize, s: usize, pad: isize, t: usize, d: usize) -> (usize, usize) {
        let off = t as isize * d as isize - pad;
        let lo = if off >= 0 {
            0
        } else {
            ((-off) as usize).div_ceil(s)
        };
        let hi_excl = size as isize - off; // need o*s < hi_excl
        let hi = if hi_excl <= 0 {
            0
        } else {
            ((hi_excl as usize).div_ceil(s)).min(out)
        };
        (lo.min(hi), hi)
    }
}

fn shape(conv: &Conv, cx: &NodeCx) -> Result<Option<Shape2>> {
    let (Some(x), Some(w)) = (cx.in_shape(0), cx.in_shape(1)) else {
        return Ok(None);
    };
    if x.len() != 4 || w.len() != 4 {
        return Ok(None);
    }
    let nhwc = conv.layout == Layout::Nhwc;
    let (n, c, h, wd) = if nhwc {
        (x[0], x[3], x[1], x[2])
    } else {
        (x[0], x[1], x[2], x[3])
    };
    let geo = Geometry::forward(&conv.window, "conv", &[h, wd], Some(&w[2..]), false)?;
    Ok(Some(Shape2 {
        n,
        c,
        h,
        w: wd,
        m: w[0],
        oh: geo.output[0],
        ow: geo.output[1],
        kh: geo.kernel[0],
        kw: geo.kernel[1],
        sh: geo.strides[0],
        sw: geo.strides[1],
        dh: geo.dilations[0],
        dw: geo.dilations[1],
        ph: geo.pad_begin[0],
        pw: geo.pad_begin[1],
        group: conv.group,
        nhwc,
    }))
}

/// Strides of an epilogue operand over the result viewed as `[n, rows, cols]`.
pub(super) fn epi(buf: Buf, shape: &[usize], out4: &[usize], nhwc: bool) -> Option<Strided> {
    let st = broadcast_strides(shape, out4);
    // Merge the two spatial dims (they must be walked contiguously or both broadcast).
    let (sp0, sp1, sc, spatial_inner) = if nhwc {
        (st[1], st[2], st[3], out4[2])
    } else {
        (st[2], st[3], st[1], out4[3])
    };
    if sp0 != sp1 * spatial_inner as i64 {
        return None;
    }
    let (rs, cs) = if nhwc { (sp1, sc) } else { (sc, sp1) };
    Some(Strided {
        buf,
        rs,
        cs,
        batch: vec![st[0]],
    })
}

pub fn lower(op: &Op, cx: &NodeCx) -> Result<Option<Vec<Lowered>>> {
    let Op::Conv(conv) = op else { return Ok(None) };
    let Some(s) = shape(conv, cx)? else {
        return Ok(None);
    };
    let Some(w) = cx.const_f32(1) else {
        return Ok(None);
    };
    if s.group == 1 {
        Ok(dense(conv, cx, &s, &w))
    } else {
        Ok(grouped(conv, cx, &s, &w))
    }
}

/// Whether every epilogue operand has a view (see [`operand_view`]).
pub(super) fn views_fit(epis: &[(usize, Vec<usize>)], out4: &[usize], nhwc: bool) -> bool {
    epis.iter()
        .all(|(k, sh)| operand_view(*k, Buf(0), sh, out4, nhwc).is_some())
}

/// The view of epilogue operand `k` (bias `[M]` per output channel, or a residual / slope
/// broadcast to the result), or `None` when the spatial dims cannot be walked as one.
pub(super) fn operand_view(
    k: usize,
    buf: Buf,
    shape: &[usize],
    out4: &[usize],
    nhwc: bool,
) -> Option<Strided> {
    if k == 2 {
        let (rs, cs) = if nhwc { (0, 1) } else { (1, 0) };
        return Some(Strided {
            buf,
            rs,
            cs,
            batch: vec![0],
        });
    }
    epi(buf, shape, out4, nhwc)
}

/// The operands after x and w that a kernel takes, with their shapes: bias, residual, slope.
pub(super) fn epilogue_operands(cx: &NodeCx) -> Vec<(usize, Vec<usize>)> {
    [2, RESIDUAL, SLOPE]
        .into_iter()
        .filter_map(|k| cx.in_shape(k).map(|s| (k, s.to_vec())))
        .collect()
}

fn dense(conv: &Conv, cx: &NodeCx, s: &Shape2, w: &[f32]) -> Option<Vec<Lowered>> {
    let (k, p) = (s.k(), s.p());
    let out4 = cx.out_shape(0).to_vec();
    let x_len = s.n * s.c * s.h * s.w;
    let direct = s.pointwise();
    let col_len = s.n * k * p;
    let mut kernels = Vec::new();
    if !direct {
        let ker = if s.nhwc {
            im2col_nhwc(&cx.name, s)
        } else {
            im2col_nchw(&cx.name, s)
        };
        kernels.push(Lowered {
            kernel: ker,
            args: vec![Arg::Operand(0), Arg::Scratch(col_len * 4)],
        });
    }
    let epis = epilogue_operands(cx);
    let packed = if s.nhwc {
        // B[(ky, kx, c), oc] = W[oc, c, ky, kx]: the NHWC im2col orders taps outermost.
        let (khw, cg) = (s.kh * s.kw, s.c / s.group);
        gemm::pack_b(k, s.m, |kk, oc| w[oc * k + (kk % cg) * khw + kk / cg])
    } else {
        gemm::pack_a(w, s.m, k)
    };
    let src_arg = if direct {
        Arg::Operand(0)
    } else {
        Arg::Scratch(col_len * 4)
    };
    // NHWC: A = [P, K] is read four rows at a time; pack it into panels when that pays.
    let pack = s.nhwc && s.n == 1 && gemm::worth_packing_a(p, k, s.m);
    let packed: std::sync::Arc<[f32]> = packed.into();
    let packed_at = (col_len * 4).div_ceil(64) * 64;
    if pack {
        let src_len = if direct { x_len } else { col_len };
        kernels.extend(gemm::pack_a_kernels(
            &cx.name,
            (p, k),
            (k as i64, 1),
            (src_arg.clone(), src_len),
            Arg::ScratchAt(packed_at, p * k * 4),
        ));
    }
    let mut args = vec![
        if pack {
            Arg::ScratchAt(packed_at, p * k * 4)
        } else {
            src_arg
        },
        Arg::Const(packed.clone()),
    ];
    for (kk, _) in &epis {
        args.push(Arg::Operand(*kk));
    }
    args.push(Arg::Result(0));
    let src_len = if direct { x_len } else { col_len };
    let nhwc = s.nhwc;
    let (m, act) = (s.m, conv.act);
    if !views_fit(&epis, &out4, nhwc) {
        return None;
    }
    let declare = |b: &mut KernelBuilder| -> GemmSpec {
        let src = b.buf("src", Type::F32, if pack { p * k } else { src_len }, true);
        let wbuf = b.buf("w", Type::F32, packed.len(), true);
        let ops: Vec<Strided> = epis
            .iter()
            .map(|(kk, sh)| {
                let buf = b.buf(format!("in{kk}"), Type::F32, sh.iter().product(), true);
                operand_view(*kk, buf, sh, &out4, nhwc).expect("checked")
            })
            .collect();
        let c = b.buf("out", Type::F32, m * p * s.n, false);
        let take = |kk: usize| {
            epis.iter()
                .position(|(x, _)| *x == kk)
                .map(|i| ops[i].clone())
        };
        let (bias, residual, slope) = (take(2), take(RESIDUAL), take(SLOPE));
        if nhwc {
            GemmSpec {
                m: p,
                n: m,
                k,
                batch: vec![s.n],
                a: if pack {
                    AOperand::Packed(src)
                } else {
                    AOperand::Strided(Strided {
                        buf: src,
                        rs: k as i64,
                        cs: 1,
                        batch: vec![(p * k) as i64],
                    })
                },
                b: BOperand::Packed(wbuf),
                c: Strided {
                    buf: c,
                    rs: m as i64,
                    cs: 1,
                    batch: vec![(p * m) as i64],
                },
                bias,
                residual,
                slope,
                alpha: 1.0,
                beta: 1.0,
                act,
            }
        } else {
            GemmSpec {
                m,
                n: p,
                k,
                batch: vec![s.n],
                a: AOperand::Packed(wbuf),
                b: BOperand::Strided(Strided {
                    buf: src,
                    rs: p as i64,
                    cs: 1,
                    batch: vec![(k * p) as i64],
                }),
                c: Strided {
                    buf: c,
                    rs: p as i64,
                    cs: 1,
                    batch: vec![(m * p) as i64],
                },
                bias,
                residual,
                slope,
                alpha: 1.0,
                beta: 1.0,
                act,
            }
        }
    };
    // In the direct NHWC case the input is A = [P, C] and k == C already.
    let n_cols = if s.nhwc { s.m } else { p };
    for kernel in gemm::emit(&cx.name, n_cols, &declare) {
        kernels.push(Lowered {
            kernel,
            args: args.clone(),
        });
    }
    Some(kernels)
}

/// Copies `len` elements from `x[src..]` (stride `sx`) to `col[dst..]` (unit stride),
/// vectorised when the source is contiguous.
fn copy_run(b: &mut KernelBuilder, x: Buf, src: Val, sx: i64, col: Buf, dst: Val, len: usize) {
    let vec_end = if sx == 1 { len / 4 * 4 } else { 0 };
    if vec_end > 0 {
        b.for_(0, vec_end as i64, 4, |b, i| {
            let si = b.add(src, i);
            let v = b.load(Type::F32X4, x, si, 0);
            let di = b.add(dst, i);
            b.store(col, di, 0, v);
        });
    }
    if vec_end < len {
        b.for_(vec_end as i64, len as i64, 1, |b, i| {
            let t = b.mul_imm(i, sx);
            let si = b.add(src, t);
            let v = b.load(Type::F32, x, si, 0);
            let di = b.add(dst, i);
            b.store(col, di, 0, v);
        });
    }
}

fn zero_run(b: &mut KernelBuilder, col: Buf, dst: Val, from: usize, to: usize) {
    if from >= to {
        return;
    }
    let z = b.fconst(0.0);
    b.for_(from as i64, to as i64, 1, |b, i| {
        let di = b.add(dst, i);
        b.store(col, di, 0, z);
    });
}

/// `col[n][(c, ky, kx)][(oy, ox)]` from NCHW `x`; parallel over input channels.
fn im2col_nchw(name: &str, s: &Shape2) -> crate::ir::Kernel {
    let mut b = KernelBuilder::new(format!("{name}_im2col"));
    let (k, p) = (s.k(), s.p());
    let x = b.buf("x", Type::F32, s.n * s.c * s.h * s.w, true);
    let col = b.buf("col", Type::F32, s.n * k * p, false);
    let s = s.clone();
    b.parallel(0, s.c as i64, 1, |b, c| {
        b.for_(0, s.n as i64, 1, |b, n| {
            let plane = b.mul_imm(n, (s.c * s.h * s.w) as i64);
            let cp = b.mul_imm(c, (s.h * s.w) as i64);
            let xbase = b.add(plane, cp);
            let nb = b.mul_imm(n, (k * p) as i64);
            let rows = b.mul_imm(c, (s.kh * s.kw * p) as i64);
            let cbase = b.add(nb, rows);
            for ky in 0..s.kh {
                let (ylo, yhi) = Shape2::valid(s.oh, s.h, s.sh, s.ph, ky, s.dh);
                for kx in 0..s.kw {
                    let (xlo, xhi) = Shape2::valid(s.ow, s.w, s.sw, s.pw, kx, s.dw);
                    let row = b.add_imm(cbase, ((ky * s.kw + kx) * p) as i64);
                    zero_run(b, col, row, 0, ylo * s.ow);
                    zero_run(b, col, row, yhi * s.ow, s.oh * s.ow);
                    if ylo >= yhi {
                        continue;
                    }
                    b.for_(ylo as i64, yhi as i64, 1, |b, oy| {
                        let d = b.mul_imm(oy, s.ow as i64);
                        let dst = b.add(row, d);
                        zero_run(b, col, dst, 0, xlo);
                        zero_run(b, col, dst, xhi, s.ow);
                        if xlo < xhi {
                            // iy = oy·sh - ph + ky·dh; ix = ox·sw - pw + kx·dw.
                            let iy = b.mul_imm(oy, s.sh as i64);
                            let iy = b.add_imm(iy, ky as i64 * s.dh as i64 - s.ph as i64);
                            let r = b.mul_imm(iy, s.w as i64);
                            let src = b.add(xbase, r);
                            let ix0 =
                                xlo as i64 * s.sw as i64 + kx as i64 * s.dw as i64 - s.pw as i64;
                            let src = b.add_imm(src, ix0);
                            let dst = b.add_imm(dst, xlo as i64);
                            copy_run(b, x, src, s.sw as i64, col, dst, xhi - xlo);
                        }
                    });
                }
            }
        });
    });
    b.finish()
}

/// `col[n][(oy, ox)][(ky, kx, c)]` from NHWC `x`; parallel over output rows.
fn im2col_nhwc(name: &str, s: &Shape2) -> crate::ir::Kernel {
    let mut b = KernelBuilder::new(format!("{name}_im2col"));
    let (k, p) = (s.k(), s.p());
    let x = b.buf("x", Type::F32, s.n * s.c * s.h * s.w, true);
    let col = b.buf("col", Type::F32, s.n * k * p, false);
    let s = s.clone();
    let z = b.fconst(0.0);
    let zv = b.splat(Type::F32X4, z);
    b.parallel(0, (s.n * s.oh) as i64, 1, |b, noy| {
        let n = {
            let d = b.index(s.oh as i64);
            b.div(noy, d)
        };
        let oy = {
            let d = b.index(s.oh as i64);
            b.binary(crate::ir::BinOp::Rem, noy, d)
        };
        let xn = b.mul_imm(n, (s.h * s.w * s.c) as i64);
        b.for_(0, s.ow as i64, 1, |b, ox| {
            let pix = b.mul_imm(ox, k as i64);
            let rowbase = b.mul_imm(noy, (s.ow * k) as i64);
            let dst0 = b.add(rowbase, pix);
            for ky in 0..s.kh {
                for kx in 0..s.kw {
                    let dst = b.add_imm(dst0, ((ky * s.kw + kx) * s.c) as i64);
                    // Validity depends on oy and ox (runtime here): clamp and mask.
                    let iy = b.mul_imm(oy, s.sh as i64);
                    let iy = b.add_imm(iy, ky as i64 * s.dh as i64 - s.ph as i64);
                    let ix = b.mul_imm(ox, s.sw as i64);
                    let ix = b.add_imm(ix, kx as i64 * s.dw as i64 - s.pw as i64);
                    let zero = b.index(0);
                    let hmax = b.index(s.h as i64 - 1);
                    let wmax = b.index(s.w as i64 - 1);
                    let iyc = b.max(iy, zero);
                    let iyc = b.min(iyc, hmax);
                    let ixc = b.max(ix, zero);
                    let ixc = b.min(ixc, wmax);
                    let inside = {
                        let a = b.cmp(crate::ir::CmpOp::Eq, iy, iyc);
                        let c2 = b.cmp(crate::ir::CmpOp::Eq, ix, ixc);
                        let a = b.cast(Type::I32, a);
                        let c2 = b.cast(Type::I32, c2);
                        let both = b.binary(crate::ir::BinOp::And, a, c2);
                        let one = b.iconst(Type::I32, 1);
                        b.cmp(crate::ir::CmpOp::Eq, both, one)
                    };
                    let r = b.mul_imm(iyc, s.w as i64);
                    let pos = b.add(r, ixc);
                    let pos = b.mul_imm(pos, s.c as i64);
                    let src = b.add(xn, pos);
                    let vend = s.c / 4 * 4;
                    if vend > 0 {
                        b.for_(0, vend as i64, 4, |b, c| {
                            let si = b.add(src, c);
                            let v = b.load(Type::F32X4, x, si, 0);
                            let t = b.cast(Type::I32, inside);
                            let zero32 = b.iconst(Type::I32, 0);
                            let all = b.sub(zero32, t);
                            let m = b.splat(Type::I32X4, all);
                            let v = b.select(m, v, zv);
                            let di = b.add(dst, c);
                            b.store(col, di, 0, v);
                        });
                    }
                    if vend < s.c {
                        b.for_(vend as i64, s.c as i64, 1, |b, c| {
                            let si = b.add(src, c);
                            let v = b.load(Type::F32, x, si, 0);
                            let v = b.select(inside, v, z);
                            let di = b.add(dst, c);
                            b.store(col, di, 0, v);
                        });
                    }
                }
            }
        });
    });
    b.finish()
}

/// Grouped / depthwise NCHW or NHWC convolution, tap by tap: the output plane of a channel is
/// initialised with the bias, each kernel tap adds `w · x` over the output positions where it
/// lands inside the input (compile-time ranges), then the epilogue runs in place.
pub(super) fn grouped(conv: &Conv, cx: &NodeCx, s: &Shape2, w: &[f32]) -> Option<Vec<Lowered>> {
    if s.nhwc {
        if s.group == s.c && s.m == s.c {
            return super::depthwise::lower_nhwc(conv, cx, s, w);
        }
        return super::grouped_nhwc::lower(conv, cx, s, w);
    }
    let out4 = cx.out_shape(0).to_vec();
    let epis = epilogue_operands(cx);
    if !views_fit(&epis, &out4, false) {
        return None;
    }
    let (cg, mg) = (s.c / s.group, s.m / s.group);
    let mut b = KernelBuilder::new(cx.name.clone());
    let x = b.buf("x", Type::F32, s.n * s.c * s.h * s.w, true);
    let wb = b.buf("w", Type::F32, w.len(), true);
    let ops: Vec<(usize, Strided)> = epis
        .iter()
        .map(|(kk, sh)| {
            let buf = b.buf(format!("in{kk}"), Type::F32, sh.iter().product(), true);
            let st = operand_view(*kk, buf, sh, &out4, false).expect("checked");
            (*kk, st)
        })
        .collect();
    let out = b.buf("out", Type::F32, s.n * s.m * s.p(), false);
    let get = |k: usize| ops.iter().find(|(x, _)| *x == k).map(|(_, st)| st.clone());
    let (bias, residual, slope) = (get(2), get(RESIDUAL), get(SLOPE));
    let s2 = s.clone();
    let s = &s2;
    let act = conv.act;
    b.parallel(0, s.m as i64, 1, |b, oc| {
        let g = {
            let d = b.index(mg as i64);
            b.div(oc, d)
        };
        b.for_(0, s.n as i64, 1, |b, n| {
            let ob = {
                let t = b.mul_imm(n, (s.m * s.p()) as i64);
                let u = b.mul_imm(oc, s.p() as i64);
                b.add(t, u)
            };
            let init = match &bias {
                Some(bs) => b.load(Type::F32, bs.buf, oc, 0),
                None => b.fconst(0.0),
            };
            let initv = b.splat(Type::F32X4, init);
            plane_loop(b, s.p(), |b, i, ty| {
                let o = b.add(ob, i);
                b.store(out, o, 0, if ty.is_vector() { initv } else { init });
            });
            b.for_(0, cg as i64, 1, |b, ci| {
                let c = {
                    let t = b.mul_imm(g, cg as i64);
                    b.add(t, ci)
                };
                let xb = {
                    let t = b.mul_imm(n, (s.c * s.h * s.w) as i64);
                    let u = b.mul_imm(c, (s.h * s.w) as i64);
                    b.add(t, u)
                };
                let wrow = {
                    let t = b.mul_imm(oc, (cg * s.kh * s.kw) as i64);
                    let u = b.mul_imm(ci, (s.kh * s.kw) as i64);
                    b.add(t, u)
                };
                for ky in 0..s.kh {
                    let (ylo, yhi) = Shape2::valid(s.oh, s.h, s.sh, s.ph, ky, s.dh);
                    for kx in 0..s.kw {
                        let (xlo, xhi) = Shape2::valid(s.ow, s.w, s.sw, s.pw, kx, s.dw);
                        if ylo >= yhi || xlo >= xhi {
                            continue;
                        }
                        let wv = b.load(Type::F32, wb, wrow, (ky * s.kw + kx) as i64);
                        let wvv = b.splat(Type::F32X4, wv);
                        b.for_(ylo as i64, yhi as i64, 1, |b, oy| {
                            let orow = {
                                let t = b.mul_imm(oy, s.ow as i64);
                                b.add(ob, t)
                            };
                            let xrow = {
                                let t = b.mul_imm(oy, s.sh as i64);
                                let iy = b.add_imm(t, ky as i64 * s.dh as i64 - s.ph as i64);
                                let r = b.mul_imm(iy, s.w as i64);
                                let r = b.add(xb, r);
                                b.add_imm(r, kx as i64 * s.dw as i64 - s.pw as i64)
                            };
                            let len = xhi - xlo;
                            let vend = if s.sw == 1 { xlo + len / 4 * 4 } else { xlo };
                            if vend > xlo {
                                b.for_(xlo as i64, vend as i64, 4, |b, ox| {
                                    let oi = b.add(orow, ox);
                                    let xi = b.add(xrow, ox);
                                    let xv = b.load(Type::F32X4, x, xi, 0);
                                    let acc = b.load(Type::F32X4, out, oi, 0);
                                    let r = b.fma(xv, wvv, acc);
                                    b.store(out, oi, 0, r);
                                });
                            }
                            if vend < xhi {
                                b.for_(vend as i64, xhi as i64, 1, |b, ox| {
                                    let oi = b.add(orow, ox);
                                    let t = b.mul_imm(ox, s.sw as i64);
                                    let xi = b.add(xrow, t);
                                    let xv = b.load(Type::F32, x, xi, 0);
                                    let acc = b.load(Type::F32, out, oi, 0);
                                    let r = b.fma(xv, wv, acc);
                                    b.store(out, oi, 0, r);
                                });
                            }
                        });
                    }
                }
            });
            // Epilogue over the channel's plane.
            if residual.is_some() || slope.is_some() || !act.is_none() {
                let scalar_of = |b: &mut KernelBuilder, st: &Strided, i: Val, ty: Type| -> Val {
                    let t = b.mul_imm(n, st.batch[0]);
                    let u = b.mul_imm(oc, st.rs);
                    let base = b.add(t, u);
                    let v = b.mul_imm(i, st.cs);
                    let off = b.add(base, v);
                    gemm::load_strided(b, ty, st.buf, off, 0, st.cs)
                };
                plane_loop(b, s.p(), |b, i, ty| {
                    let o = b.add(ob, i);
                    let mut v = b.load(ty, out, o, 0);
                    if let Some(y) = &residual {
                        let yv = scalar_of(b, y, i, ty);
                        v = b.add(v, yv);
                    }
                    let sl = slope.as_ref().map(|st| scalar_of(b, st, i, ty));
                    let v = act::activation(b, &act, v, sl);
                    b.store(out, o, 0, v);
                });
            }
        });
    });
    let mut args = vec![Arg::Operand(0), Arg::Operand(1)];
    for (kk, _) in &epis {
        args.push(Arg::Operand(*kk));
    }
    args.push(Arg::Result(0));
    Some(vec![Lowered {
        kernel: b.finish(),
        args,
    }])
}

/// `body(i, ty)` over `0..len`, four lanes at a time with a scalar tail.
fn plane_loop(b: &mut KernelBuilder, len: usize, body: impl Fn(&mut KernelBuilder, Val, Type)) {
    let vend = len / 4 * 4;
    if vend > 0 {
        b.for_(0, vend as i64, 4, |b, i| body(b, i, Type::F32X4));
    }
    if vend < len {
        b.for_(vend as i64, len as i64, 1, |b, i| body(b, i, Type::F32));
    }
}
