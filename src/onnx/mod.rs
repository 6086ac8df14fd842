//! ONNX import: protobuf messages → the graph dialect.
//!
//! `proto` holds the message types; `tensor` converts tensors both ways; `attrs` converts
//! attributes; `opset` (with `resize` for the Upsample/Resize family) rewrites each node
//! from whatever opset the model uses into kiln's canonical operand forms; `import` drives
//! it all and runs shape inference, so a graph returned from here is fully typed.

mod attrs;
mod import;
mod opset;
pub mod proto;
mod resize;
mod tensor;
// qdq: begin
pub mod export;
pub mod qdq_import;
// qdq: end

pub use import::{ImportOptions, OPSET_RANGE, import_model, load_model};

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
    ("CastLike", "cast_like"),
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
    }
}
