//! `quant.bias-correct`: empirical bias correction. Each conv, gemm and matmul bias
//! absorbs the mean of its layer's output error (before the activation) over the
//! calibration inputs, layer after layer on the corrected quantised activations. Biases
//! that were baked stay on their grid. See [`crate::bias_correct`].

use crate::QuantGraph;
use kiln_core::{Pass, Result};

pub struct BiasCorrect;

impl Pass<QuantGraph> for BiasCorrect {
    fn name(&self) -> &'static str {
        "quant.bias-correct"
    }

    fn run(&mut self, q: &mut QuantGraph) -> Result<bool> {
        crate::bias_correct::run(q)
    }
}
