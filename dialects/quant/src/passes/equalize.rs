//! `quant.equalize`: activation equalisation between a conv and the depthwise conv that
//! reads it, with per-channel scales from the calibration data, so a per-tensor activation
//! grid serves every channel as a per-channel one would. See [`crate::equalize`].

use crate::QuantGraph;
use kiln_core::{Pass, Result};

pub struct Equalize;

impl Pass<QuantGraph> for Equalize {
    fn name(&self) -> &'static str {
        "quant.equalize"
    }

    fn run(&mut self, q: &mut QuantGraph) -> Result<bool> {
        crate::equalize::run(q)
    }
}
