//! Loop IR → Cranelift IR, one kernel at a time.
//!
//! The translation is deliberately literal: every loop-dialect instruction becomes the Cranelift
//! instruction(s) with the same meaning, in the same order, because kernels are compiled with
//! `opt_level=none` (the egraph optimiser re-places pure ops at their uses and spills register
//! blocks, see ARCHITECTURE.md) and the schedule chosen by the loop dialect must survive.
//!
//! One exception to literalness: after a register-blocked reduction, vector constants are
//! reloaded near their uses rather than held in a register (`consts.rs` says why).
//!
//! Loops are emitted rotated (test at the bottom): the trip count of every non-parallel loop is
//! a compile-time constant, so the entry test is decided here and each iteration costs one
//! compare-and-branch.

use crate::ir::*;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    AbiParam, BlockArg, FuncRef, InstBuilder, MemFlagsData, Signature, Value, types,
};
use cranelift_frontend::FunctionBuilder;
use kiln_core::{Result, bail};

mod consts;
mod int8;

use consts::Consts;

/// The Cranelift type that holds a loop-dialect type.
pub fn clif_type(t: Type) -> types::Type {
    match t {
        Type::Index => types::I64,
        Type::Bool | Type::I8 | Type::U8 => types::I8,
        Type::I16 => types::I16,
        Type::I32 => types::I32,
        Type::F32 => types::F32,
        Type::F32X4 => types::F32X4,
        Type::I32X4 => types::I32X4,
        Type::I16X8 => types::I16X8,
        Type::I8X16 => types::I8X16,
    }
}

/// The signature every kernel has: `fn(bufs: *const *mut u8, lo: i64, hi: i64)`. One shape for
/// all kernels lets the runtime call any of them through a single function-pointer type; `lo`
/// and `hi` bound the kernel's parallel loop for the calling thread.
pub fn kernel_signature(sig: &mut Signature) {
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::I64));
}

/// The signature of a math helper with `n` f32 arguments.
pub fn helper_signature(sig: &mut Signature, n: usize) {
    for _ in 0..n {
        sig.params.push(AbiParam::new(types::F32));
    }
    sig.returns.push(AbiParam::new(types::F32));
}

/// Options that change the emitted code.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    /// The host has FMA3: `fma` becomes `vfmadd`; without it, a multiply and an add (Cranelift
    /// would otherwise call `fmaf`, which is both slow and unresolved in the JIT).
    pub fma: bool,
    /// The host has AVX-VNNI (or AVX512-VNNI with AVX512VL) and Cranelift may use it:
    /// `dot_u8s8` is emitted as the tree Cranelift folds into one `vpdpbusd`; without it, as
    /// an exact widening to i16 and `pmaddwd` (see `clif/int8.rs`).
    pub vnni: bool,
}

pub struct Translator<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    kernel: &'a Kernel,
    vals: Vec<Option<Value>>,
    bases: Vec<Value>,
    helpers: &'a dyn Fn(Helper) -> FuncRef,
    feat: Features,
    lo: Value,
    hi: Value,
    consts: Consts,
}

fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// `bitcast` accepts only an endianness flag (it matters when lane counts differ).
fn lanes() -> MemFlagsData {
    MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little)
}

impl<'a, 'b> Translator<'a, 'b> {
    /// Translates `kernel` into the function being built by `b` (whose signature is
    /// [`kernel_signature`]); `helpers` declares a math helper in the function.
    pub fn translate(
        b: &'a mut FunctionBuilder<'b>,
        kernel: &'a Kernel,
        helpers: &'a dyn Fn(Helper) -> FuncRef,
        feat: Features,
    ) -> Result<()> {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let (ptrs, lo, hi) = (params[0], params[1], params[2]);
        let bases = (0..kernel.bufs.len())
            .map(|i| b.ins().load(types::I64, mem(), ptrs, (i * 8) as i32))
            .collect();
        let mut t = Translator {
            b,
            kernel,
            vals: vec![None; kernel.types.len()],
            bases,
            helpers,
            feat,
            lo,
            hi,
            consts: Consts::new(kernel.types.len()),
        };
        t.region(&kernel.body)?;
        t.b.ins().return_(&[]);
        t.b.seal_all_blocks();
        Ok(())
    }

    /// The value of `v` at this point: its translation, or a fresh load of a constant splat
    /// ([`Translator::remat`]).
    fn v(&mut self, v: Val) -> Result<Value> {
        if let Some(x) = self.remat(v) {
            return Ok(x);
        }
        match self.vals.get(v.index()).copied().flatten() {
            Some(x) => Ok(x),
            None => bail!(
                Verify,
                "kernel @{}: {v} used before it is defined",
                self.kernel.name
            ),
        }
    }

    fn def(&mut self, v: Val, x: Value) {
        self.vals[v.index()] = Some(x);
    }

    fn region(&mut self, r: &Region) -> Result<Vec<Value>> {
        let outer = self.consts.enter();
        let mut out = vec![];
        for inst in &r.insts {
            if let InstKind::Yield(vs) = &inst.kind {
                out = vs.iter().map(|&v| self.v(v)).collect::<Result<_>>()?;
                break;
            }
            self.inst(inst)?;
        }
        self.consts.leave(outer);
        Ok(out)
    }

    fn ty(&self, v: Val) -> Type {
        self.kernel.ty(v)
    }

    fn inst(&mut self, inst: &Inst) -> Result<()> {
        self.consts.count += 1;
        let x = match &inst.kind {
            InstKind::Iconst(t, c) => {
                let width = clif_type(*t).bytes() as usize;
                self.consts
                    .scalar(inst.results[0], &c.to_le_bytes()[..width]);
                self.b.ins().iconst(clif_type(*t), *c)
            }
            InstKind::Fconst(c) => {
                self.consts
                    .scalar(inst.results[0], &c.to_bits().to_le_bytes());
                self.b.ins().f32const(*c)
            }
            InstKind::Binary(op, a, b) => self.binary(*op, *a, *b)?,
            InstKind::Unary(op, a) => self.unary(*op, *a)?,
            InstKind::Fma(a, b, c) => {
                let (a, b, c) = (self.v(*a)?, self.v(*b)?, self.v(*c)?);
                if self.feat.fma {
                    self.b.ins().fma(a, b, c)
                } else {
                    let p = self.b.ins().fmul(a, b);
                    self.b.ins().fadd(p, c)
                }
            }
            InstKind::Cmp(op, a, b) => self.cmp(*op, *a, *b)?,
            InstKind::Select(c, a, b) => {
                let (cv, av, bv) = (self.v(*c)?, self.v(*a)?, self.v(*b)?);
                let ty = self.ty(*a);
                if ty.is_vector() {
                    let mask = if self.ty(*c) == ty {
                        cv
                    } else {
                        self.b.ins().bitcast(clif_type(ty), lanes(), cv)
                    };
                    self.b.ins().bitselect(mask, av, bv)
                } else {
                    self.b.ins().select(cv, av, bv)
                }
            }
            InstKind::Splat(t, a) => match self.consts.splat_bytes(*a) {
                Some(bytes) => self.const_splat(inst.results[0], *t, bytes),
                None => {
                    let a = self.v(*a)?;
                    self.b.ins().splat(clif_type(*t), a)
                }
            },
            InstKind::Extract(a, lane) => {
                let a = self.v(*a)?;
                self.b.ins().extractlane(a, *lane)
            }
            InstKind::Insert(v, x, lane) => {
                let (v, x) = (self.v(*v)?, self.v(*x)?);
                self.b.ins().insertlane(v, x, *lane)
            }
            InstKind::Bitcast(t, a) => {
                let a = self.v(*a)?;
                self.b.ins().bitcast(clif_type(*t), lanes(), a)
            }
            InstKind::Reduce(op, a) => self.reduce(*op, *a)?,
            InstKind::Cast(t, a) => self.cast(*t, *a)?,
            InstKind::Load(t, buf, off, disp) => {
                let (addr, imm) = self.address(*buf, *off, *disp)?;
                self.b.ins().load(clif_type(*t), mem(), addr, imm)
            }
            InstKind::Store(buf, off, disp, val) => {
                let (addr, imm) = self.address(*buf, *off, *disp)?;
                let val = self.v(*val)?;
                self.b.ins().store(mem(), val, addr, imm);
                return Ok(());
            }
            InstKind::Call(h, args) => {
                let f = (self.helpers)(*h);
                let args = args
                    .iter()
                    .map(|&a| self.v(a))
                    .collect::<Result<Vec<_>>>()?;
                let call = self.b.ins().call(f, &args);
                self.b.inst_results(call)[0]
            }
            InstKind::DotU8S8(acc, a, b) => self.dot_u8s8(*acc, *a, *b)?,
            InstKind::NarrowU8(vs) => self.narrow_u8(*vs)?,
            InstKind::WidenU8(v, part) => self.widen_u8(*v, *part)?,
            InstKind::Shuffle(a, b, m) => self.shuffle(*a, *b, m)?,
            InstKind::Loop(l) => {
                let results = self.emit_loop(l)?;
                for (r, x) in inst.results.iter().zip(results) {
                    self.def(*r, x);
                }
                return Ok(());
            }
            InstKind::Yield(_) => {
                bail!(Verify, "kernel @{}: yield outside a loop", self.kernel.name)
            }
        };
        if let Some(&r) = inst.results.first() {
            self.def(r, x);
        }
        Ok(())
    }

    /// The address of element `off + disp` of `buf`, as a base register and an immediate.
    fn address(&mut self, buf: Buf, off: Val, disp: i64) -> Result<(Value, i32)> {
        let decl = self.kernel.buf(buf);
        let size = decl.elem.bytes() as i64;
        let off = self.v(off)?;
        let base = self.bases[buf.index()];
        let scaled = if size == 1 {
            off
        } else {
            self.b.ins().ishl_imm_s(off, size.trailing_zeros() as i64)
        };
        let addr = self.b.ins().iadd(base, scaled);
        let imm = i32::try_from(disp * size).map_err(|_| {
            kiln_core::err!(
                Unsupported,
                "kernel @{}: displacement {disp} too large",
                self.kernel.name
            )
        })?;
        Ok((addr, imm))
    }

    fn binary(&mut self, op: BinOp, a: Val, b: Val) -> Result<Value> {
        let ty = self.ty(a);
        let (x, y) = (self.v(a)?, self.v(b)?);
        let ins = self.b.ins();
        Ok(if ty.is_float() {
            match op {
                BinOp::Add => ins.fadd(x, y),
                BinOp::Sub => ins.fsub(x, y),
                BinOp::Mul => ins.fmul(x, y),
                BinOp::Div => ins.fdiv(x, y),
                BinOp::Min => ins.fmin(x, y),
                BinOp::Max => ins.fmax(x, y),
                _ => bail!(
                    Verify,
                    "kernel @{}: `{}` is not defined on {ty}",
                    self.kernel.name,
                    op.name()
                ),
            }
        } else {
            let unsigned = ty == Type::U8;
            match op {
                BinOp::Add => ins.iadd(x, y),
                BinOp::Sub => ins.isub(x, y),
                BinOp::Mul => ins.imul(x, y),
                BinOp::Div => ins.sdiv(x, y),
                BinOp::Rem => ins.srem(x, y),
                BinOp::Min if unsigned => ins.umin(x, y),
                BinOp::Max if unsigned => ins.umax(x, y),
                BinOp::Min => ins.smin(x, y),
                BinOp::Max => ins.smax(x, y),
                BinOp::And => ins.band(x, y),
                BinOp::Or => ins.bor(x, y),
                BinOp::Shl => ins.ishl(x, y),
                BinOp::Shr => ins.sshr(x, y),
            }
        })
    }

    fn unary(&mut self, op: UnOp, a: Val) -> Result<Value> {
        let ty = self.ty(a);
        let x = self.v(a)?;
        let ins = self.b.ins();
        Ok(match (op, ty.is_float()) {
            (UnOp::Neg, true) => ins.fneg(x),
            (UnOp::Abs, true) => ins.fabs(x),
            (UnOp::Sqrt, true) => ins.sqrt(x),
            (UnOp::Floor, true) => ins.floor(x),
            (UnOp::Ceil, true) => ins.ceil(x),
            (UnOp::Nearest, true) => ins.nearest(x),
            (UnOp::Trunc, true) => ins.trunc(x),
            (UnOp::Neg, false) => ins.ineg(x),
            (UnOp::Abs, false) => ins.iabs(x),
            _ => bail!(
                Verify,
                "kernel @{}: `{}` is not defined on {ty}",
                self.kernel.name,
                op.name()
            ),
        })
    }

    fn cmp(&mut self, op: CmpOp, a: Val, b: Val) -> Result<Value> {
        let ty = self.ty(a);
        let (x, y) = (self.v(a)?, self.v(b)?);
        Ok(if ty.is_float() {
            let cc = match op {
                CmpOp::Eq => FloatCC::Equal,
                CmpOp::Ne => FloatCC::NotEqual,
                CmpOp::Lt => FloatCC::LessThan,
                CmpOp::Le => FloatCC::LessThanOrEqual,
                CmpOp::Gt => FloatCC::GreaterThan,
                CmpOp::Ge => FloatCC::GreaterThanOrEqual,
            };
            // A vector compare is already `i32x4`: no bitcast, so that `select(x < y, x, y)`
            // reaches Cranelift in the form it folds into one `minps` (or `maxps`).
            self.b.ins().fcmp(cc, x, y)
        } else {
            let u = ty == Type::U8;
            let cc = match op {
                CmpOp::Eq => IntCC::Equal,
                CmpOp::Ne => IntCC::NotEqual,
                CmpOp::Lt if u => IntCC::UnsignedLessThan,
                CmpOp::Le if u => IntCC::UnsignedLessThanOrEqual,
                CmpOp::Gt if u => IntCC::UnsignedGreaterThan,
                CmpOp::Ge if u => IntCC::UnsignedGreaterThanOrEqual,
                CmpOp::Lt => IntCC::SignedLessThan,
                CmpOp::Le => IntCC::SignedLessThanOrEqual,
                CmpOp::Gt => IntCC::SignedGreaterThan,
                CmpOp::Ge => IntCC::SignedGreaterThanOrEqual,
            };
            self.b.ins().icmp(cc, x, y)
        })
    }

    fn reduce(&mut self, op: RedOp, a: Val) -> Result<Value> {
        let ty = self.ty(a);
        let x = self.v(a)?;
        let mut acc = self.b.ins().extractlane(x, 0);
        for lane in 1..ty.lanes() as u8 {
            let e = self.b.ins().extractlane(x, lane);
            acc = match (op, ty.is_float()) {
                (RedOp::Add, true) => self.b.ins().fadd(acc, e),
                (RedOp::Max, true) => self.b.ins().fmax(acc, e),
                (RedOp::Min, true) => self.b.ins().fmin(acc, e),
                (RedOp::Add, false) => self.b.ins().iadd(acc, e),
                (RedOp::Max, false) => self.b.ins().smax(acc, e),
                (RedOp::Min, false) => self.b.ins().smin(acc, e),
            };
        }
        Ok(acc)
    }

    /// Numeric conversions, with the evaluator's semantics: float→int truncates and
    /// saturates to the target's range (Cranelift saturates to i32/i64 only, so narrower
    /// targets are clamped before the `ireduce`); int→int extends by the source's signedness
    /// or wraps; int→float rounds to nearest from the value widened to at least i32.
    fn cast(&mut self, to: Type, a: Val) -> Result<Value> {
        use Type::*;
        let from = self.ty(a);
        let x = self.v(a)?;
        if from == to {
            return Ok(x);
        }
        let ct = clif_type(to);
        let signed = |t: Type| matches!(t, I8 | I16 | I32 | Index);
        let int = |t: Type| matches!(t, Index | Bool | I32 | I16 | I8 | U8);
        Ok(match (from, to) {
            (I32X4, F32X4) => self.b.ins().fcvt_from_sint(ct, x),
            (F32X4, I32X4) => self.b.ins().fcvt_to_sint_sat(ct, x),
            (f, F32) if int(f) => {
                let w = match f {
                    I8 | I16 => self.b.ins().sextend(types::I32, x),
                    U8 | Bool => self.b.ins().uextend(types::I32, x),
                    _ => x,
                };
                self.b.ins().fcvt_from_sint(ct, w)
            }
            (F32, Index | I32) => self.b.ins().fcvt_to_sint_sat(ct, x),
            (F32, I16 | I8 | U8) => {
                let (lo, hi) = match to {
                    I16 => (i16::MIN.into(), i16::MAX.into()),
                    I8 => (i8::MIN.into(), i8::MAX.into()),
                    _ => (0, 255),
                };
                let w = self.b.ins().fcvt_to_sint_sat(types::I32, x);
                let lo = self.b.ins().iconst(types::I32, lo);
                let hi = self.b.ins().iconst(types::I32, hi);
                let w = self.b.ins().smax(w, lo);
                let w = self.b.ins().smin(w, hi);
                self.b.ins().ireduce(ct, w)
            }
            (f, t) if int(f) && int(t) => {
                let (fb, tb) = (clif_type(f).bits(), ct.bits());
                if tb > fb && signed(f) {
                    self.b.ins().sextend(ct, x)
                } else if tb > fb {
                    self.b.ins().uextend(ct, x)
                } else if tb < fb {
                    self.b.ins().ireduce(ct, x)
                } else {
                    x
                }
            }
            _ => bail!(
                Verify,
                "kernel @{}: no conversion from {from} to {to}",
                self.kernel.name
            ),
        })
    }

    /// A loop as `entry: lo < hi ? body(lo, inits) : latch(lo − step, inits)`,
    /// `body(i, args): … → latch(i, results)`, `latch(i, carried): i += step;
    /// i < hi ? body(i, carried) : exit(carried)`. Cranelift lays it out entry, body, latch,
    /// exit (the latch comes after both its predecessors), so an iteration falls through
    /// into the latch and ends in its one backward branch.
    ///
    /// Why the latch: had the body branched on its own results, handing them to both the
    /// next iteration and the exit, each would count as used twice, and Cranelift then marks
    /// the whole tree computing it as multiply used, which stops it folding any load of the
    /// body into its user (`vbroadcastss m32`, a memory operand of an FMA or `vpdpbusd`).
    /// The latch's parameters have two predecessors (the entry's edge is only taken by an
    /// empty range), so they stay parameters and the body's results are used once.
    fn emit_loop(&mut self, l: &Loop) -> Result<Vec<Value>> {
        let vectors = l.args.iter().filter(|&&v| self.ty(v).is_vector()).count();
        self.consts.after_loop(vectors);
        let inits = l
            .inits
            .iter()
            .map(|&v| self.v(v))
            .collect::<Result<Vec<_>>>()?;
        let arg_types: Vec<_> = l.args.iter().map(|&v| clif_type(self.ty(v))).collect();
        let (lo, hi) = if l.parallel {
            (self.lo, self.hi)
        } else {
            if l.lo >= l.hi {
                return Ok(inits);
            }
            (
                self.b.ins().iconst(types::I64, l.lo),
                self.b.ins().iconst(types::I64, l.hi),
            )
        };
        if l.args.is_empty() {
            return self.emit_plain_loop(l, lo, hi);
        }
        let body = self.b.create_block();
        let latch = self.b.create_block();
        let exit = self.b.create_block();
        for blk in [body, latch] {
            self.b.append_block_param(blk, types::I64);
        }
        for &t in &arg_types {
            for blk in [body, latch, exit] {
                self.b.append_block_param(blk, t);
            }
        }
        let args = |i: Value| -> Vec<BlockArg> {
            std::iter::once(i)
                .chain(inits.iter().copied())
                .map(BlockArg::Value)
                .collect()
        };
        let go = self.b.ins().icmp(IntCC::SignedLessThan, lo, hi);
        let before = self.b.ins().iadd_imm_s(lo, -l.step);
        self.b.ins().brif(go, body, &args(lo), latch, &args(before));

        self.b.switch_to_block(body);
        let params = self.b.block_params(body).to_vec();
        self.def(l.var, params[0]);
        for (a, &p) in l.args.iter().zip(&params[1..]) {
            self.def(*a, p);
        }
        let next = self.region(&l.body)?;
        let back: Vec<BlockArg> = std::iter::once(params[0])
            .chain(next.iter().copied())
            .map(BlockArg::Value)
            .collect();
        self.b.ins().jump(latch, &back);

        self.b.switch_to_block(latch);
        let carried = self.b.block_params(latch).to_vec();
        let i = self.b.ins().iadd_imm_s(carried[0], l.step);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, i, hi);
        let again: Vec<BlockArg> = std::iter::once(i)
            .chain(carried[1..].iter().copied())
            .map(BlockArg::Value)
            .collect();
        let done: Vec<BlockArg> = carried[1..].iter().copied().map(BlockArg::Value).collect();
        self.b.ins().brif(more, body, &again, exit, &done);
        self.b.switch_to_block(exit);
        Ok(self.b.block_params(exit).to_vec())
    }

    /// A loop that carries no values needs no latch: `body(i): …; i += step; i < hi ?
    /// body(i) : exit`, entered directly when the range is static (and so not empty).
    fn emit_plain_loop(&mut self, l: &Loop, lo: Value, hi: Value) -> Result<Vec<Value>> {
        let body = self.b.create_block();
        let exit = self.b.create_block();
        self.b.append_block_param(body, types::I64);
        if l.parallel {
            let go = self.b.ins().icmp(IntCC::SignedLessThan, lo, hi);
            self.b
                .ins()
                .brif(go, body, &[BlockArg::Value(lo)], exit, &[]);
        } else {
            self.b.ins().jump(body, &[BlockArg::Value(lo)]);
        }
        self.b.switch_to_block(body);
        let i = self.b.block_params(body)[0];
        self.def(l.var, i);
        self.region(&l.body)?;
        let i = self.b.ins().iadd_imm_s(i, l.step);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, i, hi);
        self.b
            .ins()
            .brif(more, body, &[BlockArg::Value(i)], exit, &[]);
        self.b.switch_to_block(exit);
        Ok(vec![])
    }
}
