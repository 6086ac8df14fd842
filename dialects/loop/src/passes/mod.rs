//! Loop-dialect passes, one per file, each registered under its `loop.` name. They work on a
//! [`Module`] kernel by kernel; the shared helpers below rewrite values (SSA: a value is
//! replaced by substituting its uses everywhere after its definition) and tell pure
//! instructions from effectful ones.

use crate::ir::*;
use kiln_core::{PassRegistry, Result};
use std::collections::HashMap;

pub mod cse;
pub mod dce;
pub mod fold_constants;
pub mod unroll;
pub mod unroll_inner;

/// The loop optimisation pipeline, repeated to a fixed point: unroll small loops first (their
/// induction variables become constants), then fold the index arithmetic that exposes,
/// merge what became identical, and drop what became dead. `loop.unroll-inner` is not in it:
/// its factor is a scheduling choice (register pressure), made by whoever lowers the kernel.
pub const LOOP_OPT: &str = "loop.unroll,loop.fold-constants,loop.cse,loop.dce";

/// Every loop pass and pipeline, by name.
pub fn registry() -> PassRegistry<Module> {
    let mut r = PassRegistry::default();
    r.register(
        "loop.fold-constants",
        "evaluate arithmetic on constants and drop identities (x+0, x*1)",
        || Box::new(fold_constants::FoldConstants),
    );
    r.register(
        "loop.cse",
        "merge identical pure instructions whose first copy is visible",
        || Box::new(cse::Cse),
    );
    r.register(
        "loop.dce",
        "remove pure instructions and store-free loops whose results nobody reads",
        || Box::new(dce::Dce),
    );
    r.register(
        "loop.unroll",
        "fully unroll loops of at most 8 iterations (register blocking)",
        || Box::new(unroll::Unroll::default()),
    );
    r.register(
        "loop.unroll-inner",
        "unroll innermost loops by 4, keeping a remainder loop (K-unrolling)",
        || Box::new(unroll_inner::UnrollInner::default()),
    );
    r.register_fixed_point("loop-opt", "the loop optimisation pipeline", LOOP_OPT);
    r
}

/// Runs a per-kernel rewrite over a module; reports whether any kernel changed.
pub(crate) fn each_kernel(
    m: &mut Module,
    mut f: impl FnMut(&mut Kernel) -> Result<bool>,
) -> Result<bool> {
    let mut changed = false;
    for k in &mut m.kernels {
        changed |= f(k)?;
    }
    Ok(changed)
}

/// A fresh value of type `ty`.
pub(crate) fn new_val(k: &mut Kernel, ty: Type) -> Val {
    k.types.push(ty);
    Val(k.types.len() as u32 - 1)
}

/// Whether an instruction may be removed or merged when its results are unused or equal:
/// it writes no memory and has no other effect. Loads count as pure (nothing here traps on
/// purpose), math helper calls too; stores, yields and loops (which may store) do not.
pub(crate) fn is_pure(kind: &InstKind) -> bool {
    !matches!(
        kind,
        InstKind::Store(..) | InstKind::Yield(_) | InstKind::Loop(_)
    )
}

/// Whether a region (nested loops included) stores to any buffer.
pub(crate) fn stores(r: &Region) -> bool {
    r.insts.iter().any(|i| match &i.kind {
        InstKind::Store(..) => true,
        InstKind::Loop(l) => stores(&l.body),
        _ => false,
    })
}

/// Applies `f` to every value an instruction reads (a loop: its initial values, not its body).
pub(crate) fn map_operands(kind: &mut InstKind, mut f: impl FnMut(Val) -> Val) {
    match kind {
        InstKind::Iconst(..) | InstKind::Fconst(_) => {}
        InstKind::Binary(_, a, b) | InstKind::Cmp(_, a, b) | InstKind::Insert(a, b, _) => {
            *a = f(*a);
            *b = f(*b);
        }
        InstKind::Unary(_, a)
        | InstKind::Splat(_, a)
        | InstKind::Extract(a, _)
        | InstKind::Reduce(_, a)
        | InstKind::Cast(_, a)
        | InstKind::Bitcast(_, a)
        | InstKind::Load(_, _, a, _) => *a = f(*a),
        InstKind::NarrowU8(vs) => vs.iter_mut().for_each(|v| *v = f(*v)),
        InstKind::WidenU8(a, _) => *a = f(*a),
        InstKind::Shuffle(a, b, _) => {
            *a = f(*a);
            *b = f(*b);
        }
        InstKind::Fma(a, b, c) | InstKind::Select(a, b, c) | InstKind::DotU8S8(a, b, c) => {
            *a = f(*a);
            *b = f(*b);
            *c = f(*c);
        }
        InstKind::Store(_, off, _, v) => {
            *off = f(*off);
            *v = f(*v);
        }
        InstKind::Call(_, vs) | InstKind::Yield(vs) => vs.iter_mut().for_each(|v| *v = f(*v)),
        InstKind::Loop(l) => l.inits.iter_mut().for_each(|v| *v = f(*v)),
    }
}

/// Follows a substitution to its end (`a → b → c` gives `c`).
pub(crate) fn resolve(map: &HashMap<Val, Val>, mut v: Val) -> Val {
    while let Some(&n) = map.get(&v) {
        if n == v {
            break;
        }
        v = n;
    }
    v
}

/// Replaces every use of a key of `map` in the region (nested bodies included).
pub(crate) fn substitute(r: &mut Region, map: &HashMap<Val, Val>) {
    if map.is_empty() {
        return;
    }
    for inst in &mut r.insts {
        map_operands(&mut inst.kind, |v| resolve(map, v));
        if let InstKind::Loop(l) = &mut inst.kind {
            substitute(&mut l.body, map);
        }
    }
}

/// Lets a pass struct with a per-kernel `run_kernel` be a module pass. Each kernel is
/// verified first: the rewrites index by value and assume well-typed SSA, and the pass
/// manager verifies only after a pass, so malformed input must stop here, as an error.
macro_rules! module_pass {
    ($ty:ty, $name:literal) => {
        impl kiln_core::Pass<crate::ir::Module> for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn run(&mut self, m: &mut crate::ir::Module) -> kiln_core::Result<bool> {
                crate::passes::each_kernel(m, |k| {
                    crate::verify::verify_kernel(k)?;
                    self.run_kernel(k)
                })
            }
        }
    };
}
pub(crate) use module_pass;
