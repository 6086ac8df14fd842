//! kiln-quant's flow on kiln's own JIT. The quantisation passes and the error analysis run
//! models through runners (`kiln_quant::float_run`) whose defaults are the reference
//! interpreter and the simulator: exact, and many times slower than compiled code on a
//! large model. These compile instead, on every core, and compute the same results: the
//! fp32 program up to the order its kernels sum in, the int8 program bit for bit.

use crate::exec::Compiled;
use crate::program::{self, Program};
use kiln_core::Result;
use kiln_graph::Graph;
use kiln_quant::QuantGraph;
use kiln_quant::float_run::{FloatRunner, Int8Runner, ObservedRun};

kiln_quant::runs_observed!(Compiled);

fn jitted(p: Program) -> Result<Box<dyn ObservedRun>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Box::new(Compiled::new(p, threads)?))
}

/// Calibration, GPTQ and bias correction run the float model on the fp32 JIT.
pub fn float_runner() -> FloatRunner {
    FloatRunner::new(|g: &Graph| jitted(program::build(g)?))
}

/// The error analysis runs the quantised unit on the int8 JIT, which observes every result
/// as the simulator holds it (coded values decoded): on PP-OCRv4 det at 640×640 a sample
/// takes 6.6 s simulated.
pub fn int8_runner() -> Int8Runner {
    Int8Runner::new(|q: &QuantGraph| jitted(crate::int8::build(q)?))
}
