//! The quant dialect's passes, one file each, and the `quant-opt` pipeline in PPQ's order:
//! config refine → fusion simulation → quantise-point reduce → activation equalisation →
//! parameter quantisation →
//! calibration → error-compensating weight rounding (GPTQ, which needs the calibration
//! inputs and the weights' grids) → alignment → passive parameter quantisation → baking →
//! bias correction (which needs the baked model).

use crate::QuantGraph;
use kiln_core::PassRegistry;

pub mod align;
pub mod bake;
pub mod bias_correct;
pub mod calibrate;
pub mod equalize;
pub mod fuse;
pub mod gptq;
pub mod quantize_params;
pub mod quantize_passive;
pub mod reduce_points;
pub mod refine;

/// PPQ's standard order.
pub const QUANT_OPT: &str = "quant.refine,quant.fuse,quant.reduce-points,quant.equalize,quant.quantize-params,\
quant.calibrate,quant.gptq,quant.align,quant.quantize-passive,quant.bake,quant.bias-correct";

pub fn registry() -> PassRegistry<QuantGraph> {
    let mut r = PassRegistry::default();
    r.register(
        "quant.refine",
        "dispatch ops (int8/passive/fp32); SOI, passive and fp32 states",
        || Box::new(refine::Refine),
    );
    r.register(
        "quant.fuse",
        "simulate fusion: compute+act, passive ops, Add master/slave, Concat merge",
        || Box::new(fuse::Fuse),
    );
    r.register(
        "quant.reduce-points",
        "one quantisation per data flow: consumer inputs overlapped by producers",
        || Box::new(reduce_points::ReducePoints),
    );
    r.register(
        "quant.equalize",
        "conv -> depthwise conv pairs: per-channel scales moved into the weights so every channel spans the activation grid",
        || Box::new(equalize::Equalize),
    );
    r.register(
        "quant.quantize-params",
        "weights and constant inputs: parameters from their data (min-max)",
        || Box::new(quantize_params::QuantizeParams),
    );
    r.register(
        "quant.calibrate",
        "run the calibration samples through the interpreter and observe activations",
        || Box::new(calibrate::Calibrate),
    );
    r.register(
        "quant.gptq",
        "round weights one input at a time, compensating each rounding over the calibration inputs",
        || Box::new(gptq::Gptq),
    );
    r.register(
        "quant.align",
        "groups share one range: Concat aligns to its output, others to the widest input",
        || Box::new(align::Align),
    );
    r.register(
        "quant.quantize-passive",
        "bias: scale s_in*s_w, 32-bit; clip bounds and pad values: their input's params",
        || Box::new(quantize_passive::QuantizePassive),
    );
    r.register(
        "quant.bake",
        "store quantised parameters in the constants (BAKED, PASSIVE_BAKED)",
        || Box::new(bake::Bake),
    );
    r.register(
        "quant.bias-correct",
        "biases absorb their layer's mean output error over the calibration inputs, layer by layer",
        || Box::new(bias_correct::BiasCorrect),
    );
    r.register_pipeline(
        "quant-opt",
        "the whole quantisation flow in PPQ's order",
        QUANT_OPT,
    );
    r
}
