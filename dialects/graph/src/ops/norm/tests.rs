use super::test_support::*;
use kiln_core::{Attr, ErrorKind};

// Expected values: onnxruntime 1.32 (LRN with an even size, which onnxruntime rejects:
// the ONNX backend-test formula in numpy, f32).

#[test]
fn layer_norm_axis_1_rank_3() {
    let x = data(&[2, 3, 4], 37, 17, 4.0, 2.0);
    let w = data(&[3, 4], 5, 7, 3.0, 1.0);
    let b = data(&[3, 4], 3, 5, 2.0, 0.5);
    let ln = op(
        "layer_normalization",
        &[("axis", Attr::Int(1)), ("epsilon", Attr::Float(1e-3))],
    );
    let out = run(&ln, &[Some(&x), Some(&w), Some(&b)], 3).unwrap();
    #[rustfmt::skip]
    close(&out[0], &[2, 3, 4], &[
        1.0535885, 0.35267144, 0.0, 1.3705343, 1.2767942, -0.04687002, 1.45313, 0.77679425, 1.3705343, 0.5,
        -1.1473285, 2.5535884, 0.55125463, 0.7061008, 0.0, 0.9800246, 1.890369, -0.98606396, 1.2825953,
        0.23738009, 1.7486839, 0.5, -1.5625585, -0.2547232,
    ]);
    close(&out[1], &[2, 1, 1], &[0.0, -0.20833333]);
    close(&out[2], &[2, 1, 1], &[0.77679425, 0.81387454]);
    // Only Y requested; B optional.
    let y = run(&ln, &[Some(&x), Some(&w)], 1).unwrap();
    assert_eq!(y.len(), 1);
    assert_eq!(y[0].shape(), &[2, 3, 4]);
}

#[test]
fn layer_norm_errors() {
    let x = data(&[2, 3, 4], 37, 17, 4.0, 2.0);
    let ln = op("layer_normalization", &[]);
    let bad = data(&[3], 1, 5, 1.0, 0.0);
    assert_eq!(
        run(&ln, &[Some(&x), Some(&bad)], 1).unwrap_err().kind,
        ErrorKind::Shape
    );
    let ln5 = op("layer_normalization", &[("axis", Attr::Int(3))]);
    assert_eq!(
        run(&ln5, &[Some(&x), Some(&x)], 1).unwrap_err().kind,
        ErrorKind::Shape
    );
    let stash = kiln_core::Attrs(vec![("stash_type".into(), Attr::Int(0))]);
    let e = crate::ops::Op::from_attrs("layer_normalization", stash).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    let xi = i64s(&[1, 2, 3]);
    assert_eq!(
        run(&ln, &[Some(&xi), Some(&xi)], 1).unwrap_err().kind,
        ErrorKind::Type
    );
}

#[test]
fn lrn_even_odd_and_default_sizes() {
    let x = data(&[1, 6, 2, 2], 13, 23, 5.0, 2.0);
    let attrs = |size| {
        vec![
            ("size", Attr::Int(size)),
            ("alpha", Attr::Float(0.01)),
            ("beta", Attr::Float(0.6)),
            ("bias", Attr::Float(1.5)),
        ]
    };
    let out = run(&op("lrn", &attrs(4)), &[Some(&x)], 1).unwrap();
    #[rustfmt::skip]
    close(&out[0], &[1, 6, 2, 2], &[
        -1.5606264, 0.46755734, -1.0943938, 0.93323165, -0.6226705, 1.40245, -0.15559384, 1.8663895, 0.3115692,
        -1.2462769, 0.77836883, -0.7772636, 1.2466222, -0.31133524, 1.7124792, 0.155723, -1.4026719, 0.6242506,
        -0.9350037, 1.09114, -0.4687462, 1.5608741, 0.0, -1.5588331,
    ]);
    let out = run(&op("lrn", &attrs(3)), &[Some(&x)], 1).unwrap();
    #[rustfmt::skip]
    close(&out[0], &[1, 6, 2, 2], &[
        -1.5584834, 0.4681879, -1.094757, 0.931945, -0.62326175, 1.3998288, -0.15618663, 1.8614483, 0.31222436,
        -1.2446197, 0.7779693, -0.7770288, 1.2446197, -0.31222436, 1.7083864, 0.15618663, -1.3998288,
        0.62326175, -0.933072, 1.088985, -0.4681879, 1.5584834, 0.0, -1.5557746,
    ]);
    let out = run(&op("lrn", &[("size", Attr::Int(1))]), &[Some(&x)], 1).unwrap();
    #[rustfmt::skip]
    close(&out[0], &[1, 6, 2, 2], &[
        -1.9994004, 0.5999838, -1.3997942, 1.1998705, -0.7999616, 1.7995627, -0.19999939, 2.398964, 0.3999952,
        -1.599693, 0.999925, -0.999925, 1.599693, -0.3999952, 2.1992018, 0.19999939, -1.7995627, 0.7999616,
        -1.1998705, 1.3997942, -0.5999838, 1.9994004, 0.0, -1.9994004,
    ]);
    let e = crate::ops::Op::from_attrs("lrn", kiln_core::Attrs::new()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Attribute);
    let e =
        crate::ops::Op::from_attrs("lrn", kiln_core::Attrs(vec![("size".into(), Attr::Int(0))]));
    assert_eq!(e.unwrap_err().kind, ErrorKind::Attribute);
}

fn bn_params() -> [kiln_core::Tensor; 4] {
    [
        f32s(&[3], &[0.5, -1.0, 2.0]),
        f32s(&[3], &[0.1, 0.2, -0.3]),
        f32s(&[3], &[0.25, -0.5, 1.0]),
        f32s(&[3], &[1.5, 0.25, 4.0]),
    ]
}

#[test]
fn batch_norm_rank_4_and_3() {
    let [s, b, m, v] = bn_params();
    let bn = op(
        "batch_normalization",
        &[
            ("epsilon", Attr::Float(1e-2)),
            ("momentum", Attr::Float(0.8)),
        ],
    );
    let x = data(&[2, 3, 2, 2], 37, 17, 4.0, 2.0);
    let out = run(&bn, &[Some(&x), Some(&s), Some(&b), Some(&m), Some(&v)], 1).unwrap();
    #[rustfmt::skip]
    close(&out[0], &[2, 3, 2, 2], &[
        -0.81551206, -0.5103414, -0.20517068, 0.1, -2.7417421, -4.212613, 2.6514516, 1.1805806, -1.5484405,
        -0.79937613, -0.050311804, 0.6987524, -0.61206496, -0.30689424, -0.0017235577, 0.30344713, -3.7223227,
        3.141742, 1.670871, 0.19999999, -1.0490642, -0.29999995, 0.44906425, -3.0465689,
    ]);
    let x = data(&[2, 3, 5], 37, 17, 4.0, 2.0);
    let out = run(
        &op("batch_normalization", &[]),
        &[Some(&x), Some(&s), Some(&b), Some(&m), Some(&v)],
        1,
    );
    #[rustfmt::skip]
    close(&out.unwrap()[0], &[2, 3, 5], &[
        -0.8185556, -0.5123704, -0.20618519, 0.1, 0.4061852, -4.29991, 2.69995, 1.19998, -0.29999, -1.7999599,
        -0.05000019, 0.69999886, -2.7999969, -2.0499978, -1.2999988, 0.30412346, 0.61030865, -0.8185556,
        -0.5123704, -0.20618519, -1.2999699, -2.7999399, -4.29991, 2.69995, 1.19998, -1.5499985, -0.79999936,
        -0.05000019, 0.69999886, -2.7999969,
    ]);
}

#[test]
fn batch_norm_rejects_training_and_bad_params() {
    let [s, b, m, v] = bn_params();
    let x = data(&[2, 3, 2, 2], 37, 17, 4.0, 2.0);
    let bn = op("batch_normalization", &[]);
    let ins = [Some(&x), Some(&s), Some(&b), Some(&m), Some(&v)];
    assert_eq!(run(&bn, &ins, 3).unwrap_err().kind, ErrorKind::Unsupported);
    let training = kiln_core::Attrs(vec![("training_mode".into(), Attr::Int(1))]);
    let e = crate::ops::Op::from_attrs("batch_normalization", training).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    let short = f32s(&[2], &[1.0, 2.0]);
    assert_eq!(
        run(
            &bn,
            &[Some(&x), Some(&short), Some(&b), Some(&m), Some(&v)],
            1
        )
        .unwrap_err()
        .kind,
        ErrorKind::Shape
    );
    assert_eq!(
        run(&bn, &[Some(&s), Some(&s), Some(&b), Some(&m), Some(&v)], 1)
            .unwrap_err()
            .kind,
        ErrorKind::Shape
    );
    assert_eq!(
        run(&bn, &[Some(&x), Some(&s), Some(&b), Some(&m)], 1)
            .unwrap_err()
            .kind,
        ErrorKind::InvalidModel
    );
}

#[test]
fn instance_norm() {
    let [s, b, _, _] = bn_params();
    let x = data(&[2, 3, 2, 2], 37, 17, 4.0, 2.0);
    let out = run(
        &op("instance_normalization", &[("epsilon", Attr::Float(1e-3))]),
        &[Some(&x), Some(&s), Some(&b)],
        1,
    );
    #[rustfmt::skip]
    close(&out.unwrap()[0], &[2, 3, 2, 2], &[
        -0.57034385, -0.123447955, 0.32344794, 0.77034384, -0.5014738, -1.0275791, 1.4275792, 0.90147376,
        -2.9813752, -1.1937916, 0.59379196, 2.3813756, -0.57034385, -0.123447955, 0.32344794, 0.77034384,
        -1.3817635, 1.3024412, 0.72725445, 0.15206777, -0.39586446, 0.754509, 1.9048823, -3.4635267,
    ]);
    let flat = data(&[2, 3], 1, 7, 1.0, 0.0);
    let inorm = op("instance_normalization", &[]);
    assert_eq!(
        run(&inorm, &[Some(&flat), Some(&s), Some(&b)], 1)
            .unwrap_err()
            .kind,
        ErrorKind::Shape
    );
}
