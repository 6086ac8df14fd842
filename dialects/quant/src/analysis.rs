//! Error analysis: how far the simulated int8 network is from fp32, per op output.
//!
//! - *graph-wise*: everything quantised, errors accumulate through the network;
//! - *layer-wise*: one op quantised at a time (every other quantising TQC switched to
//!   DEQUANTIZED), so each row is that op's own damage.
//!
//! SNR in dB is `10·log10(Σ x² / Σ (x − x̂)²)` (higher is better); PPQ's "SNR" is the
//! inverse ratio, noise over signal, also reported. Cosine is between the flattened tensors.

use crate::float_run::{ObservedRun, float_run};
use crate::ir::QuantGraph;
use crate::sim::{Simulator, op_sites};
use crate::tqc::State;
use kiln_core::{DType, Result, Tensor};
use kiln_graph::{Op, Value};
use std::collections::HashMap;

/// Accumulated error statistics between a reference and a test tensor.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ErrStats {
    pub signal: f64,
    pub noise: f64,
    pub dot: f64,
    pub test_sq: f64,
}

impl ErrStats {
    pub fn add(&mut self, reference: &Tensor, test: &Tensor) {
        let (Ok(a), Ok(b)) = (
            reference.cast(DType::F64).as_array::<f64>().cloned(),
            test.cast(DType::F64).as_array::<f64>().cloned(),
        ) else {
            return;
        };
        for (&x, &y) in a.iter().zip(b.iter()) {
            if x.is_finite() && y.is_finite() {
                self.signal += x * x;
                self.noise += (x - y) * (x - y);
                self.dot += x * y;
                self.test_sq += y * y;
            }
        }
    }

    /// Signal-to-noise ratio in dB (infinite when there is no noise).
    pub fn snr_db(&self) -> f64 {
        if self.noise == 0.0 {
            return f64::INFINITY;
        }
        10.0 * (self.signal / self.noise).log10()
    }

    /// PPQ's figure: noise power over signal power.
    pub fn noise_ratio(&self) -> f64 {
        if self.signal == 0.0 {
            return if self.noise == 0.0 {
                0.0
            } else {
                f64::INFINITY
            };
        }
        self.noise / self.signal
    }

    pub fn cosine(&self) -> f64 {
        let d = (self.signal * self.test_sq).sqrt();
        if d == 0.0 {
            return if self.signal == self.test_sq {
                1.0
            } else {
                0.0
            };
        }
        self.dot / d
    }
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct Row {
    pub value: String,
    pub op: String,
    pub graph_wise: ErrStats,
    pub layer_wise: Option<ErrStats>,
}

/// Graph-wise statistics of every float op output over `samples`, and of the graph outputs.
pub fn graph_wise(
    q: &QuantGraph,
    samples: &[Vec<Tensor>],
) -> Result<(HashMap<Value, ErrStats>, ErrStats)> {
    // The reference is the model as given, before its weights were rounded.
    let reference = q.float_graph(|_| false);
    let mut float = float_run(q.runner.as_ref(), &reference)?;
    let mut quantised: Box<dyn ObservedRun + '_> = match &q.int8_runner {
        Some(r) => r.make(q)?,
        None => Box::new(Simulator::new(q)?),
    };
    let mut per: HashMap<Value, ErrStats> = HashMap::new();
    let mut outs = ErrStats::default();
    for s in samples {
        let mut refs: HashMap<Value, Tensor> = HashMap::new();
        let r = float.run(s, &mut |v, t| {
            if t.dtype().is_float() {
                refs.insert(v, t.clone());
            }
        })?;
        let t = quantised.run(s, &mut |v, t| {
            if let Some(r) = refs.get(&v) {
                per.entry(v).or_default().add(r, t);
            }
        })?;
        for (a, b) in r.iter().zip(&t) {
            outs.add(a, b);
        }
    }
    Ok((per, outs))
}

/// A copy of `q` in which only op `n`'s TQCs quantise and only its own constants carry
/// their rounding (the others are restored to float: BAKED TQCs do not quantise again).
fn only_op(q: &QuantGraph, n: kiln_graph::NodeId) -> QuantGraph {
    let mut c = q.clone();
    // One op's unit differs from the next: not worth compiling each.
    c.runner = None;
    c.int8_runner = None;
    let g = &q.graph;
    let own: Vec<_> = g
        .node(n)
        .inputs()
        .iter()
        .flatten()
        .filter_map(|&v| g.producer(v))
        .collect();
    c.graph = q.float_graph(|p| own.contains(&p));
    let keep = op_sites(q, n);
    for id in c.ids().collect::<Vec<_>>() {
        let st = c.tqc(id).state;
        if !keep.contains(&id) && matches!(st, State::Activated | State::Slave | State::Overlapped)
        {
            c.tqc_mut(id).state = State::Dequantized;
        }
    }
    c
}

/// The full report: graph-wise rows for every op output plus, when `layer_wise`, each
/// op's own error at its outputs. Rows are sorted worst (lowest graph-wise SNR) first.
pub fn report(
    q: &QuantGraph,
    samples: &[Vec<Tensor>],
    layer_wise: bool,
) -> Result<(Vec<Row>, ErrStats)> {
    let (per, outs) = graph_wise(q, samples)?;
    let g = &q.graph;
    let mut rows = Vec::new();
    for n in g.topo_order()? {
        let node = g.node(n);
        if matches!(node.op, Op::Const(_)) {
            continue;
        }
        let lw = if layer_wise {
            let c = only_op(q, n);
            let (lper, _) = graph_wise(&c, samples)?;
            Some(lper)
        } else {
            None
        };
        for &v in node.outputs() {
            let Some(gw) = per.get(&v) else { continue };
            rows.push(Row {
                value: g.value(v).name.clone(),
                op: node.op.name().to_string(),
                graph_wise: *gw,
                layer_wise: lw.as_ref().and_then(|m| m.get(&v).copied()),
            });
        }
    }
    rows.sort_by(|a, b| a.graph_wise.snr_db().total_cmp(&b.graph_wise.snr_db()));
    Ok((rows, outs))
}

/// The table as text.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<32} {:<16} {:>10} {:>9} {:>10} {:>9}\n",
        "value", "op", "snr_db", "cosine", "layer_db", "layer_cos"
    );
    for r in rows {
        let (ldb, lcos) = match &r.layer_wise {
            Some(l) => (format!("{:.2}", l.snr_db()), format!("{:.5}", l.cosine())),
            None => ("-".into(), "-".into()),
        };
        s.push_str(&format!(
            "{:<32} {:<16} {:>10.2} {:>9.5} {:>10} {:>9}\n",
            r.value,
            r.op,
            r.graph_wise.snr_db(),
            r.graph_wise.cosine(),
            ldb,
            lcos
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        let a = Tensor::from_vec(&[4], vec![1.0f32, -1.0, 2.0, 0.0]).unwrap();
        let b = Tensor::from_vec(&[4], vec![1.1f32, -1.0, 2.0, 0.0]).unwrap();
        let mut e = ErrStats::default();
        e.add(&a, &a);
        assert_eq!(e.snr_db(), f64::INFINITY);
        assert!((e.cosine() - 1.0).abs() < 1e-12);
        let mut e = ErrStats::default();
        e.add(&a, &b);
        // signal 6, noise 0.01 → 27.78 dB
        assert!(
            (e.snr_db() - 10.0 * (6.0f64 / 0.01).log10()).abs() < 1e-3,
            "{}",
            e.snr_db()
        );
        assert!((e.noise_ratio() - 0.01 / 6.0).abs() < 1e-6);
    }
}
