//! `eltwise_sum(x1, …, xn) {coeffs}`: `Σ coeffs[i]·x_i` with numpy broadcasting — the
//! weighted sum that `graph.fuse-eltwise-sum` forms from `x1*c1 + x2*c2` chains (Caffe's
//! Eltwise SUM with coefficients), so a backend reads each input once and writes once.

use super::util::broadcast_shapes;
use super::{InferInputs, OpDef};
use kiln_core::{AttrReader, Attrs, DType, Result, Tensor, TensorType, bail, ensure};
use ndarray::{ArrayD, IxDyn};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct EltwiseSum {
    pub coeffs: Vec<f32>,
}

impl EltwiseSum {
    /// The operand count must match the coefficients, and there must be at least one.
    fn check_arity(&self, n: usize) -> Result<()> {
        ensure!(
            n == self.coeffs.len() && n > 0,
            Shape,
            "eltwise_sum has {n} operands but {} coefficients",
            self.coeffs.len()
        );
        Ok(())
    }
}

impl OpDef for EltwiseSum {
    fn names() -> &'static [&'static str] {
        &["eltwise_sum"]
    }
    fn name(&self) -> &'static str {
        "eltwise_sum"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(EltwiseSum {
            coeffs: r.floats("coeffs")?,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().floats("coeffs", &self.coeffs)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        self.check_arity(ins.len())?;
        let first = ins.ty(0)?;
        ensure!(
            first.dtype.is_float(),
            Type,
            "eltwise_sum needs f32 or f64 operands, got {}",
            first.dtype
        );
        let mut shape = first.shape.clone();
        for i in 1..ins.len() {
            let t = ins.ty(i)?;
            ensure!(
                t.dtype == first.dtype,
                Type,
                "eltwise_sum operands must share one element type, got {} and {} (operand {i})",
                first.dtype,
                t.dtype
            );
            shape = broadcast_shapes(&shape, &t.shape)?;
        }
        Ok(vec![TensorType::new(first.dtype, shape)])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        self.check_arity(ins.len())?;
        let mut xs = Vec::with_capacity(ins.len());
        for (i, x) in ins.iter().enumerate() {
            let Some(x) = x else {
                bail!(InvalidModel, "eltwise_sum: missing operand {i}");
            };
            xs.push(*x);
        }
        let dtype = xs[0].dtype();
        let mut shape = xs[0].shape().to_vec();
        for x in &xs[1..] {
            ensure!(
                x.dtype() == dtype && dtype.is_float(),
                Type,
                "eltwise_sum needs float operands of one type, got {} and {}",
                dtype,
                x.dtype()
            );
            shape = broadcast_shapes(&shape, x.shape())?;
        }
        ensure!(
            dtype.is_float(),
            Type,
            "eltwise_sum needs f32 or f64 operands, got {dtype}"
        );
        // Accumulated in f64 and rounded once: at least as accurate as the Mul/Add chain.
        let mut acc = ArrayD::<f64>::zeros(IxDyn(&shape));
        for (x, &c) in xs.iter().zip(&self.coeffs) {
            let c = c as f64;
            let x = x.cast(DType::F64);
            let x = x.as_array::<f64>()?;
            let xb = x
                .broadcast(IxDyn(&shape))
                .ok_or_else(|| kiln_core::err!(Shape, "eltwise_sum: operand does not broadcast"))?;
            acc.zip_mut_with(&xb, |a, &v| *a += c * v);
        }
        Ok(vec![Tensor::F64(acc).cast(dtype)])
    }
    fn flops(&self, _: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        let n = self.coeffs.len().max(1) as u64;
        outs.first().map_or(0, |o| o.numel() as u64 * (2 * n - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::ErrorKind;

    #[test]
    fn weighted_broadcast_sum() {
        let a = Tensor::from_vec(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let b = Tensor::from_vec(&[2], vec![10.0f32, -10.0]).unwrap();
        let op = EltwiseSum {
            coeffs: vec![0.5, -2.0],
        };
        let y = op.eval(&[Some(&a), Some(&b)], 1).unwrap();
        let want = Tensor::from_vec(&[2, 2], vec![-19.5f32, 21.0, -18.5, 22.0]).unwrap();
        assert_eq!(y[0], want);
        let bad = Tensor::from_vec(&[3], vec![0.0f32; 3]).unwrap();
        let e = op.eval(&[Some(&a), Some(&bad)], 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Shape);
        let e = op.eval(&[Some(&a)], 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Shape);
        let i = Tensor::from_vec(&[2], vec![1i64, 2]).unwrap();
        let e = op.eval(&[Some(&i), Some(&i)], 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Type);
    }
}
