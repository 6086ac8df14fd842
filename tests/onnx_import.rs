//! The ONNX importer on small models built here with prost: one test per opset rewrite
//! (checking the resulting ops, their constant operands and, through the interpreter, the
//! numbers), external data, old-style weights-as-inputs, input shapes, and every error kind
//! the importer reports.

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
                base_dir: None,
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

// ----- opset rewrites -----

#[test]
fn clip_6_bounds_become_operands() {
    let g = unary(
        9,
        "Clip",
        &[4],
        vec![a_float("min", -1.0), a_float("max", 2.0)],
    )
    .import()
    .unwrap();
    let c = find(&g, "clip");
    assert_eq!(operand(&g, c, 1), Some(Tensor::scalar(-1.0f32)));
    assert_eq!(operand(&g, c, 2), Some(Tensor::scalar(2.0f32)));
    assert_eq!(
        run(&g, &[f32s(&[4], &[-3.0, 0.5, 1.5, 9.0])])[0],
        f32s(&[4], &[-1.0, 0.5, 1.5, 2.0])
    );

    let g = unary(9, "Clip", &[4], vec![a_float("max", 6.0)])
        .import()
        .unwrap();
    let c = find(&g, "clip");
    assert_eq!(operand(&g, c, 1), None);
    assert_eq!(operand(&g, c, 2), Some(Tensor::scalar(6.0f32)));
}

#[test]
fn slice_1_ranges_become_operands() {
    let attrs = vec![
        a_ints("starts", &[1, 0]),
        a_ints("ends", &[3, 100]),
        a_ints("axes", &[0, 1]),
    ];
    let g = unary(9, "Slice", &[4, 3], attrs).import().unwrap();
    let sl = find(&g, "slice");
    assert_eq!(operand(&g, sl, 1), Some(i64s(&[1, 0])));
    assert_eq!(operand(&g, sl, 2), Some(i64s(&[3, 100])));
    assert_eq!(operand(&g, sl, 3), Some(i64s(&[0, 1])));
    assert_eq!(operand(&g, sl, 4), None);
    assert_eq!(
        run(&g, &[iota(&[4, 3])])[0],
        f32s(&[2, 3], &[3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    );
    expect_err(
        unary(9, "Slice", &[4], vec![a_ints("ends", &[1])]).import(),
        ErrorKind::Attribute,
        Some("n"),
        "starts",
    );
}

#[test]
fn squeeze_and_unsqueeze_11_axes_become_operands() {
    let g = unary(11, "Unsqueeze", &[3], vec![a_ints("axes", &[0, 2])])
        .import()
        .unwrap();
    let u = find(&g, "unsqueeze");
    assert_eq!(operand(&g, u, 1), Some(i64s(&[0, 2])));
    assert_eq!(g.ty(g.outputs()[0]).unwrap().shape, vec![1, 3, 1]);

    let g = unary(11, "Squeeze", &[1, 3, 1], vec![a_ints("axes", &[-1])])
        .import()
        .unwrap();
    assert_eq!(operand(&g, find(&g, "squeeze"), 1), Some(i64s(&[-1])));
    assert_eq!(g.ty(g.outputs()[0]).unwrap().shape, vec![1, 3]);

    let g = unary(11, "Squeeze", &[1, 3, 1], vec![]).import().unwrap();
    assert_eq!(operand(&g, find(&g, "squeeze"), 1), None);
    assert_eq!(g.ty(g.outputs()[0]).unwrap().shape, vec![3]);

    expect_err(
        unary(11, "Unsqueeze", &[3], vec![]).import(),
        ErrorKind::Attribute,
        Some("n"),
        "axes",
    );
}

#[test]
fn split_sizes_become_an_operand() {
    let split = |opset, attrs| {
        M::new(
            opset,
            vec![node("Split", "sp", &["x"], &["a", "b"], attrs)],
            vec![vi("x", &[2, 5])],
            vec![out("a"), out("b")],
        )
    };
    let g = split(11, vec![a_int("axis", 1), a_ints("split", &[2, 3])])
        .import()
        .unwrap();
    let sp = find(&g, "split");
    assert_eq!(operand(&g, sp, 1), Some(i64s(&[2, 3])));
    assert_eq!(g.ty(g.outputs()[1]).unwrap().shape, vec![2, 3]);
    // Opset 18: num_outputs, uneven split (the last piece is smaller).
    let g = split(18, vec![a_int("axis", 1), a_int("num_outputs", 2)])
        .import()
        .unwrap();
    assert_eq!(operand(&g, find(&g, "split"), 1), None);
    assert_eq!(g.ty(g.outputs()[0]).unwrap().shape, vec![2, 3]);
    assert_eq!(g.ty(g.outputs()[1]).unwrap().shape, vec![2, 2]);
}

#[test]
fn pad_2_amounts_and_value_become_operands() {
    let g = unary(
        10,
        "Pad",
        &[2],
        vec![a_ints("pads", &[1, 2]), a_float("value", 7.0)],
    )
    .import()
    .unwrap();
    let p = find(&g, "pad");
    assert_eq!(operand(&g, p, 1), Some(i64s(&[1, 2])));
    assert_eq!(operand(&g, p, 2), Some(Tensor::scalar(7.0f32)));
    assert_eq!(
        run(&g, &[f32s(&[2], &[1.0, 2.0])])[0],
        f32s(&[5], &[7.0, 1.0, 2.0, 7.0, 7.0])
    );

    let g = unary(
        10,
        "Pad",
        &[3],
        vec![a_ints("pads", &[2, 0]), a_str("mode", "reflect")],
    )
    .import()
    .unwrap();
    let p = find(&g, "pad");
    assert_eq!(operand(&g, p, 2), None);
    assert_eq!(attr_of(&g, p, "mode"), s("reflect"));
    assert_eq!(
        run(&g, &[f32s(&[3], &[1.0, 2.0, 3.0])])[0],
        f32s(&[5], &[3.0, 2.0, 1.0, 2.0, 3.0])
    );
}

#[test]
fn reduce_axes_become_operands_before_13_or_18() {
    for (opset, op, kiln) in [
        (11, "ReduceMean", "reduce_mean"),
        (17, "ReduceMax", "reduce_max"),
        (12, "ReduceSum", "reduce_sum"),
    ] {
        let g = unary(
            opset,
            op,
            &[2, 3],
            vec![a_ints("axes", &[1]), a_int("keepdims", 0)],
        )
        .import()
        .unwrap();
        let r = find(&g, kiln);
        assert_eq!(operand(&g, r, 1), Some(i64s(&[1])), "{op}-{opset}");
        assert_eq!(g.ty(g.outputs()[0]).unwrap().shape, vec![2], "{op}-{opset}");
    }
    // No axes: every axis, no operand.
    let g = unary(11, "ReduceSum", &[2, 3], vec![]).import().unwrap();
    assert_eq!(operand(&g, find(&g, "reduce_sum"), 1), None);
    assert_eq!(run(&g, &[iota(&[2, 3])])[0], f32s(&[1, 1], &[15.0]));
    // ReduceSum-13 already takes an operand; an axes attribute there is an error.
    let m = M::new(
        13,
        vec![node("ReduceSum", "r", &["x", "axes"], &["y"], vec![])],
        vec![vi("x", &[2, 3])],
        vec![out("y")],
    )
    .init("axes", &i64s(&[0]));
    assert_eq!(
        run(&m.import().unwrap(), &[iota(&[2, 3])])[0],
        f32s(&[1, 3], &[3.0, 5.0, 7.0])
    );
    expect_err(
        unary(13, "ReduceSum", &[2, 3], vec![a_ints("axes", &[0])]).import(),
        ErrorKind::Attribute,
        Some("n"),
        "axes",
    );
}

/// Nearest resize with x_in = x_out / scale rounded down (up where the axis shrinks).
fn legacy_nearest(x: &Tensor, scales: &[f32]) -> Tensor {
    let shape = x.shape().to_vec();
    let out: Vec<usize> = shape
        .iter()
        .zip(scales)
        .map(|(&d, &s)| (d as f32 * s).floor() as usize)
        .collect();
    let xs = x.to_f64_vec();
    let n: usize = out.iter().product();
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let (mut rem, mut src, mut stride) = (i, 0, 1);
        for ax in (0..out.len()).rev() {
            let o = rem % out[ax];
            rem /= out[ax];
            let f = o as f32 / scales[ax];
            let k = if scales[ax] < 1.0 {
                f.ceil()
            } else {
                f.floor()
            } as usize;
            src += k.min(shape[ax] - 1) * stride;
            stride *= shape[ax];
        }
        v.push(xs[src] as f32);
    }
    f32s(&out, &v)
}

#[test]
fn upsample_is_an_asymmetric_resize() {
    let scales = [1.0f32, 1.0, 2.0, 3.0];
    let x = iota(&[1, 1, 2, 3]);
    // Opset 7: scales attribute.
    let g = unary(
        7,
        "Upsample",
        &[1, 1, 2, 3],
        vec![a_floats("scales", &scales)],
    )
    .import()
    .unwrap();
    let r = find(&g, "resize");
    assert_eq!(g.node(r).name, "n");
    assert_eq!(operand(&g, r, 1), None);
    assert_eq!(operand(&g, r, 2), Some(f32s(&[4], &scales)));
    assert_eq!(
        attr_of(&g, r, "coordinate_transformation_mode"),
        s("asymmetric")
    );
    assert_eq!(attr_of(&g, r, "nearest_mode"), s("floor"));
    assert_eq!(run(&g, &[x.clone()])[0], legacy_nearest(&x, &scales));
    // Opset 9: scales operand; linear mode.
    let m = M::new(
        9,
        vec![node(
            "Upsample",
            "up",
            &["x", "sc"],
            &["y"],
            vec![a_str("mode", "linear")],
        )],
        vec![vi("x", &[1, 1, 2, 3])],
        vec![out("y")],
    )
    .init("sc", &f32s(&[4], &[1.0, 1.0, 2.0, 2.0]));
    let g = m.import().unwrap();
    let r = find(&g, "resize");
    assert_eq!(attr_of(&g, r, "mode"), s("linear"));
    assert_eq!(
        attr_of(&g, r, "coordinate_transformation_mode"),
        s("asymmetric")
    );
    // onnxruntime, Upsample-9 linear, same input and scales.
    let want = [
        0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 1.5, 2.0, 2.5, 3.0, 3.5, 3.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.0,
        3.0, 3.5, 4.0, 4.5, 5.0, 5.0,
    ];
    assert_close(&run(&g, &[x])[0], &f32s(&[1, 1, 4, 6], &want));
}

#[test]
fn resize_10_rounds_like_onnxruntime() {
    let resize10 = |scales: &[f32]| {
        M::new(
            10,
            vec![node("Resize", "rs", &["x", "sc"], &["y"], vec![])],
            vec![vi("x", &[1, 1, 5, 7])],
            vec![out("y")],
        )
        .init("sc", &f32s(&[4], scales))
    };
    let x = iota(&[1, 1, 5, 7]);
    // Growing and shrinking axes at once: two resizes, the shrinking one rounding up.
    let scales = [1.0, 1.0, 0.6, 1.7];
    let g = resize10(&scales).import().unwrap();
    assert_eq!(ops(&g), vec!["resize", "resize"]);
    let y = run(&g, &[x.clone()]);
    assert_eq!(y[0], legacy_nearest(&x, &scales));
    // Checked against onnxruntime: row 1 of the output is input row 2 (1 / 0.6 rounded up).
    assert_eq!(y[0].to_f64_vec()[11..14], [14.0, 14.0, 15.0]);
    let g = resize10(&[1.0, 1.0, 0.6, 0.8]).import().unwrap();
    let r = find(&g, "resize");
    assert_eq!(attr_of(&g, r, "nearest_mode"), s("ceil"));
    assert_eq!(
        run(&g, &[x.clone()])[0],
        legacy_nearest(&x, &[1.0, 1.0, 0.6, 0.8])
    );
}

#[test]
fn resize_11_normalises_operands_and_modes() {
    let resize = |opset, attrs| {
        M::new(
            opset,
            vec![node(
                "Resize",
                "rs",
                &["x", "roi", "sc", "sz"],
                &["y"],
                attrs,
            )],
            vec![vi("x", &[1, 1, 2, 2])],
            vec![out("y")],
        )
        .init("roi", &f32s(&[0], &[]))
        .init("sc", &f32s(&[0], &[]))
        .init("sz", &i64s(&[1, 1, 4, 4]))
    };
    // Empty roi and scales tensors mean "not given".
    let g = resize(13, vec![]).import().unwrap();
    let r = find(&g, "resize");
    assert_eq!(operand(&g, r, 1), None);
    assert_eq!(operand(&g, r, 2), None);
    assert_eq!(operand(&g, r, 3), Some(i64s(&[1, 1, 4, 4])));
    assert_eq!(g.ty(g.outputs()[0]).unwrap().shape, vec![1, 1, 4, 4]);
    // tf_half_pixel_for_nn = half_pixel shifted by 0.5, folded into the rounding.
    let g = resize(
        11,
        vec![a_str(
            "coordinate_transformation_mode",
            "tf_half_pixel_for_nn",
        )],
    )
    .import()
    .unwrap();
    let r = find(&g, "resize");
    assert_eq!(
        attr_of(&g, r, "coordinate_transformation_mode"),
        None,
        "half_pixel is the default"
    );
    assert_eq!(attr_of(&g, r, "nearest_mode"), s("ceil"));
    let attrs = vec![
        a_str("coordinate_transformation_mode", "tf_half_pixel_for_nn"),
        a_str("mode", "linear"),
    ];
    expect_err(
        resize(11, attrs).import(),
        ErrorKind::Unsupported,
        Some("rs"),
        "tf_half_pixel_for_nn",
    );
}

#[test]
fn softmax_before_13_is_coerced_to_2d() {
    let g = unary(11, "Softmax", &[2, 2, 3], vec![a_int("axis", 1)])
        .import()
        .unwrap();
    assert_eq!(ops(&g), vec!["flatten", "softmax", "shape", "reshape"]);
    let sm = find(&g, "softmax");
    assert_eq!(g.node(sm).name, "n");
    assert_eq!(attr_of(&g, sm, "axis"), Some(Attr::Int(1)));
    assert_eq!(g.ty(g.outputs()[0]).unwrap().shape, vec![2, 2, 3]);
    let x = iota(&[2, 2, 3]);
    // Each batch row's 6 values share one softmax.
    let row: Vec<f64> = (0..6).map(|i| (i as f64 - 5.0).exp()).collect();
    let sum: f64 = row.iter().sum();
    let want: Vec<f32> = (0..12).map(|i| (row[i % 6] / sum) as f32).collect();
    assert_close(&run(&g, &[x])[0], &f32s(&[2, 2, 3], &want));
    let g = unary(12, "LogSoftmax", &[2, 3], vec![]).import().unwrap();
    assert_eq!(ops(&g), vec!["flatten", "log_softmax", "shape", "reshape"]);
}

#[test]
fn dropout_is_the_identity() {
    let m = M::new(
        12,
        vec![node(
            "Dropout",
            "d",
            &["x"],
            &["y", "mask"],
            vec![a_int("seed", 3)],
        )],
        vec![vi("x", &[2])],
        vec![out("y")],
    );
    let g = m.import().unwrap();
    assert_eq!(ops(&g), vec!["identity"]);
    let used = M::new(
        12,
        vec![node("Dropout", "d", &["x"], &["y", "mask"], vec![])],
        vec![vi("x", &[2])],
        vec![out("y"), out("mask")],
    );
    expect_err(used.import(), ErrorKind::Unsupported, Some("d"), "mask");
    let training = M::new(
        12,
        vec![node("Dropout", "d", &["x", "", "t"], &["y"], vec![])],
        vec![vi("x", &[2])],
        vec![out("y")],
    )
    .init("t", &Tensor::scalar(true));
    expect_err(
        training.import(),
        ErrorKind::Unsupported,
        Some("d"),
        "training",
    );
}

#[test]
fn batch_normalization_legacy_forms() {
    let bn = |opset, outs: &[&str], attrs| {
        M::new(
            opset,
            vec![node(
                "BatchNormalization",
                "bn",
                &["x", "s", "b", "m", "v"],
                outs,
                attrs,
            )],
            vec![vi("x", &[1, 2, 1, 1])],
            vec![out("y")],
        )
        .init("s", &f32s(&[2], &[1.0, 2.0]))
        .init("b", &f32s(&[2], &[0.0, 1.0]))
        .init("m", &f32s(&[2], &[1.0, 1.0]))
        .init("v", &f32s(&[2], &[1.0, 4.0]))
    };
    let g = bn(
        7,
        &["y", "mean", "var"],
        vec![a_int("spatial", 1), a_float("epsilon", 0.0)],
    )
    .import()
    .unwrap();
    assert_eq!(ops(&g), vec!["batch_normalization"]);
    assert_eq!(g.node(find(&g, "batch_normalization")).outputs().len(), 1);
    assert_close(
        &run(&g, &[f32s(&[1, 2, 1, 1], &[3.0, 3.0])])[0],
        &f32s(&[1, 2, 1, 1], &[2.0, 3.0]),
    );
    expect_err(
        bn(7, &["y"], vec![a_int("spatial", 0)]).import(),
        ErrorKind::Unsupported,
        Some("bn"),
        "spatial",
    );
}

#[test]
fn variadic_ops_become_chains() {
    let var = |op: &str, n: usize| {
        let names: Vec<String> = (0..n).map(|i| format!("x{i}")).collect();
        let ins: Vec<&str> = names.iter().map(String::as_str).collect();
        M::new(
            13,
            vec![node(op, "v", &ins, &["y"], vec![])],
            names.iter().map(|n| vi(n, &[2])).collect(),
            vec![out("y")],
        )
    };
    let xs = [
        f32s(&[2], &[1.0, 6.0]),
        f32s(&[2], &[2.0, 5.0]),
        f32s(&[2], &[6.0, 1.0]),
    ];
    let g = var("Sum", 3).import().unwrap();
    assert_eq!(ops(&g), vec!["add", "add"]);
    assert_eq!(run(&g, &xs)[0], f32s(&[2], &[9.0, 12.0]));
    let g = var("Mean", 3).import().unwrap();
    assert_eq!(ops(&g), vec!["add", "add", "div"]);
    assert_eq!(
        operand(&g, find(&g, "div"), 1),
        Some(Tensor::scalar(3.0f32))
    );
    assert_eq!(run(&g, &xs)[0], f32s(&[2], &[3.0, 4.0]));
    let g = var("Max", 3).import().unwrap();
    assert_eq!(run(&g, &xs)[0], f32s(&[2], &[6.0, 6.0]));
    let g = var("Min", 2).import().unwrap();
    assert_eq!(ops(&g), vec!["min"]);
    let g = var("Max", 1).import().unwrap();
    assert_eq!(ops(&g), vec!["identity"]);
}

#[test]
fn constant_nodes_become_consts() {
    let cases = [
        (a_float("value_float", 2.5), Tensor::scalar(2.5f32)),
        (a_ints("value_ints", &[1, 2]), i64s(&[1, 2])),
        (a_int("value_int", 7), Tensor::scalar(7i64)),
        (a_tensor("value", &iota(&[2, 2])), iota(&[2, 2])),
    ];
    for (a, want) in cases {
        let m = M::new(
            13,
            vec![node("Constant", "c", &[], &["y"], vec![a])],
            vec![],
            vec![vi_dims("y", DataType::Undefined, None)],
        );
        let g = m.import().unwrap();
        let c = g.producer(g.outputs()[0]).unwrap();
        assert_eq!(g.node(c).name, "c");
        assert!(matches!(&g.node(c).op, Op::Const(k) if *k.tensor().unwrap() == want));
    }
    let m = M::new(
        13,
        vec![node("Constant", "c", &[], &["y"], vec![])],
        vec![],
        vec![out("y")],
    );
    expect_err(m.import(), ErrorKind::Attribute, Some("c"), "value");
}

#[test]
fn cast_targets_become_dtype_names() {
    let g = unary(13, "Cast", &[2], vec![a_int("to", DataType::Int32 as i64)]).import();
    // The declared output type (f32) disagrees with the cast: a type error.
    expect_err(g, ErrorKind::Type, None, "'y'");
    let m = M::new(
        13,
        vec![node(
            "Cast",
            "n",
            &["x"],
            &["y"],
            vec![a_int("to", DataType::Int32 as i64)],
        )],
        vec![vi("x", &[2])],
        vec![vi_dims("y", DataType::Int32, None)],
    );
    let g = m.import().unwrap();
    assert_eq!(attr_of(&g, find(&g, "cast"), "to"), s("i32"));
    let t = Tensor::from_vec(&[2], vec![1i32, -2]).unwrap();
    assert_eq!(run(&g, &[f32s(&[2], &[1.7, -2.2])])[0], t);
    expect_err(
        unary(
            13,
            "Cast",
            &[2],
            vec![a_int("to", DataType::Float16 as i64)],
        )
        .import(),
        ErrorKind::Unsupported,
        Some("n"),
        "FLOAT16",
    );
    expect_err(
        unary(13, "Cast", &[2], vec![a_str("to", "int32")]).import(),
        ErrorKind::Attribute,
        Some("n"),
        "'to'",
    );
}

// ----- external data -----

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("kiln-onnx-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn external_model(location: &str) -> Vec<u8> {
    let mut w = TensorProto {
        name: Some("w".into()),
        dims: vec![2],
        data_type: Some(DataType::Float as i32),
        data_location: Some(DataLocation::External as i32),
        ..Default::default()
    };
    for (k, v) in [("location", location), ("offset", "8"), ("length", "8")] {
        w.external_data.push(StringStringEntryProto {
            key: Some(k.into()),
            value: Some(v.into()),
        });
    }
    let mut m = M::new(
        13,
        vec![node("Add", "add", &["x", "w"], &["y"], vec![])],
        vec![vi("x", &[2])],
        vec![out("y")],
    );
    m.inits.push(w);
    m.bytes()
}

#[test]
fn external_data_is_read_next_to_the_model() {
    let dir = TempDir::new("ext");
    std::fs::create_dir_all(dir.0.join("weights")).unwrap();
    let mut bin = vec![0xAAu8; 8];
    bin.extend(1.5f32.to_le_bytes());
    bin.extend((-2.0f32).to_le_bytes());
    bin.extend([0xBB; 4]);
    std::fs::write(dir.0.join("weights/w.bin"), &bin).unwrap();
    let path = dir.0.join("model.onnx");
    std::fs::write(&path, external_model("weights/w.bin")).unwrap();
    let g = load_model(&path, &ImportOptions::default()).unwrap();
    assert_eq!(
        run(&g, &[f32s(&[2], &[1.0, 1.0])])[0],
        f32s(&[2], &[2.5, -1.0])
    );

    // import_model needs to be told where the model lives.
    let bytes = external_model("weights/w.bin");
    expect_err(
        import_model(&bytes, &ImportOptions::default()),
        ErrorKind::Unsupported,
        None,
        "'w'",
    );
    let opts = ImportOptions {
        shapes: HashMap::new(),
        base_dir: Some(dir.0.clone()),
    };
    assert!(import_model(&bytes, &opts).is_ok());

    std::fs::write(&path, external_model("../w.bin")).unwrap();
    expect_err(
        load_model(&path, &ImportOptions::default()),
        ErrorKind::InvalidModel,
        None,
        "outside",
    );
    std::fs::write(&path, external_model("missing.bin")).unwrap();
    expect_err(
        load_model(&path, &ImportOptions::default()),
        ErrorKind::Io,
        None,
        "missing.bin",
    );
}

// ----- errors -----

#[test]
fn undecodable_bytes() {
    let opts = ImportOptions::default();
    expect_err(import_model(&[], &opts), ErrorKind::Decode, None, "empty");
    expect_err(
        import_model(&[0xff; 16], &opts),
        ErrorKind::Decode,
        None,
        "",
    );
    let m = unary(13, "Relu", &[2], vec![]).bytes();
    expect_err(
        import_model(&m[..m.len() / 2], &opts),
        ErrorKind::Decode,
        None,
        "",
    );
}

#[test]
fn unsupported_ops_name_op_and_opset() {
    expect_err(
        unary(13, "FrobnicateV2", &[2], vec![]).import(),
        ErrorKind::UnsupportedOp,
        Some("n"),
        "FrobnicateV2",
    );
    expect_err(
        unary(6, "Relu", &[2], vec![]).import(),
        ErrorKind::UnsupportedOp,
        Some("n"),
        "opset 6",
    );
    expect_err(
        unary(29, "Relu", &[2], vec![]).import(),
        ErrorKind::UnsupportedOp,
        Some("n"),
        "opset 29",
    );
    // Past opset 21, an op is refused only if it has changed since.
    let conv = M::new(
        22,
        vec![node("Conv", "conv", &["x", "w"], &["y"], vec![])],
        vec![vi("x", &[1, 1, 2, 2])],
        vec![out("y")],
    )
    .init("w", &iota(&[1, 1, 1, 1]));
    expect_err(
        conv.import(),
        ErrorKind::UnsupportedOp,
        Some("conv"),
        "opset 22",
    );
    assert!(unary(28, "Relu", &[2], vec![]).import().is_ok());
    let mut m = unary(13, "BiasGelu", &[2], vec![]);
    m.nodes[0].domain = Some("com.microsoft".into());
    expect_err(
        m.import(),
        ErrorKind::UnsupportedOp,
        Some("n"),
        "com.microsoft",
    );
    // In the table, but not (yet) a graph op: still reported under the ONNX name.
    let known = Op::all_names();
    if let Some((onnx, _)) = kiln::onnx::OPS.iter().find(|(_, k)| !known.contains(k)) {
        let want = format!("'{onnx}' (opset 13)");
        expect_err(
            unary(13, onnx, &[2, 2], vec![]).import(),
            ErrorKind::UnsupportedOp,
            Some("n"),
            &want,
        );
    }
}

#[test]
fn attribute_errors_are_located() {
    let conv = M::new(
        13,
        vec![node(
            "Conv",
            "conv",
            &["x", "w"],
            &["y"],
            vec![a_floats("strides", &[2.0, 2.0])],
        )],
        vec![vi("x", &[1, 1, 4, 4])],
        vec![out("y")],
    )
    .init("w", &iota(&[1, 1, 1, 1]));
    expect_err(conv.import(), ErrorKind::Attribute, Some("conv"), "strides");
    let dup = unary(
        13,
        "LeakyRelu",
        &[2],
        vec![a_float("alpha", 0.1), a_float("alpha", 0.2)],
    );
    expect_err(dup.import(), ErrorKind::Attribute, Some("n"), "alpha");
    let unknown = unary(13, "Relu", &[2], vec![a_int("frob", 1)]);
    expect_err(unknown.import(), ErrorKind::Attribute, Some("n"), "frob");
}

#[test]
fn definition_errors() {
    let dangling = M::new(
        13,
        vec![node("Add", "add", &["x", "ghost"], &["y"], vec![])],
        vec![vi("x", &[2])],
        vec![out("y")],
    );
    expect_err(
        dangling.import(),
        ErrorKind::UndefinedValue,
        Some("add"),
        "'ghost'",
    );
    let no_out = M::new(
        13,
        vec![node("Relu", "r", &["x"], &["y"], vec![])],
        vec![vi("x", &[2])],
        vec![out("z")],
    );
    expect_err(no_out.import(), ErrorKind::UndefinedValue, None, "'z'");
    let twice = M::new(
        13,
        vec![
            node("Relu", "a", &["x"], &["y"], vec![]),
            node("Neg", "b", &["x"], &["y"], vec![]),
        ],
        vec![vi("x", &[2])],
        vec![out("y")],
    );
    expect_err(
        twice.import(),
        ErrorKind::DuplicateDefinition,
        Some("b"),
        "'y'",
    );
    let shadow = M::new(
        13,
        vec![node("Relu", "r", &["x"], &["w"], vec![])],
        vec![vi("x", &[2])],
        vec![out("w")],
    )
    .init("w", &iota(&[2]));
    expect_err(
        shadow.import(),
        ErrorKind::DuplicateDefinition,
        Some("r"),
        "'w'",
    );
    let outputs = M::new(
        13,
        vec![node("Relu", "r", &["x"], &["y"], vec![])],
        vec![vi("x", &[2])],
        vec![],
    );
    expect_err(outputs.import(), ErrorKind::InvalidModel, None, "outputs");
    let cycle = M::new(
        13,
        vec![
            node("Add", "a", &["x", "t"], &["y"], vec![]),
            node("Relu", "b", &["y"], &["t"], vec![]),
        ],
        vec![vi("x", &[2])],
        vec![out("y")],
    );
    expect_err(cycle.import(), ErrorKind::Cycle, None, "");
}

#[test]
fn tensor_errors_name_the_tensor() {
    let mut m = M::new(
        13,
        vec![node("Add", "add", &["x", "w"], &["y"], vec![])],
        vec![vi("x", &[4])],
        vec![out("y")],
    );
    m.inits.push(TensorProto {
        name: Some("w".into()),
        dims: vec![4],
        data_type: Some(DataType::Float as i32),
        raw_data: Some(vec![0; 12]),
        ..Default::default()
    });
    expect_err(m.import(), ErrorKind::InvalidModel, None, "'w'");
    m.inits[0].data_type = Some(DataType::Float16 as i32);
    m.inits[0].raw_data = Some(vec![0; 8]);
    expect_err(m.import(), ErrorKind::Unsupported, None, "'w'");
    let half = M::new(
        13,
        vec![node("Relu", "r", &["x"], &["y"], vec![])],
        vec![vi_dims("x", DataType::Float16, Some(dims_of(&[2])))],
        vec![out("y")],
    );
    expect_err(half.import(), ErrorKind::Unsupported, None, "'x'");
}

#[test]
fn default_opset_is_needed_only_by_default_domain_ops() {
    let without_opset = |domain: &str| {
        let mut m = ModelProto::decode(unary(13, "Relu", &[2], vec![]).bytes().as_slice()).unwrap();
        m.opset_import = vec![OperatorSetIdProto {
            domain: Some("com.example".into()),
            version: Some(1),
        }];
        m.graph.as_mut().unwrap().node[0].domain = Some(domain.into());
        import_model(&m.encode_to_vec(), &ImportOptions::default())
    };
    expect_err(
        without_opset(""),
        ErrorKind::InvalidModel,
        Some("n"),
        "opset",
    );
    expect_err(
        without_opset("com.example"),
        ErrorKind::UnsupportedOp,
        Some("n"),
        "com.example",
    );
}
