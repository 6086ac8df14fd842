//! Unit tests of `pool.rs`.

use super::super::spatial::test_util::{assert_close, build, pat, run};
use super::*;
use kiln_core::{Attr, ErrorKind};

// Expected values: onnxruntime 1.32 on the same `pat` inputs (see test_util::pat).
const MAX_CEIL: &[f64] = &[
    0.75, 1.25, 1.0, 0.75, 1.25, 1.0, 1.25, 1.0, 0.75, 1.25, 1.0, 0.5, 1.25, 0.75, 1.25, 1.0, 0.75,
    1.25, 0.75, 1.25, 1.0, 0.75, 1.25, 1.0, 0.5, 1.25, 0.75, 1.25, 1.0, 0.75, 1.25, 1.0, 1.25, 1.0,
    0.75, 1.25,
];
const MAX_CEIL_IDX: &[f64] = &[
    6.0, 3.0, 10.0, 6.0, 14.0, 10.0, 25.0, 21.0, 28.0, 36.0, 32.0, 35.0, 36.0, 39.0, 47.0, 54.0,
    50.0, 58.0, 61.0, 69.0, 65.0, 72.0, 69.0, 76.0, 79.0, 80.0, 83.0, 91.0, 98.0, 94.0, 102.0,
    98.0, 113.0, 109.0, 116.0, 113.0,
];
const MAX_DIL_COLMAJOR: &[f64] = &[
    1.25, 1.25, 0.75, 1.0, 1.25, 1.25, 1.0, 1.0, 1.25, 0.75, 1.0, 1.25, 0.75, 1.0, 1.25, 1.25,
    0.75, 1.0, 1.25, 0.75, 1.0, 1.0, 1.25, 0.75,
];
const MAX_DIL_COLMAJOR_IDX: &[f64] = &[
    12.0, 12.0, 1.0, 21.0, 12.0, 12.0, 40.0, 40.0, 31.0, 43.0, 34.0, 54.0, 62.0, 82.0, 73.0, 73.0,
    62.0, 82.0, 92.0, 110.0, 101.0, 101.0, 92.0, 104.0,
];
const MAX_SAME_LOWER: &[f64] = &[
    0.75, 1.25, 1.25, 0.75, 1.25, 1.0, 1.25, 1.25, 1.0, 1.25, 1.0, 0.75, 1.25, 1.0, 1.25, 1.0,
    0.75, 1.25, 0.75, 1.25, 1.25, 0.75, 1.25, 1.25, 0.5, 1.25, 1.0, 1.25, 1.25, 0.75, 1.25, 1.0,
    1.25, 1.0, 1.0, 1.25,
];
const AVG_CEIL_INCLUDE_PAD: &[f64] = &[
    -0.1944444,
    0.0,
    0.08333334,
    -0.2222222,
    0.02777778,
    0.0,
    0.0,
    0.1388889,
    -0.08333334,
    0.02777778,
    0.02777778,
    -0.1944444,
    0.1111111,
    -0.08333334,
    -0.1111111,
    -0.08333334,
    -0.1388889,
    -0.05555556,
];
const AVG_CEIL_EXCLUDE_PAD: &[f64] = &[
    -0.4375,
    0.0,
    0.125,
    -0.3333333,
    0.02777778,
    0.0,
    0.0,
    0.2083333,
    -0.125,
    0.0625,
    0.04166667,
    -0.2916667,
    0.1666667,
    -0.08333334,
    -0.1111111,
    -0.1875,
    -0.2083333,
    -0.08333334,
];
const AVG_DIL_INCLUDE_PAD: &[f64] = &[
    -0.3125, 0.0625, -0.25, 0.125, -0.1875, 0.25, 0.0625, 0.125, 0.1875, 0.25, 0.3125, -0.1875,
    -0.4375, -0.1875, -0.125, -0.0625, 0.0, 0.0, 0.4375, 0.1875, 0.25, 0.3125, -0.3125, 0.1875,
    -0.125, -0.25, 0.125, -0.1875, 0.1875, -0.25, -0.1875, 0.3125, 0.0, -0.3125, 0.0625, -0.3125,
    0.3125, -0.0625, 0.0, 0.0625, 0.125, 0.0625, -0.1875, 0.3125, -0.3125, -0.25, -0.1875, -0.4375,
    0.0, 0.0, 0.0625, 0.125, 0.1875, 0.4375, 0.0, 0.0, -0.3125, 0.0625, -0.25, -0.125,
];
const AVG_SAME_UPPER: &[f64] = &[
    -0.4375,
    0.375,
    -0.1875,
    -0.3333333,
    0.25,
    -0.08333334,
    0.0,
    0.125,
    -0.4375,
    0.0625,
    0.1875,
    -0.375,
    0.1666667,
    -0.1666667,
    -0.04166667,
    -0.1875,
    -0.0625,
    0.0625,
];
const AVG_1D: &[f64] = &[
    -0.25, 0.0, -0.3333333, 0.25, -0.3333333, -0.25, 0.3333333, 0.0,
];
const AVG_3D_CEIL: &[f64] = &[
    0.09375, -0.15625, -0.21875, 0.21875, 0.1875, -0.0625, -0.125, -0.375,
];

const LP3_PADS: &[f64] = &[
    1.502311, 1.304276, 1.342921, 1.66235, 1.5228, 1.509203, 1.36003, 1.342921, 1.304276, 1.5622,
    1.5622, 1.625739,
];
const LP1_CEIL: &[f64] = &[
    6.25, 6.25, 3.5, 6.5, 5.75, 4.0, 6.0, 6.0, 4.25, 6.0, 6.25, 4.5,
];
const LP2_DIL: &[f64] = &[
    1.172604,
    1.457738,
    1.984313,
    1.63936,
    1.06066,
    0.75,
    1.984313,
    1.457738,
    1.172604,
    1.75,
    1.75,
    1.030776,
    1.457738,
    1.984313,
    1.63936,
    1.06066,
    1.63936,
    1.457738,
    1.346291,
    0.559017,
    1.030776,
    std::f64::consts::SQRT_2,
    1.030776,
    0.25,
    1.172604,
    1.75,
    1.75,
    1.172604,
    1.457738,
    1.346291,
    1.63936,
    1.06066,
    1.63936,
    1.984313,
    1.457738,
    0.559017,
    1.75,
    1.75,
    1.172604,
    1.457738,
    1.984313,
    1.457738,
    0.75,
    0.75,
    1.457738,
    1.346291,
    0.559017,
    0.25,
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

#[test]
fn max_pool_ceil_mode_asymmetric_pads_with_indices() {
    let op: MaxPool = build(
        "max_pool",
        attrs(&[
            ("kernel_shape", ints(&[3, 2])),
            ("strides", ints(&[2, 2])),
            ("pads", ints(&[1, 0, 0, 1])),
            ("ceil_mode", Attr::Int(1)),
        ]),
    )
    .unwrap();
    let x = pat(&[2, 2, 5, 6], 3, 1);
    // Width: ceil((6 + 1 - 2) / 2) + 1 = 4 windows, but the 4th would start on the
    // right padding, so 3 (onnx's own shape inference says 4; onnxruntime says 3).
    let y = run(&op, &[Some(&x)], 2).unwrap();
    assert_close(&y[0], &[2, 2, 3, 3], MAX_CEIL);
    assert_eq!(y[1].dtype(), DType::I64);
    assert_close(&y[1], &[2, 2, 3, 3], MAX_CEIL_IDX);
    assert_eq!(op.flops(&[Some(&x.ty())], &[y[0].ty()]), 36 * 6);
    assert_eq!(run(&op, &[Some(&x)], 1).unwrap().len(), 1);
}

#[test]
fn max_pool_dilations_column_major_indices() {
    let a = attrs(&[
        ("kernel_shape", ints(&[2, 2])),
        ("strides", ints(&[1, 2])),
        ("dilations", ints(&[2, 2])),
        ("storage_order", Attr::Int(1)),
    ]);
    let op: MaxPool = build("max_pool", a).unwrap();
    let y = run(&op, &[Some(&pat(&[2, 2, 5, 6], 3, 1))], 2).unwrap();
    assert_close(&y[0], &[2, 2, 3, 2], MAX_DIL_COLMAJOR);
    assert_close(&y[1], &[2, 2, 3, 2], MAX_DIL_COLMAJOR_IDX);
}

#[test]
fn max_pool_same_lower_and_u8() {
    let a = attrs(&[
        ("kernel_shape", ints(&[3, 3])),
        ("strides", ints(&[2, 2])),
        ("auto_pad", Attr::Str("SAME_LOWER".into())),
    ]);
    let op: MaxPool = build("max_pool", a).unwrap();
    let y = run(&op, &[Some(&pat(&[2, 2, 5, 6], 3, 1))], 1).unwrap();
    assert_close(&y[0], &[2, 2, 3, 3], MAX_SAME_LOWER);
    let a = attrs(&[
        ("kernel_shape", ints(&[3])),
        ("strides", ints(&[2])),
        ("pads", ints(&[1, 1])),
    ]);
    let op: MaxPool = build("max_pool", a).unwrap();
    let x: Vec<u8> = (0..18).map(|i| (i * 37 % 251) as u8).collect();
    let y = run(&op, &[Some(&Tensor::from_vec(&[1, 2, 9], x).unwrap())], 1).unwrap();
    assert_eq!(y[0].dtype(), DType::U8);
    assert_close(
        &y[0],
        &[1, 2, 5],
        &[
            37.0, 111.0, 185.0, 222.0, 45.0, 119.0, 193.0, 230.0, 90.0, 127.0,
        ],
    );
}

#[test]
fn max_pool_skips_nan() {
    let op: MaxPool = build("max_pool", attrs(&[("kernel_shape", ints(&[2]))])).unwrap();
    let x = Tensor::from_vec(&[1, 1, 3], vec![f32::NAN, -2.0, -3.0]).unwrap();
    assert_close(
        &run(&op, &[Some(&x)], 1).unwrap()[0],
        &[1, 1, 2],
        &[-2.0, -2.0],
    );
}

fn avg(list: &[(&str, Attr)]) -> AveragePool {
    build("average_pool", attrs(list)).unwrap()
}

#[test]
fn average_pool_ceil_mode_count_include_pad() {
    let x = pat(&[1, 2, 5, 6], 3, 1);
    for (include, want) in [(1, AVG_CEIL_INCLUDE_PAD), (0, AVG_CEIL_EXCLUDE_PAD)] {
        // Pads count when count_include_pad is set, the ceil_mode overhang never does.
        let op = avg(&[
            ("kernel_shape", ints(&[3, 3])),
            ("strides", ints(&[2, 2])),
            ("pads", ints(&[1, 1, 1, 0])),
            ("ceil_mode", Attr::Int(1)),
            ("count_include_pad", Attr::Int(include)),
        ]);
        assert_close(&run(&op, &[Some(&x)], 1).unwrap()[0], &[1, 2, 3, 3], want);
    }
}

#[test]
fn average_pool_dilations_same_upper_1d_3d() {
    let x = pat(&[1, 2, 5, 6], 3, 1);
    let op = avg(&[
        ("kernel_shape", ints(&[2, 2])),
        ("pads", ints(&[1, 1, 1, 1])),
        ("dilations", ints(&[2, 2])),
        ("count_include_pad", Attr::Int(1)),
    ]);
    assert_close(
        &run(&op, &[Some(&x)], 1).unwrap()[0],
        &[1, 2, 5, 6],
        AVG_DIL_INCLUDE_PAD,
    );
    let op = avg(&[
        ("kernel_shape", ints(&[3, 2])),
        ("strides", ints(&[2, 2])),
        ("auto_pad", Attr::Str("SAME_UPPER".into())),
    ]);
    assert_close(
        &run(&op, &[Some(&x)], 1).unwrap()[0],
        &[1, 2, 3, 3],
        AVG_SAME_UPPER,
    );
    let op = avg(&[
        ("kernel_shape", ints(&[3])),
        ("strides", ints(&[2])),
        ("pads", ints(&[2, 1])),
        ("count_include_pad", Attr::Int(1)),
    ]);
    assert_close(
        &run(&op, &[Some(&pat(&[1, 2, 7], 3, 2))], 1).unwrap()[0],
        &[1, 2, 4],
        AVG_1D,
    );
    let op = avg(&[
        ("kernel_shape", ints(&[2, 2, 2])),
        ("strides", ints(&[2, 2, 2])),
        ("ceil_mode", Attr::Int(1)),
    ]);
    let y = run(
        &op,
        &[Some(&pat(&[1, 1, 3, 4, 4], 5, 1).cast(DType::F64))],
        1,
    )
    .unwrap();
    assert_eq!(y[0].dtype(), DType::F64);
    assert_close(&y[0], &[1, 1, 2, 2, 2], AVG_3D_CEIL);
}

#[test]
fn lp_pool_pads_dilations_ceil() {
    let x = pat(&[1, 2, 5, 6], 3, 1);
    let op: LpPool = build(
        "lp_pool",
        attrs(&[
            ("kernel_shape", ints(&[3, 2])),
            ("strides", ints(&[2, 2])),
            ("pads", ints(&[1, 0, 0, 1])),
            ("p", Attr::Int(3)),
        ]),
    )
    .unwrap();
    assert_close(
        &run(&op, &[Some(&x)], 1).unwrap()[0],
        &[1, 2, 2, 3],
        LP3_PADS,
    );
    // p = 1 with ceil_mode: the overhang adds nothing (onnxruntime; the ONNX reference
    // rescales partial windows to the full kernel size instead).
    let op: LpPool = build(
        "lp_pool",
        attrs(&[
            ("kernel_shape", ints(&[3, 3])),
            ("strides", ints(&[2, 2])),
            ("ceil_mode", Attr::Int(1)),
            ("p", Attr::Int(1)),
        ]),
    )
    .unwrap();
    assert_close(
        &run(&op, &[Some(&x)], 1).unwrap()[0],
        &[1, 2, 2, 3],
        LP1_CEIL,
    );
    let op: LpPool = build(
        "lp_pool",
        attrs(&[
            ("kernel_shape", ints(&[2, 2])),
            ("dilations", ints(&[2, 1])),
            ("pads", ints(&[0, 0, 1, 1])),
        ]),
    )
    .unwrap();
    assert_close(
        &run(&op, &[Some(&x)], 1).unwrap()[0],
        &[1, 2, 4, 6],
        LP2_DIL,
    );
}

#[test]
fn pool_errors() {
    let e = build::<MaxPool>("max_pool", Attrs::new()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Attribute);
    assert!(e.message.contains("kernel_shape"), "{}", e.message);
    let e = build::<MaxPool>(
        "max_pool",
        attrs(&[
            ("kernel_shape", ints(&[2])),
            ("storage_order", Attr::Int(2)),
        ]),
    );
    assert_eq!(e.unwrap_err().kind, ErrorKind::Attribute);
    let op = avg(&[("kernel_shape", ints(&[3, 3]))]);
    let e = run(&op, &[Some(&pat(&[1, 1, 4], 1, 0))], 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Attribute);
    assert!(
        e.message
            .contains("kernel_shape [3, 3] has 2 values but the input has 1 spatial dims"),
        "{}",
        e.message
    );
    let e = run(&op, &[Some(&pat(&[1, 1, 2, 5], 1, 0))], 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    let e = run(&op, &[Some(&pat(&[4, 4], 1, 0))], 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(e.message.contains("[N, C, spatial…]"), "{}", e.message);
}
