//! `graph.dce`: removes ops none of whose results is read.
//!
//! Walks the schedule backwards so a chain of dead ops goes in one sweep.

use crate::Graph;
use kiln_core::{Pass, Result};

pub struct Dce;

impl Pass<Graph> for Dce {
    fn name(&self) -> &'static str {
        "graph.dce"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for n in g.topo_order()?.into_iter().rev() {
            if g.node(n).outputs().iter().all(|&v| g.use_count(v) == 0) {
                g.remove_node(n);
                changed = true;
            }
        }
        Ok(changed)
    }
}
