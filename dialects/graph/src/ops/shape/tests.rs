use super::testing::{f32s, fails, infer_unknown, ints, iota, run, run1, values};
use super::*;
use kiln_core::ErrorKind;

fn reshaped(op: Reshape, shape: &[usize], spec: &[i64]) -> Vec<usize> {
    let t = run1(&op, &[Some(iota(shape)), Some(ints(spec))]);
    assert_eq!(
        values::<f32>(&t),
        values::<f32>(&iota(shape)),
        "reshape keeps row-major order"
    );
    t.shape().to_vec()
}

#[test]
fn reshape_zero_and_minus_one() {
    let r = Reshape::default();
    assert_eq!(reshaped(r, &[2, 3, 4], &[4, 0, -1]), vec![4, 3, 2]);
    assert_eq!(reshaped(r, &[2, 3, 4], &[-1]), vec![24]);
    assert_eq!(reshaped(r, &[2, 3, 4], &[0, 0, 2, 2]), vec![2, 3, 2, 2]);
    assert_eq!(reshaped(r, &[1, 1], &[]), Vec::<usize>::new());
    // Zero-sized tensors: 0 copies the input's 0; -1 next to a copied 0 is ambiguous.
    assert_eq!(reshaped(r, &[0, 3], &[0, 3, 1]), vec![0, 3, 1]);
    assert_eq!(
        fails(&r, &[Some(iota(&[0, 3])), Some(ints(&[0, -1]))], 1),
        ErrorKind::Shape
    );
}

#[test]
fn reshape_allowzero() {
    let r = Reshape { allowzero: true };
    // onnx test_reshape_allowzero_reordered: [0, 3, 4] → [3, 4, 0].
    assert_eq!(reshaped(r, &[0, 3, 4], &[3, 4, 0]), vec![3, 4, 0]);
    assert_eq!(
        fails(&r, &[Some(iota(&[2, 3])), Some(ints(&[0, 3]))], 1),
        ErrorKind::Shape
    );
    assert_eq!(
        fails(&r, &[Some(iota(&[0, 3])), Some(ints(&[0, -1]))], 1),
        ErrorKind::Shape
    );
}

#[test]
fn reshape_errors() {
    let r = Reshape::default();
    let x = || Some(iota(&[2, 3]));
    let e = run(&r, &[x(), Some(ints(&[4, 2]))], 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(
        e.message.contains("[2, 3]") && e.message.contains("[4, 2]"),
        "{}",
        e.message
    );
    assert_eq!(
        fails(&r, &[x(), Some(ints(&[-1, -1]))], 1),
        ErrorKind::Shape
    );
    assert_eq!(fails(&r, &[x(), Some(ints(&[4, -1]))], 1), ErrorKind::Shape);
    assert_eq!(
        fails(&r, &[x(), Some(ints(&[-2, -3]))], 1),
        ErrorKind::Shape
    );
    assert_eq!(
        fails(&r, &[x(), Some(ints(&[6, 1, 0]))], 1),
        ErrorKind::Shape
    );
    assert_eq!(
        fails(&r, &[x(), Some(f32s(&[2], &[3.0, 2.0]))], 1),
        ErrorKind::Type
    );
    assert_eq!(
        infer_unknown(&r, &[x(), Some(ints(&[6]))], 1)
            .unwrap_err()
            .kind,
        ErrorKind::Unsupported
    );
    assert_eq!(
        Reshape::from_attrs(
            "reshape",
            &mut AttrReader::new(Attrs::new().int("allowzero", 2, 0))
        )
        .unwrap_err()
        .kind,
        ErrorKind::Attribute
    );
}

#[test]
fn reshape_any_dtype() {
    let b = Tensor::from_vec(&[2, 2], vec![true, false, false, true]).unwrap();
    let t = run1(&Reshape::default(), &[Some(b), Some(ints(&[4]))]);
    assert_eq!(values::<bool>(&t), vec![true, false, false, true]);
}

#[test]
fn flatten() {
    let x = || Some(iota(&[2, 3, 4, 5]));
    for (axis, want) in [
        (0, [1, 120]),
        (1, [2, 60]),
        (4, [120, 1]),
        (-1, [24, 5]),
        (-4, [1, 120]),
    ] {
        let t = run1(&Flatten { axis }, &[x()]);
        assert_eq!(t.shape(), want, "axis {axis}");
        assert_eq!(values::<f32>(&t), values::<f32>(&iota(&[120])));
    }
    assert_eq!(fails(&Flatten { axis: 5 }, &[x()], 1), ErrorKind::Shape);
    assert_eq!(fails(&Flatten { axis: -5 }, &[x()], 1), ErrorKind::Shape);
    assert_eq!(
        run1(&Flatten { axis: 0 }, &[Some(Tensor::scalar(3i64))]).shape(),
        [1, 1]
    );
}

#[test]
fn squeeze() {
    let x = || Some(iota(&[1, 3, 1, 2]));
    assert_eq!(run1(&Squeeze, &[x()]).shape(), [3, 2]);
    assert_eq!(run1(&Squeeze, &[x(), Some(ints(&[-2]))]).shape(), [1, 3, 2]);
    assert_eq!(run1(&Squeeze, &[x(), Some(ints(&[2, 0]))]).shape(), [3, 2]);
    let e = run(&Squeeze, &[x(), Some(ints(&[1]))], 1).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(e.message.contains("size is 3"), "{}", e.message);
    assert_eq!(
        fails(&Squeeze, &[x(), Some(ints(&[0, -4]))], 1),
        ErrorKind::Shape
    );
    assert_eq!(
        fails(&Squeeze, &[x(), Some(ints(&[4]))], 1),
        ErrorKind::Shape
    );
    assert_eq!(
        run1(&Squeeze, &[Some(iota(&[1, 1]))]).shape(),
        Vec::<usize>::new().as_slice()
    );
}

#[test]
fn unsqueeze() {
    let x = || Some(iota(&[3, 4]));
    assert_eq!(
        run1(&Unsqueeze, &[x(), Some(ints(&[0, -1]))]).shape(),
        [1, 3, 4, 1]
    );
    assert_eq!(
        run1(&Unsqueeze, &[x(), Some(ints(&[3, 1]))]).shape(),
        [3, 1, 4, 1]
    );
    assert_eq!(
        run1(&Unsqueeze, &[x(), Some(ints(&[1, 2, 0]))]).shape(),
        [1, 1, 1, 3, 4]
    );
    assert_eq!(
        run1(&Unsqueeze, &[Some(Tensor::scalar(7i64)), Some(ints(&[0]))]).shape(),
        [1]
    );
    assert_eq!(
        fails(&Unsqueeze, &[x(), Some(ints(&[3]))], 1),
        ErrorKind::Shape
    );
    assert_eq!(
        fails(&Unsqueeze, &[x(), Some(ints(&[1, -3]))], 1),
        ErrorKind::Shape
    );
    assert_eq!(fails(&Unsqueeze, &[x()], 1), ErrorKind::InvalidModel);
}

#[test]
fn shape_with_start_end() {
    let x = || Some(iota(&[2, 3, 4, 5]));
    let dims = |start, end| values::<i64>(&run1(&Shape { start, end }, &[x()]));
    assert_eq!(dims(0, None), vec![2, 3, 4, 5]);
    assert_eq!(dims(1, Some(-1)), vec![3, 4]);
    assert_eq!(dims(-10, None), vec![2, 3, 4, 5]);
    assert_eq!(dims(0, Some(10)), vec![2, 3, 4, 5]);
    assert_eq!(dims(-1, None), vec![5]);
    assert_eq!(dims(3, Some(1)), Vec::<i64>::new());
    assert_eq!(
        run1(&Shape::default(), &[Some(Tensor::scalar(1.0f32))]).shape(),
        [0]
    );
    assert_eq!(run1(&Shape::default(), &[x()]).dtype(), DType::I64);
}

#[test]
fn shape_and_size_known_from_types() {
    use crate::ops::InferInput;
    let ty = TensorType::new(DType::F32, [2, 3, 4]);
    let ins = [Some(InferInput {
        ty: &ty,
        value: None,
    })];
    let ctx = InferInputs {
        ins: &ins,
        n_outputs: 1,
    };
    let dims = Shape {
        start: 1,
        end: None,
    }
    .value_from_types(ctx)
    .unwrap();
    assert_eq!(values::<i64>(&dims[0]), [3, 4]);
    assert_eq!(values::<i64>(&Size.value_from_types(ctx).unwrap()[0]), [24]);
    assert!(Reshape::default().value_from_types(ctx).is_none());
}

#[test]
fn size() {
    assert_eq!(values::<i64>(&run1(&Size, &[Some(iota(&[2, 3]))])), vec![6]);
    let t = run1(&Size, &[Some(Tensor::scalar(true))]);
    assert_eq!((t.shape(), values::<i64>(&t)), (&[][..], vec![1]));
    assert_eq!(values::<i64>(&run1(&Size, &[Some(iota(&[4, 0]))])), vec![0]);
}

#[test]
fn expand() {
    let x = || Some(f32s(&[3, 1], &[1.0, 2.0, 3.0]));
    let t = run1(&Expand, &[x(), Some(ints(&[2, 1, 6]))]);
    assert_eq!(t.shape(), [2, 3, 6]);
    let want: Vec<f32> = (0..36).map(|i| ((i / 6) % 3 + 1) as f32).collect();
    assert_eq!(values::<f32>(&t), want);
    // Bidirectional: a 1 in the target keeps the input's dimension.
    assert_eq!(run1(&Expand, &[x(), Some(ints(&[1]))]).shape(), [3, 1]);
    assert_eq!(run1(&Expand, &[x(), Some(ints(&[3, 0]))]).shape(), [3, 0]);
    assert_eq!(
        fails(&Expand, &[x(), Some(ints(&[2, 2]))], 1),
        ErrorKind::Shape
    );
    assert_eq!(
        fails(&Expand, &[x(), Some(ints(&[-1, 1]))], 1),
        ErrorKind::Shape
    );
    let i = run1(&Expand, &[Some(Tensor::scalar(5i64)), Some(ints(&[2]))]);
    assert_eq!(values::<i64>(&i), vec![5, 5]);
}

#[test]
fn range() {
    let f = |s: f32, l: f32, d: f32| {
        run1(
            &Range,
            &[
                Some(Tensor::scalar(s)),
                Some(Tensor::scalar(l)),
                Some(Tensor::scalar(d)),
            ],
        )
    };
    // Expected values from onnxruntime / numpy.arange.
    assert_eq!(
        values::<f32>(&f(0.0, 1.0, 0.3)),
        vec![0.0, 0.3, 0.6, 0.90000004]
    );
    assert_eq!(values::<f32>(&f(1.0, 5.0, 2.0)), vec![1.0, 3.0]);
    assert_eq!(f(1.0, 2.0, 0.1).shape(), [10]);
    let i = |s: i32, l: i32, d: i32| {
        run1(
            &Range,
            &[
                Some(Tensor::scalar(s)),
                Some(Tensor::scalar(l)),
                Some(Tensor::scalar(d)),
            ],
        )
    };
    assert_eq!(values::<i32>(&i(10, 4, -2)), vec![10, 8, 6]);
    assert_eq!(values::<i32>(&i(0, 10, 3)), vec![0, 3, 6, 9]);
    assert_eq!(values::<i32>(&i(0, -10, 3)), Vec::<i32>::new());
    let l = run1(
        &Range,
        &[
            Some(Tensor::scalar(-3i64)),
            Some(Tensor::scalar(4i64)),
            Some(Tensor::scalar(7i64)),
        ],
    );
    assert_eq!(values::<i64>(&l), vec![-3]);
    let ins = [
        Some(Tensor::scalar(0i64)),
        Some(Tensor::scalar(4i64)),
        Some(Tensor::scalar(0i64)),
    ];
    assert_eq!(fails(&Range, &ins, 1), ErrorKind::Shape);
    let mixed = [
        Some(Tensor::scalar(0i64)),
        Some(Tensor::scalar(4i32)),
        Some(Tensor::scalar(1i64)),
    ];
    assert_eq!(fails(&Range, &mixed, 1), ErrorKind::Type);
    let ok = [
        Some(Tensor::scalar(0i64)),
        Some(Tensor::scalar(4i64)),
        Some(Tensor::scalar(1i64)),
    ];
    assert_eq!(
        infer_unknown(&Range, &ok, 1).unwrap_err().kind,
        ErrorKind::Unsupported
    );
}

#[test]
fn flops_are_zero() {
    let t = [TensorType::new(DType::F32, [4, 4])];
    assert_eq!(
        Reshape::default().flops(&[], &t) + Expand.flops(&[], &t) + Range.flops(&[], &t),
        0
    );
}

#[test]
fn huge_results_are_refused() {
    let x = || Some(iota(&[2, 2]));
    assert_eq!(
        fails(&Expand, &[x(), Some(ints(&[1 << 30, 1 << 30, 2]))], 1),
        ErrorKind::Shape
    );
    assert_eq!(
        sized("x", vec![usize::MAX, 2, 0]).unwrap(),
        vec![usize::MAX, 2, 0]
    );
}
