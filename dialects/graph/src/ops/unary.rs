//! Element-wise ops of one tensor operand: activations and math functions, plus Clip and Cast.

use super::util::{arg, opt_arg};
use super::{InferInputs, OpDef};
use kiln_core::{
    AttrReader, Attrs, DType, Error, ErrorKind, Result, Tensor, TensorType, map_numeric,
};
use ndarray::ArrayD;

/// Parameterless element-wise functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryKind {
    Relu,
    Sigmoid,
    Tanh,
    Erf,
    Sqrt,
    Exp,
    Log,
    Neg,
    Abs,
    Reciprocal,
    HardSwish,
    /// `x · sigmoid(x)` (SiLU); ONNX has no such op, `graph.fuse-swish` forms it.
    Swish,
    Identity,
    Floor,
    Ceil,
    Round,
    Sign,
    Softplus,
    Softsign,
    Sin,
    Cos,
    Not,
}

const UNARY: &[(UnaryKind, &str)] = &[
    (UnaryKind::Relu, "relu"),
    (UnaryKind::Sigmoid, "sigmoid"),
    (UnaryKind::Tanh, "tanh"),
    (UnaryKind::Erf, "erf"),
    (UnaryKind::Sqrt, "sqrt"),
    (UnaryKind::Exp, "exp"),
    (UnaryKind::Log, "log"),
    (UnaryKind::Neg, "neg"),
    (UnaryKind::Abs, "abs"),
    (UnaryKind::Reciprocal, "reciprocal"),
    (UnaryKind::HardSwish, "hard_swish"),
    (UnaryKind::Swish, "swish"),
    (UnaryKind::Identity, "identity"),
    (UnaryKind::Floor, "floor"),
    (UnaryKind::Ceil, "ceil"),
    (UnaryKind::Round, "round"),
    (UnaryKind::Sign, "sign"),
    (UnaryKind::Softplus, "softplus"),
    (UnaryKind::Softsign, "softsign"),
    (UnaryKind::Sin, "sin"),
    (UnaryKind::Cos, "cos"),
    (UnaryKind::Not, "not"),
];
const UNARY_NAMES: &[&str] = &[
    "relu",
    "sigmoid",
    "tanh",
    "erf",
    "sqrt",
    "exp",
    "log",
    "neg",
    "abs",
    "reciprocal",
    "hard_swish",
    "swish",
    "identity",
    "floor",
    "ceil",
    "round",
    "sign",
    "softplus",
    "softsign",
    "sin",
    "cos",
    "not",
];

impl UnaryKind {
    pub fn name(self) -> &'static str {
        UNARY
            .iter()
            .find(|(k, _)| *k == self)
            .expect("every kind is in the table")
            .1
    }

    /// The scalar function in f64; f32 results are rounded from it, which keeps every
    /// transcendental within half an ulp of the exact value.
    pub fn apply(self, x: f64) -> f64 {
        match self {
            UnaryKind::Relu => x.max(0.0),
            UnaryKind::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryKind::Tanh => x.tanh(),
            UnaryKind::Erf => libm::erf(x),
            UnaryKind::Sqrt => x.sqrt(),
            UnaryKind::Exp => x.exp(),
            UnaryKind::Log => x.ln(),
            UnaryKind::Neg => -x,
            UnaryKind::Abs => x.abs(),
            UnaryKind::Reciprocal => 1.0 / x,
            UnaryKind::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            UnaryKind::Swish => x / (1.0 + (-x).exp()),
            UnaryKind::Identity => x,
            UnaryKind::Floor => x.floor(),
            UnaryKind::Ceil => x.ceil(),
            UnaryKind::Round => x.round_ties_even(),
            UnaryKind::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x
                }
            }
            UnaryKind::Softplus => {
                // log(1 + e^x) without overflow for large x.
                if x > 30.0 { x } else { x.exp().ln_1p() }
            }
            UnaryKind::Softsign => x / (1.0 + x.abs()),
            UnaryKind::Sin => x.sin(),
            UnaryKind::Cos => x.cos(),
            UnaryKind::Not => (x == 0.0) as u8 as f64,
        }
    }

    /// Ops that are exact on integers and so are defined for integer tensors too.
    fn integer_ok(self) -> bool {
        matches!(
            self,
            UnaryKind::Relu
                | UnaryKind::Neg
                | UnaryKind::Abs
                | UnaryKind::Identity
                | UnaryKind::Sign
        )
    }
}

/// A parameterless element-wise op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unary {
    pub kind: UnaryKind,
}

fn map_f<T: kiln_core::Element>(a: &ArrayD<T>, f: impl Fn(f64) -> f64) -> ArrayD<T> {
    a.mapv(|v| T::from_f64(f(v.to_f64())))
}

/// Applies `f` element-wise for float tensors (and integer ones when `int_ok`).
fn map_float(t: &Tensor, int_ok: bool, what: &str, f: impl Fn(f64) -> f64) -> Result<Tensor> {
    match t {
        Tensor::F32(a) => Ok(Tensor::F32(a.mapv(|v| f(v as f64) as f32))),
        Tensor::F64(a) => Ok(Tensor::F64(a.mapv(&f))),
        Tensor::Bool(_) => Err(Error::new(
            ErrorKind::Type,
            format!("{what} is not defined for bool"),
        )),
        t if int_ok => map_numeric!(t, a => map_f(a, &f)),
        t => Err(Error::new(
            ErrorKind::Type,
            format!("{what} needs a float tensor, got {}", t.dtype()),
        )),
    }
}

impl OpDef for Unary {
    fn names() -> &'static [&'static str] {
        UNARY_NAMES
    }
    fn name(&self) -> &'static str {
        self.kind.name()
    }
    fn from_attrs(name: &str, _: &mut AttrReader) -> Result<Self> {
        let kind = UNARY
            .iter()
            .find(|(_, n)| *n == name)
            .expect("name comes from names()")
            .0;
        Ok(Unary { kind })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let t = ins.ty(0)?;
        match self.kind {
            UnaryKind::Not if t.dtype != DType::Bool => Err(Error::new(
                ErrorKind::Type,
                format!("not needs a bool tensor, got {}", t.dtype),
            )),
            UnaryKind::Identity | UnaryKind::Not => Ok(vec![t.clone()]),
            k if !(t.dtype.is_float() || k.integer_ok() && t.dtype.is_integer()) => {
                Err(Error::new(
                    ErrorKind::Type,
                    format!("{} is not defined for {} tensors", k.name(), t.dtype),
                ))
            }
            _ => Ok(vec![t.clone()]),
        }
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let k = self.kind;
        let out = match (k, x) {
            (UnaryKind::Identity, x) => x.clone(),
            (UnaryKind::Not, Tensor::Bool(a)) => Tensor::Bool(a.mapv(|v| !v)),
            // Relu on f32 is hot in the interpreter; keep it off the f64 path.
            (UnaryKind::Relu, Tensor::F32(a)) => Tensor::F32(a.mapv(|v| v.max(0.0))),
            (UnaryKind::Abs | UnaryKind::Neg, t) if t.dtype().is_integer() => match k {
                UnaryKind::Abs => {
                    map_numeric!(t, a => a.mapv(|v| if v < Default::default() { neg(v) } else { v }))?
                }
                _ => map_numeric!(t, a => a.mapv(neg))?,
            },
            (k, t) => map_float(t, k.integer_ok(), k.name(), |v| k.apply(v))?,
        };
        Ok(vec![out])
    }
    fn flops(&self, _: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        if self.kind == UnaryKind::Identity {
            0
        } else {
            outs[0].numel() as u64
        }
    }
}

/// Integer negation with two's-complement wrap-around (numpy's behaviour), via f64 for
/// generic element types: exact for every integer type kiln has except the extremes of
/// i64/u64, which wrap the same way.
fn neg<T: kiln_core::Element>(v: T) -> T {
    T::from_f64(-v.to_f64())
}

macro_rules! scalar_act {
    ($(#[$doc:meta])* $ty:ident, $name:literal, { $($field:ident : $default:expr),* }, |$s:ident, $x:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub struct $ty { $(pub $field: f32),* }

        impl Default for $ty {
            fn default() -> Self {
                $ty { $($field: $default),* }
            }
        }

        impl $ty {
            pub fn apply(&self, $x: f64) -> f64 {
                let $s = self;
                $body
            }
        }

        impl OpDef for $ty {
            fn names() -> &'static [&'static str] {
                &[$name]
            }
            fn name(&self) -> &'static str {
                $name
            }
            fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
                Ok($ty { $($field: r.float(stringify!($field), $default)?),* })
            }
            fn attrs(&self) -> Attrs {
                Attrs::new()$(.float(stringify!($field), self.$field, $default))*
            }
            fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
                float_only(ins.ty(0)?, $name)
            }
            fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
                Ok(vec![map_float(arg(ins, 0)?, false, $name, |x| self.apply(x))?])
            }
        }
    };
}

fn float_only(t: &TensorType, what: &str) -> Result<Vec<TensorType>> {
    if !t.dtype.is_float() {
        return Err(Error::new(
            ErrorKind::Type,
            format!("{what} needs a float tensor, got {}", t.dtype),
        ));
    }
    Ok(vec![t.clone()])
}

scalar_act!(
    /// `x >= 0 ? x : alpha * x`.
    LeakyRelu, "leaky_relu", { alpha: 0.01 },
    |s, x| if x >= 0.0 { x } else { s.alpha as f64 * x }
);
scalar_act!(
    /// `clamp(alpha * x + beta, 0, 1)`.
    HardSigmoid, "hard_sigmoid", { alpha: 0.2, beta: 0.5 },
    |s, x| (s.alpha as f64 * x + s.beta as f64).clamp(0.0, 1.0)
);

/// Gelu, exact (`x/2 · (1 + erf(x/√2))`) or with the tanh approximation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gelu {
    pub tanh_approx: bool,
}

impl Gelu {
    pub fn apply(&self, x: f64) -> f64 {
        if self.tanh_approx {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        } else {
            0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
        }
    }
}

impl OpDef for Gelu {
    fn names() -> &'static [&'static str] {
        &["gelu"]
    }
    fn name(&self) -> &'static str {
        "gelu"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        let tanh_approx = match r.str("approximate", "none")?.as_str() {
            "none" => false,
            "tanh" => true,
            other => {
                return Err(Error::new(
                    ErrorKind::Attribute,
                    format!("unknown approximate '{other}'"),
                ));
            }
        };
        Ok(Gelu { tanh_approx })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().str(
            "approximate",
            if self.tanh_approx { "tanh" } else { "none" },
            "none",
        )
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        float_only(ins.ty(0)?, "gelu")
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        Ok(vec![map_float(arg(ins, 0)?, false, "gelu", |x| {
            self.apply(x)
        })?])
    }
}

/// `clip(x, min?, max?)`: bounds are optional scalar operands (opset ≥ 11 form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clip;

impl OpDef for Clip {
    fn names() -> &'static [&'static str] {
        &["clip"]
    }
    fn name(&self) -> &'static str {
        "clip"
    }
    fn from_attrs(_: &str, _: &mut AttrReader) -> Result<Self> {
        Ok(Clip)
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let t = ins.ty(0)?;
        for i in 1..3 {
            if let Some(b) = ins.opt(i)
                && (b.ty.numel() != 1 || b.ty.dtype != t.dtype)
            {
                return Err(Error::new(
                    ErrorKind::Type,
                    format!(
                        "clip bound {i} must be a one-element {} tensor, got {}",
                        t.dtype, b.ty
                    ),
                ));
            }
        }
        Ok(vec![t.clone()])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let lo = opt_arg(ins, 1)
            .map(|t| t.to_f64_vec()[0])
            .unwrap_or(f64::NEG_INFINITY);
        let hi = opt_arg(ins, 2)
            .map(|t| t.to_f64_vec()[0])
            .unwrap_or(f64::INFINITY);
        // Written as max-then-min so that min > max yields max, as ONNX specifies.
        let f = |v: f64| v.max(lo).min(hi);
        let out = match x {
            Tensor::F32(a) => Tensor::F32(a.mapv(|v| (v as f64).max(lo).min(hi) as f32)),
            t => map_numeric!(t, a => map_f(a, f))?,
        };
        Ok(vec![out])
    }
}

/// `cast {to}`: element type conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cast {
    pub to: DType,
}

impl OpDef for Cast {
    fn names() -> &'static [&'static str] {
        &["cast"]
    }
    fn name(&self) -> &'static str {
        "cast"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        let to = r
            .opt_str("to")?
            .ok_or_else(|| Error::new(ErrorKind::Attribute, "missing attribute 'to'"))?;
        let to = DType::from_name(&to).ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                format!("cast to unsupported element type '{to}'"),
            )
        })?;
        Ok(Cast { to })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().str("to", self.to.name(), "")
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        Ok(vec![TensorType::new(self.to, ins.ty(0)?.shape.clone())])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        Ok(vec![arg(ins, 0)?.cast(self.to)])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

/// `cast_like(x, target)`: converts `x` to `target`'s element type (ONNX CastLike). Kept as
/// its own op because the target type is only known once shapes are inferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CastLike;

impl OpDef for CastLike {
    fn names() -> &'static [&'static str] {
        &["cast_like"]
    }
    fn name(&self) -> &'static str {
        "cast_like"
    }
    fn from_attrs(_: &str, _: &mut AttrReader) -> Result<Self> {
        Ok(CastLike)
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        Ok(vec![TensorType::new(
            ins.ty(1)?.dtype,
            ins.ty(0)?.shape.clone(),
        )])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        Ok(vec![arg(ins, 0)?.cast(arg(ins, 1)?.dtype())])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}
