//! Element-wise ops of two (or three) operands with numpy broadcasting.

use super::util::{arg, broadcast_shapes};
use super::{InferInputs, OpDef};
use kiln_core::{AttrReader, Attrs, DType, Element, Error, ErrorKind, Result, Tensor, TensorType};
use ndarray::{ArrayD, IxDyn, Zip};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    Mod,
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

const BINARY: &[(BinaryKind, &str)] = &[
    (BinaryKind::Add, "add"),
    (BinaryKind::Sub, "sub"),
    (BinaryKind::Mul, "mul"),
    (BinaryKind::Div, "div"),
    (BinaryKind::Pow, "pow"),
    (BinaryKind::Max, "max"),
    (BinaryKind::Min, "min"),
    (BinaryKind::Mod, "mod"),
    (BinaryKind::Equal, "equal"),
    (BinaryKind::Less, "less"),
    (BinaryKind::Greater, "greater"),
    (BinaryKind::LessOrEqual, "less_or_equal"),
    (BinaryKind::GreaterOrEqual, "greater_or_equal"),
    (BinaryKind::And, "and"),
    (BinaryKind::Or, "or"),
    (BinaryKind::Xor, "xor"),
];
const BINARY_NAMES: &[&str] = &[
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "max",
    "min",
    "mod",
    "equal",
    "less",
    "greater",
    "less_or_equal",
    "greater_or_equal",
    "and",
    "or",
    "xor",
];

impl BinaryKind {
    pub fn name(self) -> &'static str {
        BINARY
            .iter()
            .find(|(k, _)| *k == self)
            .expect("every kind is in the table")
            .1
    }

    fn is_compare(self) -> bool {
        use BinaryKind::*;
        matches!(self, Equal | Less | Greater | LessOrEqual | GreaterOrEqual)
    }

    fn is_logic(self) -> bool {
        matches!(self, BinaryKind::And | BinaryKind::Or | BinaryKind::Xor)
    }
}

/// A broadcasting binary op. `pow` allows an exponent of another numeric type (ONNX Pow-12);
/// `mod` with `fmod=1` is C fmod, otherwise Python's sign-of-divisor modulo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binary {
    pub kind: BinaryKind,
    pub fmod: bool,
}

impl Binary {
    pub fn new(kind: BinaryKind) -> Self {
        Binary { kind, fmod: false }
    }
}

/// Zips two broadcast operands into a new array, with a contiguous fast path for the
/// common equal-shape case.
pub fn broadcast_map<A: Copy, B: Copy, C>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> C,
) -> Result<ArrayD<C>> {
    let shape = broadcast_shapes(a.shape(), b.shape())?;
    if a.shape() == b.shape()
        && let (Some(x), Some(y)) = (a.as_slice(), b.as_slice())
    {
        let v = x.iter().zip(y).map(|(&p, &q)| f(p, q)).collect();
        return Ok(ArrayD::from_shape_vec(IxDyn(&shape), v).expect("same shape"));
    }
    let av = a
        .broadcast(IxDyn(&shape))
        .expect("checked by broadcast_shapes");
    let bv = b
        .broadcast(IxDyn(&shape))
        .expect("checked by broadcast_shapes");
    Ok(Zip::from(&av).and(&bv).map_collect(|&p, &q| f(p, q)))
}

fn arith<T: Element + PartialOrd>(
    k: BinaryKind,
    fmod: bool,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    int: bool,
) -> Result<Tensor> {
    use BinaryKind::*;
    if int && matches!(k, Div | Mod) && b.iter().any(|v| v.to_f64() == 0.0) {
        return Err(Error::new(ErrorKind::Eval, "integer division by zero"));
    }
    let out = broadcast_map(a, b, |x, y| {
        let (p, q) = (x.to_f64(), y.to_f64());
        match k {
            Add => T::from_f64(p + q),
            Sub => T::from_f64(p - q),
            Mul => T::from_f64(p * q),
            Div if int => T::from_f64((p / q).trunc()),
            Div => T::from_f64(p / q),
            Pow => T::from_f64(p.powf(q)),
            Max => {
                if x >= y || p.is_nan() {
                    x
                } else {
                    y
                }
            }
            Min => {
                if x <= y || p.is_nan() {
                    x
                } else {
                    y
                }
            }
            Mod if fmod => T::from_f64(p % q),
            Mod => {
                let r = p % q;
                T::from_f64(if r != 0.0 && (r < 0.0) != (q < 0.0) {
                    r + q
                } else {
                    r
                })
            }
            _ => unreachable!("comparisons and logic are handled by the caller"),
        }
    })?;
    Ok(T::wrap(out))
}

/// f32 add/sub/mul/div are the interpreter's hottest element-wise paths; computing them in
/// f32 directly is also what every backend does (f64 then rounding differs in rare cases
/// for fused sequences, but a single op rounds identically).
fn arith_f32(k: BinaryKind, a: &ArrayD<f32>, b: &ArrayD<f32>) -> Option<Result<ArrayD<f32>>> {
    use BinaryKind::*;
    Some(match k {
        Add => broadcast_map(a, b, |x, y| x + y),
        Sub => broadcast_map(a, b, |x, y| x - y),
        Mul => broadcast_map(a, b, |x, y| x * y),
        Div => broadcast_map(a, b, |x, y| x / y),
        _ => return None,
    })
}

fn compare<T: Element + PartialOrd>(k: BinaryKind, a: &ArrayD<T>, b: &ArrayD<T>) -> Result<Tensor> {
    use BinaryKind::*;
    Ok(Tensor::Bool(broadcast_map(a, b, |x, y| match k {
        Equal => x == y,
        Less => x < y,
        Greater => x > y,
        LessOrEqual => x <= y,
        GreaterOrEqual => x >= y,
        _ => unreachable!("only comparisons reach here"),
    })?))
}

macro_rules! numeric_pair {
    ($a:expr, $b:expr, |$x:ident, $y:ident, $int:ident| $body:expr) => {
        match ($a, $b) {
            (Tensor::F32($x), Tensor::F32($y)) => {
                let $int = false;
                $body
            }
            (Tensor::F64($x), Tensor::F64($y)) => {
                let $int = false;
                $body
            }
            (Tensor::I8($x), Tensor::I8($y)) => {
                let $int = true;
                $body
            }
            (Tensor::U8($x), Tensor::U8($y)) => {
                let $int = true;
                $body
            }
            (Tensor::I16($x), Tensor::I16($y)) => {
                let $int = true;
                $body
            }
            (Tensor::U16($x), Tensor::U16($y)) => {
                let $int = true;
                $body
            }
            (Tensor::I32($x), Tensor::I32($y)) => {
                let $int = true;
                $body
            }
            (Tensor::U32($x), Tensor::U32($y)) => {
                let $int = true;
                $body
            }
            (Tensor::I64($x), Tensor::I64($y)) => {
                let $int = true;
                $body
            }
            (Tensor::U64($x), Tensor::U64($y)) => {
                let $int = true;
                $body
            }
            (a, b) => Err(Error::new(
                ErrorKind::Type,
                format!(
                    "operand types {} and {} are not supported together",
                    a.dtype(),
                    b.dtype()
                ),
            )),
        }
    };
}

impl OpDef for Binary {
    fn names() -> &'static [&'static str] {
        BINARY_NAMES
    }
    fn name(&self) -> &'static str {
        self.kind.name()
    }
    fn from_attrs(name: &str, r: &mut AttrReader) -> Result<Self> {
        let kind = BINARY
            .iter()
            .find(|(_, n)| *n == name)
            .expect("name comes from names()")
            .0;
        let fmod = if kind == BinaryKind::Mod {
            r.int("fmod", 0)? != 0
        } else {
            false
        };
        Ok(Binary { kind, fmod })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().int("fmod", self.fmod as i64, 0)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let (a, b) = (ins.ty(0)?, ins.ty(1)?);
        let k = self.kind;
        let same_type_needed = k != BinaryKind::Pow;
        if same_type_needed && a.dtype != b.dtype {
            return Err(Error::new(
                ErrorKind::Type,
                format!(
                    "{} operands must have one element type, got {} and {}",
                    k.name(),
                    a.dtype,
                    b.dtype
                ),
            ));
        }
        if k.is_logic() != (a.dtype == DType::Bool) {
            return Err(Error::new(
                ErrorKind::Type,
                format!("{} is not defined for {}", k.name(), a.dtype),
            ));
        }
        let shape = broadcast_shapes(&a.shape, &b.shape)?;
        let dtype = if k.is_compare() || k.is_logic() {
            DType::Bool
        } else {
            a.dtype
        };
        Ok(vec![TensorType::new(dtype, shape)])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let (a, b) = (arg(ins, 0)?, arg(ins, 1)?);
        let k = self.kind;
        let out = if k.is_logic() {
            let (x, y) = (a.as_array::<bool>()?, b.as_array::<bool>()?);
            Tensor::Bool(broadcast_map(x, y, |p, q| match k {
                BinaryKind::And => p && q,
                BinaryKind::Or => p || q,
                _ => p ^ q,
            })?)
        } else if k.is_compare() {
            match (a, b) {
                (Tensor::Bool(x), Tensor::Bool(y)) if k == BinaryKind::Equal => {
                    Tensor::Bool(broadcast_map(x, y, |p, q| p == q)?)
                }
                _ => numeric_pair!(a, b, |x, y, _int| compare(k, x, y))?,
            }
        } else if let (Tensor::F32(x), Tensor::F32(y)) = (a, b) {
            match arith_f32(k, x, y) {
                Some(r) => Tensor::F32(r?),
                None => arith(k, self.fmod, x, y, false)?,
            }
        } else {
            // Pow may mix types: the exponent is converted to the base's type.
            let b = if k == BinaryKind::Pow && a.dtype() != b.dtype() {
                &b.cast(a.dtype())
            } else {
                b
            };
            numeric_pair!(a, b, |x, y, int| arith(k, self.fmod, x, y, int))?
        };
        Ok(vec![out])
    }
}

/// `prelu(x, slope)`: `x < 0 ? slope·x : x`, slope broadcast to x.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PRelu;

impl OpDef for PRelu {
    fn names() -> &'static [&'static str] {
        &["prelu"]
    }
    fn name(&self) -> &'static str {
        "prelu"
    }
    fn from_attrs(_: &str, _: &mut AttrReader) -> Result<Self> {
        Ok(PRelu)
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let (x, s) = (ins.ty(0)?, ins.ty(1)?);
        let shape = broadcast_shapes(&x.shape, &s.shape)?;
        if shape != x.shape {
            return Err(Error::new(
                ErrorKind::Shape,
                format!("slope {} must broadcast to x {}", s, x),
            ));
        }
        if x.dtype != s.dtype {
            return Err(Error::new(
                ErrorKind::Type,
                format!("slope {} and x {} differ in type", s.dtype, x.dtype),
            ));
        }
        Ok(vec![x.clone()])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let (x, s) = (arg(ins, 0)?, arg(ins, 1)?);
        let out = numeric_pair!(x, s, |a, b, _int| Ok(Element::wrap(broadcast_map(
            a,
            b,
            |p, q| {
                if p.to_f64() < 0.0 {
                    Element::from_f64(p.to_f64() * q.to_f64())
                } else {
                    p
                }
            }
        )?)))?;
        Ok(vec![out])
    }
}

/// `where(cond, x, y)`: element-wise select with three-way broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Where;

impl OpDef for Where {
    fn names() -> &'static [&'static str] {
        &["where"]
    }
    fn name(&self) -> &'static str {
        "where"
    }
    fn from_attrs(_: &str, _: &mut AttrReader) -> Result<Self> {
        Ok(Where)
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let (c, x, y) = (ins.ty(0)?, ins.ty(1)?, ins.ty(2)?);
        if c.dtype != DType::Bool {
            return Err(Error::new(
                ErrorKind::Type,
                format!("condition must be bool, got {}", c.dtype),
            ));
        }
        if x.dtype != y.dtype {
            return Err(Error::new(
                ErrorKind::Type,
                format!("branches differ in type: {} vs {}", x.dtype, y.dtype),
            ));
        }
        let shape = broadcast_shapes(&broadcast_shapes(&c.shape, &x.shape)?, &y.shape)?;
        Ok(vec![TensorType::new(x.dtype, shape)])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let c = arg(ins, 0)?.as_array::<bool>()?;
        let (x, y) = (arg(ins, 1)?, arg(ins, 2)?);
        let shape = broadcast_shapes(&broadcast_shapes(c.shape(), x.shape())?, y.shape())?;
        let cv = c.broadcast(IxDyn(&shape)).expect("checked");
        fn sel<T: Element>(
            cv: &ndarray::ArrayViewD<bool>,
            x: &ArrayD<T>,
            y: &ArrayD<T>,
            s: &[usize],
        ) -> Tensor {
            let xv = x.broadcast(IxDyn(s)).expect("checked");
            let yv = y.broadcast(IxDyn(s)).expect("checked");
            T::wrap(
                Zip::from(cv)
                    .and(&xv)
                    .and(&yv)
                    .map_collect(|&c, &p, &q| if c { p } else { q }),
            )
        }
        let out = match (x, y) {
            (Tensor::Bool(p), Tensor::Bool(q)) => sel(&cv, p, q, &shape),
            _ => numeric_pair!(x, y, |p, q, _int| Ok::<_, Error>(sel(&cv, p, q, &shape)))?,
        };
        Ok(vec![out])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}
