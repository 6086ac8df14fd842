//! Gemm and MatMul lowered onto the GEMM micro-kernel of [`super::gemm`]: operand views
//! with batch broadcasting, compile-time packing of a constant B, run-time packing of a
//! large A or transposing of a runtime B, and the fused epilogue operands.

use super::gemm::{
    AOperand, BOperand, GemmSpec, Strided, emit, pack_a_kernels, pack_b, worth_packing_a,
};
use super::{
    Arg, Lowered, NodeCx,
    elementwise::{broadcast_strides, dense_strides},
};
use crate::builder::KernelBuilder;
use crate::ir::{Buf, Type};
use kiln_core::Result;
use kiln_graph::ops::Op;
use kiln_graph::ops::activation::{RESIDUAL, SLOPE};

/// Strides of an epilogue operand of `shape` broadcast to the result `out` (`[batch.., m, n]`).
fn epi_operand(buf: Buf, shape: &[usize], out: &[usize]) -> Strided {
    let st = broadcast_strides(shape, out);
    let r = out.len();
    Strided {
        buf,
        rs: st[r - 2],
        cs: st[r - 1],
        batch: st[..r - 2].to_vec(),
    }
}

/// Lowers Gemm and MatMul (with their fused epilogues).
pub fn lower(op: &Op, cx: &NodeCx) -> Result<Option<Vec<Lowered>>> {
    let (act, trans_a, trans_b, alpha, beta, is_gemm) = match op {
        Op::Gemm(g) => (g.act, g.trans_a, g.trans_b, g.alpha, g.beta, true),
        Op::MatMul(m) => (m.act, m.trans_a, m.trans_b, 1.0, 1.0, false),
        _ => return Ok(None),
    };
    let (Some(ash), Some(bsh)) = (cx.in_shape(0), cx.in_shape(1)) else {
        return Ok(None);
    };
    let out = cx.out_shape(0).to_vec();
    // Rank-1 operands (numpy promotion) are rare in CNNs: leave them to the reference path.
    if ash.len() < 2 || bsh.len() < 2 || out.len() < 2 {
        return Ok(None);
    }
    let r = out.len();
    let (m, n) = (out[r - 2], out[r - 1]);
    let k = if trans_a {
        ash[ash.len() - 2]
    } else {
        ash[ash.len() - 1]
    };
    let batch = out[..r - 2].to_vec();
    // Batch strides of A and B as if their matrices were [m,k] / [k,n] blocks.
    let mat_batch = |shape: &[usize]| -> Vec<i64> {
        let mut full = batch.clone();
        full.extend_from_slice(&shape[shape.len() - 2..]);
        let st = broadcast_strides(shape, &full);
        st[..r - 2].to_vec()
    };
    let a_cols = ash[ash.len() - 1] as i64;
    let (b_rows, b_cols) = (bsh[bsh.len() - 2] as i64, bsh[bsh.len() - 1] as i64);
    let b_const = cx.const_f32(1).filter(|_| bsh.len() == 2);
    let mut args = vec![Arg::Operand(0)];
    let packed_b: Option<std::sync::Arc<[f32]>> = b_const.map(|w| {
        pack_b(k, n, |kk, nn| {
            if trans_b {
                w[nn * b_cols as usize + kk]
            } else {
                w[kk * b_cols as usize + nn]
            }
        })
        .into()
    });
    // A runtime B read across columns (transposed) cannot be vectorised along n: a first
    // kernel transposes it into scratch, laid out `[batch.., k, n]`.
    let b_bytes = bsh.iter().product::<usize>() * 4;
    let transpose_b = packed_b.is_none() && trans_b;
    match &packed_b {
        Some(p) => args.push(Arg::Const(p.clone())),
        None if transpose_b => args.push(Arg::Scratch(b_bytes)),
        None => args.push(Arg::Operand(1)),
    }
    let a_batch = mat_batch(ash);
    let b_batch = mat_batch(bsh);
    // Pack A at run time into panels (unbatched products only); it goes after B's scratch.
    let pack_a_at = b_bytes.div_ceil(64) * 64;
    let pack_a = batch.iter().product::<usize>() == 1 && worth_packing_a(m, k, n);
    if pack_a {
        args[0] = Arg::ScratchAt(pack_a_at, m * k * 4);
    }
    let bias_k = if is_gemm || cx.ins.get(2).copied().flatten().is_some() {
        2
    } else {
        usize::MAX
    };
    let opt = |k: usize| cx.in_shape(k).map(|s| s.to_vec());
    let bias_shape = if bias_k == 2 { opt(2) } else { None };
    let (res_shape, slope_shape) = (opt(RESIDUAL), opt(SLOPE));
    for (k, s) in [
        (2, &bias_shape),
        (RESIDUAL, &res_shape),
        (SLOPE, &slope_shape),
    ] {
        if s.is_some() {
            args.push(Arg::Operand(k));
        }
    }
    args.push(Arg::Result(0));
    let len = |s: &[usize]| s.iter().product::<usize>();
    let (asz, bsz) = (len(ash), packed_b.as_ref().map_or(len(bsh), |p| p.len()));
    let declare = |b: &mut KernelBuilder| -> GemmSpec {
        let abuf = b.buf("a", Type::F32, asz, true);
        let bbuf = b.buf("b", Type::F32, bsz, true);
        let mut epi = |s: &Option<Vec<usize>>, nm: &str| {
            s.as_ref()
                .map(|s| epi_operand(b.buf(nm, Type::F32, len(s), true), s, &out))
        };
        let bias = epi(&bias_shape, "bias");
        let residual = epi(&res_shape, "y");
        let slope = epi(&slope_shape, "slope");
        let cbuf = b.buf("c", Type::F32, len(&out), false);
        let c = Strided {
            buf: cbuf,
            rs: n as i64,
            cs: 1,
            batch: dense_strides(&out)[..r - 2].to_vec(),
        };
        let a = if pack_a {
            AOperand::Packed(abuf)
        } else {
            AOperand::Strided(Strided {
                buf: abuf,
                rs: if trans_a { 1 } else { a_cols },
                cs: if trans_a { a_cols } else { 1 },
                batch: a_batch.clone(),
            })
        };
        let bop = if packed_b.is_some() {
            BOperand::Packed(bbuf)
        } else {
            BOperand::Strided(Strided {
                buf: bbuf,
                rs: if trans_b { b_rows } else { b_cols },
                cs: 1,
                batch: b_batch.clone(),
            })
        };
        GemmSpec {
            m,
            n,
            k,
            batch: batch.clone(),
            a,
            b: bop,
            c,
            bias,
            residual,
            slope,
            alpha,
            beta,
            act,
        }
    };
    let mut lowered = Vec::new();
    if pack_a {
        let (rs, cs) = if trans_a { (1, a_cols) } else { (a_cols, 1) };
        lowered.extend(pack_a_kernels(
            &cx.name,
            (m, k),
            (rs, cs),
            (Arg::Operand(0), asz),
            Arg::ScratchAt(pack_a_at, m * k * 4),
        ));
    }
    if transpose_b {
        let r = bsh.len();
        let mut dims = bsh.to_vec();
        dims.swap(r - 2, r - 1);
        let src_st = super::elementwise::dense_strides(bsh);
        let mut strides = src_st.clone();
        strides.swap(r - 2, r - 1);
        let src = super::elementwise::View {
            arg: Arg::Operand(1),
            len: b_bytes / 4,
            off: 0,
            strides,
        };
        let dst = super::elementwise::View {
            arg: Arg::Scratch(b_bytes),
            len: b_bytes / 4,
            off: 0,
            strides: super::elementwise::dense_strides(&dims),
        };
        lowered.push(super::elementwise::map_views(
            &format!("{}_bt", cx.name),
            &dims,
            &[src],
            &dst,
            &|_, v| v[0],
        ));
    }
    for kernel in emit(&cx.name, n, &declare) {
        lowered.push(Lowered {
            kernel,
            args: args.clone(),
        });
    }
    Ok(Some(lowered))
}
