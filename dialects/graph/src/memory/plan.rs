//! In-place sharing and arena offsets.

use super::liveness::Liveness;
use super::{ALIGNMENT, MemoryStats, in_place_fits};
use crate::graph::{Graph, NodeId, Value};
use kiln_core::Result;
use std::collections::HashMap;

/// Where one arena tensor lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub value: Value,
    pub offset: usize,
    pub bytes: usize,
    pub def: usize,
    pub last: usize,
    /// Index into [`MemoryPlan::buffers`].
    pub buffer: usize,
}

/// Tensors that occupy the same bytes one after another because each was computed in
/// place over the previous one. Its lifetime is the union of theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    /// In schedule order; each member after the first overwrote its predecessor.
    pub members: Vec<Value>,
    pub bytes: usize,
    pub def: usize,
    pub last: usize,
    pub offset: usize,
}

/// A memory plan for one schedule.
#[derive(Debug, Clone)]
pub struct MemoryPlan {
    /// The schedule the plan is valid for.
    pub order: Vec<NodeId>,
    pub tensors: Vec<Placement>,
    pub buffers: Vec<Buffer>,
    /// `(operand, result)`: the result was written over the operand by the op at the
    /// result's definition step.
    pub in_place: Vec<(Value, Value)>,
    pub naive_bytes: usize,
    pub arena_bytes: usize,
    pub lower_bound_bytes: usize,
    index: HashMap<Value, usize>,
}

impl MemoryPlan {
    /// The placement of `v`, if it lives in the arena.
    pub fn placement(&self, v: Value) -> Option<&Placement> {
        self.index.get(&v).map(|&i| &self.tensors[i])
    }

    /// The arena offset of `v`, if it lives in the arena.
    pub fn offset(&self, v: Value) -> Option<usize> {
        self.placement(v).map(|p| p.offset)
    }

    pub fn stats(&self) -> MemoryStats {
        MemoryStats {
            naive_bytes: self.naive_bytes,
            arena_bytes: self.arena_bytes,
            lower_bound_bytes: self.lower_bound_bytes,
        }
    }
}

/// Plans `g`: in-place groups, then greedy arena placement, over two schedules —
/// [`Graph::topo_order`] and the memory-aware order of [`super::schedule`] — keeping the
/// smaller arena (the topological order on a tie). Executors must run the plan's `order`.
pub fn plan(g: &Graph) -> Result<MemoryPlan> {
    let by_topo = plan_with_order(g, g.topo_order()?)?;
    let by_memory = plan_with_order(g, super::schedule::memory_aware_order(g)?)?;
    Ok(if by_memory.arena_bytes < by_topo.arena_bytes {
        by_memory
    } else {
        by_topo
    })
}

/// Plans `g` over a given topological schedule.
pub fn plan_with_order(g: &Graph, order: Vec<NodeId>) -> Result<MemoryPlan> {
    let live = Liveness::with_order(g, order)?;
    let (mut buffers, buffer_of, in_place) = group_in_place(g, &live)?;
    let lower_bound_bytes = peak_live_bytes(&buffers, live.steps());

    let by_size = {
        let mut o: Vec<usize> = (0..buffers.len()).collect();
        o.sort_by_key(|&b| (std::cmp::Reverse(buffers[b].bytes), buffers[b].def, b));
        o
    };
    let mut best: Option<(usize, Vec<usize>)> = None;
    // Greedy by size is the reference heuristic; greedy by breadth ties with it on every
    // test model but densenet121, where it is 5 % smaller. (Ordering by size × lifetime or
    // by lifetime, and best-fit gap choice, were tried and never did better than these.)
    for order in [by_size, by_breadth(&buffers, live.steps())] {
        let (arena, offsets) = place(&buffers, &order);
        if best.as_ref().is_none_or(|(a, _)| arena < *a) {
            best = Some((arena, offsets));
        }
    }
    let (arena_bytes, offsets) = best.unwrap_or_default();
    for (b, off) in buffers.iter_mut().zip(offsets) {
        b.offset = off;
    }

    let tensors: Vec<Placement> = live
        .tensors
        .iter()
        .zip(&buffer_of)
        .map(|(t, &b)| Placement {
            value: t.value,
            offset: buffers[b].offset,
            bytes: t.bytes,
            def: t.def,
            last: t.last,
            buffer: b,
        })
        .collect();
    let index = tensors
        .iter()
        .enumerate()
        .map(|(i, p)| (p.value, i))
        .collect();
    Ok(MemoryPlan {
        naive_bytes: live.naive_bytes(),
        order: live.order,
        tensors,
        buffers,
        in_place,
        arena_bytes,
        lower_bound_bytes,
        index,
    })
}

type Groups = (Vec<Buffer>, Vec<usize>, Vec<(Value, Value)>);

/// Walks the schedule and lets each in-place capable op take the buffer of an operand
/// that dies at it. Returns the buffers, each tensor's buffer and the in-place pairs.
fn group_in_place(g: &Graph, live: &Liveness) -> Result<Groups> {
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut buffer_of = vec![usize::MAX; live.tensors.len()];
    let mut pairs = Vec::new();
    for (i, t) in live.tensors.iter().enumerate() {
        let node = g.producer(t.value).map(|n| g.node(n));
        let mut host = None;
        if let Some(node) = node
            && node.outputs().len() == 1
        {
            let out_ty = g.ty(t.value)?;
            for (k, operand) in node.inputs().iter().enumerate() {
                let Some(v) = *operand else { continue };
                let Some(src) = live.position(v) else {
                    continue;
                };
                if live.tensors[src].last == t.def
                    && in_place_fits(&node.op, node.inputs(), k, g.ty(v)?, out_ty)
                {
                    host = Some(src);
                    break;
                }
            }
        }
        // `host` indexes an earlier tensor (it was defined before this op ran).
        match host {
            Some(src) => {
                let b = buffer_of[src];
                buffer_of[i] = b;
                let buf = &mut buffers[b];
                buf.members.push(t.value);
                buf.bytes = buf.bytes.max(t.bytes);
                buf.last = buf.last.max(t.last);
                pairs.push((live.tensors[src].value, t.value));
            }
            None => {
                buffer_of[i] = buffers.len();
                buffers.push(Buffer {
                    members: vec![t.value],
                    bytes: t.bytes,
                    def: t.def,
                    last: t.last,
                    offset: 0,
                });
            }
        }
    }
    Ok((buffers, buffer_of, pairs))
}

/// The most bytes live at any one step, counting each in-place group once.
fn peak_live_bytes(buffers: &[Buffer], steps: usize) -> usize {
    live_bytes_per_step(buffers, steps)
        .into_iter()
        .max()
        .unwrap_or(0)
}

fn live_bytes_per_step(buffers: &[Buffer], steps: usize) -> Vec<usize> {
    let mut delta = vec![0i128; steps + 1];
    for b in buffers {
        delta[b.def] += b.bytes as i128;
        delta[b.last + 1] -= b.bytes as i128;
    }
    let mut acc = 0i128;
    delta[..steps]
        .iter()
        .map(|d| {
            acc += d;
            acc as usize
        })
        .collect()
}

/// "Greedy by breadth": visit steps from the most to the least crowded and place the
/// buffers live there, largest first — the crowded steps decide the arena size.
fn by_breadth(buffers: &[Buffer], steps: usize) -> Vec<usize> {
    let per_step = live_bytes_per_step(buffers, steps);
    let mut step_order: Vec<usize> = (0..steps).collect();
    step_order.sort_by_key(|&s| (std::cmp::Reverse(per_step[s]), s));
    let mut at_step: Vec<Vec<usize>> = vec![Vec::new(); steps];
    for (i, b) in buffers.iter().enumerate() {
        for list in &mut at_step[b.def..=b.last] {
            list.push(i);
        }
    }
    let mut seen = vec![false; buffers.len()];
    let mut order = Vec::with_capacity(buffers.len());
    for s in step_order {
        let mut here: Vec<usize> = at_step[s].iter().copied().filter(|&b| !seen[b]).collect();
        here.sort_by_key(|&b| (std::cmp::Reverse(buffers[b].bytes), b));
        for b in here {
            seen[b] = true;
            order.push(b);
        }
    }
    order
}

fn align_up(x: usize) -> usize {
    x.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// Places buffers in `order`, each at the lowest aligned offset where it collides with no
/// already placed buffer whose lifetime overlaps. Returns the arena size and the offsets.
fn place(buffers: &[Buffer], order: &[usize]) -> (usize, Vec<usize>) {
    let mut offsets = vec![0usize; buffers.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(buffers.len());
    let mut arena = 0;
    for &b in order {
        let me = &buffers[b];
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&o| buffers[o].def <= me.last && me.def <= buffers[o].last)
            .map(|&o| (offsets[o], offsets[o] + buffers[o].bytes))
            .filter(|(lo, hi)| hi > lo)
            .collect();
        busy.sort_unstable();
        let mut at = 0;
        for (lo, hi) in busy {
            if at + me.bytes <= lo {
                break;
            }
            at = at.max(align_up(hi));
        }
        offsets[b] = at;
        arena = arena.max(at + me.bytes);
        placed.push(b);
    }
    (arena, offsets)
}
