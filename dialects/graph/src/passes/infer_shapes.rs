//! `graph.infer-shapes`: (re)computes every value's type from the ops' shape rules.

use crate::{Graph, infer};
use kiln_core::{Pass, Result};

pub struct InferShapes;

impl Pass<Graph> for InferShapes {
    fn name(&self) -> &'static str {
        "graph.infer-shapes"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        infer::infer_shapes(g)
    }
}
