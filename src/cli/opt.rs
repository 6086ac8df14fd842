//! `kiln opt`: run passes over ONNX or text IR and print the result — the researcher's entry
//! point for running any pass alone.

use super::ModelArgs;
use crate::model::weights_path;
use anyhow::Context;
use clap::Args;
use kiln_core::PassOptions;
use std::path::PathBuf;

#[derive(Args)]
pub struct OptArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated passes to run, e.g. graph.fold-constants,graph.dce.
    #[arg(long, conflicts_with = "pipeline")]
    pub passes: Option<String>,
    /// A named pipeline (see --list).
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Print the IR after every pass.
    #[arg(long)]
    pub print_ir_after_all: bool,
    /// Print the IR after the named pass (repeatable).
    #[arg(long, value_name = "PASS")]
    pub print_ir_after: Vec<String>,
    /// Report the time each pass took.
    #[arg(long)]
    pub time_passes: bool,
    /// Write the IR to FILE (and large constants to FILE.weights) instead of stdout.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// List the registered passes and pipelines and exit.
    #[arg(long)]
    pub list: bool,
}

pub fn run(a: OptArgs) -> anyhow::Result<()> {
    if a.list {
        let r = kiln_graph::passes::registry();
        println!("passes:");
        for (name, summary) in r.passes() {
            println!("  {name:<24} {summary}");
        }
        println!("pipelines:");
        for p in r.pipelines() {
            let repeat = if p.fixed_point {
                ", to a fixed point"
            } else {
                ""
            };
            println!("  {:<24} {} [{}{repeat}]", p.name, p.summary, p.list);
        }
        return Ok(());
    }
    let mut g = a.model.load()?;
    let list = a.passes.clone().or(a.pipeline.clone()).unwrap_or_default();
    let options = PassOptions {
        print_ir_after_all: a.print_ir_after_all,
        print_ir_after: a.print_ir_after.clone(),
        time_passes: a.time_passes,
        verify_each: true,
    };
    let pm = super::run_pipeline(&mut g, &list, options)?;
    eprint!("{}", pm.log);
    if a.time_passes {
        eprint!("{}", pm.timing_report());
    }
    match &a.out {
        None => print!("{}", kiln_graph::text::print(&g)),
        Some(path) => {
            let (text, weights) = kiln_graph::text::print_with_weights(&g);
            if !weights.is_empty() {
                kiln_graph::text::write_weights(weights_path(path), &weights)?;
            }
            let tmp = path.with_extension("kir.tmp");
            std::fs::write(&tmp, text)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}
