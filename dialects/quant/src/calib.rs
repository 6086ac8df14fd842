//! The calibration driver: samples in, observed ranges and parameters out.
//!
//! Which TQCs are observed: activation TQCs in state INITIAL, ACTIVATED or SLAVE whose
//! site is not a constant. Each member observes the values at its own site; its root gets
//! the parameters of the widest range among its group's observed members (alignment may
//! later re-derive them with another policy). Observers with histograms need the range
//! first, so those run the samples twice. The float model runs on `QuantGraph::runner`
//! (the reference interpreter by default). Deterministic: the runners are, and random
//! samples come from a seeded generator.

use crate::ir::{QuantGraph, TqcId, is_const};
use crate::observer::{Observer, ObserverKind};
use crate::tqc::State;
use kiln_core::{DType, Result, Rng, Tensor, bail};
use kiln_graph::{Graph, Value};
use std::collections::HashMap;

/// Samples the calibration pass generates when a unit has none.
pub const DEFAULT_RANDOM_SAMPLES: usize = 4;

/// `n` seeded samples for `g`'s inputs: floats uniform in [0, 1) (like `kiln run`'s seeded
/// inputs, which images resemble), integers 0, bools
/// false. Sample `i` uses seed `1000 + i`, so `random:N` is a prefix of `random:N+1`.
pub fn random_samples(g: &Graph, n: usize) -> Result<Vec<Vec<Tensor>>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut rng = Rng::new(1000 + i as u64);
        let mut sample = Vec::new();
        for &v in g.inputs() {
            let Some(ty) = g.value(v).ty.clone() else {
                bail!(
                    Input,
                    "input '{}' has no type: fix it with --shape",
                    g.value(v).name
                );
            };
            let t = if ty.dtype.is_float() {
                Tensor::from_f64_fn(&ty, |_| rng.next_f32() as f64)
            } else {
                Tensor::zeros(&ty)
            };
            sample.push(t);
        }
        out.push(sample);
    }
    Ok(out)
}

/// The TQCs calibration observes, with the value each one sees.
fn observed(q: &QuantGraph) -> Vec<(TqcId, Value)> {
    q.ids()
        .filter(|&id| {
            matches!(
                q.tqc(id).state,
                State::Initial | State::Activated | State::Slave
            ) && q.tqc(id).axis.is_none()
        })
        .filter_map(|id| {
            let v = q.site_value(q.site(id));
            (!is_const(&q.graph, v)).then_some((id, v))
        })
        .collect()
}

fn as_f32(t: &Tensor) -> Option<Vec<f32>> {
    t.dtype()
        .is_float()
        .then(|| {
            t.cast(DType::F32)
                .as_f32()
                .map(|a| a.iter().copied().collect())
                .ok()
        })
        .flatten()
}

/// Calibrates `q` in place; `progress(done, total)` is called after each sample run.
/// Returns whether any TQC changed.
pub fn calibrate(q: &mut QuantGraph, progress: &mut dyn FnMut(usize, usize)) -> Result<bool> {
    let obs = observed(q);
    if obs.is_empty() {
        return Ok(false);
    }
    if q.calib.is_empty() {
        q.calib = random_samples(&q.graph, DEFAULT_RANDOM_SAMPLES)?;
    }
    let kind_of = |q: &QuantGraph, id: TqcId| q.observer.unwrap_or(q.tqc(id).observer);
    let mut observers: Vec<Observer> = obs
        .iter()
        .map(|&(id, _)| Observer::new(kind_of(q, id)))
        .collect();
    let mut by_value: HashMap<Value, Vec<usize>> = HashMap::new();
    for (i, &(_, v)) in obs.iter().enumerate() {
        by_value.entry(v).or_default().push(i);
    }
    let hist = observers.iter().any(|o| o.kind.needs_histogram());
    let passes = if hist { 2 } else { 1 };
    let total = passes * q.calib.len();
    let mut run = crate::float_run::float_run(q.runner.as_ref(), &q.graph)?;
    let mut done = 0;
    for pass in 0..passes {
        for sample in &q.calib {
            let mut feed = |v: Value, t: &Tensor| {
                let Some(ix) = by_value.get(&v) else { return };
                let Some(xs) = as_f32(t) else { return };
                for &i in ix {
                    let o = &mut observers[i];
                    if pass == 0 {
                        o.first(&xs);
                    } else if o.kind.needs_histogram() {
                        o.second(&xs);
                    }
                }
            };
            for (&v, t) in q.graph.inputs().iter().zip(sample) {
                feed(v, t);
            }
            run.run(sample, &mut feed)?;
            done += 1;
            progress(done, total);
        }
    }
    drop(run);
    // Ranges per member, then the widest per root.
    let mut widest: HashMap<TqcId, (f32, f32)> = HashMap::new();
    let mut changed = false;
    for (i, &(id, _)) in obs.iter().enumerate() {
        let t = q.tqc(id);
        let levels = (t.quant_max - t.quant_min) as u32;
        let Ok(seen) = observers[i].range(levels, t.policy.symmetric()) else {
            continue; // never saw a finite value: left unquantised
        };
        let (lo, hi) = known_range(q, obs[i].1).unwrap_or(seen);
        let t = q.tqc_mut(id);
        if t.range != Some((lo, hi)) {
            t.range = Some((lo, hi));
            changed = true;
        }
        if t.state == State::Initial {
            t.state = State::Activated;
            changed = true;
        }
        let w = widest.entry(q.root(id)).or_insert((lo, hi));
        *w = (w.0.min(lo), w.1.max(hi));
    }
    let mut roots: Vec<_> = widest.into_iter().collect();
    roots.sort_by_key(|(r, _)| *r);
    for (root, (lo, hi)) in roots {
        let (s, o) = q.tqc(root).params_for_range(lo, hi)?;
        let t = q.tqc_mut(root);
        if t.scale != [s] || t.offset != [o] {
            t.scale = vec![s];
            t.offset = vec![o];
            changed = true;
        }
        if t.range.is_none() {
            t.range = Some((lo, hi));
        }
    }
    Ok(changed)
}

/// The range a value has by construction, which calibration takes instead of what the
/// samples showed: a Softmax's probabilities lie in [0, 1]. A few samples rarely show the
/// top of that range, yet one peaky attention row in the field reaches it, and a
/// probability clipped at the calibrated maximum (0.67 on the example transformer) costs far
/// more than the coarser grid does (its output SNR on `kiln run`'s default input rose from
/// 23.4 to 30.7 dB with this).
fn known_range(q: &QuantGraph, v: Value) -> Option<(f32, f32)> {
    let p = q.graph.producer(v)?;
    matches!(q.graph.node(p).op, kiln_graph::Op::Softmax(_)).then_some((0.0, 1.0))
}

/// Reads the observer kind from a name (CLI helper re-export).
pub fn observer(name: &str) -> Result<ObserverKind> {
    ObserverKind::from_name(name)
}
