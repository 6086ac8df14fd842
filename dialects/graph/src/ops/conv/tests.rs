//! Unit tests of `conv.rs`.

use super::super::spatial::test_util::{assert_close, build, pat, run};
use super::*;
use kiln_core::{Attr, ErrorKind};

// Expected values: onnxruntime 1.32 on the same `pat` inputs (see test_util::pat).
const CONV_GROUP: &[f64] = &[
    3.875, -3.875, 3.5, -3.625, -0.625, 0.3125, -6.0, 5.25, -6.1875, -2.625, 1.25, -2.4375,
    -0.8125, 3.0, -0.75, 1.0625, 4.5625, -1.5625, 4.9375, -2.5625, 5.0625, 3.0, -0.75, 3.0625,
    2.9375, -0.25, 2.0625, -4.3125, 2.4375, -0.4375, -3.8125, 3.625, -4.0625, -1.625, 2.125,
    -1.6875, -0.8125, -3.4375, -0.5625, 1.4375, 1.125, -1.25, 1.3125, -2.4375, 1.375, 1.375, -2.5,
    1.1875, -5.0, 1.6875, -1.25, -6.0, 5.25, -6.1875, -3.5625, 5.625, -5.8125, 0.4375, 0.875,
    -2.8125, 3.1875, 2.875, 0.5, 4.9375, -2.5625, 5.0625, 2.625, -2.8125, 4.8125, 2.1875, -0.875,
    2.9375, -2.1875, 1.5, -2.375, -3.8125, 3.625, -4.0625, -0.5625, 4.8125, -2.1875, 1.9375,
    -1.875, 1.1875, 0.0625, 0.1875, 0.3125, 1.3125, -2.4375, 1.375, -0.875, -2.5625, -1.5, -3.0625,
    0.625, 0.1875,
];
const CONV_DEPTHWISE_SAME_UPPER: &[f64] = &[
    0.625, 1.0625, 0.25, -3.5, 0.9375, 0.5, 2.625, -3.75, 1.0, -0.5625, 4.0, -1.75, -1.5625,
    1.8125, -2.5625, -0.9375, -0.9375, 0.0625, 1.75, -0.875, -0.9375, -0.5625, -1.125, -1.75,
    -1.6875, 2.3125, -0.8125,
];
const CONV1D_SAME_LOWER: &[f64] = &[
    -1.5, -0.25, 0.75, -0.4375, -2.3125, 2.6875, 1.6875, -0.1875, -0.875, 2.1875, -0.875, 2.9375,
    -1.5, -0.4375, 1.8125, -0.125, -0.5, 0.0625, -0.0625, -0.875, -0.5,
];
const CONV3D: &[f64] = &[
    -1.6875, -1.1875, 1.5, 0.375, 1.6875, -1.5, -1.875, 0.5625, 0.625, 1.5, 0.4375, 1.1875, -0.125,
    0.0625, -1.625, -0.0625, 0.375, -0.9375, 3.9375, -1.125, 1.9375, -4.25, -3.9375, 2.875, 2.4375,
    -0.5625, -2.3125, -0.8125, -2.0625, 2.125, 0.3125, 1.375, 0.3125, -0.5, -1.0625, 0.875, 1.5625,
    -0.8125, -0.8125, 1.5625, 2.4375, -2.1875, -0.8125, 0.6875, -1.625, 2.0, -0.875, -0.3125,
    -1.625, 2.0, -0.875, -0.3125, 1.375, -0.125, 2.125, -1.25, 0.125, 0.4375, 2.6875, -1.5, -0.25,
    -0.5625, -1.625, 0.4375, 0.0, 3.0625, -2.5, -2.3125, 0.3125, -2.8125, 2.0625, 0.3125, -0.25,
    -1.9375, 0.1875, 2.4375, -2.125, 1.9375, 0.0, 1.1875, -0.125, 1.0, 1.75, 0.375, 0.25, -0.0625,
    0.5, 0.8125, -0.4375, -2.5, 0.125, 0.4375, -1.5625, 2.4375, -0.5, -0.3125,
];
const CONV_POINTWISE: &[f64] = &[
    1.3125, 0.5625, -1.5625, 1.125, 0.375, -1.0625, 0.25, 0.75, 1.25, 0.375, 0.875, 3.4375,
];
const CONVT_GROUP: &[f64] = &[
    -1.125, -0.5, 1.3125, 0.0625, -1.0625, -1.125, -0.5, -1.5, -0.5, -0.125, -1.125, -1.5, 0.0625,
    -0.5, -0.125, -0.5, -1.5, -0.3125, -0.125, -1.875, -0.5, 1.3125, -0.5, -1.125, -1.75, 1.25,
    -0.25, -0.5, -1.1875, -0.5, 1.1875, 0.0, -1.25, -1.25, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5,
    -0.5, -0.5, 0.625, 1.25, 2.1875, 0.25, 0.3125, 1.625, 1.25, 1.8125, 1.25, 0.25, 0.625, 1.4375,
    3.0, 1.25, -0.125, 1.25, 1.0625, 2.9375, 2.9375, 0.5, 1.25, 1.5, 1.25, 0.25, 1.6875, 1.75,
    0.25, 1.25, 0.5, 1.25, 2.0, 0.125, 0.75, 1.4375, 1.25, 1.25, 1.25, 1.25, 1.25, 1.25, 1.25,
    1.25,
];
const CONVT_OUT_SHAPE_10: &[f64] = &[
    0.75, -0.5, 1.1875, -0.125, -0.125, 0.25, -1.4375, 0.625, -1.25, 0.0, -0.25, 1.25, -0.0625,
    0.3125, 0.125, -0.625, 0.3125, -1.5625, 0.0, 0.0,
];
const CONVT_OUT_SHAPE_8: &[f64] = &[
    -0.5, 1.1875, -0.125, -0.125, 0.25, -1.4375, 0.625, -1.25, 1.25, -0.0625, 0.3125, 0.125,
    -0.625, 0.3125, -1.5625, 0.0,
];
const CONVT_SAME_UPPER: &[f64] = &[
    0.375, 0.0625, 1.25, -1.0625, 1.0625, -0.125, 0.125, 0.5, -0.5, 1.5625, -0.4375, -0.125, -3.25,
    1.0625, -0.1875, 0.4375, -0.0625, -0.875, 0.4375, -1.8125, 0.375, -0.0625, -0.25, 1.0,
];
const CONVT_SAME_LOWER: &[f64] = &[
    0.5, -0.5, 1.5625, -0.4375, -0.125, -0.125, 1.0625, -0.1875, 0.4375, -0.0625, -0.875, 0.625,
    -1.8125, 0.375, -0.0625, -0.25, 1.0, -0.25, -0.3125, -0.625, 0.1875, 1.75, 0.0, -1.25,
];

fn attrs(list: &[(&str, Attr)]) -> Attrs {
    Attrs(
        list.iter()
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect(),
    )
}

fn ints(v: &[i64]) -> Attr {
    Attr::Ints(v.to_vec())
}

fn conv(a: &[(&str, Attr)]) -> Conv {
    build("conv", attrs(a)).unwrap()
}

fn conv_t(a: &[(&str, Attr)]) -> ConvTranspose {
    build("conv_transpose", attrs(a)).unwrap()
}

#[test]
fn grouped_strided_dilated_asymmetric_pads() {
    let op = conv(&[
        ("group", Attr::Int(2)),
        ("strides", ints(&[2, 2])),
        ("pads", ints(&[1, 0, 2, 1])),
        ("dilations", ints(&[1, 2])),
    ]);
    let (x, w, b) = (
        pat(&[2, 4, 6, 7], 3, 1),
        pat(&[4, 2, 3, 2], 5, 2),
        pat(&[4], 7, 3),
    );
    let y = run(&op, &[Some(&x), Some(&w), Some(&b)], 1).unwrap();
    assert_close(&y[0], &[2, 4, 4, 3], CONV_GROUP);
    let tys: Vec<_> = [&x, &w, &b].iter().map(|t| t.ty()).collect();
    // 2 · N·M·(C/group)·prod(k)·prod(out) = 2 · (2·4·4·3) · 2 · 6
    assert_eq!(
        op.flops(&[Some(&tys[0]), Some(&tys[1]), Some(&tys[2])], &[y[0].ty()]),
        2 * 96 * 12
    );
}

#[test]
fn depthwise_same_upper() {
    let op = conv(&[
        ("group", Attr::Int(3)),
        ("strides", ints(&[2, 2])),
        ("auto_pad", Attr::Str("SAME_UPPER".into())),
    ]);
    let (x, w) = (pat(&[1, 3, 5, 5], 2, 0), pat(&[3, 1, 3, 3], 4, 1));
    let y = run(&op, &[Some(&x), Some(&w)], 1).unwrap();
    assert_close(&y[0], &[1, 3, 3, 3], CONV_DEPTHWISE_SAME_UPPER);
}

#[test]
fn conv1d_same_lower_even_kernel() {
    let op = conv(&[("auto_pad", Attr::Str("SAME_LOWER".into()))]);
    let (x, w) = (pat(&[1, 2, 7], 3, 2), pat(&[3, 2, 4], 5, 0));
    let y = run(&op, &[Some(&x), Some(&w)], 1).unwrap();
    assert_close(&y[0], &[1, 3, 7], CONV1D_SAME_LOWER);
}

#[test]
fn conv3d() {
    let op = conv(&[
        ("pads", ints(&[1; 6])),
        ("strides", ints(&[2, 1, 1])),
        ("kernel_shape", ints(&[2, 2, 2])),
    ]);
    let (x, w) = (pat(&[1, 2, 4, 3, 3], 3, 0), pat(&[2, 2, 2, 2, 2], 2, 5));
    let y = run(&op, &[Some(&x), Some(&w)], 1).unwrap();
    assert_close(&y[0], &[1, 2, 3, 4, 4], CONV3D);
}

#[test]
fn pointwise_with_bias_and_f64() {
    let op = conv(&[]);
    let (x, w, b) = (
        pat(&[1, 3, 2, 3], 4, 0),
        pat(&[2, 3, 1, 1], 3, 1),
        pat(&[2], 5, 5),
    );
    let y = run(&op, &[Some(&x), Some(&w), Some(&b)], 1).unwrap();
    assert_close(&y[0], &[1, 2, 2, 3], CONV_POINTWISE);
    let (x, w, b) = (
        x.cast(kiln_core::DType::F64),
        w.cast(kiln_core::DType::F64),
        b.cast(kiln_core::DType::F64),
    );
    let y = run(&op, &[Some(&x), Some(&w), Some(&b)], 1).unwrap();
    assert_eq!(y[0].dtype(), kiln_core::DType::F64);
    assert_close(&y[0], &[1, 2, 2, 3], CONV_POINTWISE);
}

#[test]
fn conv_shape_errors() {
    let op = conv(&[("group", Attr::Int(2))]);
    let (x, w) = (pat(&[1, 4, 5, 5], 1, 0), pat(&[4, 3, 3, 3], 1, 0));
    let e = run(&op, &[Some(&x), Some(&w)], 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(
        e.message.contains("3 channels per group × group 2 = 6") && e.message.contains("has 4"),
        "{}",
        e.message
    );
    let w = pat(&[3, 2, 3, 3], 1, 0);
    let e = run(&op, &[Some(&x), Some(&w)], 1).unwrap_err();
    assert!(
        e.message.contains("not divisible by group 2"),
        "{}",
        e.message
    );
    let op = conv(&[("kernel_shape", ints(&[2, 2]))]);
    let w = pat(&[2, 4, 3, 3], 1, 0);
    let e = run(&op, &[Some(&x), Some(&w)], 1).unwrap_err();
    assert!(
        e.message.contains("kernel_shape [2, 2] does not match"),
        "{}",
        e.message
    );
    let op = conv(&[]);
    let b = pat(&[3], 1, 0);
    let e = run(&op, &[Some(&x), Some(&w), Some(&b)], 1).unwrap_err();
    assert!(
        e.message.contains("bias B [3] must be [2]"),
        "{}",
        e.message
    );
    let x = pat(&[1, 4, 2, 2], 1, 0);
    let e = run(&op, &[Some(&x), Some(&w)], 1).unwrap_err();
    assert!(
        e.message.contains("smaller than the window"),
        "{}",
        e.message
    );
    let e = op
        .eval(&[Some(&pat(&[4, 5], 1, 0)), Some(&w)], 1)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    let e = op
        .eval(&[Some(&x.cast(kiln_core::DType::I32)), Some(&w)], 1)
        .unwrap_err();
    assert_eq!(e.kind, kiln_core::ErrorKind::Type);
    let e = build::<Conv>("conv", attrs(&[("strides", ints(&[0, 1]))])).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Attribute);
}

#[test]
fn transpose_grouped_strided_dilated() {
    let op = conv_t(&[
        ("group", Attr::Int(2)),
        ("strides", ints(&[2, 3])),
        ("pads", ints(&[1, 0, 0, 1])),
        ("output_padding", ints(&[1, 0])),
        ("dilations", ints(&[1, 2])),
    ]);
    let (x, w, b) = (
        pat(&[1, 4, 3, 2], 3, 1),
        pat(&[4, 1, 2, 3], 5, 2),
        pat(&[2], 7, 3),
    );
    let y = run(&op, &[Some(&x), Some(&w), Some(&b)], 1).unwrap();
    assert_close(&y[0], &[1, 2, 6, 7], CONVT_GROUP);
}

#[test]
fn transpose_output_shape_splits_pads_like_onnx() {
    let (x, w) = (pat(&[1, 1, 4], 3, 1), pat(&[1, 2, 3], 5, 2));
    // Natural size 9: a larger output_shape extends at the end, a smaller one crops
    // the odd element at the beginning.
    let op = conv_t(&[("strides", ints(&[2])), ("output_shape", ints(&[10]))]);
    assert_close(
        &run(&op, &[Some(&x), Some(&w)], 1).unwrap()[0],
        &[1, 2, 10],
        CONVT_OUT_SHAPE_10,
    );
    let op = conv_t(&[("strides", ints(&[2])), ("output_shape", ints(&[8]))]);
    assert_close(
        &run(&op, &[Some(&x), Some(&w)], 1).unwrap()[0],
        &[1, 2, 8],
        CONVT_OUT_SHAPE_8,
    );
}

#[test]
fn transpose_same_upper_and_lower() {
    let (x, w) = (pat(&[1, 2, 2, 3], 3, 1), pat(&[2, 1, 3, 3], 5, 2));
    for (mode, want) in [
        ("SAME_UPPER", CONVT_SAME_UPPER),
        ("SAME_LOWER", CONVT_SAME_LOWER),
    ] {
        let op = conv_t(&[
            ("strides", ints(&[2, 2])),
            ("auto_pad", Attr::Str(mode.into())),
        ]);
        assert_close(
            &run(&op, &[Some(&x), Some(&w)], 1).unwrap()[0],
            &[1, 1, 4, 6],
            want,
        );
    }
}

#[test]
fn transpose_shape_errors() {
    let op = conv_t(&[]);
    let e = run(
        &op,
        &[
            Some(&pat(&[1, 3, 4, 4], 1, 0)),
            Some(&pat(&[2, 1, 3, 3], 1, 0)),
        ],
        1,
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(
        e.message
            .contains("W [2, 1, 3, 3] has 2 input channels but X [1, 3, 4, 4] has 3"),
        "{}",
        e.message
    );
    let op = conv_t(&[("pads", ints(&[3, 3, 3, 3]))]);
    let e = run(
        &op,
        &[
            Some(&pat(&[1, 1, 2, 2], 1, 0)),
            Some(&pat(&[1, 1, 3, 3], 1, 0)),
        ],
        1,
    )
    .unwrap_err();
    assert!(e.message.contains("would have size -2"), "{}", e.message);
    let op = conv_t(&[("output_shape", ints(&[5]))]);
    let e = run(
        &op,
        &[
            Some(&pat(&[1, 1, 2, 2], 1, 0)),
            Some(&pat(&[1, 1, 3, 3], 1, 0)),
        ],
        1,
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Attribute);
}
