//! One test per opset rewrite: the ops and constant operands it produces, and the numbers.

use super::*;

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
    assert_eq!(
        run(&g, std::slice::from_ref(&x))[0],
        legacy_nearest(&x, &scales)
    );
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
    let y = run(&g, std::slice::from_ref(&x));
    assert_eq!(y[0], legacy_nearest(&x, &scales));
    // Checked against onnxruntime: row 1 of the output is input row 2 (1 / 0.6 rounded up).
    assert_eq!(y[0].to_f64_vec()[11..14], [14.0, 14.0, 15.0]);
    let g = resize10(&[1.0, 1.0, 0.6, 0.8]).import().unwrap();
    let r = find(&g, "resize");
    assert_eq!(attr_of(&g, r, "nearest_mode"), s("ceil"));
    assert_eq!(
        run(&g, std::slice::from_ref(&x))[0],
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
        vec![out("y"), vi_dims("mask", DataType::Bool, None)],
    );
    // In inference the mask, when read, is all true.
    let g = used.import().unwrap();
    let got = run(&g, &[Tensor::from_vec(&[2], vec![-1.5f32, 2.0]).unwrap()]);
    assert_eq!(got[0], Tensor::from_vec(&[2], vec![-1.5f32, 2.0]).unwrap());
    assert_eq!(got[1], Tensor::from_vec(&[2], vec![true, true]).unwrap());
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
