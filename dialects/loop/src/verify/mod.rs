//! The verifier: structural and type rules every kernel must satisfy before codegen or a
//! pass sees it. Messages name the kernel and quote the offending instruction as the printer
//! writes it (same value numbering), so an error points at a line of `--emit loop` output.
//!
//! Rules: every value is defined once and used only where its definition is visible (earlier
//! in the same region or in an enclosing one — never from a sibling or inner loop body);
//! operand and result types agree per instruction; loads and stores move the buffer's element
//! type or the 128-bit vector of it; nothing stores to a `readonly` buffer; loop bodies end in
//! a `yield` matching the carried values; at most one `parallel` loop, at the top level and
//! carrying nothing; steps are positive; offsets are `index` values; and, where the offset is
//! known statically (module `bounds`), every access lies inside its buffer. Kernel names
//! are unique within a module (they become symbol names).

mod bounds;

use crate::ir::*;
use crate::text::{Names, inst_text, print_module};
use kiln_core::{Error, ErrorKind, Ir, Result};

impl Ir for Module {
    fn verify(&self) -> Result<()> {
        verify_module(self)
    }
    fn print(&self) -> String {
        print_module(self)
    }
}

pub fn verify_module(m: &Module) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for k in &m.kernels {
        if !seen.insert(k.name.as_str()) {
            return Err(Error::new(
                ErrorKind::Verify,
                format!("kernel @{} is defined twice in the module", k.name),
            ));
        }
        verify_kernel(k)?;
    }
    Ok(())
}

pub fn verify_kernel(k: &Kernel) -> Result<()> {
    let mut v = Verifier {
        k,
        names: Names::new(k),
        defined: vec![false; k.types.len()],
        visible: vec![false; k.types.len()],
        parallel_loops: 0,
    };
    for (i, b) in k.bufs.iter().enumerate() {
        if !b.elem.is_elem() {
            return Err(Error::new(
                ErrorKind::Verify,
                format!(
                    "kernel @{}: buffer @{i} ({}) has element type {}, which no buffer may hold",
                    k.name, b.name, b.elem
                ),
            ));
        }
    }
    v.region(&k.body, 0)?;
    bounds::check(k)
}

struct Verifier<'k> {
    k: &'k Kernel,
    names: Names,
    /// Defined anywhere so far (SSA: once only).
    defined: Vec<bool>,
    /// Defined in the current region or an enclosing one.
    visible: Vec<bool>,
    parallel_loops: usize,
}

/// `ensure!` with the instruction-quoting message.
macro_rules! check {
    ($self:ident, $inst:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($self.error($inst, format!($($arg)+)));
        }
    };
}

mod int8;

impl<'k> Verifier<'k> {
    /// `kernel @k: `inst``, the start of every message.
    fn message_for(k: &Kernel, names: &Names, inst: &Inst) -> String {
        format!("kernel @{}: `{}`", k.name, inst_text(k, names, inst))
    }

    fn error(&self, inst: &Inst, msg: String) -> Error {
        Error::new(
            ErrorKind::Verify,
            format!("{}: {msg}", Self::message_for(self.k, &self.names, inst)),
        )
    }

    fn ty(&self, v: Val) -> Type {
        self.k.types[v.index()]
    }

    fn define(&mut self, inst: &Inst, v: Val, defs: &mut Vec<Val>) -> Result<()> {
        check!(
            self,
            inst,
            v.index() < self.k.types.len(),
            "value {v} has no type (the kernel types {} values)",
            self.k.types.len()
        );
        check!(
            self,
            inst,
            !self.defined[v.index()],
            "{} is defined twice",
            self.names.val(v)
        );
        self.defined[v.index()] = true;
        self.visible[v.index()] = true;
        defs.push(v);
        Ok(())
    }

    fn use_(&self, inst: &Inst, v: Val) -> Result<()> {
        check!(
            self,
            inst,
            self.visible.get(v.index()).copied().unwrap_or(false),
            "{} is used where no definition of it is visible",
            self.names.val(v)
        );
        Ok(())
    }

    /// Checks a region; `depth` 0 is the kernel body. Returns the operands of its trailing
    /// `yield`, if any. Values defined inside become invisible again on exit.
    fn region(&mut self, r: &Region, depth: usize) -> Result<Option<Vec<Val>>> {
        let mut defs = Vec::new();
        let mut yielded = None;
        for (i, inst) in r.insts.iter().enumerate() {
            for v in operands(&inst.kind) {
                self.use_(inst, v)?;
            }
            if let InstKind::Yield(vs) = &inst.kind {
                check!(
                    self,
                    inst,
                    depth > 0 && i + 1 == r.insts.len(),
                    "yield must be the last instruction of a loop body"
                );
                yielded = Some(vs.clone());
            }
            if let InstKind::Loop(l) = &inst.kind {
                self.loop_(inst, l, depth)?;
            } else {
                let n = match inst.kind {
                    InstKind::Store(..) | InstKind::Yield(_) => 0,
                    _ => 1,
                };
                check!(
                    self,
                    inst,
                    inst.results.len() == n,
                    "defines {} value(s), expected {n}",
                    inst.results.len()
                );
                for &v in &inst.results {
                    self.define(inst, v, &mut defs)?;
                }
                self.types(inst)?;
            }
            if let InstKind::Loop(_) = inst.kind {
                for &v in &inst.results {
                    self.define(inst, v, &mut defs)?;
                }
            }
        }
        for v in defs {
            self.visible[v.index()] = false;
        }
        Ok(yielded)
    }

    fn loop_(&mut self, inst: &Inst, l: &Loop, depth: usize) -> Result<()> {
        check!(self, inst, l.step > 0, "step {} is not positive", l.step);
        if l.parallel {
            self.parallel_loops += 1;
            check!(
                self,
                inst,
                depth == 0,
                "a parallel loop must be at the top level of the kernel"
            );
            check!(
                self,
                inst,
                self.parallel_loops == 1,
                "a kernel has at most one parallel loop"
            );
            check!(
                self,
                inst,
                l.inits.is_empty(),
                "a parallel loop cannot carry values (its iterations run in any order)"
            );
        }
        check!(
            self,
            inst,
            l.inits.len() == l.args.len() && l.inits.len() == inst.results.len(),
            "{} initial value(s), {} carried value(s) and {} result(s) differ",
            l.inits.len(),
            l.args.len(),
            inst.results.len()
        );
        let mut scope = Vec::new();
        self.define(inst, l.var, &mut scope)?;
        check!(
            self,
            inst,
            self.ty(l.var) == Type::Index,
            "the induction variable has type {}, not index",
            self.ty(l.var)
        );
        for (&a, &init) in l.args.iter().zip(&l.inits) {
            self.define(inst, a, &mut scope)?;
            check!(
                self,
                inst,
                self.ty(a) == self.ty(init),
                "carried value {} has type {} but its initial value {} has type {}",
                self.names.val(a),
                self.ty(a),
                self.names.val(init),
                self.ty(init)
            );
        }
        for (&r, &init) in inst.results.iter().zip(&l.inits) {
            check!(
                self,
                inst,
                r.index() < self.k.types.len() && self.ty(r) == self.ty(init),
                "result {} does not have the type of its initial value {}",
                self.names.val(r),
                self.names.val(init)
            );
        }
        let yielded = self.region(&l.body, depth + 1)?;
        let Some(ys) = yielded else {
            return Err(self.error(inst, "the loop body does not end in a yield".into()));
        };
        check!(
            self,
            inst,
            ys.len() == l.args.len(),
            "the body yields {} value(s) but the loop carries {}",
            ys.len(),
            l.args.len()
        );
        for (&y, &a) in ys.iter().zip(&l.args) {
            check!(
                self,
                inst,
                self.ty(y) == self.ty(a),
                "the body yields {} of type {} for carried value {} of type {}",
                self.names.val(y),
                self.ty(y),
                self.names.val(a),
                self.ty(a)
            );
        }
        for v in scope {
            self.visible[v.index()] = false;
        }
        Ok(())
    }

    /// Type rules of a non-loop instruction (results and operands already checked defined).
    fn types(&self, inst: &Inst) -> Result<()> {
        let t = |v: Val| self.ty(v);
        let r = inst.results.first().map(|&v| t(v));
        let rt = r.unwrap_or(Type::Bool);
        let same = |what: &str, got: Type| -> Result<()> {
            check!(
                self,
                inst,
                got == rt,
                "{what} has type {got}, the result {rt}"
            );
            Ok(())
        };
        match &inst.kind {
            InstKind::Iconst(ty, x) => {
                same("the constant", *ty)?;
                check!(
                    self,
                    inst,
                    !ty.is_vector() && *ty != Type::F32,
                    "iconst of type {ty}"
                );
                let (lo, hi) = int_range(*ty);
                check!(
                    self,
                    inst,
                    (lo..=hi).contains(x),
                    "{x} does not fit in {ty}"
                );
            }
            InstKind::Fconst(_) => same("fconst", Type::F32)?,
            InstKind::Binary(op, a, b) => {
                let (ta, tb) = (t(*a), t(*b));
                same("the first operand", ta)?;
                let int_only = matches!(
                    op,
                    BinOp::Rem | BinOp::And | BinOp::Or | BinOp::Shl | BinOp::Shr
                );
                if matches!(op, BinOp::Shl | BinOp::Shr) {
                    check!(
                        self,
                        inst,
                        tb == ta || (!tb.is_vector() && is_int(tb)),
                        "the shift amount has type {tb}, not {ta} or a scalar integer"
                    );
                } else {
                    check!(self, inst, ta == tb, "operand types differ ({ta}, {tb})");
                }
                if ta == Type::Bool {
                    check!(
                        self,
                        inst,
                        matches!(op, BinOp::And | BinOp::Or),
                        "{} of bool values",
                        op.name()
                    );
                } else if int_only {
                    check!(
                        self,
                        inst,
                        !ta.is_float(),
                        "{} needs integer operands, not {ta}",
                        op.name()
                    );
                }
            }
            InstKind::Unary(op, a) => {
                same("the operand", t(*a))?;
                check!(self, inst, rt != Type::Bool, "{} of a bool", op.name());
                let float_only = !matches!(op, UnOp::Neg | UnOp::Abs);
                check!(
                    self,
                    inst,
                    !float_only || rt.is_float(),
                    "{} needs a float operand, not {rt}",
                    op.name()
                );
            }
            InstKind::Fma(a, b, c) => {
                for (what, v) in [("a", a), ("b", b), ("c", c)] {
                    same(&format!("operand {what}"), t(*v))?;
                }
                check!(
                    self,
                    inst,
                    rt.is_float(),
                    "fma needs float operands, not {rt}"
                );
            }
            InstKind::Cmp(_, a, b) => {
                let (ta, tb) = (t(*a), t(*b));
                check!(self, inst, ta == tb, "operand types differ ({ta}, {tb})");
                let want = cmp_result(ta);
                check!(
                    self,
                    inst,
                    rt == want,
                    "comparing {ta} gives {want}, not {rt}"
                );
            }
            InstKind::Select(c, a, b) => {
                let (tc, ta, tb) = (t(*c), t(*a), t(*b));
                check!(self, inst, ta == tb, "operand types differ ({ta}, {tb})");
                same("the chosen values", ta)?;
                check!(
                    self,
                    inst,
                    tc == Type::Bool || (ta.is_vector() && tc == cmp_result(ta)),
                    "the condition has type {tc}, not bool{}",
                    if ta.is_vector() {
                        format!(" or {}", cmp_result(ta))
                    } else {
                        String::new()
                    }
                );
            }
            InstKind::Splat(ty, x) => {
                same("the splat type", *ty)?;
                let tx = t(*x);
                check!(
                    self,
                    inst,
                    ty.is_vector() && tx.vector() == Some(*ty),
                    "cannot splat {tx} to {ty}"
                );
            }
            InstKind::Extract(v, lane) => {
                let tv = t(*v);
                check!(
                    self,
                    inst,
                    tv.is_vector(),
                    "extract from the scalar type {tv}"
                );
                check!(
                    self,
                    inst,
                    u32::from(*lane) < tv.lanes(),
                    "lane {lane} of {tv}"
                );
                same("the lane type", tv.lane())?;
            }
            InstKind::Insert(v, x, lane) => {
                let (tv, tx) = (t(*v), t(*x));
                check!(
                    self,
                    inst,
                    tv.is_vector(),
                    "insert into the scalar type {tv}"
                );
                check!(
                    self,
                    inst,
                    u32::from(*lane) < tv.lanes(),
                    "lane {lane} of {tv}"
                );
                check!(self, inst, tx == tv.lane(), "inserts {tx} into {tv}");
                same("the vector", tv)?;
            }
            InstKind::Bitcast(ty, v) => {
                same("the bitcast type", *ty)?;
                let tv = t(*v);
                let plain = |t: Type| !matches!(t, Type::Bool | Type::Index);
                check!(
                    self,
                    inst,
                    plain(*ty) && plain(tv) && ty.bytes() == tv.bytes(),
                    "cannot bitcast {tv} to {ty} (widths differ)"
                );
            }
            InstKind::Reduce(_, v) => {
                let tv = t(*v);
                check!(self, inst, tv.is_vector(), "reduce of the scalar type {tv}");
                same("the lane type", tv.lane())?;
            }
            InstKind::Cast(ty, v) => {
                same("the cast type", *ty)?;
                let tv = t(*v);
                check!(
                    self,
                    inst,
                    *ty != Type::Bool && tv.lanes() == ty.lanes(),
                    "cannot cast {tv} to {ty}"
                );
            }
            InstKind::Load(ty, b, off, _) => {
                same("the load type", *ty)?;
                let elem = self.buf(inst, *b)?.elem;
                check!(
                    self,
                    inst,
                    *ty == elem || elem.vector() == Some(*ty),
                    "loads {ty} from a buffer of {elem}"
                );
                check!(
                    self,
                    inst,
                    t(*off) == Type::Index,
                    "the offset has type {}, not index",
                    t(*off)
                );
            }
            InstKind::Store(b, off, _, v) => {
                let decl = self.buf(inst, *b)?;
                let tv = t(*v);
                check!(
                    self,
                    inst,
                    !decl.readonly,
                    "stores to the readonly buffer @{} ({})",
                    b.0,
                    decl.name
                );
                check!(
                    self,
                    inst,
                    tv == decl.elem || decl.elem.vector() == Some(tv),
                    "stores {tv} to a buffer of {}",
                    decl.elem
                );
                check!(
                    self,
                    inst,
                    t(*off) == Type::Index,
                    "the offset has type {}, not index",
                    t(*off)
                );
            }
            InstKind::Call(h, args) => {
                check!(
                    self,
                    inst,
                    args.len() == h.arity(),
                    "{} takes {} argument(s), given {}",
                    h.name(),
                    h.arity(),
                    args.len()
                );
                for &a in args {
                    check!(
                        self,
                        inst,
                        t(a) == Type::F32,
                        "argument {} has type {}, not f32",
                        self.names.val(a),
                        t(a)
                    );
                }
                same("f32", Type::F32)?;
            }
            InstKind::DotU8S8(..)
            | InstKind::NarrowU8(_)
            | InstKind::WidenU8(..)
            | InstKind::Shuffle(..) => self.int8_types(inst, rt)?,
            InstKind::Yield(_) | InstKind::Loop(_) => {}
        }
        Ok(())
    }

    fn buf(&self, inst: &Inst, b: Buf) -> Result<&'k BufDecl> {
        self.k
            .bufs
            .get(b.index())
            .ok_or_else(|| self.error(inst, format!("no buffer @{}", b.0)))
    }
}

fn is_int(t: Type) -> bool {
    !t.is_float() && t != Type::Bool
}

/// The type a comparison of `t` values yields: a bool for scalars, a lane mask (the integer
/// vector of the same lane width) for vectors.
pub fn cmp_result(t: Type) -> Type {
    match t {
        Type::F32X4 | Type::I32X4 => Type::I32X4,
        t if t.is_vector() => t,
        _ => Type::Bool,
    }
}

/// The constants an `iconst` of type `t` may hold: both the signed and the unsigned reading
/// of the width are accepted (masks are naturally written as `255` or `-1`).
pub fn int_range(t: Type) -> (i64, i64) {
    match t {
        Type::Bool => (0, 1),
        Type::I8 | Type::U8 => (-128, 255),
        Type::I16 => (-(1 << 15), (1 << 16) - 1),
        Type::I32 => (-(1 << 31), (1 << 32) - 1),
        _ => (i64::MIN, i64::MAX),
    }
}

/// The values an instruction reads (for a loop: its initial values only; its body is a
/// region of its own).
pub fn operands(k: &InstKind) -> Vec<Val> {
    match k {
        InstKind::Iconst(..) | InstKind::Fconst(_) => vec![],
        InstKind::Binary(_, a, b) | InstKind::Cmp(_, a, b) | InstKind::Insert(a, b, _) => {
            vec![*a, *b]
        }
        InstKind::Unary(_, a)
        | InstKind::Splat(_, a)
        | InstKind::Extract(a, _)
        | InstKind::Reduce(_, a)
        | InstKind::Cast(_, a)
        | InstKind::Bitcast(_, a)
        | InstKind::Load(_, _, a, _) => vec![*a],
        InstKind::Fma(a, b, c) | InstKind::Select(a, b, c) | InstKind::DotU8S8(a, b, c) => {
            vec![*a, *b, *c]
        }
        InstKind::NarrowU8(vs) => vs.to_vec(),
        InstKind::WidenU8(a, _) => vec![*a],
        InstKind::Shuffle(a, b, _) => vec![*a, *b],
        InstKind::Store(_, off, _, v) => vec![*off, *v],
        InstKind::Call(_, args) | InstKind::Yield(args) => args.clone(),
        InstKind::Loop(l) => l.inits.clone(),
    }
}
