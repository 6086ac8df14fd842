//! Gemm and MatMul against onnxruntime's values.

use super::super::spatial::test_util::{assert_close, build, pat, run};
use super::*;
use kiln_core::{Attr, DType, ErrorKind};

// Expected values: onnxruntime 1.32 on the same `pat` inputs (see test_util::pat).
const GEMM_TT: &[f64] = &[
    -0.65625, 3.5625, -0.125, -2.4375, 2.8125, -0.34375, 1.75, -0.28125, -1.96875, 2.1875, -1.0625,
    2.0, 0.9375, -0.8125, 1.5625,
];
const GEMM_COLUMN_C: &[f64] = &[-3.40625, 0.8125, 4.15625, 1.34375, 3.8125, 0.15625];
const GEMM_NO_C: &[f64] = &[1.9375, -0.875, -1.9375, -0.0625, -2.375, 0.0625];
const MATMUL_1D_3D: &[f64] = &[1.5625, -0.75, 1.0625, -0.5625, -0.75, 1.0625, -0.5625, 1.25];
const MATMUL_3D_1D: &[f64] = &[0.4375, -0.5, -0.75, -1.0, 1.5, 1.25];
const MATMUL_BCAST: &[f64] = &[
    1.9375, -0.875, -1.9375, -0.0625, -2.375, 0.0625, -0.625, -1.375, -0.6875, 1.1875, -0.0625,
    0.3125, -1.125, -0.5, 0.5625, -1.0, 0.1875, -0.125, 3.1875, -1.0, 0.4375, 0.25, 0.4375, 0.125,
    -0.75, 1.9375, -0.375, -1.9375, 0.0, -2.375, -2.8125, 0.1875, 0.1875, 0.3125, -0.25, 0.4375,
    0.5625, -0.5625, -0.1875, 1.3125, 0.4375, 0.4375, -0.1875, 0.75, 0.8125, -0.4375, 0.4375,
    0.4375, 0.4375, 0.0, -3.0, 0.5625, -3.0, 0.4375, 0.375, -2.8125, 0.0625, 0.1875, 0.4375, -0.25,
];

fn gemm(list: &[(&str, Attr)]) -> Gemm {
    build(
        "gemm",
        Attrs(
            list.iter()
                .map(|(n, a)| (n.to_string(), a.clone()))
                .collect(),
        ),
    )
    .unwrap()
}

#[test]
fn gemm_transposes_alpha_beta_vector_c() {
    let op = gemm(&[
        ("transA", Attr::Int(1)),
        ("transB", Attr::Int(1)),
        ("alpha", Attr::Float(0.5)),
        ("beta", Attr::Float(2.0)),
    ]);
    let (a, b, c) = (pat(&[4, 3], 3, 1), pat(&[5, 4], 5, 2), pat(&[5], 7, 3));
    let y = run(&op, &[Some(&a), Some(&b), Some(&c)], 1).unwrap();
    assert_close(&y[0], &[3, 5], GEMM_TT);
    let tys = [a.ty(), b.ty()];
    assert_eq!(
        op.flops(&[Some(&tys[0]), Some(&tys[1])], &[y[0].ty()]),
        2 * 3 * 4 * 5
    );
}

#[test]
fn gemm_column_c_and_no_c() {
    let (a, b, c) = (pat(&[3, 4], 3, 1), pat(&[4, 2], 5, 2), pat(&[3, 1], 7, 3));
    let op = gemm(&[("alpha", Attr::Float(-1.5))]);
    assert_close(
        &run(&op, &[Some(&a), Some(&b), Some(&c)], 1).unwrap()[0],
        &[3, 2],
        GEMM_COLUMN_C,
    );
    let op = gemm(&[]);
    assert_close(
        &run(&op, &[Some(&a), Some(&b)], 1).unwrap()[0],
        &[3, 2],
        GEMM_NO_C,
    );
    // beta = 0 ignores C entirely, even non-finite values.
    let op = gemm(&[("beta", Attr::Float(0.0))]);
    let inf = Tensor::from_vec(&[1], vec![f32::INFINITY]).unwrap();
    assert_close(
        &run(&op, &[Some(&a), Some(&b), Some(&inf)], 1).unwrap()[0],
        &[3, 2],
        GEMM_NO_C,
    );
}

#[test]
fn gemm_errors() {
    let op = gemm(&[("transA", Attr::Int(1))]);
    let e = run(
        &op,
        &[Some(&pat(&[3, 4], 1, 0)), Some(&pat(&[4, 2], 1, 0))],
        1,
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(
        e.message
            .contains("A [3, 4] (transposed) gives K = 3 but B [4, 2] gives K = 4"),
        "{}",
        e.message
    );
    let op = gemm(&[]);
    let c = pat(&[2, 2], 1, 0);
    let e = run(
        &op,
        &[
            Some(&pat(&[3, 4], 1, 0)),
            Some(&pat(&[4, 2], 1, 0)),
            Some(&c),
        ],
        1,
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("C [2, 2] does not broadcast to the result [3, 2]"),
        "{}",
        e.message
    );
    let e = run(&op, &[Some(&pat(&[3], 1, 0)), Some(&pat(&[3, 2], 1, 0))], 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    let e = op
        .eval(
            &[
                Some(&pat(&[2, 2], 1, 0)),
                Some(&pat(&[2, 2], 1, 0).cast(DType::F64)),
            ],
            1,
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Type);
}

#[test]
fn matmul_vectors() {
    let y = run(
        &MatMul::default(),
        &[Some(&pat(&[4], 3, 1)), Some(&pat(&[4], 5, 2))],
        1,
    )
    .unwrap();
    assert_close(&y[0], &[], &[0.4375]);
    let y = run(
        &MatMul::default(),
        &[Some(&pat(&[3], 3, 1)), Some(&pat(&[2, 3, 4], 5, 2))],
        1,
    )
    .unwrap();
    assert_close(&y[0], &[2, 4], MATMUL_1D_3D);
    let y = run(
        &MatMul::default(),
        &[Some(&pat(&[2, 3, 4], 3, 1)), Some(&pat(&[4], 5, 2))],
        1,
    )
    .unwrap();
    assert_close(&y[0], &[2, 3], MATMUL_3D_1D);
}

#[test]
fn matmul_batch_broadcast() {
    let (a, b) = (pat(&[2, 1, 3, 4], 3, 1), pat(&[5, 4, 2], 5, 2));
    let y = run(&MatMul::default(), &[Some(&a), Some(&b)], 1).unwrap();
    assert_close(&y[0], &[2, 5, 3, 2], MATMUL_BCAST);
    assert_eq!(
        MatMul::default().flops(&[Some(&a.ty()), Some(&b.ty())], &[y[0].ty()]),
        2 * 10 * 3 * 4 * 2
    );
    // The same values stored column-major: non-standard layouts are copied first.
    let stored_t = b
        .as_f32()
        .unwrap()
        .view()
        .permuted_axes(vec![0, 2, 1])
        .as_standard_layout()
        .into_owned();
    let bt = Tensor::F32(stored_t.permuted_axes(vec![0, 2, 1]));
    assert!(!bt.as_f32().unwrap().is_standard_layout());
    assert_close(
        &run(&MatMul::default(), &[Some(&a), Some(&bt)], 1).unwrap()[0],
        &[2, 5, 3, 2],
        MATMUL_BCAST,
    );
    let f = |t: &Tensor| t.cast(DType::F64);
    assert_close(
        &run(&MatMul::default(), &[Some(&f(&a)), Some(&f(&b))], 1).unwrap()[0],
        &[2, 5, 3, 2],
        MATMUL_BCAST,
    );
}

#[test]
fn matmul_errors() {
    let e = run(
        &MatMul::default(),
        &[Some(&pat(&[2, 3], 1, 0)), Some(&pat(&[4, 2], 1, 0))],
        1,
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(
        e.message
            .contains("A [2, 3] has 3 columns but B [4, 2] has 4 rows"),
        "{}",
        e.message
    );
    let e = run(
        &MatMul::default(),
        &[Some(&pat(&[2, 2, 3], 1, 0)), Some(&pat(&[3, 3, 1], 1, 0))],
        1,
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("batch dims [2] of A [2, 2, 3] and [3] of B [3, 3, 1] do not broadcast"),
        "{}",
        e.message
    );
    // An empty inner dimension is a sum of nothing.
    let y = run(
        &MatMul::default(),
        &[Some(&pat(&[2, 0], 1, 0)), Some(&pat(&[0, 3], 1, 0))],
        1,
    )
    .unwrap();
    assert_close(&y[0], &[2, 3], &[0.0; 6]);
    let s = Tensor::scalar(1.0f32);
    assert_eq!(
        run(&MatMul::default(), &[Some(&s), Some(&s)], 1)
            .unwrap_err()
            .kind,
        ErrorKind::Shape
    );
    let i = pat(&[2, 2], 1, 0).cast(DType::I32);
    assert_eq!(
        run(&MatMul::default(), &[Some(&i), Some(&i)], 1)
            .unwrap_err()
            .kind,
        ErrorKind::Type
    );
}

#[test]
fn matmul_epilogue_bias_residual_prelu() {
    // act(A@B + bias + Y) with PRelu: [1, 2]@I = [1, 2]; + [-3, 0.5] = [-2, 2.5];
    // + [0.5, -1] = [-1.5, 1.5]; slope [0.5, 2] → [-0.75, 1.5].
    let t = |s: &[usize], v: &[f32]| Tensor::from_vec(s, v.to_vec()).unwrap();
    let (a, b) = (t(&[1, 2], &[1.0, 2.0]), t(&[2, 2], &[1.0, 0.0, 0.0, 1.0]));
    let (bias, y, slope) = (
        t(&[2], &[-3.0, 0.5]),
        t(&[1, 2], &[0.5, -1.0]),
        t(&[2], &[0.5, 2.0]),
    );
    let op = MatMul {
        act: Activation::PRelu,
        ..MatMul::default()
    };
    let ins = [Some(&a), Some(&b), Some(&bias), Some(&y), Some(&slope)];
    assert_close(&run(&op, &ins, 1).unwrap()[0], &[1, 2], &[-0.75, 1.5]);
    // Without its slope, PRelu is an error; a residual of the wrong shape too.
    assert_eq!(op.eval(&ins[..4], 1).unwrap_err().kind, ErrorKind::Shape);
    let bad = t(&[3], &[0.0; 3]);
    let plain = MatMul::default();
    let e = plain
        .eval(&[Some(&a), Some(&b), None, Some(&bad)], 1)
        .unwrap_err();
    assert!(
        e.message.contains("residual Y [3] does not broadcast"),
        "{}",
        e.message
    );
    // Gemm: relu6 of alpha·A·B + C + Y.
    let g = Gemm {
        act: Activation::Clip { min: 0.0, max: 6.0 },
        alpha: 4.0,
        ..Gemm::default()
    };
    let c = t(&[2], &[-5.0, 0.0]);
    let out = g
        .eval(&[Some(&a), Some(&b), Some(&c), Some(&y)], 1)
        .unwrap();
    assert_close(&out[0], &[1, 2], &[0.0, 6.0]);
}

#[test]
fn matmul_transposed_operands() {
    // transA/transB read the operands with their last two dims swapped: the same values as
    // MATMUL_BCAST with A and B stored transposed (and standard-layout).
    let (a, b) = (pat(&[2, 1, 3, 4], 3, 1), pat(&[5, 4, 2], 5, 2));
    let stored_t = |t: &Tensor, perm: Vec<usize>| {
        let v = t.as_f32().unwrap().view().permuted_axes(perm);
        Tensor::F32(v.as_standard_layout().into_owned())
    };
    let (at, bt) = (stored_t(&a, vec![0, 1, 3, 2]), stored_t(&b, vec![0, 2, 1]));
    let op = MatMul {
        trans_a: true,
        trans_b: true,
        ..MatMul::default()
    };
    let y = run(&op, &[Some(&at), Some(&bt)], 1).unwrap();
    assert_close(&y[0], &[2, 5, 3, 2], MATMUL_BCAST);
    assert_eq!(
        op.flops(&[Some(&at.ty()), Some(&bt.ty())], &[y[0].ty()]),
        2 * 10 * 3 * 4 * 2
    );
    let only_b = MatMul {
        trans_b: true,
        ..MatMul::default()
    };
    let y = run(&only_b, &[Some(&a), Some(&bt)], 1).unwrap();
    assert_close(&y[0], &[2, 5, 3, 2], MATMUL_BCAST);
    // A transposed 1-D operand has no last two dims.
    let v = pat(&[4], 1, 0);
    let e = only_b.eval(&[Some(&a), Some(&v)], 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
}
