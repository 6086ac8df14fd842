//! Normalisation ops: BatchNormalization (inference form), InstanceNormalization,
//! LayerNormalization and LRN.
//!
//! Kernels compute in f64 and round once at the end: statistics over thousands of f32
//! elements then stay well inside the 1e-6 relative agreement the interpreter promises,
//! whatever order onnxruntime sums in.

use super::channel_layout::Layout;
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
/// form exists; `momentum` is kept so imported models print back unchanged. With
/// `layout="nhwc"` the channel axis of X and the result is the last one (see [`Layout`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormalization {
    pub epsilon: f32,
    pub momentum: f32,
    pub layout: Layout,
}

const BN_PARAMS: [(usize, &str); 4] = [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")];

impl BatchNormalization {
    /// Each channel's multiplier `scale / sqrt(var + epsilon)`, computed in f64 and rounded
    /// once to f32: the one value the f32 kernel and the int8 simulator's contract
    /// (kiln-quant's `arith::batch_norm`) both start from.
    pub fn multipliers(&self, scale: &[f32], var: &[f32]) -> Vec<f32> {
        let eps = self.epsilon as f64;
        scale
            .iter()
            .zip(var)
            .map(|(&s, &v)| (s as f64 / (v as f64 + eps).sqrt()) as f32)
            .collect()
    }
}

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
            layout: Layout::read(r)?,
        })
    }
    fn attrs(&self) -> Attrs {
        let a =
            Attrs::new()
                .float("epsilon", self.epsilon, 1e-5)
                .float("momentum", self.momentum, 0.9);
        self.layout.write(a)
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
            x.rank() >= 2 + self.layout.is_nhwc() as usize,
            Shape,
            "batch_normalization needs X of rank >= 2 (N, C, ...; >= 3 channels last), got {x}"
        );
        check_channel_params(&ins, &BN_PARAMS, self.layout.to_nchw_type(x).shape[1])?;
        Ok(vec![x.clone()])
    }
    fn eval(&self, ins: &[Option<&Tensor>], n_outputs: usize) -> Result<Vec<Tensor>> {
        ensure!(
            n_outputs <= 1,
            Unsupported,
            "batch_normalization in training mode is not supported"
        );
        ensure!(
            !self.layout.is_nhwc() || arg(ins, 0)?.shape().len() >= 3,
            Shape,
            "batch_normalization with layout=\"nhwc\" needs X of rank >= 3"
        );
        let x = &*self.layout.to_nchw(arg(ins, 0)?);
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
        Ok(vec![self.layout.from_nchw(float_tensor(
            x.dtype(),
            shape,
            v,
        )?)])
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
/// With `layout="nhwc"` the channels are X's last axis (see [`Layout`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lrn {
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
    pub size: i64,
    pub layout: Layout,
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
            layout: Layout::read(r)?,
        })
    }
    fn attrs(&self) -> Attrs {
        let a = Attrs::new()
            .float("alpha", self.alpha, 1e-4)
            .float("beta", self.beta, 0.75)
            .float("bias", self.bias, 1.0)
            .int("size", self.size, 0);
        self.layout.write(a)
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
        let x = &*self.layout.to_nchw(arg(ins, 0)?);
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
        Ok(vec![self.layout.from_nchw(float_tensor(
            x.dtype(),
            shape,
            out,
        )?)])
    }
    fn flops(&self, _: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        (2 * self.size.max(1) as u64 + 4) * outs[0].numel() as u64
    }
}

/// Helpers shared by the unit tests of the norm-family files.
#[cfg(test)]
pub(super) mod test_support;

#[cfg(test)]
mod tests;
