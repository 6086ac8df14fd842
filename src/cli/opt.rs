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
    /// After the graph passes, lower and print a lower level instead of the graph: `loop`
    /// (the loop dialect), `clif` (Cranelift IR) or `asm` (the JIT's machine code). On
    /// loop-dialect text, `clif` and `asm` compile its kernels after the loop passes. Only
    /// the passes given run (none by default): add `--pipeline graph-opt` to see the
    /// program `kiln run` and `kiln bench` compile.
    #[arg(long, value_parser = ["graph", "loop", "clif", "asm"], default_value = "graph")]
    pub emit: String,
    /// With `--emit loop|clif|asm`: lower the fp32 program, or quantise (with the
    /// `--calib`/`--platform`/`--observer` options) and lower the int8 program.
    #[arg(long, value_parser = ["fp32", "int8"], default_value = "fp32")]
    pub precision: String,
    #[command(flatten)]
    pub quant: super::quantize::QuantArgs,
}

/// Whether `path` holds loop-dialect text (a `.kir` file whose first item is a kernel).
fn is_loop_text(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "kir")
        && std::fs::read_to_string(path).is_ok_and(|t| {
            t.lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with("//"))
                .is_some_and(|l| l.starts_with("kernel"))
        })
}

/// `kiln opt` on loop-dialect text: parse, run loop passes, print.
fn run_loop(path: &std::path::Path, a: &OptArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut m = kiln_loop::text::parse_module(&text)?;
    // Before any pass: with none, nothing else would check it before Cranelift does.
    kiln_loop::verify::verify_module(&m)?;
    let list = a.passes.clone().or(a.pipeline.clone()).unwrap_or_default();
    let mut pm = kiln_core::PassManager::new(kiln_loop::passes::registry().parse(&list)?);
    pm.options = PassOptions {
        print_ir_after_all: a.print_ir_after_all,
        print_ir_after: a.print_ir_after.clone(),
        time_passes: a.time_passes,
        verify_each: true,
    };
    pm.run(&mut m)?;
    eprint!("{}", pm.log);
    if a.time_passes {
        eprint!("{}", pm.timing_report());
    }
    match a.emit.as_str() {
        "clif" | "asm" => print_machine(&m.kernels, &a.emit),
        _ => {
            print!("{}", kiln_loop::text::print_module(&m));
            Ok(())
        }
    }
}

/// Compiles `kernels` and prints their Cranelift IR (`clif`) or machine code (`asm`).
fn print_machine(kernels: &[kiln_loop::ir::Kernel], what: &str) -> anyhow::Result<()> {
    let mut jit = kiln_loop::codegen::Jit::new()?;
    jit.keep_clif = what == "clif";
    jit.keep_asm = what == "asm";
    let bar = super::progress::bar(kernels.len() as u64, "compiling", "kernels");
    let added = kernels.iter().try_for_each(|k| {
        jit.add(k)?;
        bar.inc(1);
        Ok::<_, kiln_core::Error>(())
    });
    bar.finish_and_clear();
    added?;
    for text in if what == "clif" { &jit.clif } else { &jit.asm } {
        println!("{text}");
    }
    Ok(())
}

/// Lowers `g` (quantised first for int8) and prints the requested level.
fn emit(g: &kiln_graph::Graph, what: &str, a: &OptArgs) -> anyhow::Result<()> {
    let program = if a.precision == "int8" {
        kiln_loop::int8::build(&super::quantize::quantize(g.clone(), &a.quant)?)?
    } else {
        kiln_loop::program::build(g)?
    };
    if what == "loop" {
        print!("{}", kiln_loop::text::print_module(&program.module));
        return Ok(());
    }
    print_machine(&program.module.kernels, what)
}

pub fn run(a: OptArgs) -> anyhow::Result<()> {
    if let Some(path) = &a.model.model
        && is_loop_text(path)
    {
        return run_loop(path, &a);
    }
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
    if a.emit != "graph" {
        return emit(&g, &a.emit, &a);
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
