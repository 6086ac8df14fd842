use crate::ops::norm::test_support::*;
use kiln_core::{Attr, ErrorKind, Tensor};

// Expected values: onnxruntime 1.32, except where noted (the ONNX reference).

fn x() -> Tensor {
    data(&[1, 1, 3, 4], 7, 11, 2.0, 1.0)
}

fn s(v: &[&str]) -> Vec<(&'static str, Attr)> {
    let names = ["mode", "coordinate_transformation_mode", "nearest_mode"];
    names
        .iter()
        .zip(v)
        .map(|(n, v)| (*n, Attr::Str(v.to_string())))
        .collect()
}

fn scaled(attrs: &[(&str, Attr)], scales: &[f32]) -> Tensor {
    let sc = f32s(&[scales.len()], scales);
    run(&op("resize", attrs), &[Some(&x()), None, Some(&sc)], 1)
        .unwrap()
        .remove(0)
}

fn sized(attrs: &[(&str, Attr)], sizes: &[i64]) -> Tensor {
    run(
        &op("resize", attrs),
        &[Some(&x()), None, None, Some(&i64s(sizes))],
        1,
    )
    .unwrap()
    .remove(0)
}

#[test]
fn nearest_asymmetric_floor_like_upsample() {
    let a = s(&["nearest", "asymmetric", "floor"]);
    let up = scaled(&a, &[1.0, 1.0, 2.0, 3.0]);
    let row = |v: [f32; 4]| v.iter().flat_map(|&e| [e; 3]).collect::<Vec<_>>();
    let mut want = Vec::new();
    for r in [
        [-1.0, 2.5, 0.5, 4.0],
        [2.0, 0.0, 3.5, 1.5],
        [-0.5, 3.0, 1.0, -1.0],
    ] {
        want.extend(row(r));
        want.extend(row(r));
    }
    close(&up, &[1, 1, 6, 12], &want);
    close(
        &scaled(&a, &[1.0, 1.0, 0.6, 0.5]),
        &[1, 1, 1, 2],
        &[-1.0, 0.5],
    );
}

#[test]
fn nearest_half_pixel_round_prefer_floor() {
    let up = scaled(&[], &[1.0, 1.0, 2.5, 1.5]);
    #[rustfmt::skip]
    close(&up, &[1, 1, 7, 6], &[
        -1.0, -1.0, 2.5, 0.5, 0.5, 4.0, -1.0, -1.0, 2.5, 0.5, 0.5, 4.0, -1.0, -1.0, 2.5, 0.5, 0.5, 4.0,
        2.0, 2.0, 0.0, 3.5, 3.5, 1.5, 2.0, 2.0, 0.0, 3.5, 3.5, 1.5, -0.5, -0.5, 3.0, 1.0, 1.0, -1.0,
        -0.5, -0.5, 3.0, 1.0, 1.0, -1.0,
    ]);
    close(
        &scaled(&[], &[1.0, 1.0, 0.7, 0.6]),
        &[1, 1, 2, 2],
        &[-1.0, 0.5, -0.5, 1.0],
    );
}

#[test]
fn linear_half_pixel() {
    let a = s(&["linear"]);
    #[rustfmt::skip]
    close(&scaled(&a, &[1.0, 1.0, 2.0, 1.5]), &[1, 1, 6, 6], &[
        -1.0, 0.75, 2.1666667, 0.8333335, 2.25, 4.0, -0.25, 0.8125, 1.7708333, 1.3541667, 2.3125, 3.375, 1.25,
        0.9375, 0.97916657, 2.395833, 2.4375, 2.125, 1.375, 1.0625, 1.1041665, 2.520833, 1.875, 0.875, 0.125,
        1.1875, 2.1458333, 1.7291667, 0.625, -0.375, -0.5, 1.25, 2.6666665, 1.3333335, 0.0, -1.0,
    ]);
    let down = scaled(&a, &[1.0, 1.0, 0.7, 0.6]);
    close(
        &down,
        &[1, 1, 2, 2],
        &[0.41666663, 1.1428572, 0.9047619, 1.8928573],
    );
}

#[test]
fn linear_align_corners() {
    let a = s(&["linear", "align_corners"]);
    #[rustfmt::skip]
    close(&scaled(&a, &[1.0, 1.0, 2.0, 2.0]), &[1, 1, 6, 8], &[
        -1.0, 0.5, 2.0, 1.9285715, 1.0714285, 0.99999976, 2.5, 4.0, 0.19999999, 0.7571429, 1.3142858, 1.5571429,
        1.6428571, 1.8857143, 2.4428573, 3.0, 1.4000001, 1.0142857, 0.6285714, 1.1857142, 2.2142856, 2.7714288,
        2.3857143, 2.0, 1.4999999, 1.1142857, 0.72857153, 1.2857143, 2.3142855, 2.7142859, 1.8571429, 0.9999999,
        0.49999994, 1.0571429, 1.6142857, 1.8571429, 1.942857, 1.7142859, 0.8571429, -5.9604645e-08, -0.5, 1.0,
        2.5, 2.4285712, 1.5714285, 0.71428585, -0.14285707, -1.0,
    ]);
    close(
        &sized(&a, &[1, 1, 2, 3]),
        &[1, 1, 2, 3],
        &[-1.0, 1.5, 4.0, -0.5, 2.0, -1.0],
    );
    // A scale whose output size is not whole: the ONNX reference divides by
    // scale·length − 1, not by the rounded length − 1 (onnxruntime gives
    // [-1, 4, -0.5, -1] here); kiln follows the reference and its conformance data.
    let odd = scaled(&a, &[1.0, 1.0, 0.7, 0.6]);
    close(
        &odd,
        &[1, 1, 2, 2],
        &[-1.0, 0.99999946, -0.045454692, 1.1688313],
    );
}

#[test]
fn linear_pytorch_half_pixel() {
    let a = s(&["linear", "pytorch_half_pixel"]);
    #[rustfmt::skip]
    close(&scaled(&a, &[1.0, 1.0, 2.0, 2.5]), &[1, 1, 6, 10], &[
        -1.0, -0.6499999, 0.75, 2.15, 1.9000001, 1.0999999, 0.84999967, 2.25, 3.6500003, 4.0, -0.25,
        -0.037499905, 0.8125, 1.6624999, 1.6875, 1.4375, 1.4624999, 2.3125, 3.1625001, 3.375, 1.25, 1.1874999,
        0.9375, 0.68750006, 1.2624999, 2.1125002, 2.6875, 2.4375, 2.1875, 2.125, 1.375, 1.3125, 1.0625, 0.8125,
        1.3875, 2.2375, 2.6750002, 1.875, 1.0749998, 0.875, 0.125, 0.33750007, 1.1875, 2.0375, 2.0625, 1.8125,
        1.4250002, 0.625, -0.17500019, -0.375, -0.5, -0.14999992, 1.25, 2.6499999, 2.4, 1.5999999, 0.8000002,
        0.0, -0.8000002, -1.0,
    ]);
    // Length-1 outputs sample the first row (coordinate -0.5).
    close(
        &sized(&a, &[1, 1, 1, 3]),
        &[1, 1, 1, 3],
        &[-0.4166666, 1.5, 3.4166665],
    );
}

#[test]
fn cubic_half_pixel() {
    #[rustfmt::skip]
    close(&scaled(&s(&["cubic"]), &[1.0, 1.0, 2.0, 2.0]), &[1, 1, 6, 8], &[
        -1.746727, -0.30130768, 2.1113968, 2.4660034, 0.4812622, 0.83586884, 3.2485733, 4.6939926, -0.44974518,
        0.2541275, 1.4204025, 1.8392105, 1.2293015, 1.7191086, 2.991127, 3.759201, 1.724678, 1.1821213,
        0.25333405, 0.77788544, 2.4745255, 3.2120743, 2.6005173, 2.2505646, 1.8906937, 1.3481369, 0.41934967,
        1.0081024, 2.8331451, 2.9643478, 1.3541031, 0.39780426, -0.045448303, 0.6584244, 1.8246994, 2.3998566,
        2.1026459, 1.1158218, -0.044258118, -0.75281525, -1.1939926, 0.2514267, 2.6641312, 3.2324905,
        1.6752548, 0.01108551, -0.90125275, -1.4746094,
    ]);
}

#[test]
fn linear_on_a_subset_of_axes() {
    // N-linear over axes 1 and 3 of a rank-4 tensor (onnxruntime refuses this layout;
    // expected values from the ONNX reference).
    let v = data(&[2, 3, 2, 3], 5, 13, 2.0, 1.5);
    let mut a = s(&["linear"]);
    a.push(("axes", Attr::Ints(vec![1, 3])));
    let sc = f32s(&[2], &[2.0, 0.5]);
    let out = run(&op("resize", &a), &[Some(&v), None, Some(&sc)], 1).unwrap();
    #[rustfmt::skip]
    close(&out[0], &[2, 6, 2, 1], &[
        -0.25, 0.75, 0.25, 1.25, 1.25, 2.25, 1.4375, 2.4375, 0.8125, 1.8125, 0.5, 1.5, 2.5, 0.25, 2.1875, 0.75,
        1.5625, 1.75, 1.75, 1.9375, 2.75, 1.3125, 3.25, 1.0,
    ]);
}

#[test]
fn integer_nearest_is_exact_and_linear_rounds() {
    let v = Tensor::from_vec(&[1, 3], vec![(1i64 << 60) + 1, 5, 7]).unwrap();
    let sc = f32s(&[2], &[1.0, 2.0]);
    let up = run(
        &op("resize", &s(&["nearest", "asymmetric", "floor"])),
        &[Some(&v), None, Some(&sc)],
        1,
    );
    let want = vec![(1i64 << 60) + 1, (1 << 60) + 1, 5, 5, 7, 7];
    assert_eq!(up.unwrap()[0], Tensor::from_vec(&[1, 6], want).unwrap());
    let u8s = Tensor::from_vec(&[1, 2], vec![0u8, 255]).unwrap();
    let sc = f32s(&[2], &[1.0, 2.0]);
    let lin = run(
        &op("resize", &s(&["linear"])),
        &[Some(&u8s), None, Some(&sc)],
        1,
    )
    .unwrap();
    // 63.75 rounds to 64, 191.25 to 191.
    assert_eq!(
        lin[0],
        Tensor::from_vec(&[1, 4], vec![0u8, 64, 191, 255]).unwrap()
    );
}

#[test]
fn bad_inputs_are_typed_errors() {
    let r = op("resize", &[]);
    let x = x();
    let kind = |ins: &[Option<&Tensor>]| run(&r, ins, 1).unwrap_err().kind;
    let sc = f32s(&[4], &[1.0, 1.0, 2.0, 2.0]);
    let sz = i64s(&[1, 1, 6, 8]);
    assert_eq!(
        kind(&[Some(&x), None, Some(&sc), Some(&sz)]),
        ErrorKind::InvalidModel
    );
    assert_eq!(kind(&[Some(&x)]), ErrorKind::InvalidModel);
    assert_eq!(
        kind(&[Some(&x), None, Some(&f32s(&[2], &[2.0, 2.0]))]),
        ErrorKind::Shape
    );
    assert_eq!(
        kind(&[Some(&x), None, Some(&f32s(&[4], &[1.0, 1.0, 0.0, 2.0]))]),
        ErrorKind::Shape
    );
    assert_eq!(
        kind(&[Some(&x), None, Some(&f32s(&[4], &[1.0, 1.0, 1e30, 1e30]))]),
        ErrorKind::Shape
    );
    assert_eq!(
        kind(&[Some(&x), None, None, Some(&i64s(&[1, 1, -2, 3]))]),
        ErrorKind::Shape
    );
    let crop = op("resize", &s(&["linear", "tf_crop_and_resize"]));
    let no_roi = run(&crop, &[Some(&x), None, Some(&sc)], 1).unwrap_err();
    assert_eq!(no_roi.kind, ErrorKind::InvalidModel);
    let roi = f32s(&[4], &[0.0, 0.0, 1.0, 1.0]);
    let short = run(&crop, &[Some(&x), Some(&roi), Some(&sc)], 1).unwrap_err();
    assert_eq!(short.kind, ErrorKind::Shape);
    let attrs = |k: &str, v: Attr| kiln_core::Attrs(vec![(k.to_string(), v)]);
    let on_axis_0 = crate::ops::Op::from_attrs("resize", attrs("axes", Attr::Ints(vec![0])));
    let scalar = Tensor::scalar(1.0f32);
    let one = f32s(&[1], &[2.0]);
    let e = run(&on_axis_0.unwrap(), &[Some(&scalar), None, Some(&one)], 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    let e = crate::ops::Op::from_attrs("resize", attrs("mode", Attr::Str("bilinear".into())));
    assert_eq!(e.unwrap_err().kind, ErrorKind::Attribute);
    let e = crate::ops::Op::from_attrs("resize", attrs("antialias", Attr::Int(1)));
    assert_eq!(e.unwrap_err().kind, ErrorKind::Unsupported);
    let e = crate::ops::Op::from_attrs("resize", attrs("axes", Attr::Ints(vec![2, 2])));
    let r2 = e.unwrap();
    let two = f32s(&[2], &[2.0, 2.0]);
    assert_eq!(
        run(&r2, &[Some(&x), None, Some(&two)], 1).unwrap_err().kind,
        ErrorKind::Attribute
    );
}
