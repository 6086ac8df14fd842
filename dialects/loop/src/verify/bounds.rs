//! Static bounds checks: where the range of an access's offset is known exactly, the access
//! must lie inside its buffer. Catches the classic lowering bug (an off-by-one tile edge, a
//! stride in the wrong unit) at compile time, with the instruction quoted, instead of as a
//! corrupted arena at run time.
//!
//! Ranges are tracked only where they are exact, so a kernel is never rejected for an
//! access it cannot make: constants; induction variables of loops that run (first and last
//! value); and `add`, `sub`, `mul`, `min`, `max` with one constant operand, which are
//! monotone in the other and so map its extremes to theirs. Anything else (two varying
//! operands, whose extremes need not coincide; data-dependent values) is unknown and not
//! checked. Nothing is checked inside a loop that never runs.

use super::Verifier;
use crate::ir::*;
use crate::passes::unroll::trip_count;
use crate::text::Names;
use kiln_core::Result;
use std::collections::HashMap;

pub(super) fn check(k: &Kernel) -> Result<()> {
    let mut b = Bounds {
        k,
        ranges: HashMap::new(),
    };
    b.region(&k.body)
}

struct Bounds<'k> {
    k: &'k Kernel,
    /// Exact `[min, max]` of index values.
    ranges: HashMap<Val, (i64, i64)>,
}

impl Bounds<'_> {
    fn region(&mut self, r: &Region) -> Result<()> {
        for inst in &r.insts {
            match &inst.kind {
                InstKind::Loop(l) => {
                    let trip = trip_count(l);
                    if trip == 0 {
                        continue;
                    }
                    let last = i128::from(l.lo) + (i128::from(trip) - 1) * i128::from(l.step);
                    if let Ok(last) = i64::try_from(last) {
                        self.ranges.insert(l.var, (l.lo, last));
                    }
                    self.region(&l.body)?;
                }
                InstKind::Load(ty, b, off, disp) => self.access(inst, *b, *off, *disp, *ty)?,
                InstKind::Store(b, off, disp, v) => {
                    self.access(inst, *b, *off, *disp, self.k.ty(*v))?
                }
                kind => {
                    if let (Some(&res), Some(r)) = (inst.results.first(), self.range(kind)) {
                        self.ranges.insert(res, r);
                    }
                }
            }
        }
        Ok(())
    }

    fn range(&self, kind: &InstKind) -> Option<(i64, i64)> {
        match *kind {
            InstKind::Iconst(Type::Index, c) => Some((c, c)),
            InstKind::Binary(op, a, b) if self.k.ty(a) == Type::Index => {
                let (ra, rb) = (*self.ranges.get(&a)?, *self.ranges.get(&b)?);
                // One side must be a constant for the result's extremes to be attained.
                if ra.0 != ra.1 && rb.0 != rb.1 {
                    return None;
                }
                let f = |x: i64, y: i64| -> Option<i128> {
                    let (x, y) = (i128::from(x), i128::from(y));
                    Some(match op {
                        BinOp::Add => x + y,
                        BinOp::Sub => x - y,
                        BinOp::Mul => x * y,
                        BinOp::Min => x.min(y),
                        BinOp::Max => x.max(y),
                        _ => return None,
                    })
                };
                let c = [
                    f(ra.0, rb.0)?,
                    f(ra.0, rb.1)?,
                    f(ra.1, rb.0)?,
                    f(ra.1, rb.1)?,
                ];
                let lo = i64::try_from(*c.iter().min()?).ok()?;
                let hi = i64::try_from(*c.iter().max()?).ok()?;
                Some((lo, hi))
            }
            _ => None,
        }
    }

    fn access(&self, inst: &Inst, b: Buf, off: Val, disp: i64, ty: Type) -> Result<()> {
        let Some(&(lo, hi)) = self.ranges.get(&off) else {
            return Ok(());
        };
        let decl = self.k.buf(b);
        let first = i128::from(lo) + i128::from(disp);
        let end = i128::from(hi) + i128::from(disp) + i128::from(ty.lanes());
        if first < 0 || end > decl.len as i128 {
            let v = Verifier::message_for(self.k, &Names::new(self.k), inst);
            return Err(kiln_core::Error::new(
                kiln_core::ErrorKind::Verify,
                format!(
                    "{v}: accesses elements {first}..{end} of @{} ({}), which has {}",
                    b.0, decl.name, decl.len
                ),
            ));
        }
        Ok(())
    }
}
