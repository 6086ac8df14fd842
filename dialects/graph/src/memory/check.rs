//! The memory-plan checker: an independent proof that a plan is safe.
//!
//! It shares no code with the planner beyond the in-place legality table: it re-validates
//! the schedule, re-derives every tensor's live range from the operand lists, re-checks each
//! claimed in-place pair, and then checks every pair of tensors whose live ranges overlap for
//! disjoint address ranges. The only overlap allowed is an in-place pair: the result written
//! by the op at which its operand dies, at exactly the operand's address.

use super::plan::MemoryPlan;
use super::{ALIGNMENT, in_place_fits};
use crate::graph::{Graph, Value};
use crate::ops::Op;
use kiln_core::{Result, bail, ensure};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy)]
struct Life {
    value: Value,
    bytes: usize,
    def: usize,
    last: usize,
    offset: usize,
}

/// Proves `plan` safe for `g`, or says which tensors collide.
pub fn check(g: &Graph, plan: &MemoryPlan) -> Result<()> {
    let name = |v: Value| g.value(v).name.clone();

    // The schedule: every op exactly once, each operand defined before it is read.
    ensure!(
        plan.order.len() == g.node_count(),
        Verify,
        "memory plan schedules {} ops, the graph has {}",
        plan.order.len(),
        g.node_count()
    );
    let mut step_of = HashMap::new();
    for (s, &n) in plan.order.iter().enumerate() {
        ensure!(
            g.contains(n) && step_of.insert(n, s).is_none(),
            Verify,
            "memory plan schedule is not a permutation of the graph's ops (step {s})"
        );
    }
    let outputs: HashSet<Value> = g.outputs().iter().copied().collect();
    let mut lives: Vec<Life> = Vec::new();
    let mut at: HashMap<Value, usize> = HashMap::new();
    let mut defined: HashSet<Value> = g.inputs().iter().copied().collect();
    for (s, &n) in plan.order.iter().enumerate() {
        let node = g.node(n);
        for &v in node.inputs().iter().flatten() {
            ensure!(
                defined.contains(&v),
                Verify,
                "memory plan schedule reads '%{}' at step {s} before it is defined",
                name(v)
            );
            if let Some(&i) = at.get(&v) {
                lives[i].last = s;
            }
        }
        defined.extend(node.outputs().iter().copied());
        if matches!(node.op, Op::Const(_)) {
            continue;
        }
        for &v in node.outputs().iter().filter(|v| !outputs.contains(v)) {
            let Some(p) = plan.placement(v) else {
                bail!(Verify, "memory plan has no place for '%{}'", name(v));
            };
            let bytes = g.ty(v)?.size_bytes();
            ensure!(
                p.bytes >= bytes,
                Verify,
                "'%{}' needs {bytes} bytes, the plan gives it {}",
                name(v),
                p.bytes
            );
            at.insert(v, lives.len());
            lives.push(Life {
                value: v,
                bytes,
                def: s,
                last: s,
                offset: p.offset,
            });
        }
    }
    ensure!(
        lives.len() == plan.tensors.len(),
        Verify,
        "memory plan places {} tensors, the graph has {} intermediates",
        plan.tensors.len(),
        lives.len()
    );
    for l in &lives {
        ensure!(
            l.offset % ALIGNMENT == 0 && l.offset + l.bytes <= plan.arena_bytes,
            Verify,
            "'%{}' at offset {} (+{} bytes) is misaligned or outside the {}-byte arena",
            name(l.value),
            l.offset,
            l.bytes,
            plan.arena_bytes
        );
    }

    // Each in-place pair: the result's op reads the operand where the operand dies, may
    // legally overwrite it, and the two sit at the same address.
    let mut allowed: HashSet<(Value, Value)> = HashSet::new();
    let mut hosted: HashSet<Value> = HashSet::new();
    for &(src, dst) in &plan.in_place {
        let (Some(&a), Some(&b)) = (at.get(&src), at.get(&dst)) else {
            bail!(
                Verify,
                "in-place pair ('%{}', '%{}') names a tensor outside the arena",
                name(src),
                name(dst)
            );
        };
        let (a, b) = (lives[a], lives[b]);
        let node = g.node(plan.order[b.def]);
        let (src_ty, dst_ty) = (g.ty(src)?, g.ty(dst)?);
        let first_host = hosted.insert(dst);
        let legal = first_host
            && node.outputs().len() == 1
            && a.last == b.def
            && a.offset == b.offset
            && node.inputs().iter().enumerate().any(|(k, v)| {
                *v == Some(src) && in_place_fits(&node.op, node.inputs(), k, src_ty, dst_ty)
            });
        ensure!(
            legal,
            Verify,
            "'%{}' cannot be computed in place over '%{}'",
            name(dst),
            name(src)
        );
        allowed.insert((src, dst));
    }

    // Pairwise: tensors live at a common step must not share a byte.
    let mut by_def: Vec<Life> = lives.clone();
    by_def.sort_by_key(|l| (l.def, l.value));
    for (i, a) in by_def.iter().enumerate() {
        for b in by_def[i + 1..].iter().take_while(|b| b.def <= a.last) {
            let disjoint = a.bytes == 0
                || b.bytes == 0
                || a.offset + a.bytes <= b.offset
                || b.offset + b.bytes <= a.offset;
            if !disjoint
                && !allowed.contains(&(a.value, b.value))
                && !allowed.contains(&(b.value, a.value))
            {
                bail!(
                    Verify,
                    "'%{}' (steps {}..={}, bytes {}..{}) and '%{}' (steps {}..={}, bytes {}..{}) are live together and overlap",
                    name(a.value),
                    a.def,
                    a.last,
                    a.offset,
                    a.offset + a.bytes,
                    name(b.value),
                    b.def,
                    b.last,
                    b.offset,
                    b.offset + b.bytes
                );
            }
        }
    }

    // The reported numbers, recomputed.
    let naive: usize = lives.iter().map(|l| l.bytes).sum();
    let mut delta = vec![0i128; plan.order.len() + 1];
    for l in &lives {
        delta[l.def] += l.bytes as i128;
        delta[l.last + 1] -= l.bytes as i128;
    }
    for &(src, dst) in &plan.in_place {
        // Both are live at the step that converts one into the other: count it once.
        let s = lives[at[&dst]].def;
        let shared = lives[at[&src]].bytes.min(lives[at[&dst]].bytes) as i128;
        delta[s] -= shared;
        delta[s + 1] += shared;
    }
    let mut acc = 0i128;
    let mut peak = 0i128;
    for d in &delta[..plan.order.len()] {
        acc += d;
        peak = peak.max(acc);
    }
    ensure!(
        plan.naive_bytes == naive && plan.lower_bound_bytes == peak as usize,
        Verify,
        "memory plan reports naive {} / lower bound {} bytes, the checker finds {naive} / {peak}",
        plan.naive_bytes,
        plan.lower_bound_bytes
    );
    ensure!(
        plan.arena_bytes >= plan.lower_bound_bytes,
        Verify,
        "memory plan arena ({} bytes) is below the live-set lower bound ({} bytes)",
        plan.arena_bytes,
        plan.lower_bound_bytes
    );
    Ok(())
}
