//! The graph dialect's ops.
//!
//! Each op is a typed struct in a family file, implementing [`OpDef`]: its names, its
//! attributes (to and from the neutral [`Attrs`] form used by the text format and the ONNX
//! importer), its shape rule and its reference semantics. The `ops!` table below is the one
//! place that lists them; everything that needs a per-op match is generated from it.
//!
//! Canonical forms: ops take the *latest* ONNX opset's operand layout (Clip bounds, Reshape
//! shapes, Slice ranges, Squeeze axes, Pad amounts, Resize scales are operands, not
//! attributes). The importer rewrites older opsets into this form, so nothing after import
//! needs to know which opset a model came from.

use kiln_core::{AttrReader, Attrs, Error, ErrorKind, Result, Tensor, TensorType};

pub mod activation;
pub mod binary;
pub mod channel_layout;
pub mod constant;
pub mod conv;
pub mod eltwise_sum;
pub mod global_pool;
pub mod matmul;
pub mod pool;
pub mod spatial;
pub mod unary;
pub mod util;
// conv-family modules
pub mod norm;
pub mod reduce;
pub mod resize;
pub mod softmax;
// norm-family modules
pub mod gather;
pub mod layout;
pub mod pad;
pub mod shape;
pub mod space;
// shape-family modules

pub use activation::Activation;
pub use binary::{Binary, BinaryKind, PRelu, Where};
pub use channel_layout::Layout;
pub use constant::{Const, ConstSource, ConstantOfShape};
pub use conv::{Conv, ConvTranspose};
pub use eltwise_sum::EltwiseSum;
pub use global_pool::{GlobalPool, GlobalPoolKind};
pub use matmul::{Gemm, MatMul};
pub use pool::{AveragePool, LpPool, MaxPool};
pub use spatial::{AutoPad, Window};
pub use unary::{Cast, CastLike, Clip, Gelu, HardSigmoid, LeakyRelu, Unary, UnaryKind};
// conv-family exports
pub use norm::{BatchNormalization, InstanceNormalization, LayerNormalization, Lrn};
pub use reduce::{ArgReduce, Reduce, ReduceKind};
pub use resize::{AspectPolicy, CoordMode, NearestMode, Resize, ResizeMode};
pub use softmax::{Softmax, SoftmaxKind};
// norm-family exports
pub use gather::{Gather, GatherElements};
pub use layout::{Concat, Slice, Split, Tile, Transpose};
pub use pad::{Pad, PadMode};
pub use shape::{Expand, Flatten, Range, Reshape, Shape, Size, Squeeze, Unsqueeze};
pub use space::{BlockMode, DepthToSpace, SpaceToDepth};
// shape-family exports

/// What shape inference knows about one operand: its type, and its value when it is a
/// constant (or was computed from constants), which ops like Reshape need.
#[derive(Debug, Clone, Copy)]
pub struct InferInput<'a> {
    pub ty: &'a TensorType,
    pub value: Option<&'a Tensor>,
}

/// The operands seen by a shape rule, with helpers that produce precise errors.
#[derive(Debug, Clone, Copy)]
pub struct InferInputs<'a> {
    pub ins: &'a [Option<InferInput<'a>>],
    /// How many results the node has (Split, LayerNormalization and friends vary).
    pub n_outputs: usize,
}

impl<'a> InferInputs<'a> {
    pub fn len(&self) -> usize {
        self.ins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ins.is_empty()
    }

    pub fn opt(&self, i: usize) -> Option<InferInput<'a>> {
        self.ins.get(i).copied().flatten()
    }

    /// A required operand's type.
    pub fn ty(&self, i: usize) -> Result<&'a TensorType> {
        self.opt(i).map(|x| x.ty).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidModel,
                format!("missing required operand {i}"),
            )
        })
    }

    /// The constant value of operand `i` (absent operand → `None`; present but not
    /// constant → an error, because kiln needs static shapes).
    pub fn const_value(&self, i: usize, what: &str) -> Result<Option<&'a Tensor>> {
        match self.opt(i) {
            None => Ok(None),
            Some(InferInput { value: Some(v), .. }) => Ok(Some(v)),
            Some(_) => Err(Error::new(
                ErrorKind::Unsupported,
                format!("operand {i} ({what}) must be a constant: kiln compiles static shapes"),
            )),
        }
    }

    /// Operand `i` as a list of i64 if present and constant.
    pub fn const_ints(&self, i: usize, what: &str) -> Result<Option<Vec<i64>>> {
        self.const_value(i, what)?
            .map(|t| t.to_i64_vec())
            .transpose()
    }
}

/// What every op provides.
pub trait OpDef: Sized {
    /// Every text/ONNX-derived name this struct implements (a kind enum may cover several).
    fn names() -> &'static [&'static str];
    /// The name of this instance, as printed after `graph.`.
    fn name(&self) -> &'static str;
    /// Builds the op from attributes; `name` is one of [`OpDef::names`].
    fn from_attrs(name: &str, r: &mut AttrReader) -> Result<Self>;
    /// The attributes that [`OpDef::from_attrs`] reads back to an equal op.
    fn attrs(&self) -> Attrs;
    /// The shape rule: result types from operand types (and constant operand values).
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>>;
    /// Reference semantics, the oracle for every lower level.
    fn eval(&self, ins: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>>;
    /// Arithmetic work in floating-point (or integer) operations, for `kiln info`. The
    /// default counts one operation per result element; compute ops count 2 per MAC and
    /// data-movement ops count none.
    fn flops(&self, _ins: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        outs.iter().map(|t| t.numel() as u64).sum()
    }
    /// Operands that describe shapes, sizes, axes or ranges rather than data (a Reshape's
    /// shape, a Resize's scales): kiln compiles static shapes, so they must be known at
    /// compile time, and they are never quantised (PPQ calls them SOI inputs).
    fn shape_operands(&self) -> &'static [usize] {
        &[]
    }
    /// Results that follow from operand *types* alone (Shape, Size), so shape inference can
    /// know them without the operand's data. `None` for every other op.
    fn value_from_types(&self, _ins: InferInputs) -> Option<Vec<Tensor>> {
        None
    }
}

macro_rules! ops {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// A graph-dialect op (see the module docs).
        #[derive(Debug, Clone, PartialEq)]
        pub enum Op {
            $($variant($ty)),*
        }

        impl Op {
            pub fn name(&self) -> &'static str {
                match self { $(Op::$variant(o) => o.name()),* }
            }

            pub fn attrs(&self) -> Attrs {
                match self { $(Op::$variant(o) => o.attrs()),* }
            }

            pub fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
                match self { $(Op::$variant(o) => o.infer(ins)),* }
            }

            pub fn eval(&self, ins: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
                match self { $(Op::$variant(o) => o.eval(ins, n_outputs)),* }
            }

            pub fn flops(&self, ins: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
                match self { $(Op::$variant(o) => o.flops(ins, outs)),* }
            }

            pub fn shape_operands(&self) -> &'static [usize] {
                match self { $(Op::$variant(o) => o.shape_operands()),* }
            }

            pub fn value_from_types(&self, ins: InferInputs) -> Option<Vec<Tensor>> {
                match self { $(Op::$variant(o) => o.value_from_types(ins)),* }
            }

            /// Builds an op from its name and attributes; unknown attributes are errors.
            pub fn from_attrs(name: &str, attrs: Attrs) -> Result<Op> {
                $(
                    if <$ty as OpDef>::names().contains(&name) {
                        let mut r = AttrReader::new(attrs);
                        let op = <$ty as OpDef>::from_attrs(name, &mut r)?;
                        r.finish()?;
                        return Ok(Op::$variant(op));
                    }
                )*
                Err(Error::new(ErrorKind::UnsupportedOp, format!("unknown op 'graph.{name}'")))
            }

            /// Every op name the dialect knows.
            pub fn all_names() -> Vec<&'static str> {
                let mut v = Vec::new();
                $( v.extend_from_slice(<$ty as OpDef>::names()); )*
                v
            }
        }
    };
}

ops! {
    Const(Const),
    ConstantOfShape(ConstantOfShape),
    Unary(Unary),
    LeakyRelu(LeakyRelu),
    HardSigmoid(HardSigmoid),
    Gelu(Gelu),
    Clip(Clip),
    Cast(Cast),
    CastLike(CastLike),
    Binary(Binary),
    PRelu(PRelu),
    Where(Where),
    EltwiseSum(EltwiseSum),
    Conv(Conv),
    ConvTranspose(ConvTranspose),
    Gemm(Gemm),
    MatMul(MatMul),
    MaxPool(MaxPool),
    AveragePool(AveragePool),
    GlobalPool(GlobalPool),
    LpPool(LpPool),
    // conv-family variants
    BatchNormalization(BatchNormalization),
    InstanceNormalization(InstanceNormalization),
    LayerNormalization(LayerNormalization),
    Lrn(Lrn),
    Softmax(Softmax),
    Reduce(Reduce),
    ArgReduce(ArgReduce),
    Resize(Resize),
    // norm-family variants
    Reshape(Reshape),
    Flatten(Flatten),
    Squeeze(Squeeze),
    Unsqueeze(Unsqueeze),
    Shape(Shape),
    Size(Size),
    Expand(Expand),
    Range(Range),
    Transpose(Transpose),
    Concat(Concat),
    Split(Split),
    Slice(Slice),
    Tile(Tile),
    Gather(Gather),
    GatherElements(GatherElements),
    Pad(Pad),
    DepthToSpace(DepthToSpace),
    SpaceToDepth(SpaceToDepth),
    // shape-family variants
}
