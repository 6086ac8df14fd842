//! Kernels and helpers shared by the loop-dialect tests.
#![allow(dead_code)]

use kiln_core::Rng;
use kiln_loop::eval::{self, Data};
use kiln_loop::*;

/// y = relu(x) on f32x4 vectors, in the parallel loop.
pub fn relu() -> Kernel {
    let mut b = KernelBuilder::new("relu");
    let x = b.buf("x", Type::F32, 64, true);
    let y = b.buf("y", Type::F32, 64, false);
    let zero = b.fsplat(Type::F32X4, 0.0);
    b.parallel(0, 64, 4, |b, i| {
        let v = b.load(Type::F32X4, x, i, 0);
        let r = b.max(v, zero);
        b.store(y, i, 0, r);
    });
    b.finish()
}

/// C[4×8] = A[4×6]·B[6×8] + bias, a register-blocked micro-kernel: loops over rows and
/// column vectors around a k loop carrying the accumulator.
pub fn gemm() -> Kernel {
    let (m, n, kk) = (4, 8, 6);
    let mut b = KernelBuilder::new("gemm");
    let a = b.buf("a", Type::F32, m * kk, true);
    let w = b.buf("b", Type::F32, kk * n, true);
    let bias = b.buf("bias", Type::F32, n, true);
    let c = b.buf("c", Type::F32, m * n, false);
    b.for_(0, m as i64, 1, |b, i| {
        b.for_(0, n as i64, 4, |b, j| {
            let init = b.load(Type::F32X4, bias, j, 0);
            let acc = b.loop_(0, kk as i64, 1, false, &[init], |b, k, acc| {
                let ai = b.mul_imm(i, kk as i64);
                let aoff = b.add(ai, k);
                let av = b.load(Type::F32, a, aoff, 0);
                let av = b.splat(Type::F32X4, av);
                let bk = b.mul_imm(k, n as i64);
                let boff = b.add(bk, j);
                let bv = b.load(Type::F32X4, w, boff, 0);
                vec![b.fma(av, bv, acc[0])]
            });
            let ci = b.mul_imm(i, n as i64);
            let coff = b.add(ci, j);
            b.store(c, coff, 0, acc[0]);
        });
    });
    b.finish()
}

/// Redundant and constant index arithmetic, duplicate loads, dead values and a dead loop.
pub fn redundant() -> Kernel {
    let mut b = KernelBuilder::new("redundant");
    let x = b.buf("x", Type::F32, 32, true);
    let y = b.buf("y", Type::F32, 32, false);
    b.for_(0, 8, 1, |b, i| {
        let two = b.index(2);
        let three = b.index(3);
        let six = b.mul(two, three);
        let zero = b.index(0);
        let i2 = b.mul(i, two);
        let i2b = b.mul(two, i);
        let o1 = b.add(i2, zero);
        let o2 = b.add(i2b, six);
        let o2 = b.sub(o2, six);
        let v1 = b.load(Type::F32, x, o1, 0);
        let v2 = b.load(Type::F32, x, o2, 0);
        let s = b.add(v1, v2);
        let one = b.fconst(1.0);
        let s = b.mul(s, one);
        let _dead = b.call(Helper::Exp, &[v1]);
        let _dead2 = b.add(v2, v2);
        b.store(y, i, 0, s);
        // A load after the store must not merge with the one before.
        let v3 = b.load(Type::F32, x, o1, 0);
        let w = b.load(Type::F32, y, i, 0);
        let t = b.add(v3, w);
        b.store(y, i, 16, t);
    });
    // A loop that stores nothing and whose result is unused.
    let z = b.fconst(0.0);
    b.loop_(0, 100, 1, false, &[z], |b, _, acc| {
        let one = b.fconst(1.0);
        vec![b.add(acc[0], one)]
    });
    b.finish()
}

/// Every other instruction kind: masks, select, casts, reductions, lanes, bitcasts, helper
/// calls, integer vectors and u8 data.
pub fn mixed() -> Kernel {
    let mut b = KernelBuilder::new("mixed");
    let x = b.buf("x", Type::F32, 16, true);
    let q = b.buf("q", Type::U8, 32, true);
    let y = b.buf("y", Type::F32, 16, false);
    let yi = b.buf("yi", Type::I32, 16, false);
    let y8 = b.buf("y8", Type::I8, 32, false);
    let ys = b.buf("ys", Type::F32, 8, false);
    let zero = b.fsplat(Type::F32X4, 0.0);
    let slope = b.fsplat(Type::F32X4, 0.125);
    let sum0 = b.fconst(0.0);
    let sums = b.loop_(0, 16, 4, false, &[sum0], |b, i, acc| {
        let v = b.load(Type::F32X4, x, i, 0);
        let m = b.cmp(CmpOp::Gt, v, zero);
        let neg = b.mul(v, slope);
        let r = b.select(m, v, neg);
        let r = b.unary(UnOp::Abs, r);
        let r = b.unary(UnOp::Sqrt, r);
        b.store(y, i, 0, r);
        let scaled = b.fsplat(Type::F32X4, 100.0);
        let s = b.mul(v, scaled);
        let s = b.unary(UnOp::Nearest, s);
        let iv = b.cast(Type::I32X4, s);
        let bits = b.bitcast(Type::I32X4, v);
        let sh = b.iconst(Type::I32, 20);
        let bits = b.binary(BinOp::Shr, bits, sh);
        let iv = b.add(iv, bits);
        let l0 = b.extract(iv, 0);
        let iv = b.insert(iv, l0, 3);
        b.store(yi, i, 0, iv);
        let red = b.reduce(RedOp::Max, v);
        let e = b.call(Helper::Exp, &[red]);
        let p = b.call(Helper::Pow, &[e, red]);
        let t = b.call(Helper::Tanh, &[p]);
        vec![b.add(acc[0], t)]
    });
    let k = b.index(0);
    b.store(ys, k, 0, sums[0]);
    b.for_(0, 32, 16, |b, i| {
        let v = b.load(Type::I8X16, q, i, 0);
        let one = b.iconst(Type::I8, 3);
        let ones = b.splat(Type::I8X16, one);
        let w = b.add(v, ones);
        let sh = b.iconst(Type::I32, 1);
        let w = b.binary(BinOp::Shr, w, sh);
        let m = b.cmp(CmpOp::Lt, w, ones);
        let w = b.select(m, ones, w);
        b.store(y8, i, 0, w);
    });
    // Scalar integer arithmetic of every width, with constants to fold.
    let a = b.iconst(Type::I8, 127);
    let c1 = b.iconst(Type::I8, 1);
    let a = b.add(a, c1); // wraps to -128
    let a16 = b.cast(Type::I16, a);
    let m16 = b.iconst(Type::I16, -300);
    let a16 = b.mul(a16, m16);
    let a32 = b.cast(Type::I32, a16);
    let d = b.iconst(Type::I32, -7);
    let qd = b.div(a32, d);
    let r = b.binary(BinOp::Rem, a32, d);
    let s = b.add(qd, r);
    let f = b.cast(Type::F32, s);
    let half = b.fconst(0.5);
    let f = b.fma(f, half, half);
    let f = b.unary(UnOp::Floor, f);
    let idx = b.index(1);
    b.store(ys, idx, 0, f);
    let u = b.iconst(Type::U8, 250);
    let u2 = b.iconst(Type::U8, 10);
    let u = b.add(u, u2); // wraps to 4
    let lt = b.cmp(CmpOp::Lt, u, u2);
    let one = b.fconst(1.0);
    let two = b.fconst(2.0);
    let pick = b.select(lt, one, two);
    let idx2 = b.index(2);
    b.store(ys, idx2, 0, pick);
    b.finish()
}

/// Random contents for every buffer of `k` (the same for the same seed).
pub fn inputs(k: &Kernel, seed: u64) -> Vec<Data> {
    let mut rng = Rng::new(seed);
    k.bufs
        .iter()
        .map(|b| {
            let mut d = Data::zeros(b.elem, b.len).expect("an element type");
            for i in 0..b.len {
                let x = rng.uniform(-4.0, 4.0);
                let s = if b.elem.is_float() {
                    eval::Scalar::F(x)
                } else {
                    eval::Scalar::I((rng.next_u64() % 256) as i64 - 128)
                };
                d.set(i, s);
            }
            d
        })
        .collect()
}

/// Whether two runs wrote the same bits (any NaN equals any NaN).
pub fn same(a: &[Data], b: &[Data]) -> bool {
    a.iter().zip(b).all(|(x, y)| match (x, y) {
        (Data::F32(x), Data::F32(y)) => x
            .iter()
            .zip(y)
            .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())),
        _ => x == y,
    })
}

/// Runs `k` on the inputs of `seed`.
pub fn run(k: &Kernel, seed: u64) -> Vec<Data> {
    let mut bufs = inputs(k, seed);
    eval::run(k, &mut bufs).unwrap_or_else(|e| panic!("{e}\n{}", text::print_kernel(k)));
    bufs
}

pub fn all() -> Vec<Kernel> {
    vec![relu(), gemm(), redundant(), mixed()]
}
