//! The graph dialect's verifier: the structural rules every pass must preserve.
//!
//! - inputs and outputs are non-empty;
//! - every operand and output refers to a live definition (no dangling values);
//! - every value has exactly one producer and the producer lists it where it says;
//! - the graph is acyclic;
//! - recorded types agree with the ops' shape rules.

use crate::graph::{Graph, ValueDef};
use crate::infer::check_shapes;
use kiln_core::{Error, ErrorKind, Result};

pub fn verify(g: &Graph) -> Result<()> {
    if g.inputs().is_empty() {
        return Err(Error::new(ErrorKind::Verify, "the graph has no inputs"));
    }
    if g.outputs().is_empty() {
        return Err(Error::new(ErrorKind::Verify, "the graph has no outputs"));
    }
    for (i, &v) in g.inputs().iter().enumerate() {
        if g.value(v).def != ValueDef::Input(i) {
            return Err(Error::new(
                ErrorKind::Verify,
                format!("graph input {i} ('{}') is misrecorded", g.value(v).name),
            ));
        }
    }
    let live = |v| match g.value(v).def {
        ValueDef::Input(_) => true,
        ValueDef::Result(n, _) => g.contains(n),
        ValueDef::Detached => false,
    };
    for n in g.node_ids() {
        let node = g.node(n);
        for (k, v) in node.inputs().iter().enumerate() {
            if let Some(v) = *v
                && !live(v)
            {
                return Err(node.locate(Error::new(
                    ErrorKind::UndefinedValue,
                    format!("operand {k} '%{}' has no live definition", g.value(v).name),
                )));
            }
        }
        for (k, &v) in node.outputs().iter().enumerate() {
            if g.value(v).def != ValueDef::Result(n, k) {
                return Err(node.locate(Error::new(
                    ErrorKind::DuplicateDefinition,
                    format!(
                        "result {k} '%{}' is recorded as defined elsewhere",
                        g.value(v).name
                    ),
                )));
            }
        }
    }
    for &v in g.outputs() {
        if !live(v) {
            return Err(Error::new(
                ErrorKind::UndefinedValue,
                format!("graph output '%{}' has no live definition", g.value(v).name),
            ));
        }
    }
    // Acyclicity comes with the topological sort; the shape check re-derives every type.
    g.topo_order()?;
    check_shapes(g)
}
