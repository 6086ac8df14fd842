//! Building kernels in Rust: lowerings call typed helpers instead of assembling `Inst`s by hand.
//!
//! Loops are built with closures so that the region being filled is always the innermost open
//! one — nesting in the Rust code mirrors nesting in the IR, and an unclosed loop cannot exist.

use crate::ir::*;

pub struct KernelBuilder {
    name: String,
    bufs: Vec<BufDecl>,
    types: Vec<Type>,
    /// Open regions, innermost last.
    stack: Vec<Vec<Inst>>,
}

impl KernelBuilder {
    pub fn new(name: impl Into<String>) -> Self {
        KernelBuilder {
            name: name.into(),
            bufs: Vec::new(),
            types: Vec::new(),
            stack: vec![Vec::new()],
        }
    }

    pub fn buf(&mut self, name: impl Into<String>, elem: Type, len: usize, readonly: bool) -> Buf {
        self.bufs.push(BufDecl {
            name: name.into(),
            elem,
            len,
            readonly,
        });
        Buf(self.bufs.len() as u32 - 1)
    }

    pub fn ty(&self, v: Val) -> Type {
        self.types[v.index()]
    }

    pub fn new_val(&mut self, ty: Type) -> Val {
        self.types.push(ty);
        Val(self.types.len() as u32 - 1)
    }

    fn push(&mut self, kind: InstKind, results: Vec<Val>) {
        self.stack
            .last_mut()
            .expect("a region is open")
            .push(Inst { kind, results });
    }

    fn inst(&mut self, ty: Type, kind: InstKind) -> Val {
        let v = self.new_val(ty);
        self.push(kind, vec![v]);
        v
    }

    pub fn iconst(&mut self, ty: Type, x: i64) -> Val {
        self.inst(ty, InstKind::Iconst(ty, x))
    }

    pub fn index(&mut self, x: i64) -> Val {
        self.iconst(Type::Index, x)
    }

    pub fn fconst(&mut self, x: f32) -> Val {
        self.inst(Type::F32, InstKind::Fconst(x))
    }

    /// A constant splatted to a vector type (or a scalar when `ty` is scalar).
    pub fn fsplat(&mut self, ty: Type, x: f32) -> Val {
        let s = self.fconst(x);
        if ty.is_vector() { self.splat(ty, s) } else { s }
    }

    pub fn binary(&mut self, op: BinOp, a: Val, b: Val) -> Val {
        let ty = self.ty(a);
        self.inst(ty, InstKind::Binary(op, a, b))
    }

    pub fn add(&mut self, a: Val, b: Val) -> Val {
        self.binary(BinOp::Add, a, b)
    }
    pub fn sub(&mut self, a: Val, b: Val) -> Val {
        self.binary(BinOp::Sub, a, b)
    }
    pub fn mul(&mut self, a: Val, b: Val) -> Val {
        self.binary(BinOp::Mul, a, b)
    }
    pub fn div(&mut self, a: Val, b: Val) -> Val {
        self.binary(BinOp::Div, a, b)
    }
    pub fn min(&mut self, a: Val, b: Val) -> Val {
        self.binary(BinOp::Min, a, b)
    }
    pub fn max(&mut self, a: Val, b: Val) -> Val {
        self.binary(BinOp::Max, a, b)
    }

    /// `a + k` for an index value, folding `k == 0`.
    pub fn add_imm(&mut self, a: Val, k: i64) -> Val {
        if k == 0 {
            return a;
        }
        let c = self.iconst(self.ty(a), k);
        self.add(a, c)
    }

    /// `a * k` for an index value, folding `k == 1` and `k == 0`.
    pub fn mul_imm(&mut self, a: Val, k: i64) -> Val {
        if k == 1 {
            return a;
        }
        let c = self.iconst(self.ty(a), k);
        self.mul(a, c)
    }

    pub fn unary(&mut self, op: UnOp, a: Val) -> Val {
        let ty = self.ty(a);
        self.inst(ty, InstKind::Unary(op, a))
    }

    pub fn fma(&mut self, a: Val, b: Val, c: Val) -> Val {
        let ty = self.ty(c);
        self.inst(ty, InstKind::Fma(a, b, c))
    }

    pub fn cmp(&mut self, op: CmpOp, a: Val, b: Val) -> Val {
        let ty = match self.ty(a) {
            Type::F32X4 | Type::I32X4 => Type::I32X4,
            t if t.is_vector() => t,
            _ => Type::Bool,
        };
        self.inst(ty, InstKind::Cmp(op, a, b))
    }

    pub fn select(&mut self, c: Val, a: Val, b: Val) -> Val {
        let ty = self.ty(a);
        self.inst(ty, InstKind::Select(c, a, b))
    }

    pub fn splat(&mut self, ty: Type, x: Val) -> Val {
        self.inst(ty, InstKind::Splat(ty, x))
    }

    pub fn extract(&mut self, v: Val, lane: u8) -> Val {
        let ty = self.ty(v).lane();
        self.inst(ty, InstKind::Extract(v, lane))
    }

    pub fn insert(&mut self, v: Val, x: Val, lane: u8) -> Val {
        let ty = self.ty(v);
        self.inst(ty, InstKind::Insert(v, x, lane))
    }

    pub fn bitcast(&mut self, ty: Type, v: Val) -> Val {
        self.inst(ty, InstKind::Bitcast(ty, v))
    }

    pub fn reduce(&mut self, op: RedOp, v: Val) -> Val {
        let ty = self.ty(v).lane();
        self.inst(ty, InstKind::Reduce(op, v))
    }

    pub fn cast(&mut self, ty: Type, v: Val) -> Val {
        if self.ty(v) == ty {
            return v;
        }
        self.inst(ty, InstKind::Cast(ty, v))
    }

    pub fn load(&mut self, ty: Type, buf: Buf, off: Val, disp: i64) -> Val {
        self.inst(ty, InstKind::Load(ty, buf, off, disp))
    }

    pub fn store(&mut self, buf: Buf, off: Val, disp: i64, v: Val) {
        self.push(InstKind::Store(buf, off, disp, v), vec![]);
    }

    pub fn call(&mut self, h: Helper, args: &[Val]) -> Val {
        self.inst(Type::F32, InstKind::Call(h, args.to_vec()))
    }

    /// `acc + dot(u8 a, s8 b)` per group of four bytes (see [`InstKind::DotU8S8`]).
    pub fn dot_u8s8(&mut self, acc: Val, a: Val, b: Val) -> Val {
        self.inst(Type::I32X4, InstKind::DotU8S8(acc, a, b))
    }

    /// Sixteen `i32` lanes saturated to `[0, 255]` as bytes (see [`InstKind::NarrowU8`]).
    pub fn narrow_u8(&mut self, a: Val, b: Val, c: Val, d: Val) -> Val {
        self.inst(Type::I8X16, InstKind::NarrowU8([a, b, c, d]))
    }

    /// Bytes `4·part ..` of an `i8x16`, zero-extended to `i32x4` (see [`InstKind::WidenU8`]).
    pub fn widen_u8(&mut self, v: Val, part: u8) -> Val {
        self.inst(Type::I32X4, InstKind::WidenU8(v, part))
    }

    /// Bytes of `a` then `b` picked by `m` (see [`InstKind::Shuffle`]).
    pub fn shuffle(&mut self, a: Val, b: Val, m: [u8; 16]) -> Val {
        self.inst(Type::I8X16, InstKind::Shuffle(a, b, m))
    }

    /// A loop without carried values.
    pub fn for_(&mut self, lo: i64, hi: i64, step: i64, body: impl FnOnce(&mut Self, Val)) {
        self.loop_(lo, hi, step, false, &[], |b, i, _| {
            body(b, i);
            vec![]
        });
    }

    /// The kernel's parallel loop (top level only).
    pub fn parallel(&mut self, lo: i64, hi: i64, step: i64, body: impl FnOnce(&mut Self, Val)) {
        self.loop_(lo, hi, step, true, &[], |b, i, _| {
            body(b, i);
            vec![]
        });
    }

    /// A loop carrying `inits` through its iterations; returns the final carried values.
    /// The body receives the induction variable and the carried values and returns the next ones.
    pub fn loop_(
        &mut self,
        lo: i64,
        hi: i64,
        step: i64,
        parallel: bool,
        inits: &[Val],
        body: impl FnOnce(&mut Self, Val, &[Val]) -> Vec<Val>,
    ) -> Vec<Val> {
        let var = self.new_val(Type::Index);
        let args: Vec<Val> = inits.iter().map(|&v| self.new_val(self.ty(v))).collect();
        self.stack.push(Vec::new());
        let next = body(self, var, &args);
        self.push(InstKind::Yield(next), vec![]);
        let insts = self.stack.pop().expect("loop region");
        let results: Vec<Val> = inits.iter().map(|&v| self.new_val(self.ty(v))).collect();
        self.push(
            InstKind::Loop(Box::new(Loop {
                var,
                lo,
                hi,
                step,
                parallel,
                inits: inits.to_vec(),
                args,
                body: Region { insts },
            })),
            results.clone(),
        );
        results
    }

    pub fn finish(mut self) -> Kernel {
        assert_eq!(self.stack.len(), 1, "unclosed loop region");
        Kernel {
            name: self.name,
            bufs: self.bufs,
            body: Region {
                insts: self.stack.pop().unwrap_or_default(),
            },
            types: self.types,
        }
    }
}
