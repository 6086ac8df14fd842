//! Data-movement ops that reorder or select elements: `transpose`, `concat`, `split`,
//! `slice`, `tile`.
//!
//! Kernels work on row-major contiguous data seen as `[outer, axis, inner]` blocks (so a
//! concat or split is a sequence of `memcpy`s) or on ndarray views (`permuted_axes`,
//! `slice_each_axis`, `broadcast`) copied once into standard layout; none index elements
//! one `IxDyn` at a time. Every result is in standard layout, which later kernels' fast paths
//! expect.

use super::shape::dims_of;
use super::util::{arg, norm_axis, opt_arg};
use super::{InferInputs, OpDef};
use kiln_core::{
    AttrReader, Attrs, Element, Error, ErrorKind, Result, Tensor, TensorType, bail, dispatch,
    map_same,
};
use ndarray::{ArrayD, CowArray, IxDyn, Slice as NdSlice};

/// Row-major contiguous data (borrowed when the array already is).
pub(crate) fn contiguous<T: Clone>(a: &ArrayD<T>) -> CowArray<'_, T, IxDyn> {
    a.as_standard_layout()
}

/// Elements before, along and after `axis`: a row-major tensor is `[outer, dim, inner]`.
pub(crate) fn blocks(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// An array from row-major data whose length the caller computed from `shape`.
pub(crate) fn from_vec<T>(shape: &[usize], v: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("kernel output length matches its shape")
}

/// `transpose(data) {perm}`; an empty `perm` reverses the axes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transpose {
    pub perm: Vec<i64>,
}

impl Transpose {
    pub fn perm_for(&self, rank: usize) -> Result<Vec<usize>> {
        if self.perm.is_empty() {
            return Ok((0..rank).rev().collect());
        }
        let p = &self.perm;
        let ok = p.len() == rank && (0..rank as i64).all(|i| p.contains(&i));
        if !ok {
            bail!(
                Shape,
                "transpose perm {p:?} is not a permutation of the {rank} axes"
            );
        }
        Ok(p.iter().map(|&i| i as usize).collect())
    }
}

impl OpDef for Transpose {
    fn names() -> &'static [&'static str] {
        &["transpose"]
    }
    fn name(&self) -> &'static str {
        "transpose"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(Transpose {
            perm: r.ints("perm")?,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().ints("perm", &self.perm)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        let perm = self.perm_for(x.rank())?;
        Ok(vec![TensorType::new(
            x.dtype,
            perm.iter().map(|&i| x.shape[i]).collect::<Vec<_>>(),
        )])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let perm = self.perm_for(x.shape().len())?;
        Ok(vec![
            map_same!(x, a => a.view().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned()),
        ])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

/// `concat(inputs...) {axis}`: operands of one rank that agree except along `axis`
/// (where a size of 0 is allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    pub axis: i64,
}

/// Result shape and normalised axis of a concat.
pub fn concat_shape(shapes: &[&[usize]], axis: i64) -> Result<(Vec<usize>, usize)> {
    let first = shapes
        .first()
        .ok_or_else(|| Error::new(ErrorKind::InvalidModel, "concat needs at least one operand"))?;
    if first.is_empty() {
        bail!(Shape, "concat operands must have rank >= 1, got a scalar");
    }
    let a = norm_axis(axis, first.len())?;
    let mut out = first.to_vec();
    out[a] = 0;
    for (i, s) in shapes.iter().enumerate() {
        let agrees = s.len() == first.len()
            && s.iter()
                .zip(*first)
                .enumerate()
                .all(|(k, (x, y))| k == a || x == y);
        if !agrees {
            bail!(
                Shape,
                "concat on axis {a}: operand {i} has shape {s:?}, which does not match operand 0's {first:?}"
            );
        }
        out[a] += s[a];
    }
    Ok((out, a))
}

fn concat_kernel<T: Element>(
    first: &ArrayD<T>,
    all: &[&Tensor],
    out: &[usize],
    axis: usize,
) -> Result<Tensor> {
    let arrays: Vec<CowArray<T, IxDyn>> = all
        .iter()
        .map(|t| {
            Ok(contiguous(
                t.as_array::<T>().map_err(|_| type_mismatch(first, t))?,
            ))
        })
        .collect::<Result<_>>()?;
    let (outer, _, inner) = blocks(out, axis);
    let mut v = Vec::with_capacity(out.iter().product());
    for o in 0..outer {
        for a in &arrays {
            let n = a.shape()[axis] * inner;
            v.extend_from_slice(&a.as_slice().expect("standard layout")[o * n..(o + 1) * n]);
        }
    }
    Ok(T::wrap(from_vec(out, v)))
}

fn type_mismatch<T: Element>(_: &ArrayD<T>, t: &Tensor) -> Error {
    Error::new(
        ErrorKind::Type,
        format!(
            "concat operands must share one element type: {} vs {}",
            T::DTYPE,
            t.dtype()
        ),
    )
}

impl OpDef for Concat {
    fn names() -> &'static [&'static str] {
        &["concat"]
    }
    fn name(&self) -> &'static str {
        "concat"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(Concat {
            axis: r.req_int("axis")?,
        })
    }
    fn attrs(&self) -> Attrs {
        let mut a = Attrs::new();
        a.set("axis", kiln_core::Attr::Int(self.axis));
        a
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let tys = (0..ins.len())
            .map(|i| ins.ty(i))
            .collect::<Result<Vec<_>>>()?;
        let dtype = tys.first().map(|t| t.dtype);
        if let Some(t) = tys.iter().find(|t| Some(t.dtype) != dtype) {
            bail!(
                Type,
                "concat operands must share one element type: {} vs {}",
                tys[0].dtype,
                t.dtype
            );
        }
        let shapes: Vec<&[usize]> = tys.iter().map(|t| t.shape.as_slice()).collect();
        let (shape, _) = concat_shape(&shapes, self.axis)?;
        Ok(vec![TensorType::new(tys[0].dtype, shape)])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let all = (0..ins.len())
            .map(|i| arg(ins, i))
            .collect::<Result<Vec<_>>>()?;
        let shapes: Vec<&[usize]> = all.iter().map(|t| t.shape()).collect();
        let (shape, axis) = concat_shape(&shapes, self.axis)?;
        Ok(vec![
            dispatch!(all[0], a => concat_kernel(a, &all, &shape, axis))?,
        ])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

/// `split(input, split?) {axis, num_outputs}`. Without sizes the axis is cut into
/// `n` chunks of `ceil(dim / n)`, the last one smaller (the opset-18 rule, which agrees
/// with the older even split whenever that was valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Split {
    pub axis: i64,
    pub num_outputs: Option<i64>,
}

impl Split {
    pub fn sizes(&self, dim: usize, split: Option<&[i64]>, n_outputs: usize) -> Result<Vec<usize>> {
        if let Some(n) = self.num_outputs {
            if split.is_some() {
                bail!(
                    Attribute,
                    "split takes either a split operand or num_outputs, not both"
                );
            }
            if n as usize != n_outputs || n < 1 {
                bail!(
                    Attribute,
                    "split num_outputs={n} but the node has {n_outputs} results"
                );
            }
        }
        if n_outputs == 0 {
            bail!(InvalidModel, "split needs at least one result");
        }
        match split {
            Some(s) => {
                let sizes = dims_of(s, "split sizes")?;
                if sizes.len() != n_outputs || sizes.iter().sum::<usize>() != dim {
                    bail!(
                        Shape,
                        "split sizes {s:?} must be {n_outputs} values summing to the axis size {dim}"
                    );
                }
                Ok(sizes)
            }
            None => {
                let chunk = dim.div_ceil(n_outputs);
                let last = dim as i64 - (chunk * (n_outputs - 1)) as i64;
                if last < 0 {
                    bail!(
                        Shape,
                        "cannot split an axis of size {dim} into {n_outputs} chunks of {chunk}"
                    );
                }
                let mut v = vec![chunk; n_outputs];
                v[n_outputs - 1] = last as usize;
                Ok(v)
            }
        }
    }

    fn plan(
        &self,
        shape: &[usize],
        split: Option<&[i64]>,
        n: usize,
    ) -> Result<(usize, Vec<usize>)> {
        if shape.is_empty() {
            bail!(Shape, "cannot split a scalar");
        }
        let axis = norm_axis(self.axis, shape.len())?;
        Ok((axis, self.sizes(shape[axis], split, n)?))
    }
}

fn split_kernel<T: Element>(a: &ArrayD<T>, axis: usize, sizes: &[usize]) -> Vec<Tensor> {
    let c = contiguous(a);
    let data = c.as_slice().expect("standard layout");
    let (outer, dim, inner) = blocks(a.shape(), axis);
    let mut offset = 0;
    let mut outs = Vec::with_capacity(sizes.len());
    for &len in sizes {
        let mut v = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let start = (o * dim + offset) * inner;
            v.extend_from_slice(&data[start..start + len * inner]);
        }
        let mut shape = a.shape().to_vec();
        shape[axis] = len;
        outs.push(T::wrap(from_vec(&shape, v)));
        offset += len;
    }
    outs
}

impl OpDef for Split {
    fn shape_operands(&self) -> &'static [usize] {
        &[1]
    }
    fn names() -> &'static [&'static str] {
        &["split"]
    }
    fn name(&self) -> &'static str {
        "split"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(Split {
            axis: r.int("axis", 0)?,
            num_outputs: r.opt_int("num_outputs")?,
        })
    }
    fn attrs(&self) -> Attrs {
        let mut a = Attrs::new().int("axis", self.axis, 0);
        if let Some(n) = self.num_outputs {
            a.set("num_outputs", kiln_core::Attr::Int(n));
        }
        a
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        super::shape::check_index_list(&ins, 1, "split sizes")?;
        let split = ins.const_ints(1, "split")?;
        let (axis, sizes) = self.plan(&x.shape, split.as_deref(), ins.n_outputs)?;
        Ok(sizes
            .into_iter()
            .map(|len| {
                let mut s = x.shape.clone();
                s[axis] = len;
                TensorType::new(x.dtype, s)
            })
            .collect())
    }
    fn eval(&self, ins: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let split = opt_arg(ins, 1).map(|t| t.to_i64_vec()).transpose()?;
        let (axis, sizes) = self.plan(x.shape(), split.as_deref(), n_outputs)?;
        Ok(dispatch!(x, a => split_kernel(a, axis, &sizes)))
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

/// One axis of a slice after clamping: first index, step, and element count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxisRange {
    pub start: usize,
    pub step: i64,
    pub len: usize,
}

impl AxisRange {
    /// ONNX's clamping: negative `start`/`end` count from the end; then for a positive step
    /// both are clamped into `[0, dim]`, for a negative one `start` into `[0, dim-1]` and
    /// `end` into `[-1, dim-1]`. i128 keeps `INT64_MIN`/`INT64_MAX` (used as "to the end")
    /// and extreme steps from overflowing.
    pub fn new(dim: usize, start: i64, end: i64, step: i64) -> Result<AxisRange> {
        if step == 0 {
            bail!(Shape, "slice step must not be 0");
        }
        let (d, k) = (dim as i128, step as i128);
        let wrap = |v: i64| if v < 0 { v as i128 + d } else { v as i128 };
        let (s, e) = (wrap(start), wrap(end));
        let (s, len) = if d == 0 {
            (0, 0)
        } else if k > 0 {
            let (s, e) = (s.clamp(0, d), e.clamp(0, d));
            (s, if e > s { (e - s + k - 1) / k } else { 0 })
        } else {
            let (s, e) = (s.clamp(0, d - 1), e.clamp(-1, d - 1));
            (s, if s > e { (s - e - k - 1) / -k } else { 0 })
        };
        Ok(AxisRange {
            start: if len == 0 { 0 } else { s as usize },
            step,
            len: len as usize,
        })
    }

    /// The same selection as an ndarray slice (which, for a negative step, walks its
    /// `start..end` range backwards from the end).
    fn nd(&self) -> NdSlice {
        if self.len == 0 {
            return NdSlice::new(0, Some(0), 1);
        }
        let (s, k, n) = (self.start as isize, self.step as isize, self.len as isize);
        if self.len == 1 {
            NdSlice::new(s, Some(s + 1), 1)
        } else if k > 0 {
            NdSlice::new(s, Some(s + (n - 1) * k + 1), k)
        } else {
            NdSlice::new(s + (n - 1) * k, Some(s + 1), k)
        }
    }
}

/// Per-axis ranges of a slice over `shape` (axes not named keep their full range).
pub fn slice_plan(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<Vec<AxisRange>> {
    let n = starts.len();
    let default_axes: Vec<i64> = (0..n as i64).collect();
    let axes = axes.unwrap_or(&default_axes);
    let ones = vec![1; n];
    let steps = steps.unwrap_or(&ones);
    if ends.len() != n || axes.len() != n || steps.len() != n {
        bail!(
            Shape,
            "slice starts, ends, axes and steps must have one length, got {}, {}, {} and {}",
            n,
            ends.len(),
            axes.len(),
            steps.len()
        );
    }
    let axes = super::shape::norm_axes(axes, shape.len(), "slice axes")?;
    let mut plan: Vec<AxisRange> = shape
        .iter()
        .map(|&d| AxisRange {
            start: 0,
            step: 1,
            len: d,
        })
        .collect();
    for (i, &a) in axes.iter().enumerate() {
        plan[a] = AxisRange::new(shape[a], starts[i], ends[i], steps[i])?;
    }
    Ok(plan)
}

/// `slice(data, starts, ends, axes?, steps?)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slice;

impl OpDef for Slice {
    fn shape_operands(&self) -> &'static [usize] {
        &[1, 2, 3, 4]
    }
    fn names() -> &'static [&'static str] {
        &["slice"]
    }
    fn name(&self) -> &'static str {
        "slice"
    }
    fn from_attrs(_: &str, _: &mut AttrReader) -> Result<Self> {
        Ok(Slice)
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        let mut v = Vec::with_capacity(4);
        for (i, what) in [(1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")] {
            super::shape::check_index_list(&ins, i, what)?;
            v.push(ins.const_ints(i, what)?);
        }
        let (starts, ends) = match (&v[0], &v[1]) {
            (Some(s), Some(e)) => (s, e),
            _ => bail!(InvalidModel, "slice needs starts and ends operands"),
        };
        let plan = slice_plan(&x.shape, starts, ends, v[2].as_deref(), v[3].as_deref())?;
        Ok(vec![TensorType::new(
            x.dtype,
            plan.iter().map(|r| r.len).collect::<Vec<_>>(),
        )])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let ints = |i| opt_arg(ins, i).map(|t| t.to_i64_vec()).transpose();
        let (starts, ends) = (arg(ins, 1)?.to_i64_vec()?, arg(ins, 2)?.to_i64_vec()?);
        let plan = slice_plan(
            x.shape(),
            &starts,
            &ends,
            ints(3)?.as_deref(),
            ints(4)?.as_deref(),
        )?;
        Ok(vec![
            map_same!(x, a => a.slice_each_axis(|ax| plan[ax.axis.index()].nd()).as_standard_layout().into_owned()),
        ])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

/// `tile(input, repeats)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tile;

fn tile_shape(shape: &[usize], repeats: &[i64]) -> Result<Vec<usize>> {
    let reps = dims_of(repeats, "tile repeats")?;
    if reps.len() != shape.len() {
        bail!(
            Shape,
            "tile repeats {repeats:?} must have one value per axis of {shape:?}"
        );
    }
    let out = shape
        .iter()
        .zip(&reps)
        .map(|(d, r)| d.saturating_mul(*r))
        .collect();
    super::shape::sized("tile", out)
}

/// Tiling is a broadcast of `[1, d0, 1, d1, ...]` to `[r0, d0, r1, d1, ...]` read back as
/// `[r0·d0, r1·d1, ...]`: one strided copy, no per-element index arithmetic.
fn tile_kernel<T: Element>(a: &ArrayD<T>, repeats: &[usize], out: &[usize]) -> ArrayD<T> {
    let c = contiguous(a);
    let inter: Vec<usize> = a.shape().iter().flat_map(|&d| [1, d]).collect();
    let target: Vec<usize> = a
        .shape()
        .iter()
        .zip(repeats)
        .flat_map(|(&d, &r)| [r, d])
        .collect();
    let v = c
        .view()
        .into_shape_with_order(IxDyn(&inter))
        .expect("inserting unit axes keeps the size");
    let b = v.broadcast(IxDyn(&target)).expect("unit axes broadcast");
    from_vec(out, b.iter().copied().collect())
}

impl OpDef for Tile {
    fn shape_operands(&self) -> &'static [usize] {
        &[1]
    }
    fn names() -> &'static [&'static str] {
        &["tile"]
    }
    fn name(&self) -> &'static str {
        "tile"
    }
    fn from_attrs(_: &str, _: &mut AttrReader) -> Result<Self> {
        Ok(Tile)
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        super::shape::check_index_list(&ins, 1, "tile repeats")?;
        let reps = ins
            .const_ints(1, "repeats")?
            .ok_or_else(|| Error::new(ErrorKind::InvalidModel, "tile needs repeats"))?;
        Ok(vec![TensorType::new(x.dtype, tile_shape(&x.shape, &reps)?)])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let reps = arg(ins, 1)?.to_i64_vec()?;
        let out = tile_shape(x.shape(), &reps)?;
        let reps = dims_of(&reps, "tile repeats")?;
        Ok(vec![map_same!(x, a => tile_kernel(a, &reps, &out))])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests;
