//! Graph dialect → loop dialect: each graph op becomes one or more kernels.
//!
//! A lowering sees one node (its op, operand types, which operands are constants) and returns
//! kernels plus, for each kernel buffer, where the runtime finds it: an operand, a result, new
//! constant data (weights packed at compile time into the micro-kernel's layout), or scratch.
//! Ops with no lowering yet return `None` and run through the reference implementation (see
//! [`crate::program`]); `kiln info` and the compile report count them so that is never silent.

pub mod act;
pub mod conv;
pub mod copy;
pub mod depthwise;
pub mod elementwise;
pub mod gemm;
pub mod grouped_nhwc;
pub mod matmul;
pub mod pool;
pub mod reduce;

use crate::ir::Kernel;
use kiln_core::{Result, Tensor, TensorType};
use kiln_graph::ops::Op;
use std::sync::Arc;

/// Where a kernel buffer comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// Operand `k` of the node.
    Operand(usize),
    /// Result `k` of the node.
    Result(usize),
    /// Constant data created at compile time (packed weights, folded bias). Shared: the
    /// kernels of one node that read the same data (a GEMM's main tiles and its row or
    /// column tail) hold one copy, and the program stores it once.
    Const(Arc<[f32]>),
    /// Constant bytes (int8 weights packed for a kernel), shared as [`Arg::Const`] is.
    ConstBytes(Arc<[u8]>),
    /// Temporary storage of this many bytes, valid for the node's kernels only.
    Scratch(usize),
    /// Temporary storage at a byte offset (a multiple of 64) into the node's scratch.
    ScratchAt(usize, usize),
}

/// One kernel and its buffers, in the kernel's buffer order.
#[derive(Debug, Clone)]
pub struct Lowered {
    pub kernel: Kernel,
    pub args: Vec<Arg>,
}

/// What a lowering knows about the node it lowers.
pub struct NodeCx<'a> {
    /// Used to name kernels (`conv_3`).
    pub name: String,
    pub ins: Vec<Option<&'a TensorType>>,
    /// Operand values known at compile time.
    pub consts: Vec<Option<&'a Tensor>>,
    pub outs: Vec<TensorType>,
}

impl NodeCx<'_> {
    pub fn in_shape(&self, k: usize) -> Option<&[usize]> {
        self.ins
            .get(k)
            .copied()
            .flatten()
            .map(|t| t.shape.as_slice())
    }

    pub fn out_shape(&self, k: usize) -> &[usize] {
        &self.outs[k].shape
    }

    /// Constant operand `k` as f32 data.
    pub fn const_f32(&self, k: usize) -> Option<Vec<f32>> {
        let t = self.consts.get(k).copied().flatten()?;
        t.as_f32().ok().map(|a| a.iter().copied().collect())
    }
}

/// Lowers one op; `Ok(None)` means "no kernel: use the reference implementation".
pub fn lower_op(op: &Op, cx: &NodeCx) -> Result<Option<Vec<Lowered>>> {
    // The kernels are f32 kernels: integer and boolean data (shape arithmetic, masks) takes
    // the reference path. Shape operands (a reduction's i64 axes) are compile-time constants,
    // not data, so they do not count.
    let shape_ops = op.shape_operands();
    let data_f32 = cx
        .ins
        .iter()
        .enumerate()
        .filter(|(k, _)| !shape_ops.contains(k))
        .filter_map(|(_, t)| *t)
        .chain(cx.outs.iter())
        .all(|t| t.dtype == kiln_core::DType::F32);
    if !data_f32 {
        return Ok(None);
    }
    if let Some(l) = elementwise::lower(op, cx)? {
        return Ok(Some(l));
    }
    if let Some(l) = matmul::lower(op, cx)? {
        return Ok(Some(l));
    }
    if let Some(l) = conv::lower(op, cx)? {
        return Ok(Some(l));
    }
    if let Some(l) = pool::lower(op, cx)? {
        return Ok(Some(l));
    }
    if let Some(l) = reduce::lower(op, cx)? {
        return Ok(Some(l));
    }
    Ok(copy::lower(op, cx))
}
