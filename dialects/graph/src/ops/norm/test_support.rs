//! Helpers shared by the unit tests of the norm-family files.
use crate::ops::{InferInput, InferInputs, Op};
use kiln_core::{Attr, Attrs, Tensor};

/// Builds an op from attributes and checks that its attributes rebuild it.
pub fn op(name: &str, attrs: &[(&str, Attr)]) -> Op {
    let attrs = Attrs(
        attrs
            .iter()
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect(),
    );
    let op = Op::from_attrs(name, attrs).unwrap();
    assert_eq!(
        Op::from_attrs(name, op.attrs()).unwrap(),
        op,
        "attrs round trip"
    );
    op
}

/// The same deterministic data as the Python script that produced the expected
/// values: `((i * mul) % modulo) / div - off`, computed in f64 and rounded to f32.
pub fn data(shape: &[usize], mul: usize, modulo: usize, div: f64, off: f64) -> Tensor {
    let n = shape.iter().product();
    let v = (0..n)
        .map(|i| (((i * mul) % modulo) as f64 / div - off) as f32)
        .collect();
    Tensor::from_vec(shape, v).unwrap()
}

pub fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).unwrap()
}

pub fn i64s(v: &[i64]) -> Tensor {
    Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
}

/// Runs shape inference (operands as constants) and eval, checking they agree.
pub fn run(op: &Op, ins: &[Option<&Tensor>], n_outputs: usize) -> kiln_core::Result<Vec<Tensor>> {
    let tys: Vec<_> = ins.iter().map(|t| t.map(|t| t.ty())).collect();
    let infer_ins: Vec<_> = ins
        .iter()
        .zip(&tys)
        .map(|(t, ty)| ty.as_ref().map(|ty| InferInput { ty, value: *t }))
        .collect();
    let inferred = op.infer(InferInputs {
        ins: &infer_ins,
        n_outputs,
    });
    let out = op.eval(ins, n_outputs);
    if let (Ok(i), Ok(o)) = (&inferred, &out) {
        assert_eq!(
            i,
            &o.iter().map(|t| t.ty()).collect::<Vec<_>>(),
            "infer and eval disagree"
        );
    }
    assert_eq!(
        inferred.is_ok(),
        out.is_ok(),
        "infer {inferred:?} vs eval {out:?}"
    );
    out
}

/// Element-wise |got - want| <= 1e-5·|want| + 1e-6, and the shape.
pub fn close(got: &Tensor, shape: &[usize], want: &[f32]) {
    assert_eq!(got.shape(), shape);
    let g = got.to_f64_vec();
    assert_eq!(g.len(), want.len());
    for (i, (&a, &b)) in g.iter().zip(want).enumerate() {
        let b = b as f64;
        assert!(
            (a - b).abs() <= 1e-5 * b.abs() + 1e-6,
            "element {i}: got {a}, want {b}"
        );
    }
}
