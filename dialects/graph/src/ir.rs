//! Makes the graph dialect a unit the generic pass manager can drive.

use crate::Graph;
use kiln_core::{Ir, Result};

impl Ir for Graph {
    fn verify(&self) -> Result<()> {
        crate::verify::verify(self)
    }
    fn print(&self) -> String {
        crate::text::print(self)
    }
}
