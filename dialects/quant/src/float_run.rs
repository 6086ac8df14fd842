//! How the flow runs models on samples, observing every op result. The float model:
//! calibration observes every activation, GPTQ collects its layers' inputs, bias correction
//! its layers' mean inputs, the error analysis its reference. The quantised unit: the error
//! analysis. The defaults are the reference interpreter and the simulator; a driver that can
//! compile (the CLI, with kiln's JITs, `kiln_loop::runners`) installs faster runners in
//! [`crate::QuantGraph::runner`] and [`crate::QuantGraph::int8_runner`]. A float runner
//! computes the fp32 model, so the choice moves observed ranges by fp32 rounding only; an
//! int8 runner computes what the simulator does, bit for bit. Each is deterministic.

use crate::QuantGraph;
use kiln_core::{Result, Tensor};
use kiln_graph::interp::Interpreter;
use kiln_graph::{Graph, Value};
use std::sync::Arc;

/// A model ready to run on samples: the float model, or (an [`Int8Runner`]'s) the
/// quantised unit.
pub trait ObservedRun {
    /// Runs one sample (graph-input order), calling `observe(value, tensor)` on every op
    /// result as it is produced; returns the graph's outputs.
    fn run(
        &mut self,
        sample: &[Tensor],
        observe: &mut dyn FnMut(Value, &Tensor),
    ) -> Result<Vec<Tensor>>;
}

/// A runner factory installed in a [`crate::QuantGraph`] (shared by its clones): builds an
/// [`ObservedRun`] of an `In`, a graph's float model ([`FloatRunner`]) or a quantised unit
/// ([`Int8Runner`]).
pub struct Runner<In: ?Sized>(Arc<MakeRun<In>>);

type MakeRun<In> = dyn Fn(&In) -> Result<Box<dyn ObservedRun>> + Send + Sync;

impl<In: ?Sized> Runner<In> {
    pub fn new(make: impl Fn(&In) -> Result<Box<dyn ObservedRun>> + Send + Sync + 'static) -> Self {
        Runner(Arc::new(make))
    }

    /// A runner of `model`.
    pub fn make(&self, model: &In) -> Result<Box<dyn ObservedRun>> {
        (self.0)(model)
    }
}

impl<In: ?Sized> Clone for Runner<In> {
    fn clone(&self) -> Self {
        Runner(Arc::clone(&self.0))
    }
}

impl<In: ?Sized> std::fmt::Debug for Runner<In> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Runner<{}>", std::any::type_name::<In>())
    }
}

/// How calibration, GPTQ, bias correction and the analysis' reference run the float model:
/// the reference interpreter by default.
pub type FloatRunner = Runner<Graph>;

/// Makes each type, which has `run_observed(sample, observe) -> Result<Vec<Tensor>>`, an
/// [`ObservedRun`]: the reference interpreter and the simulator here, the JIT's compiled
/// programs in kiln-loop.
#[macro_export]
macro_rules! runs_observed {
    ($($t:ty),*) => {$(
        impl $crate::float_run::ObservedRun for $t {
            fn run(
                &mut self,
                sample: &[::kiln_core::Tensor],
                observe: &mut dyn FnMut(::kiln_graph::Value, &::kiln_core::Tensor),
            ) -> ::kiln_core::Result<Vec<::kiln_core::Tensor>> {
                self.run_observed(sample, observe)
            }
        }
    )*};
}

runs_observed!(Interpreter<'_>, crate::sim::Simulator<'_>);

/// How the error analysis runs the quantised unit: the simulator by default; a driver that
/// can compile it (the CLI, with kiln's int8 JIT, equal to the simulator bit for bit)
/// installs a faster runner in [`crate::QuantGraph::int8_runner`]. Only the graph-wise
/// analysis of the unit itself uses it: the layer-wise one simulates a different unit per
/// op, which would not repay compiling each.
pub type Int8Runner = Runner<QuantGraph>;

/// `g` on `runner` when one is installed, else on the reference interpreter.
pub fn float_run<'g>(
    runner: Option<&FloatRunner>,
    g: &'g Graph,
) -> Result<Box<dyn ObservedRun + 'g>> {
    match runner {
        Some(r) => r.make(g),
        None => Ok(Box::new(Interpreter::new(g)?)),
    }
}
