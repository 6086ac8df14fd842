//! The worker threads that share a kernel's parallel loop.
//!
//! Kernels of a small model run for microseconds, so handing one its chunk must cost far
//! less than that. A worker therefore waits by spinning on a generation counter, and only
//! after a while without work ([`SPIN`]) parks on a condition variable; a thread woken from
//! a channel or a futex needs tens of microseconds, as long as many whole kernels. The
//! calling thread publishes the job, bumps the generation, runs the first chunk itself and
//! spins until every worker has reported its chunk done.
//!
//! Each job is a kernel, its argument pointers and one contiguous range of the parallel
//! loop per thread (rounded to the loop step), which keeps the threads' writes disjoint.

use crate::codegen::JitKernel;
use std::cell::UnsafeCell;
use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks: long enough to span the gap between two
/// kernels and between two runs of a benchmark loop, short enough not to hold a core for a
/// caller that has stopped.
const SPIN: Duration = Duration::from_micros(50);

/// How long the calling thread spins for its workers before it yields its core.
const YIELD_AFTER: Duration = Duration::from_micros(20);

/// Polls between two looks at the clock while spinning.
const POLLS: u32 = 64;

/// A kernel's argument pointers.
#[derive(Clone, Copy)]
pub struct Ptrs(pub *const *mut u8);
// SAFETY: the pointer array outlives the job (the caller waits for every chunk), and
// kernels write disjoint ranges.
unsafe impl Send for Ptrs {}
unsafe impl Sync for Ptrs {}

/// What the workers run for one generation.
struct Job {
    kernel: Option<JitKernel>,
    ptrs: Ptrs,
    /// `(lo, hi)` of worker `w` at `ranges[w]`; empty ranges are skipped.
    ranges: Vec<(i64, i64)>,
}

struct Shared {
    generation: AtomicU64,
    /// Workers that have not finished the current generation's chunk.
    pending: AtomicUsize,
    /// Workers parked on `wake`.
    sleeping: AtomicUsize,
    quit: AtomicBool,
    /// Written only by the calling thread, while no worker reads it (between generations).
    job: UnsafeCell<Job>,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only while every worker is idle (before the generation is
// bumped, after `pending` reached zero) and read only after seeing the new generation.
unsafe impl Sync for Shared {}

/// `n` worker threads; dropping the pool stops and joins them.
pub struct Pool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    pub fn new(n: usize) -> Pool {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            sleeping: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
            job: UnsafeCell::new(Job {
                kernel: None,
                ptrs: Ptrs(std::ptr::null()),
                ranges: vec![(0, 0); n],
            }),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let handles = (0..n)
            .map(|w| {
                let s = Arc::clone(&shared);
                std::thread::spawn(move || worker(&s, w))
            })
            .collect();
        Pool { shared, handles }
    }

    pub fn workers(&self) -> usize {
        self.handles.len()
    }

    /// Runs `kernel` over `lo..hi` (step `step`) on this thread and the first `extra`
    /// workers, one contiguous chunk each.
    fn run(&self, kernel: JitKernel, ptrs: Ptrs, (lo, hi, step): (i64, i64, i64), extra: usize) {
        let s = &*self.shared;
        let threads = extra as i64 + 1;
        let iters = ((hi - lo).max(0) + step - 1) / step;
        let per = (iters + threads - 1) / threads;
        let chunk = |t: i64| {
            let a = (lo + t * per * step).min(hi);
            (a, (a + per * step).min(hi))
        };
        {
            // SAFETY: every worker is idle: the previous generation's `pending` is zero.
            let job = unsafe { &mut *s.job.get() };
            job.kernel = Some(kernel);
            job.ptrs = ptrs;
            for (w, r) in job.ranges.iter_mut().enumerate() {
                *r = if (w as i64) < threads - 1 {
                    chunk(w as i64 + 1)
                } else {
                    (0, 0)
                };
            }
        }
        s.pending.store(self.handles.len(), Release);
        s.generation.fetch_add(1, SeqCst);
        if s.sleeping.load(SeqCst) > 0 {
            let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let (a, b) = chunk(0);
        if a < b {
            // SAFETY: the kernel reads and writes only its own buffers, all live.
            unsafe { (kernel.entry)(ptrs.0, a, b) };
        }
        // A worker that lost its core (more threads than cores) gets it back sooner if
        // this thread stops competing for it: after 20 µs of waiting it yields.
        let waited = Instant::now();
        let mut polls = 0u32;
        while s.pending.load(Acquire) != 0 {
            polls = polls.wrapping_add(1);
            if polls < POLLS || waited.elapsed() < YIELD_AFTER {
                spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.quit.store(true, SeqCst);
        {
            let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(s: &Shared, w: usize) {
    let mut seen = 0u64;
    loop {
        let mut polls = 0u32;
        let mut since = Instant::now();
        loop {
            let g = s.generation.load(Acquire);
            if g != seen {
                seen = g;
                break;
            }
            if s.quit.load(Acquire) {
                return;
            }
            polls += 1;
            if !polls.is_multiple_of(POLLS) || since.elapsed() < SPIN {
                spin_loop();
                continue;
            }
            // Park. `sleeping` is raised before the generation is read again, and the
            // caller bumps the generation before reading `sleeping` (both SeqCst), so a
            // job published meanwhile is either seen here or followed by a notify.
            let mut guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleeping.fetch_add(1, SeqCst);
            while s.generation.load(SeqCst) == seen && !s.quit.load(SeqCst) {
                guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            s.sleeping.fetch_sub(1, SeqCst);
            since = Instant::now();
        }
        // SAFETY: the caller wrote the job before bumping the generation (Release/Acquire)
        // and does not touch it until `pending` reaches zero.
        let job = unsafe { &*s.job.get() };
        let (a, b) = job.ranges[w];
        if let (Some(k), true) = (job.kernel, a < b) {
            // SAFETY: chunks are disjoint ranges of a parallel loop; the caller waits for
            // every chunk before its buffers go away.
            unsafe { (k.entry)(job.ptrs.0, a, b) };
        }
        s.pending.fetch_sub(1, Release);
    }
}

/// Runs a kernel: its parallel range split over the pool when `spread`, else whole here.
pub fn call(k: JitKernel, ptrs: Ptrs, extent: Option<(i64, i64, i64)>, pool: &Pool, spread: bool) {
    let Some((lo, hi, step)) = extent else {
        // SAFETY: the kernel reads and writes only its own buffers, all live.
        unsafe { (k.entry)(ptrs.0, 0, 0) };
        return;
    };
    let iters = ((hi - lo).max(0) + step - 1) / step;
    let workers = if spread { pool.workers() as i64 } else { 0 };
    let threads = (workers + 1).min(iters).max(1);
    if threads == 1 {
        // SAFETY: as above.
        unsafe { (k.entry)(ptrs.0, lo, hi) };
        return;
    }
    pool.run(k, ptrs, (lo, hi, step), (threads - 1) as usize);
}
