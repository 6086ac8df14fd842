//! Ops that change only the shape of a tensor, or read it: `reshape`, `flatten`, `squeeze`,
//! `unsqueeze`, `expand`, `shape`, `size`, and `range` (whose shape is its operands' values).
//!
//! Each op's shape rule is a plain function of dimensions used by both `infer` and `eval`, so
//! the interpreter reports exactly the errors shape inference would, even when it runs on a
//! graph that was never inferred.

use super::util::arg;
use super::{InferInputs, OpDef};
use kiln_core::{
    AttrReader, Attrs, DType, Element, Error, ErrorKind, Result, Tensor, TensorType, bail, dispatch,
};
use ndarray::{ArrayD, IxDyn};

/// Converts a list of non-negative i64 dimensions (from a shape operand) to `usize`.
pub(crate) fn dims_of(v: &[i64], what: &str) -> Result<Vec<usize>> {
    v.iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                Error::new(
                    ErrorKind::Shape,
                    format!("{what} {v:?} has a negative value {d}"),
                )
            })
        })
        .collect()
}

/// Results beyond this many elements cannot be allocated; refusing them at shape
/// inference is kinder than an abort in the interpreter.
pub(crate) const MAX_ELEMENTS: usize = 1 << 40;

/// `shape` if its element count is allocatable, else a shape error naming `op`.
pub(crate) fn sized(op: &str, shape: Vec<usize>) -> Result<Vec<usize>> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match n {
        _ if shape.contains(&0) => Ok(shape),
        Some(n) if n <= MAX_ELEMENTS => Ok(shape),
        _ => bail!(Shape, "{op} result {shape:?} is too large"),
    }
}

/// Normalises axes against `rank`, rejecting out-of-range and repeated ones.
pub(crate) fn norm_axes(axes: &[i64], rank: usize, what: &str) -> Result<Vec<usize>> {
    let r = rank as i64;
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        if a < -r || a >= r {
            bail!(
                Shape,
                "{what} {axes:?}: axis {a} is out of range for rank {rank}"
            );
        }
        let a = if a < 0 { (a + r) as usize } else { a as usize };
        if out.contains(&a) {
            bail!(Shape, "{what} {axes:?} name axis {a} twice");
        }
        out.push(a);
    }
    Ok(out)
}

/// A shape-like operand (Reshape's shape, Expand's shape, axes lists) must be a 1-D integer
/// tensor; scalars and matrices are model errors worth naming.
pub(crate) fn check_index_list(ins: &InferInputs, i: usize, what: &str) -> Result<()> {
    if let Some(x) = ins.opt(i) {
        if !x.ty.dtype.is_integer() {
            bail!(Type, "{what} must be an integer tensor, got {}", x.ty);
        }
        if x.ty.rank() != 1 {
            bail!(Shape, "{what} must be 1-D, got {}", x.ty);
        }
    }
    Ok(())
}

/// The runtime counterpart of a constant integer-list operand.
fn ints_arg(ins: &[Option<&Tensor>], i: usize) -> Result<Option<Vec<i64>>> {
    super::util::opt_arg(ins, i)
        .map(|t| t.to_i64_vec())
        .transpose()
}

/// Result shape of `reshape`: `0` copies the input dimension at that position unless
/// `allowzero`, one `-1` is inferred from the element count.
pub fn reshape_shape(input: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(spec.len());
    let mut inferred = None;
    for (i, &s) in spec.iter().enumerate() {
        out.push(match s {
            -1 if inferred.is_some() => bail!(Shape, "reshape to {spec:?}: more than one -1"),
            -1 => {
                inferred = Some(i);
                1
            }
            0 if !allowzero => *input.get(i).ok_or_else(|| {
                Error::new(ErrorKind::Shape, format!("reshape to {spec:?}: 0 at position {i} copies a dimension of {input:?}, which has none there"))
            })?,
            s if s < 0 => bail!(Shape, "reshape to {spec:?}: invalid dimension {s}"),
            s => s as usize,
        });
    }
    if allowzero && inferred.is_some() && spec.contains(&0) {
        bail!(
            Shape,
            "reshape to {spec:?} with allowzero=1 cannot combine 0 and -1"
        );
    }
    let total: usize = input.iter().product();
    let known = out.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let known = known
        .ok_or_else(|| Error::new(ErrorKind::Shape, format!("reshape to {spec:?} overflows")))?;
    match inferred {
        Some(_) if known == 0 => {
            bail!(
                Shape,
                "cannot reshape {input:?} to {spec:?}: -1 is ambiguous when the other dimensions multiply to 0"
            )
        }
        Some(i) if total.is_multiple_of(known) => out[i] = total / known,
        Some(_) => bail!(
            Shape,
            "cannot reshape {input:?} ({total} elements) to {spec:?}: {total} is not a multiple of {known}"
        ),
        None if known != total => {
            bail!(
                Shape,
                "cannot reshape {input:?} ({total} elements) to {spec:?} ({known} elements)"
            )
        }
        None => {}
    }
    Ok(out)
}

/// `reshape(data, shape) {allowzero}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reshape {
    pub allowzero: bool,
}

impl OpDef for Reshape {
    fn shape_operands(&self) -> &'static [usize] {
        &[1]
    }
    fn names() -> &'static [&'static str] {
        &["reshape"]
    }
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(Reshape {
            allowzero: bool_attr(r, "allowzero")?,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().int("allowzero", self.allowzero as i64, 0)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        check_index_list(&ins, 1, "reshape's shape")?;
        let spec = ins
            .const_ints(1, "shape")?
            .ok_or_else(|| Error::new(ErrorKind::InvalidModel, "reshape needs a shape operand"))?;
        Ok(vec![TensorType::new(
            x.dtype,
            reshape_shape(&x.shape, &spec, self.allowzero)?,
        )])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let shape = reshape_shape(x.shape(), &arg(ins, 1)?.to_i64_vec()?, self.allowzero)?;
        Ok(vec![x.reshape(&shape)?])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

/// A 0/1 flag attribute (ONNX writes booleans as ints).
pub(crate) fn bool_attr(r: &mut AttrReader, name: &str) -> Result<bool> {
    match r.int(name, 0)? {
        0 => Ok(false),
        1 => Ok(true),
        v => bail!(Attribute, "attribute '{name}' must be 0 or 1, got {v}"),
    }
}

/// Result shape of `flatten`: the dimensions before `axis` and from `axis` on, each
/// multiplied out. `axis` may equal the rank (everything goes to the first dimension).
pub fn flatten_shape(input: &[usize], axis: i64) -> Result<Vec<usize>> {
    let r = input.len() as i64;
    if axis < -r || axis > r {
        bail!(Shape, "flatten axis {axis} is out of range for rank {r}");
    }
    let a = if axis < 0 { axis + r } else { axis } as usize;
    Ok(vec![
        input[..a].iter().product(),
        input[a..].iter().product(),
    ])
}

/// `flatten(x) {axis}`: to a matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flatten {
    pub axis: i64,
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten { axis: 1 }
    }
}

impl OpDef for Flatten {
    fn names() -> &'static [&'static str] {
        &["flatten"]
    }
    fn name(&self) -> &'static str {
        "flatten"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(Flatten {
            axis: r.int("axis", 1)?,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().int("axis", self.axis, 1)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        Ok(vec![TensorType::new(
            x.dtype,
            flatten_shape(&x.shape, self.axis)?,
        )])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        Ok(vec![x.reshape(&flatten_shape(x.shape(), self.axis)?)?])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

/// Result shape of `squeeze`: the listed axes (each of size 1) removed, or every size-1
/// axis when no list is given.
pub fn squeeze_shape(input: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>> {
    let Some(axes) = axes else {
        return Ok(input.iter().copied().filter(|&d| d != 1).collect());
    };
    let axes = norm_axes(axes, input.len(), "squeeze axes")?;
    if let Some(&a) = axes.iter().find(|&&a| input[a] != 1) {
        bail!(
            Shape,
            "cannot squeeze axis {a} of {input:?}: its size is {}, not 1",
            input[a]
        );
    }
    Ok(input
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect())
}

/// Result shape of `unsqueeze`: size-1 axes inserted at positions of the *result*.
pub fn unsqueeze_shape(input: &[usize], axes: &[i64]) -> Result<Vec<usize>> {
    let rank = input.len() + axes.len();
    let axes = norm_axes(axes, rank, "unsqueeze axes")?;
    let mut rest = input.iter();
    Ok((0..rank)
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                *rest.next().expect("rank adds up")
            }
        })
        .collect())
}

/// `squeeze(data, axes?)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Squeeze;

/// `unsqueeze(data, axes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unsqueeze;

macro_rules! axes_reshape_op {
    ($ty:ident, $name:literal, $rule:expr) => {
        impl OpDef for $ty {
            fn shape_operands(&self) -> &'static [usize] {
                &[1]
            }
            fn names() -> &'static [&'static str] {
                &[$name]
            }
            fn name(&self) -> &'static str {
                $name
            }
            fn from_attrs(_: &str, _: &mut AttrReader) -> Result<Self> {
                Ok($ty)
            }
            fn attrs(&self) -> Attrs {
                Attrs::new()
            }
            fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
                let x = ins.ty(0)?;
                check_index_list(&ins, 1, concat!($name, " axes"))?;
                let axes = ins.const_ints(1, "axes")?;
                let rule: fn(&[usize], Option<&[i64]>) -> Result<Vec<usize>> = $rule;
                Ok(vec![TensorType::new(
                    x.dtype,
                    rule(&x.shape, axes.as_deref())?,
                )])
            }
            fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
                let x = arg(ins, 0)?;
                let rule: fn(&[usize], Option<&[i64]>) -> Result<Vec<usize>> = $rule;
                Ok(vec![x.reshape(&rule(
                    x.shape(),
                    ints_arg(ins, 1)?.as_deref(),
                )?)?])
            }
            fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
                0
            }
        }
    };
}

axes_reshape_op!(Squeeze, "squeeze", squeeze_shape);
axes_reshape_op!(Unsqueeze, "unsqueeze", |s, axes| match axes {
    Some(a) => unsqueeze_shape(s, a),
    None => Err(Error::new(
        ErrorKind::InvalidModel,
        "unsqueeze needs an axes operand"
    )),
});

/// Result shape of `expand`: `input` and `shape` broadcast both ways (a 1 in `shape` keeps
/// the input's dimension).
pub fn expand_shape(input: &[usize], shape: &[i64]) -> Result<Vec<usize>> {
    let target = dims_of(shape, "expand shape")?;
    let out = super::util::broadcast_shapes(input, &target).map_err(|_| {
        Error::new(
            ErrorKind::Shape,
            format!("cannot expand {input:?} to {shape:?}"),
        )
    })?;
    sized("expand", out)
}

/// `expand(input, shape)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expand;

impl OpDef for Expand {
    fn shape_operands(&self) -> &'static [usize] {
        &[1]
    }
    fn names() -> &'static [&'static str] {
        &["expand"]
    }
    fn name(&self) -> &'static str {
        "expand"
    }
    fn from_attrs(_: &str, _: &mut AttrReader) -> Result<Self> {
        Ok(Expand)
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        check_index_list(&ins, 1, "expand's shape")?;
        let shape = ins
            .const_ints(1, "shape")?
            .ok_or_else(|| Error::new(ErrorKind::InvalidModel, "expand needs a shape operand"))?;
        Ok(vec![TensorType::new(
            x.dtype,
            expand_shape(&x.shape, &shape)?,
        )])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let shape = expand_shape(x.shape(), &arg(ins, 1)?.to_i64_vec()?)?;
        fn expand<T: Element>(a: &ArrayD<T>, shape: &[usize]) -> Tensor {
            T::wrap(
                a.broadcast(IxDyn(shape))
                    .expect("checked by expand_shape")
                    .as_standard_layout()
                    .into_owned(),
            )
        }
        Ok(vec![dispatch!(x, a => expand(a, &shape))])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

/// `shape(data) {start, end}`: the dimensions `start..end` as i64 (both clamped into
/// `0..=rank` after adding the rank to negative values; an empty range gives `[]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    pub start: i64,
    pub end: Option<i64>,
}

impl Shape {
    pub fn range(&self, rank: usize) -> (usize, usize) {
        let r = rank as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (s, e) = (clamp(self.start), clamp(self.end.unwrap_or(r)));
        (s, e.max(s))
    }

    fn dims(&self, shape: &[usize]) -> Tensor {
        let (s, e) = self.range(shape.len());
        let v: Vec<i64> = shape[s..e].iter().map(|&d| d as i64).collect();
        Tensor::from_vec(&[v.len()], v).expect("1-D")
    }
}

impl OpDef for Shape {
    fn names() -> &'static [&'static str] {
        &["shape"]
    }
    fn name(&self) -> &'static str {
        "shape"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(Shape {
            start: r.int("start", 0)?,
            end: r.opt_int("end")?,
        })
    }
    fn attrs(&self) -> Attrs {
        let a = Attrs::new().int("start", self.start, 0);
        match self.end {
            Some(e) => {
                let mut a = a;
                a.set("end", kiln_core::Attr::Int(e));
                a
            }
            None => a,
        }
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let (s, e) = self.range(ins.ty(0)?.rank());
        Ok(vec![TensorType::new(DType::I64, [e - s])])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        Ok(vec![self.dims(arg(ins, 0)?.shape())])
    }
    fn value_from_types(&self, ins: InferInputs) -> Option<Vec<Tensor>> {
        Some(vec![self.dims(&ins.ty(0).ok()?.shape)])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

/// `size(data)`: the element count as an i64 scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Size;

impl OpDef for Size {
    fn names() -> &'static [&'static str] {
        &["size"]
    }
    fn name(&self) -> &'static str {
        "size"
    }
    fn from_attrs(_: &str, _: &mut AttrReader) -> Result<Self> {
        Ok(Size)
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        ins.ty(0)?;
        Ok(vec![TensorType::new(DType::I64, [])])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        Ok(vec![Tensor::scalar(arg(ins, 0)?.len() as i64)])
    }
    fn value_from_types(&self, ins: InferInputs) -> Option<Vec<Tensor>> {
        Some(vec![Tensor::scalar(ins.ty(0).ok()?.numel() as i64)])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

/// `range(start, limit, delta)`: `start + i·delta` for `i < max(ceil((limit-start)/delta), 0)`.
/// Its length is a function of operand *values*, so shape inference needs them constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Range;

impl Range {
    /// Element count and the values as f64 (exact for every integer kiln meets in shape
    /// arithmetic), with integer counts computed exactly.
    fn plan(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Result<(usize, f64, f64)> {
        let dt = start.dtype();
        for (what, t) in [("start", start), ("limit", limit), ("delta", delta)] {
            if t.len() != 1 || t.dtype() != dt {
                bail!(
                    Type,
                    "range {what} must be a one-element {dt} tensor, got {}",
                    t.ty()
                );
            }
        }
        if dt == DType::Bool {
            bail!(Type, "range is not defined for bool");
        }
        let (s, l, d) = (
            start.to_f64_vec()[0],
            limit.to_f64_vec()[0],
            delta.to_f64_vec()[0],
        );
        if d == 0.0 {
            bail!(Shape, "range delta must not be 0");
        }
        let n = if dt.is_integer() {
            let (s, l, d) = (s as i128, l as i128, d as i128);
            let num = l - s;
            let q = num / d;
            let n = if num % d != 0 && ((num < 0) == (d < 0)) {
                q + 1
            } else {
                q
            };
            n.max(0) as f64
        } else {
            ((l - s) / d).ceil().max(0.0)
        };
        if !n.is_finite() || n > (1u64 << 40) as f64 {
            bail!(Shape, "range({s}, {l}, {d}) would have {n} elements");
        }
        Ok((n as usize, s, d))
    }
}

impl OpDef for Range {
    fn shape_operands(&self) -> &'static [usize] {
        &[0, 1, 2]
    }
    fn names() -> &'static [&'static str] {
        &["range"]
    }
    fn name(&self) -> &'static str {
        "range"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        // stash_type only selects the accumulation type for f16/bf16, which kiln lacks.
        r.ignore("stash_type");
        Ok(Range)
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let mut v = Vec::with_capacity(3);
        for (i, what) in ["start", "limit", "delta"].into_iter().enumerate() {
            ins.ty(i)?;
            v.push(ins.const_value(i, what)?.expect("present: ty() checked"));
        }
        let (n, _, _) = Range::plan(v[0], v[1], v[2])?;
        Ok(vec![TensorType::new(v[0].dtype(), [n])])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let start = arg(ins, 0)?;
        let (n, s, d) = Range::plan(start, arg(ins, 1)?, arg(ins, 2)?)?;
        let out = match start {
            // i64 steps exactly; other types compute start + i·delta in f64 and round once,
            // as numpy's arange (the reference) does.
            Tensor::I64(a) => {
                let (s, d) = (a.iter().next().copied().unwrap_or_default(), d as i64);
                Tensor::from_vec(
                    &[n],
                    (0..n as i64)
                        .map(|i| s.wrapping_add(i.wrapping_mul(d)))
                        .collect(),
                )?
            }
            t => Tensor::from_f64_fn(&TensorType::new(t.dtype(), [n]), |i| s + i as f64 * d),
        };
        Ok(vec![out])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
