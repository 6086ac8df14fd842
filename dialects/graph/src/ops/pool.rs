//! Pooling: `max_pool` (with the optional Indices result), `average_pool`, and the global
//! variants, N-D over the spatial dims of NC(D…) tensors.
//!
//! Windows are resolved once per geometry into per-dim lists of the input coordinates they
//! cover (see [`Geometry::pool_windows`]), so padding never has to be materialised and
//! max pooling ignores it exactly as onnxruntime does.

use super::spatial::{DimWindow, Geometry, Window, row_major_strides};
use super::util::arg;
use super::{InferInputs, OpDef};
use kiln_core::{AttrReader, Attrs, DType, Element, Result, Tensor, TensorType, bail, ensure};
use ndarray::{ArrayD, IxDyn};

fn check_input(what: &str, x: &TensorType, types: &[DType]) -> Result<()> {
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

/// Visits the row-major offsets (within one plane) of the Cartesian product of `dims`; the
/// last dim, contiguous in memory, is a plain strided loop.
fn visit(dims: &[&DimWindow], strides: &[usize], base: usize, f: &mut impl FnMut(usize)) {
    match dims {
        [] => f(base),
        [last] => {
            let mut off = base + last.start * strides[0];
            for _ in 0..last.count {
                f(off);
                off += last.step * strides[0];
            }
        }
        [first, rest @ ..] => {
            for j in 0..first.count {
                let c = first.start + j * first.step;
                visit(rest, &strides[1..], base + c * strides[0], f);
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
fn max_of<T: Element + PartialOrd>(
    plane: &[T],
    dims: &[&DimWindow],
    strides: &[usize],
) -> (T, i64) {
    let mut best: Option<(T, usize)> = None;
    visit(dims, strides, 0, &mut |off| {
        let v = plane[off];
        match best {
            Some((b, _)) if !(v > b) => {}
            // The first value only counts if it is a number (NaN is unordered with itself).
            None if v.partial_cmp(&v).is_none() => {}
            _ => best = Some((v, off)),
        }
    });
    match best {
        Some((v, off)) => (v, off as i64),
        None => (T::from_f64(f64::NEG_INFINITY), -1),
    }
}

/// `max_pool(X) {kernel_shape, strides, pads, dilations, auto_pad, ceil_mode,
/// storage_order}`, with an optional second result: the flat index of each maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPool {
    pub window: Window,
    pub ceil_mode: bool,
    /// 1 = the Indices result counts column-major within each plane.
    pub storage_order: i64,
}

const MAX_TYPES: &[DType] = &[DType::F32, DType::F64, DType::I8, DType::U8];

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
        })
    }
    fn attrs(&self) -> Attrs {
        self.window
            .write(Attrs::new())
            .int("ceil_mode", self.ceil_mode as i64, 0)
            .int("storage_order", self.storage_order, 0)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        check_input("max_pool", x, MAX_TYPES)?;
        ensure!(
            matches!(ins.n_outputs, 1 | 2),
            InvalidModel,
            "max_pool has 1 or 2 results, not {}",
            ins.n_outputs
        );
        let shape = out_shape(&x.shape, &self.geometry(&x.shape)?.output);
        let mut out = vec![TensorType::new(x.dtype, shape.clone())];
        if ins.n_outputs == 2 {
            out.push(TensorType::new(DType::I64, shape));
        }
        Ok(out)
    }
    fn eval(&self, ins: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        check_input("max_pool", &x.ty(), MAX_TYPES)?;
        let geo = self.geometry(x.shape())?;
        let want = n_outputs == 2;
        let (y, i) = match x {
            Tensor::F32(a) => max_pool_kernel(a, &geo, self.storage_order, want),
            Tensor::F64(a) => max_pool_kernel(a, &geo, self.storage_order, want),
            Tensor::I8(a) => max_pool_kernel(a, &geo, self.storage_order, want),
            Tensor::U8(a) => max_pool_kernel(a, &geo, self.storage_order, want),
            t => bail!(Type, "max_pool is not defined for {} tensors", t.dtype()),
        };
        Ok(std::iter::once(y).chain(i).collect())
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
}

const FLOAT_TYPES: &[DType] = &[DType::F32, DType::F64];

impl AveragePool {
    fn geometry(&self, x: &[usize]) -> Result<Geometry> {
        Geometry::forward(&self.window, "average_pool", &x[2..], None, self.ceil_mode)
    }
}

fn average_pool_kernel<T: Element>(x: &ArrayD<T>, geo: &Geometry, include_pad: bool) -> Tensor {
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let planes = x.shape()[0] * x.shape()[1];
    let strides = row_major_strides(&geo.input);
    let vals = pool_map(xs, planes, geo, |plane, dims| {
        let mut sum = 0.0;
        visit(dims, &strides, 0, &mut |off| sum += plane[off].to_f64());
        let count: usize = if include_pad {
            dims.iter().map(|d| d.padded).product()
        } else {
            dims.iter().map(|d| d.count).product()
        };
        T::from_f64(sum / count as f64)
    });
    T::wrap(
        ArrayD::from_shape_vec(IxDyn(&out_shape(x.shape(), &geo.output)), vals)
            .expect("sizes match"),
    )
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
        })
    }
    fn attrs(&self) -> Attrs {
        self.window
            .write(Attrs::new())
            .int("ceil_mode", self.ceil_mode as i64, 0)
            .int("count_include_pad", self.count_include_pad as i64, 0)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        check_input("average_pool", x, FLOAT_TYPES)?;
        Ok(vec![TensorType::new(
            x.dtype,
            out_shape(&x.shape, &self.geometry(&x.shape)?.output),
        )])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
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
        Ok(vec![y])
    }
    fn flops(&self, _: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        let k: i64 = self.window.kernel_shape.iter().product();
        outs.first().map_or(0, |y| y.numel() as u64 * k as u64)
    }
}

/// Which reduction a global pool applies over all spatial positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalPoolKind {
    Average,
    Max,
}

/// `global_average_pool(X)` / `global_max_pool(X)`: `[N, C, D…]` → `[N, C, 1…]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalPool {
    pub kind: GlobalPoolKind,
}

impl GlobalPool {
    fn types(self) -> &'static [DType] {
        match self.kind {
            GlobalPoolKind::Average => FLOAT_TYPES,
            GlobalPoolKind::Max => MAX_TYPES,
        }
    }
}

fn global_kernel<T: Element + PartialOrd>(x: &ArrayD<T>, kind: GlobalPoolKind) -> Tensor {
    let x = x.as_standard_layout();
    let shape: Vec<usize> = x
        .shape()
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < 2 { d } else { 1 })
        .collect();
    let planes = shape[0] * shape[1];
    let xs = x.as_slice().expect("standard layout");
    let size = x.len().checked_div(planes).unwrap_or(0);
    let all = DimWindow {
        start: 0,
        step: 1,
        count: size,
        padded: size,
    };
    let vals = (0..planes)
        .map(|p| {
            let plane = &xs[p * size..(p + 1) * size];
            match kind {
                GlobalPoolKind::Average => {
                    T::from_f64(plane.iter().map(|v| v.to_f64()).sum::<f64>() / size as f64)
                }
                GlobalPoolKind::Max => max_of(plane, &[&all], &[1]).0,
            }
        })
        .collect();
    T::wrap(ArrayD::from_shape_vec(IxDyn(&shape), vals).expect("sizes match"))
}

impl OpDef for GlobalPool {
    fn names() -> &'static [&'static str] {
        &["global_average_pool", "global_max_pool"]
    }
    fn name(&self) -> &'static str {
        match self.kind {
            GlobalPoolKind::Average => "global_average_pool",
            GlobalPoolKind::Max => "global_max_pool",
        }
    }
    fn from_attrs(name: &str, _: &mut AttrReader) -> Result<Self> {
        let kind = if name == "global_max_pool" {
            GlobalPoolKind::Max
        } else {
            GlobalPoolKind::Average
        };
        Ok(GlobalPool { kind })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        check_input(self.name(), x, self.types())?;
        let shape = x
            .shape
            .iter()
            .enumerate()
            .map(|(i, &d)| if i < 2 { d } else { 1 })
            .collect::<Vec<_>>();
        ensure!(
            x.shape[2..].iter().all(|&d| d > 0),
            Shape,
            "{}: spatial dims of {x} must be non-empty",
            self.name()
        );
        Ok(vec![TensorType::new(x.dtype, shape)])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        self.infer(InferInputs {
            ins: &[Some(super::InferInput {
                ty: &x.ty(),
                value: None,
            })],
            n_outputs: 1,
        })?;
        let y = match x {
            Tensor::F32(a) => global_kernel(a, self.kind),
            Tensor::F64(a) => global_kernel(a, self.kind),
            Tensor::I8(a) => global_kernel(a, self.kind),
            Tensor::U8(a) => global_kernel(a, self.kind),
            t => bail!(
                Type,
                "{} is not defined for {} tensors",
                self.name(),
                t.dtype()
            ),
        };
        Ok(vec![y])
    }
    fn flops(&self, ins: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        ins.first()
            .copied()
            .flatten()
            .map_or(0, |x| x.numel() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::spatial::test_util::{assert_close, build, pat, run};
    use super::*;
    use kiln_core::{Attr, ErrorKind};

    // Expected values: onnxruntime 1.32 on the same `pat` inputs (see test_util::pat).
    const MAX_CEIL: &[f64] = &[
        0.75, 1.25, 1.0, 0.75, 1.25, 1.0, 1.25, 1.0, 0.75, 1.25, 1.0, 0.5, 1.25, 0.75, 1.25, 1.0,
        0.75, 1.25, 0.75, 1.25, 1.0, 0.75, 1.25, 1.0, 0.5, 1.25, 0.75, 1.25, 1.0, 0.75, 1.25, 1.0,
        1.25, 1.0, 0.75, 1.25,
    ];
    const MAX_CEIL_IDX: &[f64] = &[
        6.0, 3.0, 10.0, 6.0, 14.0, 10.0, 25.0, 21.0, 28.0, 36.0, 32.0, 35.0, 36.0, 39.0, 47.0,
        54.0, 50.0, 58.0, 61.0, 69.0, 65.0, 72.0, 69.0, 76.0, 79.0, 80.0, 83.0, 91.0, 98.0, 94.0,
        102.0, 98.0, 113.0, 109.0, 116.0, 113.0,
    ];
    const MAX_DIL_COLMAJOR: &[f64] = &[
        1.25, 1.25, 0.75, 1.0, 1.25, 1.25, 1.0, 1.0, 1.25, 0.75, 1.0, 1.25, 0.75, 1.0, 1.25, 1.25,
        0.75, 1.0, 1.25, 0.75, 1.0, 1.0, 1.25, 0.75,
    ];
    const MAX_DIL_COLMAJOR_IDX: &[f64] = &[
        12.0, 12.0, 1.0, 21.0, 12.0, 12.0, 40.0, 40.0, 31.0, 43.0, 34.0, 54.0, 62.0, 82.0, 73.0,
        73.0, 62.0, 82.0, 92.0, 110.0, 101.0, 101.0, 92.0, 104.0,
    ];
    const MAX_SAME_LOWER: &[f64] = &[
        0.75, 1.25, 1.25, 0.75, 1.25, 1.0, 1.25, 1.25, 1.0, 1.25, 1.0, 0.75, 1.25, 1.0, 1.25, 1.0,
        0.75, 1.25, 0.75, 1.25, 1.25, 0.75, 1.25, 1.25, 0.5, 1.25, 1.0, 1.25, 1.25, 0.75, 1.25,
        1.0, 1.25, 1.0, 1.0, 1.25,
    ];
    const AVG_CEIL_INCLUDE_PAD: &[f64] = &[
        -0.1944444,
        0.0,
        0.08333334,
        -0.2222222,
        0.02777778,
        0.0,
        0.0,
        0.1388889,
        -0.08333334,
        0.02777778,
        0.02777778,
        -0.1944444,
        0.1111111,
        -0.08333334,
        -0.1111111,
        -0.08333334,
        -0.1388889,
        -0.05555556,
    ];
    const AVG_CEIL_EXCLUDE_PAD: &[f64] = &[
        -0.4375,
        0.0,
        0.125,
        -0.3333333,
        0.02777778,
        0.0,
        0.0,
        0.2083333,
        -0.125,
        0.0625,
        0.04166667,
        -0.2916667,
        0.1666667,
        -0.08333334,
        -0.1111111,
        -0.1875,
        -0.2083333,
        -0.08333334,
    ];
    const AVG_DIL_INCLUDE_PAD: &[f64] = &[
        -0.3125, 0.0625, -0.25, 0.125, -0.1875, 0.25, 0.0625, 0.125, 0.1875, 0.25, 0.3125, -0.1875,
        -0.4375, -0.1875, -0.125, -0.0625, 0.0, 0.0, 0.4375, 0.1875, 0.25, 0.3125, -0.3125, 0.1875,
        -0.125, -0.25, 0.125, -0.1875, 0.1875, -0.25, -0.1875, 0.3125, 0.0, -0.3125, 0.0625,
        -0.3125, 0.3125, -0.0625, 0.0, 0.0625, 0.125, 0.0625, -0.1875, 0.3125, -0.3125, -0.25,
        -0.1875, -0.4375, 0.0, 0.0, 0.0625, 0.125, 0.1875, 0.4375, 0.0, 0.0, -0.3125, 0.0625,
        -0.25, -0.125,
    ];
    const AVG_SAME_UPPER: &[f64] = &[
        -0.4375,
        0.375,
        -0.1875,
        -0.3333333,
        0.25,
        -0.08333334,
        0.0,
        0.125,
        -0.4375,
        0.0625,
        0.1875,
        -0.375,
        0.1666667,
        -0.1666667,
        -0.04166667,
        -0.1875,
        -0.0625,
        0.0625,
    ];
    const AVG_1D: &[f64] = &[
        -0.25, 0.0, -0.3333333, 0.25, -0.3333333, -0.25, 0.3333333, 0.0,
    ];
    const AVG_3D_CEIL: &[f64] = &[
        0.09375, -0.15625, -0.21875, 0.21875, 0.1875, -0.0625, -0.125, -0.375,
    ];

    fn attrs(list: &[(&str, Attr)]) -> Attrs {
        Attrs(
            list.iter()
                .map(|(n, a)| (n.to_string(), a.clone()))
                .collect(),
        )
    }

    fn ints(v: &[i64]) -> Attr {
        Attr::Ints(v.to_vec())
    }

    #[test]
    fn max_pool_ceil_mode_asymmetric_pads_with_indices() {
        let op: MaxPool = build(
            "max_pool",
            attrs(&[
                ("kernel_shape", ints(&[3, 2])),
                ("strides", ints(&[2, 2])),
                ("pads", ints(&[1, 0, 0, 1])),
                ("ceil_mode", Attr::Int(1)),
            ]),
        )
        .unwrap();
        let x = pat(&[2, 2, 5, 6], 3, 1);
        // Width: ceil((6 + 1 - 2) / 2) + 1 = 4 windows, but the 4th would start on the
        // right padding, so 3 (onnx's own shape inference says 4; onnxruntime says 3).
        let y = run(&op, &[Some(&x)], 2).unwrap();
        assert_close(&y[0], &[2, 2, 3, 3], MAX_CEIL);
        assert_eq!(y[1].dtype(), DType::I64);
        assert_close(&y[1], &[2, 2, 3, 3], MAX_CEIL_IDX);
        assert_eq!(op.flops(&[Some(&x.ty())], &[y[0].ty()]), 36 * 6);
        assert_eq!(run(&op, &[Some(&x)], 1).unwrap().len(), 1);
    }

    #[test]
    fn max_pool_dilations_column_major_indices() {
        let a = attrs(&[
            ("kernel_shape", ints(&[2, 2])),
            ("strides", ints(&[1, 2])),
            ("dilations", ints(&[2, 2])),
            ("storage_order", Attr::Int(1)),
        ]);
        let op: MaxPool = build("max_pool", a).unwrap();
        let y = run(&op, &[Some(&pat(&[2, 2, 5, 6], 3, 1))], 2).unwrap();
        assert_close(&y[0], &[2, 2, 3, 2], MAX_DIL_COLMAJOR);
        assert_close(&y[1], &[2, 2, 3, 2], MAX_DIL_COLMAJOR_IDX);
    }

    #[test]
    fn max_pool_same_lower_and_u8() {
        let a = attrs(&[
            ("kernel_shape", ints(&[3, 3])),
            ("strides", ints(&[2, 2])),
            ("auto_pad", Attr::Str("SAME_LOWER".into())),
        ]);
        let op: MaxPool = build("max_pool", a).unwrap();
        let y = run(&op, &[Some(&pat(&[2, 2, 5, 6], 3, 1))], 1).unwrap();
        assert_close(&y[0], &[2, 2, 3, 3], MAX_SAME_LOWER);
        let a = attrs(&[
            ("kernel_shape", ints(&[3])),
            ("strides", ints(&[2])),
            ("pads", ints(&[1, 1])),
        ]);
        let op: MaxPool = build("max_pool", a).unwrap();
        let x: Vec<u8> = (0..18).map(|i| (i * 37 % 251) as u8).collect();
        let y = run(&op, &[Some(&Tensor::from_vec(&[1, 2, 9], x).unwrap())], 1).unwrap();
        assert_eq!(y[0].dtype(), DType::U8);
        assert_close(
            &y[0],
            &[1, 2, 5],
            &[
                37.0, 111.0, 185.0, 222.0, 45.0, 119.0, 193.0, 230.0, 90.0, 127.0,
            ],
        );
    }

    #[test]
    fn max_pool_skips_nan() {
        let op: MaxPool = build("max_pool", attrs(&[("kernel_shape", ints(&[2]))])).unwrap();
        let x = Tensor::from_vec(&[1, 1, 3], vec![f32::NAN, -2.0, -3.0]).unwrap();
        assert_close(
            &run(&op, &[Some(&x)], 1).unwrap()[0],
            &[1, 1, 2],
            &[-2.0, -2.0],
        );
    }

    fn avg(list: &[(&str, Attr)]) -> AveragePool {
        build("average_pool", attrs(list)).unwrap()
    }

    #[test]
    fn average_pool_ceil_mode_count_include_pad() {
        let x = pat(&[1, 2, 5, 6], 3, 1);
        for (include, want) in [(1, AVG_CEIL_INCLUDE_PAD), (0, AVG_CEIL_EXCLUDE_PAD)] {
            // Pads count when count_include_pad is set, the ceil_mode overhang never does.
            let op = avg(&[
                ("kernel_shape", ints(&[3, 3])),
                ("strides", ints(&[2, 2])),
                ("pads", ints(&[1, 1, 1, 0])),
                ("ceil_mode", Attr::Int(1)),
                ("count_include_pad", Attr::Int(include)),
            ]);
            assert_close(&run(&op, &[Some(&x)], 1).unwrap()[0], &[1, 2, 3, 3], want);
        }
    }

    #[test]
    fn average_pool_dilations_same_upper_1d_3d() {
        let x = pat(&[1, 2, 5, 6], 3, 1);
        let op = avg(&[
            ("kernel_shape", ints(&[2, 2])),
            ("pads", ints(&[1, 1, 1, 1])),
            ("dilations", ints(&[2, 2])),
            ("count_include_pad", Attr::Int(1)),
        ]);
        assert_close(
            &run(&op, &[Some(&x)], 1).unwrap()[0],
            &[1, 2, 5, 6],
            AVG_DIL_INCLUDE_PAD,
        );
        let op = avg(&[
            ("kernel_shape", ints(&[3, 2])),
            ("strides", ints(&[2, 2])),
            ("auto_pad", Attr::Str("SAME_UPPER".into())),
        ]);
        assert_close(
            &run(&op, &[Some(&x)], 1).unwrap()[0],
            &[1, 2, 3, 3],
            AVG_SAME_UPPER,
        );
        let op = avg(&[
            ("kernel_shape", ints(&[3])),
            ("strides", ints(&[2])),
            ("pads", ints(&[2, 1])),
            ("count_include_pad", Attr::Int(1)),
        ]);
        assert_close(
            &run(&op, &[Some(&pat(&[1, 2, 7], 3, 2))], 1).unwrap()[0],
            &[1, 2, 4],
            AVG_1D,
        );
        let op = avg(&[
            ("kernel_shape", ints(&[2, 2, 2])),
            ("strides", ints(&[2, 2, 2])),
            ("ceil_mode", Attr::Int(1)),
        ]);
        let y = run(
            &op,
            &[Some(&pat(&[1, 1, 3, 4, 4], 5, 1).cast(DType::F64))],
            1,
        )
        .unwrap();
        assert_eq!(y[0].dtype(), DType::F64);
        assert_close(&y[0], &[1, 1, 2, 2, 2], AVG_3D_CEIL);
    }

    #[test]
    fn global_pools() {
        let x = pat(&[2, 3, 2, 3], 3, 1);
        let gap: GlobalPool = build("global_average_pool", Attrs::new()).unwrap();
        let y = run(&gap, &[Some(&x)], 1).unwrap();
        let want = [-0.04166667, -0.125, 0.25, -0.2916667, 0.08333334, 0.0];
        assert_close(&y[0], &[2, 3, 1, 1], &want);
        let gmp: GlobalPool = build("global_max_pool", Attrs::new()).unwrap();
        let y = run(&gmp, &[Some(&x)], 1).unwrap();
        assert_close(&y[0], &[2, 3, 1, 1], &[1.25, 1.0, 1.25, 1.0, 1.25, 1.0]);
        assert_eq!(gmp.flops(&[Some(&x.ty())], &[y[0].ty()]), 36);
        let e = run(&gap, &[Some(&x.cast(DType::U8))], 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Type);
    }

    #[test]
    fn pool_errors() {
        let e = build::<MaxPool>("max_pool", Attrs::new()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Attribute);
        assert!(e.message.contains("kernel_shape"), "{}", e.message);
        let e = build::<MaxPool>(
            "max_pool",
            attrs(&[
                ("kernel_shape", ints(&[2])),
                ("storage_order", Attr::Int(2)),
            ]),
        );
        assert_eq!(e.unwrap_err().kind, ErrorKind::Attribute);
        let op = avg(&[("kernel_shape", ints(&[3, 3]))]);
        let e = run(&op, &[Some(&pat(&[1, 1, 4], 1, 0))], 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Attribute);
        assert!(
            e.message
                .contains("kernel_shape [3, 3] has 2 values but the input has 1 spatial dims"),
            "{}",
            e.message
        );
        let e = run(&op, &[Some(&pat(&[1, 1, 2, 5], 1, 0))], 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Shape);
        let e = run(&op, &[Some(&pat(&[4, 4], 1, 0))], 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Shape);
        assert!(e.message.contains("[N, C, spatial…]"), "{}", e.message);
    }
}
