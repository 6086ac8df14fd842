//! Random kernels: every one verifies, round-trips through the text format, and computes the
//! same results (reference evaluator, random inputs) after every pass and pipeline.
//! Seeded, so a failure reproduces; the failing seed and both kernels are printed.

mod common;

use kiln_core::{Ir, PassManager, Rng};
use kiln_loop::eval;
use kiln_loop::passes::registry;
use kiln_loop::text::{parse_kernel, print_kernel};
use kiln_loop::verify::verify_kernel;
use kiln_loop::*;

const LEN: usize = 256;

struct Gen {
    rng: Rng,
    b: KernelBuilder,
    /// Visible values, innermost scope last.
    scopes: Vec<Vec<Val>>,
    bufs: [Buf; 4],
    budget: usize,
}

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    fn pick(&mut self, ty: Type) -> Option<Val> {
        let all: Vec<Val> = self
            .scopes
            .iter()
            .flatten()
            .copied()
            .filter(|&v| self.b.ty(v) == ty)
            .collect();
        if all.is_empty() {
            None
        } else {
            Some(all[self.below(all.len() as u64) as usize])
        }
    }

    /// A value of `ty`, made from a constant when none is visible.
    fn value(&mut self, ty: Type) -> Val {
        if self.below(4) > 0
            && let Some(v) = self.pick(ty)
        {
            return v;
        }
        let v = match ty {
            Type::F32 => {
                let specials = [0.0, -0.0, 1.0, 0.5, -2.0, 3.25];
                let x = if self.below(2) == 0 {
                    specials[self.below(specials.len() as u64) as usize]
                } else {
                    self.rng.uniform(-4.0, 4.0)
                };
                self.b.fconst(x)
            }
            Type::Index => {
                let x = self.below(8) as i64;
                self.b.index(x)
            }
            Type::I32 => {
                let x = self.below(41) as i64 - 20;
                self.b.iconst(Type::I32, x)
            }
            Type::Bool => {
                let (a, b) = (self.value(Type::F32), self.value(Type::F32));
                self.b.cmp(CmpOp::Lt, a, b)
            }
            t => {
                let s = self.value(t.lane());
                self.b.splat(t, s)
            }
        };
        self.def(v);
        v
    }

    fn def(&mut self, v: Val) {
        self.scopes.last_mut().expect("a scope").push(v);
    }

    fn offset(&mut self) -> Val {
        self.value(Type::Index)
    }

    fn stmt(&mut self, depth: usize) {
        let tys = [Type::F32, Type::I32, Type::F32X4, Type::I32X4, Type::Index];
        let ty = tys[self.below(tys.len() as u64) as usize];
        let v = match self.below(14) {
            0 | 1 => {
                let ops: &[BinOp] = match ty {
                    t if t.is_float() => &[
                        BinOp::Add,
                        BinOp::Sub,
                        BinOp::Mul,
                        BinOp::Div,
                        BinOp::Min,
                        BinOp::Max,
                    ],
                    Type::Index => &[
                        BinOp::Add,
                        BinOp::Add,
                        BinOp::Sub,
                        BinOp::Mul,
                        BinOp::Min,
                        BinOp::Max,
                    ],
                    _ => &BinOp::ALL,
                };
                let op = ops[self.below(ops.len() as u64) as usize];
                let a = self.value(ty);
                let b = if matches!(op, BinOp::Shl | BinOp::Shr) && ty.is_vector() {
                    self.value(Type::I32)
                } else {
                    self.value(ty)
                };
                let r = self.b.binary(op, a, b);
                if ty == Type::Index {
                    // Keep offsets small: index values feed loads and stores.
                    let m = self.b.index(64);
                    let r = self.b.binary(BinOp::Min, r, m);
                    let z = self.b.index(0);
                    self.b.binary(BinOp::Max, r, z)
                } else {
                    r
                }
            }
            2 => {
                let t = if ty.is_float() { ty } else { Type::F32X4 };
                let (a, b, c) = (self.value(t), self.value(t), self.value(t));
                self.b.fma(a, b, c)
            }
            3 => {
                let ops: &[UnOp] = if ty.is_float() {
                    &UnOp::ALL
                } else {
                    &[UnOp::Neg, UnOp::Abs]
                };
                let op = ops[self.below(ops.len() as u64) as usize];
                let a = self.value(ty);
                self.b.unary(op, a)
            }
            4 => {
                let op = CmpOp::ALL[self.below(6) as usize];
                let (a, b) = (self.value(ty), self.value(ty));
                let m = self.b.cmp(op, a, b);
                let (x, y) = (self.value(ty), self.value(ty));
                self.b.select(m, x, y)
            }
            5 => {
                let (vt, lane) = if self.below(2) == 0 {
                    (Type::F32X4, Type::F32)
                } else {
                    (Type::I32X4, Type::I32)
                };
                let v = self.value(vt);
                match self.below(3) {
                    0 => {
                        let l = self.below(4) as u8;
                        self.b.extract(v, l)
                    }
                    1 => {
                        let x = self.value(lane);
                        let l = self.below(4) as u8;
                        self.b.insert(v, x, l)
                    }
                    _ => {
                        let op = RedOp::ALL[self.below(3) as usize];
                        self.b.reduce(op, v)
                    }
                }
            }
            6 => {
                let (from, to) = [
                    (Type::F32, Type::I32),
                    (Type::I32, Type::F32),
                    (Type::F32X4, Type::I32X4),
                    (Type::I32X4, Type::F32X4),
                    (Type::Index, Type::I32),
                    (Type::I32, Type::Index),
                ][self.below(6) as usize];
                let a = self.value(from);
                if self.below(3) == 0 && from != Type::Index && to != Type::Index {
                    self.b.bitcast(to, a)
                } else if to == Type::Index {
                    // An index made from data could be anything: clamp it.
                    let c = self.b.cast(to, a);
                    let m = self.b.index(64);
                    let r = self.b.binary(BinOp::Min, c, m);
                    let z = self.b.index(0);
                    self.b.binary(BinOp::Max, r, z)
                } else {
                    self.b.cast(to, a)
                }
            }
            7 | 8 => {
                let (buf, t) = match self.below(4) {
                    0 => (self.bufs[0], Type::F32),
                    1 => (self.bufs[0], Type::F32X4),
                    2 => (self.bufs[1], Type::I32),
                    _ => (self.bufs[1], Type::I32X4),
                };
                let off = self.offset();
                let disp = self.below(16) as i64;
                self.b.load(t, buf, off, disp)
            }
            9 | 10 => {
                let (buf, t) = match self.below(4) {
                    0 => (self.bufs[2], Type::F32),
                    1 => (self.bufs[2], Type::F32X4),
                    2 => (self.bufs[3], Type::I32),
                    _ => (self.bufs[3], Type::I32X4),
                };
                let off = self.offset();
                let x = self.value(t);
                let disp = self.below(16) as i64;
                // Stores to the outputs may also be read back.
                if self.below(3) == 0 {
                    let r = self.b.load(t, buf, off, disp);
                    self.def(r);
                }
                self.b.store(buf, off, disp, x);
                return;
            }
            11 => {
                let h = Helper::ALL[self.below(Helper::ALL.len() as u64) as usize];
                let args: Vec<Val> = (0..h.arity()).map(|_| self.value(Type::F32)).collect();
                self.b.call(h, &args)
            }
            _ if depth < 2 && self.budget > 8 => {
                self.loop_(depth);
                return;
            }
            _ => self.value(ty),
        };
        self.def(v);
    }

    fn loop_(&mut self, depth: usize) {
        let lo = self.below(3) as i64;
        let hi = lo + self.below(10) as i64;
        let step = 1 + self.below(3) as i64;
        let n = self.below(3) as usize;
        let tys = [Type::F32, Type::I32, Type::F32X4, Type::Index];
        let inits: Vec<Val> = (0..n)
            .map(|_| {
                let t = tys[self.below(tys.len() as u64) as usize];
                self.value(t)
            })
            .collect();
        // The builder's closure cannot borrow the generator, so the body is generated into a
        // fresh builder state by moving it in and out.
        let mut b = std::mem::replace(&mut self.b, KernelBuilder::new("tmp"));
        let results = b.loop_(lo, hi, step, false, &inits, |bb, i, args| {
            std::mem::swap(&mut self.b, bb);
            self.scopes.push(vec![i]);
            self.scopes.last_mut().unwrap().extend_from_slice(args);
            let k = 1 + self.below(6);
            for _ in 0..k {
                if self.budget == 0 {
                    break;
                }
                self.budget -= 1;
                self.stmt(depth + 1);
            }
            let next: Vec<Val> = args.iter().map(|&a| self.value(self.b.ty(a))).collect();
            self.scopes.pop();
            std::mem::swap(&mut self.b, bb);
            next
        });
        self.b = b;
        for r in results {
            self.def(r);
        }
    }
}

fn random_kernel(seed: u64) -> Kernel {
    let mut b = KernelBuilder::new(format!("random{seed}"));
    let bufs = [
        b.buf("x", Type::F32, LEN, true),
        b.buf("xi", Type::I32, LEN, true),
        b.buf("y", Type::F32, LEN, false),
        b.buf("yi", Type::I32, LEN, false),
    ];
    let mut g = Gen {
        rng: Rng::new(seed),
        b,
        scopes: vec![Vec::new()],
        bufs,
        budget: 40,
    };
    while g.budget > 0 {
        g.budget -= 1;
        g.stmt(0);
    }
    // Store every top-level value so results are observable.
    let vals: Vec<Val> = g.scopes[0].clone();
    for (n, v) in vals.into_iter().enumerate() {
        let t = g.b.ty(v);
        let (buf, v) = match t {
            Type::F32 | Type::F32X4 => (g.bufs[2], v),
            Type::I32 | Type::I32X4 => (g.bufs[3], v),
            Type::Index => (g.bufs[3], g.b.cast(Type::I32, v)),
            _ => continue,
        };
        let off = g.b.index((n as i64 * 4) % (LEN as i64 - 4));
        g.b.store(buf, off, 0, v);
    }
    g.b.finish()
}

#[test]
fn random_kernels_survive_text_and_passes() {
    let lists = [
        "loop.fold-constants",
        "loop.cse",
        "loop.dce",
        "loop.unroll",
        "loop.unroll-inner",
        "loop-opt",
    ];
    let mut ran = 0;
    for seed in 0..300 {
        let k = random_kernel(seed);
        verify_kernel(&k).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", print_kernel(&k)));
        let text = print_kernel(&k);
        let back = parse_kernel(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
        assert_eq!(print_kernel(&back), text, "seed {seed}");
        let mut want = common::inputs(&k, seed);
        if eval::run(&k, &mut want).is_err() {
            // An integer division by zero or similar: nothing to compare.
            continue;
        }
        ran += 1;
        for list in lists {
            let mut m = Module {
                kernels: vec![k.clone()],
            };
            PassManager::new(registry().parse(list).unwrap())
                .run(&mut m)
                .unwrap_or_else(|e| panic!("seed {seed}, {list}: {e}\n{text}"));
            m.verify().unwrap();
            let after = &m.kernels[0];
            let out = print_kernel(after);
            assert_eq!(print_kernel(&parse_kernel(&out).unwrap()), out);
            let mut got = common::inputs(after, seed);
            eval::run(after, &mut got)
                .unwrap_or_else(|e| panic!("seed {seed}, {list}: {e}\n{text}\n---\n{out}"));
            assert!(
                common::same(&want, &got),
                "seed {seed}: {list} changed the results\n{text}\n---\n{out}"
            );
        }
    }
    assert!(
        ran >= 200,
        "only {ran} random kernels ran without a run-time error"
    );
}
