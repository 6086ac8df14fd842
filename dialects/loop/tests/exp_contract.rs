//! `lower::act::exp` is the int8 contract's `exp` ([`kiln_quant::arith::exp`]) bit for bit:
//! in vector lanes and in scalar code, compiled for hosts with and without FMA, and in the
//! reference evaluator. Sigmoid and swish epilogues of int8 kernels rest on this.

use kiln_core::Rng;
use kiln_loop::codegen::{HostIsa, Jit};
use kiln_loop::eval::{self, Data};
use kiln_loop::lower::act;
use kiln_loop::*;
use kiln_quant::arith;

/// out[i] = exp(x[i]): the first `4·vecs` elements four lanes at a time, the rest one by one.
fn exp_kernel(vecs: usize, tail: usize) -> Kernel {
    let n = 4 * vecs + tail;
    let mut b = KernelBuilder::new("exp");
    let x = b.buf("x", Type::F32, n, true);
    let out = b.buf("out", Type::F32, n, false);
    b.parallel(0, vecs as i64, 1, |b, i| {
        let o = b.mul_imm(i, 4);
        let v = b.load(Type::F32X4, x, o, 0);
        let e = act::exp(b, v);
        b.store(out, o, 0, e);
    });
    b.for_(4 * vecs as i64, n as i64, 1, |b, i| {
        let v = b.load(Type::F32, x, i, 0);
        let e = act::exp(b, v);
        b.store(out, i, 0, e);
    });
    b.finish()
}

fn inputs() -> Vec<f32> {
    let mut xs = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        arith::exp_poly::HI,
        arith::exp_poly::LO,
        88.0,
        88.7,
        89.0,
        -87.0,
        -88.0,
        -104.0,
        std::f32::consts::LN_2 * 0.5,
    ];
    let mut rng = Rng::new(0xe4b);
    while xs.len() < 4099 {
        let u = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        xs.push(match xs.len() % 3 {
            0 => (u - 0.5) * 200.0,
            1 => (u - 0.5) * 20.0,
            _ => f32::from_bits(rng.next_u64() as u32),
        });
    }
    xs
}

#[test]
fn kernel_exp_is_the_contract_bit_for_bit() {
    let xs = inputs();
    let (vecs, tail) = (xs.len() / 4, xs.len() % 4);
    assert!(tail > 0, "the scalar path must run too");
    let k = exp_kernel(vecs, tail);
    verify::verify_kernel(&k).unwrap_or_else(|e| panic!("{e}"));
    let want: Vec<u32> = xs.iter().map(|&x| arith::exp(x).to_bits()).collect();
    let check = |got: &[f32], path: &str| {
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            // Any NaN equals any NaN: payloads are not part of the contract.
            let same = g.to_bits() == w || (g.is_nan() && f32::from_bits(w).is_nan());
            assert!(
                same,
                "{path}: exp({:e}) = {g:e}, contract {:e}",
                xs[i],
                f32::from_bits(w)
            );
        }
    };
    let mut bufs = vec![Data::F32(xs.clone()), Data::F32(vec![0.0; xs.len()])];
    eval::run(&k, &mut bufs).unwrap_or_else(|e| panic!("{e}"));
    let Data::F32(got) = &bufs[1] else {
        unreachable!()
    };
    check(got, "evaluator");
    let native = HostIsa::native();
    for isa in [
        HostIsa {
            fma: false,
            ..native
        },
        native,
    ] {
        let mut jit = Jit::with_isa(isa).expect("a JIT");
        jit.add(&k).expect("kernel compiles");
        let f = jit.finish().expect("links")[0];
        let mut out = vec![0.0f32; xs.len()];
        let ptrs = [xs.as_ptr() as *mut u8, out.as_mut_ptr() as *mut u8];
        // SAFETY: both buffers hold `xs.len()` f32 values, as the kernel declares.
        unsafe { (f.entry)(ptrs.as_ptr(), 0, vecs as i64) };
        check(&out, if isa.fma { "jit, fma" } else { "jit, no fma" });
    }
}

#[test]
fn contract_exp_is_accurate() {
    // A few ulp of the true value wherever e^x is a normal f32.
    let mut worst = 0.0f64;
    let mut x = -87.0f32;
    while x < 88.3 {
        let (got, want) = (arith::exp(x) as f64, (x as f64).exp());
        worst = worst.max(((got - want) / want).abs());
        x += 0.0137;
    }
    assert!(
        worst < 4.0 * f32::EPSILON as f64,
        "relative error {worst:e}"
    );
    assert_eq!(arith::exp(0.0), 1.0);
    assert!(arith::exp(f32::NEG_INFINITY) > 0.0 && arith::exp(f32::INFINITY).is_finite());
}
