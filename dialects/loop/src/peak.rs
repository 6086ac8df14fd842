//! Measuring the machine's 128-bit fp32 peak, so kernel efficiency is reported against the
//! running machine rather than a number from a datasheet.
//!
//! The probe is itself a loop-dialect kernel: twelve independent `f32x4` FMA chains (enough to
//! cover FMA latency × throughput on current x86 cores), compiled like every other kernel.

use crate::builder::KernelBuilder;
use crate::codegen::Jit;
use crate::ir::Type;
use kiln_core::Result;
use std::time::Instant;

const CHAINS: usize = 12;

/// Peak single-thread fp32 GFLOP/s with 128-bit FMAs (best of a few timed runs).
pub fn fp32_peak_gflops() -> Result<f64> {
    let iters: i64 = 2_000_000;
    let mut b = KernelBuilder::new("peak_fp32");
    let out = b.buf("out", Type::F32, CHAINS * 4, false);
    let init: Vec<_> = (0..CHAINS)
        .map(|i| b.fsplat(Type::F32X4, i as f32 * 1e-3))
        .collect();
    let m = b.fsplat(Type::F32X4, 0.999_999);
    let a = b.fsplat(Type::F32X4, 1e-7);
    let accs = b.loop_(0, iters, 1, false, &init, |b, _, accs| {
        accs.iter().map(|&x| b.fma(x, m, a)).collect()
    });
    let zero = b.index(0);
    for (i, &v) in accs.iter().enumerate() {
        b.store(out, zero, (i * 4) as i64, v);
    }
    let kernel = b.finish();
    let mut jit = Jit::new()?;
    jit.add(&kernel)?;
    let k = jit.finish()?[0];
    let mut buf = vec![0f32; CHAINS * 4];
    let ptrs = [buf.as_mut_ptr() as *mut u8];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        // SAFETY: the kernel writes CHAINS*4 floats into `buf`.
        unsafe { (k.entry)(ptrs.as_ptr(), 0, 0) };
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&buf);
    let flops = iters as f64 * CHAINS as f64 * 4.0 * 2.0;
    Ok(flops / best / 1e9)
}
