//! Platforms: quantisation schemes as data, and the per-op dispatcher.
//!
//! A scheme decides how to quantise (the three templates below), what to quantise (the op
//! lists) and how ops are dispatched. Adding a platform is adding a `Platform` value; no
//! pass has a per-platform code path.

use crate::observer::ObserverKind;
use crate::rounding::Rounding;
use crate::tqc::{Policy, State, Tqc};
use kiln_core::{Result, bail};
use kiln_graph::Op;
use kiln_graph::ops::{BinaryKind, GlobalPoolKind, UnaryKind};

/// A TQC template: everything but parameters and state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Template {
    pub symmetric: bool,
    pub per_channel: bool,
    pub pow2: bool,
    pub num_bits: u8,
    pub quant_min: i32,
    pub quant_max: i32,
    pub rounding: Rounding,
    pub observer: ObserverKind,
}

impl Template {
    /// A fresh INITIAL TQC; `axis` is the channel axis when the template is per-channel
    /// (ignored otherwise; a per-channel template with no axis falls back to per-tensor).
    pub fn make(&self, axis: Option<usize>) -> Tqc {
        let per_channel = self.per_channel && axis.is_some();
        let mut p = Policy::LINEAR;
        p |= if self.symmetric {
            Policy::SYMMETRIC
        } else {
            Policy::ASYMMETRIC
        };
        p |= if per_channel {
            Policy::PER_CHANNEL
        } else {
            Policy::PER_TENSOR
        };
        if self.pow2 {
            p |= Policy::POWER_OF_2;
        }
        Tqc {
            policy: Policy(p),
            axis: if per_channel { axis } else { None },
            num_bits: self.num_bits,
            quant_min: self.quant_min,
            quant_max: self.quant_max,
            rounding: self.rounding,
            observer: self.observer,
            scale: Vec::new(),
            offset: Vec::new(),
            range: None,
            state: State::Initial,
        }
    }
}

/// How a platform runs an op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// Runs in int8 (its inputs and outputs are quantised).
    Int8,
    /// Moves or selects data without changing values (Reshape, MaxPool, ...): keeps its
    /// input's quantisation.
    Passive,
    /// No int8 path: runs fp32 with quantise/dequantise at the boundary.
    Fp32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Platform {
    pub name: &'static str,
    pub summary: &'static str,
    pub activation: Template,
    pub weight: Template,
    pub bias: Template,
    /// Values that leave the int8 region do so in f32: graph outputs, and the results of
    /// compute ops that only fp32 ops read. The op dequantises its i32 accumulator instead
    /// of requantising to 8 bits (the output TQC is FP32), so neither the network's answer
    /// nor an fp32 op's input pays a rounding (see `quant.refine`).
    pub float_outputs: bool,
    /// The int8 region ends at its last compute ops (needs `float_outputs`): an op that is
    /// not a compute op and whose every result only leaves the region (returned, or read by
    /// fp32 ops) runs in fp32 too, and a compute op's residual operand is read in f32. The
    /// tail of a network is then f32 from the last kernel that does dot products: a
    /// detector's concatenated, split and sigmoided head, a transformer's residual stream
    /// (see `quant.refine`). Worth it where rounding dominates the error and the tail is
    /// element moves; a device without f32 epilogues has no such choice.
    pub float_tail: bool,
    /// Smooth activations fused into a compute op (Sigmoid, Swish, Tanh, Gelu) are looked
    /// up in a table over a fine grid of the pre-activation ([`crate::act_table`]) rather
    /// than evaluated: kiln's kernels do, because `exp` in the epilogue costs as much as a
    /// small conv's dot products. A device that evaluates the activation (TensorRT's fused
    /// epilogues, onnxruntime running an exported model) does not, and neither does its
    /// simulation.
    pub activation_tables: bool,
}

const fn t(
    symmetric: bool,
    per_channel: bool,
    pow2: bool,
    bits: u8,
    min: i32,
    max: i32,
    rounding: Rounding,
) -> Template {
    Template {
        symmetric,
        per_channel,
        pow2,
        num_bits: bits,
        quant_min: min,
        quant_max: max,
        rounding,
        observer: ObserverKind::MinMax,
    }
}

const BIAS_MIN: i32 = -i32::MAX;

/// kiln's kernels start the i32 accumulator at the bias code and add the dot products to
/// it, so the bias keeps half the i32 range for them: a bias whose scale `s_x·s_w` is
/// degenerate (an activation calibrated to all zeros) saturates at ±2^30 instead of at the
/// i32 limit, and the conv still fits the integer path (`arith::acc_fits_i32`) rather than
/// falling back to the simulator.
const KILN_BIAS_MAX: i32 = 1 << 30;

/// The scheme kiln's own int8 kernels execute: u8 asymmetric per-tensor activations, s8
/// symmetric per-channel weights in [-127, 127] (so a u8·s8 pair product never needs the
/// -128 corner), i32 bias, ties to even, values leaving the int8 region written as f32.
pub const KILN_X86: Platform = Platform {
    name: "kiln-x86",
    summary: "u8 asym per-tensor activations, s8 sym per-channel weights [-127,127], i32 bias",
    activation: t(false, false, false, 8, 0, 255, Rounding::HalfEven),
    weight: t(true, true, false, 8, -127, 127, Rounding::HalfEven),
    bias: t(
        true,
        true,
        false,
        32,
        -KILN_BIAS_MAX,
        KILN_BIAS_MAX,
        Rounding::HalfEven,
    ),
    float_outputs: true,
    float_tail: true,
    activation_tables: true,
};

/// TensorRT-like: everything symmetric s8, weights per channel.
pub const TRT_INT8: Platform = Platform {
    name: "trt-int8",
    summary: "s8 sym per-tensor activations [-128,127], s8 sym per-channel weights [-127,127]",
    activation: t(true, false, false, 8, -128, 127, Rounding::HalfEven),
    weight: t(true, true, false, 8, -127, 127, Rounding::HalfEven),
    bias: t(
        true,
        true,
        false,
        32,
        BIAS_MIN,
        i32::MAX,
        Rounding::HalfEven,
    ),
    float_outputs: false,
    float_tail: false,
    activation_tables: false,
};

/// The textbook asymmetric scheme: u8 activations and asymmetric per-tensor s8 weights,
/// ties away from zero.
pub const ACADEMIC: Platform = Platform {
    name: "academic",
    summary: "u8 asym activations, s8 asym per-tensor weights, ties away from zero",
    activation: t(false, false, false, 8, 0, 255, Rounding::HalfAwayFromZero),
    weight: t(
        false,
        false,
        false,
        8,
        -128,
        127,
        Rounding::HalfAwayFromZero,
    ),
    bias: t(
        true,
        false,
        false,
        32,
        BIAS_MIN,
        i32::MAX,
        Rounding::HalfAwayFromZero,
    ),
    float_outputs: false,
    float_tail: false,
    activation_tables: false,
};

/// Shift-only devices: every scale a power of two, symmetric s8, ties up (add-half-shift).
pub const POW2: Platform = Platform {
    name: "pow2",
    summary: "power-of-2 scales, s8 sym per-tensor everywhere, ties up",
    activation: t(true, false, true, 8, -128, 127, Rounding::HalfUp),
    weight: t(true, false, true, 8, -127, 127, Rounding::HalfUp),
    bias: t(true, false, true, 32, BIAS_MIN, i32::MAX, Rounding::HalfUp),
    float_outputs: false,
    float_tail: false,
    activation_tables: false,
};

pub const PLATFORMS: [&Platform; 4] = [&KILN_X86, &TRT_INT8, &ACADEMIC, &POW2];

pub fn by_name(name: &str) -> Result<&'static Platform> {
    match PLATFORMS.iter().find(|p| p.name == name) {
        Some(p) => Ok(p),
        None => {
            let names: Vec<_> = PLATFORMS.iter().map(|p| p.name).collect();
            bail!(
                Input,
                "unknown platform '{name}' (known: {})",
                names.join(", ")
            )
        }
    }
}

/// What an operand of an op is, for choosing its template and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Data flowing through the network.
    Activation,
    /// A weight: a constant quantised on its own (per channel along `axis`).
    Weight { axis: Option<usize> },
    /// A compute op's bias: i32 with scale `s_in·s_w`.
    Bias,
    /// A parameter quantised from its op's input (clip bounds, pad value).
    Passive,
    /// A shape or index operand.
    Soi,
    /// Stays fp32 on every platform (PRelu slopes of fused epilogues).
    Fp32,
}

/// Whether an op is one of the compute ops with a fused epilogue.
pub fn is_compute(op: &Op) -> bool {
    matches!(
        op,
        Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) | Op::MatMul(_)
    )
}

/// The role of operand `k` of `op`; `is_const` says whether the operand is a constant.
pub fn role(op: &Op, k: usize, is_const: bool) -> Role {
    if op.shape_operands().contains(&k) {
        return Role::Soi;
    }
    match op {
        Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) | Op::MatMul(_) => match k {
            1 if is_const => Role::Weight {
                axis: weight_axis(op),
            },
            2 if !matches!(op, Op::MatMul(_)) && is_const => Role::Bias,
            2 if matches!(op, Op::MatMul(_)) => Role::Bias,
            4 => Role::Fp32,
            _ => Role::Activation,
        },
        Op::Clip(_) if k >= 1 => Role::Passive,
        // Scale, B, mean and variance stay f32: the tables are computed from them.
        Op::BatchNormalization(_) if k >= 1 => Role::Fp32,
        Op::Pad(_) if k == 2 => Role::Passive,
        _ => Role::Activation,
    }
}

/// The output-channel axis of a compute op's weight.
fn weight_axis(op: &Op) -> Option<usize> {
    match op {
        Op::Conv(_) => Some(0),
        Op::ConvTranspose(_) => Some(1),
        Op::Gemm(g) => Some(if g.trans_b { 0 } else { 1 }),
        // A MatMul weight is [.., K, N]; the rank is not known here, so the dialect
        // resolves "last axis" when it builds the TQC (see `ir::weight_axis_for`).
        Op::MatMul(_) => Some(usize::MAX),
        _ => None,
    }
}

/// The dispatcher: which ops run in int8, which are passive, which fall back to fp32. The
/// lists are the same for every platform in this file because they describe what the
/// simulator (and kiln's kernels) can compute; the schemes differ in templates.
pub fn dispatch(op: &Op) -> Dispatch {
    match op {
        Op::Conv(_) | Op::Gemm(_) | Op::MatMul(_) => Dispatch::Int8,
        Op::Binary(b) if matches!(b.kind, BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul) => {
            Dispatch::Int8
        }
        Op::Binary(b) if matches!(b.kind, BinaryKind::Max | BinaryKind::Min) => Dispatch::Int8,
        Op::Concat(_) | Op::AveragePool(_) | Op::EltwiseSum(_) => Dispatch::Int8,
        // One table per channel (`plan::IntPlan::ChannelLut`).
        Op::BatchNormalization(_) => Dispatch::Int8,
        Op::GlobalPool(g) if g.kind == GlobalPoolKind::Average => Dispatch::Int8,
        Op::GlobalPool(g) if g.kind == GlobalPoolKind::Max => Dispatch::Passive,
        Op::Unary(u) if lut_unary(u.kind) => Dispatch::Int8,
        Op::LeakyRelu(_) | Op::HardSigmoid(_) | Op::Gelu(_) | Op::Clip(_) => Dispatch::Int8,
        Op::MaxPool(_)
        | Op::Reshape(_)
        | Op::Flatten(_)
        | Op::Squeeze(_)
        | Op::Unsqueeze(_)
        | Op::Transpose(_)
        | Op::Slice(_)
        | Op::Split(_)
        | Op::Pad(_)
        | Op::Resize(_)
        | Op::DepthToSpace(_)
        | Op::SpaceToDepth(_)
        | Op::Expand(_)
        | Op::Tile(_)
        | Op::Gather(_) => Dispatch::Passive,
        Op::Unary(u) if u.kind == UnaryKind::Identity => Dispatch::Passive,
        _ => Dispatch::Fp32,
    }
}

/// Element-wise unary ops computed in int8 as a 256-entry lookup table.
pub fn lut_unary(k: UnaryKind) -> bool {
    matches!(
        k,
        UnaryKind::Relu
            | UnaryKind::Sigmoid
            | UnaryKind::Tanh
            | UnaryKind::HardSwish
            | UnaryKind::Swish
            | UnaryKind::Exp
            | UnaryKind::Abs
            | UnaryKind::Neg
            | UnaryKind::Erf
            | UnaryKind::Softplus
            | UnaryKind::Softsign
    )
}

/// Ops whose activation a preceding compute op absorbs in fusion simulation.
pub fn fusable_activation(op: &Op) -> bool {
    matches!(op, Op::Clip(_) | Op::BatchNormalization(_))
        || matches!(op, Op::Unary(u) if u.kind == UnaryKind::Relu)
}

/// The state a fresh TQC of this role starts in.
pub fn initial_state(role: Role) -> State {
    match role {
        Role::Activation | Role::Weight { .. } => State::Initial,
        Role::Bias | Role::Passive => State::PassiveInit,
        Role::Soi => State::Soi,
        Role::Fp32 => State::Fp32,
    }
}

/// The template for a role on this platform.
pub fn template(p: &Platform, role: Role) -> &Template {
    match role {
        Role::Weight { .. } => &p.weight,
        Role::Bias => &p.bias,
        _ => &p.activation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::Attrs;

    fn op(name: &str) -> Op {
        Op::from_attrs(name, Attrs::new()).unwrap()
    }

    #[test]
    fn dispatcher_classifies_ops() {
        assert_eq!(dispatch(&op("conv")), Dispatch::Int8);
        assert_eq!(dispatch(&op("add")), Dispatch::Int8);
        assert_eq!(dispatch(&op("sigmoid")), Dispatch::Int8, "lookup table");
        let pool = Op::from_attrs("max_pool", Attrs::new().ints("kernel_shape", &[2, 2])).unwrap();
        assert_eq!(dispatch(&pool), Dispatch::Passive);
        assert_eq!(dispatch(&op("transpose")), Dispatch::Passive);
        assert_eq!(dispatch(&op("softmax")), Dispatch::Fp32);
        assert_eq!(dispatch(&op("div")), Dispatch::Fp32);
    }

    #[test]
    fn roles_of_compute_operands() {
        let conv = op("conv");
        assert_eq!(role(&conv, 0, false), Role::Activation);
        assert_eq!(role(&conv, 1, true), Role::Weight { axis: Some(0) });
        assert_eq!(
            role(&conv, 1, false),
            Role::Activation,
            "a computed weight is data"
        );
        assert_eq!(role(&conv, 2, true), Role::Bias);
        assert_eq!(role(&op("clip"), 1, true), Role::Passive);
        assert_eq!(role(&op("reshape"), 1, true), Role::Soi);
    }

    #[test]
    fn platforms_are_found_by_name_and_valid() {
        for p in PLATFORMS {
            assert_eq!(by_name(p.name).unwrap().name, p.name);
            for t in [&p.activation, &p.weight, &p.bias] {
                t.make(Some(0)).validate().unwrap();
                t.make(None).validate().unwrap();
            }
        }
        assert!(by_name("tpu").unwrap_err().message.contains("kiln-x86"));
    }
}
