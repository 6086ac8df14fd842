//! The ONNX importer on small models built here with prost: one test per opset rewrite
//! (checking the resulting ops, their constant operands and, through the interpreter, the
//! numbers; `rewrites.rs`), external data and every error kind the importer reports
//! (`errors.rs`), and, here, structure: names, old-style weights-as-inputs, input shapes.

use kiln::onnx::proto::attribute_proto::AttributeType;
use kiln::onnx::proto::tensor_proto::{DataLocation, DataType};
use kiln::onnx::proto::tensor_shape_proto::{Dimension, dimension};
use kiln::onnx::proto::*;
use kiln::onnx::{ImportOptions, import_model, load_model, tensor_to_proto};
use kiln_core::{Attr, ErrorKind, Location, Result, Tensor};
use kiln_graph::{Graph, NodeId, Op};
use prost::Message;
use std::collections::HashMap;

// ----- building models -----

fn dims_of(dims: &[i64]) -> Vec<Dimension> {
    dims.iter()
        .map(|&d| Dimension {
            value: Some(dimension::Value::DimValue(d)),
            denotation: None,
        })
        .collect()
}

fn sym(name: &str) -> Dimension {
    Dimension {
        value: Some(dimension::Value::DimParam(name.into())),
        denotation: None,
    }
}

fn vi_dims(name: &str, dt: DataType, dims: Option<Vec<Dimension>>) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(dt as i32),
                shape: dims.map(|dim| TensorShapeProto { dim }),
            })),
            denotation: None,
        }),
        ..Default::default()
    }
}

fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    vi_dims(name, DataType::Float, Some(dims_of(dims)))
}

/// An output whose shape is left to inference.
fn out(name: &str) -> ValueInfoProto {
    vi_dims(name, DataType::Float, None)
}

fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(ty as i32),
        ..Default::default()
    }
}
fn a_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        i: Some(v),
        ..attr(name, AttributeType::Int)
    }
}
fn a_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..attr(name, AttributeType::Ints)
    }
}
fn a_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        f: Some(v),
        ..attr(name, AttributeType::Float)
    }
}
fn a_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        floats: v.to_vec(),
        ..attr(name, AttributeType::Floats)
    }
}
fn a_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        s: Some(v.as_bytes().to_vec()),
        ..attr(name, AttributeType::String)
    }
}
fn a_tensor(name: &str, t: &Tensor) -> AttributeProto {
    AttributeProto {
        t: Some(tensor_to_proto("", t)),
        ..attr(name, AttributeType::Tensor)
    }
}

fn node(
    op: &str,
    name: &str,
    ins: &[&str],
    outs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).unwrap()
}
fn i64s(v: &[i64]) -> Tensor {
    Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
}
/// 0, 1, 2, ... as f32.
fn iota(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    f32s(shape, &(0..n).map(|i| i as f32).collect::<Vec<_>>())
}

struct M {
    opset: i64,
    ir: i64,
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    inits: Vec<TensorProto>,
}

impl M {
    fn new(
        opset: i64,
        nodes: Vec<NodeProto>,
        inputs: Vec<ValueInfoProto>,
        outputs: Vec<ValueInfoProto>,
    ) -> M {
        M {
            opset,
            ir: 7,
            nodes,
            inputs,
            outputs,
            inits: Vec::new(),
        }
    }
    fn init(mut self, name: &str, t: &Tensor) -> M {
        self.inits.push(tensor_to_proto(name, t));
        self
    }
    fn bytes(&self) -> Vec<u8> {
        ModelProto {
            ir_version: Some(self.ir),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(self.opset),
            }],
            graph: Some(GraphProto {
                name: Some("test graph".into()),
                node: self.nodes.clone(),
                input: self.inputs.clone(),
                output: self.outputs.clone(),
                initializer: self.inits.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }
    fn import(&self) -> Result<Graph> {
        import_model(&self.bytes(), &ImportOptions::default())
    }
    fn import_with(&self, shapes: &[(&str, &[usize])]) -> Result<Graph> {
        let shapes: HashMap<String, Vec<usize>> = shapes
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_vec()))
            .collect();
        import_model(
            &self.bytes(),
            &ImportOptions {
                shapes,
                ..ImportOptions::default()
            },
        )
    }
}

/// A one-node model with input `x` and output `y`.
fn unary(opset: i64, op: &str, x: &[i64], attrs: Vec<AttributeProto>) -> M {
    M::new(
        opset,
        vec![node(op, "n", &["x"], &["y"], attrs)],
        vec![vi("x", x)],
        vec![out("y")],
    )
}

// ----- inspecting graphs -----

/// Op names in execution order, constants left out.
fn ops(g: &Graph) -> Vec<&'static str> {
    g.topo_order()
        .unwrap()
        .into_iter()
        .map(|n| g.node(n).op.name())
        .filter(|n| *n != "const")
        .collect()
}

fn find(g: &Graph, op: &str) -> NodeId {
    let found: Vec<NodeId> = g
        .node_ids()
        .into_iter()
        .filter(|&n| g.node(n).op.name() == op)
        .collect();
    assert_eq!(found.len(), 1, "expected one {op}, graph has {:?}", ops(g));
    found[0]
}

/// The constant value of operand `k` of `n`, `None` when the operand is omitted.
fn operand(g: &Graph, n: NodeId, k: usize) -> Option<Tensor> {
    let v = g.node(n).input(k)?;
    let p = g
        .producer(v)
        .unwrap_or_else(|| panic!("operand {k} is not produced by a node"));
    match &g.node(p).op {
        Op::Const(c) => Some(c.tensor().unwrap().clone()),
        other => panic!("operand {k} comes from {}, not a constant", other.name()),
    }
}

fn attr_of(g: &Graph, n: NodeId, name: &str) -> Option<Attr> {
    g.node(n).op.attrs().get(name).cloned()
}

fn s(v: &str) -> Option<Attr> {
    Some(Attr::Str(v.into()))
}

fn run(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    kiln_graph::interp::run(g, inputs).unwrap()
}

fn assert_close(got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape());
    for (a, b) in got.to_f64_vec().iter().zip(want.to_f64_vec()) {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "got {got:?}\nwant {want:?}"
        );
    }
}

/// Asserts the error kind and that it is located at node `at` (if given).
fn expect_err(r: Result<Graph>, kind: ErrorKind, at: Option<&str>, needle: &str) {
    let e = r.expect_err("import should fail");
    assert_eq!(e.kind, kind, "{e}");
    if let Some(at) = at {
        assert!(
            matches!(&e.location, Location::Node { name, .. } if name == at),
            "not located at '{at}': {e}"
        );
    }
    assert!(e.to_string().contains(needle), "'{needle}' not in: {e}");
}

// ----- structure -----

#[test]
fn names_initializers_and_types_are_kept() {
    let m = M::new(
        13,
        vec![node("MatMul", "mm", &["x", "w"], &["y"], vec![])],
        vec![vi("x", &[2, 3])],
        vec![vi("y", &[2, 4])],
    )
    .init("w", &iota(&[3, 4]));
    let g = m.import().unwrap();
    assert_eq!(g.name, "test graph");
    assert_eq!(g.inputs().len(), 1);
    let mm = find(&g, "matmul");
    assert_eq!(g.node(mm).name, "mm");
    assert_eq!(operand(&g, mm, 1), Some(iota(&[3, 4])));
    assert_eq!(g.value(g.node(mm).input(1).unwrap()).name, "w");
    let y = g.outputs()[0];
    assert_eq!(g.value(y).name, "y");
    assert_eq!(g.ty(y).unwrap().shape, vec![2, 4]);
}

#[test]
fn initializers_listed_as_inputs_are_constants() {
    // IR 3 models list every weight among the graph inputs.
    let mut m = M::new(
        8,
        vec![node("Add", "add", &["x", "b"], &["y"], vec![])],
        vec![vi("x", &[3]), vi("b", &[3])],
        vec![out("y")],
    )
    .init("b", &f32s(&[3], &[1.0, 2.0, 3.0]));
    m.ir = 3;
    let g = m.import().unwrap();
    assert_eq!(g.inputs().len(), 1);
    assert_eq!(g.value(g.inputs()[0]).name, "x");
    let y = run(&g, &[f32s(&[3], &[1.0, 1.0, 1.0])]);
    assert_eq!(y[0], f32s(&[3], &[2.0, 3.0, 4.0]));
}

#[test]
fn symbolic_dims_need_a_shape() {
    let m = M::new(
        13,
        vec![node("Relu", "relu", &["tokens"], &["y"], vec![])],
        vec![vi_dims(
            "tokens",
            DataType::Float,
            Some(vec![sym("batch"), dims_of(&[16])[0].clone()]),
        )],
        vec![vi_dims(
            "y",
            DataType::Float,
            Some(vec![sym("batch"), dims_of(&[16])[0].clone()]),
        )],
    );
    expect_err(m.import(), ErrorKind::Input, None, "'tokens'");
    let g = m.import_with(&[("tokens", &[3, 16])]).unwrap();
    assert_eq!(g.ty(g.outputs()[0]).unwrap().shape, vec![3, 16]);
    expect_err(
        m.import_with(&[("tokens", &[3])]),
        ErrorKind::Input,
        None,
        "rank",
    );
    expect_err(
        m.import_with(&[("tokens", &[3, 16]), ("nope", &[1])]),
        ErrorKind::Input,
        None,
        "'nope'",
    );

    // A negative dim_value, or no shape at all, is just as unknown; 0 is an empty tensor.
    let negative = unary(13, "Relu", &[-1, 4], vec![]);
    expect_err(negative.import(), ErrorKind::Input, None, "'x'");
    let empty = unary(13, "Relu", &[0, 4], vec![]).import().unwrap();
    assert_eq!(empty.ty(empty.inputs()[0]).unwrap().shape, vec![0, 4]);
    let shapeless = M::new(
        13,
        vec![node("Relu", "r", &["x"], &["y"], vec![])],
        vec![vi_dims("x", DataType::Float, None)],
        vec![out("y")],
    );
    expect_err(shapeless.import(), ErrorKind::Input, None, "'x'");
    assert_eq!(
        shapeless
            .import_with(&[("x", &[2])])
            .unwrap()
            .inputs()
            .len(),
        1
    );
}

#[test]
fn uses_may_precede_definitions() {
    let m = M::new(
        13,
        vec![
            node("Relu", "second", &["t"], &["y"], vec![]),
            node("Neg", "first", &["x"], &["t"], vec![]),
        ],
        vec![vi("x", &[2])],
        vec![out("y")],
    );
    let g = m.import().unwrap();
    assert_eq!(ops(&g), vec!["neg", "relu"]);
}

mod errors;
mod rewrites;
