//! Progress on stderr for the slow parts of a command: calibration, JIT and AOT compilation,
//! timed runs.
//!
//! Every bar draws to stderr through indicatif, which hides itself when stderr is not a
//! terminal (or `TERM` is unset or `dumb`), so pipes, files, tests and `--json` output never
//! see escape codes; stdout is never written to. Bars are cleared when their work ends, and
//! callers finish them before printing their own lines, so a report reads the same with or
//! without them.
//!
//! JIT compilation reports each kernel (`Compiled::with_progress`), so it draws a bar; AOT
//! compilation (`codegen::object::compile`) translates all kernels in one call and shows a
//! spinner with the kernel count and the elapsed time.

use indicatif::{ProgressBar, ProgressStyle};
use kiln_loop::exec::Compiled;
use kiln_loop::program::Program;
use std::time::Duration;

/// A bar of `len` steps: `LABEL [=====     ] pos/len UNIT`.
pub fn bar(len: u64, label: &str, unit: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(&format!("{label} {{bar:30}} {{pos}}/{{len}} {unit}"))
            .expect("valid template"),
    );
    b
}

/// A spinner for work without steps, ticking on its own and showing the elapsed time.
pub fn spinner(message: String) -> ProgressBar {
    let s = ProgressBar::new_spinner();
    s.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"),
    );
    s.set_message(message);
    s.enable_steady_tick(Duration::from_millis(100));
    s
}

/// Runs `f` with a spinner saying `message`; the spinner is cleared whatever `f` returns.
pub fn spin<T>(message: String, f: impl FnOnce() -> T) -> T {
    let s = spinner(message);
    let out = f();
    s.finish_and_clear();
    out
}

/// JIT-compiles `program` for `threads` threads with a bar over its kernels.
pub fn jit(program: Program, threads: usize, what: &str) -> anyhow::Result<Compiled> {
    let n = program.kernels().len();
    let b = bar(n as u64, &format!("JIT-compiling {what}"), "kernels");
    let c = Compiled::with_progress(
        program,
        threads,
        kiln_loop::codegen::jit::HostIsa::detect(),
        &mut |done, _| b.set_position(done as u64),
    );
    b.finish_and_clear();
    Ok(c?)
}

/// `kiln_loop::compile` with progress.
pub fn compile(g: &kiln_graph::Graph, threads: usize) -> anyhow::Result<Compiled> {
    let p = spin("lowering to loops".into(), || kiln_loop::program::build(g))?;
    jit(p, threads, "fp32")
}

/// `kiln_loop::compile_int8` with progress.
pub fn compile_int8(q: &kiln_quant::QuantGraph, threads: usize) -> anyhow::Result<Compiled> {
    let p = spin("lowering to int8 loops".into(), || {
        kiln_loop::int8::build(q)
    })?;
    jit(p, threads, "int8")
}

/// Runs `f` `runs` times with a bar labelled `label`, stopping at the first error.
pub fn timed_runs(
    runs: usize,
    label: &str,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let b = bar(runs as u64, label, "runs");
    let res = (0..runs).try_for_each(|_| {
        f()?;
        b.inc(1);
        Ok(())
    });
    b.finish_and_clear();
    res
}
