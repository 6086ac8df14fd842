//! ONNX import: protobuf messages → the graph dialect.
//!
//! `proto` holds the message types; `tensor` converts tensors both ways; `attrs` converts
//! attributes; `opset` rewrites each node from whatever opset (7–21) the model uses into
//! kiln's canonical operand forms; `import` drives it all and runs shape inference, so a
//! graph returned from here is fully typed.

mod attrs;
mod import;
mod opset;
pub mod proto;
mod tensor;

pub use import::{ImportOptions, OPSET_RANGE, import_model, load_model};

/// Whether kiln implements the version that `op` resolves to at default-domain `opset`.
pub fn op_version_supported(op: &str, opset: i64) -> bool {
    if !OPSET_RANGE.contains(&opset) {
        return opset > *OPSET_RANGE.end()
            && opset <= LATEST_KNOWN_OPSET
            && NEWER_VERSIONS
                .iter()
                .find(|(o, _)| *o == op)
                .is_none_or(|(_, v)| *v > opset);
    }
    true
}
pub use tensor::{dtype_from_onnx, dtype_to_onnx, tensor_from_proto, tensor_to_proto};

/// ONNX op type → graph-dialect op name. This is the list of ONNX ops kiln imports; a
/// node whose op is absent (or whose graph op does not exist in this build) is reported
/// as unsupported. `opset.rs` rewrites the entries whose older forms differ.
pub const OPS: &[(&str, &str)] = &[
    // Constants.
    ("Constant", "const"),
    ("ConstantOfShape", "constant_of_shape"),
    // Element-wise, one operand.
    ("Abs", "abs"),
    ("Acos", "acos"),
    ("Acosh", "acosh"),
    ("Asin", "asin"),
    ("Asinh", "asinh"),
    ("Atan", "atan"),
    ("Atanh", "atanh"),
    ("Ceil", "ceil"),
    ("Cos", "cos"),
    ("Cosh", "cosh"),
    ("Erf", "erf"),
    ("Exp", "exp"),
    ("Floor", "floor"),
    ("HardSwish", "hard_swish"),
    ("Identity", "identity"),
    ("IsInf", "is_inf"),
    ("IsNaN", "is_nan"),
    ("Log", "log"),
    ("Neg", "neg"),
    ("Not", "not"),
    ("Reciprocal", "reciprocal"),
    ("Relu", "relu"),
    ("Round", "round"),
    ("Sigmoid", "sigmoid"),
    ("Sign", "sign"),
    ("Sin", "sin"),
    ("Sinh", "sinh"),
    ("Softplus", "softplus"),
    ("Softsign", "softsign"),
    ("Sqrt", "sqrt"),
    ("Tan", "tan"),
    ("Tanh", "tanh"),
    // Element-wise with parameters.
    ("Cast", "cast"),
    ("CastLike", "cast"),
    ("Celu", "celu"),
    ("Clip", "clip"),
    ("Elu", "elu"),
    ("Gelu", "gelu"),
    ("HardSigmoid", "hard_sigmoid"),
    ("LeakyRelu", "leaky_relu"),
    ("Mish", "mish"),
    ("Selu", "selu"),
    ("Shrink", "shrink"),
    ("ThresholdedRelu", "thresholded_relu"),
    // Element-wise, two or more operands (Sum/Mean/Max/Min become chains).
    ("Add", "add"),
    ("And", "and"),
    ("BitShift", "bit_shift"),
    ("Div", "div"),
    ("Equal", "equal"),
    ("Greater", "greater"),
    ("GreaterOrEqual", "greater_or_equal"),
    ("Less", "less"),
    ("LessOrEqual", "less_or_equal"),
    ("Max", "max"),
    ("Mean", "add"),
    ("Min", "min"),
    ("Mod", "mod"),
    ("Mul", "mul"),
    ("Or", "or"),
    ("Pow", "pow"),
    ("PRelu", "prelu"),
    ("Sub", "sub"),
    ("Sum", "add"),
    ("Where", "where"),
    ("Xor", "xor"),
    // Convolution, pooling, matrix products.
    ("AveragePool", "average_pool"),
    ("Conv", "conv"),
    ("ConvTranspose", "conv_transpose"),
    ("Gemm", "gemm"),
    ("GlobalAveragePool", "global_average_pool"),
    ("GlobalLpPool", "global_lp_pool"),
    ("GlobalMaxPool", "global_max_pool"),
    ("LpPool", "lp_pool"),
    ("MatMul", "matmul"),
    ("MaxPool", "max_pool"),
    // Normalisation, softmax, reductions.
    ("ArgMax", "arg_max"),
    ("ArgMin", "arg_min"),
    ("BatchNormalization", "batch_normalization"),
    ("CumSum", "cum_sum"),
    ("GroupNormalization", "group_normalization"),
    ("Hardmax", "hardmax"),
    ("InstanceNormalization", "instance_normalization"),
    ("LayerNormalization", "layer_normalization"),
    ("LogSoftmax", "log_softmax"),
    ("LpNormalization", "lp_normalization"),
    ("LRN", "lrn"),
    ("MeanVarianceNormalization", "mean_variance_normalization"),
    ("ReduceL1", "reduce_l1"),
    ("ReduceL2", "reduce_l2"),
    ("ReduceLogSum", "reduce_log_sum"),
    ("ReduceLogSumExp", "reduce_log_sum_exp"),
    ("ReduceMax", "reduce_max"),
    ("ReduceMean", "reduce_mean"),
    ("ReduceMin", "reduce_min"),
    ("ReduceProd", "reduce_prod"),
    ("ReduceSum", "reduce_sum"),
    ("ReduceSumSquare", "reduce_sum_square"),
    ("Softmax", "softmax"),
    ("TopK", "top_k"),
    // Shapes and data movement.
    ("Concat", "concat"),
    ("DepthToSpace", "depth_to_space"),
    ("Dropout", "identity"),
    ("Expand", "expand"),
    ("EyeLike", "eye_like"),
    ("Flatten", "flatten"),
    ("Gather", "gather"),
    ("GatherElements", "gather_elements"),
    ("GatherND", "gather_nd"),
    ("OneHot", "one_hot"),
    ("Pad", "pad"),
    ("Range", "range"),
    ("Reshape", "reshape"),
    ("Resize", "resize"),
    ("ScatterElements", "scatter_elements"),
    ("ScatterND", "scatter_nd"),
    ("Shape", "shape"),
    ("Size", "size"),
    ("Slice", "slice"),
    ("SpaceToDepth", "space_to_depth"),
    ("Split", "split"),
    ("Squeeze", "squeeze"),
    ("Tile", "tile"),
    ("Transpose", "transpose"),
    ("Trilu", "trilu"),
    ("Unsqueeze", "unsqueeze"),
    ("Upsample", "resize"),
];

/// Ops that gained a version after opset 21, with the first such version. kiln implements
/// the ops as they stand in opsets 7–21; a model at a newer opset is still imported when
/// each of its ops resolves to one of those versions (a Relu at opset 28 is Relu-14), and
/// refused when it resolves to a newer one (a Conv at opset 22 is Conv-22). Taken from
/// onnx 1.23, whose newest opset is [`LATEST_KNOWN_OPSET`].
pub const NEWER_VERSIONS: &[(&str, i64)] = &[
    ("Acos", 22),
    ("Acosh", 22),
    ("Asin", 22),
    ("Asinh", 22),
    ("Atan", 22),
    ("Atanh", 22),
    ("AveragePool", 22),
    ("BitShift", 28),
    ("Cast", 23),
    ("CastLike", 23),
    ("Celu", 28),
    ("Constant", 23),
    ("ConstantOfShape", 23),
    ("Conv", 22),
    ("ConvTranspose", 22),
    ("Cos", 22),
    ("Cosh", 22),
    ("DepthToSpace", 28),
    ("Dropout", 22),
    ("Elu", 22),
    ("EyeLike", 22),
    ("Flatten", 23),
    ("GlobalAveragePool", 22),
    ("GlobalLpPool", 22),
    ("GlobalMaxPool", 22),
    ("HardSigmoid", 22),
    ("HardSwish", 22),
    ("Identity", 23),
    ("InstanceNormalization", 22),
    ("LpNormalization", 22),
    ("LpPool", 22),
    ("MaxPool", 22),
    ("Mish", 22),
    ("Mod", 28),
    ("OneHot", 28),
    ("Pad", 23),
    ("Range", 27),
    ("ReduceLogSum", 28),
    ("ReduceLogSumExp", 28),
    ("Reshape", 23),
    ("Round", 22),
    ("Selu", 22),
    ("Shape", 23),
    ("Sin", 22),
    ("Sinh", 22),
    ("Size", 23),
    ("Softplus", 22),
    ("Softsign", 22),
    ("SpaceToDepth", 28),
    ("Squeeze", 23),
    ("Tan", 22),
    ("ThresholdedRelu", 22),
    ("TopK", 24),
    ("Transpose", 23),
    ("Unsqueeze", 23),
];

/// The newest default-domain opset whose op versions [`NEWER_VERSIONS`] accounts for.
pub const LATEST_KNOWN_OPSET: i64 = 28;

/// The graph-dialect op an ONNX op type imports as.
pub fn kiln_name(onnx_op: &str) -> Option<&'static str> {
    OPS.iter().find(|(o, _)| *o == onnx_op).map(|(_, k)| *k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for (o, k) in OPS {
            assert!(seen.insert(*o), "{o} listed twice");
            assert!(
                k.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
                "{k}"
            );
        }
        assert_eq!(kiln_name("BatchNormalization"), Some("batch_normalization"));
        assert_eq!(kiln_name("FrobnicateV2"), None);
        for (o, v) in NEWER_VERSIONS {
            assert!(
                kiln_name(o).is_some() && *v > 21 && *v <= LATEST_KNOWN_OPSET,
                "{o}"
            );
        }
    }

    #[test]
    fn op_versions_after_opset_21() {
        assert!(op_version_supported("Conv", 21));
        assert!(!op_version_supported("Conv", 22));
        assert!(op_version_supported("Relu", 28));
        assert!(op_version_supported("Reshape", 22));
        assert!(!op_version_supported("Reshape", 23));
        assert!(!op_version_supported("Relu", 6));
        assert!(!op_version_supported("Relu", LATEST_KNOWN_OPSET + 1));
    }
}
