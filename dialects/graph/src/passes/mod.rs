//! Graph-dialect passes, one per file, each registered under its `graph.` name.

use crate::Graph;
use kiln_core::PassRegistry;

pub mod conv_transpose_to_conv;
pub mod dce;
pub mod fold_arith;
pub mod fold_constants;
pub mod fold_double_neg;
pub mod fold_scalar_scale;
pub mod fuse_horizontal;
pub mod infer_shapes;
// layout: begin
pub mod layout;
mod layout_rewrite;
// layout: end
pub mod merge_linear;

pub mod fuse_activation;
pub mod fuse_batchnorm;
pub mod fuse_bias;
pub mod fuse_cast;
pub mod fuse_eltwise_sum;
pub mod fuse_pad;
pub mod fuse_residual;
pub mod fuse_scale_shift;
pub mod fuse_transpose_matmul;
pub mod fuse_util;
pub mod remove_identity;
// fusion-pass modules
pub mod fuse_gelu;
pub mod fuse_hard_sigmoid;
pub mod fuse_hard_swish;
pub mod fuse_layer_norm;
pub mod fuse_prelu;
pub mod fuse_swish;
mod pattern;
pub mod reduce_mean_to_gap;
// pattern-pass modules

/// The graph optimisation pipeline, repeated to a fixed point. The order is deliberate,
/// because fusions compete and enable each other:
/// 1. fold constants, drop identities and collapse Cast chains first, so patterns see
///    constants and direct edges;
/// 2. pattern-to-op before any arithmetic rewriting, since the patterns match the raw forms
///    exporters emit, and before fusion, so the recognised activations (hard_swish, gelu,
///    swish, prelu) can then fuse into a compute op; hard-swish before hard-sigmoid, because
///    the latter is a sub-pattern of the former;
/// 3. arithmetic chains fold, transposes become MatMul flags;
/// 4. Pad, per-channel scale/shift and BatchNormalization fold only into a compute op
///    without an epilogue, so they go before any epilogue fusion (scale-shift before
///    batchnorm, so Conv→BN→Mul→Add collapses in one round, and before the residual, which
///    would otherwise take a per-channel constant Add as its Y); MatMul+bias next; then
///    adjacent linear ops merge, while their epilogues are still empty;
/// 5. the residual before the activation: the fused op computes act(W·x + b + Y), so
///    Conv→Add→Relu becomes one op, while Conv→Relu→Add keeps its Add (the lecture's point
///    that fusion order changes the result);
/// 6. a conv_transpose whose kernel equals its stride becomes a 1×1 conv and a
///    depth_to_space once its BatchNormalization, bias and activation are fused, so they
///    travel into the conv; weighted sums last, so they never take a Mul that a compute op
///    or a pattern wanted;
/// 7. layout last (`graph.layout`): every fusion above matches channels-first ops (the Pad,
///    scale-shift, BatchNorm and merge folds decline channels-last convs), so the regions
///    are laid out only once they are final; in later rounds every conv is already NHWC and
///    the pass reports no change, so the fixed point is still reached.
///
/// `graph.fold-scalar-scale` (attention's 1/√d folded back into Q's projection) is not in
/// the default pipeline either: it rewrites weights a QDQ model has already quantised (the
/// model's grid would then be applied to scaled weights), and with the usual power-of-two
/// factors it changes no quantisation grid. Run it after `graph.fuse-bias`.
///
/// Horizontal fusion (`graph.fuse-horizontal`) is not in the default pipeline: it trades
/// per-branch activation fusion for one wide op, which pays only when the backend's wide
/// kernel is faster; run it explicitly (`--passes graph-opt,graph.fuse-horizontal`).
pub const GRAPH_OPT: &str = "graph.fold-constants,graph.remove-identity,graph.fuse-cast,graph.dce,\
graph.fuse-layer-norm,graph.fuse-gelu,graph.fuse-hard-swish,graph.fuse-hard-sigmoid,graph.fuse-swish,\
graph.fuse-prelu,graph.reduce-mean-to-gap,\
graph.fold-arith,graph.fuse-transpose-matmul,\
graph.fuse-pad,graph.fuse-scale-shift,graph.fuse-batchnorm,graph.fuse-bias,graph.merge-linear,\
graph.fuse-residual,graph.fuse-activation,graph.conv-transpose-to-conv,graph.fuse-eltwise-sum,\
graph.layout,graph.dce";

/// Every graph pass and pipeline, by name.
pub fn registry() -> PassRegistry<Graph> {
    let mut r = PassRegistry::default();
    r.register(
        "graph.infer-shapes",
        "infer every value's static type",
        || Box::new(infer_shapes::InferShapes),
    );
    r.register("graph.fold-double-neg", "fold neg(neg(x)) to x", || {
        Box::new(fold_double_neg::FoldDoubleNeg)
    });
    r.register("graph.dce", "remove ops whose results nobody reads", || {
        Box::new(dce::Dce)
    });
    r.register(
        "graph.fold-constants",
        "evaluate ops whose operands are all constant",
        || Box::new(fold_constants::FoldConstants),
    );
    r.register(
        "graph.fuse-activation",
        "fuse an activation into the compute op (conv, gemm, matmul) before it",
        || Box::new(fuse_activation::FuseActivation),
    );
    r.register(
        "graph.fuse-batchnorm",
        "fold a constant BatchNormalization into the conv/gemm weights and bias",
        || Box::new(fuse_batchnorm::FuseBatchNorm),
    );
    r.register(
        "graph.remove-identity",
        "remove Identity ops (and so imported Dropout)",
        || Box::new(remove_identity::RemoveIdentity),
    );
    r.register(
        "graph.fuse-residual",
        "fuse Add(compute op, Y) into the compute op's residual operand",
        || Box::new(fuse_residual::FuseResidual),
    );
    r.register(
        "graph.fuse-bias",
        "fuse MatMul + Add(constant vector) into the matmul's bias",
        || Box::new(fuse_bias::FuseBias),
    );
    r.register(
        "graph.fuse-pad",
        "fold zero constant Pads into the following conv's pads",
        || Box::new(fuse_pad::FusePad),
    );
    // fusion-pass registrations
    r.register(
        "graph.fuse-layer-norm",
        "fuse decomposed LayerNorm (ReduceMean/Sub/Pow/Sqrt/Div/Mul/Add) into layer_normalization",
        || Box::new(fuse_layer_norm::FuseLayerNorm),
    );
    r.register(
        "graph.fuse-gelu",
        "fuse decomposed Gelu (erf or tanh form) into gelu",
        || Box::new(fuse_gelu::FuseGelu),
    );
    r.register(
        "graph.fuse-hard-swish",
        "fuse x*Clip(x+3,0,6)/6 and x*HardSigmoid(x) into hard_swish",
        || Box::new(fuse_hard_swish::FuseHardSwish),
    );
    r.register(
        "graph.fuse-hard-sigmoid",
        "fuse Clip(x+3,0,6)/6 into hard_sigmoid",
        || Box::new(fuse_hard_sigmoid::FuseHardSigmoid),
    );
    r.register("graph.fuse-swish", "fuse x*Sigmoid(x) into swish", || {
        Box::new(fuse_swish::FuseSwish)
    });
    r.register(
        "graph.fuse-prelu",
        "fuse Relu(x) - c*Relu(-x) forms into prelu",
        || Box::new(fuse_prelu::FusePRelu),
    );
    r.register(
        "graph.conv-transpose-to-conv",
        "turn a conv_transpose whose kernel equals its stride into a 1x1 conv and depth_to_space",
        || Box::new(conv_transpose_to_conv::ConvTransposeToConv),
    );
    r.register(
        "graph.reduce-mean-to-gap",
        "turn spatial ReduceMean on NCHW into global_average_pool",
        || Box::new(reduce_mean_to_gap::ReduceMeanToGap),
    );
    // pattern-pass registrations
    r.register(
        "graph.fuse-horizontal",
        "fuse sibling convs/matmuls reading one input into one wide op plus a split",
        || Box::new(fuse_horizontal::FuseHorizontal),
    );
    r.register(
        "graph.merge-linear",
        "merge two adjacent linear ops (gemm, matmul, 1x1 conv then conv) into one",
        || Box::new(merge_linear::MergeLinear),
    );
    r.register(
        "graph.fold-arith",
        "collapse Add/Sub/Mul/Div-by-constant chains and drop x+0, x*1",
        || Box::new(fold_arith::FoldArith),
    );
    r.register(
        "graph.fuse-scale-shift",
        "fold per-channel constant Mul/Add after a conv/gemm/matmul/BN into its parameters",
        || Box::new(fuse_scale_shift::FuseScaleShift),
    );
    r.register(
        "graph.fold-scalar-scale",
        "fold a scalar Mul/Div into the linear op upstream, through layout ops and activation matmuls",
        || Box::new(fold_scalar_scale::FoldScalarScale),
    );
    r.register(
        "graph.fuse-cast",
        "merge Cast(Cast(x)) when the middle type loses nothing; drop casts to the same type",
        || Box::new(fuse_cast::FuseCast),
    );
    r.register(
        "graph.fuse-transpose-matmul",
        "fold a last-two-axes Transpose operand into matmul/gemm transA/transB",
        || Box::new(fuse_transpose_matmul::FuseTransposeMatMul),
    );
    r.register(
        "graph.fuse-eltwise-sum",
        "turn x1*c1 + x2*c2 (+/- ...) with scalar constants into eltwise_sum{coeffs}",
        || Box::new(fuse_eltwise_sum::FuseEltwiseSum),
    );
    // layout: begin
    r.register(
        "graph.layout",
        "put convolution regions in channels-last (NHWC) layout, converting only at borders",
        || Box::new(layout::Layout::default()),
    );
    // layout: end
    r.register_pipeline("none", "no passes", "");
    r.register_fixed_point(
        "graph-opt",
        "the graph optimisation pipeline (see GRAPH_OPT)",
        GRAPH_OPT,
    );
    r.register_pipeline(
        "cleanup",
        "fold constant sub-graphs and remove dead ops",
        "graph.fold-constants,graph.dce",
    );
    r
}
