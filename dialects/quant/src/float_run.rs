//! How the flow runs the float model on calibration samples: calibration observes every
//! activation, GPTQ collects its layers' inputs. The reference interpreter is the default;
//! a driver that can compile the graph (the CLI, with kiln's fp32 JIT) installs a faster
//! runner in [`crate::QuantGraph::runner`]. Any runner computes the fp32 model, so the
//! choice moves observed ranges by fp32 rounding only, and each is deterministic.

use kiln_core::{Result, Tensor};
use kiln_graph::interp::Interpreter;
use kiln_graph::{Graph, Value};
use std::sync::Arc;

/// The float model, ready to run on samples.
pub trait FloatRun {
    /// Runs one sample (graph-input order), calling `observe(value, tensor)` on every op
    /// result as it is produced.
    fn run(&mut self, sample: &[Tensor], observe: &mut dyn FnMut(Value, &Tensor)) -> Result<()>;
}

/// Builds a [`FloatRun`] for a graph.
pub type MakeRun = dyn Fn(&Graph) -> Result<Box<dyn FloatRun>> + Send + Sync;

/// A runner factory installed in a [`crate::QuantGraph`] (shared by its clones).
#[derive(Clone)]
pub struct FloatRunner(pub Arc<MakeRun>);

impl std::fmt::Debug for FloatRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FloatRunner")
    }
}

struct Interpreted<'g>(Interpreter<'g>);

impl FloatRun for Interpreted<'_> {
    fn run(&mut self, sample: &[Tensor], observe: &mut dyn FnMut(Value, &Tensor)) -> Result<()> {
        self.0.run_observed(sample, observe).map(|_| ())
    }
}

/// `g` on `runner` when one is installed, else on the reference interpreter.
pub fn float_run<'g>(runner: Option<&FloatRunner>, g: &'g Graph) -> Result<Box<dyn FloatRun + 'g>> {
    match runner {
        Some(r) => (r.0)(g),
        None => Ok(Box::new(Interpreted(Interpreter::new(g)?))),
    }
}
