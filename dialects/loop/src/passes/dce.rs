//! `loop.dce`: removes pure instructions whose results nobody reads, and loops that store
//! nothing and whose results nobody reads. One backward sweep suffices: walking the kernel in
//! reverse textual order (a loop's body before the loop itself), every use of a value is seen
//! before its definition, and removing an instruction releases its operands at once, so whole
//! dead chains go in one run.
//!
//! Not removed: stores, yields, loops that store. Carried values of a live loop stay even if
//! their results are unused (that would rewrite the loop's signature).

use super::{is_pure, module_pass, stores};
use crate::ir::*;
use crate::verify::operands;

pub struct Dce;

module_pass!(Dce, "loop.dce");

impl Dce {
    fn run_kernel(&mut self, k: &mut Kernel) -> kiln_core::Result<bool> {
        let mut uses = vec![0u32; k.types.len()];
        count(&k.body, &mut uses, 1);
        let mut changed = false;
        sweep(&mut k.body, &mut uses, &mut changed);
        Ok(changed)
    }
}

/// Adds `delta` (1 or -1 as wrapping) to the use count of every operand in the region.
fn count(r: &Region, uses: &mut [u32], delta: i32) {
    for inst in &r.insts {
        for v in operands(&inst.kind) {
            if let Some(u) = uses.get_mut(v.index()) {
                *u = u.wrapping_add_signed(delta);
            }
        }
        if let InstKind::Loop(l) = &inst.kind {
            count(&l.body, uses, delta);
        }
    }
}

fn sweep(r: &mut Region, uses: &mut [u32], changed: &mut bool) {
    let mut keep = vec![true; r.insts.len()];
    for (i, inst) in r.insts.iter_mut().enumerate().rev() {
        if let InstKind::Loop(l) = &mut inst.kind {
            sweep(&mut l.body, uses, changed);
        }
        let unused = inst
            .results
            .iter()
            .all(|v| uses.get(v.index()).is_none_or(|&u| u == 0));
        let removable = match &inst.kind {
            InstKind::Loop(l) => !stores(&l.body),
            k => is_pure(k) && !inst.results.is_empty(),
        };
        if unused && removable {
            keep[i] = false;
            *changed = true;
            for v in operands(&inst.kind) {
                if let Some(u) = uses.get_mut(v.index()) {
                    *u = u.saturating_sub(1);
                }
            }
            if let InstKind::Loop(l) = &inst.kind {
                count(&l.body, uses, -1);
            }
        }
    }
    let mut it = keep.into_iter();
    r.insts.retain(|_| it.next().unwrap_or(true));
}
