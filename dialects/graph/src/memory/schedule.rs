//! Memory-aware scheduling: a topological order that keeps the live set small.
//!
//! The planner owns the schedule (every plan carries its `order`, and executors run ops in
//! that order), so it may pick any topological order. The order matters wherever a graph
//! branches: an inception block or a SqueezeNet fire module that starts all its branches
//! before finishing one keeps every branch's first result alive at once. This is greedy list
//! scheduling by memory pressure: among the ready ops, run the one whose step adds the
//! fewest live bytes (its arena results, minus the operands it is the last reader of), and
//! among equals the one that reads the most recently computed value, so a started branch is
//! finished before the next begins. [`super::plan`] plans both this order and
//! [`Graph::topo_order`] and keeps the smaller arena, so the heuristic can never make a
//! plan worse.

use crate::graph::{Graph, NodeId, Value};
use crate::ops::Op;
use kiln_core::Result;
use petgraph::Direction;
use petgraph::visit::EdgeRef;
use std::collections::{BTreeSet, HashMap, HashSet};

/// A topological order of `g` chosen to keep the bytes live at each step small (see the
/// module docs). Needs every value typed.
pub fn memory_aware_order(g: &Graph) -> Result<Vec<NodeId>> {
    // Validate acyclicity (and get the stable order for tie-breaks) first.
    let topo = g.topo_order()?;
    let rank: HashMap<NodeId, usize> = topo.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let outputs: HashSet<Value> = g.outputs().iter().copied().collect();
    let pg = g.petgraph();

    // Bytes of each arena tensor an op writes, and the unscheduled reads of each value.
    let arena_bytes = |v: Value| -> usize {
        let is_const = g
            .producer(v)
            .is_some_and(|p| matches!(g.node(p).op, Op::Const(_)));
        if is_const || outputs.contains(&v) {
            return 0;
        }
        g.value(v).ty.as_ref().map_or(0, |t| t.size_bytes())
    };
    let mut pending_reads: HashMap<Value, usize> = HashMap::new();
    for &n in &topo {
        for &v in g.node(n).inputs().iter().flatten() {
            *pending_reads.entry(v).or_default() += 1;
        }
    }
    let mut indeg: HashMap<NodeId, usize> = topo
        .iter()
        .map(|&n| (n, pg.edges_directed(n, Direction::Incoming).count()))
        .collect();
    let mut ready: BTreeSet<(usize, NodeId)> = topo
        .iter()
        .filter(|n| indeg[*n] == 0)
        .map(|&n| (rank[&n], n))
        .collect();
    // The step at which each value was computed, for the "finish the branch" tie-break.
    let mut computed_at: HashMap<Value, usize> = HashMap::new();
    let mut order = Vec::with_capacity(topo.len());
    while !ready.is_empty() {
        let step = order.len();
        let pick = ready
            .iter()
            .map(|&(r, n)| {
                let node = g.node(n);
                let alloc: usize = node.outputs().iter().map(|&v| arena_bytes(v)).sum();
                let mut counted: Vec<Value> = Vec::new();
                let mut freed = 0usize;
                for &v in node.inputs().iter().flatten() {
                    if counted.contains(&v) {
                        continue;
                    }
                    counted.push(v);
                    let reads_here = node.inputs().iter().filter(|i| **i == Some(v)).count();
                    if pending_reads.get(&v) == Some(&reads_here) {
                        freed += arena_bytes(v);
                    }
                }
                let delta = alloc as i128 - freed as i128;
                // Most recent operand first (negated so that smaller is better).
                let recent = node
                    .inputs()
                    .iter()
                    .flatten()
                    .filter_map(|v| computed_at.get(v))
                    .max()
                    .map_or(usize::MAX, |&s| step - s);
                (delta, recent, r, n)
            })
            .min()
            .expect("ready is not empty");
        let (_, _, r, n) = pick;
        ready.remove(&(r, n));
        order.push(n);
        let node = g.node(n);
        for &v in node.inputs().iter().flatten() {
            if let Some(c) = pending_reads.get_mut(&v) {
                *c -= 1;
            }
        }
        for &v in node.outputs() {
            computed_at.insert(v, step);
        }
        for e in pg.edges_directed(n, Direction::Outgoing) {
            let d = indeg.get_mut(&e.target()).expect("edge target exists");
            *d -= 1;
            if *d == 0 {
                ready.insert((rank[&e.target()], e.target()));
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::super::{check, plan, plan_with_order};
    use crate::text::parse;

    /// Two branches, each a large intermediate reduced to a small one. The insertion order
    /// interleaves them (both large tensors live at once); the memory-aware order finishes
    /// one branch first.
    const BRANCHES: &str = "graph @branches(%x: f32[1,64]) -> (f32[1,8]) {
      %w1 = const f32[64,1024] splat(0.5)
      %w2 = const f32[1024,8] splat(0.25)
      %p = graph.matmul(%x, %w1) : f32[1,1024]
      %r = graph.matmul(%x, %w1) : f32[1,1024]
      %q = graph.matmul(%p, %w2) : f32[1,8]
      %s = graph.matmul(%r, %w2) : f32[1,8]
      %y = graph.eltwise_sum(%q, %s) {coeffs=[1.0, -1.0]} : f32[1,8]
      %z = graph.relu(%y) : f32[1,8]
      return %z
    }";

    #[test]
    fn finishing_a_branch_first_halves_the_arena() {
        let g = parse(BRANCHES).unwrap();
        let topo = plan_with_order(&g, g.topo_order().unwrap()).unwrap();
        check(&g, &topo).unwrap();
        let best = plan(&g).unwrap();
        check(&g, &best).unwrap();
        assert!(topo.arena_bytes >= 2 * 4096, "p and r live together");
        assert!(
            best.arena_bytes < 4096 + 256,
            "q frees p before r is computed: {}",
            best.arena_bytes
        );
        assert_ne!(best.order, topo.order);
        // The weighted sum writes over its first operand, which dies there.
        let name = |v| g.value(v).name.clone();
        let pairs: Vec<(String, String)> = best
            .in_place
            .iter()
            .map(|&(a, b)| (name(a), name(b)))
            .collect();
        assert!(pairs.contains(&("q".into(), "y".into())), "{pairs:?}");
    }

    #[test]
    fn a_chain_keeps_the_topological_order() {
        let g = parse(
            "graph @chain(%x: f32[1,256]) -> (f32[1,256]) {
              %a = graph.softmax(%x) : f32[1,256]
              %b = graph.softmax(%a) : f32[1,256]
              return %b
            }",
        )
        .unwrap();
        assert_eq!(plan(&g).unwrap().order, g.topo_order().unwrap());
    }
}
