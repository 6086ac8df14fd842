//! kiln-graph: the graph dialect — ONNX-level ops on a petgraph graph, with a verifier, a
//! text format (printer and parser), shape inference, the reference interpreter and the
//! graph passes.

pub mod graph;
pub mod infer;
pub mod interp;
mod ir;
pub mod memory;
pub mod ops;
pub mod passes;
pub mod text;
pub mod verify;

pub use graph::{Graph, Node, NodeId, Use, Value, ValueData, ValueDef};
pub use ops::{InferInput, InferInputs, Op, OpDef};
