//! `loop.unroll-inner`: unrolls innermost loops by a factor (4 by default) without removing
//! them: `for k = 0 to 64 step 1` becomes `for k = 0 to 64 step 4` whose body holds four
//! copies (the induction variable of copy `u` is `k + u·step`), carried values threaded
//! from copy to copy. When the trip count is not a multiple of the factor, the original loop
//! stays behind as a remainder loop over the last iterations, starting from the unrolled
//! loop's results.
//!
//! This is the "K unrolled 4" of a GEMM micro-kernel: after `loop.unroll` has flattened the
//! register block, the reduction loop is the innermost one, and unrolling it amortises the
//! loop overhead and gives the scheduler independent loads. It is not part of `loop-opt`
//! because the factor is a scheduling decision (register pressure grows with it). Loops of
//! at most `factor` iterations are left to `loop.unroll`; the parallel loop is never touched.

use super::unroll::{clone_body, trip_count};
use super::{module_pass, new_val};
use crate::ir::*;
use std::collections::HashMap;

pub struct UnrollInner {
    pub factor: u64,
    /// Largest unrolled body, in instructions; bigger bodies are left alone.
    pub max_insts: usize,
}

impl Default for UnrollInner {
    fn default() -> Self {
        UnrollInner {
            factor: 4,
            max_insts: 1024,
        }
    }
}

module_pass!(UnrollInner, "loop.unroll-inner");

impl UnrollInner {
    fn run_kernel(&mut self, k: &mut Kernel) -> kiln_core::Result<bool> {
        let mut body = std::mem::take(&mut k.body);
        let changed = self.region(k, &mut body);
        k.body = body;
        Ok(changed)
    }

    fn region(&self, k: &mut Kernel, r: &mut Region) -> bool {
        let mut changed = false;
        let mut out = Vec::with_capacity(r.insts.len());
        for mut inst in std::mem::take(&mut r.insts) {
            let InstKind::Loop(l) = &mut inst.kind else {
                out.push(inst);
                continue;
            };
            let innermost = !l
                .body
                .insts
                .iter()
                .any(|i| matches!(i.kind, InstKind::Loop(_)));
            if !innermost {
                changed |= self.region(k, &mut l.body);
                out.push(inst);
                continue;
            }
            let trip = trip_count(l);
            let f = self.factor;
            let plan = (|| {
                let main_trip = i64::try_from(trip / f * f).ok()?;
                let step = l.step.checked_mul(i64::try_from(f).ok()?)?;
                let hi = l.lo.checked_add(main_trip.checked_mul(l.step)?)?;
                Some((step, hi))
            })();
            let too_big = l.body.insts.len() as u128 * f as u128 > self.max_insts as u128;
            let skip = l.parallel || f < 2 || trip <= f || too_big;
            let Some((step, hi)) = plan.filter(|_| !skip) else {
                out.push(inst);
                continue;
            };
            changed = true;
            let var = new_val(k, Type::Index);
            let args: Vec<Val> = l.args.iter().map(|&a| new_val(k, k.ty(a))).collect();
            let mut body = Vec::new();
            let mut carried = args.clone();
            for u in 0..f as i64 {
                let iv = if u == 0 {
                    var
                } else {
                    let c = new_val(k, Type::Index);
                    body.push(Inst {
                        kind: InstKind::Iconst(Type::Index, u * l.step),
                        results: vec![c],
                    });
                    let s = new_val(k, Type::Index);
                    body.push(Inst {
                        kind: InstKind::Binary(BinOp::Add, var, c),
                        results: vec![s],
                    });
                    s
                };
                let mut map: HashMap<Val, Val> = HashMap::new();
                map.insert(l.var, iv);
                for (&a, &c) in l.args.iter().zip(&carried) {
                    map.insert(a, c);
                }
                let (insts, yielded) = clone_body(k, &l.body, &mut map);
                body.extend(insts);
                carried = yielded;
            }
            body.push(Inst {
                kind: InstKind::Yield(carried),
                results: vec![],
            });
            let remainder = hi < l.hi;
            let results: Vec<Val> = if remainder {
                inst.results.iter().map(|&r| new_val(k, k.ty(r))).collect()
            } else {
                inst.results.clone()
            };
            out.push(Inst {
                kind: InstKind::Loop(Box::new(Loop {
                    var,
                    lo: l.lo,
                    hi,
                    step,
                    parallel: false,
                    inits: l.inits.clone(),
                    args,
                    body: Region { insts: body },
                })),
                results: results.clone(),
            });
            if remainder {
                // The original loop finishes the last iterations, from where the unrolled
                // one stopped.
                l.lo = hi;
                l.inits = results;
                out.push(inst);
            }
        }
        r.insts = out;
        changed
    }
}
