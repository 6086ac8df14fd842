//! Graph-dialect passes, one per file, each registered under its `graph.` name.

use crate::Graph;
use kiln_core::PassRegistry;

pub mod dce;
pub mod fold_constants;
pub mod infer_shapes;
// fusion-pass modules
// pattern-pass modules

/// Every graph pass and pipeline, by name.
pub fn registry() -> PassRegistry<Graph> {
    let mut r = PassRegistry::default();
    r.register(
        "graph.infer-shapes",
        "infer every value's static type",
        || Box::new(infer_shapes::InferShapes),
    );
    r.register("graph.dce", "remove ops whose results nobody reads", || {
        Box::new(dce::Dce)
    });
    r.register(
        "graph.fold-constants",
        "evaluate ops whose operands are all constant",
        || Box::new(fold_constants::FoldConstants),
    );
    // fusion-pass registrations
    // pattern-pass registrations
    r.register_pipeline("none", "no passes", "");
    r.register_pipeline(
        "cleanup",
        "fold constant sub-graphs and remove dead ops",
        "graph.fold-constants,graph.dce",
    );
    r
}
