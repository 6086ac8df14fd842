//! kiln: an MLIR-style neural-network compiler for int8 CPU inference.
//!
//! This crate is the driver and public API: ONNX import ([`onnx`]), model loading for
//! every input format ([`model`]), and the command-line interface ([`cli`]). The dialects
//! live in their own crates and are re-exported here.

pub mod cli;
pub mod model;
pub mod onnx;

pub use kiln_core as core;
pub use kiln_graph as graph;
