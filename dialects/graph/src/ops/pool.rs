//! Pooling: `max_pool` (with the optional Indices result), `average_pool`, and the global
//! variants, N-D over the spatial dims of NC(D…) tensors.
//!
//! Windows are resolved once per geometry into per-dim lists of the input coordinates they
//! cover (see [`Geometry::pool_windows`]), so padding never has to be materialised and
//! max pooling ignores it exactly as onnxruntime does.

use super::channel_layout::Layout;
use super::spatial::{DimWindow, Geometry, Window, row_major_strides};
use super::util::arg;
use super::{InferInputs, OpDef};
use kiln_core::{AttrReader, Attrs, DType, Element, Result, Tensor, TensorType, bail, ensure};
use ndarray::{ArrayD, IxDyn};

pub(super) fn check_input(what: &str, x: &TensorType, types: &[DType]) -> Result<()> {
    ensure!(
        types.contains(&x.dtype),
        Type,
        "{what} is not defined for {} tensors (supported: {})",
        x.dtype,
        types
            .iter()
            .map(|d| d.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    ensure!(
        x.rank() >= 3,
        Shape,
        "{what} input {x} must be [N, C, spatial…] with at least one spatial dim"
    );
    Ok(())
}

fn read_flag(r: &mut AttrReader, name: &str) -> Result<bool> {
    match r.int(name, 0)? {
        0 => Ok(false),
        1 => Ok(true),
        v => bail!(Attribute, "{name} must be 0 or 1, got {v}"),
    }
}

fn out_shape(x: &[usize], spatial: &[usize]) -> Vec<usize> {
    x[..2].iter().chain(spatial).copied().collect()
}

/// Visits the Cartesian product of `dims` as runs along the last (contiguous) dim:
/// `f(offset of the first tap within the plane, step, count)`. Kernels loop over a run
/// with a local accumulator, which keeps the hot loop free of captured state.
fn visit_rows(
    dims: &[&DimWindow],
    strides: &[usize],
    base: usize,
    f: &mut impl FnMut(usize, usize, usize),
) {
    match dims {
        [] => f(base, 1, 1),
        [last] => f(
            base + last.start * strides[0],
            last.step * strides[0],
            last.count,
        ),
        [first, rest @ ..] => {
            for j in 0..first.count {
                let c = first.start + j * first.step;
                visit_rows(rest, &strides[1..], base + c * strides[0], f);
            }
        }
    }
}

/// Calls `f(plane, windows of one output position)` for every output element in row-major
/// order, collecting the results.
fn pool_map<T: Copy, U>(
    x: &[T],
    planes: usize,
    geo: &Geometry,
    mut f: impl FnMut(&[T], &[&DimWindow]) -> U,
) -> Vec<U> {
    let wins = geo.pool_windows();
    let (ip, op, nd) = (geo.input_size(), geo.output_size(), geo.output.len());
    let mut out = Vec::with_capacity(planes * op);
    let mut o = vec![0usize; nd];
    let mut cur: Vec<&DimWindow> = Vec::with_capacity(nd);
    for pl in 0..planes {
        let plane = &x[pl * ip..(pl + 1) * ip];
        o.fill(0);
        for _ in 0..op {
            cur.clear();
            cur.extend((0..nd).map(|i| &wins[i][o[i]]));
            out.push(f(plane, &cur));
            for i in (0..nd).rev() {
                o[i] += 1;
                if o[i] < geo.output[i] {
                    break;
                }
                o[i] = 0;
            }
        }
    }
    out
}

/// The maximum and its offset, skipping NaN like onnxruntime's `x > max` scan; a window
/// with no number in it (all padding or NaN) yields the type's lowest value and offset -1.
pub(super) fn max_of<T: Element + PartialOrd>(
    plane: &[T],
    dims: &[&DimWindow],
    strides: &[usize],
) -> (T, i64) {
    let mut best: Option<(T, usize)> = None;
    visit_rows(dims, strides, 0, &mut |first, step, count| {
        let mut b = best;
        for off in (first..).step_by(step).take(count) {
            let v = plane[off];
            // NaN never wins; it is unordered with everything, itself included.
            let better = match b {
                Some((m, _)) => v > m,
                None => v.partial_cmp(&v).is_some(),
            };
            if better {
                b = Some((v, off));
            }
        }
        best = b;
    });
    match best {
        Some((v, off)) => (v, off as i64),
        None => (T::from_f64(f64::NEG_INFINITY), -1),
    }
}

/// `max_pool(X) {kernel_shape, strides, pads, dilations, auto_pad, ceil_mode,
/// storage_order, layout}`, with an optional second result: the flat index of each
/// maximum. Indices count positions of the channels-first input, so a channels-last
/// (`layout="nhwc"`, see [`Layout`]) max_pool has no Indices result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPool {
    pub window: Window,
    pub ceil_mode: bool,
    /// 1 = the Indices result counts column-major within each plane.
    pub storage_order: i64,
    pub layout: Layout,
}

pub(super) const MAX_TYPES: &[DType] = &[DType::F32, DType::F64, DType::I8, DType::U8];

impl MaxPool {
    fn geometry(&self, x: &[usize]) -> Result<Geometry> {
        Geometry::forward(&self.window, "max_pool", &x[2..], None, self.ceil_mode)
    }
}

/// Max pooling of one typed tensor; indices follow onnxruntime: flattened over the whole
/// input (batch and channel included), the spatial part row- or column-major.
fn max_pool_kernel<T: Element + PartialOrd>(
    x: &ArrayD<T>,
    geo: &Geometry,
    storage_order: i64,
    want_indices: bool,
) -> (Tensor, Option<Tensor>) {
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let shape = out_shape(x.shape(), &geo.output);
    let planes = x.shape()[0] * x.shape()[1];
    let strides = row_major_strides(&geo.input);
    let res = pool_map(xs, planes, geo, |plane, dims| max_of(plane, dims, &strides));
    let ip = geo.input_size();
    let col_strides: Vec<usize> = geo
        .input
        .iter()
        .scan(1usize, |acc, &d| Some(std::mem::replace(acc, *acc * d)))
        .collect();
    let indices = want_indices.then(|| {
        let idx: Vec<i64> = res
            .iter()
            .enumerate()
            .map(|(i, &(_, off))| {
                if off < 0 {
                    return -1;
                }
                let off = off as usize;
                let spatial = if storage_order == 1 {
                    strides
                        .iter()
                        .zip(&geo.input)
                        .zip(&col_strides)
                        .map(|((&s, &d), &c)| (off / s % d) * c)
                        .sum()
                } else {
                    off
                };
                ((i / geo.output_size()) * ip + spatial) as i64
            })
            .collect();
        Tensor::I64(ArrayD::from_shape_vec(IxDyn(&shape), idx).expect("sizes match"))
    });
    let vals = res.into_iter().map(|(v, _)| v).collect();
    (
        T::wrap(ArrayD::from_shape_vec(IxDyn(&shape), vals).expect("sizes match")),
        indices,
    )
}

impl OpDef for MaxPool {
    fn names() -> &'static [&'static str] {
        &["max_pool"]
    }
    fn name(&self) -> &'static str {
        "max_pool"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        let window = Window::read(r)?;
        ensure!(
            !window.kernel_shape.is_empty(),
            Attribute,
            "max_pool needs the kernel_shape attribute"
        );
        let ceil_mode = read_flag(r, "ceil_mode")?;
        let storage_order = r.int("storage_order", 0)?;
        ensure!(
            matches!(storage_order, 0 | 1),
            Attribute,
            "storage_order must be 0 (row-major) or 1 (column-major), got {storage_order}"
        );
        Ok(MaxPool {
            window,
            ceil_mode,
            storage_order,
            layout: Layout::read(r)?,
        })
    }
    fn attrs(&self) -> Attrs {
        let a = self
            .window
            .write(Attrs::new())
            .int("ceil_mode", self.ceil_mode as i64, 0)
            .int("storage_order", self.storage_order, 0);
        self.layout.write(a)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = &self.layout.to_nchw_type(ins.ty(0)?);
        check_input("max_pool", x, MAX_TYPES)?;
        ensure!(
            matches!(ins.n_outputs, 1 | 2),
            InvalidModel,
            "max_pool has 1 or 2 results, not {}",
            ins.n_outputs
        );
        ensure!(
            ins.n_outputs == 1 || !self.layout.is_nhwc(),
            InvalidModel,
            "max_pool with layout=\"nhwc\" has no Indices result (indices count channels-first positions)"
        );
        let shape = out_shape(&x.shape, &self.geometry(&x.shape)?.output);
        let y = TensorType::new(x.dtype, shape.clone());
        let mut out = vec![self.layout.from_nchw_type(&y)];
        if ins.n_outputs == 2 {
            out.push(TensorType::new(DType::I64, shape));
        }
        Ok(out)
    }
    fn eval(&self, ins: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
        let x = &*self.layout.to_nchw(arg(ins, 0)?);
        check_input("max_pool", &x.ty(), MAX_TYPES)?;
        ensure!(
            n_outputs == 1 || !self.layout.is_nhwc(),
            InvalidModel,
            "max_pool with layout=\"nhwc\" has no Indices result"
        );
        let geo = self.geometry(x.shape())?;
        let want = n_outputs == 2;
        let (y, i) = match x {
            Tensor::F32(a) => max_pool_kernel(a, &geo, self.storage_order, want),
            Tensor::F64(a) => max_pool_kernel(a, &geo, self.storage_order, want),
            Tensor::I8(a) => max_pool_kernel(a, &geo, self.storage_order, want),
            Tensor::U8(a) => max_pool_kernel(a, &geo, self.storage_order, want),
            t => bail!(Type, "max_pool is not defined for {} tensors", t.dtype()),
        };
        Ok(std::iter::once(self.layout.from_nchw(y)).chain(i).collect())
    }
    fn flops(&self, _: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        let k: i64 = self.window.kernel_shape.iter().product();
        outs.first().map_or(0, |y| y.numel() as u64 * k as u64)
    }
}

/// `average_pool(X) {kernel_shape, strides, pads, dilations, auto_pad, ceil_mode,
/// count_include_pad}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AveragePool {
    pub window: Window,
    pub ceil_mode: bool,
    /// Divide by the window's taps inside the *explicitly* padded input, rather than by its
    /// taps inside the input. Taps beyond the padding that only ceil_mode creates never
    /// count (onnxruntime's rule, which the ONNX reference follows).
    pub count_include_pad: bool,
    /// See [`Layout`].
    pub layout: Layout,
}

pub(super) const FLOAT_TYPES: &[DType] = &[DType::F32, DType::F64];

impl AveragePool {
    fn geometry(&self, x: &[usize]) -> Result<Geometry> {
        Geometry::forward(&self.window, "average_pool", &x[2..], None, self.ceil_mode)
    }
}

/// Pools that sum a function of each tap: `finish(sum of term(x), windows)` per output.
fn sum_pool_kernel<T: Element>(
    x: &ArrayD<T>,
    geo: &Geometry,
    term: impl Fn(f64) -> f64,
    finish: impl Fn(f64, &[&DimWindow]) -> f64,
) -> Tensor {
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let planes = x.shape()[0] * x.shape()[1];
    let strides = row_major_strides(&geo.input);
    let vals = pool_map(xs, planes, geo, |plane, dims| {
        let mut sum = 0.0;
        visit_rows(dims, &strides, 0, &mut |first, step, count| {
            let row = plane[first..].iter().step_by(step).take(count);
            sum += row.fold(0.0, |acc, v| acc + term(v.to_f64()));
        });
        T::from_f64(finish(sum, dims))
    });
    T::wrap(
        ArrayD::from_shape_vec(IxDyn(&out_shape(x.shape(), &geo.output)), vals)
            .expect("sizes match"),
    )
}

fn average_pool_kernel<T: Element>(x: &ArrayD<T>, geo: &Geometry, include_pad: bool) -> Tensor {
    sum_pool_kernel(
        x,
        geo,
        |v| v,
        |sum, dims| sum / divisor(dims, include_pad) as f64,
    )
}

/// An average's divisor: the window's taps inside the input, or inside the padded input
/// (`count_include_pad`).
fn divisor(dims: &[&DimWindow], include_pad: bool) -> usize {
    if include_pad {
        dims.iter().map(|d| d.padded).product()
    } else {
        dims.iter().map(|d| d.count).product()
    }
}

impl AveragePool {
    /// The average as kiln's fp32 kernel computes it: one f32 sum per output from +0 over
    /// the window's taps in row-major order, times `f32(1 / divisor)`. The quantised
    /// unit's contract (`kiln_quant::sim`) is this form, so the int8 program runs that
    /// kernel; [`OpDef::eval`] keeps the f64 reference.
    pub fn eval_f32_kernel_order(&self, x: &Tensor) -> Result<Tensor> {
        let x = &*self.layout.to_nchw(x);
        let Tensor::F32(a) = x else {
            bail!(
                Type,
                "average_pool's f32 form is not defined for {} tensors",
                x.dtype()
            );
        };
        let geo = self.geometry(x.shape())?;
        let a = a.as_standard_layout();
        let xs = a.as_slice().expect("standard layout");
        let planes = a.shape()[0] * a.shape()[1];
        let strides = row_major_strides(&geo.input);
        let vals = pool_map(xs, planes, &geo, |plane, dims| {
            let mut sum = 0.0f32;
            visit_rows(dims, &strides, 0, &mut |first, step, count| {
                for &v in plane[first..].iter().step_by(step).take(count) {
                    sum += v;
                }
            });
            sum * (1.0 / divisor(dims, self.count_include_pad) as f32)
        });
        let y = ArrayD::from_shape_vec(IxDyn(&out_shape(a.shape(), &geo.output)), vals)
            .expect("sizes match");
        Ok(self.layout.from_nchw(Tensor::F32(y)))
    }
}

impl OpDef for AveragePool {
    fn names() -> &'static [&'static str] {
        &["average_pool"]
    }
    fn name(&self) -> &'static str {
        "average_pool"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        let window = Window::read(r)?;
        ensure!(
            !window.kernel_shape.is_empty(),
            Attribute,
            "average_pool needs the kernel_shape attribute"
        );
        Ok(AveragePool {
            window,
            ceil_mode: read_flag(r, "ceil_mode")?,
            count_include_pad: read_flag(r, "count_include_pad")?,
            layout: Layout::read(r)?,
        })
    }
    fn attrs(&self) -> Attrs {
        let a = self
            .window
            .write(Attrs::new())
            .int("ceil_mode", self.ceil_mode as i64, 0)
            .int("count_include_pad", self.count_include_pad as i64, 0);
        self.layout.write(a)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = &self.layout.to_nchw_type(ins.ty(0)?);
        check_input("average_pool", x, FLOAT_TYPES)?;
        Ok(vec![self.layout.from_nchw_type(&TensorType::new(
            x.dtype,
            out_shape(&x.shape, &self.geometry(&x.shape)?.output),
        ))])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = &*self.layout.to_nchw(arg(ins, 0)?);
        check_input("average_pool", &x.ty(), FLOAT_TYPES)?;
        let geo = self.geometry(x.shape())?;
        let y = match x {
            Tensor::F32(a) => average_pool_kernel(a, &geo, self.count_include_pad),
            Tensor::F64(a) => average_pool_kernel(a, &geo, self.count_include_pad),
            t => bail!(
                Type,
                "average_pool is not defined for {} tensors",
                t.dtype()
            ),
        };
        Ok(vec![self.layout.from_nchw(y)])
    }
    fn flops(&self, _: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        let k: i64 = self.window.kernel_shape.iter().product();
        outs.first().map_or(0, |y| y.numel() as u64 * k as u64)
    }
}

/// `lp_pool(X) {kernel_shape, strides, pads, dilations, auto_pad, ceil_mode, p}`: the
/// p-norm of each window. Padding contributes nothing, as in onnxruntime (the ONNX
/// reference instead rescales a mean of the valid taps by the full kernel size, which only
/// differs for windows that overlap padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LpPool {
    pub window: Window,
    pub ceil_mode: bool,
    pub p: i64,
}

/// Reads and checks the norm order shared by lp_pool and global_lp_pool.
pub(super) fn read_p(r: &mut AttrReader) -> Result<i64> {
    let p = r.int("p", 2)?;
    ensure!(
        (1..=64).contains(&p),
        Attribute,
        "p must be between 1 and 64, got {p}"
    );
    Ok(p)
}

/// `|v|^p`, exact for the common orders.
pub(super) fn pow_abs(v: f64, p: i64) -> f64 {
    match p {
        1 => v.abs(),
        2 => v * v,
        _ => v.abs().powi(p as i32),
    }
}

/// The p-th root.
pub(super) fn root(v: f64, p: i64) -> f64 {
    match p {
        1 => v,
        2 => v.sqrt(),
        _ => v.powf(1.0 / p as f64),
    }
}

impl LpPool {
    fn geometry(&self, x: &[usize]) -> Result<Geometry> {
        Geometry::forward(&self.window, "lp_pool", &x[2..], None, self.ceil_mode)
    }
}

impl OpDef for LpPool {
    fn names() -> &'static [&'static str] {
        &["lp_pool"]
    }
    fn name(&self) -> &'static str {
        "lp_pool"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        let window = Window::read(r)?;
        ensure!(
            !window.kernel_shape.is_empty(),
            Attribute,
            "lp_pool needs the kernel_shape attribute"
        );
        Ok(LpPool {
            window,
            ceil_mode: read_flag(r, "ceil_mode")?,
            p: read_p(r)?,
        })
    }
    fn attrs(&self) -> Attrs {
        self.window
            .write(Attrs::new())
            .int("ceil_mode", self.ceil_mode as i64, 0)
            .int("p", self.p, 2)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        check_input("lp_pool", x, FLOAT_TYPES)?;
        Ok(vec![TensorType::new(
            x.dtype,
            out_shape(&x.shape, &self.geometry(&x.shape)?.output),
        )])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        check_input("lp_pool", &x.ty(), FLOAT_TYPES)?;
        let geo = self.geometry(x.shape())?;
        let p = self.p;
        let y = match x {
            Tensor::F32(a) => sum_pool_kernel(a, &geo, |v| pow_abs(v, p), |s, _| root(s, p)),
            Tensor::F64(a) => sum_pool_kernel(a, &geo, |v| pow_abs(v, p), |s, _| root(s, p)),
            t => bail!(Type, "lp_pool is not defined for {} tensors", t.dtype()),
        };
        Ok(vec![y])
    }
    fn flops(&self, _: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        let k: i64 = self.window.kernel_shape.iter().product();
        outs.first().map_or(0, |y| y.numel() as u64 * k as u64)
    }
}

#[cfg(test)]
mod tests;
