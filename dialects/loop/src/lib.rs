//! kiln's loop dialect: buffers, structured `for`/`parallel` loops, scalar and 128-bit vector
//! values. Graph ops are lowered here (`lower`), scheduled explicitly (tiling, register blocking,
//! vectorisation, unrolling, epilogue fusion), and emitted through Cranelift (`codegen`).
//!
//! Architecture invariant: this crate knows nothing of ONNX; it reads the graph dialect only in
//! `lower`.

pub mod builder;
pub mod codegen;
pub mod exec;
pub mod int8;
pub mod ir;
pub mod lower;
pub mod peak;
pub mod pool;
pub mod program;
pub mod runners;

pub use builder::KernelBuilder;
pub use ir::*;

/// Lowers a shape-inferred graph and JIT-compiles it for `threads` threads.
pub fn compile(g: &kiln_graph::Graph, threads: usize) -> kiln_core::Result<exec::Compiled> {
    exec::Compiled::new(program::build(g)?, threads)
}

/// Lowers a quantised unit to int8 kernels and JIT-compiles it for `threads` threads.
pub fn compile_int8(
    q: &kiln_quant::QuantGraph,
    threads: usize,
) -> kiln_core::Result<exec::Compiled> {
    exec::Compiled::new(int8::build(q)?, threads)
}

// looptext: begin — text format, verifier, loop-level passes, reference evaluator
pub mod eval;
pub mod passes;
pub mod text;
pub mod verify;
// looptext: end
