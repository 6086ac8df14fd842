//! Test support for the shape-family ops: run an op through both its shape rule and its
//! kernel and check that they agree, so every value test also tests inference.

use crate::ops::{InferInput, InferInputs, OpDef};
use kiln_core::{AttrReader, Element, ErrorKind, Result, Tensor, TensorType};

pub fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).expect("test data fits its shape")
}

/// `0, 1, 2, ...` as f32 in the given shape.
pub fn iota(shape: &[usize]) -> Tensor {
    Tensor::from_f64_fn(&TensorType::new(kiln_core::DType::F32, shape), |i| i as f64)
}

/// A 1-D i64 tensor (shapes, axes, pads).
pub fn ints(v: &[i64]) -> Tensor {
    Tensor::from_vec(&[v.len()], v.to_vec()).expect("1-D")
}

pub fn values<T: Element>(t: &Tensor) -> Vec<T> {
    t.as_array::<T>()
        .expect("expected element type")
        .iter()
        .copied()
        .collect()
}

/// Shape inference alone, with every operand's value known (constant).
pub fn infer<O: OpDef>(op: &O, ins: &[Option<Tensor>], n_out: usize) -> Result<Vec<TensorType>> {
    let tys: Vec<Option<TensorType>> = ins.iter().map(|t| t.as_ref().map(Tensor::ty)).collect();
    let iins: Vec<Option<InferInput>> = ins
        .iter()
        .zip(&tys)
        .map(|(t, ty)| {
            t.as_ref()
                .zip(ty.as_ref())
                .map(|(t, ty)| InferInput { ty, value: Some(t) })
        })
        .collect();
    op.infer(InferInputs {
        ins: &iins,
        n_outputs: n_out,
    })
}

/// Shape inference where operand `i` has a type but no known value.
pub fn infer_unknown<O: OpDef>(
    op: &O,
    ins: &[Option<Tensor>],
    unknown: usize,
) -> Result<Vec<TensorType>> {
    let tys: Vec<Option<TensorType>> = ins.iter().map(|t| t.as_ref().map(Tensor::ty)).collect();
    let iins: Vec<Option<InferInput>> = ins
        .iter()
        .zip(&tys)
        .enumerate()
        .map(|(k, (t, ty))| {
            t.as_ref().zip(ty.as_ref()).map(|(t, ty)| InferInput {
                ty,
                value: (k != unknown).then_some(t),
            })
        })
        .collect();
    op.infer(InferInputs {
        ins: &iins,
        n_outputs: 1,
    })
}

pub fn eval<O: OpDef>(op: &O, ins: &[Option<Tensor>], n_out: usize) -> Result<Vec<Tensor>> {
    let refs: Vec<Option<&Tensor>> = ins.iter().map(Option::as_ref).collect();
    op.eval(&refs, n_out)
}

/// Infers and evaluates; checks the attributes round-trip, that inference and evaluation
/// agree on result types, that results are in standard layout, and that an input the shape
/// rule rejects is rejected by the kernel too.
pub fn run<O: OpDef + PartialEq + std::fmt::Debug>(
    op: &O,
    ins: &[Option<Tensor>],
    n_out: usize,
) -> Result<Vec<Tensor>> {
    let mut r = AttrReader::new(op.attrs());
    let back = O::from_attrs(op.name(), &mut r).expect("attrs() is readable");
    r.finish()
        .expect("from_attrs reads every attribute attrs() writes");
    assert_eq!(&back, op, "attribute round trip");
    match infer(op, ins, n_out) {
        Ok(types) => {
            let outs = eval(op, ins, n_out).expect("eval succeeds where infer does");
            assert_eq!(
                types,
                outs.iter().map(Tensor::ty).collect::<Vec<_>>(),
                "infer and eval disagree"
            );
            for o in &outs {
                assert!(
                    kiln_core::dispatch!(o, a => a.is_standard_layout()),
                    "result not in standard layout"
                );
            }
            Ok(outs)
        }
        Err(e) => {
            assert!(
                eval(op, ins, n_out).is_err(),
                "eval accepts what infer rejects ({e})"
            );
            Err(e)
        }
    }
}

/// The single result of [`run`], or a panic naming the error.
pub fn run1<O: OpDef + PartialEq + std::fmt::Debug>(op: &O, ins: &[Option<Tensor>]) -> Tensor {
    run(op, ins, 1).unwrap_or_else(|e| panic!("{e}")).remove(0)
}

/// The error kind of [`run`] (which must fail).
pub fn fails<O: OpDef + PartialEq + std::fmt::Debug>(
    op: &O,
    ins: &[Option<Tensor>],
    n_out: usize,
) -> ErrorKind {
    match run(op, ins, n_out) {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind,
    }
}
