//! Empirical bias correction: each layer's bias absorbs the mean of its output's
//! quantisation error over the calibration inputs.
//!
//! Rounding is unbiased per value, but a layer's output error is not: a weight rounded
//! up multiplies every input the same way, a Relu upstream turns symmetric noise into a
//! positive shift, and a clipped grid biases whatever it clips. Such errors add up
//! coherently where noise adds in quadrature, and a classifier head sums them over a
//! thousand features. Their per-channel mean is the part a bias can cancel exactly, at no
//! cost on the device: the bias is already on its 32-bit grid, so the corrected one is
//! too.
//!
//! The layers are corrected in graph order, each on the quantised activations the
//! corrected layers before it produce (PPQ's and AIMET's empirical bias correction), so a
//! layer does not compensate for an error its producer has already removed. Every
//! calibration sample goes through the unit op by op in lockstep: a layer's correction
//! needs the mean over all samples before any sample can go on past it.
//!
//! A correction is itself an estimate, and its noise becomes a new error, the same on
//! every input. Where a later corrected layer reads the result, that noise is a constant
//! shift there, part of the mean error the later layer measures on the same samples, and
//! it is taken back; so a layer that is followed by another, and that sits in the wake of
//! a systematic error (its own, or one upstream, [`systematic`]), takes its mean error in
//! full. Partial corrections there would leave systematic error behind for every later
//! layer to inherit: on open_nsfw, shrinking every layer keeps 31 dB of the 41 dB full
//! correction reaches. Elsewhere the correction is shrunk by how well the samples pin it
//! down ([`correction`]): the last layers have no one to clean up after them, and a
//! network whose errors are only noise (the example transformer: no layer's mean error
//! stands out) would gain nothing but the estimates' noise (−0.2 dB in full).
//!
//! The mean output of a layer is linear in its input's mean, `E[W·patch] = W·E[patch]`
//! (zero padding included), so neither side's full output is needed: the float model's
//! mean patches come from one run of it, the quantised side's from the lockstep run. The
//! difference is taken before the activation, where the bias acts: `W_q·E[x_q] + b_q +
//! E[r_q] − (W·E[x] + b + E[r])` with `r` a fused residual operand.

use crate::float_run::float_run;
use crate::ir::{QuantGraph, const_data};
use crate::layer::Layer;
use crate::plan;
use crate::sim::{self, fake_quant};
use crate::tqc::State;
use kiln_core::{DType, Error, ErrorKind, Result, Tensor};
use kiln_graph::ops::activation::RESIDUAL;
use kiln_graph::{Graph, NodeId, Op, Value};
use ndarray::ArrayD;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// A layer whose bias is corrected.
struct Target {
    layer: Layer,
    /// The bias constant.
    b: Value,
    /// The fused residual operand, when the layer adds one before its activation.
    residual: Option<Value>,
    /// The output's channel axis.
    axis: usize,
    /// No other target reads what this one computes, directly or through other ops.
    terminal: bool,
}

impl Target {
    /// `W·m + b + r` per output channel: the layer's mean output before its activation,
    /// given the mean patch `m` of each group, the weight and bias data and the residual's
    /// per-channel mean.
    fn mean_output(&self, m: &[Vec<f64>], w: &[f32], b: &[f32], r: Option<&[f64]>) -> Vec<f64> {
        let l = &self.layer;
        let mut out = vec![0f64; l.channels()];
        for (gi, mg) in m.iter().enumerate() {
            for row in 0..l.rows {
                let c = l.channel(gi, row);
                let dot: f64 = (0..l.k)
                    .map(|f| w[l.index(gi, row, f)] as f64 * mg[f])
                    .sum();
                out[c] = dot + b[c] as f64 + r.map_or(0.0, |r| r[c]);
            }
        }
        out
    }
}

/// Sums of a layer's input columns (per group, per feature) and of its residual (per
/// channel) over one sample's vectors (every output position, or every row).
struct Means {
    cols: Vec<Vec<f64>>,
    vectors: usize,
    residual: Vec<f64>,
    residual_count: usize,
}

impl Means {
    fn new(t: &Target) -> Means {
        Means {
            cols: vec![vec![0.0; t.layer.k]; t.layer.groups],
            vectors: 0,
            residual: vec![0.0; t.layer.channels()],
            residual_count: 0,
        }
    }

    fn add_x(&mut self, t: &Target, x: &Tensor) -> Result<()> {
        let cols = &mut self.cols;
        self.vectors += t.layer.columns(x, |gi, c| {
            for (s, row) in cols[gi].iter_mut().zip(c.rows()) {
                *s += row.iter().map(|&v| v as f64).sum::<f64>();
            }
        })?;
        Ok(())
    }

    fn add_residual(&mut self, t: &Target, r: &Tensor) -> Result<()> {
        let r = r.cast(DType::F32);
        let a = r.as_f32()?;
        let inner: usize = a.shape()[t.axis + 1..].iter().product();
        let channels = self.residual.len();
        for (i, &v) in a.iter().enumerate() {
            self.residual[(i / inner) % channels] += v as f64;
        }
        self.residual_count += a.len() / channels.max(1);
        Ok(())
    }

    /// The layer's mean output before its activation over what was added, given its
    /// weight and bias data.
    fn mean_output(&self, t: &Target, w: &[f32], b: &[f32]) -> Vec<f64> {
        let n = self.vectors.max(1) as f64;
        let m: Vec<Vec<f64>> = self
            .cols
            .iter()
            .map(|g| g.iter().map(|s| s / n).collect())
            .collect();
        let rn = self.residual_count.max(1) as f64;
        let r: Vec<f64> = self.residual.iter().map(|s| s / rn).collect();
        t.mean_output(&m, w, b, t.residual.map(|_| r.as_slice()))
    }
}

/// Per channel, the mean of the samples' mean errors (`errors[sample][channel]`): the
/// shift a layer's bias takes back. With `shrink`, each is shrunk by how well the samples
/// pin it down: with `e` the mean over `S` samples and `se² = var/S` its standard error,
/// `e·max(0, 1 − se²/e²)`, the positive-part James–Stein estimate of `μ·μ²/(μ² + se²)`,
/// the correction that minimises the squared mean error expected on new inputs. An error
/// the same on every sample is taken in full, noise around zero is left alone. One sample
/// gives no spread: its error is taken as it is.
fn correction(errors: &[Vec<f64>], channels: usize, shrink: bool) -> Vec<f64> {
    channel_stats(errors, channels)
        .into_iter()
        .map(|(mean, se2)| {
            if !shrink || mean == 0.0 {
                mean
            } else {
                mean * (1.0 - se2 / (mean * mean)).max(0.0)
            }
        })
        .collect()
}

/// Whether a layer's mean error stands out of its noise: `Σ e_c² > 2·Σ se_c²` over its
/// channels (the James–Stein factor of the whole vector above one half). Pure noise gives
/// a ratio near 1, within `√(2/C)` or so for `C` channels. Any threshold from 1.2 to 6
/// decides the same on every model measured. One sample cannot tell.
fn systematic(errors: &[Vec<f64>], channels: usize) -> bool {
    if errors.len() < 2 {
        return true;
    }
    let stats = channel_stats(errors, channels);
    let signal: f64 = stats.iter().map(|(m, _)| m * m).sum();
    let noise: f64 = stats.iter().map(|(_, se2)| se2).sum();
    signal > 2.0 * noise
}

/// Per channel, the mean of `errors[sample][channel]` over the samples and its squared
/// standard error `var/S` (0 from a single sample).
fn channel_stats(errors: &[Vec<f64>], channels: usize) -> Vec<(f64, f64)> {
    let s = errors.len();
    (0..channels)
        .map(|c| {
            let mean = errors.iter().map(|e| e[c]).sum::<f64>() / s.max(1) as f64;
            if s < 2 {
                return (mean, 0.0);
            }
            let var = errors.iter().map(|e| (e[c] - mean).powi(2)).sum::<f64>() / (s - 1) as f64;
            (mean, var / s as f64)
        })
        .collect()
}

/// The layers with a bias `quant.bias-correct` can move: a conv, gemm (α = β = 1) or
/// matmul with a constant weight, a 1-D f32 bias constant of one value per output channel
/// read by that op alone, and a residual operand (if any) of the result's shape.
fn targets(q: &QuantGraph) -> Result<Vec<Target>> {
    let g = &q.graph;
    let mut out = Vec::new();
    let order = g.topo_order()?;
    for &n in &order {
        let node = g.node(n);
        if let Op::Gemm(m) = &node.op
            && (m.alpha != 1.0 || m.beta != 1.0)
        {
            continue;
        }
        let Some(layer) = Layer::of(q, n) else {
            continue;
        };
        let Some(b) = node.input(2) else { continue };
        let Some(bd) = const_data(g, b) else { continue };
        if g.use_count(b) != 1 || bd.dtype() != DType::F32 || bd.shape() != [layer.channels()] {
            continue;
        }
        let oshape = &g.ty(node.outputs()[0])?.shape;
        let axis = match &node.op {
            Op::Conv(c) if !c.layout.is_nhwc() => 1,
            _ => oshape.len() - 1,
        };
        if oshape.get(axis) != Some(&layer.channels()) {
            continue;
        }
        let residual = node.input(RESIDUAL);
        if let Some(r) = residual
            && g.ty(r)?.shape != *oshape
        {
            continue;
        }
        out.push(Target {
            layer,
            b,
            residual,
            axis,
            terminal: true,
        });
    }
    // Whether a target reaches another one: from the last node back, a node does when a
    // reader of its results is a target or reaches one.
    let is_target: HashSet<NodeId> = out.iter().map(|t| t.layer.node).collect();
    let mut reaches: HashSet<NodeId> = HashSet::new();
    for &n in order.iter().rev() {
        let feeds = g.node(n).outputs().iter().any(|&v| {
            g.uses(v)
                .iter()
                .any(|(u, _)| is_target.contains(u) || reaches.contains(u))
        });
        if feeds {
            reaches.insert(n);
        }
    }
    for t in &mut out {
        t.terminal = !reaches.contains(&t.layer.node);
    }
    Ok(out)
}

/// Corrects the bias of every eligible layer of `q`; returns whether any bias changed.
pub fn run(q: &mut QuantGraph) -> Result<bool> {
    let targets = targets(q)?;
    if targets.is_empty() {
        return Ok(false);
    }
    if q.calib.is_empty() {
        q.calib = crate::calib::random_samples(&q.graph, crate::calib::DEFAULT_RANDOM_SAMPLES)?;
    }
    let float_means = float_means(q, &targets)?;
    let by_node: HashMap<NodeId, usize> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| (t.layer.node, i))
        .collect();
    let mut changed = false;
    // Nodes downstream of a layer whose error was systematic (that layer included).
    let mut shifted: HashSet<NodeId> = HashSet::new();
    // The samples leave the unit while it is mutably lent to the lockstep run.
    let samples = std::mem::take(&mut q.calib);
    let last = targets.last().expect("not empty").layer.node;
    let ran = sim::lockstep(q, &samples, last, |q, n, operands| {
        let g = &q.graph;
        let mut inherited = g
            .node(n)
            .inputs()
            .iter()
            .flatten()
            .any(|&v| g.producer(v).is_some_and(|p| shifted.contains(&p)));
        if let Some(&i) = by_node.get(&n) {
            let t = &targets[i];
            let errors = errors(q, t, &float_means[i], operands)?;
            inherited |= systematic(&errors, t.layer.channels());
            // See the module docs: in full where later layers take back the estimate's
            // noise and there is a systematic error to remove, shrunk elsewhere.
            let shift = correction(&errors, t.layer.channels(), t.terminal || !inherited);
            changed |= apply(q, t, &shift)?;
        }
        if inherited {
            shifted.insert(n);
        }
        Ok(())
    });
    q.calib = samples;
    ran?;
    Ok(changed)
}

/// Each target's mean output before its activation in the float model, per calibration
/// sample (`[target][sample][channel]`).
fn float_means(q: &QuantGraph, targets: &[Target]) -> Result<Vec<Vec<Vec<f64>>>> {
    let float = q.float_graph(|_| false);
    let mut readers: HashMap<Value, Vec<(usize, bool)>> = HashMap::new();
    for (i, t) in targets.iter().enumerate() {
        readers.entry(t.layer.x).or_default().push((i, false));
        if let Some(r) = t.residual {
            readers.entry(r).or_default().push((i, true));
        }
    }
    let mut out = vec![Vec::with_capacity(q.calib.len()); targets.len()];
    let mut run = float_run(q.runner.as_ref(), &float)?;
    for sample in &q.calib {
        let mut means: Vec<Means> = targets.iter().map(Means::new).collect();
        let mut err = Ok(());
        let mut feed = |v: Value, t: &Tensor| {
            for &(i, residual) in readers.get(&v).into_iter().flatten() {
                if err.is_ok() {
                    let tg = &targets[i];
                    err = if residual {
                        means[i].add_residual(tg, t)
                    } else {
                        means[i].add_x(tg, t)
                    }
                    .map_err(|e| float.node(tg.layer.node).locate(e));
                }
            }
        };
        for (&v, t) in float.inputs().iter().zip(sample) {
            feed(v, t);
        }
        run.run(sample, &mut feed)?;
        err?;
        for (i, (t, m)) in targets.iter().zip(&means).enumerate() {
            let (w, b) = (f32_data(&float, t.layer.w)?, f32_data(&float, t.b)?);
            out[i].push(m.mean_output(t, &w, &b));
        }
    }
    Ok(out)
}

/// Constant `v`'s f32 data, in its logical order.
fn f32_data(g: &Graph, v: Value) -> Result<Cow<'_, [f32]>> {
    let a = const_data(g, v).expect("targets() checked").as_f32()?;
    Ok(match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    })
}

/// Per calibration sample and output channel, target `t`'s mean error before its
/// activation, from the samples' `operands` and `float`, the float model's mean outputs.
fn errors(
    q: &QuantGraph,
    t: &Target,
    float: &[Vec<f64>],
    operands: &[Vec<Option<&Tensor>>],
) -> Result<Vec<Vec<f64>>> {
    let n = t.layer.node;
    let g = &q.graph;
    let seen = |k: usize, v: Value| -> Result<Vec<f32>> {
        let data = const_data(g, v).expect("a constant");
        Ok(sim::as_read(q, n, k, data)?
            .as_f32()?
            .iter()
            .copied()
            .collect())
    };
    let (w, b) = (seen(1, t.layer.w)?, seen(2, t.b)?);
    let mut errors = Vec::with_capacity(operands.len());
    for (ops, want) in operands.iter().zip(float) {
        let missing = || Error::new(ErrorKind::Eval, "an operand was not computed");
        let mut means = Means::new(t);
        let x = ops[0].ok_or_else(missing)?;
        means.add_x(t, &*sim::as_read(q, n, 0, x)?)?;
        if t.residual.is_some() {
            let r = ops[RESIDUAL].ok_or_else(missing)?;
            means.add_residual(t, &*sim::as_read(q, n, RESIDUAL, r)?)?;
        }
        let got = means.mean_output(t, &w, &b);
        errors.push(got.iter().zip(want).map(|(g, w)| g - w).collect());
    }
    Ok(errors)
}

/// Moves target `t`'s bias by `shift`; returns whether it changed.
fn apply(q: &mut QuantGraph, t: &Target, shift: &[f64]) -> Result<bool> {
    let (n, g) = (t.layer.node, &q.graph);
    let stored = const_data(g, t.b).expect("a constant").clone();
    let mut data: Vec<f32> = stored.as_f32()?.iter().copied().collect();
    for (d, e) in data.iter_mut().zip(shift) {
        if e.is_finite() {
            *d -= *e as f32;
        }
    }
    let mut bias = Tensor::F32(ArrayD::from_shape_vec(stored.shape(), data).expect("1-D"));
    // A baked bias stays baked: on its grid, whose step is far finer than any correction.
    let bt = q.in_tqc(n, 2);
    if let Some(id) = bt.filter(|&id| q.tqc(id).state == State::PassiveBaked) {
        bias = fake_quant(&bias, q.effective(id))?;
    }
    if bias == stored {
        return Ok(false);
    }
    let had_plan = plan::int_plan(q, n)?.is_some();
    q.replace_const(t.b, bias);
    // A bias code too large for the i32 accumulator's headroom would take the op off its
    // integer path: such a layer keeps its bias.
    if had_plan && plan::int_plan(q, n)?.is_none() {
        q.replace_const(t.b, stored);
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrections_take_the_mean_and_shrink_only_noise_when_asked() {
        // Channel 0 errs by 0.5 on every sample; channel 1 is noise around zero.
        let errors: Vec<Vec<f64>> = [0.3, -0.2, 0.25, -0.3]
            .iter()
            .map(|&n| vec![0.5, n])
            .collect();
        let full = correction(&errors, 2, false);
        assert_eq!(full[0], 0.5);
        assert!((full[1] - 0.0125).abs() < 1e-15, "{full:?}");
        let shrunk = correction(&errors, 2, true);
        assert_eq!(
            shrunk,
            vec![0.5, 0.0],
            "no spread: in full; noise: left alone"
        );
        // A mean that stands out of its spread keeps most of itself: mean 1, var 1/6 over
        // 4 samples, so 1 − (1/6)/4 = 23/24 of it.
        let errors: Vec<Vec<f64>> = [0.5, 1.5, 1.0, 1.0].iter().map(|&e| vec![e]).collect();
        let s = correction(&errors, 1, true)[0];
        assert!((s - 23.0 / 24.0).abs() < 1e-12, "{s}");
        // One sample: taken as it is.
        assert_eq!(correction(&[vec![-0.25]], 1, true), vec![-0.25]);
    }

    #[test]
    fn systematic_errors_stand_out_of_their_noise() {
        // Two channels, four samples: an offset of 0.5 under noise of ±0.3 stands out...
        let noise = [0.3, -0.3, 0.3, -0.3];
        let offset: Vec<Vec<f64>> = noise.iter().map(|&n| vec![0.5 + n, n]).collect();
        assert!(systematic(&offset, 2));
        // ...the noise alone does not, nor a small offset under it.
        let pure: Vec<Vec<f64>> = noise.iter().map(|&n| vec![n, -n]).collect();
        assert!(!systematic(&pure, 2));
        let small: Vec<Vec<f64>> = noise.iter().map(|&n| vec![0.1 + n, n]).collect();
        assert!(!systematic(&small, 2));
        // One sample cannot tell.
        assert!(systematic(&[vec![0.0]], 1));
    }
}
