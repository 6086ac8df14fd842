use super::*;
use crate::ops::shape::testing::{f32s, fails, infer_unknown, ints, iota, run, run1, values};
use kiln_core::{DType, ErrorKind};

const MAX: i64 = i64::MAX;
const MIN: i64 = i64::MIN;

#[test]
fn transpose() {
    // Expected values from numpy.transpose on arange(24).reshape(2, 3, 4).
    let t = run1(
        &Transpose {
            perm: vec![1, 0, 2],
        },
        &[Some(iota(&[2, 3, 4]))],
    );
    assert_eq!(t.shape(), [3, 2, 4]);
    assert_eq!(
        values::<f32>(&t),
        [
            0., 1., 2., 3., 12., 13., 14., 15., 4., 5., 6., 7., 16., 17., 18., 19., 8., 9., 10.,
            11., 20., 21., 22., 23.
        ]
    );
    let t = run1(&Transpose::default(), &[Some(iota(&[2, 3, 4]))]);
    assert_eq!(t.shape(), [4, 3, 2]);
    assert_eq!(
        values::<f32>(&t),
        [
            0., 12., 4., 16., 8., 20., 1., 13., 5., 17., 9., 21., 2., 14., 6., 18., 10., 22., 3.,
            15., 7., 19., 11., 23.
        ]
    );
    let b = Tensor::from_vec(&[2, 2], vec![true, true, false, false]).unwrap();
    assert_eq!(
        values::<bool>(&run1(&Transpose::default(), &[Some(b)])),
        [true, false, true, false]
    );
    for perm in [vec![0, 1], vec![0, 0, 1], vec![0, 1, 3], vec![-1, 0, 1]] {
        assert_eq!(
            fails(&Transpose { perm }, &[Some(iota(&[2, 3, 4]))], 1),
            ErrorKind::Shape
        );
    }
}

#[test]
fn concat() {
    let a = || Some(iota(&[2, 3]));
    let b = || Some(f32s(&[2, 1], &[10.0, 11.0]));
    let t = run1(&Concat { axis: 1 }, &[a(), b(), a()]);
    assert_eq!(t.shape(), [2, 7]);
    assert_eq!(
        values::<f32>(&t),
        [0., 1., 2., 10., 0., 1., 2., 3., 4., 5., 11., 3., 4., 5.]
    );
    assert_eq!(
        values::<f32>(&run1(&Concat { axis: -2 }, &[a(), a()])),
        [0., 1., 2., 3., 4., 5., 0., 1., 2., 3., 4., 5.]
    );
    // Operands empty along the axis take part like any other.
    let t = run1(&Concat { axis: 1 }, &[a(), Some(iota(&[2, 0])), b()]);
    assert_eq!(values::<f32>(&t), [0., 1., 2., 10., 3., 4., 5., 11.]);
    assert_eq!(
        run1(&Concat { axis: 0 }, &[Some(ints(&[])), Some(ints(&[]))]).shape(),
        [0]
    );
    // Shape chains: i64 vectors.
    assert_eq!(
        values::<i64>(&run1(
            &Concat { axis: 0 },
            &[Some(ints(&[1, 2])), Some(ints(&[-1]))]
        )),
        [1, 2, -1]
    );
    assert_eq!(fails(&Concat { axis: 0 }, &[a(), b()], 1), ErrorKind::Shape);
    assert_eq!(fails(&Concat { axis: 2 }, &[a(), a()], 1), ErrorKind::Shape);
    assert_eq!(
        fails(&Concat { axis: 0 }, &[a(), Some(f32s(&[1], &[1.0]))], 1),
        ErrorKind::Shape
    );
    assert_eq!(
        fails(
            &Concat { axis: 0 },
            &[Some(ints(&[1])), Some(f32s(&[1], &[1.0]))],
            1
        ),
        ErrorKind::Type
    );
    assert_eq!(
        fails(&Concat { axis: 0 }, &[Some(Tensor::scalar(1i64))], 1),
        ErrorKind::Shape
    );
    assert_eq!(fails(&Concat { axis: 0 }, &[], 1), ErrorKind::InvalidModel);
    assert_eq!(
        Concat::from_attrs("concat", &mut AttrReader::new(Attrs::new()))
            .unwrap_err()
            .kind,
        ErrorKind::Attribute
    );
}

fn split_sizes(
    op: Split,
    shape: &[usize],
    split: Option<&[i64]>,
    n: usize,
) -> Result<Vec<Vec<usize>>> {
    let outs = run(&op, &[Some(iota(shape)), split.map(ints)], n)?;
    Ok(outs.iter().map(|t| t.shape().to_vec()).collect())
}

#[test]
fn split() {
    let outs = run(
        &Split {
            axis: 1,
            num_outputs: None,
        },
        &[Some(iota(&[2, 6])), Some(ints(&[1, 0, 5]))],
        3,
    )
    .unwrap();
    assert_eq!(values::<f32>(&outs[0]), [0., 6.]);
    assert_eq!(outs[1].shape(), [2, 0]);
    assert_eq!(
        values::<f32>(&outs[2]),
        [1., 2., 3., 4., 5., 7., 8., 9., 10., 11.]
    );
    let even = Split {
        axis: -1,
        num_outputs: None,
    };
    assert_eq!(
        split_sizes(even, &[2, 6], None, 3).unwrap(),
        [[2, 2], [2, 2], [2, 2]]
    );
    // opset 18: the last chunk is smaller (onnxruntime: 5 → 2, 2, 1 and 4 → 2, 2, 0).
    let n3 = Split {
        axis: 0,
        num_outputs: Some(3),
    };
    assert_eq!(split_sizes(n3, &[5], None, 3).unwrap(), [[2], [2], [1]]);
    assert_eq!(split_sizes(n3, &[4], None, 3).unwrap(), [[2], [2], [0]]);
    let outs = run(&n3, &[Some(iota(&[5]))], 3).unwrap();
    assert_eq!(values::<f32>(&outs[2]), [4.]);
    // 5 into 4 chunks of 2 leaves -1 for the last (onnxruntime rejects it too).
    let n4 = Split {
        axis: 0,
        num_outputs: Some(4),
    };
    assert_eq!(
        split_sizes(n4, &[5], None, 4).unwrap_err().kind,
        ErrorKind::Shape
    );
    assert_eq!(
        split_sizes(n3, &[6], None, 2).unwrap_err().kind,
        ErrorKind::Attribute
    );
    assert_eq!(
        split_sizes(n3, &[6], Some(&[3, 3, 0]), 3).unwrap_err().kind,
        ErrorKind::Attribute
    );
    let plain = Split::default();
    assert_eq!(
        split_sizes(plain, &[6], Some(&[3, 2]), 2).unwrap_err().kind,
        ErrorKind::Shape
    );
    assert_eq!(
        split_sizes(plain, &[6], Some(&[3, 3]), 3).unwrap_err().kind,
        ErrorKind::Shape
    );
    assert_eq!(
        split_sizes(plain, &[6], Some(&[7, -1]), 2)
            .unwrap_err()
            .kind,
        ErrorKind::Shape
    );
    assert_eq!(
        split_sizes(
            Split {
                axis: 2,
                num_outputs: None
            },
            &[6, 2],
            None,
            2
        )
        .unwrap_err()
        .kind,
        ErrorKind::Shape
    );
    let b = Tensor::from_vec(&[4], vec![true, false, true, true]).unwrap();
    let outs = run(&plain, &[Some(b), None], 2).unwrap();
    assert_eq!(values::<bool>(&outs[1]), [true, true]);
}

fn sliced(
    data: Tensor,
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Tensor {
    run1(
        &Slice,
        &[
            Some(data),
            Some(ints(starts)),
            Some(ints(ends)),
            axes.map(ints),
            steps.map(ints),
        ],
    )
}

#[test]
fn slice_1d_clamping() {
    // Expected values from onnxruntime on arange(10).
    let s = |st: i64, en: i64, step: Option<i64>| {
        values::<f32>(&sliced(
            iota(&[10]),
            &[st],
            &[en],
            None,
            step.map(|k| vec![k]).as_deref(),
        ))
    };
    assert_eq!(s(1, MAX, None), [1., 2., 3., 4., 5., 6., 7., 8., 9.]);
    assert_eq!(
        s(-1, MIN, Some(-1)),
        [9., 8., 7., 6., 5., 4., 3., 2., 1., 0.]
    );
    assert_eq!(s(20, -20, Some(-3)), [9., 6., 3., 0.]);
    assert_eq!(s(-100, 100, Some(3)), [0., 3., 6., 9.]);
    assert_eq!(s(3, 1, None), [] as [f32; 0]);
    assert_eq!(s(2, 9, Some(MAX)), [2.]);
    assert_eq!(s(7, 0, Some(MIN)), [7.]);
    assert_eq!(s(5, -1, Some(-1)), [] as [f32; 0]);
    assert_eq!(s(-3, -1, None), [7., 8.]);
    assert_eq!(s(MIN, MAX, Some(4)), [0., 4., 8.]);
    assert_eq!(s(MAX, MIN, Some(-4)), [9., 5., 1.]);
    assert_eq!(
        sliced(iota(&[0]), &[0], &[MAX], None, Some(&[-1])).shape(),
        [0]
    );
}

#[test]
fn slice_nd() {
    // onnxruntime on arange(60).reshape(3, 4, 5).
    let t = sliced(
        iota(&[3, 4, 5]),
        &[0, -1],
        &[2, 0],
        Some(&[2, -2]),
        Some(&[1, -2]),
    );
    assert_eq!(t.shape(), [3, 2, 2]);
    assert_eq!(
        values::<f32>(&t),
        [15., 16., 5., 6., 35., 36., 25., 26., 55., 56., 45., 46.]
    );
    let t = sliced(
        iota(&[3, 4, 5]),
        &[-1, 1, 4],
        &[MIN, MAX, 0],
        Some(&[0, 1, 2]),
        Some(&[-1, 2, -3]),
    );
    assert_eq!(
        values::<f32>(&t),
        [49., 46., 59., 56., 29., 26., 39., 36., 9., 6., 19., 16.]
    );
    let t = sliced(iota(&[3, 4, 5]), &[1], &[3], Some(&[-1]), None);
    assert_eq!(t.shape(), [3, 4, 2]);
    assert_eq!(values::<f32>(&t)[..4], [1., 2., 6., 7.]);
    // Shape chains slice i64 vectors; i32 ranges are accepted too.
    let i32s = |v: &[i32]| Some(Tensor::from_vec(&[v.len()], v.to_vec()).unwrap());
    let t = run1(
        &Slice,
        &[Some(ints(&[1, 3, 224, 224])), i32s(&[2]), i32s(&[4])],
    );
    assert_eq!(values::<i64>(&t), [224, 224]);
}

#[test]
fn slice_errors() {
    let x = || Some(iota(&[3, 4]));
    let err = |ins: &[Option<Tensor>]| fails(&Slice, ins, 1);
    assert_eq!(
        err(&[
            x(),
            Some(ints(&[0])),
            Some(ints(&[2])),
            None,
            Some(ints(&[0]))
        ]),
        ErrorKind::Shape
    );
    assert_eq!(
        err(&[
            x(),
            Some(ints(&[0, 0])),
            Some(ints(&[2, 2])),
            Some(ints(&[1, -1])),
            None
        ]),
        ErrorKind::Shape
    );
    assert_eq!(
        err(&[
            x(),
            Some(ints(&[0])),
            Some(ints(&[2])),
            Some(ints(&[2])),
            None
        ]),
        ErrorKind::Shape
    );
    assert_eq!(
        err(&[x(), Some(ints(&[0, 1])), Some(ints(&[2])), None, None]),
        ErrorKind::Shape
    );
    assert_eq!(
        err(&[x(), Some(f32s(&[1], &[0.0])), Some(ints(&[2]))]),
        ErrorKind::Type
    );
    let ins = [x(), Some(ints(&[0])), Some(ints(&[2]))];
    assert_eq!(
        infer_unknown(&Slice, &ins, 2).unwrap_err().kind,
        ErrorKind::Unsupported
    );
}

#[test]
fn tile() {
    // numpy.tile(arange(6).reshape(2, 3), (2, 2)).
    let t = run1(&Tile, &[Some(iota(&[2, 3])), Some(ints(&[2, 2]))]);
    assert_eq!(t.shape(), [4, 6]);
    assert_eq!(
        values::<f32>(&t),
        [
            0., 1., 2., 0., 1., 2., 3., 4., 5., 3., 4., 5., 0., 1., 2., 0., 1., 2., 3., 4., 5., 3.,
            4., 5.
        ]
    );
    assert_eq!(
        values::<i64>(&run1(&Tile, &[Some(ints(&[1, 2])), Some(ints(&[3]))])),
        [1, 2, 1, 2, 1, 2]
    );
    assert_eq!(
        run1(&Tile, &[Some(iota(&[2, 3])), Some(ints(&[0, 1]))]).shape(),
        [0, 3]
    );
    assert_eq!(
        run1(&Tile, &[Some(Tensor::scalar(1.5f32)), Some(ints(&[]))]).shape(),
        [] as [usize; 0]
    );
    assert_eq!(
        fails(&Tile, &[Some(iota(&[2, 3])), Some(ints(&[2]))], 1),
        ErrorKind::Shape
    );
    assert_eq!(
        fails(&Tile, &[Some(iota(&[2, 3])), Some(ints(&[2, -1]))], 1),
        ErrorKind::Shape
    );
}

#[test]
fn data_movement_has_no_flops() {
    let t = [TensorType::new(DType::F32, [8, 8])];
    assert_eq!(
        Transpose::default().flops(&[], &t)
            + Concat { axis: 0 }.flops(&[], &t)
            + Slice.flops(&[], &t),
        0
    );
    assert_eq!(Split::default().flops(&[], &t) + Tile.flops(&[], &t), 0);
}
