//! `kiln bench`: latency of a model. Until the code generators land, the engine is the
//! reference interpreter; the report shape (compile time, median latency, throughput) is
//! the one later engines fill in.

use super::ModelArgs;
use crate::model;
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
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut g = a.model.load()?;
    super::run_pipeline(&mut g, "graph-opt", Default::default())?;
    let interp = kiln_graph::interp::Interpreter::new(&g)?;
    let prepare_ms = t0.elapsed().as_secs_f64() * 1e3;
    let inputs = model::inputs_for(&g, &Default::default())?;
    let outputs = interp.run(&inputs)?; // warm-up, and the outputs to summarise
    let mut times = Vec::with_capacity(a.runs.max(1));
    for _ in 0..a.runs.max(1) {
        let t = Instant::now();
        interp.run(&inputs)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let flops = super::info::stats(&g).flops;
    let gops = flops as f64 / (median * 1e-3) / 1e9;
    println!("model      {}", a.model.display_name());
    println!("engine     interpreter (fp32 reference)");
    println!("load       {prepare_ms:.1} ms (import, shape inference, graph-opt)");
    println!(
        "latency    {median:.3} ms median of {} runs (min {:.3}, max {:.3})",
        times.len(),
        times[0],
        times[times.len() - 1]
    );
    println!(
        "throughput {gops:.2} GOP/s ({:.1} MFLOP per run)",
        flops as f64 / 1e6
    );
    for (&v, t) in g.outputs().iter().zip(&outputs) {
        println!("output     {}: {}", g.value(v).name, model::summary(t));
    }
    if let Some(path) = &a.json {
        let j = json!({
            "model": a.model.display_name(),
            "results": [{"precision": "fp32", "engine": "interp", "threads": 1, "median_ms": median,
                         "gops": gops, "compile_ms": prepare_ms}],
        });
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&j)?)?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(())
}
