//! Kernels that turn f32 activations into the u8 code panels the int8 GEMM reads: quantise
//! rows into a (padded) destination, fill padding with the zero point, and gather im2col
//! panels from a padded channels-last image.

use super::quantize::{self, centred_int};
use crate::builder::KernelBuilder;
use crate::ir::{Buf, Kernel, Type, Val};
use kiln_quant::Rounding;
use kiln_quant::arith::QParams;

/// Where quantised rows go: source row `r` (of `len` contiguous f32 at `r·src_stride`) lands
/// at `(r / per_group)·gstride + (r mod per_group)·rstride + base` of the byte buffer.
#[derive(Debug, Clone)]
pub struct RowMap {
    pub rows: usize,
    pub len: usize,
    pub src_stride: usize,
    pub per_group: usize,
    pub gstride: usize,
    pub rstride: usize,
    pub base: usize,
    pub dst_len: usize,
}

impl RowMap {
    /// NHWC rows `(n, h)` of an `[n, h, w, c]` tensor into a `[n, hp, wp, c]` image padded
    /// by `pt` rows above and `pl` columns left; the image is `dst_len` bytes.
    pub fn padded_nhwc(
        [n, h, w, c]: [usize; 4],
        hp: usize,
        wp: usize,
        pt: usize,
        pl: usize,
        dst_len: usize,
    ) -> RowMap {
        RowMap {
            rows: n * h,
            len: w * c,
            src_stride: w * c,
            per_group: h,
            gstride: hp * wp * c,
            rstride: wp * c,
            base: (pt * wp + pl) * c,
            dst_len,
        }
    }

    /// Dense rows of `len` into rows of `stride` bytes.
    pub fn dense(rows: usize, len: usize, stride: usize) -> RowMap {
        RowMap {
            rows,
            len,
            src_stride: len,
            per_group: rows.max(1),
            gstride: 0,
            rstride: stride,
            base: 0,
            dst_len: rows * stride,
        }
    }
}

/// How the simulator turns the stored operand into codes: fake-quantise with each of `pre`
/// (the TQCs that quantise on the way), then quantise with `p` and rounding `r`.
#[derive(Debug, Clone)]
pub struct CodeSpec {
    pub pre: Vec<QParams>,
    pub p: QParams,
    pub r: Rounding,
    /// The stored value is known to be on `p`'s grid (no `pre`, rounding not `Up`).
    pub on_grid: bool,
}

impl CodeSpec {
    /// The centred code `q − z` of one stored f32 value or vector, as i32.
    pub fn centred_int(&self, b: &mut KernelBuilder, mut x: Val) -> Val {
        if self.on_grid {
            return quantize::recover_on_grid(b, x, &self.p);
        }
        // Quantising a value just fake-quantised onto the same grid gives back the code it
        // was rounded to (for every rounding to nearest; `Up` may step past it), so the
        // last round trip through f32 — a multiply and a second division — is skipped.
        if let Some((last, rest)) = self.pre.split_last()
            && quantize::same_grid(last, &self.p)
            && self.r != Rounding::Up
        {
            for p in rest {
                x = quantize::fake_quant(b, x, p);
            }
            return centred_int(b, x, last, last.rounding);
        }
        for p in &self.pre {
            x = quantize::fake_quant(b, x, p);
        }
        centred_int(b, x, &self.p, self.r)
    }

    /// The code (centred code plus `z`, in 0..=255), as i32.
    fn code(&self, b: &mut KernelBuilder, x: Val) -> Val {
        let c = self.centred_int(b, x);
        let z = b.iconst(Type::I32, self.p.z() as i64);
        let z = if b.ty(c).is_vector() {
            b.splat(Type::I32X4, z)
        } else {
            z
        };
        b.add(c, z)
    }
}

/// `dst[map(r) + j] = code(src[r·src_stride + j])`.
pub fn quantize_rows(name: &str, src_len: usize, map: &RowMap, spec: &CodeSpec) -> Kernel {
    let mut b = KernelBuilder::new(name);
    let x = b.buf("x", Type::F32, src_len, true);
    let out = b.buf("codes", Type::U8, map.dst_len, false);
    let vec_end = map.len / 16 * 16;
    b.parallel(0, map.rows as i64, 1, |b, r| {
        let dbase = row_base(b, map, r);
        let sbase = b.mul_imm(r, map.src_stride as i64);
        if vec_end > 0 {
            b.for_(0, vec_end as i64, 16, |b, j| {
                let so = b.add(sbase, j);
                let mut parts = Vec::with_capacity(4);
                for q in 0..4 {
                    let v = b.load(Type::F32X4, x, so, 4 * q);
                    parts.push(spec.code(b, v));
                }
                let bytes = b.narrow_u8(parts[0], parts[1], parts[2], parts[3]);
                let dof = b.add(dbase, j);
                b.store(out, dof, 0, bytes);
            });
        }
        if vec_end < map.len {
            b.for_(vec_end as i64, map.len as i64, 1, |b, j| {
                let so = b.add(sbase, j);
                let v = b.load(Type::F32, x, so, 0);
                let c = spec.code(b, v);
                let dof = b.add(dbase, j);
                quantize::store_code(b, out, dof, c);
            });
        }
    });
    b.finish()
}

/// `dst[map(r) + j] = src[r·src_stride + j]` for an operand already stored as codes.
pub fn copy_rows(name: &str, src_len: usize, map: &RowMap) -> Kernel {
    let mut b = KernelBuilder::new(name);
    let x = b.buf("x", Type::U8, src_len, true);
    let out = b.buf("codes", Type::U8, map.dst_len, false);
    b.parallel(0, map.rows as i64, 1, |b, r| {
        let dbase = row_base(b, map, r);
        let sbase = b.mul_imm(r, map.src_stride as i64);
        copy_bytes(b, x, sbase, 0, out, dbase, 0, map.len);
    });
    b.finish()
}

/// Where row `r` starts in the destination of `map`.
fn row_base(b: &mut KernelBuilder, map: &RowMap, r: Val) -> Val {
    let pg = b.index(map.per_group as i64);
    let g = b.binary(crate::ir::BinOp::Div, r, pg);
    let gm = b.mul_imm(g, map.per_group as i64);
    let h = b.sub(r, gm);
    let gs = b.mul_imm(g, map.gstride as i64);
    let hs = b.mul_imm(h, map.rstride as i64);
    let d0 = b.add(gs, hs);
    b.add_imm(d0, map.base as i64)
}

/// Quantises an NCHW tensor `[n, c, h, w]` into a padded NHWC byte image whose rows are
/// `(n, h)`: a transposing gather that reads each channel's row four pixels at a time (one
/// vector quantised at once) and scatters the four codes `c` bytes apart.
pub fn quantize_nchw(name: &str, dims: [usize; 4], map: &RowMap, spec: &CodeSpec) -> Kernel {
    let [n, c, h, w] = dims;
    let mut b = KernelBuilder::new(name);
    let x = b.buf("x", Type::F32, n * c * h * w, true);
    let out = b.buf("codes", Type::U8, map.dst_len, false);
    let vec_end = w / 4 * 4;
    b.parallel(0, (n * h) as i64, 1, |b, r| {
        let hh = b.index(h as i64);
        let g = b.binary(crate::ir::BinOp::Div, r, hh);
        let gm = b.mul_imm(g, h as i64);
        let y = b.sub(r, gm);
        let dbase = row_base(b, map, r);
        // Source (g, ch, y, xx) at ((g·c + ch)·h + y)·w + xx.
        let s0 = b.mul_imm(g, (c * h * w) as i64);
        let s1 = b.mul_imm(y, w as i64);
        let sbase = b.add(s0, s1);
        b.for_(0, c as i64, 1, |b, ch| {
            let so = b.mul_imm(ch, (h * w) as i64);
            let srow = b.add(sbase, so);
            let drow = b.add(dbase, ch);
            if vec_end > 0 {
                b.for_(0, vec_end as i64, 4, |b, xx| {
                    let sx = b.add(srow, xx);
                    let v = b.load(Type::F32X4, x, sx, 0);
                    let codes = spec.code(b, v);
                    let dx = b.mul_imm(xx, c as i64);
                    let dx = b.add(drow, dx);
                    for l in 0..4 {
                        let e = b.extract(codes, l as u8);
                        quantize::store_code_at(b, out, dx, (l * c) as i64, e);
                    }
                });
            }
            if vec_end < w {
                b.for_(vec_end as i64, w as i64, 1, |b, xx| {
                    let sx = b.add(srow, xx);
                    let v = b.load(Type::F32, x, sx, 0);
                    let code = spec.code(b, v);
                    let dx = b.mul_imm(xx, c as i64);
                    let dx = b.add(drow, dx);
                    quantize::store_code(b, out, dx, code);
                });
            }
        });
    });
    b.finish()
}

/// Fills a byte buffer with `value`.
pub fn fill(name: &str, len: usize, value: u8) -> Kernel {
    let mut b = KernelBuilder::new(name);
    let out = b.buf("out", Type::U8, len, false);
    let s = b.iconst(Type::I8, value as i8 as i64);
    let v = b.splat(Type::I8X16, s);
    let vec_end = len / 16 * 16;
    if vec_end > 0 {
        b.parallel(0, vec_end as i64, 16, |b, i| b.store(out, i, 0, v));
    }
    if vec_end < len {
        let u = b.iconst(Type::U8, value as i64);
        b.for_(vec_end as i64, len as i64, 1, |b, i| b.store(out, i, 0, u));
    }
    b.finish()
}

/// Geometry of an im2col over a padded NHWC byte image.
#[derive(Debug, Clone)]
pub struct Im2col {
    pub n: usize,
    /// Padded input height/width, and the channels copied per tap.
    pub hp: usize,
    pub wp: usize,
    pub c: usize,
    /// Bytes per image pixel (`c`, or all groups' channels for one group of a grouped
    /// conv), and the first channel copied.
    pub pixel: usize,
    pub c_off: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// Bytes per panel row (K rounded up to 4).
    pub kp: usize,
}

/// `A[m, (i·kw + j)·c + ch] = P[n, oh·sh + i·dh, ow·sw + j·dw, c_off + ch]` for
/// `m = (n, oh, ow)`.
pub fn im2col(name: &str, g: &Im2col) -> Kernel {
    let mut b = KernelBuilder::new(name);
    let src = b.buf("image", Type::U8, g.n * g.hp * g.wp * g.pixel, true);
    let rows = g.n * g.oh * g.ow;
    let dst = b.buf("panel", Type::U8, rows * g.kp, false);
    let row_bytes = (g.wp * g.pixel) as i64;
    b.parallel(0, (g.n * g.oh) as i64, 1, |b, r| {
        let ohv = b.index(g.oh as i64);
        let n = b.binary(crate::ir::BinOp::Div, r, ohv);
        let nm = b.mul_imm(n, g.oh as i64);
        let y = b.sub(r, nm);
        let s0 = b.mul_imm(n, (g.hp * g.wp * g.pixel) as i64);
        let s1 = b.mul_imm(y, g.stride[0] as i64 * row_bytes);
        let sbase = b.add(s0, s1);
        let dbase = b.mul_imm(r, (g.ow * g.kp) as i64);
        b.for_(0, g.ow as i64, 1, |b, x| {
            let sx = b.mul_imm(x, (g.stride[1] * g.pixel) as i64);
            let sx = b.add(sbase, sx);
            let dx = b.mul_imm(x, g.kp as i64);
            let dx = b.add(dbase, dx);
            for i in 0..g.kh {
                for j in 0..g.kw {
                    let so = (i * g.dilation[0]) as i64 * row_bytes
                        + (j * g.dilation[1] * g.pixel + g.c_off) as i64;
                    let doff = ((i * g.kw + j) * g.c) as i64;
                    copy_bytes(b, src, sx, so, dst, dx, doff, g.c);
                }
            }
        });
    });
    b.finish()
}

/// Copies `len` bytes from `src[s + sd]` to `dst[d + dd]`: 16-byte vectors, the last one
/// overlapping the previous when `len` is not a multiple of 16; bytes one by one below 16.
#[allow(clippy::too_many_arguments)]
fn copy_bytes(
    b: &mut KernelBuilder,
    src: Buf,
    s: Val,
    sd: i64,
    dst: Buf,
    d: Val,
    dd: i64,
    len: usize,
) {
    if len < 16 {
        for t in 0..len as i64 {
            let v = b.load(Type::U8, src, s, sd + t);
            b.store(dst, d, dd + t, v);
        }
        return;
    }
    let full = len / 16;
    if full <= 4 {
        for t in 0..full as i64 {
            let v = b.load(Type::I8X16, src, s, sd + 16 * t);
            b.store(dst, d, dd + 16 * t, v);
        }
    } else {
        b.for_(0, full as i64 * 16, 16, |b, t| {
            let so = b.add(s, t);
            let v = b.load(Type::I8X16, src, so, sd);
            let dof = b.add(d, t);
            b.store(dst, dof, dd, v);
        });
    }
    if !len.is_multiple_of(16) {
        let last = len as i64 - 16;
        let v = b.load(Type::I8X16, src, s, sd + last);
        b.store(dst, d, dd + last, v);
    }
}
