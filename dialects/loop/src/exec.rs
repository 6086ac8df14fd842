//! Running a compiled program: one arena, kernels called in schedule order, parallel loops split
//! over threads.
//!
//! A compiled model owns a small pool of worker threads (`threads - 1` of them; the calling
//! thread takes the first chunk). A kernel's parallel range is cut into one contiguous chunk per
//! thread (rounded to the loop step), which keeps each thread's writes disjoint.

use crate::codegen::jit::HostIsa;
use crate::codegen::{Jit, JitKernel};
use crate::program::{Loc, Program, Step, contiguous_bytes, tensor_bytes, tensor_from_bytes};
use kiln_core::{Result, Tensor, TensorType, bail, ensure};
use std::time::{Duration, Instant};

/// Steps with less work than this run on the calling thread only: below it, handing chunks
/// to workers (a channel send and a wake-up each) costs more than it saves.
const PARALLEL_MIN_FLOPS: u64 = 2_000_000;

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

#[derive(Clone, Copy)]
struct Ptrs(*const *mut u8);
// SAFETY: the pointer array outlives the scoped threads, and kernels write disjoint ranges.
unsafe impl Send for Ptrs {}
unsafe impl Sync for Ptrs {}

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
        mut times: Option<&mut Vec<Duration>>,
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
            match contiguous_bytes(t) {
                Some(b) if (b.as_ptr() as usize).is_multiple_of(16) => ins.push(b.as_ptr()),
                _ => {
                    let b = tensor_bytes(t);
                    let words = &mut self.staged[i];
                    words.resize(b.len().div_ceil(16), 0);
                    // SAFETY: `words` holds at least `b.len()` bytes; any byte pattern is valid.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            b.as_ptr(),
                            words.as_mut_ptr() as *mut u8,
                            b.len(),
                        )
                    };
                    ins.push(words.as_ptr() as *const u8);
                }
            }
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
        }
        p.outputs.iter().map(|(l, ty)| read(addr(*l), ty)).collect()
    }
}

fn read(ptr: *mut u8, ty: &TensorType) -> Result<Tensor> {
    let n = ty.size_bytes();
    // SAFETY: the location holds a tensor of type `ty`.
    let b = unsafe { std::slice::from_raw_parts(ptr as *const u8, n) };
    tensor_from_bytes(ty, b)
}

/// One chunk of a kernel's parallel loop.
struct Job {
    kernel: JitKernel,
    ptrs: Ptrs,
    lo: i64,
    hi: i64,
    done: std::sync::mpsc::Sender<()>,
}

/// Worker threads fed through channels; dropped with the compiled model.
struct Pool {
    workers: Vec<std::sync::mpsc::Sender<Job>>,
}

impl Pool {
    fn new(n: usize) -> Pool {
        let workers = (0..n)
            .map(|_| {
                let (tx, rx) = std::sync::mpsc::channel::<Job>();
                std::thread::spawn(move || {
                    while let Ok(job) = rx.recv() {
                        let p = job.ptrs;
                        // SAFETY: chunks are disjoint ranges of a parallel loop; the caller
                        // waits for `done` before its buffers go away.
                        unsafe { (job.kernel.entry)(p.0, job.lo, job.hi) };
                        let _ = job.done.send(());
                    }
                });
                tx
            })
            .collect();
        Pool { workers }
    }
}

/// Runs a kernel: its parallel range split over the pool when `spread`, else whole here.
fn call(k: JitKernel, ptrs: Ptrs, extent: Option<(i64, i64, i64)>, pool: &Pool, spread: bool) {
    let Some((lo, hi, step)) = extent else {
        // SAFETY: the kernel reads and writes only its own buffers, all live.
        unsafe { (k.entry)(ptrs.0, 0, 0) };
        return;
    };
    let iters = ((hi - lo).max(0) + step - 1) / step;
    let workers = if spread { pool.workers.len() as i64 } else { 0 };
    let threads = (workers + 1).min(iters).max(1);
    if threads == 1 {
        // SAFETY: as above.
        unsafe { (k.entry)(ptrs.0, lo, hi) };
        return;
    }
    let per = (iters + threads - 1) / threads;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut sent = 0;
    for t in 1..threads {
        let a = lo + t * per * step;
        let b = (a + per * step).min(hi);
        if a >= b {
            continue;
        }
        let job = Job {
            kernel: k,
            ptrs,
            lo: a,
            hi: b,
            done: done_tx.clone(),
        };
        if pool.workers[(t - 1) as usize].send(job).is_ok() {
            sent += 1;
        } else {
            // A worker that died (it cannot, short of a crash) leaves its chunk to us.
            // SAFETY: as above.
            unsafe { (k.entry)(ptrs.0, a, b) };
        }
    }
    // SAFETY: the first chunk, on the calling thread.
    unsafe { (k.entry)(ptrs.0, lo, (lo + per * step).min(hi)) };
    for _ in 0..sent {
        let _ = done_rx.recv();
    }
}
