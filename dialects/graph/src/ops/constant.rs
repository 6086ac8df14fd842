//! Constants: `const` (values known at compile time) and `constant_of_shape`.

use super::util::arg;
use super::{InferInputs, OpDef};
use kiln_core::{AttrReader, Attrs, DType, Error, ErrorKind, Result, Rng, Tensor, TensorType};
use std::sync::Arc;

/// How a constant is written in text IR. Kept with the op so that print → parse → print is
/// exact: a `splat(0)` stays a splat even though it could also be printed densely.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstSource {
    /// Computed by a pass or imported: the printer picks the shortest honest form.
    Auto,
    /// `dense<[...]>`, every element inline.
    Dense,
    /// `splat(v)`: every element equal.
    Splat,
    /// `random(seed=S, min=A, max=B)`: seeded uniform data, for tests.
    Random { seed: u64, min: f32, max: f32 },
    /// `resource<"name">`: stored in a weights side file.
    Resource(String),
}

/// A compile-time constant. The value may be absent when text IR referring to a weights
/// file was parsed without that file: it still prints, verifies and has a type, but cannot
/// be evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct Const {
    pub ty: TensorType,
    pub value: Option<Arc<Tensor>>,
    pub source: ConstSource,
}

impl Const {
    pub fn new(t: Tensor) -> Self {
        Const {
            ty: t.ty(),
            value: Some(Arc::new(t)),
            source: ConstSource::Auto,
        }
    }

    /// Seeded uniform data in [min, max), the same on every machine.
    pub fn random(ty: TensorType, seed: u64, min: f32, max: f32) -> Self {
        let mut rng = Rng::new(seed);
        let t = Tensor::from_f64_fn(&ty, |_| rng.uniform(min, max) as f64);
        Const {
            ty,
            value: Some(Arc::new(t)),
            source: ConstSource::Random { seed, min, max },
        }
    }

    pub fn tensor(&self) -> Result<&Tensor> {
        self.value.as_deref().ok_or_else(|| {
            let name = match &self.source {
                ConstSource::Resource(n) => n.as_str(),
                _ => "?",
            };
            Error::new(
                ErrorKind::Input,
                format!("constant data for resource '{name}' was not loaded"),
            )
        })
    }
}

impl OpDef for Const {
    fn names() -> &'static [&'static str] {
        &["const"]
    }
    fn name(&self) -> &'static str {
        "const"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        let t = r
            .opt_tensor("value")?
            .ok_or_else(|| Error::new(ErrorKind::Attribute, "const needs a 'value' tensor"))?;
        Ok(Const::new(t))
    }
    fn attrs(&self) -> Attrs {
        // The printer writes constants in their own syntax; this form serves generic tools.
        let mut a = Attrs::new();
        if let Some(v) = &self.value {
            a.set("value", kiln_core::Attr::Tensor((**v).clone()));
        }
        a
    }
    fn infer(&self, _: InferInputs) -> Result<Vec<TensorType>> {
        Ok(vec![self.ty.clone()])
    }
    fn eval(&self, _: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        Ok(vec![self.tensor()?.clone()])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

/// `constant_of_shape(shape) {value}`: a tensor of the given shape filled with one value.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstantOfShape {
    /// One-element tensor giving the fill value and dtype (ONNX default: f32 zero).
    pub value: Option<Tensor>,
}

impl ConstantOfShape {
    fn fill(&self) -> Result<(DType, f64)> {
        match &self.value {
            None => Ok((DType::F32, 0.0)),
            Some(t) if t.len() == 1 => Ok((t.dtype(), t.to_f64_vec()[0])),
            Some(t) => Err(Error::new(
                ErrorKind::Attribute,
                format!("value must have one element, has {}", t.len()),
            )),
        }
    }

    fn shape_of(v: &[i64]) -> Result<Vec<usize>> {
        v.iter()
            .map(|&d| {
                usize::try_from(d)
                    .map_err(|_| Error::new(ErrorKind::Shape, format!("negative dimension {d}")))
            })
            .collect()
    }
}

impl OpDef for ConstantOfShape {
    fn shape_operands(&self) -> &'static [usize] {
        &[0]
    }
    fn names() -> &'static [&'static str] {
        &["constant_of_shape"]
    }
    fn name(&self) -> &'static str {
        "constant_of_shape"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(ConstantOfShape {
            value: r.opt_tensor("value")?,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().opt_tensor("value", &self.value)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let shape = ins.const_ints(0, "shape")?.unwrap_or_default();
        Ok(vec![TensorType::new(
            self.fill()?.0,
            Self::shape_of(&shape)?,
        )])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let shape = Self::shape_of(&arg(ins, 0)?.to_i64_vec()?)?;
        let (dtype, v) = self.fill()?;
        Ok(vec![Tensor::from_f64_fn(
            &TensorType::new(dtype, shape),
            |_| v,
        )])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}
