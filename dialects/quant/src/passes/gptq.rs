//! `quant.gptq`: error-compensating weight rounding. Each conv, gemm and matmul weight is
//! rounded one input feature at a time on its TQC's grid, the features not yet rounded
//! absorbing each rounding's effect on the layer's output over the calibration inputs
//! (GPTQ). Scales, offsets and states are untouched; the weights become on-grid floats
//! that baking keeps as they are. See [`crate::gptq`].

use crate::QuantGraph;
use kiln_core::{Pass, Result};

pub struct Gptq;

impl Pass<QuantGraph> for Gptq {
    fn name(&self) -> &'static str {
        "quant.gptq"
    }

    fn run(&mut self, q: &mut QuantGraph) -> Result<bool> {
        crate::gptq::run(q)
    }
}
