//! Cranelift code generation for loop-dialect kernels.
//!
//! `clif` translates one kernel; `jit` owns a `JITModule` and hands out callable kernels. The
//! translation is generic over `cranelift_module::Module` so an ahead-of-time object writer can
//! share it.

pub mod clif;
pub mod helpers;
pub mod jit;
// aot: begin (ahead-of-time object files + C header)
pub mod object;
// aot: end

pub use jit::{Jit, JitKernel, KernelFn};
// dot: begin
pub use jit::HostIsa;
// dot: end
