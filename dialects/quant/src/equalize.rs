//! Activation equalisation across a convolution and the depthwise convolution that reads
//! it (cross-layer equalisation, after Nagel et al.'s data-free quantisation, with the
//! scales taken from the calibration data).
//!
//! A per-tensor activation grid is as fine for every channel as for the widest one: a
//! channel that spans a tenth of the range gets a tenth of the levels. Between a conv `A`
//! whose activation is positively homogeneous (none, Relu, LeakyRelu) and a depthwise conv
//! `B`, channel `c` can be carried scaled by `1/s_c` instead: `A`'s output channel `c`
//! (its weight row and bias) is divided by `s_c` and `B`'s filters of channel `c` are
//! multiplied by it, which computes the same function. With `s_c = R_c / R` (`R_c` the
//! channel's calibrated max |x|, `R` the widest channel's) every channel spans the whole
//! grid, as if the activation were quantised per channel.
//!
//! It costs nothing elsewhere on a platform with per-channel weights: both weights are
//! scaled along their own per-channel axis (a depthwise filter is one input channel and one
//! output channel), so each channel's weight grid scales with it and no weight loses a
//! level. On per-tensor weight platforms it would, so those are left alone. A conv with a
//! fused residual or PRelu operand, a value read by anything else, and constants shared
//! with other ops are skipped.
//!
//! The rewrite changes the float model itself, not its rounding, so it is not recorded as
//! a replaced constant: the error analysis's reference is the equalised model, equal to
//! the given one up to f32 rounding.

use crate::float_run::float_run;
use crate::ir::{QuantGraph, const_data};
use crate::tqc::State;
use kiln_core::{Result, Tensor};
use kiln_graph::ops::Activation;
use kiln_graph::{NodeId, Op, Value};
use std::collections::HashMap;

/// A channel scaled by less than this (relative to the widest) keeps this factor: a dead
/// channel stays as it is rather than being blown up to the grid.
const MIN_SCALE: f32 = 1.0 / 1024.0;

/// One conv → depthwise-conv pair.
struct Pair {
    /// The activation between them (`A`'s result, `B`'s operand 0).
    x: Value,
    /// `A`'s weight and bias constants.
    w1: Value,
    b1: Option<Value>,
    /// `B`'s weight constant and its channel multiplier (output channels per input one).
    w2: Value,
    mult: usize,
    channels: usize,
    /// The channel axis of `x`.
    axis: usize,
}

/// Equalises every eligible pair in `q`; returns whether any weight changed.
pub fn run(q: &mut QuantGraph) -> Result<bool> {
    if !q.platform.weight.per_channel || q.platform.activation.per_channel {
        return Ok(false);
    }
    let pairs: Vec<Pair> = q
        .graph
        .topo_order()?
        .into_iter()
        .filter_map(|b| pair(q, b))
        .collect();
    if pairs.is_empty() {
        return Ok(false);
    }
    if q.calib.is_empty() {
        q.calib = crate::calib::random_samples(&q.graph, crate::calib::DEFAULT_RANDOM_SAMPLES)?;
    }
    let ranges = channel_ranges(q, &pairs)?;
    let mut changed = false;
    for (p, r) in pairs.iter().zip(&ranges) {
        let widest = r.iter().copied().fold(0.0f32, f32::max);
        if widest <= 0.0 || !widest.is_finite() {
            continue;
        }
        let s: Vec<f32> = r
            .iter()
            .map(|&rc| {
                if rc > 0.0 {
                    (rc / widest).max(MIN_SCALE)
                } else {
                    1.0
                }
            })
            .collect();
        if s.iter().all(|&v| v == 1.0) {
            continue;
        }
        scale_rows(q, p.w1, |c| 1.0 / s[c])?;
        if let Some(b1) = p.b1 {
            scale_rows(q, b1, |c| 1.0 / s[c])?;
        }
        scale_rows(q, p.w2, |k| s[k / p.mult])?;
        changed = true;
    }
    Ok(changed)
}

/// The pair whose depthwise conv is `b`, when it qualifies.
fn pair(q: &QuantGraph, b: NodeId) -> Option<Pair> {
    let g = &q.graph;
    let node = g.node(b);
    let Op::Conv(cb) = &node.op else { return None };
    let x = node.input(0)?;
    let w2 = node.input(1)?;
    let channels = *g
        .ty(x)
        .ok()?
        .shape
        .get(if cb.layout.is_nhwc() { 3 } else { 1 })?;
    let w2_shape = const_data(g, w2)?.shape();
    if cb.group != channels || channels < 2 || w2_shape.get(1) != Some(&1) {
        return None;
    }
    let mult = w2_shape[0] / channels;
    let a = g.producer(x)?;
    let an = g.node(a);
    let Op::Conv(ca) = &an.op else { return None };
    let homogeneous = matches!(
        ca.act,
        Activation::None | Activation::Relu | Activation::LeakyRelu { .. }
    );
    if !homogeneous || an.inputs().len() > 3 || an.outputs().len() != 1 {
        return None;
    }
    let w1 = an.input(1)?;
    let b1 = an.input(2);
    let single = |v: Value| g.uses(v).len() == 1 && !g.outputs().contains(&v);
    // f32 constants read by this pair alone (`scale_rows` rewrites them).
    let own_f32 = |v: Value| const_data(g, v).is_some_and(|t| t.as_f32().is_ok()) && single(v);
    if !single(x) || ![Some(w1), b1, Some(w2)].into_iter().flatten().all(own_f32) {
        return None;
    }
    if const_data(g, w1)?.shape().first() != Some(&channels) {
        return None;
    }
    // Only a value that will be quantised gains anything.
    if q.out_tqc(x)
        .is_none_or(|t| q.tqc(t).state != State::Initial)
    {
        return None;
    }
    let axis = if ca.layout.is_nhwc() { 3 } else { 1 };
    Some(Pair {
        x,
        w1,
        b1,
        w2,
        mult,
        channels,
        axis,
    })
}

/// Each pair's per-channel max |x| over the calibration samples, on the float model.
fn channel_ranges(q: &QuantGraph, pairs: &[Pair]) -> Result<Vec<Vec<f32>>> {
    let index: HashMap<Value, usize> = pairs.iter().enumerate().map(|(i, p)| (p.x, i)).collect();
    let mut ranges: Vec<Vec<f32>> = pairs.iter().map(|p| vec![0.0; p.channels]).collect();
    let mut run = float_run(q.runner.as_ref(), &q.graph)?;
    for sample in &q.calib {
        run.run(sample, &mut |v, t| {
            let Some(&i) = index.get(&v) else { return };
            let Ok(a) = t.as_f32() else { return };
            let (axis, r) = (pairs[i].axis, &mut ranges[i]);
            for (ix, &e) in a.indexed_iter() {
                if e.is_finite() {
                    let c = ix[axis];
                    r[c] = r[c].max(e.abs());
                }
            }
        })?;
    }
    Ok(ranges)
}

/// Multiplies row `r` (the first axis) of constant `v` by `f(r)`.
fn scale_rows(q: &mut QuantGraph, v: Value, f: impl Fn(usize) -> f32) -> Result<()> {
    let t = const_data(&q.graph, v).expect("pair() checked").as_f32()?;
    let per = (t.len() / t.shape()[0].max(1)).max(1);
    let data: Vec<f32> = t.iter().enumerate().map(|(i, &w)| w * f(i / per)).collect();
    q.rewrite_const(v, Tensor::from_vec(t.shape(), data)?);
    Ok(())
}
