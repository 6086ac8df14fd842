//! Indexed reads: `gather` (whole slices along an axis) and `gather_elements` (one element
//! per index, numpy's `take_along_axis`).
//!
//! Indices may be negative (counted from the end). An index out of range is a shape error
//! when shape inference can see it (constant indices) and an eval error at run time, so a
//! bad constant is reported at compile time and a bad computed index never reads out of
//! bounds.

use super::layout::{blocks, contiguous, from_vec};
use super::shape::sized;
use super::util::{arg, norm_axis};
use super::{InferInputs, OpDef};
use kiln_core::{
    AttrReader, Attrs, DType, Element, ErrorKind, Result, Tensor, TensorType, dispatch, ensure,
};
use ndarray::ArrayD;

/// ONNX allows only i32 and i64 indices; anything else (floats above all) is a type error
/// rather than a silent conversion.
fn check_index_type(op: &str, dtype: DType) -> Result<()> {
    ensure!(
        matches!(dtype, DType::I32 | DType::I64),
        Type,
        "{op} indices must be i32 or i64, got {dtype}"
    );
    Ok(())
}

/// Indices with negatives resolved, each checked against `dim`; `kind` is the error kind to
/// report (shape during inference, eval at run time).
fn resolve(op: &str, t: &Tensor, dim: usize, kind: ErrorKind) -> Result<Vec<usize>> {
    check_index_type(op, t.dtype())?;
    let d = dim as i64;
    t.to_i64_vec()?
        .into_iter()
        .map(|i| {
            if i < -d || i >= d {
                return Err(kiln_core::Error::new(
                    kind,
                    format!("{op} index {i} is out of range for an axis of size {dim}"),
                ));
            }
            Ok(if i < 0 { (i + d) as usize } else { i as usize })
        })
        .collect()
}

/// `gather(data, indices) {axis}`: `data[:, ..., indices, ...]` where the indices' dims
/// replace `axis`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gather {
    pub axis: i64,
}

impl Gather {
    fn plan(&self, data: &[usize], indices: &[usize]) -> Result<(usize, Vec<usize>)> {
        ensure!(
            !data.is_empty(),
            Shape,
            "gather data must have rank >= 1, got a scalar"
        );
        let a = norm_axis(self.axis, data.len())?;
        let shape = data[..a]
            .iter()
            .chain(indices)
            .chain(&data[a + 1..])
            .copied()
            .collect();
        Ok((a, sized("gather", shape)?))
    }
}

fn gather_kernel<T: Element>(a: &ArrayD<T>, axis: usize, idx: &[usize], out: &[usize]) -> Tensor {
    let c = contiguous(a);
    let data = c.as_slice().expect("standard layout");
    let (outer, dim, inner) = blocks(a.shape(), axis);
    let mut v = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            let start = (o * dim + i) * inner;
            v.extend_from_slice(&data[start..start + inner]);
        }
    }
    T::wrap(from_vec(out, v))
}

impl OpDef for Gather {
    fn names() -> &'static [&'static str] {
        &["gather"]
    }
    fn name(&self) -> &'static str {
        "gather"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(Gather {
            axis: r.int("axis", 0)?,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().int("axis", self.axis, 0)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let (x, i) = (ins.ty(0)?, ins.ty(1)?);
        check_index_type("gather", i.dtype)?;
        let (axis, shape) = self.plan(&x.shape, &i.shape)?;
        if let Some(v) = ins.opt(1).and_then(|i| i.value) {
            resolve("gather", v, x.shape[axis], ErrorKind::Shape)?;
        }
        Ok(vec![TensorType::new(x.dtype, shape)])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let (x, i) = (arg(ins, 0)?, arg(ins, 1)?);
        let (axis, shape) = self.plan(x.shape(), i.shape())?;
        let idx = resolve("gather", i, x.shape()[axis], ErrorKind::Eval)?;
        Ok(vec![
            dispatch!(x, a => gather_kernel(a, axis, &idx, &shape)),
        ])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

/// `gather_elements(data, indices) {axis}`: `out[p] = data[p with p[axis] = indices[p]]`.
/// The indices have data's rank; off the axis their dims may not exceed data's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GatherElements {
    pub axis: i64,
}

impl GatherElements {
    fn plan(&self, data: &[usize], indices: &[usize]) -> Result<usize> {
        ensure!(
            !data.is_empty(),
            Shape,
            "gather_elements data must have rank >= 1, got a scalar"
        );
        ensure!(
            data.len() == indices.len(),
            Shape,
            "gather_elements indices {indices:?} must have the rank of data {data:?}"
        );
        let a = norm_axis(self.axis, data.len())?;
        for (k, (&i, &d)) in indices.iter().zip(data).enumerate() {
            ensure!(
                k == a || i <= d,
                Shape,
                "gather_elements indices {indices:?} exceed data {data:?} on axis {k}"
            );
        }
        Ok(a)
    }
}

/// Walks the indices row by row (rows along the last axis) keeping an odometer over the
/// other axes, so the per-element work is one add and one multiply.
fn gather_elements_kernel<T: Element>(
    a: &ArrayD<T>,
    axis: usize,
    ishape: &[usize],
    idx: &[usize],
) -> Tensor {
    let c = contiguous(a);
    let data = c.as_slice().expect("standard layout");
    let r = ishape.len();
    let mut strides = vec![1usize; r];
    for k in (0..r - 1).rev() {
        strides[k] = strides[k + 1] * a.shape()[k + 1];
    }
    let last = ishape[r - 1];
    let mut v = Vec::with_capacity(idx.len());
    let mut pos = vec![0usize; r - 1];
    // The caller handles empty indices, so rows are non-empty.
    for row in idx.chunks(last) {
        let base: usize = (0..r - 1)
            .filter(|&k| k != axis)
            .map(|k| pos[k] * strides[k])
            .sum();
        for (j, &i) in row.iter().enumerate() {
            let off = if axis == r - 1 {
                base + i
            } else {
                base + j + i * strides[axis]
            };
            v.push(data[off]);
        }
        for k in (0..r - 1).rev() {
            pos[k] += 1;
            if pos[k] < ishape[k] {
                break;
            }
            pos[k] = 0;
        }
    }
    T::wrap(from_vec(ishape, v))
}

impl OpDef for GatherElements {
    fn names() -> &'static [&'static str] {
        &["gather_elements"]
    }
    fn name(&self) -> &'static str {
        "gather_elements"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(GatherElements {
            axis: r.int("axis", 0)?,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().int("axis", self.axis, 0)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let (x, i) = (ins.ty(0)?, ins.ty(1)?);
        check_index_type("gather_elements", i.dtype)?;
        let axis = self.plan(&x.shape, &i.shape)?;
        if let Some(v) = ins.opt(1).and_then(|i| i.value) {
            resolve("gather_elements", v, x.shape[axis], ErrorKind::Shape)?;
        }
        Ok(vec![TensorType::new(x.dtype, i.shape.clone())])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let (x, i) = (arg(ins, 0)?, arg(ins, 1)?);
        let axis = self.plan(x.shape(), i.shape())?;
        check_index_type("gather_elements", i.dtype())?;
        if i.is_empty() {
            return Ok(vec![Tensor::zeros(&TensorType::new(x.dtype(), i.shape()))]);
        }
        let idx = resolve("gather_elements", i, x.shape()[axis], ErrorKind::Eval)?;
        Ok(vec![
            dispatch!(x, a => gather_elements_kernel(a, axis, i.shape(), &idx)),
        ])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::shape::testing::{
        eval, f32s, fails, infer, infer_unknown, ints, iota, run1, values,
    };

    fn i64s(shape: &[usize], v: &[i64]) -> Option<Tensor> {
        Some(Tensor::from_vec(shape, v.to_vec()).unwrap())
    }

    #[test]
    fn gather_slices() {
        // numpy.take(arange(12).reshape(3, 4), [[0, -1], [2, 1]], axis=1).
        let t = run1(
            &Gather { axis: 1 },
            &[Some(iota(&[3, 4])), i64s(&[2, 2], &[0, -1, 2, 1])],
        );
        assert_eq!(t.shape(), [3, 2, 2]);
        assert_eq!(
            values::<f32>(&t),
            [0., 3., 2., 1., 4., 7., 6., 5., 8., 11., 10., 9.]
        );
        // A scalar index drops the axis.
        let t = run1(
            &Gather { axis: -2 },
            &[Some(iota(&[3, 4])), Some(Tensor::scalar(2i32))],
        );
        assert_eq!(
            (t.shape(), values::<f32>(&t)),
            (&[4][..], vec![8., 9., 10., 11.])
        );
        // Shape chains: pick dims out of a shape vector.
        let t = run1(
            &Gather::default(),
            &[Some(ints(&[1, 3, 224, 224])), Some(ints(&[0, -1]))],
        );
        assert_eq!(values::<i64>(&t), [1, 224]);
        assert_eq!(
            run1(&Gather::default(), &[Some(iota(&[3, 4])), Some(ints(&[]))]).shape(),
            [0, 4]
        );
    }

    #[test]
    fn gather_errors() {
        let x = || Some(iota(&[3, 4]));
        assert_eq!(
            fails(&Gather::default(), &[x(), Some(f32s(&[1], &[0.0]))], 1),
            ErrorKind::Type
        );
        assert_eq!(
            fails(&Gather::default(), &[x(), Some(Tensor::scalar(1u8))], 1),
            ErrorKind::Type
        );
        assert_eq!(
            fails(&Gather { axis: 2 }, &[x(), Some(ints(&[0]))], 1),
            ErrorKind::Shape
        );
        assert_eq!(
            fails(
                &Gather::default(),
                &[Some(Tensor::scalar(1.0f32)), Some(ints(&[0]))],
                1
            ),
            ErrorKind::Shape
        );
        // Out of range: a shape error for a known constant, an eval error at run time.
        for bad in [3, -4] {
            let ins = [x(), Some(ints(&[0, bad]))];
            assert_eq!(
                infer(&Gather::default(), &ins, 1).unwrap_err().kind,
                ErrorKind::Shape
            );
            assert_eq!(
                eval(&Gather::default(), &ins, 1).unwrap_err().kind,
                ErrorKind::Eval
            );
            assert!(infer_unknown(&Gather::default(), &ins, 1).is_ok());
        }
    }

    #[test]
    fn gather_elements() {
        // onnxruntime on arange(12).reshape(3, 4).
        let g =
            |axis, idx: Option<Tensor>| run1(&GatherElements { axis }, &[Some(iota(&[3, 4])), idx]);
        let t = g(0, i64s(&[2, 4], &[2, -1, 0, 1, 0, 0, 2, -3]));
        assert_eq!(values::<f32>(&t), [8., 9., 2., 7., 0., 1., 10., 3.]);
        let t = g(-1, i64s(&[2, 2], &[3, 0, 1, -2]));
        assert_eq!(values::<f32>(&t), [3., 0., 5., 6.]);
        let idx = Tensor::from_vec(&[1, 2], vec![1i32, 2]).unwrap();
        assert_eq!(values::<f32>(&g(0, Some(idx))), [4., 9.]);
        assert_eq!(g(1, i64s(&[3, 0], &[])).shape(), [3, 0]);
        // 3-D, middle axis, against a direct loop.
        let idx: Vec<i64> = (0..2 * 3 * 2).map(|i| (i * 7 % 5) as i64 - 2).collect();
        let t = run1(
            &GatherElements { axis: 1 },
            &[Some(iota(&[2, 5, 3])), i64s(&[2, 3, 2], &idx)],
        );
        let mut want = Vec::new();
        for a in 0..2 {
            for b in 0..3 {
                for c in 0..2 {
                    let i = idx[(a * 3 + b) * 2 + c].rem_euclid(5) as usize;
                    want.push(((a * 5 + i) * 3 + c) as f32);
                }
            }
        }
        assert_eq!(values::<f32>(&t), want);
    }

    #[test]
    fn gather_elements_errors() {
        let x = || Some(iota(&[3, 4]));
        let ge = GatherElements::default();
        assert_eq!(
            fails(&ge, &[x(), i64s(&[4], &[0, 0, 0, 0])], 1),
            ErrorKind::Shape
        );
        assert_eq!(
            fails(&ge, &[x(), i64s(&[1, 5], &[0; 5])], 1),
            ErrorKind::Shape
        );
        assert_eq!(
            fails(&ge, &[x(), Some(f32s(&[1, 1], &[0.0]))], 1),
            ErrorKind::Type
        );
        let ins = [x(), i64s(&[1, 1], &[3])];
        assert_eq!(infer(&ge, &ins, 1).unwrap_err().kind, ErrorKind::Shape);
        assert_eq!(eval(&ge, &ins, 1).unwrap_err().kind, ErrorKind::Eval);
    }
}
