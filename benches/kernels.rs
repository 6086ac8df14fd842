//! Kernel benchmarks (criterion): the fp32 and int8 GEMM and convolution kernels kiln generates,
//! each as a one-op model compiled by the JIT. Besides criterion's timings, each bench prints
//! its GFLOP/s (GOP/s) as a fraction of the 128-bit FMA (`vpdpbusd`) peak measured on this
//! machine; the int8 lines also give the GEMM kernel alone, without quantising the operand.
//!
//!     cargo bench --bench kernels

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_core::{PassManager, Tensor};
use std::time::Instant;

fn compile(src: &str) -> (kiln_loop::exec::Compiled, Vec<Tensor>, u64) {
    let mut g = kiln_graph::text::parse(src).expect("bench graph parses");
    let mut pm = PassManager::new(
        kiln_graph::passes::registry()
            .parse("graph.infer-shapes")
            .expect("pass exists"),
    );
    pm.run(&mut g).expect("shapes infer");
    let inputs = kiln::model::inputs_for(&g, &Default::default()).expect("inputs");
    let flops = kiln::cli::flops(&g);
    (kiln_loop::compile(&g, 1).expect("compiles"), inputs, flops)
}

/// Timed runs per figure printed beside criterion's own.
const RUNS: usize = 30;

/// Sorts `t` and returns its median (`t[0]` is then the best run, the statistic the peak
/// probes report: a sample nothing preempted).
fn median(t: &mut [f64]) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn bench(c: &mut Criterion, name: &str, src: &str, peak: f64) {
    let (mut model, inputs, flops) = compile(src);
    model.run(&inputs).expect("runs");
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            model.run(&inputs).expect("runs");
            t.elapsed().as_secs_f64()
        })
        .collect();
    let s = median(&mut times);
    let rate = |s: f64| flops as f64 / s / 1e9;
    eprintln!(
        "{name}: median {:.3} ms, {:.1} GFLOP/s = {:.0} % of the 128-bit fp32 peak ({peak:.1}); best of {RUNS}: {:.0} %",
        s * 1e3,
        rate(s),
        100.0 * rate(s) / peak,
        100.0 * rate(times[0]) / peak,
    );
    c.bench_function(name, |b| b.iter(|| model.run(&inputs).expect("runs")));
}

/// The same one-op model quantised (kiln-x86, seeded calibration) and compiled to int8.
fn bench_int8(c: &mut Criterion, name: &str, src: &str, peak: f64) {
    let mut g = kiln_graph::text::parse(src).expect("bench graph parses");
    PassManager::new(
        kiln_graph::passes::registry()
            .parse("graph.infer-shapes")
            .expect("pass exists"),
    )
    .run(&mut g)
    .expect("shapes infer");
    let inputs = kiln::model::inputs_for(&g, &Default::default()).expect("inputs");
    let flops = kiln::cli::flops(&g);
    let mut q = kiln_quant::QuantGraph::new(g, &kiln_quant::platform::KILN_X86).expect("quant");
    q.observer = Some(kiln_quant::ObserverKind::from_name("minmax").expect("observer"));
    q.calib = kiln_quant::calib::random_samples(&q.graph, 2).expect("samples");
    PassManager::new(
        kiln_quant::passes::registry()
            .parse("quant-opt")
            .expect("pipeline"),
    )
    .run(&mut q)
    .expect("quantises");
    let mut model = kiln_loop::compile_int8(&q, 1).expect("compiles");
    assert!(
        model.program.host_ops.is_empty(),
        "{name}: int8 kernels expected"
    );
    model.run(&inputs).expect("runs");
    // Per run: the whole model, and the GEMM (or depthwise) kernels alone.
    let is_gemm: Vec<bool> = model
        .program
        .steps
        .iter()
        .map(|st| match st {
            kiln_loop::program::Step::Kernel { kernel, .. } => {
                let k = &model.program.module.kernels[*kernel].name;
                k.contains("_gemm") || k.ends_with("_dw")
            }
            _ => false,
        })
        .collect();
    let (mut whole, mut gemm) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let mut times = Vec::new();
        let t = Instant::now();
        model.run_timed(&inputs, Some(&mut times)).expect("runs");
        whole.push(t.elapsed().as_secs_f64());
        gemm.push(
            times
                .iter()
                .zip(&is_gemm)
                .filter(|(_, g)| **g)
                .map(|(t, _)| t.as_secs_f64())
                .sum::<f64>(),
        );
    }
    let rate = |s: f64| flops as f64 / s / 1e9;
    let (s, k) = (median(&mut whole), median(&mut gemm));
    let (s_best, k_best) = (whole[0], gemm[0]);
    eprintln!(
        "{name}: median {:.3} ms, {:.1} GOP/s = {:.0} % of the 128-bit int8 peak ({peak:.1}); \
         the GEMM kernel alone {:.3} ms = {:.0} %; best of {RUNS}: {:.0} % and {:.0} % alone",
        s * 1e3,
        rate(s),
        100.0 * rate(s) / peak,
        k * 1e3,
        100.0 * rate(k) / peak,
        100.0 * rate(s_best) / peak,
        100.0 * rate(k_best) / peak,
    );
    c.bench_function(name, |b| b.iter(|| model.run(&inputs).expect("runs")));
}

const GEMM_512: &str = "graph @g(%a: f32[512,512]) -> (?) {
           %w = const f32[512,512] random(seed=1, min=-1.0, max=1.0)
           %y = graph.matmul(%a, %w) : ?
           return %y
         }";

const CONV_56: &str = "graph @g(%x: f32[1,56,56,64]) -> (?) {
           %w = const f32[64,64,3,3] random(seed=2, min=-1.0, max=1.0)
           %b = const f32[64] random(seed=3, min=-1.0, max=1.0)
           %y = graph.conv(%x, %w, %b) {kernel_shape=[3,3], pads=[1,1,1,1], act=\"relu\", layout=\"nhwc\"} : ?
           return %y
         }";

fn kernels(c: &mut Criterion) {
    let peak8 = kiln_loop::peak::int8_peak_gops().expect("int8 peak probe");
    bench_int8(c, "int8_gemm_512", GEMM_512, peak8);
    bench_int8(c, "int8_conv3x3_56x56x64", CONV_56, peak8);
    let peak = kiln_loop::peak::fp32_peak_gflops().expect("peak probe");
    bench(
        c,
        "gemm_512",
        "graph @g(%a: f32[512,512]) -> (?) {
           %w = const f32[512,512] random(seed=1, min=-1.0, max=1.0)
           %y = graph.matmul(%a, %w) : ?
           return %y
         }",
        peak,
    );
    bench(
        c,
        "conv3x3_56x56x64",
        "graph @g(%x: f32[1,56,56,64]) -> (?) {
           %w = const f32[64,64,3,3] random(seed=2, min=-1.0, max=1.0)
           %b = const f32[64] random(seed=3, min=-1.0, max=1.0)
           %y = graph.conv(%x, %w, %b) {kernel_shape=[3,3], pads=[1,1,1,1], act=\"relu\", layout=\"nhwc\"} : ?
           return %y
         }",
        peak,
    );
    bench(
        c,
        "depthwise3x3_112x112x96",
        "graph @g(%x: f32[1,112,112,96]) -> (?) {
           %w = const f32[96,1,3,3] random(seed=4, min=-1.0, max=1.0)
           %y = graph.conv(%x, %w) {kernel_shape=[3,3], pads=[1,1,1,1], group=96, layout=\"nhwc\"} : ?
           return %y
         }",
        peak,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = kernels
}
criterion_main!(benches);
