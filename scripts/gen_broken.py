#!/usr/bin/env python3
"""Generate the corpus of broken / unsupported ONNX models for error tests.

Usage: gen_broken.py [OUTDIR]   (default: tests/data/broken in the repo root)

Writes OUTDIR/<case>.onnx for every case below plus OUTDIR/manifest.tsv, one
line per file:

    <file>\t<error-kind>\t<substring the error message must contain>

Each model has exactly one defect, so the error kiln reports is the one the
manifest names. The substring identifies the culprit: the node name for
node-level errors (every node has a distinct name), the tensor / input name
for value-level errors, the op type for unsupported ops, a keyword for
model-level defects, and the file name for decode errors (undecodable bytes
have no names in them, so the error can only point at the file).

The models are invalid on purpose, so they are assembled with onnx.helper
and never passed to onnx.checker. Everything is deterministic: re-running
produces byte-identical files.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper, numpy_helper

REPO_ROOT = Path(__file__).resolve().parent.parent
F32 = TensorProto.FLOAT

CASES = []  # (file name, error kind, expected substring, builder -> bytes)


def case(file, kind, substring):
    def register(build):
        CASES.append((file, kind, substring, build))
        return build

    return register


def tensor(name, shape, elem_type=F32):
    return helper.make_tensor_value_info(name, elem_type, shape)


def weight(name, shape, seed=0):
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return numpy_helper.from_array(values, name)


def model(nodes, inputs, outputs, initializers=(), opset=13, ir_version=7):
    """Serialise a single-graph model. Defaults match examples/models (opset 13, IR 7)."""
    graph = helper.make_graph(nodes, "broken", inputs, outputs, list(initializers))
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        ir_version=ir_version,
        producer_name="kiln/scripts/gen_broken.py",
    )
    return proto.SerializeToString()


def valid_conv_model():
    """A small well-formed model that the decode cases corrupt."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    return model([node], [tensor("x", [1, 2, 8, 8])], [tensor("y", [1, 4, 8, 8])], [weight("w", [4, 2, 3, 3])])


def read_varint(data, pos):
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


# --- decode: bytes that are not a ModelProto --------------------------------


@case("decode_empty.onnx", "decode", "decode_empty.onnx")
def _():
    # Note: protobuf decodes zero bytes as a valid, empty ModelProto; kiln must
    # reject an empty file explicitly rather than report a missing graph.
    return b""


@case("decode_random_bytes.onnx", "decode", "decode_random_bytes.onnx")
def _():
    return np.random.default_rng(0).integers(0, 256, 256, dtype=np.uint8).tobytes()


@case("decode_truncated.onnx", "decode", "decode_truncated.onnx")
def _():
    # Cut mid-way, i.e. inside the graph's length-delimited payload.
    data = valid_conv_model()
    return data[: len(data) // 2]


@case("decode_bad_length.onnx", "decode", "decode_bad_length.onnx")
def _():
    # Rewrite the length of ModelProto.graph (field 7) to the largest value
    # that fits in the same number of varint bytes, so it runs past the end.
    data = bytearray(valid_conv_model())
    pos = 0
    while True:
        tag, after_tag = read_varint(data, pos)
        field, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            _, pos = read_varint(data, after_tag)
        elif wire_type == 2:
            length, payload = read_varint(data, after_tag)
            if field == 7:
                for i in range(after_tag, payload - 1):
                    data[i] = 0xFF
                data[payload - 1] = 0x7F
                return bytes(data)
            pos = payload + length
        else:
            raise AssertionError(f"unexpected wire type {wire_type} in ModelProto")


@case("decode_wrong_wire_type.onnx", "decode", "decode_wrong_wire_type.onnx")
def _():
    # ModelProto.graph (field 7) encoded as a varint instead of a message.
    # Python's protobuf quietly keeps it as an unknown field; prost, which kiln
    # decodes with, rejects the wire-type mismatch.
    return bytes([(7 << 3) | 0, 0x01])


# --- unsupported-op ---------------------------------------------------------


@case("unsupported_op_unknown_type.onnx", "unsupported-op", "FrobnicateV2")
def _():
    node = helper.make_node("FrobnicateV2", ["x"], ["y"], name="frobnicate")
    return model([node], [tensor("x", [1, 4])], [tensor("y", [1, 4])])


@case("unsupported_op_custom_domain.onnx", "unsupported-op", "BiasGelu")
def _():
    # An onnxruntime contrib op, as found in ORT-optimised models.
    node = helper.make_node("BiasGelu", ["x", "b"], ["y"], name="bias_gelu", domain="com.microsoft")
    graph = helper.make_graph([node], "broken", [tensor("x", [1, 4])], [tensor("y", [1, 4])], [weight("b", [4])])
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)],
        ir_version=7,
        producer_name="kiln/scripts/gen_broken.py",
    )
    return proto.SerializeToString()


@case("unsupported_op_opset6.onnx", "unsupported-op", "Relu")
def _():
    # Opset 6 predates kiln's 7-28 range; Relu-6 is the version it resolves to.
    node = helper.make_node("Relu", ["x"], ["y"], name="relu_opset6")
    return model([node], [tensor("x", [1, 4])], [tensor("y", [1, 4])], opset=6, ir_version=3)


@case("unsupported_op_opset29.onnx", "unsupported-op", "Conv")
def _():
    # Opset 29 is newer than any onnx release kiln knows (onnx 1.23 ends at 28): its ops
    # could mean anything, so kiln refuses rather than guess.
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv_opset29", kernel_shape=[1, 1])
    return model(
        [node], [tensor("x", [1, 2, 4, 4])], [tensor("y", [1, 3, 4, 4])], [weight("w", [3, 2, 1, 1])],
        opset=29, ir_version=10,
    )


# --- attribute ----------------------------------------------------------------


@case("attribute_conv_strides_float.onnx", "attribute", "conv_float_strides")
def _():
    node = helper.make_node(
        "Conv", ["x", "w"], ["y"], name="conv_float_strides", kernel_shape=[3, 3], strides=[2.0, 2.0]
    )
    return model([node], [tensor("x", [1, 2, 8, 8])], [tensor("y", [1, 4, 3, 3])], [weight("w", [4, 2, 3, 3])])


@case("attribute_transpose_perm_string.onnx", "attribute", "transpose_string_perm")
def _():
    node = helper.make_node("Transpose", ["x"], ["y"], name="transpose_string_perm", perm="1,0")
    return model([node], [tensor("x", [2, 3])], [tensor("y", [3, 2])])


@case("attribute_cast_missing_to.onnx", "attribute", "cast_without_to")
def _():
    node = helper.make_node("Cast", ["x"], ["y"], name="cast_without_to")
    return model([node], [tensor("x", [2, 3])], [tensor("y", [2, 3], TensorProto.INT32)])


@case("attribute_concat_missing_axis.onnx", "attribute", "concat_without_axis")
def _():
    node = helper.make_node("Concat", ["a", "b"], ["y"], name="concat_without_axis")
    return model([node], [tensor("a", [2, 3]), tensor("b", [2, 3])], [tensor("y", [4, 3])])


# --- undefined-value ----------------------------------------------------------


@case("undefined_conv_weight.onnx", "undefined-value", "missing_conv_weight")
def _():
    # As if the exporter forgot to write the initializer.
    node = helper.make_node("Conv", ["x", "missing_conv_weight"], ["y"], name="conv_no_weight", kernel_shape=[3, 3])
    return model([node], [tensor("x", [1, 2, 8, 8])], [tensor("y", [1, 4, 6, 6])])


@case("undefined_node_input.onnx", "undefined-value", "never_produced")
def _():
    relu = helper.make_node("Relu", ["x"], ["r"], name="relu_ok")
    add = helper.make_node("Add", ["r", "never_produced"], ["y"], name="add_dangling")
    return model([relu, add], [tensor("x", [1, 4])], [tensor("y", [1, 4])])


@case("undefined_graph_output.onnx", "undefined-value", "ghost_output")
def _():
    node = helper.make_node("Relu", ["x"], ["y"], name="relu_real")
    return model([node], [tensor("x", [1, 4])], [tensor("y", [1, 4]), tensor("ghost_output", [1, 4])])


# --- cycle ----------------------------------------------------------------


@case("cycle_two_nodes.onnx", "cycle", "cycle_first")
def _():
    # cycle_first needs cycle_second's output and vice versa; both values are
    # defined, so this must be reported as a cycle, not an undefined value.
    first = helper.make_node("Add", ["x", "second_out"], ["first_out"], name="cycle_first")
    second = helper.make_node("Relu", ["first_out"], ["second_out"], name="cycle_second")
    return model([first, second], [tensor("x", [1, 4])], [tensor("first_out", [1, 4])])


@case("cycle_self_loop.onnx", "cycle", "self_loop")
def _():
    node = helper.make_node("Add", ["x", "loop_out"], ["loop_out"], name="self_loop")
    return model([node], [tensor("x", [1, 4])], [tensor("loop_out", [1, 4])])


# --- duplicate-definition -------------------------------------------------


@case("duplicate_node_output.onnx", "duplicate-definition", "twice_defined")
def _():
    first = helper.make_node("Relu", ["x"], ["twice_defined"], name="relu_first")
    second = helper.make_node("Sigmoid", ["x"], ["twice_defined"], name="sigmoid_second")
    return model([first, second], [tensor("x", [1, 4])], [tensor("twice_defined", [1, 4])])


@case("duplicate_initializer_and_node_output.onnx", "duplicate-definition", "shadowed")
def _():
    node = helper.make_node("Relu", ["x"], ["shadowed"], name="relu_shadowing")
    add = helper.make_node("Add", ["shadowed", "x"], ["y"], name="add_after")
    return model([node, add], [tensor("x", [1, 4])], [tensor("y", [1, 4])], [weight("shadowed", [1, 4])])


@case("duplicate_graph_input.onnx", "duplicate-definition", "dup_input")
def _():
    node = helper.make_node("Add", ["dup_input", "dup_input"], ["y"], name="add_inputs")
    return model([node], [tensor("dup_input", [1, 4]), tensor("dup_input", [1, 4])], [tensor("y", [1, 4])])


# --- shape: inconsistent or unknown static shapes ---------------------------
# Graph outputs declare the shape a reader would guess (the ONNX checker
# requires one), so the op itself is the only inconsistency.


@case("shape_matmul_inner_dims.onnx", "shape", "matmul_3_vs_4")
def _():
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul_3_vs_4")
    return model([node], [tensor("x", [2, 3])], [tensor("y", [2, 5])], [weight("w", [4, 5])])


@case("shape_add_not_broadcastable.onnx", "shape", "add_2_vs_4")
def _():
    node = helper.make_node("Add", ["a", "b"], ["y"], name="add_2_vs_4")
    return model([node], [tensor("a", [2, 3]), tensor("b", [4, 3])], [tensor("y", [4, 3])])


@case("shape_reshape_element_count.onnx", "shape", "reshape_24_to_25")
def _():
    shape = numpy_helper.from_array(np.array([5, 5], np.int64), "target_shape")
    node = helper.make_node("Reshape", ["x", "target_shape"], ["y"], name="reshape_24_to_25")
    return model([node], [tensor("x", [2, 3, 4])], [tensor("y", [5, 5])], [shape])


@case("shape_conv_channels.onnx", "shape", "conv_3_vs_4_channels")
def _():
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv_3_vs_4_channels", kernel_shape=[3, 3])
    return model([node], [tensor("x", [1, 3, 8, 8])], [tensor("y", [1, 8, 6, 6])], [weight("w", [8, 4, 3, 3])])


@case("shape_concat_mismatch.onnx", "shape", "concat_mismatch")
def _():
    node = helper.make_node("Concat", ["a", "b"], ["y"], name="concat_mismatch", axis=1)
    return model([node], [tensor("a", [1, 2, 4]), tensor("b", [1, 3, 5])], [tensor("y", [1, 5, 4])])


@case("input_symbolic_dim.onnx", "input", "tokens")
def _():
    # kiln compiles for fixed shapes; a free dim must be pinned by the user.
    node = helper.make_node("Relu", ["tokens"], ["y"], name="relu_symbolic")
    return model([node], [tensor("tokens", ["batch", 16])], [tensor("y", ["batch", 16])])


@case("input_without_shape.onnx", "input", "shapeless_input")
def _():
    node = helper.make_node("Relu", ["shapeless_input"], ["y"], name="relu_shapeless")
    return model([node], [tensor("shapeless_input", None)], [tensor("y", [1, 4])])


# --- type -------------------------------------------------------------------


@case("type_add_f32_i64.onnx", "type", "add_f32_i64")
def _():
    node = helper.make_node("Add", ["a", "b"], ["y"], name="add_f32_i64")
    return model([node], [tensor("a", [2, 3]), tensor("b", [2, 3], TensorProto.INT64)], [tensor("y", [2, 3])])


@case("type_gather_float_indices.onnx", "type", "gather_float_indices")
def _():
    node = helper.make_node("Gather", ["data", "indices"], ["y"], name="gather_float_indices", axis=0)
    return model([node], [tensor("data", [4, 3]), tensor("indices", [2])], [tensor("y", [2, 3])])


@case("type_output_declared_wrong.onnx", "type", "relu_out")
def _():
    # Relu of f32 is f32, but the graph output claims int64.
    node = helper.make_node("Relu", ["x"], ["relu_out"], name="relu_declared_int")
    return model([node], [tensor("x", [1, 4])], [tensor("relu_out", [1, 4], TensorProto.INT64)])


# --- unsupported: valid ONNX using features kiln deliberately refuses --------


@case("unsupported_float16_input.onnx", "unsupported", "half_input")
def _():
    # kiln's float side is f32 only (it quantises from f32 to int8).
    node = helper.make_node("Relu", ["half_input"], ["y"], name="relu_half")
    f16 = TensorProto.FLOAT16
    return model([node], [tensor("half_input", [1, 4], f16)], [tensor("y", [1, 4], f16)])


@case("unsupported_batchnorm_training.onnx", "unsupported", "bn_training")
def _():
    # Training-mode BN normalises with batch statistics: not inference.
    # ONNX requires the updated running statistics as outputs in this mode.
    node = helper.make_node(
        "BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y", "new_mean", "new_var"],
        name="bn_training", training_mode=1,
    )
    params = [weight(n, [2], seed=i) for i, n in enumerate(["scale", "bias", "mean"])]
    params.append(numpy_helper.from_array(np.ones(2, np.float32), "var"))
    return model([node], [tensor("x", [1, 2, 4, 4])], [tensor("y", [1, 2, 4, 4])], params, opset=15, ir_version=8)


@case("unsupported_dynamic_reshape.onnx", "unsupported", "dynamic_reshape")
def _():
    # The target shape is a runtime input, so no static shape exists to compile.
    node = helper.make_node("Reshape", ["x", "runtime_shape"], ["y"], name="dynamic_reshape")
    return model(
        [node], [tensor("x", [2, 6]), tensor("runtime_shape", [2], TensorProto.INT64)], [tensor("y", [3, 4])]
    )


@case("io_external_data_missing.onnx", "io", "external_weight.bin")
def _():
    # Weights in a side file (the >2 GB escape hatch) that is not there: kiln reads
    # external data, so the error is the missing file, named.
    w = TensorProto(name="external_weight", data_type=F32, dims=[4, 4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "external_weight.bin"), ("offset", "0"), ("length", "64")):
        w.external_data.add(key=key, value=value)
    node = helper.make_node("MatMul", ["x", "external_weight"], ["y"], name="matmul_external")
    return model([node], [tensor("x", [1, 4])], [tensor("y", [1, 4])], [w])


# --- invalid-model: structurally malformed models ----------------------------


@case("invalid_no_outputs.onnx", "invalid-model", "output")
def _():
    # ONNX's checker and onnxruntime accept this, but a model that computes
    # nothing is certainly not what the user meant to compile.
    node = helper.make_node("Relu", ["x"], ["y"], name="relu_unused")
    return model([node], [tensor("x", [1, 4])], [])


@case("invalid_no_graph.onnx", "invalid-model", "graph")
def _():
    proto = onnx.ModelProto(
        ir_version=7, producer_name="kiln/scripts/gen_broken.py", opset_import=[helper.make_opsetid("", 13)]
    )
    return proto.SerializeToString()


@case("invalid_no_opset_import.onnx", "invalid-model", "opset")
def _():
    # Since IR 3 a model must import the default ("ai.onnx") opset.
    node = helper.make_node("Relu", ["x"], ["y"], name="relu_no_opset")
    graph = helper.make_graph([node], "broken", [tensor("x", [1, 4])], [tensor("y", [1, 4])])
    proto = helper.make_model(graph, ir_version=7)
    proto.ClearField("opset_import")
    return proto.SerializeToString()


@case("invalid_empty_op_type.onnx", "invalid-model", "node_without_op")
def _():
    node = helper.make_node("", ["x"], ["y"], name="node_without_op")
    return model([node], [tensor("x", [1, 4])], [tensor("y", [1, 4])])


@case("invalid_raw_data_length.onnx", "invalid-model", "short_weight")
def _():
    # dims say 4x4 f32 = 64 bytes; raw_data holds 60.
    w = TensorProto(name="short_weight", data_type=F32, dims=[4, 4], raw_data=bytes(60))
    node = helper.make_node("MatMul", ["x", "short_weight"], ["y"], name="matmul_short_weight")
    return model([node], [tensor("x", [1, 4])], [tensor("y", [1, 4])], [w])


# Decode cases that Python's protobuf accepts but kiln must still reject
# (see the comments on the cases); the self-check below skips them.
DECODE_OK_IN_PYTHON = {"decode_empty.onnx", "decode_wrong_wire_type.onnx"}


def main() -> int:
    if len(sys.argv) > 2:
        print(f"usage: {sys.argv[0]} [OUTDIR]", file=sys.stderr)
        return 2
    out_dir = Path(sys.argv[1]) if len(sys.argv) == 2 else REPO_ROOT / "tests" / "data" / "broken"
    out_dir.mkdir(parents=True, exist_ok=True)
    # Drop files of cases that were renamed or removed since the last run.
    for old in out_dir.glob("*.onnx"):
        old.unlink()

    files = [c[0] for c in CASES]
    assert len(set(files)) == len(files), "duplicate case file name"
    lines = []
    for file, kind, substring, build in sorted(CASES, key=lambda c: c[0]):
        data = build()
        if kind == "decode" and file not in DECODE_OK_IN_PYTHON:
            # Guard against a "corrupted" file that happens to still decode.
            try:
                onnx.ModelProto.FromString(data)
            except DecodeError:
                pass
            else:
                raise AssertionError(f"{file} decodes as a valid ModelProto")
        (out_dir / file).write_bytes(data)
        lines.append(f"{file}\t{kind}\t{substring}\n")
    (out_dir / "manifest.tsv").write_text("".join(lines))
    print(f"broken: wrote {len(lines)} models to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
