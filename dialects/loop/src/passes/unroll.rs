//! `loop.unroll`: fully unrolls `for` loops with a small constant trip count. This is how
//! register blocking is expressed: a lowering writes the 4×8 micro-tile as two tiny loops
//! carrying accumulators, and unrolling turns them into straight-line code whose carried
//! values become independent SSA values — registers, for Cranelift.
//!
//! Each iteration is a copy of the body with fresh values, the induction variable replaced by
//! an `index` constant and the carried values by the previous copy's yielded values; the
//! loop's results become the last copy's. A loop that runs zero times is replaced by its
//! initial values. Loops are unrolled innermost first, so a nest of small loops flattens in
//! one run. The parallel loop is never unrolled: the runtime splits it among threads.

use super::{module_pass, new_val, substitute};
use crate::ir::*;
use std::collections::HashMap;

/// The unroll pass and its limits.
pub struct Unroll {
    /// Unroll loops of at most this many iterations.
    pub max_trip: u64,
    /// ... and only when the unrolled code has at most this many instructions (nested loop
    /// bodies counted), so a big body is not copied.
    pub max_insts: usize,
}

impl Default for Unroll {
    fn default() -> Self {
        Unroll {
            max_trip: 8,
            max_insts: 4096,
        }
    }
}

module_pass!(Unroll, "loop.unroll");

/// The number of iterations of a loop (0 when `hi <= lo`).
pub fn trip_count(l: &Loop) -> u64 {
    if l.hi <= l.lo || l.step <= 0 {
        return 0;
    }
    let span = i128::from(l.hi) - i128::from(l.lo);
    ((span + i128::from(l.step) - 1) / i128::from(l.step)) as u64
}

fn size(r: &Region) -> usize {
    r.insts
        .iter()
        .map(|i| match &i.kind {
            InstKind::Loop(l) => 1 + size(&l.body),
            _ => 1,
        })
        .sum()
}

impl Unroll {
    fn run_kernel(&mut self, k: &mut Kernel) -> kiln_core::Result<bool> {
        let mut body = std::mem::take(&mut k.body);
        let mut subst = HashMap::new();
        let changed = self.region(k, &mut body, &mut subst);
        substitute(&mut body, &subst);
        k.body = body;
        Ok(changed)
    }

    /// Unrolls in `r` (innermost first); loop results that disappear are recorded in `subst`.
    fn region(&self, k: &mut Kernel, r: &mut Region, subst: &mut HashMap<Val, Val>) -> bool {
        let mut changed = false;
        let mut out = Vec::with_capacity(r.insts.len());
        for mut inst in std::mem::take(&mut r.insts) {
            let InstKind::Loop(l) = &mut inst.kind else {
                out.push(inst);
                continue;
            };
            changed |= self.region(k, &mut l.body, subst);
            // The body may use results of inner loops just unrolled.
            substitute(&mut l.body, subst);
            let trip = trip_count(l);
            let fits = (trip as u128) * (size(&l.body) as u128) <= self.max_insts as u128;
            if l.parallel || trip > self.max_trip || !fits {
                out.push(inst);
                continue;
            }
            changed = true;
            let mut carried = l.inits.clone();
            for it in 0..trip {
                let iv = new_val(k, Type::Index);
                out.push(Inst {
                    kind: InstKind::Iconst(Type::Index, l.lo + (it as i64) * l.step),
                    results: vec![iv],
                });
                let mut map: HashMap<Val, Val> = HashMap::new();
                map.insert(l.var, iv);
                for (&a, &c) in l.args.iter().zip(&carried) {
                    map.insert(a, c);
                }
                let (insts, yielded) = clone_body(k, &l.body, &mut map);
                out.extend(insts);
                carried = yielded;
            }
            for (&res, &c) in inst.results.iter().zip(&carried) {
                subst.insert(res, c);
            }
        }
        r.insts = out;
        changed
    }
}

/// A copy of a loop body with fresh values for everything it defines (`map` takes old values
/// to new ones and starts with the induction variable and carried values); returns the
/// instructions without the trailing `yield`, and the yielded values.
pub(crate) fn clone_body(
    k: &mut Kernel,
    body: &Region,
    map: &mut HashMap<Val, Val>,
) -> (Vec<Inst>, Vec<Val>) {
    let mut out = Vec::with_capacity(body.insts.len());
    let mut yielded = Vec::new();
    for inst in &body.insts {
        if let InstKind::Yield(vs) = &inst.kind {
            yielded = vs.iter().map(|v| *map.get(v).unwrap_or(v)).collect();
            continue;
        }
        out.push(clone_inst(k, inst, map));
    }
    (out, yielded)
}

fn clone_inst(k: &mut Kernel, inst: &Inst, map: &mut HashMap<Val, Val>) -> Inst {
    let mut kind = inst.kind.clone();
    super::map_operands(&mut kind, |v| *map.get(&v).unwrap_or(&v));
    if let InstKind::Loop(l) = &mut kind {
        let fresh = |k: &mut Kernel, map: &mut HashMap<Val, Val>, v: Val| {
            let n = new_val(k, k.ty(v));
            map.insert(v, n);
            n
        };
        l.var = fresh(k, map, l.var);
        l.args = l
            .args
            .clone()
            .into_iter()
            .map(|a| fresh(k, map, a))
            .collect();
        let mut insts = Vec::with_capacity(l.body.insts.len());
        for i in &l.body.insts {
            insts.push(clone_inst(k, i, map));
        }
        l.body.insts = insts;
    }
    let results = inst
        .results
        .iter()
        .map(|&r| {
            let n = new_val(k, k.ty(r));
            map.insert(r, n);
            n
        })
        .collect();
    Inst { kind, results }
}
