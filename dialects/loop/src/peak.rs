//! Measuring the machine's 128-bit fp32 and int8 peaks, so kernel efficiency is reported
//! against the running machine rather than a number from a datasheet.
//!
//! Each probe is itself a loop-dialect kernel: twelve independent `f32x4` FMA chains (enough
//! to cover FMA latency × throughput on current x86 cores), or twelve independent `i32x4`
//! `dot_u8s8` chains over register-resident bytes, compiled like every other kernel.

use crate::builder::KernelBuilder;
use crate::codegen::{HostIsa, Jit};
use crate::ir::Type;
use kiln_core::Result;
use std::time::{Duration, Instant};

const CHAINS: usize = 12;

/// Length and count of the int8 probe's timed samples.
const SAMPLE: Duration = Duration::from_millis(2);
const SAMPLES: usize = 30;

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

/// Operations one `dot_u8s8` counts as: 16 byte-pair multiply-accumulates, 2 ops each
/// (16 multiplies + 16 adds = 32), the same convention as fp32's 2 FLOPs per FMA lane.
pub const DOT_U8S8_OPS: f64 = 32.0;

/// Peak single-thread int8 GOP/s of `dot_u8s8` on 128-bit vectors, for the code path this
/// host's JIT uses ([`HostIsa::detect`]): `vpdpbusd` with VNNI; without VNNI (or with
/// `KILN_NO_VNNI=1`) the figure of the exact widening `pmaddwd` sequence int8 kernels then
/// run, so efficiency is always reported against what the generated code can reach.
pub fn int8_peak_gops() -> Result<f64> {
    int8_peak_gops_with(HostIsa::detect())
}

/// [`int8_peak_gops`] for the code path of `isa` (intersected with the host's features).
///
/// The probe runs independent accumulator chains over two splatted byte vectors: 12 with
/// `vpdpbusd` (latency × throughput, as for fp32), 8 on the fallback, whose ten-instruction
/// expansion needs four temporaries per step and would spill with 12 (only 16 xmm registers
/// are allocatable). Each sample is calibrated to about 2 ms and the best of 30 is kept:
/// short samples are more likely to run without being preempted on a busy (virtual)
/// machine, which matters more than timer resolution here.
pub fn int8_peak_gops_with(isa: HostIsa) -> Result<f64> {
    let iters: i64 = 50_000;
    let mut jit = Jit::with_isa(isa)?;
    let chains = if jit.isa().avx_vnni { 12 } else { 8 };
    let mut b = KernelBuilder::new("peak_int8");
    let out = b.buf("out", Type::I32, chains * 4, false);
    let init: Vec<_> = (0..chains)
        .map(|i| {
            let c = b.iconst(Type::I32, i as i64);
            b.splat(Type::I32X4, c)
        })
        .collect();
    let a = b.iconst(Type::I8, 200);
    let a = b.splat(Type::I8X16, a);
    let w = b.iconst(Type::I8, -3);
    let w = b.splat(Type::I8X16, w);
    let accs = b.loop_(0, iters, 1, false, &init, |b, _, accs| {
        accs.iter().map(|&acc| b.dot_u8s8(acc, a, w)).collect()
    });
    let zero = b.index(0);
    for (i, &v) in accs.iter().enumerate() {
        b.store(out, zero, (i * 4) as i64, v);
    }
    let kernel = b.finish();
    jit.add(&kernel)?;
    let k = jit.finish()?[0];
    let mut buf = vec![0i32; chains * 4];
    let ptrs = [buf.as_mut_ptr() as *mut u8];
    let run = |reps: u32| {
        let t = Instant::now();
        for _ in 0..reps {
            // SAFETY: the kernel writes chains*4 i32 values into `buf`.
            unsafe { (k.entry)(ptrs.as_ptr(), 0, 0) };
        }
        t.elapsed()
    };
    // Calibrate: enough calls per sample that timer resolution does not matter (the
    // fastest of three single calls, so one preempted call does not shrink the sample).
    let once = (0..3).map(|_| run(1)).min().unwrap_or_default();
    let once = once.max(Duration::from_micros(1));
    let reps = (SAMPLE.as_secs_f64() / once.as_secs_f64()).ceil() as u32;
    let reps = reps.clamp(1, 10_000);
    let best = (0..SAMPLES)
        .map(|_| run(reps).as_secs_f64())
        .fold(f64::MAX, f64::min);
    std::hint::black_box(&buf);
    let ops = iters as f64 * chains as f64 * DOT_U8S8_OPS * f64::from(reps);
    Ok(ops / best / 1e9)
}
