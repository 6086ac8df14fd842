//! Graph-dialect ops → ONNX nodes.
//!
//! Most ops are ONNX ops under another spelling: the importer's table (`onnx::OPS`) maps
//! each ONNX op type to the graph op, and the graph op's attributes *are* the ONNX
//! attributes of the latest opset (the importer hands them to `Op::from_attrs` unchanged,
//! after `opset.rs` has moved legacy attributes into operands; the one attribute it
//! re-encodes, Cast's `to`, is written back as ONNX's type code). So such an op is written
//! back as the table's ONNX type with its own attributes and operands. Ops that only
//! kiln's passes create are spelled out: the fused compute ops (`compute.rs`), `swish`
//! (`x·sigmoid(x)`) and `eltwise_sum` (a chain of Mul and Add). Channels-last ops
//! (`layout="nhwc"`) have no ONNX form; the exporter expects a graph quantised without
//! `graph.layout` (see the module docs of `export`).

use super::builder::{Builder, attrs_except, int};
use super::compute;
use crate::onnx::{OPS, dtype_to_onnx};
use kiln_core::{Result, Tensor, bail, err};
use kiln_graph::Op;
use kiln_graph::ops::{Activation, UnaryKind};

/// The ONNX op type of a graph op that maps one to one, if any. The first entry of the
/// import table wins, which picks the op's own ONNX name over legacy aliases (Add over
/// Sum and Mean, Identity over Dropout, Resize over Upsample).
pub(super) fn onnx_type(kiln: &str) -> Option<&'static str> {
    if NOT_ONE_TO_ONE.contains(&kiln) {
        return None;
    }
    OPS.iter().find(|(_, k)| *k == kiln).map(|(o, _)| *o)
}

/// Graph ops in the import table that are *not* written back as that ONNX op: `const`
/// becomes an initializer, and the rest are fused or canonical forms handled below.
const NOT_ONE_TO_ONE: &[&str] = &["const", "conv", "conv_transpose", "gemm", "matmul"];

/// Emits one graph op. `ins`: operand names (`None` for absent operands); `ranks`: their
/// ranks; `outs`: the names its results must get.
pub(super) fn export(
    b: &mut Builder,
    op: &Op,
    ins: &[Option<String>],
    ranks: &[Option<usize>],
    outs: &[String],
) -> Result<()> {
    let single = || -> Result<&String> {
        match outs {
            [o] => Ok(o),
            _ => Err(err!(
                Unsupported,
                "{} with {} results cannot be exported",
                op.name(),
                outs.len()
            )),
        }
    };
    match op {
        Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm(_) | Op::MatMul(_) => {
            compute::export(b, op, ins, ranks, single()?)
        }
        Op::Unary(u) if u.kind == UnaryKind::Swish => {
            let x = operand(ins, 0, op)?;
            compute::activation(b, &Activation::Swish, &x, None, single()?)
        }
        Op::EltwiseSum(e) => eltwise_sum(b, &e.coeffs, ins, single()?),
        // The importer turns Cast's integer `to` into an element-type name.
        Op::Cast(c) => {
            let x = operand(ins, 0, op)?;
            let to = int("to", dtype_to_onnx(c.to) as i64);
            b.node("Cast", vec![x], vec![single()?.clone()], vec![to]);
            Ok(())
        }
        _ => {
            let attrs = op.attrs();
            if let Some(kiln_core::Attr::Str(l)) = attrs.get("layout")
                && l != "nchw"
            {
                bail!(
                    Unsupported,
                    "a channels-last (layout=\"{l}\") {} has no ONNX form: export a graph \
                     quantised without the graph.layout pass",
                    op.name()
                );
            }
            let Some(ty) = onnx_type(op.name()) else {
                bail!(
                    UnsupportedOp,
                    "the QDQ exporter has no ONNX form for graph op '{}'",
                    op.name()
                );
            };
            let inputs = ins
                .iter()
                .map(|i| i.clone().unwrap_or_default())
                .collect::<Vec<_>>();
            let mut inputs = inputs;
            while inputs.last().is_some_and(String::is_empty) {
                inputs.pop();
            }
            b.node(
                ty,
                inputs,
                outs.to_vec(),
                attrs_except(&attrs, |n| n == "layout"),
            );
            Ok(())
        }
    }
}

fn operand(ins: &[Option<String>], k: usize, op: &Op) -> Result<String> {
    ins.get(k)
        .cloned()
        .flatten()
        .ok_or_else(|| err!(InvalidModel, "{} lacks operand {k}", op.name()))
}

/// `Σ c_i·x_i` as Mul by scalar initializers (skipped for `c = 1`) and a chain of Adds
/// in operand order (the graph op accumulates in f64 and rounds once; the f32 chain differs
/// from it by float rounding only).
fn eltwise_sum(b: &mut Builder, coeffs: &[f32], ins: &[Option<String>], out: &str) -> Result<()> {
    let n = coeffs.len();
    if n == 0 || ins.len() != n || ins.iter().any(Option::is_none) {
        bail!(
            InvalidModel,
            "eltwise_sum has {} operands for {n} coefficients",
            ins.len()
        );
    }
    let mut terms = Vec::with_capacity(n);
    for (i, (x, &c)) in ins.iter().flatten().zip(coeffs).enumerate() {
        let last = n == 1 && i == 0;
        if c == 1.0 && !last {
            terms.push(x.clone());
            continue;
        }
        let k = b.initializer(&format!("{out}_coeff{i}"), &Tensor::scalar(c));
        let o = if last {
            out.to_string()
        } else {
            b.fresh(&format!("{out}/term{i}"))
        };
        b.node("Mul", vec![x.clone(), k], vec![o.clone()], vec![]);
        terms.push(o);
    }
    let mut acc = terms[0].clone();
    for (i, t) in terms.iter().enumerate().skip(1) {
        let o = if i + 1 == n {
            out.to_string()
        } else {
            b.fresh(&format!("{out}/sum{i}"))
        };
        b.node("Add", vec![acc, t.clone()], vec![o.clone()], vec![]);
        acc = o;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_to_one_ops_get_their_own_onnx_name() {
        assert_eq!(onnx_type("add"), Some("Add"), "not Sum or Mean");
        assert_eq!(onnx_type("identity"), Some("Identity"), "not Dropout");
        assert_eq!(onnx_type("resize"), Some("Resize"), "not Upsample");
        assert_eq!(onnx_type("max"), Some("Max"));
        assert_eq!(onnx_type("global_average_pool"), Some("GlobalAveragePool"));
        assert_eq!(onnx_type("conv"), None, "compute ops are split, not mapped");
        assert_eq!(onnx_type("swish"), None);
    }

    #[test]
    fn fused_epilogues_split_into_standard_nodes() {
        let conv = Op::from_attrs(
            "conv",
            kiln_core::Attrs::new()
                .str("act", "hard_swish", "none")
                .ints("kernel_shape", &[1, 1]),
        )
        .unwrap();
        let mut b = Builder::default();
        let ins = [
            Some("x".into()),
            Some("w".into()),
            Some("b".into()),
            Some("r".into()),
        ];
        let ranks = [Some(4); 4];
        export(&mut b, &conv, &ins, &ranks, &["y".into()]).unwrap();
        let ops: Vec<&str> = b.nodes.iter().map(|n| n.op_type()).collect();
        assert_eq!(ops, ["Conv", "Add", "HardSwish"]);
        assert_eq!(b.nodes[2].output, ["y"]);
        assert!(
            b.nodes[0]
                .attribute
                .iter()
                .all(|a| !a.name().starts_with("act")),
            "kiln's act attribute is not ONNX's"
        );
        let mm = Op::from_attrs(
            "matmul",
            kiln_core::Attrs::new()
                .int("transB", 1, 0)
                .str("act", "swish", "none"),
        )
        .unwrap();
        let mut b = Builder::default();
        let ins = [Some("a".into()), Some("w".into()), Some("bias".into())];
        export(
            &mut b,
            &mm,
            &ins,
            &[Some(3), Some(2), Some(1)],
            &["y".into()],
        )
        .unwrap();
        let ops: Vec<&str> = b.nodes.iter().map(|n| n.op_type()).collect();
        assert_eq!(ops, ["Transpose", "MatMul", "Add", "Sigmoid", "Mul"]);
        assert_eq!(b.nodes[4].output, ["y"]);
    }

    #[test]
    fn channels_last_ops_are_refused() {
        let pool = Op::from_attrs(
            "max_pool",
            kiln_core::Attrs::new()
                .ints("kernel_shape", &[2, 2])
                .str("layout", "nhwc", "nchw"),
        )
        .unwrap();
        let e = export(
            &mut Builder::default(),
            &pool,
            &[Some("x".into())],
            &[Some(4)],
            &["y".into()],
        )
        .unwrap_err();
        assert!(e.to_string().contains("graph.layout"), "{e}");
    }
}
