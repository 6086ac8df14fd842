//! Memory planning: where every intermediate tensor lives in one arena.
//!
//! The plan is computed over a schedule that the planner chooses and records in
//! [`MemoryPlan::order`] — [`Graph::topo_order`] or, when it needs a smaller arena, the
//! memory-aware order of [`schedule`]; executors must run the plan's order. Step `s` is the
//! `s`-th op of that order, constants included (they take a step but no arena space,
//! because their data is part of the weights).
//!
//! * **Liveness** ([`liveness`]): each intermediate tensor is live from the step of its
//!   producer to the step of its last reader, both inclusive — an op reads its operands
//!   while it writes its results, so they must not overlap unless the op is in-place.
//! * **In-place** ([`in_place_operands`]): an element-wise op (or a view such as a reshape)
//!   may write its result over an operand that dies at that op. The result then *is* the
//!   operand's buffer; chains (`relu → sigmoid → reshape`) share one buffer.
//!   A channels-last LRN, whose result row (one pixel's channels) depends on that row
//!   only, may too: its kernel buffers one row before writing it ([`InPlace::Rows`]).
//! * **Schedule** ([`schedule`]): besides the topological order, a memory-aware order that
//!   finishes a started branch before the next; the plan keeps whichever needs less.
//! * **Arena offsets** ([`plan`]): buffers (in-place groups) are placed greedily by size —
//!   largest first, each at the lowest 64-byte aligned offset that does not collide with an
//!   already placed buffer whose lifetime overlaps (TFLite's / onnxruntime's "greedy by
//!   size"). A second ordering (by the step of greatest pressure, "greedy by breadth") is
//!   tried too and the smaller arena wins.
//! * **Checker** ([`check`]): re-derives liveness on its own and proves that no two
//!   simultaneously live tensors share a byte, in-place pairs being the one allowed overlap.
//!
//! Graph inputs and outputs are *external*: the caller owns their buffers, so they take no
//! arena space and are never in-place targets or sources (writing a result over a graph
//! input would clobber the caller's data; a result that is a graph output must land in the
//! caller's buffer). Constants are weights, likewise outside the arena.

pub mod check;
pub mod liveness;
pub mod plan;
pub mod schedule;
#[cfg(test)]
mod tests;

pub use check::check;
pub use liveness::{Liveness, TensorLife, last_reads};
pub use plan::{Buffer, MemoryPlan, Placement, plan, plan_with_order};
pub use schedule::memory_aware_order;

use crate::ops::{BinaryKind, Op, UnaryKind};

/// Arena offsets are multiples of this (a cache line, and enough for any SIMD load).
pub const ALIGNMENT: usize = 64;

/// The three numbers `kiln info --memory` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStats {
    /// Every intermediate tensor in its own buffer.
    pub naive_bytes: usize,
    /// The planned arena.
    pub arena_bytes: usize,
    /// The most bytes ever live at one step (after in-place sharing): no plan that keeps
    /// each live buffer intact can use less.
    pub lower_bound_bytes: usize,
}

/// How an op may reuse an operand's buffer for its (single) result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InPlace {
    /// Result element `i` depends on operand element `i` (and on other operands only), so
    /// it may be written over an operand of the same shape and element size.
    Elementwise(&'static [usize]),
    /// The result has the operand's bytes, reinterpreted (reshape, flatten, identity):
    /// it needs the same byte size only.
    View,
    // layout: begin
    /// The tensor is a sequence of contiguous rows and result row `r` depends on operand
    /// row `r` only (a channels-last LRN: one pixel's channels). A kernel reads a row into
    /// a scratch buffer of one row before writing it, so it may overwrite an operand of the
    /// same shape and element size, like an element-wise op.
    Rows(&'static [usize]),
    // layout: end
}

/// Operand indices 0..16: element-wise ops with a variable operand count (eltwise_sum)
/// may write over any of them (operands past the list are simply never chosen).
const EVERY_OPERAND: [usize; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// Which operands `op` may overwrite with its result, in order of preference.
///
/// Ops not listed (new ops included) are conservatively never in-place. Layer/instance
/// normalisation and softmax are excluded on purpose: they read a whole row or channel
/// (statistics) before writing any of it.
pub fn in_place_operands(op: &Op) -> Option<InPlace> {
    use InPlace::*;
    Some(match op {
        Op::Unary(u) if u.kind == UnaryKind::Identity => View,
        Op::Unary(_) | Op::LeakyRelu(_) | Op::HardSigmoid(_) | Op::Gelu(_) => Elementwise(&[0]),
        Op::Clip(_) | Op::Cast(_) | Op::CastLike(_) | Op::PRelu(_) => Elementwise(&[0]),
        // Inference-form batch norm is a per-channel affine map of each element.
        Op::BatchNormalization(_) => Elementwise(&[0]),
        Op::Binary(b) => match b.kind {
            BinaryKind::Add
            | BinaryKind::Sub
            | BinaryKind::Mul
            | BinaryKind::Div
            | BinaryKind::Pow
            | BinaryKind::Max
            | BinaryKind::Min
            | BinaryKind::Mod
            | BinaryKind::Equal
            | BinaryKind::Less
            | BinaryKind::Greater
            | BinaryKind::LessOrEqual
            | BinaryKind::GreaterOrEqual
            | BinaryKind::And
            | BinaryKind::Or
            | BinaryKind::Xor => Elementwise(&[0, 1]),
        },
        Op::Where(_) => Elementwise(&[1, 2, 0]),
        // Σ cᵢ·xᵢ reads element i of every operand to write element i.
        Op::EltwiseSum(_) => Elementwise(&EVERY_OPERAND),
        Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) => View,
        // A compute op's fused residual input (operand 3, `ops::activation::RESIDUAL`) is
        // read element by element in the epilogue `act(W∗X + B + Y)`, so the result may
        // take its buffer — onnxruntime's FusedConv declares the same (`MayInplace(3, 0)`).
        // Kernels honour it by accumulating onto Y. Without a residual nothing matches.
        Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) | Op::MatMul(_) => Elementwise(&[3]),
        // layout: begin
        // Channels-last LRN normalises each pixel's contiguous channel row by a window of
        // that same row. Channels first, the window spans planes, so it stays out of place.
        Op::Lrn(l) if l.layout.is_nhwc() => Rows(&[0]),
        // layout: end
        _ => return None,
    })
}

/// Whether `op` can write its result over one of its operands (see [`in_place_operands`]).
pub fn can_run_in_place(op: &Op) -> bool {
    in_place_operands(op).is_some()
}

/// Whether `op`, reading `inputs`, may write its result (of type `out`) over operand `k`
/// (of type `inp`). The value must not also be read at an operand that is not element-wise
/// aligned with the result: `conv(%a, %w, _, %a)` reads all of `%a` through its windows
/// while writing, so it cannot overwrite `%a` even though `%a` is also its residual.
pub fn in_place_fits(
    op: &Op,
    inputs: &[Option<crate::Value>],
    k: usize,
    inp: &kiln_core::TensorType,
    out: &kiln_core::TensorType,
) -> bool {
    let Some(v) = inputs.get(k).copied().flatten() else {
        return false;
    };
    let (allowed, fits): (&[usize], bool) = match in_place_operands(op) {
        Some(InPlace::View) => (&[0], inp.size_bytes() == out.size_bytes()),
        Some(InPlace::Elementwise(ks)) | Some(InPlace::Rows(ks)) => (
            ks,
            inp.shape == out.shape && inp.dtype.size_bytes() == out.dtype.size_bytes(),
        ),
        None => return false,
    };
    fits && inputs
        .iter()
        .enumerate()
        .all(|(j, w)| *w != Some(v) || allowed.contains(&j))
}

/// Plans `g`'s memory and returns the numbers, after proving the plan with the checker.
pub fn stats(g: &crate::Graph) -> kiln_core::Result<MemoryStats> {
    let p = plan(g)?;
    check(g, &p)?;
    Ok(p.stats())
}
