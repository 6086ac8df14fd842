//! `loop.cse`: common subexpression elimination over structured regions. An instruction is
//! replaced by an identical earlier one whose result is visible at its position: earlier in
//! the same region or in an enclosing one (the definition then dominates the use). Operands
//! of commutative operations are ordered first, so `a + b` and `b + a` merge.
//!
//! Loads merge only while memory cannot have changed in between: any store ends every
//! earlier load's availability (buffers may alias when the memory plan runs an op in place),
//! and a loop body that stores sees none of the loads from outside it, since the store of one
//! iteration runs before the loads of the next. Math helper calls are pure and merge.

use super::{map_operands, module_pass, resolve, stores, substitute};
use crate::ir::*;
use std::collections::HashMap;

pub struct Cse;

module_pass!(Cse, "loop.cse");

impl Cse {
    fn run_kernel(&mut self, k: &mut Kernel) -> kiln_core::Result<bool> {
        let mut w = Walker {
            types: &k.types,
            pure: vec![HashMap::new()],
            loads: vec![HashMap::new()],
            load_floor: 0,
            subst: HashMap::new(),
        };
        w.region(&mut k.body);
        let subst = w.subst;
        substitute(&mut k.body, &subst);
        Ok(!subst.is_empty())
    }
}

struct Walker<'t> {
    types: &'t [Type],
    /// Available pure non-load instructions per scope, innermost last.
    pure: Vec<HashMap<String, Val>>,
    /// Available loads per scope; only scopes from `load_floor` on may be used.
    loads: Vec<HashMap<String, Val>>,
    load_floor: usize,
    subst: HashMap<Val, Val>,
}

/// The identity of a pure instruction: its kind with operands in canonical order, and its
/// result type. Float constants compare by bits (so -0.0 and 0.0, or two NaNs, stay apart).
fn key(kind: &InstKind, ty: Type) -> Option<String> {
    let mut k = kind.clone();
    match &mut k {
        InstKind::Fconst(x) => return Some(format!("fconst {:#x}", x.to_bits())),
        InstKind::Binary(op, a, b)
            if matches!(
                op,
                BinOp::Add | BinOp::Mul | BinOp::Min | BinOp::Max | BinOp::And | BinOp::Or
            ) && *a > *b =>
        {
            std::mem::swap(a, b)
        }
        InstKind::Fma(a, b, _) if *a > *b => std::mem::swap(a, b),
        InstKind::Store(..) | InstKind::Yield(_) | InstKind::Loop(_) => return None,
        _ => {}
    }
    Some(format!("{k:?} : {ty}"))
}

impl Walker<'_> {
    fn region(&mut self, r: &mut Region) {
        let mut keep = Vec::with_capacity(r.insts.len());
        for mut inst in std::mem::take(&mut r.insts) {
            let subst = &self.subst;
            map_operands(&mut inst.kind, |v| resolve(subst, v));
            match &mut inst.kind {
                InstKind::Loop(l) => {
                    let body_stores = stores(&l.body);
                    self.pure.push(HashMap::new());
                    self.loads.push(HashMap::new());
                    let floor = self.load_floor;
                    if body_stores {
                        self.load_floor = self.loads.len() - 1;
                    }
                    self.region(&mut l.body);
                    self.load_floor = floor;
                    self.pure.pop();
                    self.loads.pop();
                    if body_stores {
                        self.kill_loads();
                    }
                }
                InstKind::Store(..) => self.kill_loads(),
                kind => {
                    if let (Some(&res), 1) = (inst.results.first(), inst.results.len())
                        && let Some(key) = key(kind, self.types[res.index()])
                    {
                        let is_load = matches!(kind, InstKind::Load(..));
                        if let Some(prev) = self.lookup(&key, is_load) {
                            self.subst.insert(res, prev);
                            continue;
                        }
                        let table = if is_load {
                            &mut self.loads
                        } else {
                            &mut self.pure
                        };
                        table.last_mut().expect("a scope").insert(key, res);
                    }
                }
            }
            keep.push(inst);
        }
        r.insts = keep;
    }

    fn lookup(&self, key: &str, is_load: bool) -> Option<Val> {
        let scopes = if is_load {
            &self.loads[self.load_floor..]
        } else {
            &self.pure[..]
        };
        scopes.iter().rev().find_map(|s| s.get(key).copied())
    }

    /// A store happened: no load seen so far is known to read the current memory.
    fn kill_loads(&mut self) {
        for s in &mut self.loads[self.load_floor..] {
            s.clear();
        }
    }
}
