//! Stripping hand-built QDQ models: what is kept, what becomes float, what is refused.

use super::strip::{Grid, strip};
use crate::onnx::proto::type_proto::{self, Value as TypeValue};
use crate::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto,
};
use crate::onnx::{dtype_to_onnx, tensor_from_proto, tensor_to_proto};
use kiln_core::{DType, ErrorKind, Tensor};

fn node(op: &str, name: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
    NodeProto {
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        name: Some(name.into()),
        op_type: Some(op.into()),
        ..Default::default()
    }
}

fn with_axis(mut n: NodeProto, axis: i64) -> NodeProto {
    let mut a = AttributeProto {
        name: Some("axis".into()),
        i: Some(axis),
        ..Default::default()
    };
    a.set_type(crate::onnx::proto::attribute_proto::AttributeType::Int);
    n.attribute.push(a);
    n
}

fn info(name: &str, shape: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(type_proto::Tensor {
                elem_type: Some(dtype_to_onnx(DType::F32)),
                shape: Some(TensorShapeProto {
                    dim: shape
                        .iter()
                        .map(|&d| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                            denotation: None,
                        })
                        .collect(),
                }),
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

fn init<T: kiln_core::Element>(name: &str, shape: &[usize], v: Vec<T>) -> TensorProto {
    tensor_to_proto(name, &Tensor::from_vec(shape, v).unwrap())
}

fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, out: &str) -> ModelProto {
    ModelProto {
        ir_version: Some(9),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(20),
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: Some("t".into()),
            initializer: inits,
            input: vec![info("x", &[1, 4])],
            output: vec![info(out, &[1, 3])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// x → Q/DQ → MatMul(DQ(int8 w, per column)) → Q/DQ → y (a graph output).
fn matmul_model(y_zero: u8) -> ModelProto {
    let nodes = vec![
        node("QuantizeLinear", "qx", &["x", "sx", "zx"], &["xq"]),
        node("DequantizeLinear", "dqx", &["xq", "sx", "zx"], &["xd"]),
        with_axis(
            node("DequantizeLinear", "dqw", &["wq", "sw", "zw"], &["wd"]),
            1,
        ),
        node("MatMul", "mm", &["xd", "wd"], &["m"]),
        node("QuantizeLinear", "qm", &["m", "sy", "zy"], &["mq"]),
        node("DequantizeLinear", "dqm", &["mq", "sy", "zy"], &["y"]),
    ];
    let inits = vec![
        init("sx", &[], vec![0.5f32]),
        init("zx", &[], vec![3u8]),
        init("wq", &[4, 3], (0..12).map(|i| i as i8 - 6).collect()),
        init("sw", &[3], vec![0.25f32, 0.5, 1.0]),
        init("zw", &[3], vec![0i8; 3]),
        init("sy", &[], vec![0.125f32]),
        init("zy", &[], vec![y_zero]),
    ];
    model(nodes, inits, "y")
}

#[test]
fn pairs_become_grids_and_weights_become_floats() {
    let (m, qdq) = strip(&matmul_model(7), None).unwrap();
    let g = m.graph.as_ref().unwrap();
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type()).collect();
    assert_eq!(ops, ["MatMul"], "every pair is gone");
    assert_eq!(
        g.node[0].input,
        ["x", "wd"],
        "the MatMul reads x and the float weight"
    );
    assert_eq!(
        g.node[0].output,
        ["y"],
        "the producer takes the graph output's name"
    );
    assert_eq!(
        qdq.values["x"],
        Grid {
            scale: vec![0.5],
            zero: vec![3],
            qmin: 0,
            qmax: 255,
            axis: None
        }
    );
    assert_eq!(
        qdq.values["y"].zero,
        [7],
        "the graph output stays quantised"
    );
    let w = &qdq.consts["wd"];
    assert_eq!((w.axis, w.qmin, w.qmax), (Some(1), -128, 127));
    let wd = g.initializer.iter().find(|t| t.name() == "wd").unwrap();
    let wd = tensor_from_proto(wd, None).unwrap();
    // Row 0 holds codes -6, -5, -4 at scales 0.25, 0.5, 1.
    assert_eq!(&wd.to_f64_vec()[..3], &[-1.5, -2.5, -4.0]);
    assert!(qdq.edges.is_empty());
}

#[test]
fn a_zero_point_at_the_lowest_code_restores_the_removed_relu() {
    let (m, _) = strip(&matmul_model(0), None).unwrap();
    let g = m.graph.as_ref().unwrap();
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type()).collect();
    assert_eq!(ops, ["MatMul", "Relu"]);
    assert_eq!(g.node[1].output, ["y"]);
    assert_eq!(g.node[0].output, g.node[1].input);
}

#[test]
fn integer_tensors_read_as_integers_are_refused_by_name() {
    let mut m = matmul_model(7);
    // An op reading the quantised tensor itself.
    let g = m.graph.as_mut().unwrap();
    g.node.push(node("Cast", "peek", &["xq"], &["c"]));
    let e = strip(&m, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.to_string().contains("qx"), "{e}");
    assert!(e.to_string().contains("integer tensor"), "{e}");

    // A DequantizeLinear of something no QuantizeLinear produces.
    let mut m = matmul_model(7);
    let g = m.graph.as_mut().unwrap();
    g.node[1].input[0] = "x".into();
    let e = strip(&m, None).unwrap_err();
    assert!(e.to_string().contains("dqx"), "{e}");
}

#[test]
fn mismatched_pairs_and_bad_scales_are_errors() {
    let mut m = matmul_model(7);
    let g = m.graph.as_mut().unwrap();
    g.node[1].input[1] = "sy".into();
    let e = strip(&m, None).unwrap_err();
    assert!(e.to_string().contains("different parameters"), "{e}");

    let mut m = matmul_model(7);
    let g = m.graph.as_mut().unwrap();
    g.initializer[0] = init("sx", &[], vec![0.0f32]);
    let e = strip(&m, None).unwrap_err();
    assert!(e.to_string().contains("positive"), "{e}");
}
