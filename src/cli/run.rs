//! `kiln run`: execute a model on given or seeded inputs.

use super::ModelArgs;
use crate::model;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

// quant: begin
/// Element precision of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    Fp32,
    Int8,
}

/// What executes the model. New engines are new variants (and a match arm in `run`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// JIT-compiled kernels (kiln-loop + Cranelift); the default for fp32 and int8.
    Jit,
    /// The reference interpreter (fp32).
    Interp,
    /// The int8 simulator (kiln-quant): the specification the int8 JIT equals bit for bit.
    Sim,
}
// quant: end

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
    // quant: begin
    /// Precision: fp32, or int8 (quantised with --calib/--platform/--observer).
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    /// Engine (default: jit).
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    /// Threads for the JIT's parallel loops.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[command(flatten)]
    pub quant: super::quantize::QuantArgs,
    // quant: end
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let given = model::read_inputs(&a.inputs)?;
    // qdq: begin (QDQ models load as their float graph plus their parameters)
    let super::quantize::Loaded { graph: mut g, qdq } = super::quantize::load(&a.model, &given)?;
    // qdq: end
    super::run_pipeline(&mut g, &a.pipeline, Default::default())?;
    let inputs = model::inputs_for(&g, &given)?;
    // quant: begin
    let engine = a.engine.unwrap_or(match a.precision {
        Precision::Fp32 => Engine::Jit,
        Precision::Int8 => Engine::Jit,
    });
    let (outputs, elapsed, engine_name) = match (a.precision, engine) {
        (Precision::Fp32, Engine::Jit) => {
            let mut c = super::progress::compile(&g, a.threads)?;
            let start = std::time::Instant::now();
            let outputs = c.run(&inputs)?;
            (outputs, start.elapsed(), "jit")
        }
        (Precision::Fp32, Engine::Interp) => {
            let start = std::time::Instant::now();
            let outputs = kiln_graph::interp::run(&g, &inputs)?;
            (outputs, start.elapsed(), "interpreter")
        }
        (Precision::Int8, Engine::Jit) => {
            let q = super::quantize::quantize_loaded(g.clone(), qdq.as_ref(), &a.quant)?; // qdq
            let mut c = super::progress::compile_int8(&q, a.threads)?;
            let start = std::time::Instant::now();
            let outputs = c.run(&inputs)?;
            if !c.program.host_ops.is_empty() {
                eprintln!(
                    "note: {} op(s) ran the simulator's code (no int8 kernel yet): {}",
                    c.program.host_ops.len(),
                    c.program.host_ops.join(", ")
                );
            }
            (outputs, start.elapsed(), "int8 jit")
        }
        (Precision::Int8, Engine::Sim) => {
            let q = super::quantize::quantize_loaded(g.clone(), qdq.as_ref(), &a.quant)?; // qdq
            let start = std::time::Instant::now();
            let outputs = kiln_quant::sim::Simulator::new(&q)?.run(&inputs)?;
            (outputs, start.elapsed(), "int8 simulator")
        }
        (p, e) => anyhow::bail!(
            "--precision {} cannot run on --engine {}: the interpreter runs fp32 only, the simulator int8 only",
            format!("{p:?}").to_lowercase(),
            format!("{e:?}").to_lowercase()
        ),
    };
    // quant: end
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    println!(
        "{}: {} ops, ran in {:.2} ms ({engine_name})",
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
