//! Matrix products: `gemm` (2-D, with transposes, scaling and a broadcast addend) and
//! `matmul` (numpy semantics: 1-D operands and broadcast batch dims).

use super::activation::{
    Activation, RESIDUAL, SLOPE, apply_epilogue, check_epilogue, epilogue_flops,
};
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

/// `gemm(A, B, C?, Y?, slope?) {alpha, beta, transA, transB, act}`:
/// `act(alpha·A'·B' + beta·C + Y)`, C and Y broadcast to the `[M, N]` result; the slope is
/// operand 4 for `act="prelu"` (see [`super::activation`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
    pub act: Activation,
}

impl Default for Gemm {
    fn default() -> Self {
        Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
            act: Activation::None,
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

/// The epilogue operands' shape rule (shared by gemm and matmul).
fn epilogue_types(what: &str, act: &Activation, out: &TensorType, ins: &InferInputs) -> Result<()> {
    check_epilogue(
        what,
        act,
        out,
        ins.opt(RESIDUAL).map(|i| i.ty),
        ins.opt(SLOPE).map(|i| i.ty),
    )
}

/// Checks the eval-time epilogue operands and applies the epilogue.
fn finish(what: &str, act: &Activation, out: Tensor, ins: &[Option<&Tensor>]) -> Result<Tensor> {
    let (y, slope) = (opt_arg(ins, RESIDUAL), opt_arg(ins, SLOPE));
    check_epilogue(
        what,
        act,
        &out.ty(),
        y.map(|t| t.ty()).as_ref(),
        slope.map(|t| t.ty()).as_ref(),
    )?;
    apply_epilogue(act, out, y, slope)
}

fn epi_flops(act: &Activation, ins: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
    let has_y = matches!(ins.get(RESIDUAL), Some(Some(_)));
    outs.first().map_or(0, |o| epilogue_flops(act, has_y, o))
}

/// A matmul bias must share the result's element type and broadcast to it.
fn check_bias(out: &TensorType, bias: &[usize], dtype: kiln_core::DType) -> Result<()> {
    ensure!(
        dtype == out.dtype,
        Type,
        "matmul: bias is {dtype} but the result is {}",
        out.dtype
    );
    let ok = broadcast_shapes(bias, &out.shape).is_ok_and(|s| s == out.shape);
    ensure!(
        ok,
        Shape,
        "matmul: bias {bias:?} does not broadcast to the result {:?}",
        out.shape
    );
    Ok(())
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
            act: Activation::read(r)?,
        })
    }
    fn attrs(&self) -> Attrs {
        let a = Attrs::new()
            .float("alpha", self.alpha, 1.0)
            .float("beta", self.beta, 1.0)
            .int("transA", self.trans_a as i64, 0)
            .int("transB", self.trans_b as i64, 0);
        self.act.write(a)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let (a, b, c) = (ins.ty(0)?, ins.ty(1)?, ins.opt(2).map(|c| c.ty));
        check_float_pair("gemm", a, b)?;
        if let Some(c) = c {
            check_float_pair("gemm", a, c)?;
        }
        let (m, _, n) = self.plan(&a.shape, &b.shape, c.map(|c| &c.shape[..]))?;
        let out = TensorType::new(a.dtype, [m, n]);
        epilogue_types("gemm", &self.act, &out, &ins)?;
        Ok(vec![out])
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
        Ok(vec![finish("gemm", &self.act, out, ins)?])
    }
    fn flops(&self, ins: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        let (Some(Some(a)), Some(Some(b))) = (ins.first(), ins.get(1)) else {
            return 0;
        };
        match self.plan(&a.shape, &b.shape, None) {
            Ok((m, k, n)) => 2 * (m * k * n) as u64 + epi_flops(&self.act, ins, outs),
            Err(_) => 0,
        }
    }
}

/// `matmul(A, B, bias?, Y?, slope?) {act}`: numpy's matmul. A 1-D A is a row vector and a
/// 1-D B a column vector, each extra dim removed again from the result; leading (batch) dims
/// broadcast. The epilogue is `act(A@B + bias + Y)`, bias and Y broadcast to the result (the
/// bias is what `graph.fuse-bias` folds in: a vector along the last dim); the slope is
/// operand 4 for `act="prelu"` (see [`super::activation`]).
///
/// `transA`/`transB` swap the last two dims of that operand (which must then have at
/// least two dims) before the product: `graph.fuse-transpose-matmul` folds such Transposes in, so the
/// kernel reads the operand with swapped strides instead of materialising it. Passes that
/// treat B as a `[K, N]` weight must check the flags.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MatMul {
    pub act: Activation,
    pub trans_a: bool,
    pub trans_b: bool,
}

/// Resolved matmul sizes and, per result batch entry, which A and B matrices it reads.
struct MatMulPlan {
    m: usize,
    k: usize,
    n: usize,
    pairs: Vec<(usize, usize)>,
    out_shape: Vec<usize>,
}

/// Matrix index into an operand's batch dims for each entry of the broadcast batch (the
/// int8 MatMul kernel pairs its matrices with this too).
pub fn batch_index(own: &[usize], batch: &[usize]) -> Vec<usize> {
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

/// An operand's shape as the product sees it: the last two dims swapped when transposed.
fn as_used(s: &[usize], trans: bool, which: &str) -> Result<Vec<usize>> {
    let mut s = s.to_vec();
    if trans {
        let r = s.len();
        ensure!(
            r >= 2,
            Shape,
            "matmul: trans{which} needs a rank >= 2 {which}, got {s:?}"
        );
        s.swap(r - 2, r - 1);
    }
    Ok(s)
}

impl MatMul {
    /// The plan for stored operand shapes, after the transposes.
    fn plan_t(&self, a: &[usize], b: &[usize]) -> Result<MatMulPlan> {
        MatMul::plan(
            &as_used(a, self.trans_a, "A")?,
            &as_used(b, self.trans_b, "B")?,
        )
    }

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
    op: &MatMul,
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
        let (xa, yb) = (&av[ia * m * k..][..m * k], &bv[ib * k * n..][..k * n]);
        let x = if op.trans_a {
            ArrayView2::from_shape((k, m), xa)
                .expect("sizes match")
                .reversed_axes()
        } else {
            ArrayView2::from_shape((m, k), xa).expect("sizes match")
        };
        let y = if op.trans_b {
            ArrayView2::from_shape((n, k), yb)
                .expect("sizes match")
                .reversed_axes()
        } else {
            ArrayView2::from_shape((k, n), yb).expect("sizes match")
        };
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
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(MatMul {
            trans_a: r.int("transA", 0)? != 0,
            trans_b: r.int("transB", 0)? != 0,
            act: Activation::read(r)?,
        })
    }
    fn attrs(&self) -> Attrs {
        let a = Attrs::new().int("transA", self.trans_a as i64, 0).int(
            "transB",
            self.trans_b as i64,
            0,
        );
        self.act.write(a)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let (a, b) = (ins.ty(0)?, ins.ty(1)?);
        check_float_pair("matmul", a, b)?;
        let out = TensorType::new(a.dtype, self.plan_t(&a.shape, &b.shape)?.out_shape);
        if let Some(bias) = ins.opt(2) {
            check_bias(&out, &bias.ty.shape, bias.ty.dtype)?;
        }
        epilogue_types("matmul", &self.act, &out, &ins)?;
        Ok(vec![out])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let (a, b) = (arg(ins, 0)?, arg(ins, 1)?);
        let p = self.plan_t(a.shape(), b.shape())?;
        let mut out = match (a, b) {
            (Tensor::F32(x), Tensor::F32(y)) => matmul_kernel(self, &p, x, y),
            (Tensor::F64(x), Tensor::F64(y)) => matmul_kernel(self, &p, x, y),
            (x, y) => bail!(
                Type,
                "matmul needs f32 or f64 operands of one type, got {} and {}",
                x.dtype(),
                y.dtype()
            ),
        };
        if let Some(bias) = opt_arg(ins, 2) {
            check_bias(&out.ty(), bias.shape(), bias.dtype())?;
            // The bias is added before Y, as the unfused Add chain would.
            out = apply_epilogue(&Activation::None, out, Some(bias), None)?;
        }
        Ok(vec![finish("matmul", &self.act, out, ins)?])
    }
    fn flops(&self, ins: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        let (Some(Some(a)), Some(Some(b))) = (ins.first(), ins.get(1)) else {
            return 0;
        };
        let bias = match (ins.get(2), outs.first()) {
            (Some(Some(_)), Some(o)) => o.numel() as u64,
            _ => 0,
        };
        match self.plan_t(&a.shape, &b.shape) {
            Ok(p) => {
                2 * (p.pairs.len() * p.m * p.k * p.n) as u64
                    + bias
                    + epi_flops(&self.act, ins, outs)
            }
            Err(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests;
