//! `kiln profile`: every fused kernel in fp32 and in int8, side by side — time, speed-up,
//! and the int8 result's SNR and cosine against fp32 — then the whole model.
//!
//! The int8 timings are the JIT's; the accuracy columns come from the simulator, which the
//! int8 JIT equals bit for bit (tests/int8_models.rs), so they are the kernels' accuracy.
//! A node whose int8 program runs the simulator's code (a host step) is marked, because
//! its time is the fallback's, not a kernel's.

use super::report::{self, Axis, Bar, truncate, write_atomic};
use super::{ModelArgs, progress};
use crate::model;
use clap::Args;
use kiln_loop::exec::Compiled;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub quant: super::quantize::QuantArgs,
    /// Timed runs per precision (per-kernel times are averaged over them).
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Threads for the JIT's parallel loops.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Rows of the table (slowest fp32 kernels first).
    #[arg(long, default_value_t = 25)]
    pub top: usize,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also draw the per-kernel speed-up as an SVG bar chart.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// One graph node's kernels in both precisions.
#[derive(Debug, Clone, Default)]
struct Row {
    node: String,
    op: String,
    flops: u64,
    fp32_ms: f64,
    int8_ms: f64,
    /// The int8 program ran the simulator's code for this node.
    host: bool,
    snr_db: Option<f64>,
    cosine: Option<f64>,
}

/// Per node: name, op, FLOPs, mean ms, whether any of its steps is a host step.
type NodeTime = (String, &'static str, u64, f64, bool);

/// Mean time per step over `runs`, summed per node (a node may lower to several kernels).
fn node_times(
    c: &mut Compiled,
    inputs: &[kiln_core::Tensor],
    runs: usize,
    label: &str,
) -> anyhow::Result<Vec<NodeTime>> {
    c.run(inputs)?; // warm-up
    let mut times: Vec<Duration> = Vec::new();
    progress::timed_runs(runs, label, || {
        c.run_timed(inputs, Some(&mut times))?;
        Ok(())
    })?;
    let mut out: Vec<NodeTime> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for (s, info) in c.program.info.iter().enumerate() {
        let ms = times[s].as_secs_f64() * 1e3 / runs as f64;
        let host = matches!(c.program.steps[s], kiln_loop::program::Step::Host { .. });
        match at.get(&info.node) {
            Some(&i) => {
                out[i].3 += ms;
                out[i].4 |= host;
            }
            None => {
                at.insert(info.node.clone(), out.len());
                out.push((info.node.clone(), info.op, info.flops, ms, host));
            }
        }
    }
    Ok(out)
}

pub fn run(a: ProfileArgs) -> anyhow::Result<()> {
    let mut g = a.model.load()?;
    super::run_pipeline(&mut g, "graph-opt", Default::default())?;
    let inputs = model::inputs_for(&g, &Default::default())?;
    let runs = a.runs.max(1);
    let mut fp32 = progress::compile(&g, a.threads)?;
    let f = node_times(&mut fp32, &inputs, runs, "timing fp32")?;
    let q = super::quantize::quantize(g.clone(), &a.quant)?;
    let mut int8 = progress::compile_int8(&q, a.threads)?;
    let i = node_times(&mut int8, &inputs, runs, "timing int8")?;
    let i: HashMap<String, (f64, bool)> =
        i.into_iter().map(|(n, _, _, ms, h)| (n, (ms, h))).collect();
    // Accuracy of every op output on the profiled input: the int8 kernels' results, which
    // are the simulator's.
    let (per, outs) = progress::spin("measuring int8 accuracy".into(), || {
        kiln_quant::analysis::graph_wise(&q, std::slice::from_ref(&inputs))
    })?;
    let by_name: HashMap<String, kiln_quant::analysis::ErrStats> = per
        .iter()
        .map(|(&v, e)| (q.graph.value(v).name.clone(), *e))
        .collect();
    let mut rows: Vec<Row> = f
        .into_iter()
        .map(|(node, op, flops, ms, _)| {
            let (int8_ms, host) = i.get(&node).copied().unwrap_or((f64::NAN, false));
            let e = by_name.get(&node);
            Row {
                op: op.to_string(),
                flops,
                fp32_ms: ms,
                int8_ms,
                host,
                snr_db: e.map(|e| e.snr_db()),
                cosine: e.map(|e| e.cosine()),
                node,
            }
        })
        .collect();
    rows.sort_by(|x, y| y.fp32_ms.total_cmp(&x.fp32_ms));
    let total = |p: fn(&Row) -> f64| rows.iter().map(p).filter(|x| x.is_finite()).sum::<f64>();
    let (tf, ti) = (total(|r| r.fp32_ms), total(|r| r.int8_ms));
    println!(
        "{}: {} kernels' nodes, {} runs, {} thread(s)",
        a.model.display_name(),
        rows.len(),
        runs,
        a.threads
    );
    println!(
        "{:<34} {:<20} {:>9} {:>9} {:>7} {:>8} {:>9}",
        "node", "op", "fp32 ms", "int8 ms", "speedup", "snr_db", "cosine"
    );
    let opt = |x: Option<f64>, w: usize, p: usize| match x {
        Some(v) if v.is_finite() => format!("{v:>w$.p$}"),
        _ => format!("{:>w$}", "-"),
    };
    for r in rows.iter().take(a.top) {
        println!(
            "{:<34} {:<20} {:>9.4} {:>9.4} {:>6.2}× {} {}{}",
            truncate(&r.node, 34),
            truncate(&r.op, 20),
            r.fp32_ms,
            r.int8_ms,
            r.fp32_ms / r.int8_ms,
            opt(r.snr_db, 8, 2),
            opt(r.cosine, 9, 6),
            if r.host { "  (simulator fallback)" } else { "" }
        );
    }
    println!(
        "whole model: fp32 {tf:.3} ms, int8 {ti:.3} ms ({:.2}×), int8 output SNR {:.2} dB, cosine {:.6}",
        tf / ti,
        outs.snr_db(),
        outs.cosine()
    );
    if let Some(path) = &a.json {
        let num = |x: f64| if x.is_finite() { json!(x) } else { json!(null) };
        let j = json!({
            "model": a.model.display_name(),
            "threads": a.threads,
            "runs": runs,
            "kernels": rows.iter().map(|r| json!({
                "node": r.node, "op": r.op, "flops": r.flops,
                "fp32_ms": num(r.fp32_ms), "int8_ms": num(r.int8_ms),
                "speedup": num(r.fp32_ms / r.int8_ms), "simulator_fallback": r.host,
                "snr_db": r.snr_db.map(num), "cosine": r.cosine.map(num),
            })).collect::<Vec<_>>(),
            "total": {"fp32_ms": tf, "int8_ms": ti, "speedup": num(tf / ti),
                      "snr_db": num(outs.snr_db()), "cosine": num(outs.cosine())},
        });
        write_atomic(path, serde_json::to_string_pretty(&j)?.as_bytes())?;
    }
    if let Some(path) = &a.svg {
        write_atomic(
            path,
            svg(&rows[..rows.len().min(a.top)], tf / ti).as_bytes(),
        )?;
    }
    Ok(())
}

/// A horizontal bar per kernel: int8 speed-up over fp32 on a log scale, 1× marked.
fn svg(rows: &[Row], whole: f64) -> String {
    // log2 axis from 1/8× to 16×.
    let axis = Axis {
        lo: -3.0,
        hi: 4.0,
        log2: true,
        origin: 1.0,
        ticks: (-3..=4)
            .map(|k: i32| {
                let label = if k < 0 {
                    format!("1/{}×", 1 << -k)
                } else {
                    format!("{}×", 1 << k)
                };
                (2f64.powi(k), label)
            })
            .collect(),
    };
    let rows: Vec<report::Row> = rows
        .iter()
        .map(|r| {
            let s = r.fp32_ms / r.int8_ms;
            let color = if r.host {
                "#d62728"
            } else if s >= 1.0 {
                "#2ca02c"
            } else {
                "#ff7f0e"
            };
            report::Row {
                label: truncate(&format!("{} ({})", r.node, r.op), 44),
                bars: vec![Bar {
                    value: if s.is_finite() { s } else { 1.0 },
                    color,
                    text: format!("{s:.2}×"),
                }],
            }
        })
        .collect();
    report::hbar_chart(
        &format!(
            "int8 speed-up over fp32 per kernel (whole model {whole:.2}×); red: simulator fallback"
        ),
        &axis,
        &rows,
    )
}
