//! Constant and runtime tensors: one ndarray per element type.
//!
//! An enum rather than a generic keeps graphs, attributes and the interpreter free of type
//! parameters; the `dispatch!` macros give generic code back where an op works for any type.

use crate::{DType, Error, ErrorKind, Result, TensorType};
use ndarray::{ArrayD, IxDyn};

/// A dense tensor of any supported element type.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    I8(ArrayD<i8>),
    U8(ArrayD<u8>),
    I16(ArrayD<i16>),
    U16(ArrayD<u16>),
    I32(ArrayD<i32>),
    U32(ArrayD<u32>),
    I64(ArrayD<i64>),
    U64(ArrayD<u64>),
    Bool(ArrayD<bool>),
}

/// Runs `$body` with `$a` bound to the inner array, whatever the element type.
#[macro_export]
macro_rules! dispatch {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $body,
            $crate::Tensor::F64($a) => $body,
            $crate::Tensor::I8($a) => $body,
            $crate::Tensor::U8($a) => $body,
            $crate::Tensor::I16($a) => $body,
            $crate::Tensor::U16($a) => $body,
            $crate::Tensor::I32($a) => $body,
            $crate::Tensor::U32($a) => $body,
            $crate::Tensor::I64($a) => $body,
            $crate::Tensor::U64($a) => $body,
            $crate::Tensor::Bool($a) => $body,
        }
    };
}

/// Like `dispatch!`, but the body produces an array of the same element type, which is
/// wrapped back into the same variant (for layout ops: transpose, slice, concat, ...).
#[macro_export]
macro_rules! map_same {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $crate::Tensor::F32($body),
            $crate::Tensor::F64($a) => $crate::Tensor::F64($body),
            $crate::Tensor::I8($a) => $crate::Tensor::I8($body),
            $crate::Tensor::U8($a) => $crate::Tensor::U8($body),
            $crate::Tensor::I16($a) => $crate::Tensor::I16($body),
            $crate::Tensor::U16($a) => $crate::Tensor::U16($body),
            $crate::Tensor::I32($a) => $crate::Tensor::I32($body),
            $crate::Tensor::U32($a) => $crate::Tensor::U32($body),
            $crate::Tensor::I64($a) => $crate::Tensor::I64($body),
            $crate::Tensor::U64($a) => $crate::Tensor::U64($body),
            $crate::Tensor::Bool($a) => $crate::Tensor::Bool($body),
        }
    };
}

/// Like `map_same!` for the numeric types only (no bool); bool yields a type error.
#[macro_export]
macro_rules! map_numeric {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => Ok($crate::Tensor::F32($body)),
            $crate::Tensor::F64($a) => Ok($crate::Tensor::F64($body)),
            $crate::Tensor::I8($a) => Ok($crate::Tensor::I8($body)),
            $crate::Tensor::U8($a) => Ok($crate::Tensor::U8($body)),
            $crate::Tensor::I16($a) => Ok($crate::Tensor::I16($body)),
            $crate::Tensor::U16($a) => Ok($crate::Tensor::U16($body)),
            $crate::Tensor::I32($a) => Ok($crate::Tensor::I32($body)),
            $crate::Tensor::U32($a) => Ok($crate::Tensor::U32($body)),
            $crate::Tensor::I64($a) => Ok($crate::Tensor::I64($body)),
            $crate::Tensor::U64($a) => Ok($crate::Tensor::U64($body)),
            $crate::Tensor::Bool(_) => {
                Err($crate::err!(Type, "operation not defined for bool tensors"))
            }
        }
    };
}

/// Element types that can live in a [`Tensor`]; lets generic code build and unwrap tensors.
pub trait Element: Copy + Default + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    const DTYPE: DType;
    fn wrap(a: ArrayD<Self>) -> Tensor;
    fn unwrap(t: &Tensor) -> Option<&ArrayD<Self>>;
    /// Lossy conversion used by Cast and by index handling; follows Rust `as` semantics
    /// (saturating float → int, NaN → 0), which matches numpy for in-range values.
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

macro_rules! element {
    ($t:ty, $v:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$v;
            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$v(a)
            }
            fn unwrap(t: &Tensor) -> Option<&ArrayD<Self>> {
                match t {
                    Tensor::$v(a) => Some(a),
                    _ => None,
                }
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    };
}
element!(f32, F32);
element!(f64, F64);
element!(i8, I8);
element!(u8, U8);
element!(i16, I16);
element!(u16, U16);
element!(i32, I32);
element!(u32, U32);
element!(i64, I64);
element!(u64, U64);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn wrap(a: ArrayD<Self>) -> Tensor {
        Tensor::Bool(a)
    }
    fn unwrap(t: &Tensor) -> Option<&ArrayD<Self>> {
        match t {
            Tensor::Bool(a) => Some(a),
            _ => None,
        }
    }
    fn to_f64(self) -> f64 {
        self as u8 as f64
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
}

impl Tensor {
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
            Tensor::I8(_) => DType::I8,
            Tensor::U8(_) => DType::U8,
            Tensor::I16(_) => DType::I16,
            Tensor::U16(_) => DType::U16,
            Tensor::I32(_) => DType::I32,
            Tensor::U32(_) => DType::U32,
            Tensor::I64(_) => DType::I64,
            Tensor::U64(_) => DType::U64,
            Tensor::Bool(_) => DType::Bool,
        }
    }

    pub fn shape(&self) -> &[usize] {
        dispatch!(self, a => a.shape())
    }

    pub fn len(&self) -> usize {
        dispatch!(self, a => a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), self.shape())
    }

    /// A tensor of zeros (false for bool) of the given type.
    pub fn zeros(ty: &TensorType) -> Tensor {
        Tensor::from_f64_fn(ty, |_| 0.0)
    }

    /// Builds a tensor of `ty` whose i-th element (row-major) is `f(i)` converted to the dtype.
    pub fn from_f64_fn(ty: &TensorType, mut f: impl FnMut(usize) -> f64) -> Tensor {
        fn build<T: Element>(shape: &[usize], f: &mut dyn FnMut(usize) -> f64) -> Tensor {
            let n: usize = shape.iter().product();
            let v: Vec<T> = (0..n).map(|i| T::from_f64(f(i))).collect();
            T::wrap(ArrayD::from_shape_vec(IxDyn(shape), v).expect("length matches shape"))
        }
        let s = &ty.shape;
        match ty.dtype {
            DType::F32 => build::<f32>(s, &mut f),
            DType::F64 => build::<f64>(s, &mut f),
            DType::I8 => build::<i8>(s, &mut f),
            DType::U8 => build::<u8>(s, &mut f),
            DType::I16 => build::<i16>(s, &mut f),
            DType::U16 => build::<u16>(s, &mut f),
            DType::I32 => build::<i32>(s, &mut f),
            DType::U32 => build::<u32>(s, &mut f),
            DType::I64 => build::<i64>(s, &mut f),
            DType::U64 => build::<u64>(s, &mut f),
            DType::Bool => build::<bool>(s, &mut f),
        }
    }

    /// Builds a tensor from a flat row-major vector.
    pub fn from_vec<T: Element>(shape: &[usize], data: Vec<T>) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::new(
                ErrorKind::InvalidModel,
                format!("{} elements do not fill shape {:?}", data.len(), shape),
            ));
        }
        Ok(T::wrap(
            ArrayD::from_shape_vec(IxDyn(shape), data).expect("checked"),
        ))
    }

    pub fn scalar<T: Element>(v: T) -> Tensor {
        T::wrap(ArrayD::from_elem(IxDyn(&[]), v))
    }

    /// Typed view, or a type error naming the expected and actual element types.
    pub fn as_array<T: Element>(&self) -> Result<&ArrayD<T>> {
        T::unwrap(self).ok_or_else(|| {
            Error::new(
                ErrorKind::Type,
                format!("expected a {} tensor, got {}", T::DTYPE, self.dtype()),
            )
        })
    }

    pub fn as_f32(&self) -> Result<&ArrayD<f32>> {
        self.as_array::<f32>()
    }

    /// Elements as f64 in row-major order (for printing, comparisons and casts).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        dispatch!(self, a => a.iter().map(|v| v.to_f64()).collect())
    }

    /// Integer contents as i64, for shape-like inputs (shapes, axes, indices, pads).
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        match self {
            Tensor::I64(a) => Ok(a.iter().copied().collect()),
            Tensor::I32(a) => Ok(a.iter().map(|&v| v as i64).collect()),
            Tensor::I16(a) => Ok(a.iter().map(|&v| v as i64).collect()),
            Tensor::I8(a) => Ok(a.iter().map(|&v| v as i64).collect()),
            Tensor::U8(a) => Ok(a.iter().map(|&v| v as i64).collect()),
            Tensor::U16(a) => Ok(a.iter().map(|&v| v as i64).collect()),
            Tensor::U32(a) => Ok(a.iter().map(|&v| v as i64).collect()),
            Tensor::U64(a) => Ok(a.iter().map(|&v| v as i64).collect()),
            other => Err(Error::new(
                ErrorKind::Type,
                format!("expected an integer tensor, got {}", other.dtype()),
            )),
        }
    }

    /// Converts to another element type with ONNX Cast semantics for the supported types.
    pub fn cast(&self, to: DType) -> Tensor {
        if self.dtype() == to {
            return self.clone();
        }
        fn conv<S: Element, D: Element>(a: &ArrayD<S>) -> Tensor {
            D::wrap(a.mapv(|v| D::from_f64(v.to_f64())))
        }
        macro_rules! to_dst {
            ($a:expr) => {
                match to {
                    DType::F32 => conv::<_, f32>($a),
                    DType::F64 => conv::<_, f64>($a),
                    DType::I8 => conv::<_, i8>($a),
                    DType::U8 => conv::<_, u8>($a),
                    DType::I16 => conv::<_, i16>($a),
                    DType::U16 => conv::<_, u16>($a),
                    DType::I32 => conv::<_, i32>($a),
                    DType::U32 => conv::<_, u32>($a),
                    DType::I64 => conv::<_, i64>($a),
                    DType::U64 => conv::<_, u64>($a),
                    DType::Bool => conv::<_, bool>($a),
                }
            };
        }
        dispatch!(self, a => to_dst!(a))
    }

    /// Reinterprets the shape (same element count, row-major order).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != self.len() {
            return Err(Error::new(
                ErrorKind::Shape,
                format!(
                    "cannot reshape {:?} ({} elements) to {:?}",
                    self.shape(),
                    self.len(),
                    shape
                ),
            ));
        }
        Ok(map_same!(self, a => {
            let v: Vec<_> = a.iter().copied().collect();
            ArrayD::from_shape_vec(IxDyn(shape), v).expect("checked")
        }))
    }

    /// True when every element equals the first (used to print `splat(v)`).
    pub fn is_splat(&self) -> bool {
        dispatch!(self, a => {
            let mut it = a.iter();
            match it.next() {
                Some(first) => it.all(|v| v == first),
                None => false,
            }
        })
    }
}
