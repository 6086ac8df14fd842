//! Normalisation ops: BatchNormalization (inference form), InstanceNormalization,
//! LayerNormalization and LRN.
//!
//! Kernels compute in f64 and round once at the end: statistics over thousands of f32
//! elements then stay well inside the 1e-6 relative agreement the interpreter promises,
//! whatever order onnxruntime sums in.

use super::util::{arg, broadcast_shapes, norm_axis, opt_arg};
use super::{InferInputs, OpDef};
use kiln_core::{AttrReader, Attrs, DType, Result, Tensor, TensorType, bail, ensure};
use ndarray::{ArrayD, IxDyn};

/// Contents of an f32/f64 tensor as f64 in row-major order.
pub(super) fn float_values(t: &Tensor, what: &str) -> Result<Vec<f64>> {
    match t {
        Tensor::F32(a) => Ok(a.iter().map(|&v| v as f64).collect()),
        Tensor::F64(a) => Ok(a.iter().copied().collect()),
        t => bail!(Type, "{what} needs a float tensor, got {}", t.dtype()),
    }
}

/// Rounds f64 results back to a float element type.
pub(super) fn float_tensor(dtype: DType, shape: &[usize], v: Vec<f64>) -> Result<Tensor> {
    match dtype {
        DType::F32 => Tensor::from_vec(shape, v.into_iter().map(|x| x as f32).collect()),
        DType::F64 => Tensor::from_vec(shape, v),
        other => bail!(Type, "expected a float element type, got {other}"),
    }
}

pub(super) fn require_float(t: &TensorType, what: &str) -> Result<()> {
    ensure!(
        t.dtype.is_float(),
        Type,
        "{what} needs a float tensor, got {}",
        t.dtype
    );
    Ok(())
}

/// Checks the per-channel parameters (scale, bias, mean, ...) against `c` channels.
fn check_channel_params(ins: &InferInputs, idx: &[(usize, &str)], c: usize) -> Result<()> {
    for &(i, what) in idx {
        let t = ins.ty(i)?;
        require_float(t, what)?;
        ensure!(
            t.shape == [c],
            Shape,
            "{what} must have shape [{c}] (one value per channel), got {t}"
        );
    }
    Ok(())
}

/// Eval-time twin of [`check_channel_params`]: the interpreter may run unverified graphs.
fn channel_values(ins: &[Option<&Tensor>], i: usize, what: &str, c: usize) -> Result<Vec<f64>> {
    let t = arg(ins, i)?;
    ensure!(
        t.shape() == [c],
        Shape,
        "{what} must have shape [{c}], got {:?}",
        t.shape()
    );
    float_values(t, what)
}

/// `batch_normalization(X, scale, B, input_mean, input_var) {epsilon, momentum}`, per
/// channel on axis 1: `(x - mean) / sqrt(var + epsilon) * scale + B`. Only the inference
/// form exists; `momentum` is kept so imported models print back unchanged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormalization {
    pub epsilon: f32,
    pub momentum: f32,
}

const BN_PARAMS: [(usize, &str); 4] = [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")];

impl OpDef for BatchNormalization {
    fn names() -> &'static [&'static str] {
        &["batch_normalization"]
    }
    fn name(&self) -> &'static str {
        "batch_normalization"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        let training = r.int("training_mode", 0)?;
        ensure!(
            training == 0,
            Unsupported,
            "batch_normalization in training mode is not supported"
        );
        Ok(BatchNormalization {
            epsilon: r.float("epsilon", 1e-5)?,
            momentum: r.float("momentum", 0.9)?,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
            .float("epsilon", self.epsilon, 1e-5)
            .float("momentum", self.momentum, 0.9)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        ensure!(
            ins.n_outputs <= 1,
            Unsupported,
            "batch_normalization with {} results (training mode) is not supported",
            ins.n_outputs
        );
        let x = ins.ty(0)?;
        require_float(x, "batch_normalization")?;
        ensure!(
            x.rank() >= 2,
            Shape,
            "batch_normalization needs X of rank >= 2 (N, C, ...), got {x}"
        );
        check_channel_params(&ins, &BN_PARAMS, x.shape[1])?;
        Ok(vec![x.clone()])
    }
    fn eval(&self, ins: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
        ensure!(
            n_outputs <= 1,
            Unsupported,
            "batch_normalization in training mode is not supported"
        );
        let x = arg(ins, 0)?;
        let shape = x.shape();
        ensure!(
            shape.len() >= 2,
            Shape,
            "batch_normalization needs X of rank >= 2, got {shape:?}"
        );
        let c = shape[1];
        let p: Vec<Vec<f64>> = BN_PARAMS
            .iter()
            .map(|&(i, what)| channel_values(ins, i, what, c))
            .collect::<Result<_>>()?;
        let eps = self.epsilon as f64;
        // Folding into one multiply-add per element is what every backend does too.
        let k: Vec<f64> = (0..c).map(|i| p[0][i] / (p[3][i] + eps).sqrt()).collect();
        let inner: usize = shape[2..].iter().product();
        let mut v = float_values(x, "batch_normalization")?;
        if inner > 0 {
            for (j, chunk) in v.chunks_mut(inner).enumerate() {
                let ch = j % c;
                let (kc, mc, bc) = (k[ch], p[2][ch], p[1][ch]);
                chunk.iter_mut().for_each(|e| *e = (*e - mc) * kc + bc);
            }
        }
        Ok(vec![float_tensor(x.dtype(), shape, v)?])
    }
    fn flops(&self, _: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        2 * outs[0].numel() as u64
    }
}

/// Mean and population variance of one slice (two passes, for accuracy).
fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var)
}

/// `instance_normalization(X, scale, B) {epsilon}`: each (n, c) plane normalised by its
/// own mean and variance, then scaled and shifted per channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceNormalization {
    pub epsilon: f32,
}

impl OpDef for InstanceNormalization {
    fn names() -> &'static [&'static str] {
        &["instance_normalization"]
    }
    fn name(&self) -> &'static str {
        "instance_normalization"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(InstanceNormalization {
            epsilon: r.float("epsilon", 1e-5)?,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().float("epsilon", self.epsilon, 1e-5)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        require_float(x, "instance_normalization")?;
        ensure!(
            x.rank() >= 3,
            Shape,
            "instance_normalization needs X of rank >= 3 (N, C, D1, ...), got {x}"
        );
        check_channel_params(&ins, &[(1, "scale"), (2, "B")], x.shape[1])?;
        Ok(vec![x.clone()])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let shape = x.shape();
        ensure!(
            shape.len() >= 3,
            Shape,
            "instance_normalization needs X of rank >= 3, got {shape:?}"
        );
        let c = shape[1];
        let scale = channel_values(ins, 1, "scale", c)?;
        let bias = channel_values(ins, 2, "B", c)?;
        let inner: usize = shape[2..].iter().product();
        let mut v = float_values(x, "instance_normalization")?;
        if inner > 0 {
            for (j, chunk) in v.chunks_mut(inner).enumerate() {
                let ch = j % c;
                let (mean, var) = mean_var(chunk);
                let k = scale[ch] / (var + self.epsilon as f64).sqrt();
                chunk
                    .iter_mut()
                    .for_each(|e| *e = (*e - mean) * k + bias[ch]);
            }
        }
        Ok(vec![float_tensor(x.dtype(), shape, v)?])
    }
    fn flops(&self, _: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        // Mean (1), variance (3) and the scale-and-shift (2) per element.
        6 * outs[0].numel() as u64
    }
}

/// `layer_normalization(X, Scale, B?) {axis, epsilon}` → `Y, Mean?, InvStdDev?`: normalises
/// over dimensions `axis..rank`; Scale and B broadcast to X. Mean and InvStdDev keep the
/// normalised dimensions as 1 and have X's element type (what the ONNX reference does;
/// stash_type 1 only asks for at least f32 statistics, and kiln uses f64).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerNormalization {
    pub axis: i64,
    pub epsilon: f32,
}

impl LayerNormalization {
    fn check(
        &self,
        x: &[usize],
        scale: &[usize],
        bias: Option<&[usize]>,
        n_outputs: usize,
    ) -> Result<usize> {
        ensure!(
            n_outputs <= 3,
            InvalidModel,
            "layer_normalization has at most 3 results, got {n_outputs}"
        );
        let axis = norm_axis(self.axis, x.len())?;
        ensure!(
            !x.is_empty(),
            Shape,
            "layer_normalization needs X of rank >= 1"
        );
        for (what, s) in [("Scale", Some(scale)), ("B", bias)] {
            let Some(s) = s else { continue };
            let b = broadcast_shapes(x, s)?;
            ensure!(b == x, Shape, "{what} {s:?} must broadcast to X {x:?}");
        }
        Ok(axis)
    }
}

impl OpDef for LayerNormalization {
    fn names() -> &'static [&'static str] {
        &["layer_normalization"]
    }
    fn name(&self) -> &'static str {
        "layer_normalization"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        let stash = r.int("stash_type", 1)?;
        ensure!(
            stash == 1,
            Unsupported,
            "layer_normalization with stash_type {stash} is not supported (only 1)"
        );
        Ok(LayerNormalization {
            axis: r.int("axis", -1)?,
            epsilon: r.float("epsilon", 1e-5)?,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
            .int("axis", self.axis, -1)
            .float("epsilon", self.epsilon, 1e-5)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        let scale = ins.ty(1)?;
        let bias = ins.opt(2).map(|b| b.ty);
        require_float(x, "layer_normalization")?;
        for t in std::iter::once(scale).chain(bias) {
            ensure!(
                t.dtype == x.dtype,
                Type,
                "layer_normalization parameters must be {}, got {}",
                x.dtype,
                t.dtype
            );
        }
        let axis = self.check(
            &x.shape,
            &scale.shape,
            bias.map(|b| &b.shape[..]),
            ins.n_outputs,
        )?;
        let stat: Vec<usize> = x
            .shape
            .iter()
            .enumerate()
            .map(|(i, &d)| if i < axis { d } else { 1 })
            .collect();
        let mut out = vec![x.clone()];
        for _ in 1..ins.n_outputs {
            out.push(TensorType::new(x.dtype, stat.clone()));
        }
        Ok(out)
    }
    fn eval(&self, ins: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let scale = arg(ins, 1)?;
        let bias = opt_arg(ins, 2);
        let shape = x.shape();
        let axis = self.check(shape, scale.shape(), bias.map(|b| b.shape()), n_outputs)?;
        let cols: usize = shape[axis..].iter().product();
        let rows: usize = shape[..axis].iter().product();
        let mut v = float_values(x, "layer_normalization")?;
        let (mut means, mut inv_stds) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        if cols > 0 {
            for chunk in v.chunks_mut(cols) {
                let (mean, var) = mean_var(chunk);
                let inv = 1.0 / (var + self.epsilon as f64).sqrt();
                chunk.iter_mut().for_each(|e| *e = (*e - mean) * inv);
                means.push(mean);
                inv_stds.push(inv);
            }
        } else {
            // Normalising over nothing: the reference's 0/0 statistics.
            means.resize(rows, f64::NAN);
            inv_stds.resize(rows, f64::NAN);
        }
        let dims = IxDyn(shape);
        let broadcast = |t: &Tensor, what: &str| -> Result<Vec<f64>> {
            let a = ArrayD::from_shape_vec(IxDyn(t.shape()), float_values(t, what)?)
                .expect("row-major values");
            let b = a
                .broadcast(dims.clone())
                .expect("checked by broadcast_shapes");
            Ok(b.iter().copied().collect())
        };
        let s = broadcast(scale, "Scale")?;
        v.iter_mut().zip(&s).for_each(|(e, k)| *e *= k);
        if let Some(b) = bias {
            let b = broadcast(b, "B")?;
            v.iter_mut().zip(&b).for_each(|(e, k)| *e += k);
        }
        let stat: Vec<usize> = shape
            .iter()
            .enumerate()
            .map(|(i, &d)| if i < axis { d } else { 1 })
            .collect();
        let dt = x.dtype();
        let mut out = vec![float_tensor(dt, shape, v)?];
        if n_outputs >= 2 {
            out.push(float_tensor(dt, &stat, means)?);
        }
        if n_outputs >= 3 {
            out.push(float_tensor(dt, &stat, inv_stds)?);
        }
        Ok(out)
    }
    fn flops(&self, _: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        6 * outs[0].numel() as u64
    }
}

/// `lrn(X) {alpha, beta, bias, size}`: local response normalisation across channels,
/// `x / (bias + alpha / size * Σ x²)^beta` with the sum over channels
/// `c - floor((size-1)/2) ..= c + ceil((size-1)/2)` (clipped to the tensor).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lrn {
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
    pub size: i64,
}

impl OpDef for Lrn {
    fn names() -> &'static [&'static str] {
        &["lrn"]
    }
    fn name(&self) -> &'static str {
        "lrn"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        let size = r.req_int("size")?;
        ensure!(
            size >= 1,
            Attribute,
            "lrn size must be at least 1, got {size}"
        );
        Ok(Lrn {
            alpha: r.float("alpha", 1e-4)?,
            beta: r.float("beta", 0.75)?,
            bias: r.float("bias", 1.0)?,
            size,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
            .float("alpha", self.alpha, 1e-4)
            .float("beta", self.beta, 0.75)
            .float("bias", self.bias, 1.0)
            .int("size", self.size, 0)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        require_float(x, "lrn")?;
        ensure!(
            x.rank() >= 3,
            Shape,
            "lrn needs X of rank >= 3 (N, C, D1, ...), got {x}"
        );
        Ok(vec![x.clone()])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let shape = x.shape();
        ensure!(
            shape.len() >= 3,
            Shape,
            "lrn needs X of rank >= 3, got {shape:?}"
        );
        let (n, c, inner) = (shape[0], shape[1], shape[2..].iter().product::<usize>());
        let v = float_values(x, "lrn")?;
        let size = self.size.max(1) as usize;
        let (before, after) = ((size - 1) / 2, size / 2);
        let k = self.alpha as f64 / size as f64;
        let (bias, beta) = (self.bias as f64, self.beta as f64);
        let mut out = vec![0.0; v.len()];
        let mut sq = vec![0.0; inner];
        for b in 0..n {
            let plane = |ch: usize| (b * c + ch) * inner;
            for ch in 0..c {
                sq.iter_mut().for_each(|s| *s = 0.0);
                for j in ch.saturating_sub(before)..(ch + after + 1).min(c) {
                    sq.iter_mut()
                        .zip(&v[plane(j)..plane(j) + inner])
                        .for_each(|(s, x)| *s += x * x);
                }
                let dst = &mut out[plane(ch)..plane(ch) + inner];
                for ((d, x), s) in dst
                    .iter_mut()
                    .zip(&v[plane(ch)..plane(ch) + inner])
                    .zip(&sq)
                {
                    *d = x / (bias + k * s).powf(beta);
                }
            }
        }
        Ok(vec![float_tensor(x.dtype(), shape, out)?])
    }
    fn flops(&self, _: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        (2 * self.size.max(1) as u64 + 4) * outs[0].numel() as u64
    }
}

/// Helpers shared by the unit tests of the norm-family files.
#[cfg(test)]
pub(super) mod test_support {
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
    pub fn run(
        op: &Op,
        ins: &[Option<&Tensor>],
        n_outputs: usize,
    ) -> kiln_core::Result<Vec<Tensor>> {
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
}

#[cfg(test)]
mod tests {
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
        let e = crate::ops::Op::from_attrs(
            "lrn",
            kiln_core::Attrs(vec![("size".into(), Attr::Int(0))]),
        );
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
}
