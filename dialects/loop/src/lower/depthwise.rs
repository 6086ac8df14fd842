//! Depthwise convolution in NHWC, vectorised along channels.
//!
//! The input is first copied into a zero-bordered scratch image (when the conv pads), so the
//! convolution kernel itself has no bounds tests: each output pixel is, per group of four
//! channels, a bias plus one FMA per kernel tap (taps unrolled, weights packed tap-major so a
//! tap's four channel weights are one vector load), then the fused epilogue and one store.

use super::conv::{Shape2, epi, epilogue_operands, views_fit};
use super::elementwise::{View, map_views};
use super::gemm::Strided;
use super::{Arg, Lowered, NodeCx, act};
use crate::builder::KernelBuilder;
use crate::ir::{Buf, Type, Val};
use kiln_graph::ops::Conv;
use kiln_graph::ops::activation::{RESIDUAL, SLOPE};

/// The padded image the taps read: `[n, hp, wp, c]`, input at row `ph`, column `pw`.
struct Padded {
    hp: usize,
    wp: usize,
    /// Whether a scratch copy is needed at all.
    copy: bool,
}

fn padded(s: &Shape2) -> Padded {
    let need_h = (s.oh - 1) * s.sh + (s.kh - 1) * s.dh + 1;
    let need_w = (s.ow - 1) * s.sw + (s.kw - 1) * s.dw + 1;
    let copy = s.ph > 0 || s.pw > 0 || need_h > s.h || need_w > s.w;
    if copy {
        Padded {
            hp: need_h,
            wp: need_w,
            copy,
        }
    } else {
        Padded {
            hp: s.h,
            wp: s.w,
            copy,
        }
    }
}

/// Zero-fills `len` floats of a buffer, in parallel chunks.
fn zero_fill(name: &str, len: usize) -> Lowered {
    let mut b = KernelBuilder::new(format!("{name}_zero"));
    let buf = b.buf("dst", Type::F32, len, false);
    let z = b.fsplat(Type::F32X4, 0.0);
    let zs = b.fconst(0.0);
    let chunk = 1024usize;
    let chunks = len / chunk;
    b.parallel(0, chunks as i64 + 1, 1, |b, c| {
        let base = b.mul_imm(c, chunk as i64);
        // The last chunk is partial: clamp its start so it rewrites zeros it may overlap.
        let last = b.index((len.saturating_sub(chunk)) as i64);
        let base = b.min(base, last);
        let n = chunk.min(len);
        b.for_(0, (n / 4 * 4) as i64, 4, |b, i| {
            let o = b.add(base, i);
            b.store(buf, o, 0, z);
        });
        b.for_((n / 4 * 4) as i64, n as i64, 1, |b, i| {
            let o = b.add(base, i);
            b.store(buf, o, 0, zs);
        });
    });
    Lowered {
        kernel: b.finish(),
        args: vec![Arg::Scratch(len * 4)],
    }
}

pub(super) fn lower_nhwc(conv: &Conv, cx: &NodeCx, s: &Shape2, w: &[f32]) -> Option<Vec<Lowered>> {
    let out4 = cx.out_shape(0).to_vec();
    let epis = epilogue_operands(cx);
    if !views_fit(&epis, &out4, true) {
        return None;
    }
    let pad = padded(s);
    let c = s.c;
    let img_len = s.n * pad.hp * pad.wp * c;
    let mut kernels = Vec::new();
    if pad.copy {
        kernels.push(zero_fill(&cx.name, img_len));
        // Input pixels beyond what any tap reads are not copied (the image may even be all
        // padding when the left/top pad exceeds the window's reach).
        let rows = s.h.min(pad.hp.saturating_sub(s.ph as usize));
        let cols = s.w.min(pad.wp.saturating_sub(s.pw as usize));
        let dims = [s.n, rows, cols, c];
        let src = View {
            arg: Arg::Operand(0),
            len: s.n * s.h * s.w * c,
            off: 0,
            strides: vec![(s.h * s.w * c) as i64, (s.w * c) as i64, c as i64, 1],
        };
        let dst = View {
            arg: Arg::Scratch(img_len * 4),
            len: img_len,
            off: ((s.ph as usize * pad.wp + s.pw as usize) * c) as i64,
            strides: vec![
                (pad.hp * pad.wp * c) as i64,
                (pad.wp * c) as i64,
                c as i64,
                1,
            ],
        };
        if rows > 0 && cols > 0 {
            kernels.push(map_views(
                &format!("{}_pad", cx.name),
                &dims,
                &[src],
                &dst,
                &|_, v| v[0],
            ));
        }
    }
    // Weights tap-major: w_packed[tap][c] = W[c, 0, ky, kx].
    let taps = s.kh * s.kw;
    let packed: Vec<f32> = (0..taps)
        .flat_map(|t| (0..c).map(move |ch| (t, ch)))
        .map(|(t, ch)| w[ch * taps + t])
        .collect();
    let mut b = KernelBuilder::new(cx.name.clone());
    let img = b.buf("img", Type::F32, img_len, true);
    let wb = b.buf("w", Type::F32, packed.len(), true);
    let ops: Vec<(usize, Buf, Vec<usize>)> = epis
        .iter()
        .map(|(k, sh)| {
            (
                *k,
                b.buf(format!("in{k}"), Type::F32, sh.iter().product(), true),
                sh.clone(),
            )
        })
        .collect();
    let out = b.buf("out", Type::F32, s.n * s.p() * c, false);
    let find = |k: usize| ops.iter().find(|o| o.0 == k);
    let bias = find(2).map(|o| o.1);
    let strided = |k: usize| find(k).map(|o| epi(o.1, &o.2, &out4, true).expect("checked"));
    let (residual, slope) = (strided(RESIDUAL), strided(SLOPE));
    let act = conv.act;
    let s2 = s.clone();
    let s = &s2;
    b.parallel(0, (s.n * s.oh) as i64, 1, |b, row| {
        let ohv = b.index(s.oh as i64);
        let n = b.div(row, ohv);
        let oy = b.binary(crate::ir::BinOp::Rem, row, ohv);
        let img_row = {
            let t = b.mul_imm(n, (pad.hp * pad.wp * c) as i64);
            let u = b.mul_imm(oy, (s.sh * pad.wp * c) as i64);
            b.add(t, u)
        };
        let out_row = b.mul_imm(row, (s.ow * c) as i64);
        b.for_(0, s.ow as i64, 1, |b, ox| {
            let ib = {
                let t = b.mul_imm(ox, (s.sw * c) as i64);
                b.add(img_row, t)
            };
            let ob = {
                let t = b.mul_imm(ox, c as i64);
                b.add(out_row, t)
            };
            let pix = {
                let t = b.mul_imm(oy, s.ow as i64);
                b.add(t, ox)
            };
            let chunk = |b: &mut KernelBuilder, ch: Val, ty: Type| {
                let mut acc = match bias {
                    Some(bb) => b.load(ty, bb, ch, 0),
                    None => b.fsplat(ty, 0.0),
                };
                let ic = b.add(ib, ch);
                for ky in 0..s.kh {
                    for kx in 0..s.kw {
                        let tap = ky * s.kw + kx;
                        let d = ((ky * s.dh * pad.wp + kx * s.dw) * c) as i64;
                        let x = b.load(ty, img, ic, d);
                        let wv = b.load(ty, wb, ch, (tap * c) as i64);
                        acc = b.fma(x, wv, acc);
                    }
                }
                let at = |b: &mut KernelBuilder, st: &Strided| -> Val {
                    let t = b.mul_imm(n, st.batch[0]);
                    let u = b.mul_imm(pix, st.rs);
                    let v = b.mul_imm(ch, st.cs);
                    let o = b.add(t, u);
                    let o = b.add(o, v);
                    super::gemm::load_strided(b, ty, st.buf, o, 0, st.cs)
                };
                if let Some(y) = &residual {
                    let yv = at(b, y);
                    acc = b.add(acc, yv);
                }
                let sl = slope.as_ref().map(|st| at(b, st));
                let r = act::activation(b, &act, acc, sl);
                let o = b.add(ob, ch);
                b.store(out, o, 0, r);
            };
            let vend = c / 4 * 4;
            if vend > 0 {
                b.for_(0, vend as i64, 4, |b, ch| chunk(b, ch, Type::F32X4));
            }
            if vend < c {
                b.for_(vend as i64, c as i64, 1, |b, ch| chunk(b, ch, Type::F32));
            }
        });
    });
    let mut args = vec![
        if pad.copy {
            Arg::Scratch(img_len * 4)
        } else {
            Arg::Operand(0)
        },
        Arg::Const(packed.into()),
    ];
    for (k, _) in &epis {
        args.push(Arg::Operand(*k));
    }
    args.push(Arg::Result(0));
    kernels.push(Lowered {
        kernel: b.finish(),
        args,
    });
    Some(kernels)
}
