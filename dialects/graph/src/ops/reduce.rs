//! Reductions (`reduce_sum`, `reduce_mean`, ... with axes as an operand, the opset-18
//! form) and `arg_max` / `arg_min`.
//!
//! Each reduction moves the reduced axes innermost, so every result element is one
//! contiguous lane; when they already are (the usual global-pool case) no copy is made.
//! Float lanes accumulate in f64; integer sums and products accumulate in i128 and wrap to
//! the element type as numpy does, so shape arithmetic on i64 stays exact.

use super::util::{arg, norm_axis, opt_arg};
use super::{InferInputs, OpDef};
use kiln_core::{AttrReader, Attrs, DType, Element, Result, Tensor, TensorType, bail, ensure};
use ndarray::{ArrayD, IxDyn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceKind {
    Mean,
    Sum,
    Max,
    Min,
    Prod,
    L1,
    L2,
    SumSquare,
    LogSum,
    LogSumExp,
}

const KINDS: &[(ReduceKind, &str)] = &[
    (ReduceKind::Mean, "reduce_mean"),
    (ReduceKind::Sum, "reduce_sum"),
    (ReduceKind::Max, "reduce_max"),
    (ReduceKind::Min, "reduce_min"),
    (ReduceKind::Prod, "reduce_prod"),
    (ReduceKind::L1, "reduce_l1"),
    (ReduceKind::L2, "reduce_l2"),
    (ReduceKind::SumSquare, "reduce_sum_square"),
    (ReduceKind::LogSum, "reduce_log_sum"),
    (ReduceKind::LogSumExp, "reduce_log_sum_exp"),
];
const NAMES: &[&str] = &[
    "reduce_mean",
    "reduce_sum",
    "reduce_max",
    "reduce_min",
    "reduce_prod",
    "reduce_l1",
    "reduce_l2",
    "reduce_sum_square",
    "reduce_log_sum",
    "reduce_log_sum_exp",
];

impl ReduceKind {
    pub fn name(self) -> &'static str {
        KINDS
            .iter()
            .find(|(k, _)| *k == self)
            .expect("every kind is in the table")
            .1
    }
}

/// Numeric element types a lane can be reduced over.
trait Lane: Element + PartialOrd {
    const INT: bool;
    /// Identity of max (−∞ or the type's minimum) and of min.
    const LOWEST: Self;
    const HIGHEST: Self;
    fn to_i128(self) -> i128;
    /// Two's-complement truncation, numpy's overflow behaviour.
    fn from_i128(v: i128) -> Self;
}

macro_rules! int_lane {
    ($($t:ty),*) => {$(
        impl Lane for $t {
            const INT: bool = true;
            const LOWEST: Self = <$t>::MIN;
            const HIGHEST: Self = <$t>::MAX;
            fn to_i128(self) -> i128 { self as i128 }
            fn from_i128(v: i128) -> Self { v as $t }
        }
    )*};
}
int_lane!(i8, u8, i16, u16, i32, u32, i64, u64);

macro_rules! float_lane {
    ($($t:ty),*) => {$(
        impl Lane for $t {
            const INT: bool = false;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const HIGHEST: Self = <$t>::INFINITY;
            fn to_i128(self) -> i128 { self as i128 }
            fn from_i128(v: i128) -> Self { v as $t }
        }
    )*};
}
float_lane!(f32, f64);

/// NaN test that works for any `PartialOrd` element (only floats are unequal to themselves).
#[allow(clippy::eq_op)]
fn is_nan<T: PartialEq>(v: T) -> bool {
    v != v
}

fn reduce_lane<T: Lane>(k: ReduceKind, xs: &[T]) -> T {
    use ReduceKind::*;
    // NaN propagates through max/min, as with numpy.
    let pick = |better: fn(&T, &T) -> bool, init: T| {
        xs.iter().copied().fold(init, |m, v| {
            if !is_nan(m) && (is_nan(v) || better(&v, &m)) {
                v
            } else {
                m
            }
        })
    };
    match k {
        Max => pick(|a, b| a > b, T::LOWEST),
        Min => pick(|a, b| a < b, T::HIGHEST),
        Sum | Mean | Prod | L1 | SumSquare if T::INT => {
            let it = xs.iter().map(|v| v.to_i128());
            T::from_i128(match k {
                Sum => it.fold(0i128, i128::wrapping_add),
                Mean if xs.is_empty() => 0,
                Mean => it.fold(0i128, i128::wrapping_add) / xs.len() as i128,
                Prod => it.fold(1i128, i128::wrapping_mul),
                L1 => it.fold(0i128, |s, v| s.wrapping_add(v.wrapping_abs())),
                _ => it.fold(0i128, |s, v| s.wrapping_add(v.wrapping_mul(v))),
            })
        }
        _ => {
            let it = xs.iter().map(|v| v.to_f64());
            // Folding from +0.0 (std's float `sum` starts at -0.0) keeps empty sums at 0.
            fn sum(it: impl Iterator<Item = f64>) -> f64 {
                it.fold(0.0, |a, b| a + b)
            }
            let r = match k {
                Sum => sum(it),
                Mean => sum(it) / xs.len() as f64,
                Prod => it.product(),
                L1 => sum(it.map(f64::abs)),
                L2 => sum(it.map(|v| v * v)).sqrt(),
                SumSquare => sum(it.map(|v| v * v)),
                LogSum => sum(it).ln(),
                _ => {
                    let m = it.clone().fold(f64::NEG_INFINITY, f64::max);
                    if m.is_infinite() && m > 0.0 {
                        // Any +∞ gives +∞ (no ∞ − ∞); empty or all −∞ gives ln 0 = −∞.
                        m
                    } else if m.is_infinite() {
                        sum(it.map(f64::exp)).ln()
                    } else {
                        m + sum(it.map(|v| (v - m).exp())).ln()
                    }
                }
            };
            // Integer L2 / log results truncate, like numpy's astype.
            T::from_f64(r)
        }
    }
}

/// Which axes a reduction removes. Empty axes with `noop_with_empty_axes` reduce over no
/// axis at all, which is not quite the identity: every element is its own lane, so
/// reduce_l1 still takes |x|, reduce_log_sum ln(x), reduce_sum_square x² (ONNX spec).
fn reduced_mask(rank: usize, axes: Option<&[i64]>, noop_empty: bool) -> Result<Vec<bool>> {
    let axes = axes.unwrap_or(&[]);
    if axes.is_empty() {
        return Ok(vec![!noop_empty; rank]);
    }
    let mut mask = vec![false; rank];
    for &a in axes {
        let i = norm_axis(a, rank)?;
        // norm_axis lets axis 0 through for scalars.
        ensure!(i < rank, Shape, "axis {a} is out of range for rank {rank}");
        ensure!(!mask[i], Shape, "axis {a} appears twice in axes {axes:?}");
        mask[i] = true;
    }
    Ok(mask)
}

fn out_shape(shape: &[usize], mask: &[bool], keepdims: bool) -> Vec<usize> {
    shape
        .iter()
        .zip(mask)
        .filter_map(|(&d, &r)| {
            if !r {
                Some(d)
            } else if keepdims {
                Some(1)
            } else {
                None
            }
        })
        .collect()
}

/// Applies `f` to every lane of `a` whose reduced axes are `mask`, in row-major order of
/// the kept axes.
fn lanes<T: Copy, R>(a: &ArrayD<T>, mask: &[bool], mut f: impl FnMut(&[T]) -> R) -> Vec<R> {
    let mut perm: Vec<usize> = (0..mask.len()).filter(|&i| !mask[i]).collect();
    perm.extend((0..mask.len()).filter(|&i| mask[i]));
    let v = a.view().permuted_axes(IxDyn(&perm));
    let owned: Vec<T>;
    let data = match v.as_slice() {
        Some(s) => s,
        None => {
            owned = v.iter().copied().collect();
            &owned
        }
    };
    let n: usize = (0..mask.len())
        .filter(|&i| mask[i])
        .map(|i| a.shape()[i])
        .product();
    let outer: usize = (0..mask.len())
        .filter(|&i| !mask[i])
        .map(|i| a.shape()[i])
        .product();
    (0..outer).map(|i| f(&data[i * n..(i + 1) * n])).collect()
}

/// `reduce_*(data, axes?) {keepdims, noop_with_empty_axes}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reduce {
    pub kind: ReduceKind,
    pub keepdims: bool,
    pub noop_with_empty_axes: bool,
}

impl Reduce {
    pub fn new(kind: ReduceKind) -> Self {
        Reduce {
            kind,
            keepdims: true,
            noop_with_empty_axes: false,
        }
    }

    fn check_dtype(&self, dt: DType) -> Result<()> {
        let bool_ok = matches!(self.kind, ReduceKind::Max | ReduceKind::Min);
        ensure!(
            dt != DType::Bool || bool_ok,
            Type,
            "{} is not defined for bool tensors",
            self.kind.name()
        );
        Ok(())
    }
}

impl OpDef for Reduce {
    fn shape_operands(&self) -> &'static [usize] {
        &[1]
    }
    fn names() -> &'static [&'static str] {
        NAMES
    }
    fn name(&self) -> &'static str {
        self.kind.name()
    }
    fn from_attrs(name: &str, r: &mut AttrReader) -> Result<Self> {
        let kind = KINDS
            .iter()
            .find(|(_, n)| *n == name)
            .expect("name comes from names()")
            .0;
        Ok(Reduce {
            kind,
            keepdims: r.int("keepdims", 1)? != 0,
            noop_with_empty_axes: r.int("noop_with_empty_axes", 0)? != 0,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().int("keepdims", self.keepdims as i64, 1).int(
            "noop_with_empty_axes",
            self.noop_with_empty_axes as i64,
            0,
        )
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        self.check_dtype(x.dtype)?;
        let axes = ins.const_ints(1, "axes")?;
        let mask = reduced_mask(x.rank(), axes.as_deref(), self.noop_with_empty_axes)?;
        Ok(vec![TensorType::new(
            x.dtype,
            out_shape(&x.shape, &mask, self.keepdims),
        )])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        self.check_dtype(x.dtype())?;
        let axes = opt_arg(ins, 1).map(|t| t.to_i64_vec()).transpose()?;
        let mask = reduced_mask(x.shape().len(), axes.as_deref(), self.noop_with_empty_axes)?;
        let shape = out_shape(x.shape(), &mask, self.keepdims);
        fn run<T: Lane>(
            k: ReduceKind,
            a: &ArrayD<T>,
            mask: &[bool],
            shape: &[usize],
        ) -> Result<Tensor> {
            Tensor::from_vec(shape, lanes(a, mask, |l| reduce_lane(k, l)))
        }
        let k = self.kind;
        let out = match x {
            Tensor::F32(a) => run(k, a, &mask, &shape)?,
            Tensor::F64(a) => run(k, a, &mask, &shape)?,
            Tensor::I8(a) => run(k, a, &mask, &shape)?,
            Tensor::U8(a) => run(k, a, &mask, &shape)?,
            Tensor::I16(a) => run(k, a, &mask, &shape)?,
            Tensor::U16(a) => run(k, a, &mask, &shape)?,
            Tensor::I32(a) => run(k, a, &mask, &shape)?,
            Tensor::U32(a) => run(k, a, &mask, &shape)?,
            Tensor::I64(a) => run(k, a, &mask, &shape)?,
            Tensor::U64(a) => run(k, a, &mask, &shape)?,
            // Max is "any", min is "all" (opset 20); their identities are false and true.
            Tensor::Bool(a) => {
                let any = k == ReduceKind::Max;
                Tensor::from_vec(
                    &shape,
                    lanes(a, &mask, |l| {
                        if any {
                            l.contains(&true)
                        } else {
                            !l.contains(&false)
                        }
                    }),
                )?
            }
        };
        Ok(vec![out])
    }
    fn flops(&self, ins: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        ins.first()
            .copied()
            .flatten()
            .map_or(0, |t| t.numel() as u64)
    }
}

/// `arg_max(data) {axis, keepdims, select_last_index}` and `arg_min`: i64 indices of the
/// extreme element along one axis. NaN counts as the extreme, as in numpy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgReduce {
    pub max: bool,
    pub axis: i64,
    pub keepdims: bool,
    pub select_last_index: bool,
}

impl ArgReduce {
    fn plan(&self, shape: &[usize]) -> Result<(Vec<bool>, Vec<usize>)> {
        let what = self.name();
        let axis = norm_axis(self.axis, shape.len())?;
        ensure!(
            axis < shape.len(),
            Shape,
            "{what} needs a tensor of rank >= 1"
        );
        ensure!(
            shape[axis] > 0,
            Shape,
            "{what} over axis {axis} of size 0 has no answer"
        );
        let mask: Vec<bool> = (0..shape.len()).map(|i| i == axis).collect();
        let out = out_shape(shape, &mask, self.keepdims);
        Ok((mask, out))
    }
}

fn arg_lane<T: PartialOrd + Copy>(xs: &[T], max: bool, last: bool) -> i64 {
    let mut best = 0;
    for (i, v) in xs.iter().enumerate().skip(1) {
        let b = &xs[best];
        if is_nan(*b) {
            break;
        }
        let better = if max { v > b } else { v < b };
        if better || is_nan(*v) || (last && v == b) {
            best = i;
        }
    }
    best as i64
}

impl OpDef for ArgReduce {
    fn names() -> &'static [&'static str] {
        &["arg_max", "arg_min"]
    }
    fn name(&self) -> &'static str {
        if self.max { "arg_max" } else { "arg_min" }
    }
    fn from_attrs(name: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(ArgReduce {
            max: name == "arg_max",
            axis: r.int("axis", 0)?,
            keepdims: r.int("keepdims", 1)? != 0,
            select_last_index: r.int("select_last_index", 0)? != 0,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
            .int("axis", self.axis, 0)
            .int("keepdims", self.keepdims as i64, 1)
            .int("select_last_index", self.select_last_index as i64, 0)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        ensure!(
            x.dtype != DType::Bool,
            Type,
            "{} is not defined for bool tensors",
            self.name()
        );
        Ok(vec![TensorType::new(DType::I64, self.plan(&x.shape)?.1)])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let (mask, shape) = self.plan(x.shape())?;
        let (m, l) = (self.max, self.select_last_index);
        let idx = match x {
            Tensor::Bool(_) => bail!(Type, "{} is not defined for bool tensors", self.name()),
            Tensor::F32(a) => lanes(a, &mask, |s| arg_lane(s, m, l)),
            Tensor::F64(a) => lanes(a, &mask, |s| arg_lane(s, m, l)),
            Tensor::I8(a) => lanes(a, &mask, |s| arg_lane(s, m, l)),
            Tensor::U8(a) => lanes(a, &mask, |s| arg_lane(s, m, l)),
            Tensor::I16(a) => lanes(a, &mask, |s| arg_lane(s, m, l)),
            Tensor::U16(a) => lanes(a, &mask, |s| arg_lane(s, m, l)),
            Tensor::I32(a) => lanes(a, &mask, |s| arg_lane(s, m, l)),
            Tensor::U32(a) => lanes(a, &mask, |s| arg_lane(s, m, l)),
            Tensor::I64(a) => lanes(a, &mask, |s| arg_lane(s, m, l)),
            Tensor::U64(a) => lanes(a, &mask, |s| arg_lane(s, m, l)),
        };
        Ok(vec![Tensor::from_vec(&shape, idx)?])
    }
    fn flops(&self, ins: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        ins.first()
            .copied()
            .flatten()
            .map_or(0, |t| t.numel() as u64)
    }
}

#[cfg(test)]
mod tests;
