//! `graph.layout`: puts convolution regions in channels-last (NHWC) layout.
//!
//! **Why NHWC.** kiln's fp32 and int8 conv kernels are implicit GEMMs over NHWC (decided
//! with the loop dialect): with output channels contiguous, a 4×8 register block of the
//! accumulator vectorises along the output channels and is stored with plain vector
//! stores; with input channels contiguous, the int8 VNNI dot product reads 4 consecutive
//! input channels of one pixel as a single 32-bit broadcast, and each GEMM "row" of the
//! implicit im2col is a contiguous run of C values instead of a strided gather. Depthwise
//! convs vectorise along channels too, which only NHWC makes contiguous. A blocked NCHWc
//! layout would serve the fp32 kernel as well but needs a repacking at every channel-count
//! change (concat, grouped convs), and the int8 kernel would still want the 4-channel
//! groups innermost; plain NHWC is the one layout both kernels read directly. Conv weights
//! keep their logical `[M, C/group, k…]` form: the kernels pack weights for their own loops.
//!
//! **Representation.** Spatial ops carry `layout="nhwc"` (see [`crate::ops::Layout`]):
//! conv, max/average/global pools, batch normalization and LRN. Conversions are ordinary
//! `transpose` ops with perm `[0,2,3,1]` (to NHWC) or `[0,3,1,2]` (back), so every later
//! pass, the interpreter and the memory planner see nothing new.
//!
//! **Algorithm.** Conceptually each conv is wrapped in a to-NHWC / to-NCHW pair, the pairs
//! are pushed through layout-agnostic ops, and pairs that meet cancel. The pass does this
//! globally rather than one push at a time: every op is either *flipped* (it now reads and
//! writes channels-last tensors) or not, a conversion is needed on a value exactly when its
//! producer and some reader disagree (one conversion per value, shared by its readers), and
//! a local search flips layout-agnostic ops — one at a time, and whole connected groups of
//! them — while that lowers the number of conversions. Convs (the seeds) are always
//! flipped; graph inputs and outputs, and every op that is not layout-agnostic, never are.
//! Flipping an op that is adjacent to a flipped one is also accepted when the count stays
//! equal, which grows regions through chains (conv → relu → pool → conv) and moves a
//! conversion past a pool or a pad onto the smaller tensor; each op is tie-flipped at most
//! once, and every other move strictly lowers the count, so the search ends. Group moves
//! catch regions that only pay as a whole (a feature pyramid's add → resize → add chain).
//! Layout-agnostic means (with the rewrite its flipped form needs):
//! - element-wise unary ops, casts, clip with scalar bounds;
//! - broadcasting binaries, prelu, where and eltwise_sum whose operands are full-rank
//!   tensors or constants (constants are reshaped to full rank and permuted once);
//! - concat and split (the axis is remapped), slice (its constant axes are remapped), pad
//!   (the amounts are permuted), resize (roi/scales/sizes permuted, spatial `axes` remapped:
//!   interpolation is separable per axis);
//! - the spatial ops above (their `layout` attribute is set), and a conv's fused residual.
//!
//! A conversion that only moves size-1 dims (the `[1, C, 1, 1]` result of a global pool)
//! does not move data; it becomes a `reshape`, a view, and costs nothing. Finally a
//! conversion that meets a transpose already in the model composes with it, and cancels
//! when the composition is the identity (a TensorFlow export's NHWC → NCHW input transpose
//! then disappears instead of being undone).
//!
//! The pass reports the conversions it left in the graph as the statistic
//! `conversions inserted` (`--time-passes`, `kiln info`).

use super::layout_rewrite::materialize;
use crate::graph::{Graph, NodeId, Value};
use crate::ops::Op;
use crate::ops::activation::{RESIDUAL, SLOPE};
use crate::ops::channel_layout::{permute, to_last_perm};
use kiln_core::{Pass, Result};
use std::collections::{HashMap, HashSet};

/// The `graph.layout` pass. Its counters add up over every run of this instance (a
/// fixed-point pipeline runs it once per round).
#[derive(Debug, Default)]
pub struct Layout {
    /// Conversions left in the graph.
    pub inserted: u64,
    /// Transposes of the model that cancelled against a conversion.
    pub cancelled: u64,
}

impl Pass<Graph> for Layout {
    fn name(&self) -> &'static str {
        "graph.layout"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut d = analyse(g)?;
        if d.seeds == 0 {
            return Ok(false);
        }
        search(g, &mut d);
        let out = materialize(g, &d)?;
        self.inserted += out.inserted as u64;
        self.cancelled += out.cancelled as u64;
        Ok(true)
    }
    fn statistics(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("conversions inserted", self.inserted),
            ("model transposes cancelled", self.cancelled),
        ]
    }
}

/// How a flippable op reads its operands once flipped.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    /// Operands that are activations in the op's layout: they need channels-last values.
    pub data: Vec<usize>,
    /// Constant operands to reshape to full rank and permute (binary operands, a slope).
    pub consts: Vec<usize>,
}

/// The rank of `v`'s type, if known.
fn rank(g: &Graph, v: Value) -> Option<usize> {
    g.value(v).ty.as_ref().map(|t| t.rank())
}

/// Whether `v` is a constant with loaded data.
fn is_const(g: &Graph, v: Value) -> bool {
    super::fuse_util::const_tensor(g, v).is_some()
}

/// The roles of `n`'s operands if it can be flipped, and whether it must be (a conv).
pub fn roles(g: &Graph, n: NodeId) -> Option<(Roles, bool)> {
    let node = g.node(n);
    let out = *node.outputs().first()?;
    let r = rank(g, out)?;
    // Split is the one multi-result op flipped: all its results are channels last.
    let results_ok = match &node.op {
        Op::Split(_) => node.outputs().iter().all(|&v| rank(g, v) == Some(r)),
        _ => node.outputs().len() == 1,
    };
    if r < 3 || !results_ok {
        return None;
    }
    let full = |k: usize| node.input(k).is_some_and(|v| rank(g, v) == Some(r));
    let data0 = Roles {
        data: vec![0],
        consts: vec![],
    };
    let roles = match &node.op {
        Op::Conv(c) if !c.layout.is_nhwc() => {
            // A residual that broadcasts from a lower rank, or a computed slope, would need
            // a reshape as well as a transpose; such convs keep NCHW.
            let y_ok = node.input(RESIDUAL).is_none() || full(RESIDUAL);
            let slope = node.input(SLOPE);
            let s_ok = slope.is_none_or(|s| is_const(g, s) && rank(g, s).is_some_and(|k| k <= r));
            if !(full(0) && y_ok && s_ok) {
                return None;
            }
            let mut data = vec![0];
            data.extend(node.input(RESIDUAL).map(|_| RESIDUAL));
            let consts = slope.map(|_| vec![SLOPE]).unwrap_or_default();
            return Some((Roles { data, consts }, true));
        }
        Op::MaxPool(p) if !p.layout.is_nhwc() => data0,
        Op::DepthToSpace(p) if !p.layout.is_nhwc() => data0,
        Op::SpaceToDepth(p) if !p.layout.is_nhwc() => data0,
        Op::AveragePool(p) if !p.layout.is_nhwc() => data0,
        Op::GlobalPool(p) if !p.layout.is_nhwc() => data0,
        Op::BatchNormalization(p) if !p.layout.is_nhwc() => data0,
        Op::Lrn(p) if !p.layout.is_nhwc() => data0,
        Op::Unary(_) | Op::LeakyRelu(_) | Op::HardSigmoid(_) | Op::Gelu(_) | Op::Cast(_) => data0,
        Op::CastLike(_) => data0,
        Op::Clip(_) => {
            let scalar = |k: usize| {
                node.input(k)
                    .is_none_or(|v| g.value(v).ty.as_ref().is_some_and(|t| t.numel() <= 1))
            };
            if !(scalar(1) && scalar(2)) {
                return None;
            }
            data0
        }
        Op::Pad(_) => {
            let pads_const = node.input(1).is_some_and(|v| is_const(g, v));
            if !pads_const || node.input(3).is_some() {
                return None;
            }
            data0
        }
        // The axis (an attribute) is remapped; the split sizes are along it, unchanged.
        Op::Split(_) if full(0) => data0,
        // Slice axes must be given, as a constant, to be remapped.
        Op::Slice(_) if full(0) && node.input(3).is_some_and(|v| is_const(g, v)) => data0,
        // Interpolation is separable per axis, so permuting the axes commutes with it; the
        // per-axis roi/scales/sizes constants are permuted (or spatial `axes` remapped).
        Op::Resize(rz) if full(0) && rz.axes.iter().all(|&a| a >= 2) => {
            let consts_ok = (1..=3).all(|k| node.input(k).is_none_or(|v| is_const(g, v)));
            if !consts_ok {
                return None;
            }
            data0
        }
        Op::Binary(_) | Op::PRelu(_) | Op::Where(_) | Op::EltwiseSum(_) | Op::Concat(_) => {
            let mut roles = Roles::default();
            for (k, v) in node.inputs().iter().enumerate() {
                let v = (*v)?;
                let rk = rank(g, v)?;
                if is_const(g, v) && rk <= r {
                    roles.consts.push(k);
                } else if rk == r {
                    roles.data.push(k);
                } else {
                    return None;
                }
            }
            roles
        }
        _ => return None,
    };
    Some((roles, false))
}

/// The state of the search: which ops are flipped and how they read their operands.
#[derive(Debug, Default)]
pub struct Analysis {
    pub roles: HashMap<NodeId, Roles>,
    pub flipped: HashSet<NodeId>,
    /// Flippable ops that are not seeds, in schedule order.
    pub movable: Vec<NodeId>,
    pub seeds: usize,
    pub outputs: HashSet<Value>,
}

impl Analysis {
    /// Whether operand `k` of `n` must be channels last.
    pub fn wants(&self, n: NodeId, k: usize) -> bool {
        self.flipped.contains(&n) && self.roles.get(&n).is_some_and(|r| r.data.contains(&k))
    }

    /// Whether `v` is produced channels last.
    pub fn produced_flipped(&self, g: &Graph, v: Value) -> bool {
        g.producer(v).is_some_and(|p| self.flipped.contains(&p))
    }

    /// The readers of `v` that need the other layout than the one it is produced in (graph
    /// outputs are readers that need channels first).
    pub fn mismatched(&self, g: &Graph, v: Value) -> (Vec<(NodeId, usize)>, bool) {
        let pf = self.produced_flipped(g, v);
        let uses = g
            .uses(v)
            .into_iter()
            .filter(|&(n, k)| self.wants(n, k) != pf)
            .collect();
        (uses, pf && self.outputs.contains(&v))
    }

    /// 1 when `v` needs a conversion that moves data, else 0.
    fn cost(&self, g: &Graph, v: Value) -> usize {
        let (uses, out) = self.mismatched(g, v);
        if uses.is_empty() && !out {
            return 0;
        }
        match &g.value(v).ty {
            Some(t) if t.rank() >= 3 && is_free(&t.shape, self.produced_flipped(g, v)) => 0,
            _ => 1,
        }
    }
}

/// Whether converting a tensor of `shape` (channels last when `from_last`) only moves
/// size-1 dims, so the conversion is a reshape of the same bytes.
pub fn is_free(shape: &[usize], from_last: bool) -> bool {
    let perm = if from_last {
        crate::ops::channel_layout::to_first_perm(shape.len())
    } else {
        to_last_perm(shape.len())
    };
    let moved = permute(&(0..shape.len()).collect::<Vec<_>>(), &perm);
    let keep = |axes: &[usize]| -> Vec<usize> {
        axes.iter().copied().filter(|&a| shape[a] != 1).collect()
    };
    keep(&moved) == keep(&(0..shape.len()).collect::<Vec<_>>())
}

/// Finds the flippable ops; convs start flipped.
fn analyse(g: &Graph) -> Result<Analysis> {
    let mut d = Analysis {
        outputs: g.outputs().iter().copied().collect(),
        ..Analysis::default()
    };
    for n in g.topo_order()? {
        let Some((r, seed)) = roles(g, n) else {
            continue;
        };
        d.roles.insert(n, r);
        if seed {
            d.flipped.insert(n);
            d.seeds += 1;
        } else {
            d.movable.push(n);
        }
    }
    Ok(d)
}

/// The values whose conversion cost flipping `ns` changes: their data operands and results.
fn affected(g: &Graph, d: &Analysis, ns: &[NodeId]) -> Vec<Value> {
    let mut vs: Vec<Value> = Vec::new();
    for &n in ns {
        let node = g.node(n);
        vs.extend(d.roles[&n].data.iter().filter_map(|&k| node.input(k)));
        vs.extend(node.outputs().iter().copied());
    }
    vs.sort();
    vs.dedup();
    vs
}

/// Whether an operand producer or a reader of `n` is flipped.
fn next_to_flipped(g: &Graph, d: &Analysis, n: NodeId) -> bool {
    let node = g.node(n);
    let from = d.roles[&n]
        .data
        .iter()
        .filter_map(|&k| node.input(k))
        .any(|v| d.produced_flipped(g, v));
    from || node
        .outputs()
        .iter()
        .flat_map(|&v| g.uses(v))
        .any(|(m, k)| d.flipped.contains(&m) && d.roles[&m].data.contains(&k))
}

/// Upper bound on search rounds; real graphs settle in a few.
const MAX_ROUNDS: usize = 64;

/// Flips movable ops while the number of conversions drops (or stays, next to a flipped op,
/// once per op), then whole groups of them (see [`group_moves`]), until neither helps.
fn search(g: &Graph, d: &mut Analysis) {
    let mut tie_flipped: HashSet<NodeId> = HashSet::new();
    for _ in 0..MAX_ROUNDS {
        let singles = single_moves(g, d, &mut tie_flipped);
        if !group_moves(g, d) && !singles {
            return;
        }
    }
}

/// One sweep of single-op flips; returns whether any was kept.
fn single_moves(g: &Graph, d: &mut Analysis, tie_flipped: &mut HashSet<NodeId>) -> bool {
    let mut changed = false;
    for i in 0..d.movable.len() {
        let n = d.movable[i];
        let vs = affected(g, d, &[n]);
        let before: usize = vs.iter().map(|&v| d.cost(g, v)).sum();
        let was = d.flipped.contains(&n);
        toggle(d, n, was);
        let after: usize = vs.iter().map(|&v| d.cost(g, v)).sum();
        let tie_ok =
            after == before && !was && !tie_flipped.contains(&n) && next_to_flipped(g, d, n);
        if after < before || tie_ok {
            if tie_ok {
                tie_flipped.insert(n);
            }
            changed = true;
        } else {
            toggle(d, n, !was);
        }
    }
    changed
}

/// Flips each connected group of unflipped movable ops (linked by data operands) as one
/// move when that strictly lowers the count. Some regions only pay as a whole: in a
/// feature pyramid every `add → resize → add` op has one channels-last and one
/// channels-first neighbour, so each single flip just moves a conversion, while flipping
/// the chain removes them all.
fn group_moves(g: &Graph, d: &mut Analysis) -> bool {
    let free: HashSet<NodeId> = d
        .movable
        .iter()
        .copied()
        .filter(|n| !d.flipped.contains(n))
        .collect();
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut changed = false;
    for i in 0..d.movable.len() {
        let start = d.movable[i];
        if !free.contains(&start) || !seen.insert(start) {
            continue;
        }
        let mut group = vec![start];
        let mut next_i = 0;
        while next_i < group.len() {
            let n = group[next_i];
            next_i += 1;
            let node = g.node(n);
            let mut next: Vec<NodeId> = d.roles[&n]
                .data
                .iter()
                .filter_map(|&k| node.input(k).and_then(|v| g.producer(v)))
                .collect();
            for &v in node.outputs() {
                next.extend(
                    g.uses(v)
                        .into_iter()
                        .filter(|(m, k)| d.roles.get(m).is_some_and(|r| r.data.contains(k)))
                        .map(|(m, _)| m),
                );
            }
            for m in next {
                if free.contains(&m) && seen.insert(m) {
                    group.push(m);
                }
            }
        }
        if group.len() < 2 {
            continue;
        }
        let vs = affected(g, d, &group);
        let before: usize = vs.iter().map(|&v| d.cost(g, v)).sum();
        group.iter().for_each(|&n| toggle(d, n, false));
        let after: usize = vs.iter().map(|&v| d.cost(g, v)).sum();
        if after < before {
            changed = true;
        } else {
            group.iter().for_each(|&n| toggle(d, n, true));
        }
    }
    changed
}

fn toggle(d: &mut Analysis, n: NodeId, was_flipped: bool) {
    if was_flipped {
        d.flipped.remove(&n);
    } else {
        d.flipped.insert(n);
    }
}
