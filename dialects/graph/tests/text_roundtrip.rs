//! The graph dialect's text format: print → parse → print is exact, constants and
//! attributes keep their bits, the weights side file round-trips and rejects damage, and
//! malformed text is reported at the right line and column.

use kiln_core::{Attr, Attrs, DType, ErrorKind, Location, Tensor, TensorType};
use kiln_graph::ops::{Const, ConstSource};
use kiln_graph::text::{
    attach_weights, decode_weights, encode_weights, load_weights, parse, print, print_with_weights,
    write_weights,
};
use kiln_graph::{Graph, Op};
use std::collections::HashMap;
use std::sync::Arc;

/// Parses, prints, and checks that printing the re-parsed text gives the same text.
fn round_trip(src: &str) -> (Graph, String) {
    let g = parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let text = print(&g);
    let again = parse(&text).unwrap_or_else(|e| panic!("re-parse: {e}\n{text}"));
    assert_eq!(
        print(&again),
        text,
        "print → parse → print changed the text"
    );
    (g, text)
}

fn value_named(g: &Graph, name: &str) -> kiln_graph::Value {
    (0..g.num_values() as u32)
        .map(kiln_graph::Value)
        .find(|&v| g.value(v).name == name)
        .unwrap_or_else(|| panic!("no value '{name}'"))
}

fn const_of(g: &Graph, name: &str) -> Const {
    let v = value_named(g, name);
    match &g.node(g.producer(v).expect("a result")).op {
        Op::Const(c) => c.clone(),
        other => panic!("'{name}' is produced by {}", other.name()),
    }
}

fn tensor_of(g: &Graph, name: &str) -> Tensor {
    (*const_of(g, name).value.expect("data")).clone()
}

const SPEC: &str = r#"// comment
graph @net(%x: f32[1,3,8,8], %"in/1:0": i64[2]) -> (f32[1,3,8,8], i64[2]) {
  %w = const f32[4,3,3,3] random(seed=1, min=-1.0, max=1.0)
  %b = const f32[4] dense<[0.5, -1.0, 2.0, 3.25]>
  %s = const f32[1,4,1,1] splat(0.5)
  %big = const f32[64,3,7,7] resource<"big">
  %c = graph.add(%x, %x) : f32[1,3,8,8]
  %a, %d = graph.identity(%c) : f32[1,2,8,8], f32[1,2,8,8]
  %r = graph.clip(%x, _, %b) : f32[1,3,16,16] loc("Clip_3")
  %m = graph.mul(%a, %a) : ?
  return %c, %"in/1:0"
}
"#;

#[test]
fn spec_example_is_a_fixed_point() {
    // The parser checks syntax and scoping only (operand and result counts are the
    // verifier's business), so the multi-result line stands in for split here.
    let (g, text) = round_trip(SPEC);
    assert_eq!(text, SPEC.trim_start_matches("// comment\n"));
    assert_eq!(g.name, "net");
    assert_eq!(g.inputs().len(), 2);
    assert_eq!(g.value(g.outputs()[1]).name, "in/1:0");
    assert_eq!(g.value(value_named(&g, "m")).ty, None);
    assert_eq!(
        g.value(value_named(&g, "d")).ty,
        Some(TensorType::new(DType::F32, [1, 2, 8, 8]))
    );
    let r = g.producer(value_named(&g, "r")).unwrap();
    assert_eq!(g.node(r).name, "Clip_3");
    assert_eq!(
        g.node(r).inputs(),
        &[Some(g.inputs()[0]), None, Some(value_named(&g, "b"))]
    );
    let w = const_of(&g, "w");
    assert_eq!(
        w,
        Const::random(TensorType::new(DType::F32, [4, 3, 3, 3]), 1, -1.0, 1.0)
    );
    let big = const_of(&g, "big");
    assert_eq!(
        (big.value, big.source),
        (None, ConstSource::Resource("big".into()))
    );
    assert_eq!(
        tensor_of(&g, "s"),
        Tensor::from_vec(&[1, 4, 1, 1], vec![0.5f32; 4]).unwrap()
    );
}

/// Sample attributes for ops that need some (or whose attributes deserve exercising).
/// An op in `Op::all_names()` that cannot be built without attributes must be listed here.
const SAMPLES: &[(&str, &str)] = &[
    ("const", r#"{value=f32[2] dense<[1.0, -2.5]>}"#),
    ("constant_of_shape", r#"{value=i64[1] dense<[-7]>}"#),
    ("cast", r#"{to="i64"}"#),
    ("leaky_relu", "{alpha=0.100000024}"),
    ("hard_sigmoid", "{alpha=0.25, beta=-inf}"),
    ("gelu", r#"{approximate="tanh"}"#),
    ("mod", "{fmod=1}"),
    ("eltwise_sum", "{coeffs=[0.5,-2.0,1.0]}"),
    (
        "conv",
        r#"{kernel_shape=[3,3], strides=[2,2], pads=[1,1,1,1], dilations=[1,2], group=2, layout="nhwc"}"#,
    ),
    (
        "conv_transpose",
        r#"{strides=[2,2], auto_pad="SAME_UPPER", output_padding=[1,1]}"#,
    ),
    (
        "gemm",
        r#"{alpha=0.5, beta=1e-7, transA=1, transB=1, act="clip", act_min=0.0, act_max=6.0}"#,
    ),
    (
        "matmul",
        r#"{transA=1, transB=1, act="hard_sigmoid", act_alpha=0.125, act_beta=0.25}"#,
    ),
    (
        "max_pool",
        "{kernel_shape=[3,3], strides=[2,2], ceil_mode=1}",
    ),
    (
        "average_pool",
        r#"{kernel_shape=[2,2], count_include_pad=1, layout="nhwc"}"#,
    ),
    ("lp_pool", "{kernel_shape=[2,2], p=3}"),
    (
        "batch_normalization",
        r#"{epsilon=0.001, momentum=0.99, layout="nhwc"}"#,
    ),
    ("instance_normalization", "{epsilon=1e-6}"),
    ("layer_normalization", "{axis=-2, epsilon=1e-12}"),
    (
        "lrn",
        r#"{alpha=0.0002, beta=0.5, bias=2.0, size=5, layout="nhwc"}"#,
    ),
    ("global_max_pool", r#"{layout="nhwc"}"#),
    ("softmax", "{axis=0}"),
    ("reduce_mean", "{keepdims=0, noop_with_empty_axes=1}"),
    ("arg_max", "{axis=-1, keepdims=0, select_last_index=1}"),
    (
        "resize",
        r#"{mode="cubic", coordinate_transformation_mode="align_corners", cubic_coeff_a=-0.5, exclude_outside=1, axes=[2,3]}"#,
    ),
    ("reshape", "{allowzero=1}"),
    ("flatten", "{axis=-1}"),
    ("shape", "{start=1, end=-1}"),
    ("transpose", "{perm=[0,2,1]}"),
    ("concat", "{axis=-1}"),
    ("split", "{axis=1, num_outputs=2}"),
    ("gather", "{axis=-1}"),
    ("gather_elements", "{axis=1}"),
    ("pad", r#"{mode="reflect"}"#),
    ("depth_to_space", r#"{blocksize=2, mode="CRD"}"#),
    ("space_to_depth", "{blocksize=2}"),
];

/// One line per op of the dialect, built by parsing text, so that every op's `attrs()`
/// and `from_attrs` agree through the printer and parser.
#[test]
fn every_op_round_trips() {
    let samples: HashMap<&str, &str> = SAMPLES.iter().copied().collect();
    for (name, _) in SAMPLES {
        assert!(
            Op::all_names().contains(name),
            "SAMPLES names '{name}', which is not an op (renamed?)"
        );
    }
    let mut missing = Vec::new();
    let mut lines = Vec::new();
    for name in Op::all_names() {
        let attrs = samples.get(name).copied().unwrap_or("");
        let line = format!("  %{name} = graph.{name}(%x, _, %x) {attrs} : ?");
        let src = format!("graph @t(%x: f32[2]) -> (?) {{\n{line}\n  return %{name}\n}}\n");
        match parse(&src) {
            Ok(_) => lines.push(line),
            Err(e) if samples.contains_key(name) => {
                missing.push(format!("{name} (sample rejected: {e})"))
            }
            Err(e) => missing.push(format!("{name} (needs attributes: {e})")),
        }
    }
    assert!(
        missing.is_empty(),
        "add these ops to SAMPLES in {}:\n  {}",
        file!(),
        missing.join("\n  ")
    );

    let src = format!(
        "graph @all(%x: f32[2]) -> () {{\n{}\n  return\n}}\n",
        lines.join("\n")
    );
    let (g, text) = round_trip(&src);
    let again = parse(&text).unwrap();
    for name in Op::all_names() {
        let (a, b) = (value_named(&g, name), value_named(&again, name));
        let (a, b) = (
            &g.node(g.producer(a).unwrap()).op,
            &again.node(again.producer(b).unwrap()).op,
        );
        match (a, b) {
            // A `const` written generically is printed in const syntax, which records its form.
            (Op::Const(x), Op::Const(y)) => assert_eq!((&x.ty, &x.value), (&y.ty, &y.value)),
            _ => assert_eq!(a, b, "{name} changed through the text format"),
        }
        assert_eq!(a.name(), name);
    }
}

#[test]
fn quoted_names_round_trip() {
    let weird = [
        "in/1:0",
        "a b",
        "quote\"d",
        "back\\slash",
        "new\nline",
        "ünï",
        "1st",
        "_",
        "inf",
        "x.y",
    ];
    let mut g = Graph::new("my graph/0");
    let x = g.add_input(weird[0], Some(TensorType::new(DType::F32, [2])));
    let mut prev = x;
    for name in &weird[1..] {
        let op = Op::from_attrs("relu", Attrs::new()).unwrap();
        let (_, outs) = g.add_node(
            format!("node \"{name}\""),
            op,
            vec![Some(prev)],
            vec![name.to_string()],
        );
        prev = outs[0];
    }
    g.set_outputs(vec![prev, x]);
    let text = print(&g);
    let (back, again) = round_trip(&text);
    assert_eq!(again, text);
    assert_eq!(back.name, "my graph/0");
    for name in weird {
        value_named(&back, name);
    }
    assert!(text.contains(r#"%"quote\"d""#), "{text}");
    assert!(text.contains(r#"loc("node \"new\nline\"")"#), "{text}");
}

#[test]
fn printer_makes_names_unique() {
    let mut g = Graph::new("");
    let ty = Some(TensorType::new(DType::F32, [1]));
    let a = g.add_input("", ty.clone());
    let b = g.add_input("v2", ty.clone());
    let relu = || Op::from_attrs("relu", Attrs::new()).unwrap();
    let (_, c) = g.add_node("", relu(), vec![Some(a)], vec!["v2".into()]);
    let (_, d) = g.add_node("", relu(), vec![Some(c[0])], vec![String::new()]);
    let (_, e) = g.add_node("", relu(), vec![Some(b)], vec!["v0".into()]);
    g.set_outputs(vec![d[0], e[0]]);
    let text = print(&g);
    // Value 0 is unnamed, but "v0" belongs to a later value: the generated name yields.
    assert!(
        text.starts_with("graph @\"\"(%v0_1: f32[1], %v2: f32[1]) -> (?, ?) {\n"),
        "{text}"
    );
    assert!(text.contains("%v2_1 = graph.relu(%v0_1)"), "{text}");
    assert!(text.contains("%v3 = graph.relu(%v2_1)"), "{text}");
    assert!(text.contains("%v0 = graph.relu(%v2)"), "{text}");
    round_trip(&text);
}

#[test]
fn every_constant_form() {
    let src = r#"graph @c() -> () {
  %f = const f32[2,2] dense<[1.0, -0.0, inf, nan]>
  %d = const f64[3] dense<[0.1, -1e300, 5e-324]>
  %i8 = const i8[2] dense<[-128, 127]>
  %u8 = const u8[2] dense<[0, 255]>
  %i16 = const i16[1] dense<[-32768]>
  %u16 = const u16[1] dense<[65535]>
  %i32 = const i32[2] dense<[-2147483648, 2147483647]>
  %u32 = const u32[1] dense<[4294967295]>
  %i64 = const i64[2] dense<[-9223372036854775808, 9223372036854775807]>
  %u64 = const u64[1] dense<[9223372036854775807]>
  %b = const bool[3] dense<[true, false, true]>
  %scalar = const f32[] dense<[2.5]>
  %empty = const i64[0] dense<[]>
  %sp = const i64[2,3] splat(-4)
  %sp1 = const f32[1] splat(1.0)
  %r = const f32[3,5] random(seed=-1, min=-2.0, max=0.5)
  %ri = const i32[4] random(seed=0, min=0.0, max=10.0)
  %res = const u8[4,4] resource<"weights/0">
  return
}
"#;
    let (g, text) = round_trip(src);
    // The seed past i64::MAX is written as its two's complement.
    assert!(
        text.contains("random(seed=-1, min=-2.0, max=0.5)"),
        "{text}"
    );
    let f = tensor_of(&g, "f");
    let f = f.as_f32().unwrap().iter().copied().collect::<Vec<_>>();
    assert_eq!(
        (f[0], f[1].to_bits(), f[2]),
        (1.0, (-0.0f32).to_bits(), f32::INFINITY)
    );
    assert!(f[3].is_nan());
    assert_eq!(
        tensor_of(&g, "d"),
        Tensor::from_vec(&[3], vec![0.1f64, -1e300, 5e-324]).unwrap()
    );
    assert_eq!(
        tensor_of(&g, "i64"),
        Tensor::from_vec(&[2], vec![i64::MIN, i64::MAX]).unwrap()
    );
    assert_eq!(
        tensor_of(&g, "u32"),
        Tensor::from_vec(&[1], vec![u32::MAX]).unwrap()
    );
    assert_eq!(
        tensor_of(&g, "b"),
        Tensor::from_vec(&[3], vec![true, false, true]).unwrap()
    );
    assert_eq!(tensor_of(&g, "scalar"), Tensor::scalar(2.5f32));
    assert_eq!(tensor_of(&g, "empty").shape(), &[0]);
    assert_eq!(
        tensor_of(&g, "sp"),
        Tensor::from_vec(&[2, 3], vec![-4i64; 6]).unwrap()
    );
    assert_eq!(const_of(&g, "sp1").source, ConstSource::Splat);
    assert_eq!(
        const_of(&g, "r"),
        Const::random(TensorType::new(DType::F32, [3, 5]), u64::MAX, -2.0, 0.5)
    );
    assert_eq!(
        const_of(&g, "ri"),
        Const::random(TensorType::new(DType::I32, [4]), 0, 0.0, 10.0)
    );
    assert_eq!(const_of(&g, "res").value, None);
    assert_eq!(
        g.value(value_named(&g, "res")).ty,
        Some(TensorType::new(DType::U8, [4, 4]))
    );
}

#[test]
fn computed_constants_pick_a_form() {
    let mut g = Graph::new("auto");
    fn add(g: &mut Graph, name: &str, t: Tensor) -> kiln_graph::Value {
        g.add_node("", Op::Const(Const::new(t)), vec![], vec![name.into()])
            .1[0]
    }
    let splat = add(
        &mut g,
        "splat",
        Tensor::from_vec(&[100], vec![3u8; 100]).unwrap(),
    );
    let one = add(&mut g, "one", Tensor::scalar(7i32));
    let small = add(
        &mut g,
        "small",
        Tensor::from_vec(&[16], (0..16).map(|i| i as f32).collect()).unwrap(),
    );
    let big = add(
        &mut g,
        "big",
        Tensor::from_vec(&[17], (0..17).map(|i| i as f32).collect()).unwrap(),
    );
    // Named like the explicit resource below: the generated resource name must differ.
    let clash = add(
        &mut g,
        "w",
        Tensor::from_vec(&[20], [1i64, 2].repeat(10)).unwrap(),
    );
    let huge = add(
        &mut g,
        "huge",
        Tensor::from_vec(&[1], vec![u64::MAX]).unwrap(),
    );
    let explicit = Const {
        ty: TensorType::new(DType::F32, [17]),
        value: Some(Arc::new(
            Tensor::from_vec(&[17], vec![0.25f32; 17]).unwrap(),
        )),
        source: ConstSource::Resource("w".into()),
    };
    let (_, e) = g.add_node("", Op::Const(explicit), vec![], vec!["e".into()]);
    g.set_outputs(vec![splat, one, small, big, clash, huge, e[0]]);
    let (text, weights) = print_with_weights(&g);
    assert!(text.contains("%splat = const u8[100] splat(3)\n"), "{text}");
    assert!(text.contains("%one = const i32[] dense<[7]>\n"), "{text}");
    assert!(
        text.contains("%small = const f32[16] dense<[0.0, 1.0, 2.0,"),
        "{text}"
    );
    assert!(
        text.contains("%big = const f32[17] resource<\"big\">\n"),
        "{text}"
    );
    assert!(
        text.contains("%w = const i64[20] resource<\"w_1\">\n"),
        "{text}"
    );
    assert!(
        text.contains("%huge = const u64[1] resource<\"huge\">\n"),
        "{text}"
    );
    assert!(
        text.contains("%e = const f32[17] resource<\"w\">\n"),
        "{text}"
    );
    assert_eq!(print(&g), text);
    let names: Vec<&str> = weights.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["big", "w_1", "huge", "w"]);

    let mut back = parse(&text).unwrap();
    assert_eq!(print(&back), text);
    let map: HashMap<String, Tensor> = weights.into_iter().collect();
    attach_weights(&mut back, &map).unwrap();
    for name in ["big", "w", "huge", "e"] {
        assert_eq!(tensor_of(&back, name), tensor_of(&g, name), "{name}");
    }
}

#[test]
fn nine_digit_floats_survive() {
    let vals: Vec<f32> = vec![
        0.1,
        f32::from_bits(0.1f32.to_bits() + 1),
        16_777_215.0,
        1.000_000_1,
        0.333_333_34,
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        -f32::from_bits(0x0040_0001),
        std::f32::consts::PI,
        1.0e-38,
        // Its shortest spelling, 7.038531e-26, reads back wrong if rounded via f64.
        f32::from_bits(0x15ae_43fd),
    ];
    let mut g = Graph::new("f");
    let t = Tensor::from_vec(&[vals.len()], vals.clone()).unwrap();
    let c = Const {
        source: ConstSource::Dense,
        ..Const::new(t)
    };
    let (_, out) = g.add_node("", Op::Const(c), vec![], vec!["c".into()]);
    let lr = Op::from_attrs(
        "leaky_relu",
        Attrs(vec![("alpha".into(), Attr::Float(vals[1]))]),
    )
    .unwrap();
    let (_, l) = g.add_node("", lr.clone(), vec![Some(out[0])], vec!["l".into()]);
    g.set_outputs(vec![l[0]]);
    let (back, _) = round_trip(&print(&g));
    let got = tensor_of(&back, "c");
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&got.as_f32().unwrap().iter().copied().collect::<Vec<_>>()),
        bits(&vals)
    );
    assert_eq!(
        back.node(back.producer(value_named(&back, "l")).unwrap())
            .op,
        lr
    );
}

fn temp_path(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-text-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(tag)
}

#[test]
fn weights_file_round_trip() {
    let entries = vec![
        (
            "conv/w".to_string(),
            Tensor::from_vec(&[2, 3], vec![0.5f32, -1.0, f32::NAN, 3.0, 1e-45, -0.0]).unwrap(),
        ),
        (
            "idx".to_string(),
            Tensor::from_vec(&[3], vec![i64::MIN, 0, i64::MAX]).unwrap(),
        ),
        (
            "mask".to_string(),
            Tensor::from_vec(&[2, 1], vec![true, false]).unwrap(),
        ),
        ("s".to_string(), Tensor::scalar(u16::MAX)),
        (
            "e".to_string(),
            Tensor::from_vec::<f64>(&[0, 4], vec![]).unwrap(),
        ),
        (
            "q".to_string(),
            Tensor::from_vec(&[2], vec![-128i8, 127]).unwrap(),
        ),
    ];
    let path = temp_path("w.kwts");
    write_weights(&path, &entries).unwrap();
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    assert!(
        !std::path::Path::new(&tmp).exists(),
        "the temporary file was renamed away"
    );
    let back = load_weights(&path).unwrap();
    assert_eq!(back.len(), entries.len());
    for (name, t) in &entries {
        let b = &back[name];
        // NaN ≠ NaN, so compare the bytes the file stores.
        assert_eq!(
            encode_weights(&[(name.clone(), b.clone())]),
            encode_weights(&[(name.clone(), t.clone())])
        );
    }
    assert_eq!(
        load_weights(temp_path("absent")).unwrap_err().kind,
        ErrorKind::Io
    );

    let src = r#"graph @g() -> (f32[2,3]) {
  %w = const f32[2,3] resource<"conv/w">
  return %w
}"#;
    let mut g = parse(src).unwrap();
    attach_weights(&mut g, &back).unwrap();
    assert_eq!(tensor_of(&g, "w").shape(), &[2, 3]);

    let mut g = parse(&src.replace("f32[2,3]", "f32[3,2]")).unwrap();
    let e = attach_weights(&mut g, &back).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Type);
    assert!(e.message.contains("conv/w"), "{e}");
    let mut g = parse(&src.replace("conv/w", "nope")).unwrap();
    assert_eq!(
        attach_weights(&mut g, &back).unwrap_err().kind,
        ErrorKind::Input
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn weights_file_corruption_is_a_decode_error() {
    let entries = vec![
        (
            "a".to_string(),
            Tensor::from_vec(&[2], vec![1.0f32, 2.0]).unwrap(),
        ),
        (
            "b".to_string(),
            Tensor::from_vec(&[3], vec![true, false, true]).unwrap(),
        ),
    ];
    let good = encode_weights(&entries);
    assert_eq!(&good[..8], b"KILNWTS1");
    assert_eq!(decode_weights(&good).unwrap().len(), 2);
    // Every truncation, and every single-byte corruption, is an error or a valid decode,
    // never a panic.
    for n in 0..good.len() {
        assert_eq!(
            decode_weights(&good[..n]).unwrap_err().kind,
            ErrorKind::Decode,
            "truncated to {n}"
        );
    }
    for i in 0..good.len() {
        for x in [0x00, 0x01, 0x7f, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= x;
            if let Err(e) = decode_weights(&bad) {
                assert_eq!(e.kind, ErrorKind::Decode);
            }
        }
    }
    let decode_kind = |b: &[u8]| decode_weights(b).unwrap_err().kind;
    let mut extra = good.clone();
    extra.push(0);
    assert_eq!(decode_kind(&extra), ErrorKind::Decode);
    let mut magic = good.clone();
    magic[7] = b'2';
    assert!(
        decode_weights(&magic)
            .unwrap_err()
            .message
            .contains("magic")
    );
    let mut bool_byte = good.clone();
    let last = bool_byte.len() - 1;
    bool_byte[last] = 2;
    assert_eq!(decode_kind(&bool_byte), ErrorKind::Decode);
    let dup = encode_weights(&[entries[0].clone(), entries[0].clone()]);
    assert!(decode_weights(&dup).unwrap_err().message.contains("twice"));
    // A huge entry count with no entries behind it fails fast without allocating.
    let mut count = good[..8].to_vec();
    count.extend_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(decode_kind(&count), ErrorKind::Decode);
    // A dimension product that overflows.
    let t = Tensor::from_vec(&[1, 1], vec![1u8]).unwrap();
    let mut big = encode_weights(&[("x".into(), t)]);
    let dims_at = 8 + 8 + 4 + 1 + 1 + 2 + 4;
    big[dims_at..dims_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    big[dims_at + 8..dims_at + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(decode_kind(&big), ErrorKind::Decode);
}

/// Kind and (line, col) of the error parsing `src`.
fn error_at(src: &str) -> (ErrorKind, usize, usize) {
    let e = parse(src).expect_err("malformed input parsed");
    match e.location.clone() {
        Location::Text { line, col } => (e.kind, line, col),
        other => panic!("error without a text position ({other:?}): {e}"),
    }
}

#[test]
fn errors_point_at_the_problem() {
    use ErrorKind::*;
    // Body lines (line 2 of a graph that returns %y), the error's kind and column.
    let body = |line: &str| format!("graph @g(%x: f32[2]) -> (?) {{\n  {line}\n  return %y\n}}\n");
    parse(&body("%y = graph.relu(%x) : ?")).unwrap();
    let lines: &[(&str, ErrorKind, usize)] = &[
        ("%y = graph.relu(%z) : ?", UndefinedValue, 19),
        ("%y = graph.add(%x, %y) : ?", UndefinedValue, 22),
        ("%x = graph.relu(%x) : ?", DuplicateDefinition, 3),
        ("%y, %y = graph.relu(%x) : ?, ?", DuplicateDefinition, 7),
        ("%y = graph.frobnicate(%x) : ?", UnsupportedOp, 8),
        ("%y = relu(%x) : ?", UnsupportedOp, 8),
        (
            "%y = graph.leaky_relu(%x) {alpha=0.5, beta=1.0} : ?",
            Attribute,
            41,
        ),
        (
            "%y = graph.leaky_relu(%x) {alpha=\"big\"} : ?",
            Attribute,
            30,
        ),
        (
            "%y = graph.leaky_relu(%x) {alpha=1.0, alpha=2.0} : ?",
            Attribute,
            41,
        ),
        ("%y = graph.leaky_relu(%x) {alpha=} : ?", Parse, 36),
        ("%y = graph.relu(%x) : ?, ?", Parse, 23),
        ("%y = graph.relu(%x : ?", Parse, 22),
        ("%y = const f32[3] dense<[1.0]>", Shape, 21),
        ("%y = const i8[2] dense<[1, 128]>", Type, 30),
        ("%y = const f32[3] zeros", Parse, 21),
        ("%y = const bool[1] dense<[1]>", Type, 29),
        ("%y = graph.relu(%x) : f32[1,x]", Parse, 31),
        ("$", Parse, 3),
    ];
    for &(line, kind, col) in lines {
        let src = body(line);
        assert_eq!(
            error_at(&src),
            (kind, 2, col),
            "{line}: {}",
            parse(&src).unwrap_err()
        );
    }
    let whole: &[(&str, (ErrorKind, usize, usize))] = &[
        (
            "graph @g(%x: f32[2]) -> (?) {\n  return %x\n",
            (Parse, 3, 1),
        ),
        (
            "graph @g(%x: f32[1,x]) -> () {\n  return\n}",
            (Parse, 1, 20),
        ),
        ("graph @g(%x: f31[1]) -> () {\n  return\n}", (Parse, 1, 14)),
        ("graph @g(%x: f32[-1]) -> () {\n  return\n}", (Parse, 1, 18)),
        (
            "graph @g(%x: f32[2], %x: f32[2]) -> () {\n  return\n}",
            (DuplicateDefinition, 1, 22),
        ),
        (
            "graph @g(%x: f32[2]) -> (f32[3]) {\n  return %x\n}",
            (Type, 2, 10),
        ),
        (
            "graph @g(%x: f32[2]) -> (?, ?) {\n  return %x\n}",
            (Parse, 2, 3),
        ),
        ("graph @g(%x: f32[2]) -> () {\n}", (Parse, 2, 1)),
        ("graph @g() -> () {\n  return\n}\n}", (Parse, 4, 1)),
        ("graph g() -> () {\n  return\n}", (Parse, 1, 7)),
        ("", (Parse, 1, 1)),
        // A missing ':' is noticed at the next line's first token.
        (
            "graph @g(%x: f32[2]) -> (?) {\n  %y = graph.relu(%x)\n  return %y\n}",
            (Parse, 3, 3),
        ),
    ];
    for (src, want) in whole {
        assert_eq!(error_at(src), *want, "{src}\n{}", parse(src).unwrap_err());
    }
}
