//! Matrix products: `gemm` (2-D, with transposes, scaling and a broadcast addend) and
//! `matmul` (numpy semantics: 1-D operands and broadcast batch dims).

use super::util::{arg, broadcast_shapes, opt_arg};
use super::{InferInputs, OpDef};
use kiln_core::{AttrReader, Attrs, Element, Result, Tensor, TensorType, bail, ensure};
use ndarray::LinalgScalar;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut2, Ix2, IxDyn};

fn check_float_pair(what: &str, a: &TensorType, b: &TensorType) -> Result<()> {
    ensure!(
        a.dtype.is_float(),
        Type,
        "{what} needs f32 or f64 operands, got {}",
        a.dtype
    );
    ensure!(
        a.dtype == b.dtype,
        Type,
        "{what} operands must share one element type, got {} and {}",
        a.dtype,
        b.dtype
    );
    Ok(())
}

/// `gemm(A, B, C?) {alpha, beta, transA, transB}`: `alpha·A'·B' + beta·C`, C broadcast to
/// the `[M, N]` result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Default for Gemm {
    fn default() -> Self {
        Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
        }
    }
}

impl Gemm {
    /// (M, K, N) after the transposes, with every operand checked.
    fn plan(&self, a: &[usize], b: &[usize], c: Option<&[usize]>) -> Result<(usize, usize, usize)> {
        ensure!(
            a.len() == 2 && b.len() == 2,
            Shape,
            "gemm needs 2-D A and B, got A {a:?} and B {b:?}"
        );
        let (m, k) = if self.trans_a {
            (a[1], a[0])
        } else {
            (a[0], a[1])
        };
        let (k2, n) = if self.trans_b {
            (b[1], b[0])
        } else {
            (b[0], b[1])
        };
        ensure!(
            k == k2,
            Shape,
            "gemm: A {a:?}{} gives K = {k} but B {b:?}{} gives K = {k2}",
            if self.trans_a { " (transposed)" } else { "" },
            if self.trans_b { " (transposed)" } else { "" }
        );
        if let Some(c) = c {
            let ok = broadcast_shapes(c, &[m, n]).is_ok_and(|s| s == [m, n]);
            ensure!(
                ok,
                Shape,
                "gemm: C {c:?} does not broadcast to the result [{m}, {n}]"
            );
        }
        Ok((m, k, n))
    }
}

fn gemm_kernel<T: LinalgScalar + Element>(
    g: &Gemm,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    c: Option<&ArrayD<T>>,
) -> Result<Tensor> {
    let a = a
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|e| kiln_core::err!(Shape, "gemm: A: {e}"))?;
    let b = b
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|e| kiln_core::err!(Shape, "gemm: B: {e}"))?;
    let a = if g.trans_a { a.reversed_axes() } else { a };
    let b = if g.trans_b { b.reversed_axes() } else { b };
    let (m, n) = (a.nrows(), b.ncols());
    let mut y = Array2::from_elem((m, n), T::default());
    // Like BLAS, beta = 0 means C is not read at all (so an inf in C does not become NaN).
    let mut beta_y = T::default();
    if let Some(c) = c.filter(|_| g.beta != 0.0) {
        let cb = c
            .broadcast(IxDyn(&[m, n]))
            .ok_or_else(|| kiln_core::err!(Shape, "gemm: C does not broadcast"))?;
        let beta = T::from_f64(g.beta as f64);
        y.zip_mut_with(&cb, |y, &c| *y = c * beta);
        beta_y = T::from_f64(1.0);
    }
    general_mat_mul(T::from_f64(g.alpha as f64), &a, &b, beta_y, &mut y);
    Ok(T::wrap(y.into_dyn()))
}

impl OpDef for Gemm {
    fn names() -> &'static [&'static str] {
        &["gemm"]
    }
    fn name(&self) -> &'static str {
        "gemm"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(Gemm {
            alpha: r.float("alpha", 1.0)?,
            beta: r.float("beta", 1.0)?,
            trans_a: r.int("transA", 0)? != 0,
            trans_b: r.int("transB", 0)? != 0,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
            .float("alpha", self.alpha, 1.0)
            .float("beta", self.beta, 1.0)
            .int("transA", self.trans_a as i64, 0)
            .int("transB", self.trans_b as i64, 0)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let (a, b, c) = (ins.ty(0)?, ins.ty(1)?, ins.opt(2).map(|c| c.ty));
        check_float_pair("gemm", a, b)?;
        if let Some(c) = c {
            check_float_pair("gemm", a, c)?;
        }
        let (m, _, n) = self.plan(&a.shape, &b.shape, c.map(|c| &c.shape[..]))?;
        Ok(vec![TensorType::new(a.dtype, [m, n])])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let (a, b, c) = (arg(ins, 0)?, arg(ins, 1)?, opt_arg(ins, 2));
        self.plan(a.shape(), b.shape(), c.map(|c| c.shape()))?;
        let out = match (a, b) {
            (Tensor::F32(x), Tensor::F32(y)) => {
                gemm_kernel(self, x, y, c.map(|c| c.as_array()).transpose()?)?
            }
            (Tensor::F64(x), Tensor::F64(y)) => {
                gemm_kernel(self, x, y, c.map(|c| c.as_array()).transpose()?)?
            }
            (x, y) => bail!(
                Type,
                "gemm needs f32 or f64 operands of one type, got {} and {}",
                x.dtype(),
                y.dtype()
            ),
        };
        Ok(vec![out])
    }
    fn flops(&self, ins: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        let (Some(Some(a)), Some(Some(b))) = (ins.first(), ins.get(1)) else {
            return 0;
        };
        match self.plan(&a.shape, &b.shape, None) {
            Ok((m, k, n)) => 2 * (m * k * n) as u64,
            Err(_) => 0,
        }
    }
}

/// `matmul(A, B)`: numpy's matmul. A 1-D A is a row vector and a 1-D B a column vector,
/// each extra dim removed again from the result; leading (batch) dims broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatMul;

/// Resolved matmul sizes and, per result batch entry, which A and B matrices it reads.
struct MatMulPlan {
    m: usize,
    k: usize,
    n: usize,
    pairs: Vec<(usize, usize)>,
    out_shape: Vec<usize>,
}

/// Matrix index into an operand's batch dims for each entry of the broadcast batch.
fn batch_index(own: &[usize], batch: &[usize]) -> Vec<usize> {
    let pad = batch.len() - own.len();
    let mut strides = vec![0usize; batch.len()];
    let mut s = 1;
    for i in (0..own.len()).rev() {
        strides[i + pad] = if own[i] == 1 { 0 } else { s };
        s *= own[i];
    }
    let total: usize = batch.iter().product();
    let mut idx = vec![0usize; batch.len()];
    let mut out = Vec::with_capacity(total);
    for _ in 0..total {
        out.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum());
        for d in (0..batch.len()).rev() {
            idx[d] += 1;
            if idx[d] < batch[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

impl MatMul {
    fn plan(a: &[usize], b: &[usize]) -> Result<MatMulPlan> {
        ensure!(
            !a.is_empty() && !b.is_empty(),
            Shape,
            "matmul operands must have rank >= 1, got A {a:?} and B {b:?}"
        );
        let (a_batch, m, k) = match a.len() {
            1 => (&[][..], 1, a[0]),
            r => (&a[..r - 2], a[r - 2], a[r - 1]),
        };
        let (b_batch, k2, n) = match b.len() {
            1 => (&[][..], b[0], 1),
            r => (&b[..r - 2], b[r - 2], b[r - 1]),
        };
        ensure!(
            k == k2,
            Shape,
            "matmul: A {a:?} has {k} columns but B {b:?} has {k2} rows"
        );
        let batch = broadcast_shapes(a_batch, b_batch).map_err(|_| {
            kiln_core::err!(Shape, "matmul: batch dims {a_batch:?} of A {a:?} and {b_batch:?} of B {b:?} do not broadcast")
        })?;
        let pairs = batch_index(a_batch, &batch)
            .into_iter()
            .zip(batch_index(b_batch, &batch))
            .collect();
        let mut out_shape = batch;
        if a.len() > 1 {
            out_shape.push(m);
        }
        if b.len() > 1 {
            out_shape.push(n);
        }
        Ok(MatMulPlan {
            m,
            k,
            n,
            pairs,
            out_shape,
        })
    }
}

fn matmul_kernel<T: LinalgScalar + Element>(
    p: &MatMulPlan,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
) -> Tensor {
    let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
    let (av, bv) = (
        a.as_slice().expect("standard layout"),
        b.as_slice().expect("standard layout"),
    );
    let (m, k, n) = (p.m, p.k, p.n);
    let mut out = vec![T::default(); p.pairs.len() * m * n];
    for (i, &(ia, ib)) in p.pairs.iter().enumerate() {
        let x = ArrayView2::from_shape((m, k), &av[ia * m * k..][..m * k]).expect("sizes match");
        let y = ArrayView2::from_shape((k, n), &bv[ib * k * n..][..k * n]).expect("sizes match");
        let mut z =
            ArrayViewMut2::from_shape((m, n), &mut out[i * m * n..][..m * n]).expect("sizes match");
        general_mat_mul(T::from_f64(1.0), &x, &y, T::default(), &mut z);
    }
    T::wrap(ArrayD::from_shape_vec(IxDyn(&p.out_shape), out).expect("sizes match"))
}

impl OpDef for MatMul {
    fn names() -> &'static [&'static str] {
        &["matmul"]
    }
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn from_attrs(_: &str, _: &mut AttrReader) -> Result<Self> {
        Ok(MatMul)
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let (a, b) = (ins.ty(0)?, ins.ty(1)?);
        check_float_pair("matmul", a, b)?;
        Ok(vec![TensorType::new(
            a.dtype,
            MatMul::plan(&a.shape, &b.shape)?.out_shape,
        )])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let (a, b) = (arg(ins, 0)?, arg(ins, 1)?);
        let p = MatMul::plan(a.shape(), b.shape())?;
        let out = match (a, b) {
            (Tensor::F32(x), Tensor::F32(y)) => matmul_kernel(&p, x, y),
            (Tensor::F64(x), Tensor::F64(y)) => matmul_kernel(&p, x, y),
            (x, y) => bail!(
                Type,
                "matmul needs f32 or f64 operands of one type, got {} and {}",
                x.dtype(),
                y.dtype()
            ),
        };
        Ok(vec![out])
    }
    fn flops(&self, ins: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        let (Some(Some(a)), Some(Some(b))) = (ins.first(), ins.get(1)) else {
            return 0;
        };
        match MatMul::plan(&a.shape, &b.shape) {
            Ok(p) => 2 * (p.pairs.len() * p.m * p.k * p.n) as u64,
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::spatial::test_util::{assert_close, build, pat, run};
    use super::*;
    use kiln_core::{Attr, DType, ErrorKind};

    // Expected values: onnxruntime 1.32 on the same `pat` inputs (see test_util::pat).
    const GEMM_TT: &[f64] = &[
        -0.65625, 3.5625, -0.125, -2.4375, 2.8125, -0.34375, 1.75, -0.28125, -1.96875, 2.1875,
        -1.0625, 2.0, 0.9375, -0.8125, 1.5625,
    ];
    const GEMM_COLUMN_C: &[f64] = &[-3.40625, 0.8125, 4.15625, 1.34375, 3.8125, 0.15625];
    const GEMM_NO_C: &[f64] = &[1.9375, -0.875, -1.9375, -0.0625, -2.375, 0.0625];
    const MATMUL_1D_3D: &[f64] = &[1.5625, -0.75, 1.0625, -0.5625, -0.75, 1.0625, -0.5625, 1.25];
    const MATMUL_3D_1D: &[f64] = &[0.4375, -0.5, -0.75, -1.0, 1.5, 1.25];
    const MATMUL_BCAST: &[f64] = &[
        1.9375, -0.875, -1.9375, -0.0625, -2.375, 0.0625, -0.625, -1.375, -0.6875, 1.1875, -0.0625,
        0.3125, -1.125, -0.5, 0.5625, -1.0, 0.1875, -0.125, 3.1875, -1.0, 0.4375, 0.25, 0.4375,
        0.125, -0.75, 1.9375, -0.375, -1.9375, 0.0, -2.375, -2.8125, 0.1875, 0.1875, 0.3125, -0.25,
        0.4375, 0.5625, -0.5625, -0.1875, 1.3125, 0.4375, 0.4375, -0.1875, 0.75, 0.8125, -0.4375,
        0.4375, 0.4375, 0.4375, 0.0, -3.0, 0.5625, -3.0, 0.4375, 0.375, -2.8125, 0.0625, 0.1875,
        0.4375, -0.25,
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
            &MatMul,
            &[Some(&pat(&[4], 3, 1)), Some(&pat(&[4], 5, 2))],
            1,
        )
        .unwrap();
        assert_close(&y[0], &[], &[0.4375]);
        let y = run(
            &MatMul,
            &[Some(&pat(&[3], 3, 1)), Some(&pat(&[2, 3, 4], 5, 2))],
            1,
        )
        .unwrap();
        assert_close(&y[0], &[2, 4], MATMUL_1D_3D);
        let y = run(
            &MatMul,
            &[Some(&pat(&[2, 3, 4], 3, 1)), Some(&pat(&[4], 5, 2))],
            1,
        )
        .unwrap();
        assert_close(&y[0], &[2, 3], MATMUL_3D_1D);
    }

    #[test]
    fn matmul_batch_broadcast() {
        let (a, b) = (pat(&[2, 1, 3, 4], 3, 1), pat(&[5, 4, 2], 5, 2));
        let y = run(&MatMul, &[Some(&a), Some(&b)], 1).unwrap();
        assert_close(&y[0], &[2, 5, 3, 2], MATMUL_BCAST);
        assert_eq!(
            MatMul.flops(&[Some(&a.ty()), Some(&b.ty())], &[y[0].ty()]),
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
            &run(&MatMul, &[Some(&a), Some(&bt)], 1).unwrap()[0],
            &[2, 5, 3, 2],
            MATMUL_BCAST,
        );
        let f = |t: &Tensor| t.cast(DType::F64);
        assert_close(
            &run(&MatMul, &[Some(&f(&a)), Some(&f(&b))], 1).unwrap()[0],
            &[2, 5, 3, 2],
            MATMUL_BCAST,
        );
    }

    #[test]
    fn matmul_errors() {
        let e = run(
            &MatMul,
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
            &MatMul,
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
            &MatMul,
            &[Some(&pat(&[2, 0], 1, 0)), Some(&pat(&[0, 3], 1, 0))],
            1,
        )
        .unwrap();
        assert_close(&y[0], &[2, 3], &[0.0; 6]);
        let s = Tensor::scalar(1.0f32);
        assert_eq!(
            run(&MatMul, &[Some(&s), Some(&s)], 1).unwrap_err().kind,
            ErrorKind::Shape
        );
        let i = pat(&[2, 2], 1, 0).cast(DType::I32);
        assert_eq!(
            run(&MatMul, &[Some(&i), Some(&i)], 1).unwrap_err().kind,
            ErrorKind::Type
        );
    }
}
