//! `kiln run`: execute a model on given or seeded inputs.

use super::ModelArgs;
use crate::model;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input data: NAME=FILE.npy (repeatable). Inputs not given are seeded uniform [0,1).
    #[arg(long = "input", value_name = "NAME=FILE")]
    pub inputs: Vec<String>,
    /// Write each output to OUTDIR/<name>.npy (`/` and `:` in names become `_`).
    #[arg(short = 'o', long = "out", value_name = "OUTDIR")]
    pub out: Option<PathBuf>,
    /// Passes to run before executing (a pipeline name or comma-separated pass list;
    /// `none` runs the model as imported).
    #[arg(long, default_value = "graph-opt")]
    pub pipeline: String,
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let given = model::read_inputs(&a.inputs)?;
    let mut g = a.model.load_with(&given)?;
    super::run_pipeline(&mut g, &a.pipeline, Default::default())?;
    let inputs = model::inputs_for(&g, &given)?;
    let start = std::time::Instant::now();
    let outputs = kiln_graph::interp::run(&g, &inputs)?;
    let elapsed = start.elapsed();
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    println!(
        "{}: {} ops, ran in {:.2} ms (interpreter)",
        a.model.display_name(),
        g.node_count(),
        elapsed.as_secs_f64() * 1e3
    );
    for (&v, t) in g.outputs().iter().zip(&outputs) {
        let name = &g.value(v).name;
        println!("  {name}: {}", model::summary(t));
        if let Some(dir) = &a.out {
            let path = dir.join(format!("{}.npy", model::file_stem(name)));
            model::write_npy(&path, t)?;
            println!("    -> {}", path.display());
        }
    }
    Ok(())
}
