//! `loop.fold-constants`: evaluates instructions whose operands are all constants, and drops
//! identities, so the index arithmetic that unrolling and tiling leave behind
//! (`%i * 4 + 8` with `%i` now a constant) costs nothing at run time.
//!
//! Folding uses the evaluator's scalar functions ([`crate::eval`]), so a folded kernel
//! computes exactly what the unfolded one does. Not folded: operations that would fail at run
//! time (integer division by zero or overflow: the error stays where it happens), vector
//! results (there are no vector constants; `splat` of a constant is already cheap) and math
//! helper calls (their results are the runtime's). Identities: integer `x+0`, `0+x`, `x-0`,
//! `x*1`, `1*x`, `x*0` (→ 0), `x/1`, `x|0`, shifts by 0; float `x*1.0`, `x/1.0`, `x-0.0`
//! (each exact for every x, NaN and -0.0 included — `x+0.0` is not, for x = -0.0); `select`
//! on a constant condition; `extract` of a `splat`; `cast` to the same type. And addresses:
//! a load or store at offset `x + c` (or `x - c`) becomes one at `x` with `c` added to its
//! displacement, which the addressing mode applies for free (unrolled copies index
//! `@b[%k + 1]`, `@b[%k + 2]`, ... off one induction variable).

use super::{module_pass, substitute};
use crate::eval::{self, Scalar};
use crate::ir::*;
use std::collections::HashMap;

pub struct FoldConstants;

module_pass!(FoldConstants, "loop.fold-constants");

/// What is known about a value.
#[derive(Clone, Copy)]
enum Known {
    Const(Scalar),
    /// A `splat` of this scalar.
    Splat(Val),
    /// `x + c` on index values.
    Offset(Val, i64),
}

impl FoldConstants {
    fn run_kernel(&mut self, k: &mut Kernel) -> kiln_core::Result<bool> {
        let mut f = Folder {
            types: &k.types,
            known: HashMap::new(),
            subst: HashMap::new(),
            changed: false,
        };
        f.region(&mut k.body);
        let Folder { subst, changed, .. } = f;
        substitute(&mut k.body, &subst);
        Ok(changed)
    }
}

struct Folder<'t> {
    types: &'t [Type],
    known: HashMap<Val, Known>,
    /// Results replaced by another value; their instructions are removed.
    subst: HashMap<Val, Val>,
    changed: bool,
}

impl Folder<'_> {
    fn konst(&self, v: Val) -> Option<Scalar> {
        let v = super::resolve(&self.subst, v);
        match self.known.get(&v) {
            Some(Known::Const(s)) => Some(*s),
            _ => None,
        }
    }

    fn region(&mut self, r: &mut Region) {
        let mut keep = Vec::with_capacity(r.insts.len());
        for mut inst in std::mem::take(&mut r.insts) {
            // Earlier replacements first, so chains fold in one sweep.
            let subst = &self.subst;
            super::map_operands(&mut inst.kind, |v| super::resolve(subst, v));
            if let InstKind::Loop(l) = &mut inst.kind {
                self.region(&mut l.body);
                keep.push(inst);
                continue;
            }
            if let InstKind::Load(_, _, off, disp) | InstKind::Store(_, off, disp, _) =
                &mut inst.kind
            {
                // An address `(x + c) + d` is `x + (c + d)`: the displacement is free in
                // the addressing mode, the add is not.
                while let Some(Known::Offset(x, c)) = self.known.get(off) {
                    let Some(d) = disp.checked_add(*c) else { break };
                    (*off, *disp) = (*x, d);
                    self.changed = true;
                }
            }
            let Some(&res) = inst.results.first() else {
                keep.push(inst);
                continue;
            };
            let ty = self.types[res.index()];
            if let Some(v) = self.identity(&inst.kind, ty) {
                self.subst.insert(res, v);
                self.changed = true;
                continue;
            }
            match self.fold(&inst.kind, ty) {
                Some(s) if !matches!(inst.kind, InstKind::Iconst(..) | InstKind::Fconst(_)) => {
                    inst.kind = match s {
                        Scalar::F(x) => InstKind::Fconst(x),
                        Scalar::I(x) => InstKind::Iconst(ty, x),
                    };
                    self.changed = true;
                    self.known.insert(res, Known::Const(s));
                }
                Some(s) => {
                    self.known.insert(res, Known::Const(s));
                }
                None => {
                    if let Some(k) = self.shape(&inst.kind, ty) {
                        self.known.insert(res, k);
                    }
                }
            }
            keep.push(inst);
        }
        r.insts = keep;
    }

    /// The scalar value of an instruction whose operands are all known constants.
    fn fold(&self, kind: &InstKind, ty: Type) -> Option<Scalar> {
        if ty.is_vector() {
            return None;
        }
        let c = |v: Val| self.konst(v);
        let t = |v: Val| self.types[v.index()];
        Some(match kind {
            InstKind::Iconst(t, x) => Scalar::I(eval::wrap(*t, *x)),
            InstKind::Fconst(x) => Scalar::F(*x),
            InstKind::Binary(op, a, b) => eval::binary(*op, ty, c(*a)?, c(*b)?).ok()?,
            InstKind::Unary(op, a) => eval::unary(*op, ty, c(*a)?),
            InstKind::Fma(a, b, cc) => eval::fma(c(*a)?, c(*b)?, c(*cc)?),
            InstKind::Cmp(op, a, b) => {
                Scalar::I(i64::from(eval::compare(*op, t(*a), c(*a)?, c(*b)?)))
            }
            InstKind::Cast(to, a) => eval::cast(t(*a), *to, c(*a)?),
            InstKind::Bitcast(to, a) => {
                let mut lanes = [Scalar::I(0); 16];
                lanes[0] = c(*a)?;
                eval::bitcast(t(*a), *to, &lanes)[0]
            }
            _ => return None,
        })
    }

    /// What is known about a non-constant result: a splat, or an index plus a constant.
    fn shape(&self, kind: &InstKind, ty: Type) -> Option<Known> {
        match *kind {
            InstKind::Splat(_, x) => Some(Known::Splat(x)),
            InstKind::Binary(op, a, b) if ty == Type::Index => {
                let c = |v: Val| match self.konst(v) {
                    Some(Scalar::I(c)) => Some(c),
                    _ => None,
                };
                match (op, c(a), c(b)) {
                    (BinOp::Add, None, Some(k)) => Some(Known::Offset(a, k)),
                    (BinOp::Add, Some(k), None) => Some(Known::Offset(b, k)),
                    (BinOp::Sub, None, Some(k)) => Some(Known::Offset(a, k.checked_neg()?)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// A value the instruction's result always equals, if it is one of its operands.
    fn identity(&self, kind: &InstKind, ty: Type) -> Option<Val> {
        let is = |v: Val, x: f64| match self.konst(v) {
            Some(Scalar::I(i)) => !ty.is_float() && i as f64 == x,
            Some(Scalar::F(f)) => ty.is_float() && f64::from(f) == x && f.is_sign_positive(),
            None => false,
        };
        let int = !ty.is_float() && ty != Type::Bool && !ty.is_vector();
        match *kind {
            InstKind::Binary(op, a, b) => match op {
                BinOp::Add | BinOp::Or if int && is(b, 0.0) => Some(a),
                BinOp::Add | BinOp::Or if int && is(a, 0.0) => Some(b),
                BinOp::Sub | BinOp::Shl | BinOp::Shr if int && is(b, 0.0) => Some(a),
                BinOp::Mul | BinOp::Div if !ty.is_vector() && is(b, 1.0) => Some(a),
                BinOp::Mul if int && is(a, 1.0) => Some(b),
                BinOp::Mul if int && is(b, 0.0) => Some(b),
                BinOp::Mul if int && is(a, 0.0) => Some(a),
                // x - 0.0 is x for every x (and -0.0 - 0.0 = -0.0).
                BinOp::Sub if ty == Type::F32 && is(b, 0.0) => Some(a),
                _ => None,
            },
            InstKind::Select(c, a, b) => match self.konst(c) {
                Some(Scalar::I(x)) if self.types[c.index()] == Type::Bool => {
                    Some(if x != 0 { a } else { b })
                }
                _ => None,
            },
            InstKind::Extract(v, _) => match self.known.get(&super::resolve(&self.subst, v)) {
                Some(Known::Splat(x)) if self.types[x.index()] == ty => Some(*x),
                _ => None,
            },
            InstKind::Cast(to, a) if self.types[a.index()] == to => Some(a),
            _ => None,
        }
    }
}
