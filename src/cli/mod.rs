//! The `kiln` command line. Subcommands are a stable contract later work extends: each
//! lives in its own file and reports errors through `anyhow` with the library's located
//! messages.

use clap::{Args, Parser, Subcommand};
use std::collections::HashMap;
use std::path::PathBuf;

mod bench;
// aot: begin
mod compile;
// aot: end
mod info;
mod opt;
mod profile;
mod progress;
mod quantize; // quant
mod report;
mod run;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "An MLIR-style neural-network compiler for int8 CPU inference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model and write each output as OUTDIR/<name>.npy.
    Run(run::RunArgs),
    /// Run passes over a model or text IR and print the resulting IR.
    Opt(opt::OptArgs),
    /// Print op counts, parameters, FLOPs, inputs and outputs.
    Info(info::InfoArgs),
    /// Time a model (the embedded default model when none is given).
    Bench(bench::BenchArgs),
    // quant: begin
    /// Quantise a model to int8 and report the simulated error against fp32.
    Quantize(quantize::QuantizeArgs),
    /// Every fused kernel in fp32 and int8: time, speed-up, int8 SNR; JSON and SVG.
    Profile(profile::ProfileArgs),
    // quant: end
    // aot: begin
    /// Compile a model ahead of time: an object file, a C header, optionally a shared library.
    Compile(compile::CompileArgs),
    // aot: end
}

/// Options every command that loads a model shares.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Model: .onnx, or .kir text IR (a `.kir.weights` side file beside it is loaded too).
    /// Omitted: the embedded default model (ResNet-style example).
    pub model: Option<PathBuf>,
    /// Fix a dynamic input shape: NAME=D0,D1,... (repeatable).
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    pub shapes: Vec<String>,
}

impl ModelArgs {
    pub fn shape_map(&self) -> anyhow::Result<HashMap<String, Vec<usize>>> {
        let mut m = HashMap::new();
        for s in &self.shapes {
            let (name, dims) = crate::model::parse_shape_arg(s)?;
            m.insert(name, dims);
        }
        Ok(m)
    }

    pub fn load(&self) -> anyhow::Result<kiln_graph::Graph> {
        self.load_with(&HashMap::new())
    }

    /// Loads with known input values (inputs feeding shape operands become constants).
    pub fn load_with(
        &self,
        known: &HashMap<String, kiln_core::Tensor>,
    ) -> anyhow::Result<kiln_graph::Graph> {
        Ok(crate::model::load(
            self.model.as_deref(),
            &self.shape_map()?,
            known,
        )?)
    }

    pub fn display_name(&self) -> String {
        match &self.model {
            Some(p) => p.display().to_string(),
            None => format!("{} (embedded)", crate::model::DEFAULT_MODEL_NAME),
        }
    }
}

/// Total FLOPs of a shape-inferred graph, as `kiln info` counts them.
pub fn flops(g: &kiln_graph::Graph) -> u64 {
    info::stats(g).flops
}

/// Runs a named pipeline or pass list over `g`, with the instrumentation flags.
pub fn run_pipeline(
    g: &mut kiln_graph::Graph,
    list: &str,
    options: kiln_core::PassOptions,
) -> anyhow::Result<kiln_core::PassManager<kiln_graph::Graph>> {
    // The export registry: the graph passes plus `graph-opt-nchw`, so any command can run
    // the graph a QDQ export quantises.
    let registry = crate::onnx::export::registry();
    let mut pm = kiln_core::PassManager::new(registry.parse(list)?);
    pm.options = kiln_core::PassOptions {
        verify_each: true,
        ..options
    };
    pm.run(g)?;
    Ok(pm)
}

/// Entry point used by `main`.
pub fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(a) => run::run(a),
        Command::Opt(a) => opt::run(a),
        Command::Info(a) => info::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Quantize(a) => quantize::run(a), // quant
        Command::Profile(a) => profile::run(a),
        Command::Compile(a) => compile::run(a), // aot
    }
}
