//! Running a compiled program: one arena, kernels called in schedule order, parallel loops split
//! over threads.
//!
//! A compiled model owns a small pool of worker threads (`threads - 1` of them; the calling
//! thread takes the first chunk), see [`crate::pool`].

use crate::codegen::jit::HostIsa;
use crate::codegen::{Jit, JitKernel};
use crate::pool::{Pool, Ptrs, call};
use crate::program::{Loc, Program, Step, contiguous_bytes, tensor_bytes, tensor_from_bytes};
use kiln_core::{Result, Tensor, TensorType, bail, ensure};
use std::time::{Duration, Instant};

/// Steps with less work than this (a few microseconds) run on the calling thread only:
/// below it, publishing a job to the spinning workers and waiting for them costs more than
/// it saves.
const PARALLEL_MIN_FLOPS: u64 = 100_000;

/// A callback handed each node result of an observed run.
pub type Observe<'a> = dyn FnMut(kiln_graph::Value, &Tensor) + 'a;

/// A program with its machine code.
pub struct Compiled {
    pub program: Program,
    kernels: Vec<JitKernel>,
    /// Owns the executable memory the kernels point into.
    _jit: Jit,
    arena: Vec<u128>,
    /// Aligned copies of inputs that cannot be read in place, kept between runs so that
    /// large inputs do not pay for a fresh allocation (and its page faults) every run.
    staged: Vec<Vec<u128>>,
    pub threads: usize,
    pool: Pool,
    pub compile_time: Duration,
}

impl Compiled {
    /// JIT-compiles every kernel of `program`.
    pub fn new(program: Program, threads: usize) -> Result<Compiled> {
        Compiled::with_isa(program, threads, HostIsa::detect())
    }

    /// Like [`Compiled::new`], using only the instruction-set features of `isa` (and of the
    /// host): tests run the int8 fallback path on a VNNI machine this way.
    pub fn with_isa(program: Program, threads: usize, isa: HostIsa) -> Result<Compiled> {
        Compiled::with_progress(program, threads, isa, &mut |_, _| {})
    }

    /// Like [`Compiled::with_isa`], calling `progress(done, total)` after each kernel is
    /// translated (large models take seconds; the CLI draws a bar from this).
    pub fn with_progress(
        program: Program,
        threads: usize,
        isa: HostIsa,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Compiled> {
        let t0 = Instant::now();
        let mut jit = Jit::with_isa(isa)?;
        let total = program.module.kernels.len();
        for (i, k) in program.module.kernels.iter().enumerate() {
            jit.add(k)?;
            progress(i + 1, total);
        }
        let kernels = jit.finish()?;
        let arena = vec![0u128; program.arena_bytes.div_ceil(16) + 1];
        Ok(Compiled {
            program,
            kernels,
            _jit: jit,
            arena,
            staged: Vec::new(),
            threads: threads.max(1),
            pool: Pool::new(threads.max(1) - 1),
            compile_time: t0.elapsed(),
        })
    }

    /// Bytes of machine code.
    pub fn code_size(&self) -> usize {
        self.kernels.iter().map(|k| k.code_size).sum()
    }

    /// Runs the model on `inputs` (graph-input order); returns the graph outputs.
    pub fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.run_timed(inputs, None)
    }

    /// Like [`Compiled::run`], adding each step's wall time to `times[step]`.
    pub fn run_timed(
        &mut self,
        inputs: &[Tensor],
        times: Option<&mut Vec<Duration>>,
    ) -> Result<Vec<Tensor>> {
        self.run_inner(inputs, times, None)
    }

    /// Like [`Compiled::run`], calling `observe(value, tensor)` on every node result as
    /// soon as it is complete (before a later step may reuse its memory): calibration runs
    /// the float model this way, the error analysis the int8 one. A coded value is seen
    /// dequantised ([`Program::decode`]), as the simulator holds it.
    pub fn run_observed(
        &mut self,
        inputs: &[Tensor],
        observe: &mut Observe<'_>,
    ) -> Result<Vec<Tensor>> {
        self.run_inner(inputs, None, Some(observe))
    }

    fn run_inner(
        &mut self,
        inputs: &[Tensor],
        mut times: Option<&mut Vec<Duration>>,
        mut observe: Option<&mut Observe<'_>>,
    ) -> Result<Vec<Tensor>> {
        let p = &self.program;
        ensure!(
            inputs.len() == p.inputs.len(),
            Input,
            "the model takes {} inputs, got {}",
            p.inputs.len(),
            inputs.len()
        );
        self.staged.resize_with(inputs.len(), Vec::new);
        let mut ins: Vec<*const u8> = Vec::with_capacity(inputs.len());
        for (i, (t, ty)) in inputs.iter().zip(&p.inputs).enumerate() {
            ensure!(
                t.dtype() == ty.dtype && t.shape() == ty.shape.as_slice(),
                Input,
                "input {i}: expected {ty}, got {}",
                t.ty()
            );
            // Kernels only read inputs (the memory plan never places a result there), so a
            // row-major tensor is read where it lies; 16-byte alignment keeps it as good as
            // the arena for any vector load Cranelift folds into an SSE operand.
            let in_place = contiguous_bytes(t);
            if let Some(b) = in_place.filter(|b| (b.as_ptr() as usize).is_multiple_of(16)) {
                ins.push(b.as_ptr());
                continue;
            }
            let owned;
            let b = match in_place {
                Some(b) => b,
                None => {
                    owned = tensor_bytes(t);
                    &owned
                }
            };
            let words = &mut self.staged[i];
            words.resize(b.len().div_ceil(16), 0);
            // SAFETY: `words` holds at least `b.len()` bytes; any byte pattern is valid.
            unsafe {
                std::ptr::copy_nonoverlapping(b.as_ptr(), words.as_mut_ptr() as *mut u8, b.len())
            };
            ins.push(words.as_ptr() as *const u8);
        }
        let arena = self.arena.as_mut_ptr() as *mut u8;
        let addr = |l: Loc| -> *mut u8 {
            match l {
                Loc::Input(i) => ins[i] as *mut u8,
                Loc::Const(i) => p.consts[i].ptr() as *mut u8,
                // SAFETY: offsets come from the memory plan, which fits in the arena.
                Loc::Arena(o) => unsafe { arena.add(o) },
            }
        };
        if let Some(t) = times.as_deref_mut() {
            t.resize(p.steps.len(), Duration::ZERO);
        }
        // The next result to observe, in `produced` order (which is step order).
        let mut next = 0;
        let mut observe_done = |done: usize, next: &mut usize| -> Result<()> {
            let Some(f) = observe.as_deref_mut() else {
                return Ok(());
            };
            while let Some((at, v, l, ty)) = p.produced.get(*next) {
                if *at > done {
                    break;
                }
                let t = match p.decode.get(v) {
                    Some(&(s, z)) => decode(addr(*l), ty, s, z)?,
                    None => read(addr(*l), ty)?,
                };
                f(*v, &t);
                *next += 1;
            }
            Ok(())
        };
        observe_done(0, &mut next)?;
        for (s, step) in p.steps.iter().enumerate() {
            let t0 = Instant::now();
            match step {
                Step::Kernel { kernel, args } => {
                    let ptrs: Vec<*mut u8> = args.iter().map(|&l| addr(l)).collect();
                    let k = &p.module.kernels[*kernel];
                    // Waking a worker costs microseconds: small steps stay on this thread.
                    let spread = p.info[s].flops >= PARALLEL_MIN_FLOPS;
                    call(
                        self.kernels[*kernel],
                        Ptrs(ptrs.as_ptr()),
                        k.parallel_extent(),
                        &self.pool,
                        spread,
                    );
                }
                Step::Reference {
                    inputs, outputs, ..
                }
                | Step::Host {
                    inputs, outputs, ..
                } => {
                    let vals: Vec<Option<Tensor>> = inputs
                        .iter()
                        .map(|x| x.as_ref().map(|(l, ty)| read(addr(*l), ty)).transpose())
                        .collect::<Result<_>>()?;
                    let res = match step {
                        Step::Host { run, .. } => (run.0)(&vals)?,
                        Step::Reference { op, .. } => {
                            let refs: Vec<Option<&Tensor>> =
                                vals.iter().map(|v| v.as_ref()).collect();
                            op.eval(&refs, outputs.len())?
                        }
                        Step::Kernel { .. } => unreachable!("matched above"),
                    };
                    for ((l, ty), t) in outputs.iter().zip(res) {
                        if t.shape() != ty.shape.as_slice() || t.dtype() != ty.dtype {
                            bail!(
                                Eval,
                                "{}: produced {} where {ty} was planned",
                                p.info[s].node,
                                t.ty()
                            );
                        }
                        let b = tensor_bytes(&t);
                        // SAFETY: the planned location holds `ty`'s bytes.
                        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), addr(*l), b.len()) };
                    }
                }
            }
            if let Some(t) = times.as_deref_mut() {
                t[s] += t0.elapsed();
            }
            observe_done(s + 1, &mut next)?;
        }
        p.outputs.iter().map(|(l, ty)| read(addr(*l), ty)).collect()
    }
}

/// The f32 tensor of type `ty` whose u8 codes on grid `(s, z)` lie at `ptr`.
fn decode(ptr: *mut u8, ty: &TensorType, s: f32, z: i32) -> Result<Tensor> {
    let n: usize = ty.shape.iter().product();
    // SAFETY: a coded value holds one code byte per element.
    let b = unsafe { std::slice::from_raw_parts(ptr as *const u8, n) };
    let v: Vec<f32> = b.iter().map(|&q| (q as i32 - z) as f32 * s).collect();
    Tensor::from_vec(&ty.shape, v)
}

fn read(ptr: *mut u8, ty: &TensorType) -> Result<Tensor> {
    let n = ty.size_bytes();
    // SAFETY: the location holds a tensor of type `ty`.
    let b = unsafe { std::slice::from_raw_parts(ptr as *const u8, n) };
    tensor_from_bytes(ty, b)
}
