//! `kiln profile`: every fused kernel in fp32 and in int8, side by side — time, speed-up,
//! and the int8 result's SNR and cosine against fp32 — then the whole model.
//!
//! The int8 timings are the JIT's; the accuracy columns come from the simulator, which the
//! int8 JIT equals bit for bit (tests/int8_models.rs), so they are the kernels' accuracy.
//! A node whose int8 program runs the simulator's code (a host step) is marked, because
//! its time is the fallback's, not a kernel's.

use super::ModelArgs;
use crate::model;
use anyhow::Context;
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
) -> anyhow::Result<Vec<NodeTime>> {
    c.run(inputs)?; // warm-up
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..runs {
        c.run_timed(inputs, Some(&mut times))?;
    }
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
    let mut fp32 = kiln_loop::compile(&g, a.threads)?;
    let f = node_times(&mut fp32, &inputs, runs)?;
    let q = super::quantize::quantize(g.clone(), &a.quant)?;
    let mut int8 = kiln_loop::compile_int8(&q, a.threads)?;
    let i = node_times(&mut int8, &inputs, runs)?;
    let i: HashMap<String, (f64, bool)> =
        i.into_iter().map(|(n, _, _, ms, h)| (n, (ms, h))).collect();
    // Accuracy of every op output, simulated (= the int8 kernels), on the profiled input.
    let (per, outs) = kiln_quant::analysis::graph_wise(&q, std::slice::from_ref(&inputs))?;
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
        write_atomic(path, &serde_json::to_string_pretty(&j)?)?;
    }
    if let Some(path) = &a.svg {
        write_atomic(path, &svg(&rows[..rows.len().min(a.top)], tf / ti))?;
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

fn write_atomic(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar per kernel: int8 speed-up over fp32 on a log scale, 1× marked.
fn svg(rows: &[Row], whole: f64) -> String {
    let (label_w, bar_w, row_h, top) = (300.0, 420.0, 18.0, 40.0);
    let width = label_w + bar_w + 80.0;
    let height = top + row_h * rows.len() as f64 + 30.0;
    // log2 axis from 1/8× to 16×.
    let (lo, hi) = (-3.0f64, 4.0f64);
    let x = |s: f64| label_w + (s.log2().clamp(lo, hi) - lo) / (hi - lo) * bar_w;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">\n\
         <text x=\"10\" y=\"20\" font-size=\"13\">int8 speed-up over fp32 per kernel (whole model {whole:.2}×); red: simulator fallback</text>\n"
    );
    for k in lo as i32..=hi as i32 {
        let s = 2f64.powi(k);
        let xx = x(s);
        out += &format!(
            "<line x1=\"{xx:.1}\" y1=\"{top}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"{}\"/>\n<text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}×</text>\n",
            height - 25.0,
            if k == 0 { "#000" } else { "#ddd" },
            height - 10.0,
            if k < 0 {
                format!("1/{}", 1 << -k)
            } else {
                format!("{}", 1 << k)
            }
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let s = r.fp32_ms / r.int8_ms;
        let (x0, x1) = (x(1.0), x(if s.is_finite() { s } else { 1.0 }));
        let color = if r.host {
            "#d62728"
        } else if s >= 1.0 {
            "#2ca02c"
        } else {
            "#ff7f0e"
        };
        out += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{s:.2}×</text>\n",
            label_w - 6.0,
            y + 12.0,
            escape(&truncate(&format!("{} ({})", r.node, r.op), 44)),
            x0.min(x1),
            y + 3.0,
            (x1 - x0).abs().max(1.0),
            row_h - 6.0,
            x0.max(x1) + 4.0,
            y + 12.0
        );
    }
    out += "</svg>\n";
    out
}
