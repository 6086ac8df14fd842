//! The int8 instructions (`dot_u8s8`, `narrow_u8`, `widen_u8`, `shuffle`) and the scalar/vector byte
//! moves the int8 kernels rely on: the JIT must reproduce the reference evaluator bit for
//! bit, on both code paths of `dot_u8s8` (`vpdpbusd` and the exact `pmaddwd` fallback, which
//! a VNNI host runs through `Jit::with_isa`), with seeded random and extreme data.

use kiln_core::Rng;
use kiln_loop::codegen::{HostIsa, Jit};
use kiln_loop::eval::{self, Data, Scalar};
use kiln_loop::passes;
use kiln_loop::*;

/// The code paths to test: this host's, and the one without VNNI.
fn paths() -> Vec<(&'static str, HostIsa)> {
    let native = HostIsa::native();
    let mut v = vec![(
        "no-vnni",
        HostIsa {
            avx_vnni: false,
            ..native
        },
    )];
    if native.avx_vnni {
        v.push(("vnni", native));
    } else {
        println!("note: this host has no VNNI; only the fallback path of dot_u8s8 is run");
    }
    v
}

fn ptr(d: &mut Data) -> *mut u8 {
    match d {
        Data::F32(v) => v.as_mut_ptr() as *mut u8,
        Data::I32(v) => v.as_mut_ptr() as *mut u8,
        Data::I16(v) => v.as_mut_ptr() as *mut u8,
        Data::I8(v) => v.as_mut_ptr() as *mut u8,
        Data::U8(v) => v.as_mut_ptr(),
        Data::Index(v) => v.as_mut_ptr() as *mut u8,
    }
}

/// Compiles `k` for `isa` and runs it on `bufs` (the whole parallel range).
fn jit_run(k: &Kernel, bufs: &mut [Data], isa: HostIsa) {
    verify::verify_kernel(k).unwrap_or_else(|e| panic!("{e}\n{}", text::print_kernel(k)));
    for (d, b) in bufs.iter().zip(&k.bufs) {
        assert_eq!((d.elem(), d.len()), (b.elem, b.len), "buffer {}", b.name);
    }
    let mut jit = Jit::with_isa(isa).expect("a JIT");
    jit.add(k).expect("kernel compiles");
    let f = jit.finish().expect("links")[0];
    let ptrs: Vec<*mut u8> = bufs.iter_mut().map(ptr).collect();
    let (lo, hi) = k.parallel_extent().map_or((0, 0), |(lo, hi, _)| (lo, hi));
    // SAFETY: every buffer has the declared element type and length, and the verifier
    // proved the kernel's accesses lie inside them.
    unsafe { (f.entry)(ptrs.as_ptr(), lo, hi) };
}

/// Runs `k` in the evaluator and in the JIT on every path; the results must be identical.
fn check_same(k: &Kernel, bufs: &[Data]) -> Vec<Data> {
    let mut want = bufs.to_vec();
    eval::run(k, &mut want).unwrap_or_else(|e| panic!("{e}"));
    for (name, isa) in paths() {
        let mut got = bufs.to_vec();
        jit_run(k, &mut got, isa);
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            let same = match (w, g) {
                (Data::F32(w), Data::F32(g)) => {
                    w.iter().zip(g).all(|(a, b)| a.to_bits() == b.to_bits())
                }
                _ => w == g,
            };
            assert!(
                same,
                "kernel @{} on the {name} path: buffer @{i} ({}) differs\nwant {w:?}\ngot  {g:?}",
                k.name, k.bufs[i].name
            );
        }
    }
    want
}

/// A byte biased towards the extremes of its range (as u8 in `0..=255`).
fn byte(rng: &mut Rng) -> i64 {
    match rng.next_u64() % 8 {
        0 => 0,
        1 => 255,
        2 => 128,
        3 => 127,
        _ => (rng.next_u64() % 256) as i64,
    }
}

/// An i32 biased towards values where saturation and wrapping happen.
fn int32(rng: &mut Rng) -> i64 {
    const EDGES: [i64; 16] = [
        0,
        -1,
        255,
        256,
        32767,
        32768,
        -32768,
        -32769,
        65535,
        65536,
        -65536,
        1 << 20,
        i32::MAX as i64,
        i32::MIN as i64,
        i32::MAX as i64 - 100_000,
        i32::MIN as i64 + 100_000,
    ];
    match rng.next_u64() % 3 {
        0 => EDGES[(rng.next_u64() % 16) as usize],
        1 => (rng.next_u64() % 1024) as i64 - 512,
        _ => rng.next_u64() as i32 as i64,
    }
}

fn fill(d: &mut Data, rng: &mut Rng, f: impl Fn(&mut Rng) -> i64) {
    for i in 0..d.len() {
        d.set(i, Scalar::I(f(rng)));
    }
}

/// out[v] = dot_u8s8(acc[v], a[v], b[v]) for `n` vectors, in the parallel loop.
fn dot_kernel(n: usize) -> Kernel {
    let mut b = KernelBuilder::new("dot");
    let acc = b.buf("acc", Type::I32, 4 * n, true);
    let a = b.buf("a", Type::U8, 16 * n, true);
    let w = b.buf("w", Type::I8, 16 * n, true);
    let out = b.buf("out", Type::I32, 4 * n, false);
    b.parallel(0, n as i64, 1, |b, i| {
        let o4 = b.mul_imm(i, 4);
        let o16 = b.mul_imm(i, 16);
        let c = b.load(Type::I32X4, acc, o4, 0);
        let x = b.load(Type::I8X16, a, o16, 0);
        let y = b.load(Type::I8X16, w, o16, 0);
        let r = b.dot_u8s8(c, x, y);
        b.store(out, o4, 0, r);
    });
    b.finish()
}

#[test]
fn dot_u8s8_matches_eval_on_both_paths() {
    let n = 256;
    let k = dot_kernel(n);
    for seed in 0..8 {
        let mut rng = Rng::new(0xd07 + seed);
        let mut bufs: Vec<Data> = k
            .bufs
            .iter()
            .map(|b| Data::zeros(b.elem, b.len).unwrap())
            .collect();
        fill(&mut bufs[0], &mut rng, int32);
        fill(&mut bufs[1], &mut rng, byte);
        fill(&mut bufs[2], &mut rng, |r| byte(r) - 128);
        // Extreme rows: a = 255 everywhere with b = -128 (the most negative products) and
        // b = 127 (the most positive), on accumulators that must wrap.
        for (row, (wv, accv)) in [
            (-128, i32::MIN as i64 + 5),
            (127, i32::MAX as i64 - 3),
            (-128, 0),
            (127, i32::MIN as i64),
        ]
        .into_iter()
        .enumerate()
        {
            for j in 0..16 {
                bufs[1].set(16 * row + j, Scalar::I(255));
                bufs[2].set(16 * row + j, Scalar::I(wv));
            }
            for j in 0..4 {
                bufs[0].set(4 * row + j, Scalar::I(accv));
            }
        }
        let out = check_same(&k, &bufs);
        // The evaluator itself, against the definition written out once more.
        let Data::I32(o) = &out[3] else {
            unreachable!()
        };
        assert_eq!(o[0], (i32::MIN + 5).wrapping_add(4 * 255 * -128));
        assert_eq!(o[4], (i32::MAX - 3).wrapping_add(4 * 255 * 127));
        assert_eq!(o[8], 4 * 255 * -128);
        for v in 0..n {
            for lane in 0..4 {
                let mut s = bufs[0].get(4 * v + lane).int() as i32;
                for j in 0..4 {
                    let p = 16 * v + 4 * lane + j;
                    let x = bufs[1].get(p).int() as u8 as i32;
                    let y = bufs[2].get(p).int() as i8 as i32;
                    s = s.wrapping_add(x * y);
                }
                assert_eq!(o[4 * v + lane], s, "vector {v} lane {lane}");
            }
        }
    }
}

/// A reduction: out = Σ_k dot(a[k], b[k]) with the accumulator carried through a loop, as a
/// GEMM's K loop does (block parameters, several chains).
#[test]
fn dot_u8s8_accumulates_through_a_loop() {
    let (chains, kk) = (3usize, 37usize);
    let mut b = KernelBuilder::new("dot_loop");
    let a = b.buf("a", Type::U8, 16 * kk, true);
    let w = b.buf("w", Type::I8, 16 * kk * chains, true);
    let out = b.buf("out", Type::I32, 4 * chains, false);
    let zero = b.iconst(Type::I32, 0);
    let zero = b.splat(Type::I32X4, zero);
    let init = vec![zero; chains];
    let accs = b.loop_(0, kk as i64, 1, false, &init, |b, k, accs| {
        let o = b.mul_imm(k, 16);
        let x = b.load(Type::I8X16, a, o, 0);
        let ow = b.mul_imm(k, (16 * chains) as i64);
        accs.iter()
            .enumerate()
            .map(|(c, &acc)| {
                let y = b.load(Type::I8X16, w, ow, (16 * c) as i64);
                b.dot_u8s8(acc, x, y)
            })
            .collect()
    });
    let z = b.index(0);
    for (c, &v) in accs.iter().enumerate() {
        b.store(out, z, (4 * c) as i64, v);
    }
    let k = b.finish();
    let mut rng = Rng::new(77);
    let mut bufs = vec![
        Data::zeros(Type::U8, 16 * kk).unwrap(),
        Data::zeros(Type::I8, 16 * kk * chains).unwrap(),
        Data::zeros(Type::I32, 4 * chains).unwrap(),
    ];
    fill(&mut bufs[0], &mut rng, byte);
    fill(&mut bufs[1], &mut rng, |r| byte(r) - 128);
    check_same(&k, &bufs);
}

#[test]
fn narrow_u8_saturates_every_i32() {
    let n = 64;
    let mut b = KernelBuilder::new("narrow");
    let x = b.buf("x", Type::I32, 16 * n, true);
    let y = b.buf("y", Type::U8, 16 * n, false);
    let z = b.buf("z", Type::I8, 16 * n, false);
    b.parallel(0, n as i64, 1, |b, i| {
        let o = b.mul_imm(i, 16);
        let v: Vec<Val> = (0..4).map(|q| b.load(Type::I32X4, x, o, 4 * q)).collect();
        let r = b.narrow_u8(v[0], v[1], v[2], v[3]);
        b.store(y, o, 0, r);
        b.store(z, o, 0, r);
    });
    let k = b.finish();
    for seed in 0..4 {
        let mut rng = Rng::new(0x4a77 + seed);
        let mut bufs = vec![
            Data::zeros(Type::I32, 16 * n).unwrap(),
            Data::zeros(Type::U8, 16 * n).unwrap(),
            Data::zeros(Type::I8, 16 * n).unwrap(),
        ];
        fill(&mut bufs[0], &mut rng, int32);
        let out = check_same(&k, &bufs);
        let (Data::I32(xs), Data::U8(ys)) = (&bufs[0], &out[1]) else {
            unreachable!()
        };
        for (x, y) in xs.iter().zip(ys) {
            assert_eq!(i32::from(*y), (*x).clamp(0, 255), "narrow_u8 of {x}");
        }
    }
}

#[test]
fn widen_u8_zero_extends_each_part() {
    let n = 32;
    let mut b = KernelBuilder::new("widen");
    let x = b.buf("x", Type::U8, 16 * n, true);
    let y = b.buf("y", Type::I32, 16 * n, false);
    b.parallel(0, n as i64, 1, |b, i| {
        let o = b.mul_imm(i, 16);
        let v = b.load(Type::I8X16, x, o, 0);
        for part in 0..4u8 {
            let w = b.widen_u8(v, part);
            b.store(y, o, 4 * i64::from(part), w);
        }
    });
    let k = b.finish();
    let mut rng = Rng::new(5);
    let mut bufs = vec![
        Data::zeros(Type::U8, 16 * n).unwrap(),
        Data::zeros(Type::I32, 16 * n).unwrap(),
    ];
    fill(&mut bufs[0], &mut rng, byte);
    let out = check_same(&k, &bufs);
    let (Data::U8(xs), Data::I32(ys)) = (&bufs[0], &out[1]) else {
        unreachable!()
    };
    for (x, y) in xs.iter().zip(ys) {
        assert_eq!(i32::from(*x), *y);
    }
}

/// `shuffle` picks bytes of its two operands: the unpack masks the depthwise kernel uses
/// (single instructions) and random masks (general byte shuffles) agree with the
/// evaluator, and the instruction survives the text form.
#[test]
fn shuffle_picks_bytes_of_both_operands() {
    let mut rng = Rng::new(17);
    let mut masks: Vec<[u8; 16]> = vec![
        std::array::from_fn(|j| (j / 2 + 16 * (j % 2)) as u8),
        std::array::from_fn(|j| (8 + j / 2 + 16 * (j % 2)) as u8),
        std::array::from_fn(|j| ((j / 4) * 2 + j % 2 + 16 * ((j / 2) % 2)) as u8),
        std::array::from_fn(|j| (8 + (j / 4) * 2 + j % 2 + 16 * ((j / 2) % 2)) as u8),
    ];
    for _ in 0..8 {
        masks.push(std::array::from_fn(|_| (rng.next_u64() % 32) as u8));
    }
    for m in masks {
        let mut b = KernelBuilder::new("shuffle");
        let x = b.buf("x", Type::U8, 64, true);
        let y = b.buf("y", Type::U8, 32, false);
        b.for_(0, 32, 16, |b, i| {
            let lo = b.load(Type::I8X16, x, i, 0);
            let hi = b.load(Type::I8X16, x, i, 32);
            let s = b.shuffle(lo, hi, m);
            b.store(y, i, 0, s);
        });
        let k = b.finish();
        let txt = text::print_kernel(&k);
        assert!(txt.contains("shuffle %"), "{txt}");
        assert_eq!(text::print_kernel(&text::parse_kernel(&txt).unwrap()), txt);
        let mut bufs = vec![
            Data::zeros(Type::U8, 64).unwrap(),
            Data::zeros(Type::U8, 32).unwrap(),
        ];
        fill(&mut bufs[0], &mut rng, byte);
        let out = check_same(&k, &bufs);
        let (Data::U8(xs), Data::U8(ys)) = (&bufs[0], &out[1]) else {
            unreachable!()
        };
        for half in 0..2 {
            for (j, &i) in m.iter().enumerate() {
                let i = usize::from(i);
                let src = if i < 16 {
                    16 * half + i
                } else {
                    32 + 16 * half + i - 16
                };
                assert_eq!(ys[16 * half + j], xs[src], "mask {m:?}, byte {j}");
            }
        }
    }
}

/// narrow ∘ widen is the identity on bytes, and a whole requantisation-like epilogue
/// (widen, add, multiply, narrow) agrees with the evaluator.
#[test]
fn widen_then_narrow_round_trips() {
    let mut b = KernelBuilder::new("epilogue");
    let x = b.buf("x", Type::U8, 64, true);
    let y = b.buf("y", Type::U8, 64, false);
    let s = b.buf("s", Type::U8, 64, false);
    let three = b.iconst(Type::I32, 3);
    let three = b.splat(Type::I32X4, three);
    let bias = b.iconst(Type::I32, -200);
    let bias = b.splat(Type::I32X4, bias);
    b.for_(0, 64, 16, |b, i| {
        let v = b.load(Type::I8X16, x, i, 0);
        let parts: Vec<Val> = (0..4).map(|p| b.widen_u8(v, p)).collect();
        let back = b.narrow_u8(parts[0], parts[1], parts[2], parts[3]);
        b.store(y, i, 0, back);
        let scaled: Vec<Val> = parts
            .iter()
            .map(|&p| {
                let m = b.mul(p, three);
                b.add(m, bias)
            })
            .collect();
        let r = b.narrow_u8(scaled[0], scaled[1], scaled[2], scaled[3]);
        b.store(s, i, 0, r);
    });
    let k = b.finish();
    let mut rng = Rng::new(9);
    let mut bufs = vec![
        Data::zeros(Type::U8, 64).unwrap(),
        Data::zeros(Type::U8, 64).unwrap(),
        Data::zeros(Type::U8, 64).unwrap(),
    ];
    fill(&mut bufs[0], &mut rng, byte);
    let out = check_same(&k, &bufs);
    assert_eq!(out[1], bufs[0]);
}

/// Byte data as the quantize kernels move it: scalar `load u8`/`load i8` cast to i32, an
/// i32 cast back to u8 (wrapping) and stored, and i8x16 vectors through u8 buffers.
#[test]
fn byte_loads_stores_and_casts() {
    let n = 48;
    let mut b = KernelBuilder::new("bytes");
    let u = b.buf("u", Type::U8, n, true);
    let s = b.buf("s", Type::I8, n, true);
    let x = b.buf("x", Type::I32, n, true);
    let wu = b.buf("wu", Type::I32, n, false);
    let ws = b.buf("ws", Type::I32, n, false);
    let nu = b.buf("nu", Type::U8, n, false);
    let ni = b.buf("ni", Type::I8, n, false);
    let cu = b.buf("cu", Type::U8, n, false);
    let vu = b.buf("vu", Type::U8, n, false);
    b.for_(0, n as i64, 1, |b, i| {
        let a = b.load(Type::U8, u, i, 0);
        let a = b.cast(Type::I32, a);
        b.store(wu, i, 0, a);
        let c = b.load(Type::I8, s, i, 0);
        let c = b.cast(Type::I32, c);
        b.store(ws, i, 0, c);
        let v = b.load(Type::I32, x, i, 0);
        let w = b.cast(Type::U8, v);
        b.store(nu, i, 0, w);
        let w8 = b.cast(Type::I8, v);
        b.store(ni, i, 0, w8);
        // The saturating narrowing a quantize kernel writes: clamp, then cast.
        let lo = b.iconst(Type::I32, 0);
        let hi = b.iconst(Type::I32, 255);
        let c = b.max(v, lo);
        let c = b.min(c, hi);
        let c = b.cast(Type::U8, c);
        b.store(cu, i, 0, c);
    });
    b.for_(0, n as i64, 16, |b, i| {
        let v = b.load(Type::I8X16, u, i, 0);
        b.store(vu, i, 0, v);
    });
    let k = b.finish();
    let mut rng = Rng::new(11);
    let mut bufs: Vec<Data> = k
        .bufs
        .iter()
        .map(|b| Data::zeros(b.elem, b.len).unwrap())
        .collect();
    fill(&mut bufs[0], &mut rng, byte);
    fill(&mut bufs[1], &mut rng, |r| byte(r) - 128);
    fill(&mut bufs[2], &mut rng, int32);
    let out = check_same(&k, &bufs);
    let (Data::U8(us), Data::I32(wus)) = (&bufs[0], &out[3]) else {
        unreachable!()
    };
    assert!(us.iter().zip(wus).all(|(a, b)| i32::from(*a) == *b));
    let (Data::I32(xs), Data::U8(nus), Data::U8(cus)) = (&bufs[2], &out[5], &out[7]) else {
        unreachable!()
    };
    for ((x, n), c) in xs.iter().zip(nus).zip(cus) {
        assert_eq!(*n, *x as u8, "cast u8 of {x} wraps");
        assert_eq!(i32::from(*c), (*x).clamp(0, 255));
    }
    assert_eq!(out[8], bufs[0]);
}

/// Every scalar conversion the verifier accepts, on values at the edges of each type
/// (NaN, infinities and out-of-range floats included): the JIT matches the evaluator.
#[test]
fn every_scalar_cast_matches_eval() {
    use Type::*;
    let sources = [Index, Bool, F32, I32, I16, I8, U8];
    let targets = [Index, F32, I32, I16, I8, U8];
    let floats = [
        0.0f32,
        -0.0,
        0.5,
        -0.5,
        1.5,
        -1.5,
        127.9,
        128.0,
        -128.9,
        -129.0,
        255.5,
        256.0,
        300.7,
        -300.7,
        32767.9,
        32768.0,
        -32769.0,
        70000.0,
        3e9,
        -3e9,
        1e20,
        -1e20,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        16777217.0,
    ];
    let n = floats.len().max(32);
    let mut rng = Rng::new(3);
    for from in sources {
        for to in targets {
            if from == to {
                continue;
            }
            let mut b = KernelBuilder::new(format!("cast_{from}_{to}"));
            let src_elem = if from == Bool { I32 } else { from };
            let x = b.buf("x", src_elem, n, true);
            let y = b.buf("y", to, n, false);
            b.for_(0, n as i64, 1, |b, i| {
                let mut v = b.load(src_elem, x, i, 0);
                if from == Bool {
                    let z = b.iconst(I32, 0);
                    v = b.cmp(CmpOp::Lt, v, z);
                }
                let c = b.cast(to, v);
                b.store(y, i, 0, c);
            });
            let k = b.finish();
            let mut xs = Data::zeros(src_elem, n).unwrap();
            for i in 0..n {
                let v = match src_elem {
                    F32 => Scalar::F(floats[i % floats.len()]),
                    Index => Scalar::I(match i % 4 {
                        0 => i64::MIN + i as i64,
                        1 => i64::MAX - i as i64,
                        _ => rng.next_u64() as i64 >> (rng.next_u64() % 63),
                    }),
                    _ => Scalar::I(int32(&mut rng)),
                };
                xs.set(i, v);
            }
            let bufs = vec![xs, Data::zeros(to, n).unwrap()];
            check_same(&k, &bufs);
        }
    }
}

/// The vector float ↔ int conversions, on the same edge values.
#[test]
fn vector_casts_match_eval() {
    let mut b = KernelBuilder::new("vcast");
    let x = b.buf("x", Type::F32, 32, true);
    let xi = b.buf("xi", Type::I32, 32, true);
    let y = b.buf("y", Type::I32, 32, false);
    let yf = b.buf("yf", Type::F32, 32, false);
    b.for_(0, 32, 4, |b, i| {
        let v = b.load(Type::F32X4, x, i, 0);
        let c = b.cast(Type::I32X4, v);
        b.store(y, i, 0, c);
        let v = b.load(Type::I32X4, xi, i, 0);
        let c = b.cast(Type::F32X4, v);
        b.store(yf, i, 0, c);
    });
    let k = b.finish();
    let mut rng = Rng::new(1);
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        3e9,
        -3e9,
        -0.5,
        2.5,
        1e-30,
    ];
    let mut xs = Data::zeros(Type::F32, 32).unwrap();
    for i in 0..32 {
        let v = if i < specials.len() {
            specials[i]
        } else {
            rng.uniform(-1e6, 1e6)
        };
        xs.set(i, Scalar::F(v));
    }
    let mut xis = Data::zeros(Type::I32, 32).unwrap();
    fill(&mut xis, &mut rng, int32);
    let bufs = vec![
        xs,
        xis,
        Data::zeros(Type::I32, 32).unwrap(),
        Data::zeros(Type::F32, 32).unwrap(),
    ];
    check_same(&k, &bufs);
}

/// Disassembly of three `dot_u8s8` steps: one `vpdpbusd` each and nothing else of the
/// widening tree on the VNNI path; `pmaddwd` and no `vpdpbusd` on the fallback.
#[test]
fn dot_u8s8_codegen_picks_the_instruction() {
    let mut b = KernelBuilder::new("dot3");
    let a = b.buf("a", Type::U8, 16, true);
    let w = b.buf("w", Type::I8, 48, true);
    let out = b.buf("out", Type::I32, 4, false);
    let z = b.index(0);
    let x = b.load(Type::I8X16, a, z, 0);
    let mut acc = b.load(Type::I32X4, out, z, 0);
    for c in 0..3 {
        let y = b.load(Type::I8X16, w, z, 16 * c);
        acc = b.dot_u8s8(acc, x, y);
    }
    b.store(out, z, 0, acc);
    let k = b.finish();
    let asm = |isa: HostIsa| {
        let mut jit = Jit::with_isa(isa).unwrap();
        jit.keep_asm = true;
        jit.add(&k).unwrap();
        jit.asm.concat()
    };
    let count = |s: &str, pat: &str| s.matches(pat).count();
    let native = HostIsa::native();
    let fallback = asm(HostIsa {
        avx_vnni: false,
        ..native
    });
    println!("fallback path:\n{fallback}");
    assert_eq!(count(&fallback, "pmaddwd"), 6, "two pmaddwd per dot_u8s8");
    assert_eq!(count(&fallback, "vpdpbusd"), 0);
    assert_eq!(
        count(&fallback, "pmaddubsw"),
        0,
        "pmaddubsw saturates at i16"
    );
    if !native.avx_vnni {
        println!("note: this host has no VNNI; the vpdpbusd path is not checked");
        return;
    }
    let vnni = asm(native);
    println!("VNNI path:\n{vnni}");
    assert_eq!(count(&vnni, "vpdpbusd"), 3, "one vpdpbusd per dot_u8s8");
    for absent in ["pmaddwd", "pmovsx", "pmovzx", "pmull", "phadd"] {
        assert_eq!(
            count(&vnni, absent),
            0,
            "{absent} left over from the VNNI tree"
        );
    }
}

/// `KILN_NO_VNNI=1` switches `HostIsa::detect` to the fallback; `Jit::with_isa` never enables
/// a feature the host lacks.
#[test]
fn isa_selection() {
    let native = HostIsa::native();
    let all = HostIsa {
        fma: true,
        avx_vnni: true,
    };
    assert_eq!(Jit::with_isa(all).unwrap().isa(), native);
    let none = HostIsa {
        fma: false,
        avx_vnni: false,
    };
    assert_eq!(Jit::with_isa(none).unwrap().isa(), none);
    let env = |v: Option<&str>| native.with_no_vnni_env(v.map(std::ffi::OsStr::new));
    let off = env(Some("1"));
    assert_eq!(env(Some("0")), native);
    assert_eq!(env(Some("")), native);
    assert_eq!(env(None), native);
    assert!(!off.avx_vnni);
    assert_eq!(off.fma, native.fma);
}

/// The int8 instructions survive text, the verifier and the loop passes: duplicates merge,
/// dead ones go, and the results do not change.
#[test]
fn int8_insts_through_text_and_passes() {
    let mut b = KernelBuilder::new("mix");
    let a = b.buf("a", Type::U8, 160, true);
    let w = b.buf("w", Type::I8, 160, true);
    let y = b.buf("y", Type::U8, 160, false);
    // Ten iterations: more than `loop.unroll` unrolls, so one copy of the body stays.
    b.for_(0, 160, 16, |b, i| {
        let x = b.load(Type::I8X16, a, i, 0);
        let v = b.load(Type::I8X16, w, i, 0);
        let p: Vec<Val> = (0..4).map(|q| b.widen_u8(x, q)).collect();
        let d1 = b.dot_u8s8(p[0], x, v);
        let d2 = b.dot_u8s8(p[0], x, v);
        let _dead = b.dot_u8s8(p[1], v, x);
        let s = b.add(d1, d2);
        let r = b.narrow_u8(s, p[1], p[2], p[3]);
        b.store(y, i, 0, r);
    });
    let k = b.finish();
    let txt = text::print_kernel(&k);
    assert!(txt.contains("dot_u8s8 %"), "{txt}");
    assert!(txt.contains("widen_u8 %"), "{txt}");
    assert!(txt.contains("narrow_u8 %"), "{txt}");
    let parsed = text::parse_kernel(&txt).unwrap();
    assert_eq!(text::print_kernel(&parsed), txt);
    let mut m = Module {
        kernels: vec![k.clone()],
    };
    let mut pm = kiln_core::PassManager::new(passes::registry().parse("loop-opt").unwrap());
    pm.run(&mut m).unwrap();
    let opt = &m.kernels[0];
    let dots = text::print_kernel(opt).matches("dot_u8s8").count();
    assert_eq!(
        dots,
        1,
        "cse merges the twin, dce drops the dead one:\n{}",
        text::print_kernel(opt)
    );
    let mut rng = Rng::new(2);
    let mut bufs = vec![
        Data::zeros(Type::U8, 160).unwrap(),
        Data::zeros(Type::I8, 160).unwrap(),
        Data::zeros(Type::U8, 160).unwrap(),
    ];
    fill(&mut bufs[0], &mut rng, byte);
    fill(&mut bufs[1], &mut rng, |r| byte(r) - 128);
    let before = check_same(&k, &bufs);
    let after = check_same(opt, &bufs);
    assert_eq!(before, after);
}

#[test]
fn int8_peak_is_measured() {
    let host = peak::int8_peak_gops().unwrap();
    let fallback = peak::int8_peak_gops_with(HostIsa {
        avx_vnni: false,
        ..HostIsa::native()
    })
    .unwrap();
    println!("int8 peak: {host:.1} GOP/s (this host's path), fallback {fallback:.1} GOP/s");
    assert!(host.is_finite() && host > 1.0, "{host}");
    assert!(fallback.is_finite() && fallback > 1.0, "{fallback}");
}
