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
use crate::ir::{Buf, CmpOp, Kernel, Type, Val};
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
    let runs = Runs::of(map, in_len);
    let types = (Type::F32, Type::F32);
    let kernel = gather_kernel(name, in_len, &runs, types, Some(pad), None, None);
    Lowered {
        kernel,
        args: vec![
            Arg::Operand(0),
            Arg::Const(runs.table().into()),
            Arg::Result(0),
        ],
    }
}

/// A gather's map in runs: each block of `run` result elements copies `run` consecutive
/// source elements from `starts[block]` on, or is all padding (a start below 0). An NHWC
/// nearest resize or depth-to-space moves whole pixels' channels, so its runs are a
/// channel count long: one index per run instead of per element, and whole vectors copied.
#[derive(Debug, Clone)]
pub(crate) struct Runs {
    pub run: usize,
    pub starts: Vec<i64>,
}

impl Runs {
    /// The longest run length that divides the map into such blocks: the gcd of the map's
    /// length and every position where it breaks (jumps, or enters or leaves padding). A
    /// padding run reads (and discards) source elements from 0 on, so with padding a run
    /// is at most the source's length `src_len`.
    pub(crate) fn of(map: &[i64], src_len: usize) -> Runs {
        fn gcd(a: usize, b: usize) -> usize {
            if b == 0 { a } else { gcd(b, a % b) }
        }
        let mut run = map.len();
        for j in 1..map.len() {
            let (p, m) = (map[j - 1], map[j]);
            let continues = (p >= 0 && m == p + 1) || (p < 0 && m < 0);
            if !continues {
                run = gcd(run, j);
                if run == 1 {
                    break;
                }
            }
        }
        let padded = map.iter().any(|&m| m < 0);
        let run = if padded && run > src_len {
            1
        } else {
            run.max(1)
        };
        Runs {
            run,
            starts: map.iter().step_by(run).map(|&m| m.max(-1)).collect(),
        }
    }

    /// The run starts as the bits of the kernel's i32 index table.
    pub(crate) fn table(&self) -> Vec<f32> {
        self.starts
            .iter()
            .map(|&m| f32::from_bits(m as i32 as u32))
            .collect()
    }
}

/// A per-element conversion inside a gather; it may read the gather's lookup table.
pub(crate) type Convert<'a> = &'a dyn Fn(&mut KernelBuilder, Val, Option<Buf>) -> Val;

/// `out[i] = convert(in[map[i]])` over buffers of the element types `(in, out)`, run by
/// run ([`Runs`]); with a `pad` (f32 results only), a run starting below 0 writes it
/// instead. No `convert` (the same type both sides) copies runs as whole vectors. Buffers
/// `x`, `index` (the run starts as i32, [`Runs::table`]), `out`, and `lut` when `lut`
/// gives its element type and length (for `convert`).
pub(crate) fn gather_kernel(
    name: &str,
    in_len: usize,
    runs: &Runs,
    (from, to): (Type, Type),
    pad: Option<f32>,
    convert: Option<Convert>,
    lut: Option<(Type, usize)>,
) -> Kernel {
    let mut b = KernelBuilder::new(name);
    let x = b.buf("x", from, in_len, true);
    let table = b.buf("index", Type::I32, runs.starts.len(), true);
    let out = b.buf("out", to, runs.starts.len() * runs.run, false);
    let lut = lut.map(|(ty, len)| b.buf("lut", ty, len, true));
    let zero = b.iconst(Type::I32, 0);
    let padv = pad.map(|p| b.fconst(p));
    let run = runs.run;
    b.parallel(0, runs.starts.len() as i64, 1, |b, k| {
        let j = b.load(Type::I32, table, k, 0);
        let o = b.mul_imm(k, run as i64);
        if convert.is_none() && padv.is_none() && from == to {
            let ji = b.cast(Type::Index, j);
            copy_run(b, (x, ji), (out, o), run, from);
            return;
        }
        let jc = if padv.is_some() { b.max(j, zero) } else { j };
        let ji = b.cast(Type::Index, jc);
        let valid = padv.map(|_| b.cmp(CmpOp::Ge, j, zero));
        // Element `e + d` of the run.
        let one = |b: &mut KernelBuilder, e: Val, d: i64| {
            let se = b.add(ji, e);
            let v = b.load(from, x, se, d);
            let mut r = convert.map_or(v, |f| f(b, v, lut));
            if let (Some(padv), Some(valid)) = (padv, valid) {
                r = b.select(valid, r, padv);
            }
            let oe = b.add(o, e);
            b.store(out, oe, d, r);
        };
        if run <= 16 {
            let e = b.index(0);
            for d in 0..run as i64 {
                one(b, e, d);
            }
        } else {
            b.for_(0, run as i64, 1, |b, e| one(b, e, 0));
        }
    });
    b.finish()
}

/// Copies `len` elements of type `ty` from `src[s..]` to `dst[d..]`: whole vectors, the
/// last overlapping the one before when `len` is not a multiple of the lanes; one by one
/// below one vector.
pub(crate) fn copy_run(
    b: &mut KernelBuilder,
    (src, s): (Buf, Val),
    (dst, d): (Buf, Val),
    len: usize,
    ty: Type,
) {
    let (vty, lanes) = match ty {
        Type::U8 => (Type::I8X16, 16),
        Type::F32 => (Type::F32X4, 4),
        _ => (ty, usize::MAX),
    };
    if len < lanes {
        for t in 0..len as i64 {
            let v = b.load(ty, src, s, t);
            b.store(dst, d, t, v);
        }
        return;
    }
    let full = (len / lanes) as i64;
    let l = lanes as i64;
    if full <= 4 {
        for t in 0..full {
            let v = b.load(vty, src, s, l * t);
            b.store(dst, d, l * t, v);
        }
    } else {
        b.for_(0, full * l, l, |b, t| {
            let so = b.add(s, t);
            let v = b.load(vty, src, so, 0);
            let dof = b.add(d, t);
            b.store(dst, dof, 0, v);
        });
    }
    if !len.is_multiple_of(lanes) {
        let last = (len - lanes) as i64;
        let v = b.load(vty, src, s, last);
        b.store(dst, d, last, v);
    }
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

#[cfg(test)]
mod tests {
    use super::Runs;

    #[test]
    fn runs_follow_whole_pixels_and_padding() {
        // A 2× nearest upsampling of a 1×2 image with 3 channels, channels last: each
        // result pixel copies one source pixel's 3 channels.
        let map: Vec<i64> = [0, 0, 3, 3]
            .iter()
            .flat_map(|&p| (0..3).map(move |c| p + c))
            .collect();
        let r = Runs::of(&map, 6);
        assert_eq!((r.run, r.starts.clone()), (3, vec![0, 0, 3, 3]));
        // One contiguous copy is a single run.
        assert_eq!(Runs::of(&[4, 5, 6, 7], 8).run, 4);
        // A jump inside would-be blocks: gcd of the breaks (at 2 and 4) and the length 6.
        let r = Runs::of(&[0, 1, 5, 6, 2, 3], 7);
        assert_eq!((r.run, r.starts), (2, vec![0, 5, 2]));
        // Padding runs are blocks of their own, their start −1.
        let r = Runs::of(&[-1, -1, 0, 1], 2);
        assert_eq!((r.run, r.starts), (2, vec![-1, 0]));
        // ...but never longer than the source, which a padding run reads from 0 on.
        assert_eq!(Runs::of(&[-1, -1, -1, -1], 2).run, 1);
        // Entering padding mid-run breaks it.
        assert_eq!(Runs::of(&[0, 1, 2, -1], 3).run, 1);
    }
}
