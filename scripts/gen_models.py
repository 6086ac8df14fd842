#!/usr/bin/env python3
"""Generate the example models in examples/models/ with reference data.

Usage: gen_models.py [OUTDIR]   (default: examples/models in the repo root)

For each model NAME this writes

    OUTDIR/NAME/model.onnx
    OUTDIR/NAME/inputs/<input name>.npy     uniform [0, 1) float32, default_rng(0)
    OUTDIR/NAME/outputs/<output name>.npy   onnxruntime's result on those inputs

with `/` and `:` in tensor names replaced by `_` in file names. The outputs
come from onnxruntime's CPU provider with graph optimisations disabled, so
they are the plain reference semantics rather than a fused approximation.

The models are built by hand with onnx.helper rather than exported from a
framework: the repo then needs no torch, and every op in them is one we
chose on purpose (e.g. HardSwish and LayerNorm spelled out as primitive ops,
as older exporters emit them). Weights are seeded and scaled (He / Xavier)
so activations stay O(1) through the network, which is what int8
calibration needs to be exercised meaningfully.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
# The IR version onnx pairs with opset 13; exporters targeting opset 13 write
# it too, and it keeps the files loadable by older runtimes.
IR_VERSION = 7
MAX_MODEL_BYTES = 2 * 1024 * 1024

REPO_ROOT = Path(__file__).resolve().parent.parent


class Graph:
    """Accumulates nodes and initializers; names every node and tensor."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.initializers = []
        self.consts = {}

    def op(self, op_type, inputs, name, **attrs):
        """Add a single-output node called `name`; its output is `name` too.

        One name for both keeps tensor names unique for free, and a compiler
        error citing either one points at the same place.
        """
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def weight(self, name, array):
        self.initializers.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def const(self, value, dtype=np.float32):
        """A scalar or 1-D constant initializer, shared between all uses of the same value."""
        array = np.asarray(value, dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self.consts:
            name = f"const_{len(self.consts)}"
            self.initializers.append(numpy_helper.from_array(array, name))
            self.consts[key] = name
        return self.consts[key]

    def normal(self, shape, std):
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    # --- layers -----------------------------------------------------------

    def conv(self, x, name, cin, cout, k, stride=1, group=1, bias=False, init_gain=2.0):
        fan_in = (cin // group) * k * k
        w = self.weight(f"{name}.weight", self.normal((cout, cin // group, k, k), np.sqrt(init_gain / fan_in)))
        inputs = [x, w]
        if bias:
            inputs.append(self.weight(f"{name}.bias", self.normal((cout,), 0.05)))
        return self.op(
            "Conv", inputs, name,
            kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4,
            group=group, dilations=[1, 1],
        )

    def batchnorm(self, x, name, channels):
        # Non-trivial statistics so a compiler that drops or mis-folds BN into
        # the preceding conv produces visibly wrong numbers.
        scale = self.weight(f"{name}.weight", self.rng.uniform(0.5, 1.5, channels))
        bias = self.weight(f"{name}.bias", self.normal((channels,), 0.1))
        mean = self.weight(f"{name}.running_mean", self.normal((channels,), 0.1))
        var = self.weight(f"{name}.running_var", self.rng.uniform(0.5, 1.5, channels))
        return self.op("BatchNormalization", [x, scale, bias, mean, var], name, epsilon=1e-5, momentum=0.9)

    def hardswish(self, x, name):
        # x * Clip(x + 3, 0, 6) / 6, as exported before HardSwish was an op.
        shifted = self.op("Add", [x, self.const(3.0)], f"{name}/add")
        clipped = self.op("Clip", [shifted, self.const(0.0), self.const(6.0)], f"{name}/clip")
        scaled = self.op("Mul", [x, clipped], f"{name}/mul")
        return self.op("Div", [scaled, self.const(6.0)], f"{name}/div")

    def linear(self, x, name, fin, fout):
        """MatMul + Add bias, the form transformer exporters emit."""
        w = self.weight(f"{name}.weight", self.normal((fin, fout), np.sqrt(1.0 / fin)))
        b = self.weight(f"{name}.bias", self.normal((fout,), 0.02))
        return self.op("Add", [self.op("MatMul", [x, w], f"{name}/matmul"), b], f"{name}/add")

    def layernorm(self, x, name, dim):
        """LayerNorm over the last axis, decomposed as opset-13 exporters do."""
        mean = self.op("ReduceMean", [x], f"{name}/mean", axes=[-1], keepdims=1)
        centred = self.op("Sub", [x, mean], f"{name}/sub")
        squared = self.op("Pow", [centred, self.const(2.0)], f"{name}/pow")
        var = self.op("ReduceMean", [squared], f"{name}/var", axes=[-1], keepdims=1)
        std = self.op("Sqrt", [self.op("Add", [var, self.const(1e-5)], f"{name}/add_eps")], f"{name}/sqrt")
        normed = self.op("Div", [centred, std], f"{name}/div")
        gamma = self.weight(f"{name}.weight", self.rng.uniform(0.8, 1.2, dim))
        beta = self.weight(f"{name}.bias", self.normal((dim,), 0.05))
        return self.op("Add", [self.op("Mul", [normed, gamma], f"{name}/mul_gamma"), beta], f"{name}/add_beta")

    def build(self, name, inputs, outputs):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name="kiln/scripts/gen_models.py",
        )
        onnx.checker.check_model(model, full_check=True)
        return model


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def resnet_style():
    g = Graph(seed=1)
    # Stem: the conv keeps its bias so both Conv arities are covered.
    x = g.conv("x", "stem/conv", 3, 16, 3, stride=2, bias=True)
    x = g.op("Relu", [g.batchnorm(x, "stem/bn", 16)], "stem/relu")
    x = g.op("MaxPool", [x], "stem/maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])

    def basic_block(x, name, cin, cout, stride):
        y = g.conv(x, f"{name}/conv1", cin, cout, 3, stride=stride)
        y = g.op("Relu", [g.batchnorm(y, f"{name}/bn1", cout)], f"{name}/relu1")
        y = g.batchnorm(g.conv(y, f"{name}/conv2", cout, cout, 3), f"{name}/bn2", cout)
        skip = x
        if stride != 1 or cin != cout:
            skip = g.batchnorm(g.conv(x, f"{name}/downsample/conv", cin, cout, 1, stride=stride), f"{name}/downsample/bn", cout)
        return g.op("Relu", [g.op("Add", [y, skip], f"{name}/add")], f"{name}/relu2")

    x = basic_block(x, "layer1", 16, 16, 1)
    x = basic_block(x, "layer2", 16, 32, 2)
    x = g.op("GlobalAveragePool", [x], "head/gap")
    x = g.op("Flatten", [x], "head/flatten", axis=1)
    w = g.weight("head/fc.weight", g.normal((10, 32), np.sqrt(1.0 / 32)))
    b = g.weight("head/fc.bias", g.normal((10,), 0.05))
    g.nodes.append(helper.make_node("Gemm", [x, w, b], ["logits"], name="head/fc", transB=1))
    return g.build("resnet_style", [f32("x", [1, 3, 64, 64])], [f32("logits", [1, 10])])


def mobilenet_v3_style():
    g = Graph(seed=2)
    x = g.hardswish(g.batchnorm(g.conv("x", "stem/conv", 3, 16, 3, stride=2), "stem/bn", 16), "stem/hswish")

    def squeeze_excite(x, name, channels, squeezed):
        s = g.op("GlobalAveragePool", [x], f"{name}/gap")
        s = g.op("Relu", [g.conv(s, f"{name}/fc1", channels, squeezed, 1, bias=True)], f"{name}/relu")
        # Gain 1 rather than He's 2: the gate should sit in HardSigmoid's
        # linear range, not saturate at 0 or 1.
        s = g.conv(s, f"{name}/fc2", squeezed, channels, 1, bias=True, init_gain=1.0)
        s = g.op("HardSigmoid", [s], f"{name}/hsigmoid", alpha=1.0 / 6.0, beta=0.5)
        return g.op("Mul", [x, s], f"{name}/scale")

    def inverted_residual(x, name, cin, expand, cout, stride, act):
        y = act(g.batchnorm(g.conv(x, f"{name}/expand", cin, expand, 1), f"{name}/expand_bn", expand), f"{name}/expand_act")
        y = g.conv(y, f"{name}/dw", expand, expand, 3, stride=stride, group=expand)
        y = act(g.batchnorm(y, f"{name}/dw_bn", expand), f"{name}/dw_act")
        y = squeeze_excite(y, f"{name}/se", expand, expand // 4)
        # Gain 1: the projection is linear (no activation follows).
        y = g.batchnorm(g.conv(y, f"{name}/project", expand, cout, 1, init_gain=1.0), f"{name}/project_bn", cout)
        if stride == 1 and cin == cout:
            y = g.op("Add", [x, y], f"{name}/add")
        return y

    def relu(x, name):
        return g.op("Relu", [x], name)

    x = inverted_residual(x, "block1", 16, 64, 16, 1, relu)
    x = inverted_residual(x, "block2", 16, 64, 24, 2, g.hardswish)
    x = inverted_residual(x, "block3", 24, 96, 24, 1, g.hardswish)
    x = g.hardswish(g.batchnorm(g.conv(x, "head/conv", 24, 96, 1), "head/bn", 96), "head/hswish")
    x = g.op("GlobalAveragePool", [x], "head/gap")
    x = g.op("Flatten", [x], "head/flatten", axis=1)
    # Averaging zero-mean hard-swish features over 16x16 shrinks them ~5x;
    # a matching gain keeps the logits O(1), so the top-1 margin stays well
    # above int8 rounding noise.
    w = g.weight("head/fc.weight", g.normal((10, 96), 5.0 / np.sqrt(96)))
    b = g.weight("head/fc.bias", g.normal((10,), 0.05))
    g.nodes.append(helper.make_node("Gemm", [x, w, b], ["logits"], name="head/fc", transB=1))
    return g.build("mobilenet_v3_style", [f32("x", [1, 3, 64, 64])], [f32("logits", [1, 10])])


def transformer_block():
    seq, hidden, heads = 16, 64, 4
    head_dim = hidden // heads
    ffn = 4 * hidden
    g = Graph(seed=3)

    def split_heads(t, name, perm):
        t = g.op("Reshape", [t, g.const([1, seq, heads, head_dim], np.int64)], f"{name}/reshape")
        return g.op("Transpose", [t], f"{name}/transpose", perm=perm)

    h = g.layernorm("x", "ln1", hidden)
    q = split_heads(g.linear(h, "attn/q", hidden, hidden), "attn/q_heads", [0, 2, 1, 3])
    k = split_heads(g.linear(h, "attn/k", hidden, hidden), "attn/k_heads", [0, 2, 1, 3])
    v = split_heads(g.linear(h, "attn/v", hidden, hidden), "attn/v_heads", [0, 2, 1, 3])
    # K^T as its own Transpose, the way torch.onnx exports `k.transpose(-2, -1)`.
    k_t = g.op("Transpose", [k], "attn/k_transpose", perm=[0, 1, 3, 2])
    scores = g.op("MatMul", [q, k_t], "attn/qk")
    scores = g.op("Div", [scores, g.const(np.sqrt(head_dim))], "attn/scale")
    probs = g.op("Softmax", [scores], "attn/softmax", axis=-1)
    ctx = g.op("MatMul", [probs, v], "attn/pv")
    ctx = g.op("Transpose", [ctx], "attn/merge/transpose", perm=[0, 2, 1, 3])
    ctx = g.op("Reshape", [ctx, g.const([1, seq, hidden], np.int64)], "attn/merge/reshape")
    attn = g.linear(ctx, "attn/out", hidden, hidden)
    x = g.op("Add", ["x", attn], "residual1")

    h = g.linear(g.layernorm(x, "ln2", hidden), "ffn/fc1", hidden, ffn)
    # Exact GELU, x * 0.5 * (1 + erf(x / sqrt 2)), as exported before opset 20.
    e = g.op("Erf", [g.op("Div", [h, g.const(np.sqrt(2.0))], "ffn/gelu/div")], "ffn/gelu/erf")
    e = g.op("Add", [e, g.const(1.0)], "ffn/gelu/add")
    h = g.op("Mul", [g.op("Mul", [h, e], "ffn/gelu/mul"), g.const(0.5)], "ffn/gelu/mul_half")
    h = g.linear(h, "ffn/fc2", ffn, hidden)
    g.nodes.append(helper.make_node("Add", [x, h], ["y"], name="residual2"))
    return g.build("transformer_block", [f32("x", [1, seq, hidden])], [f32("y", [1, seq, hidden])])


MODELS = {
    "resnet_style": resnet_style,
    "mobilenet_v3_style": mobilenet_v3_style,
    "transformer_block": transformer_block,
}


def file_stem(tensor_name: str) -> str:
    return tensor_name.replace("/", "_").replace(":", "_")


def write_model(out_dir: Path, name: str, model: onnx.ModelProto) -> None:
    data = model.SerializeToString()
    if len(data) > MAX_MODEL_BYTES:
        raise SystemExit(f"{name}: {len(data)} bytes exceeds the {MAX_MODEL_BYTES}-byte budget")
    model_dir = out_dir / name
    for sub in ("inputs", "outputs"):
        # Clear old .npy files so a renamed tensor leaves no stale reference.
        (model_dir / sub).mkdir(parents=True, exist_ok=True)
        for old in (model_dir / sub).glob("*.npy"):
            old.unlink()
    (model_dir / "model.onnx").write_bytes(data)

    rng = np.random.default_rng(0)
    feeds = {}
    for vi in model.graph.input:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = rng.random(shape, dtype=np.float32)
        np.save(model_dir / "inputs" / f"{file_stem(vi.name)}.npy", feeds[vi.name])

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    # One thread: reduction order, hence the last bits of the reference, then
    # does not depend on the machine's core count.
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    outputs = session.run(None, feeds)
    for vi, value in zip(model.graph.output, outputs):
        np.save(model_dir / "outputs" / f"{file_stem(vi.name)}.npy", value)
    print(f"{name}: {len(data)} bytes, {len(model.graph.node)} nodes")


def main() -> int:
    if len(sys.argv) > 2:
        print(f"usage: {sys.argv[0]} [OUTDIR]", file=sys.stderr)
        return 2
    out_dir = Path(sys.argv[1]) if len(sys.argv) == 2 else REPO_ROOT / "examples" / "models"
    for name, build in MODELS.items():
        write_model(out_dir, name, build())
    return 0


if __name__ == "__main__":
    sys.exit(main())
