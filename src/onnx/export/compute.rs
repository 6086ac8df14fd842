//! The fused compute ops, split back into standard ONNX.
//!
//! kiln's `conv`, `conv_transpose`, `gemm` and `matmul` compute `act(W·x + b + Y)` in one op (the graph
//! dialect's epilogue, `ops/activation.rs`). ONNX has no such op, so each becomes the
//! compute node, then `Add(Y)` when there is a residual, then the activation as its own
//! node(s). A MatMul bias becomes an `Add` (ONNX's MatMul has none) and a transposed
//! MatMul operand a `Transpose` of its last two axes. The simulator quantises the fused
//! op's *result*, after the activation, and that is where the Q/DQ pair of the result goes
//! (see `qdq.rs`): the intermediate sums stay float, as they stay in registers on a device.

use super::builder::{Builder, attrs_except, float, string};
use kiln_core::{Result, Tensor, bail, ensure};
use kiln_graph::Op;
use kiln_graph::ops::Activation;
use kiln_graph::ops::activation::{RESIDUAL, SLOPE};

/// Emits a compute op. `ins` are the operand names (absent operands `None`) and `ranks`
/// their ranks, `out` the name the last node must write.
pub(super) fn export(
    b: &mut Builder,
    op: &Op,
    ins: &[Option<String>],
    ranks: &[Option<usize>],
    out: &str,
) -> Result<()> {
    let x = ins.first().cloned().flatten();
    let w = ins.get(1).cloned().flatten();
    let (Some(x), Some(w)) = (x, w) else {
        bail!(
            InvalidModel,
            "{} needs its data and weight operands",
            op.name()
        );
    };
    let bias = ins.get(2).cloned().flatten();
    let residual = ins.get(RESIDUAL).cloned().flatten();
    let slope = ins.get(SLOPE).cloned().flatten();
    let act = match op {
        Op::Conv(c) => c.act,
        Op::ConvTranspose(c) => c.act,
        Op::Gemm(g) => g.act,
        Op::MatMul(m) => m.act,
        _ => bail!(UnsupportedOp, "{} is not a compute op", op.name()),
    };
    let plain = residual.is_none() && act.is_none();
    // Every node but the last writes a fresh name.
    let last = |b: &mut Builder, base: &str, done: bool| {
        if done {
            out.to_string()
        } else {
            b.fresh(&format!("{out}/{base}"))
        }
    };
    let mut y = match op {
        Op::Conv(c) => {
            ensure!(
                !c.layout.is_nhwc(),
                Unsupported,
                "a channels-last (layout=\"nhwc\") conv has no ONNX form: export a graph \
                 quantised without the graph.layout pass"
            );
            let skip = |n: &str| n == "layout" || n == "act" || n.starts_with("act_");
            let mut operands = vec![x, w];
            operands.extend(bias);
            let o = last(b, "conv", plain);
            b.node(
                "Conv",
                operands,
                vec![o.clone()],
                attrs_except(&op.attrs(), skip),
            );
            o
        }
        Op::ConvTranspose(_) | Op::Gemm(_) => {
            let ty = if matches!(op, Op::Gemm(_)) {
                "Gemm"
            } else {
                "ConvTranspose"
            };
            let skip = |n: &str| n == "act" || n.starts_with("act_");
            let mut operands = vec![x, w];
            operands.extend(bias);
            let o = last(b, &ty.to_lowercase(), plain);
            b.node(
                ty,
                operands,
                vec![o.clone()],
                attrs_except(&op.attrs(), skip),
            );
            o
        }
        Op::MatMul(m) => {
            let rank = |k: usize| ranks.get(k).copied().flatten().unwrap_or(0);
            let a = if m.trans_a {
                swap_last(b, &x, rank(0))?
            } else {
                x
            };
            let wt = if m.trans_b {
                swap_last(b, &w, rank(1))?
            } else {
                w
            };
            let done = plain && bias.is_none();
            let o = last(b, "matmul", done);
            b.node("MatMul", vec![a, wt], vec![o.clone()], vec![]);
            match bias {
                Some(bias) => {
                    let o2 = last(b, "bias", plain);
                    b.node("Add", vec![o, bias], vec![o2.clone()], vec![]);
                    o2
                }
                None => o,
            }
        }
        _ => unreachable!("matched above"),
    };
    if let Some(r) = residual {
        let o = last(b, "residual", act.is_none());
        b.node("Add", vec![y, r], vec![o.clone()], vec![]);
        y = o;
    }
    if !act.is_none() {
        activation(b, &act, &y, slope, out)?;
    }
    Ok(())
}

/// `Transpose` of the last two axes of `x`, a tensor of rank `rank`.
fn swap_last(b: &mut Builder, x: &str, rank: usize) -> Result<String> {
    ensure!(
        rank >= 2,
        Shape,
        "a transposed matmul operand needs rank >= 2"
    );
    let mut perm: Vec<i64> = (0..rank as i64).collect();
    perm.swap(rank - 2, rank - 1);
    Ok(b.node1(
        "Transpose",
        &format!("{x}_transposed"),
        vec![x.to_string()],
        vec![super::builder::ints("perm", &perm)],
    ))
}

/// Emits activation `act` of `x` writing `out`.
pub(super) fn activation(
    b: &mut Builder,
    act: &Activation,
    x: &str,
    slope: Option<String>,
    out: &str,
) -> Result<()> {
    let one = |b: &mut Builder, ty: &str, attrs| {
        b.node(ty, vec![x.to_string()], vec![out.to_string()], attrs);
    };
    match *act {
        Activation::None => bail!(InvalidModel, "no activation to emit"),
        Activation::Relu => one(b, "Relu", vec![]),
        Activation::Sigmoid => one(b, "Sigmoid", vec![]),
        Activation::Tanh => one(b, "Tanh", vec![]),
        Activation::HardSwish => one(b, "HardSwish", vec![]),
        Activation::LeakyRelu { alpha } => one(b, "LeakyRelu", vec![float("alpha", alpha)]),
        Activation::HardSigmoid { alpha, beta } => one(
            b,
            "HardSigmoid",
            vec![float("alpha", alpha), float("beta", beta)],
        ),
        Activation::Gelu { tanh } => one(
            b,
            "Gelu",
            vec![string("approximate", if tanh { "tanh" } else { "none" })],
        ),
        Activation::Clip { min, max } => {
            let bound = |b: &mut Builder, v: f32, what: &str| {
                if v.is_finite() {
                    b.initializer(&format!("{out}_{what}"), &Tensor::scalar(v))
                } else {
                    String::new()
                }
            };
            let lo = bound(b, min, "min");
            let hi = bound(b, max, "max");
            b.node(
                "Clip",
                vec![x.to_string(), lo, hi],
                vec![out.to_string()],
                vec![],
            );
        }
        Activation::PRelu => {
            let Some(s) = slope else {
                bail!(InvalidModel, "a prelu epilogue needs its slope operand");
            };
            b.node(
                "PRelu",
                vec![x.to_string(), s],
                vec![out.to_string()],
                vec![],
            );
        }
        Activation::Swish => {
            // x·sigmoid(x): ONNX has no Swish op at opset 20.
            let s = b.node1(
                "Sigmoid",
                &format!("{out}/sigmoid"),
                vec![x.to_string()],
                vec![],
            );
            b.node("Mul", vec![x.to_string(), s], vec![out.to_string()], vec![]);
        }
    }
    Ok(())
}
