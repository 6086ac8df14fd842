//! Kernel benchmarks (criterion): the fp32 GEMM and convolution kernels kiln generates, each as
//! a one-op model compiled by the JIT. Besides criterion's timings, each bench prints its
//! GFLOP/s as a fraction of the 128-bit FMA peak measured on this machine.
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

fn bench(c: &mut Criterion, name: &str, src: &str, peak: f64) {
    let (mut model, inputs, flops) = compile(src);
    model.run(&inputs).expect("runs");
    let runs = 20;
    let t = Instant::now();
    for _ in 0..runs {
        model.run(&inputs).expect("runs");
    }
    let s = t.elapsed().as_secs_f64() / runs as f64;
    let gflops = flops as f64 / s / 1e9;
    eprintln!(
        "{name}: {:.3} ms, {gflops:.1} GFLOP/s = {:.0} % of the 128-bit fp32 peak ({peak:.1})",
        s * 1e3,
        100.0 * gflops / peak
    );
    c.bench_function(name, |b| b.iter(|| model.run(&inputs).expect("runs")));
}

fn kernels(c: &mut Criterion) {
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
