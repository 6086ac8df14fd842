//! A compute op's f32 epilogue quantises by multiplying with `f32(1/s)`
//! ([`QParams::quantize_epilogue`]), not by dividing as `quantize` does; the kernels'
//! `fake_quant_with(.., Div::Recip)` and `centred_int_recip` are that bit for bit, in
//! vector lanes and scalar code, in the evaluator and the JIT — including on the values
//! where the product and the quotient round to different codes.

use kiln_core::Rng;
use kiln_loop::codegen::{HostIsa, Jit};
use kiln_loop::eval::{self, Data};
use kiln_loop::int8::quantize::{self, Div};
use kiln_loop::*;
use kiln_quant::Rounding;
use kiln_quant::arith::{self, QParams};

fn grid(s: f32, z: i32, rounding: Rounding) -> QParams {
    QParams {
        scale: vec![s],
        zero: vec![z],
        axis: None,
        qmin: 0,
        qmax: 255,
        rounding,
    }
}

/// `fq[i] = dequant(quant(x[i]))` and `code[i] = q − z` through the epilogue's arithmetic,
/// four lanes at a time, then one by one.
fn kernel(p: &QParams, vecs: usize, tail: usize) -> Kernel {
    let n = 4 * vecs + tail;
    let mut b = KernelBuilder::new("eq");
    let x = b.buf("x", Type::F32, n, true);
    let fq = b.buf("fq", Type::F32, n, false);
    let code = b.buf("code", Type::I32, n, false);
    let body = |b: &mut KernelBuilder, i: Val, ty: Type| {
        let v = b.load(ty, x, i, 0);
        let f = quantize::fake_quant_with(b, v, p, Div::Recip);
        b.store(fq, i, 0, f);
        let c = quantize::centred_int_recip(b, v, p, p.rounding);
        b.store(code, i, 0, c);
    };
    b.parallel(0, vecs as i64, 1, |b, i| {
        let o = b.mul_imm(i, 4);
        body(b, o, Type::F32X4);
    });
    b.for_(4 * vecs as i64, n as i64, 1, |b, i| body(b, i, Type::F32));
    b.finish()
}

/// Values around the grid's rounding boundaries (where `x·(1/s)` and `x/s` can round
/// apart), random ones, and the special values.
fn inputs(p: &QParams, rng: &mut Rng) -> Vec<f32> {
    let s = p.s();
    let mut xs = vec![
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e30,
        -1e30,
    ];
    for k in -140..140 {
        let mid = (k as f32 + 0.5) * s;
        let mut x = mid;
        for _ in 0..3 {
            x = f32::from_bits(x.to_bits() - 1);
        }
        for _ in 0..7 {
            xs.push(x);
            x = f32::from_bits(x.to_bits() + 1);
        }
    }
    while xs.len() % 4 != 3 || xs.len() < 4003 {
        let u = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        xs.push((u - 0.5) * 300.0 * s);
    }
    xs
}

#[test]
fn epilogue_quantisation_is_the_contract_bit_for_bit() {
    let mut rng = Rng::new(0x5ca1e);
    let mut apart = 0;
    for (s, z, r) in [
        (0.1f32, 128, Rounding::HalfEven),
        (0.017_3, 3, Rounding::HalfEven),
        (0.3, 200, Rounding::HalfUp),
        (0.007_77, 0, Rounding::HalfAwayFromZero),
    ] {
        let p = grid(s, z, r);
        let xs = inputs(&p, &mut rng);
        let (vecs, tail) = (xs.len() / 4, xs.len() % 4);
        let want: Vec<i32> = xs.iter().map(|&x| p.quantize_epilogue(x)).collect();
        apart += xs
            .iter()
            .zip(&want)
            .filter(|&(&x, &w)| p.quantize(x, 0) != w)
            .count();
        let k = kernel(&p, vecs, tail);
        verify::verify_kernel(&k).unwrap_or_else(|e| panic!("{e}"));
        let check = |fq: &[f32], code: &[i32], path: &str| {
            for i in 0..xs.len() {
                let w = want[i];
                let wf = arith::dequantize(w, s, z);
                assert_eq!(code[i], w - z, "{path}: code of {:e} (s {s})", xs[i]);
                assert_eq!(
                    fq[i].to_bits(),
                    wf.to_bits(),
                    "{path}: value of {:e}",
                    xs[i]
                );
            }
        };
        let n = xs.len();
        let mut bufs = vec![
            Data::F32(xs.clone()),
            Data::F32(vec![0.0; n]),
            Data::I32(vec![0; n]),
        ];
        eval::run(&k, &mut bufs).unwrap_or_else(|e| panic!("{e}"));
        let (Data::F32(fq), Data::I32(code)) = (&bufs[1], &bufs[2]) else {
            unreachable!()
        };
        check(fq, code, "evaluator");
        let mut jit = Jit::with_isa(HostIsa::native()).expect("a JIT");
        jit.add(&k).expect("kernel compiles");
        let f = jit.finish().expect("links")[0];
        let (mut fq, mut code) = (vec![0.0f32; n], vec![0i32; n]);
        let ptrs = [
            xs.as_ptr() as *mut u8,
            fq.as_mut_ptr() as *mut u8,
            code.as_mut_ptr() as *mut u8,
        ];
        // SAFETY: the buffers hold `n` f32, f32 and i32 values, as the kernel declares.
        unsafe { (f.entry)(ptrs.as_ptr(), 0, vecs as i64) };
        check(&fq, &code, "jit");
    }
    // The inputs do reach values where dividing would give another code, so a kernel
    // that divided would fail above.
    assert!(apart > 0, "no input separates x/s from x·(1/s)");
}

/// `code[i] = q` and `val[i] = dequant(q)` of accumulators `acc` (4 channels of scales
/// `sc`) through the GEMM's register epilogue, tame and general forms alike.
fn epilogue_kernel(e: &kiln_quant::plan::Epilogue, vecs: usize) -> Kernel {
    use kiln_loop::int8::epilogue;
    let n = 4 * vecs;
    let mut b = KernelBuilder::new("ep");
    let acc = b.buf("acc", Type::I32, n, true);
    let sc = b.buf("sc", Type::F32, 4, true);
    let code = b.buf("code", Type::I32, n, false);
    let val = b.buf("val", Type::F32, n, false);
    b.parallel(0, vecs as i64, 1, |b, i| {
        let o = b.mul_imm(i, 4);
        let a = b.load(Type::I32X4, acc, o, 0);
        let ch = b.index(0);
        let q = epilogue::epilogue_code(b, e, a, sc, ch, None);
        b.store(code, o, 0, q);
        let v = epilogue::epilogue(b, e, a, sc, ch, None);
        b.store(val, o, 0, v);
    });
    b.finish()
}

#[test]
fn gemm_epilogues_quantise_as_the_simulator_does() {
    use kiln_graph::ops::Activation;
    let mut rng = Rng::new(0xe91);
    let mut apart = 0;
    let vecs = 4096;
    let acc: Vec<i32> = (0..4 * vecs)
        .map(|i| match i % 2 {
            0 => (rng.next_u64() % 4001) as i32 - 2000,
            _ => (rng.next_u64() % (1 << 21)) as i32 - (1 << 20),
        })
        .collect();
    for act in [Activation::None, Activation::HardSwish, Activation::Tanh] {
        for (sc, s, z) in [
            (0.05f32, 0.1f32, 128),
            (0.0037, 0.011, 40),
            (1.3e-4, 0.0529, 7),
        ] {
            let p = grid(s, z, Rounding::HalfEven);
            let scs = [sc, sc * 1.5, sc * 0.75, sc * 3.0];
            let e = kiln_quant::plan::Epilogue::Float {
                out: Some(p.clone()),
                sc: scs.to_vec(),
                act,
                residual: false,
                slope: false,
            };
            let want: Vec<i32> = acc
                .iter()
                .enumerate()
                .map(|(i, &a)| {
                    let v = arith::activation(&act, a as f32 * scs[i % 4], 0.0);
                    apart += (p.quantize(v, 0) != p.quantize_epilogue(v)) as usize;
                    p.quantize_epilogue(v)
                })
                .collect();
            let k = epilogue_kernel(&e, vecs);
            let mut jit = Jit::with_isa(HostIsa::native()).expect("a JIT");
            jit.add(&k).expect("kernel compiles");
            let f = jit.finish().expect("links")[0];
            let (mut code, mut val) = (vec![0i32; 4 * vecs], vec![0f32; 4 * vecs]);
            let ptrs = [
                acc.as_ptr() as *mut u8,
                scs.as_ptr() as *mut u8,
                code.as_mut_ptr() as *mut u8,
                val.as_mut_ptr() as *mut u8,
            ];
            // SAFETY: the buffers match the kernel's declarations in type and length.
            unsafe { (f.entry)(ptrs.as_ptr(), 0, vecs as i64) };
            for i in 0..acc.len() {
                let ctx = format!("{act:?}, acc {} · {}", acc[i], scs[i % 4]);
                assert_eq!(code[i], want[i], "code, {ctx}");
                let wv = arith::dequantize(want[i], s, z);
                assert_eq!(val[i].to_bits(), wv.to_bits(), "value, {ctx}");
            }
        }
    }
    assert!(apart > 0, "no accumulator separates x/s from x·(1/s)");
}
