use crate::ops::norm::test_support::*;
use kiln_core::{Attr, ErrorKind, Tensor};

// Expected values: onnxruntime 1.32.

#[test]
fn keepdims_0_with_negative_axes() {
    let x = data(&[2, 3, 4], 11, 19, 1.5, 3.0);
    let axes = i64s(&[-1, 0]);
    let cases: &[(&str, [f32; 3])] = &[
        ("reduce_mean", [2.9166665, 2.1666665, 3.0]),
        ("reduce_sum", [23.333332, 17.333332, 24.0]),
        ("reduce_max", [9.0, 8.333333, 7.0]),
        ("reduce_min", [-3.0, -3.0, -1.0]),
        ("reduce_prod", [-25660.553, 1043.5184, 533.642]),
        ("reduce_l1", [34.666668, 28.0, 26.666668]),
        ("reduce_l2", [14.079141, 12.578641, 11.737878]),
        ("reduce_sum_square", [198.22221, 158.22221, 137.77779]),
        ("reduce_log_sum_exp", [9.11285, 8.753193, 7.5461144]),
    ];
    for (name, want) in cases {
        let r = op(name, &[("keepdims", Attr::Int(0))]);
        close(
            &run(&r, &[Some(&x), Some(&axes)], 1).unwrap()[0],
            &[3],
            want,
        );
    }
    let pos = x
        .to_f64_vec()
        .iter()
        .map(|v| v.abs() as f32 + 0.5)
        .collect::<Vec<_>>();
    let pos = f32s(&[2, 3, 4], &pos);
    let out = run(
        &op("reduce_log_sum", &[]),
        &[Some(&pos), Some(&i64s(&[-2]))],
        1,
    )
    .unwrap();
    #[rustfmt::skip]
    close(&out[0], &[2, 1, 4], &[2.3513753, 2.6741486, 2.5257287, 2.4709206, 2.7191, 2.6270812, 2.4709206, 2.412933]);
}

#[test]
fn empty_axes_reduce_all_or_nothing() {
    let x = data(&[2, 3], 1, 7, 1.0, 0.0);
    let out = run(&op("reduce_sum", &[]), &[Some(&x), Some(&i64s(&[]))], 1).unwrap();
    close(&out[0], &[1, 1], &[15.0]);
    let out = run(
        &op("reduce_mean", &[("keepdims", Attr::Int(0))]),
        &[Some(&x)],
        1,
    )
    .unwrap();
    close(&out[0], &[], &[2.5]);
    let noop = op("reduce_sum", &[("noop_with_empty_axes", Attr::Int(1))]);
    assert_eq!(run(&noop, &[Some(&x)], 1).unwrap()[0], x);
    // "No-op" still applies the element-wise parts (onnxruntime agrees).
    let signed = f32s(&[2, 2], &[-2.0, 0.5, 3.0, 4.0]);
    let l1 = op("reduce_l1", &[("noop_with_empty_axes", Attr::Int(1))]);
    let got = run(&l1, &[Some(&signed), Some(&i64s(&[]))], 1).unwrap();
    close(&got[0], &[2, 2], &[2.0, 0.5, 3.0, 4.0]);
    let sq = op(
        "reduce_sum_square",
        &[("noop_with_empty_axes", Attr::Int(1))],
    );
    close(
        &run(&sq, &[Some(&signed)], 1).unwrap()[0],
        &[2, 2],
        &[4.0, 0.25, 9.0, 16.0],
    );
}

#[test]
fn empty_sets_give_identities() {
    let x = Tensor::from_vec::<f32>(&[2, 0, 4], vec![]).unwrap();
    let axes = i64s(&[1]);
    for (name, want) in [
        ("reduce_sum", 0.0),
        ("reduce_prod", 1.0),
        ("reduce_max", f32::NEG_INFINITY),
        ("reduce_min", f32::INFINITY),
        ("reduce_log_sum_exp", f32::NEG_INFINITY),
    ] {
        let out = run(&op(name, &[]), &[Some(&x), Some(&axes)], 1).unwrap();
        assert_eq!(out[0], f32s(&[2, 1, 4], &[want; 8]), "{name}");
    }
    let out = run(&op("reduce_sum", &[]), &[Some(&x), Some(&i64s(&[2]))], 1).unwrap();
    assert_eq!(out[0].shape(), &[2, 0, 1]);
}

#[test]
fn integer_and_bool_inputs() {
    let v: Vec<i64> = vec![-6, 1, -5, 2, -4, 3, -3, 4, -2, 5, -1, 6];
    let x = Tensor::from_vec(&[3, 4], v.clone()).unwrap();
    let out = run(
        &op("reduce_sum", &[("keepdims", Attr::Int(0))]),
        &[Some(&x), Some(&i64s(&[1]))],
        1,
    );
    assert_eq!(
        out.unwrap()[0],
        Tensor::from_vec(&[3], vec![-8i64, 0, 8]).unwrap()
    );
    let x32 = x.cast(kiln_core::DType::I32);
    let out = run(&op("reduce_max", &[]), &[Some(&x32)], 1).unwrap();
    assert_eq!(out[0], Tensor::from_vec(&[1, 1], vec![6i32]).unwrap());
    // Exact beyond f64's 53-bit mantissa.
    let big = Tensor::from_vec(&[2], vec![(1i64 << 60) + 1, 2]).unwrap();
    let out = run(&op("reduce_sum", &[]), &[Some(&big)], 1).unwrap();
    assert_eq!(
        out[0],
        Tensor::from_vec(&[1], vec![(1i64 << 60) + 3]).unwrap()
    );
    let b = Tensor::from_vec(&[2, 2], vec![true, false, false, false]).unwrap();
    let axes = i64s(&[1]);
    let any = run(&op("reduce_max", &[]), &[Some(&b), Some(&axes)], 1).unwrap();
    assert_eq!(
        any[0],
        Tensor::from_vec(&[2, 1], vec![true, false]).unwrap()
    );
    let all = run(&op("reduce_min", &[]), &[Some(&b), Some(&axes)], 1).unwrap();
    assert_eq!(
        all[0],
        Tensor::from_vec(&[2, 1], vec![false, false]).unwrap()
    );
    assert_eq!(
        run(&op("reduce_sum", &[]), &[Some(&b)], 1)
            .unwrap_err()
            .kind,
        ErrorKind::Type
    );
}

#[test]
fn arg_max_and_min() {
    let x = data(&[2, 3, 4], 11, 19, 1.5, 3.0);
    let am = op(
        "arg_max",
        &[
            ("axis", Attr::Int(-2)),
            ("keepdims", Attr::Int(0)),
            ("select_last_index", Attr::Int(1)),
        ],
    );
    let out = run(&am, &[Some(&x)], 1).unwrap();
    assert_eq!(
        out[0],
        Tensor::from_vec(&[2, 4], vec![2i64, 1, 2, 0, 0, 1, 2, 0]).unwrap()
    );
    let out = run(&op("arg_min", &[("axis", Attr::Int(1))]), &[Some(&x)], 1).unwrap();
    assert_eq!(
        out[0],
        Tensor::from_vec(&[2, 1, 4], vec![0i64, 2, 0, 1, 1, 2, 0, 1]).unwrap()
    );
    let ties = i64s(&[3, 1, 3]);
    let first = run(&op("arg_max", &[]), &[Some(&ties)], 1).unwrap();
    assert_eq!(first[0], Tensor::from_vec(&[1], vec![0i64]).unwrap());
}

#[test]
fn bad_axes() {
    let x = data(&[2, 3], 1, 7, 1.0, 0.0);
    let r = op("reduce_sum", &[]);
    let scalar = Tensor::scalar(1.0f32);
    let e = run(&r, &[Some(&scalar), Some(&i64s(&[0]))], 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    let whole = run(&r, &[Some(&scalar)], 1).unwrap();
    assert_eq!(whole[0], scalar);
    assert_eq!(
        run(&r, &[Some(&x), Some(&i64s(&[2]))], 1).unwrap_err().kind,
        ErrorKind::Shape
    );
    assert_eq!(
        run(&r, &[Some(&x), Some(&i64s(&[1, -1]))], 1)
            .unwrap_err()
            .kind,
        ErrorKind::Shape
    );
    let floats = f32s(&[1], &[1.0]);
    assert_eq!(
        run(&r, &[Some(&x), Some(&floats)], 1).unwrap_err().kind,
        ErrorKind::Type
    );
    let empty = Tensor::from_vec::<f32>(&[2, 0], vec![]).unwrap();
    let am = op("arg_max", &[("axis", Attr::Int(1))]);
    assert_eq!(
        run(&am, &[Some(&empty)], 1).unwrap_err().kind,
        ErrorKind::Shape
    );
}
