//! `kiln bench`: compile time, latency, throughput and efficiency of a model.
//!
//! Efficiency is reported against the 128-bit fp32 FMA peak measured on the running machine
//! (Cranelift emits no wider vectors), and — with `--ort` — as a ratio against onnxruntime run
//! on the same inputs in the same process tree, so numbers from different machines are never
//! compared by accident.

use super::{ModelArgs, progress};
use crate::model;
use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Thread counts to measure, comma-separated (e.g. 1,2).
    #[arg(long, default_value = "1", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Precisions to measure, comma-separated: fp32, int8 (JIT engine only).
    #[arg(long, default_value = "fp32,int8", value_delimiter = ',')]
    pub precision: Vec<String>,
    #[command(flatten)]
    pub quant: super::quantize::QuantArgs,
    /// Executor: the JIT-compiled kernels, or the reference interpreter.
    #[arg(long, default_value = "jit", value_parser = ["jit", "interp"])]
    pub engine: String,
    /// Also time onnxruntime fp32 on the same inputs (needs python3 with onnxruntime; uses
    /// .venv/bin/python when present).
    #[arg(long)]
    pub ort: bool,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Print the slowest kernels (JIT engine, first thread count).
    #[arg(long)]
    pub profile: bool,
    /// Compare with a saved `--json` report: each (precision, threads) median against the
    /// baseline's, flagging slow-downs beyond `--tolerance`; exits non-zero if any.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Allowed slow-down against `--baseline`, in percent (VM timing noise reaches ~50 %).
    #[arg(long, default_value_t = 25.0)]
    pub tolerance: f64,
}

fn median(mut t: Vec<f64>) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    for p in &a.precision {
        if p != "fp32" && p != "int8" {
            bail!("--precision {p}: expected fp32 or int8");
        }
        if p == "int8" && a.engine != "jit" {
            bail!("--precision int8 runs on the JIT engine only (the interpreter is fp32)");
        }
    }
    let t0 = Instant::now();
    let mut g = a.model.load()?;
    super::run_pipeline(&mut g, "graph-opt", Default::default())?;
    let prepare_ms = t0.elapsed().as_secs_f64() * 1e3;
    let inputs = model::inputs_for(&g, &Default::default())?;
    let flops = super::info::stats(&g).flops;
    let peak = kiln_loop::peak::fp32_peak_gflops()?;
    let int8 = a.precision.iter().any(|p| p == "int8");
    let peak8 = if int8 {
        kiln_loop::peak::int8_peak_gops()?
    } else {
        f64::NAN
    };
    println!("model      {}", a.model.display_name());
    println!("machine    128-bit fp32 FMA peak {peak:.1} GFLOP/s per core (measured now)");
    if int8 {
        println!(
            "machine    128-bit int8 dot-product peak {peak8:.1} GOP/s per core (measured now, {})",
            if kiln_loop::codegen::HostIsa::detect().avx_vnni {
                "vpdpbusd"
            } else {
                "no VNNI: pmaddwd"
            }
        );
    }
    println!("load       {prepare_ms:.1} ms (import, shape inference, graph-opt)");
    println!("work       {:.1} MFLOP per run", flops as f64 / 1e6);
    let quantised = if int8 {
        let t = Instant::now();
        let q = super::quantize::quantize(g.clone(), &a.quant)?;
        println!(
            "quantise   {:.1} ms (calibration {}, platform {})",
            t.elapsed().as_secs_f64() * 1e3,
            a.quant.calib.join(","),
            a.quant.platform
        );
        Some(q)
    } else {
        None
    };
    let mut results = Vec::new();
    let mut outputs: Option<Vec<kiln_core::Tensor>> = None;
    let mut fp32_ms = std::collections::HashMap::new();
    for precision in &a.precision {
        for &threads in &a.threads {
            let label = format!("{precision} {threads:>2}T");
            let (compile_ms, times, outs, reference_ops) = if a.engine == "jit" {
                let t = Instant::now();
                let mut c = match (precision.as_str(), &quantised) {
                    ("int8", Some(q)) => progress::compile_int8(q, threads)?,
                    _ => progress::compile(&g, threads)?,
                };
                let compile_ms = t.elapsed().as_secs_f64() * 1e3;
                let outs = c.run(&inputs)?; // warm-up
                let mut times = Vec::new();
                progress::timed_runs(a.runs.max(1), &label, || {
                    let t = Instant::now();
                    c.run(&inputs)?;
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                    Ok(())
                })?;
                if a.profile && threads == a.threads[0] {
                    profile(&mut c, &inputs, a.runs.max(1))?;
                }
                let fallback: Vec<String> = c
                    .program
                    .reference_ops
                    .iter()
                    .chain(&c.program.host_ops)
                    .cloned()
                    .collect();
                (compile_ms, times, outs, fallback)
            } else {
                let interp = kiln_graph::interp::Interpreter::new(&g)?;
                let outs = interp.run(&inputs)?;
                let mut times = Vec::new();
                progress::timed_runs(a.runs.max(1), &label, || {
                    let t = Instant::now();
                    interp.run(&inputs)?;
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                    Ok(())
                })?;
                (0.0, times, outs, Vec::new())
            };
            let med = median(times.clone());
            let gops = flops as f64 / (med * 1e-3) / 1e9;
            let pk = if precision == "int8" { peak8 } else { peak };
            let frac = gops / (pk * threads as f64);
            if precision == "fp32" {
                fp32_ms.insert(threads, med);
            }
            let mut extra = String::new();
            let mut accuracy = serde_json::Value::Null;
            if precision == "int8" {
                if let Some(f) = fp32_ms.get(&threads) {
                    extra += &format!("  {:.2}× fp32", f / med);
                }
                if let Some(reference) = &outputs {
                    let mut e = kiln_quant::analysis::ErrStats::default();
                    for (r, t) in reference.iter().zip(&outs) {
                        e.add(r, t);
                    }
                    extra += &format!("  SNR {:.1} dB vs fp32", e.snr_db());
                    accuracy = json!({"snr_db": e.snr_db(), "cosine": e.cosine()});
                }
            }
            if !reference_ops.is_empty() {
                // Named, so that a model that lost a kernel says which op to look at.
                let shown: Vec<&str> = reference_ops.iter().take(4).map(String::as_str).collect();
                let more = reference_ops.len() - shown.len();
                extra += &format!(
                    "  ({} ops run by the interpreter or the simulator, not kernels: {}{})",
                    reference_ops.len(),
                    shown.join(", "),
                    if more > 0 {
                        format!(", +{more} more")
                    } else {
                        String::new()
                    }
                );
            }
            println!(
                "{precision} {threads:>2}T  latency {med:8.3} ms (median of {}, {:.3}..{:.3})  {gops:6.2} G{}/s  {:5.1} % of peak  compile {compile_ms:.1} ms{extra}",
                times.len(),
                times.iter().copied().fold(f64::MAX, f64::min),
                times.iter().copied().fold(0.0, f64::max),
                if precision == "int8" { "OP" } else { "FLOP" },
                frac * 100.0,
            );
            results.push(json!({
                "precision": precision, "engine": a.engine, "threads": threads, "median_ms": med,
                "gops": gops, "peak_fraction": frac, "compile_ms": compile_ms,
                "reference_ops": reference_ops.len(), "accuracy": accuracy,
            }));
            if precision == "fp32" {
                outputs.get_or_insert(outs);
            }
        }
    }
    let mut ort = serde_json::Value::Null;
    if a.ort {
        let path = a
            .model
            .model
            .as_ref()
            .context("--ort needs a model file (the embedded model has none on disk)")?;
        let t = a.threads.first().copied().unwrap_or(1);
        let r = ort_fp32(path, &a.model.shapes, t, a.runs)?;
        let ms = r["median_ms"].as_f64().unwrap_or(f64::NAN);
        for r in &results {
            let ours = r["median_ms"].as_f64().unwrap_or(f64::NAN);
            println!(
                "onnxruntime fp32 {t}T {ms:.3} ms median: kiln {} {}T takes {:.2}× ORT's time",
                r["precision"].as_str().unwrap_or("?"),
                r["threads"],
                ours / ms
            );
        }
        ort = r;
    }
    if let Some(outs) = &outputs {
        for (&v, t) in g.outputs().iter().zip(outs) {
            println!("output     {}: {}", g.value(v).name, model::summary(t));
        }
    }
    let regressions = match &a.baseline {
        Some(path) => compare(path, &results, a.tolerance)?,
        None => 0,
    };
    if let Some(path) = &a.json {
        let j = json!({
            "model": a.model.display_name(),
            "machine_peak": {
                "fp32_gflops_per_core": peak,
                "int8_gops_per_core": if int8 { json!(peak8) } else { serde_json::Value::Null },
                "vector_bits": 128,
            },
            "flops": flops,
            "results": results,
            "onnxruntime": ort,
        });
        super::report::write_atomic(path, serde_json::to_string_pretty(&j)?.as_bytes())?;
    }
    if regressions > 0 {
        bail!(
            "{regressions} result(s) slower than the baseline by more than {} %",
            a.tolerance
        );
    }
    Ok(())
}

/// Prints each result against the baseline report's entry of the same precision and thread
/// count; returns how many are slower by more than `tolerance` percent.
fn compare(
    path: &std::path::Path,
    results: &[serde_json::Value],
    tolerance: f64,
) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read baseline {}", path.display()))?;
    let base: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "baseline {} is not a kiln bench JSON report",
            path.display()
        )
    })?;
    let Some(entries) = base["results"].as_array() else {
        bail!("baseline {} has no \"results\" list", path.display());
    };
    let mut slower = 0;
    for r in results {
        let key = (r["precision"].as_str(), r["threads"].as_u64());
        let Some(b) = entries
            .iter()
            .find(|b| (b["precision"].as_str(), b["threads"].as_u64()) == key)
        else {
            println!(
                "baseline   {} {}T: not in the baseline",
                key.0.unwrap_or("?"),
                key.1.unwrap_or(0)
            );
            continue;
        };
        let (now, then) = (
            r["median_ms"].as_f64().unwrap_or(f64::NAN),
            b["median_ms"].as_f64().unwrap_or(f64::NAN),
        );
        let change = (now / then - 1.0) * 100.0;
        let flag = change > tolerance;
        slower += usize::from(flag);
        println!(
            "baseline   {} {}T: {then:.3} ms → {now:.3} ms ({change:+.1} %){}",
            key.0.unwrap_or("?"),
            key.1.unwrap_or(0),
            if flag { "  REGRESSION" } else { "" }
        );
    }
    Ok(slower)
}

/// Per-step wall time, slowest first.
fn profile(
    c: &mut kiln_loop::exec::Compiled,
    inputs: &[kiln_core::Tensor],
    runs: usize,
) -> anyhow::Result<()> {
    let mut times = Vec::new();
    progress::timed_runs(runs, "profiling", || {
        c.run_timed(inputs, Some(&mut times))?;
        Ok(())
    })?;
    let mut rows: Vec<(usize, f64)> = times
        .iter()
        .enumerate()
        .map(|(i, t)| (i, t.as_secs_f64() * 1e3 / runs as f64))
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("{:>9}  {:>7}  {:<28} step", "ms", "GFLOP/s", "op");
    for (i, ms) in rows.iter().take(15) {
        let info = &c.program.info[*i];
        let kind = match &c.program.steps[*i] {
            kiln_loop::program::Step::Kernel { kernel, .. } => {
                c.program.module.kernels[*kernel].name.clone()
            }
            kiln_loop::program::Step::Reference { .. } => "reference".to_string(),
            kiln_loop::program::Step::Host { .. } => "simulator".to_string(),
        };
        println!(
            "{ms:9.4}  {:7.2}  {:<28} {} ({kind})",
            info.flops as f64 / (ms * 1e-3) / 1e9,
            info.op,
            info.node
        );
    }
    // The same time by kind of kernel: `conv_3_im2col` is an im2col, `sigmoid_0` a sigmoid.
    let mut kinds: Vec<(String, f64, usize)> = Vec::new();
    for (i, ms) in &rows {
        let kind = match &c.program.steps[*i] {
            kiln_loop::program::Step::Kernel { kernel, .. } => {
                kernel_kind(&c.program.module.kernels[*kernel].name)
            }
            kiln_loop::program::Step::Reference { .. } => "reference".to_string(),
            kiln_loop::program::Step::Host { .. } => "simulator".to_string(),
        };
        match kinds.iter_mut().find(|k| k.0 == kind) {
            Some(k) => (k.1, k.2) = (k.1 + ms, k.2 + 1),
            None => kinds.push((kind, *ms, 1)),
        }
    }
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = rows.iter().map(|r| r.1).sum();
    let top: Vec<String> = kinds
        .iter()
        .take(8)
        .map(|(k, ms, n)| format!("{k} {ms:.2} ms ({:.0} %, {n})", 100.0 * ms / total))
        .collect();
    println!("by kind    {}", top.join(", "));
    Ok(())
}

/// What a kernel does, from its name (`<op>_<node>[_<kind>]`): the part after the node
/// number, or the op when there is none.
fn kernel_kind(name: &str) -> String {
    let parts: Vec<&str> = name.split('_').collect();
    match parts
        .iter()
        .position(|p| p.chars().all(|c| c.is_ascii_digit()))
    {
        Some(i) if i + 1 < parts.len() => parts[i + 1..].join("_"),
        Some(i) => parts[..i].join("_"),
        None => name.to_string(),
    }
}

/// onnxruntime's fp32 median latency via `scripts/ort_time.py`.
fn ort_fp32(
    model: &std::path::Path,
    shapes: &[String],
    threads: usize,
    runs: usize,
) -> anyhow::Result<serde_json::Value> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join(".venv/bin/python");
    let py = if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    };
    let mut cmd = std::process::Command::new(py);
    cmd.arg(root.join("scripts/ort_time.py"))
        .arg(model)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--runs")
        .arg(runs.to_string());
    for s in shapes {
        cmd.arg("--shape").arg(s);
    }
    let out = cmd.output().context("cannot start python for --ort")?;
    if !out.status.success() {
        bail!(
            "onnxruntime timing failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}
