//! Data movement: reshapes, transposes, slices, padding, tiling, gathers with constant indices,
//! nearest-neighbour resizes, concatenation and split.
//!
//! Rather than re-deriving each op's index rules, a single-input data-movement op is evaluated
//! at compile time by the reference implementation on an *index image* — a tensor whose element
//! `i` holds `i` — which yields, for every result element, the input element it copies (and −1
//! where padding supplies the constant). When that map is affine in the result's coordinates it
//! becomes a strided copy (vectorised like any element-wise op); otherwise a gather through a
//! constant index table. Either way the semantics are the reference's by construction.

use super::elementwise::{View, dense_strides, map_views};
use super::{Arg, Lowered, NodeCx};
use crate::builder::KernelBuilder;
use crate::ir::{CmpOp, Kernel, Type, Val};
use kiln_core::{DType, Tensor};
use kiln_graph::ops::{Op, PadMode, ResizeMode};

/// Integers in f64 are exact far beyond any tensor size kiln compiles.
fn index_image(shape: &[usize]) -> Option<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
    Tensor::from_vec(shape, v).ok()
}

/// The source index of every result element, or `None` if the op is not pure data movement
/// of operand 0 (or the reference rejects an f64 image).
pub(crate) fn source_map(op: &Op, cx: &NodeCx) -> Option<Vec<i64>> {
    let moves = match op {
        Op::Reshape(_)
        | Op::Flatten(_)
        | Op::Squeeze(_)
        | Op::Unsqueeze(_)
        | Op::Expand(_)
        | Op::Transpose(_)
        | Op::Slice(_)
        | Op::Tile(_)
        | Op::DepthToSpace(_)
        | Op::SpaceToDepth(_)
        | Op::Gather(_) => true,
        Op::Pad(_) => true,
        Op::Resize(r) => r.mode == ResizeMode::Nearest,
        _ => false,
    };
    if !moves || cx.outs.len() != 1 {
        return None;
    }
    // Every other operand must be a compile-time constant.
    for k in 1..cx.ins.len() {
        if cx.ins[k].is_some() && cx.consts.get(k).copied().flatten().is_none() {
            return None;
        }
    }
    let image = index_image(cx.in_shape(0)?)?;
    let mut operands: Vec<Option<Tensor>> = vec![Some(image)];
    for k in 1..cx.ins.len() {
        operands.push(cx.consts.get(k).copied().flatten().cloned());
    }
    // Constant padding: mark padded elements with -1 (the pad value is applied by the kernel).
    if let Op::Pad(p) = op
        && p.mode == PadMode::Constant
    {
        if operands.len() < 3 {
            operands.resize(3, None);
        }
        operands[2] = Some(Tensor::scalar(-1.0f64));
    }
    let refs: Vec<Option<&Tensor>> = operands.iter().map(|t| t.as_ref()).collect();
    let out = op.eval(&refs, 1).ok()?.into_iter().next()?;
    if out.dtype() != DType::F64 || out.shape() != cx.out_shape(0) {
        return None;
    }
    Some(out.to_f64_vec().into_iter().map(|x| x as i64).collect())
}

/// `(base, strides)` if `map[idx] = base + Σ idx_d · stride_d` over `shape`.
pub(crate) fn affine(map: &[i64], shape: &[usize]) -> Option<(i64, Vec<i64>)> {
    let base = *map.first()?;
    let r = shape.len();
    let mut dense = vec![1usize; r];
    for d in (0..r.saturating_sub(1)).rev() {
        dense[d] = dense[d + 1] * shape[d + 1];
    }
    let strides: Vec<i64> = (0..r)
        .map(|d| {
            if shape[d] > 1 {
                map[dense[d]] - base
            } else {
                0
            }
        })
        .collect();
    let mut idx = vec![0usize; r];
    for &m in map {
        let want = base
            + idx
                .iter()
                .zip(&strides)
                .map(|(&i, &s)| i as i64 * s)
                .sum::<i64>();
        if m != want || m < 0 {
            return None;
        }
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Some((base, strides))
}

/// `out[i] = map[i] < 0 ? pad : in[map[i]]`, the index table a constant.
fn gather(name: &str, in_len: usize, map: &[i64], pad: f32) -> Lowered {
    let kernel = gather_kernel(
        name,
        in_len,
        map,
        (Type::F32, Type::F32),
        Some(pad),
        &|_, v| v,
    );
    Lowered {
        kernel,
        args: vec![
            Arg::Operand(0),
            Arg::Const(index_table(map)),
            Arg::Result(0),
        ],
    }
}

/// `out[i] = convert(in[map[i]])` over buffers of the element types `(in, out)`; with a
/// `pad` (f32 results only), an index below 0 writes it instead. Buffers `x`, `index` (the
/// map as i32, [`index_table`]), `out`.
pub(crate) fn gather_kernel(
    name: &str,
    in_len: usize,
    map: &[i64],
    (from, to): (Type, Type),
    pad: Option<f32>,
    convert: &dyn Fn(&mut KernelBuilder, Val) -> Val,
) -> Kernel {
    let mut b = KernelBuilder::new(name);
    let x = b.buf("x", from, in_len, true);
    let table = b.buf("index", Type::I32, map.len(), true);
    let out = b.buf("out", to, map.len(), false);
    let zero = b.iconst(Type::I32, 0);
    let padv = pad.map(|p| b.fconst(p));
    b.parallel(0, map.len() as i64, 1, |b, i| {
        let j = b.load(Type::I32, table, i, 0);
        let jc = if padv.is_some() { b.max(j, zero) } else { j };
        let ji = b.cast(Type::Index, jc);
        let v = b.load(from, x, ji, 0);
        let mut r = convert(b, v);
        if let Some(padv) = padv {
            let valid = b.cmp(CmpOp::Ge, j, zero);
            r = b.select(valid, r, padv);
        }
        b.store(out, i, 0, r);
    });
    b.finish()
}

/// A gather's map as the bits of its i32 index table (−1 for every padding element).
pub(crate) fn index_table(map: &[i64]) -> Vec<f32> {
    map.iter()
        .map(|&m| f32::from_bits((m.max(-1) as i32) as u32))
        .collect()
}

/// Concat and Split: one strided copy per part, between the part and its slot along `axis`
/// of the whole tensor (`whole` is the result for Concat, the operand for Split).
fn slots(
    cx: &NodeCx,
    axis: i64,
    whole: (Arg, &[usize]),
    parts: Vec<(Arg, Vec<usize>)>,
    into_whole: bool,
) -> Vec<Lowered> {
    let (whole_arg, whole_shape) = whole;
    let r = whole_shape.len() as i64;
    let axis = if axis < 0 { axis + r } else { axis } as usize;
    let wst = dense_strides(whole_shape);
    let mut at = 0usize;
    let mut ks = Vec::new();
    for (k, (arg, s)) in parts.into_iter().enumerate() {
        if s.iter().product::<usize>() > 0 {
            let part = View {
                arg,
                len: s.iter().product(),
                off: 0,
                strides: dense_strides(&s),
            };
            let slot = View {
                arg: whole_arg.clone(),
                len: whole_shape.iter().product(),
                off: at as i64 * wst[axis],
                strides: wst.clone(),
            };
            let (src, dst) = if into_whole {
                (part, slot)
            } else {
                (slot, part)
            };
            ks.push(map_views(
                &format!("{}_{k}", cx.name),
                &s,
                &[src],
                &dst,
                &|_, v| v[0],
            ));
        }
        at += s[axis];
    }
    ks
}

pub fn lower(op: &Op, cx: &NodeCx) -> Option<Vec<Lowered>> {
    match op {
        Op::Concat(c) => {
            let parts = (0..cx.ins.len())
                .map(|k| Some((Arg::Operand(k), cx.in_shape(k)?.to_vec())))
                .collect::<Option<Vec<_>>>()?;
            return Some(slots(
                cx,
                c.axis,
                (Arg::Result(0), cx.out_shape(0)),
                parts,
                true,
            ));
        }
        Op::Split(s) => {
            let parts = cx
                .outs
                .iter()
                .enumerate()
                .map(|(k, o)| (Arg::Result(k), o.shape.clone()))
                .collect();
            return Some(slots(
                cx,
                s.axis,
                (Arg::Operand(0), cx.in_shape(0)?),
                parts,
                false,
            ));
        }
        _ => {}
    }
    let map = source_map(op, cx)?;
    let out = cx.out_shape(0).to_vec();
    let in_len: usize = cx.in_shape(0)?.iter().product();
    if let Some((base, strides)) = affine(&map, &out) {
        let src = View {
            arg: Arg::Operand(0),
            len: in_len,
            off: base,
            strides,
        };
        let dst = View {
            arg: Arg::Result(0),
            len: out.iter().product(),
            off: 0,
            strides: dense_strides(&out),
        };
        return Some(vec![map_views(&cx.name, &out, &[src], &dst, &|_, v| v[0])]);
    }
    if map.len() > i32::MAX as usize {
        return None;
    }
    let pad = match op {
        Op::Pad(_) => cx
            .const_f32(2)
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0),
        _ => 0.0,
    };
    Some(vec![gather(&cx.name, in_len, &map, pad)])
}
