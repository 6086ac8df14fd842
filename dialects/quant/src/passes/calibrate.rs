//! `quant.calibrate`: runtime calibration. Runs the unit's calibration samples (seeded
//! random ones when it has none) through the reference interpreter, feeds every active
//! activation TQC's observer, and gives each group root the parameters of the widest range
//! its active members saw. INITIAL TQCs become ACTIVATED. See [`crate::calib`].

use crate::QuantGraph;
use kiln_core::{Pass, Result};

pub struct Calibrate;

impl Pass<QuantGraph> for Calibrate {
    fn name(&self) -> &'static str {
        "quant.calibrate"
    }

    fn run(&mut self, q: &mut QuantGraph) -> Result<bool> {
        crate::calib::calibrate(q, &mut |_, _| {})
    }
}
