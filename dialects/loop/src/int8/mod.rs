//! Quant dialect → loop dialect: the int8 program, equal to the simulator bit for bit.
//!
//! Values are stored exactly as the simulator holds them — f32 tensors, on their
//! quantisation grid where a TQC quantised them — so each node can be lowered on its own:
//!
//! * an op with an integer path ([`kiln_quant::plan::int_plan`]) becomes int8 kernels: its
//!   operand turned into u8 codes (quantised, padded, im2col'd), the `vpdpbusd` GEMM, the
//!   contract's epilogue in registers, the result written as `dequant(q)`;
//! * a pure data-movement op (and max pooling) runs its fp32 kernel, which moves the same
//!   bits the simulator's fp32 evaluation moves; so do ops whose fp32 kernel computes
//!   exactly what the simulator does (one rounded operation per element, or a contract
//!   written as that kernel's arithmetic: EltwiseSum, Softmax, AveragePool,
//!   LayerNormalization);
//! * everything else runs the simulator's own code for that node ([`Step::Host`]), so the
//!   program is exact by construction and the host steps are counted and reported;
//! * fake quantisation happens where the simulator applies it — at graph inputs, at
//!   operands and at results whose TQC quantises — as element-wise kernels, skipped only
//!   where it is provably the identity (data already on that grid, rounding not `Up`).
//!
//! Between int8 kernels a value may instead be stored as its u8 codes (a *coded* value):
//! `dequant(q)` and `q` determine each other exactly on the value's grid, so this changes
//! no result, and it removes the f32 → code conversion at every reader and three quarters
//! of the memory traffic. A value is coded when its producer writes codes and every reader
//! takes them — learnt by lowering the graph once with every value in f32 and recording
//! which kernels could have done so (see [`build`]).
//!
//! [`Step::Host`]: crate::program::Step::Host

mod coded;
mod codes;
mod compute;
mod depthwise;
mod eltwise;
pub mod epilogue;
pub mod gemm;
mod matmul;
mod moves;
pub mod quantize;
mod tame;

use crate::lower::elementwise::{View, dense_strides, map_views};
use crate::lower::{Arg, Lowered, NodeCx};
use crate::program::{self, HostFn, Piece, Program};
use kiln_core::{Result, Tensor};
use kiln_graph::ops::{BinaryKind, GlobalPoolKind, Op, SoftmaxKind, UnaryKind};
use kiln_graph::{NodeId, Value};
use kiln_quant::QuantGraph;
use kiln_quant::arith::QParams;
use kiln_quant::plan::{self, IntPlan};
use kiln_quant::{Rounding, sim};
use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Lowers a quantised unit to an int8 program.
///
/// Two lowerings: the first stores every value in f32 and records which producers could
/// write codes and which readers could take them; the second stores as codes every value
/// all of whose readers can. Should the second lowering not honour a decision (it takes
/// the same paths, so it should not), the first program is returned: slower, never wrong.
pub fn build(q: &QuantGraph) -> Result<Program> {
    let shared = Shared::default();
    let mut first = Cx::new(q, &shared, HashMap::new());
    let f32_program = program::build_with(&q.graph, &mut |n, ncx| first.lower_node(n, ncx))?;
    let coded = first.coded_values()?;
    let mut p = if coded.is_empty() {
        f32_program
    } else {
        let mut names: Vec<String> = coded
            .keys()
            .map(|&v| q.graph.value(v).name.clone())
            .collect();
        names.sort();
        let decode: HashMap<Value, (f32, i32)> = coded
            .iter()
            .filter_map(|(&v, p)| match (p.axis, &p.scale[..], &p.zero[..]) {
                (None, [s], [z]) => Some((v, (*s, *z))),
                _ => None,
            })
            .collect();
        let mut second = Cx::new(q, &shared, coded);
        match program::build_with(&q.graph, &mut |n, ncx| second.lower_node(n, ncx)) {
            Ok(mut p) if !second.broken => {
                p.coded_values = names;
                // A coded value an observer could not decode is not observed.
                p.produced
                    .retain(|(_, v, _, _)| !second.coded.contains_key(v) || decode.contains_key(v));
                p.decode = decode;
                p
            }
            _ => f32_program,
        }
    };
    optimise(&mut p)?;
    Ok(p)
}

/// Constant folding, CSE and DCE over every kernel. The int8 kernels rebuild the same
/// splatted constants (scales, bounds, the rounding constant) for every vector of a tile,
/// and Cranelift at `opt_level=none` does not merge them: merging measured 5–10 % on the
/// example models. The passes keep results bit for bit (floats are folded only where
/// exact, `-0.0` included), which the int8 property tests check on every lowering.
fn optimise(p: &mut Program) -> Result<()> {
    let passes = crate::passes::registry().parse("loop.fold-constants,loop.cse,loop.dce")?;
    kiln_core::PassManager::new(passes).run(&mut p.module)?;
    Ok(())
}

/// What both lowerings share: each node's plan (computing one recovers the codes of the
/// node's weights, a copy of them), and the unit as host steps hold it (cloned, weights and
/// all, only if some node needs a host step).
#[derive(Default)]
struct Shared {
    plans: plan::Plans,
    host_unit: OnceCell<Arc<QuantGraph>>,
}

struct Cx<'a> {
    q: &'a QuantGraph,
    shared: &'a Shared,
    /// Graph inputs still to be fake-quantised (at each reader).
    pending: HashMap<Value, QParams>,
    /// Values known to be stored on a grid.
    on_grid: HashMap<Value, QParams>,
    /// Values stored as u8 codes of their grid (decided before this lowering).
    coded: HashMap<Value, QParams>,
    /// Recorded while lowering: results a kernel could have written as codes (of which
    /// grid), and operands a kernel could have read as codes (committed once the node
    /// lowered).
    can_write: HashMap<Value, QParams>,
    can_read: HashSet<(NodeId, usize)>,
    node_writes: Vec<(Value, QParams)>,
    node_reads: Vec<(NodeId, usize)>,
    /// A node touching coded values fell back to a path that cannot take them.
    broken: bool,
    /// Moved values stored on their readers' common grid rather than their own
    /// (see [`Cx::readers_grid`]).
    regrid: HashMap<Value, QParams>,
}

/// Bump allocation of a node's scratch (64-byte aligned offsets).
#[derive(Default)]
pub(crate) struct Scratch {
    next: usize,
}

impl Scratch {
    pub(crate) fn starting_at(next: usize) -> Scratch {
        Scratch {
            next: next.div_ceil(64) * 64,
        }
    }

    pub(crate) fn alloc(&mut self, bytes: usize) -> Arg {
        let at = self.next;
        self.next = (at + bytes).div_ceil(64) * 64;
        Arg::ScratchAt(at, bytes.max(1))
    }
}

/// Whether the fp32 kernel of `op` computes exactly what the simulator's fp32 evaluation
/// does: it moves or selects bits, does one correctly rounded operation per element, or
/// is an op whose quantised-unit contract is written as its fp32 kernel computes it.
fn exact_fp32(op: &Op) -> bool {
    moves_data(op)
        // The simulator sums in f32 by `arith::eltwise_sum`, as the kernel does.
        || matches!(op, Op::EltwiseSum(_))
        // `arith::softmax`: the kernel's exp and order of additions.
        || matches!(op, Op::Softmax(s) if s.kind == SoftmaxKind::Softmax)
        // `AveragePool::eval_f32_kernel_order`: the kernel's f32 sum and multiplier.
        || matches!(op, Op::AveragePool(_))
        // `arith::layer_norm`: the kernel's statistics, order of additions and affine step.
        || matches!(op, Op::LayerNormalization(_))
        // `arith::batch_norm`: the kernel's multipliers, subtract, multiply and add.
        || matches!(op, Op::BatchNormalization(_))
        // `arith::activation`'s Sigmoid: `1/(1 + exp(−x))` with the kernels' `exp`.
        || matches!(op, Op::Unary(u) if u.kind == UnaryKind::Sigmoid)
        // One IEEE operation per element: the f32 result is the correctly rounded one,
        // whether the reference computes in f32 or in f64 and rounds (double rounding is
        // innocuous for +, −, ×, ÷). Max/Min are left out: NaN and ±0 conventions differ.
        || matches!(op, Op::Binary(b) if matches!(
            b.kind,
            BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul | BinaryKind::Div
        ))
}

/// Ops whose results are some of their data operands' elements, unchanged (max pooling
/// picks one): a result is on a grid when those operands are.
fn moves_data(op: &Op) -> bool {
    plan::copies_elements(op)
        || matches!(op, Op::MaxPool(_))
        || matches!(op, Op::GlobalPool(p) if p.kind == GlobalPoolKind::Max)
}

impl<'a> Cx<'a> {
    fn new(q: &'a QuantGraph, shared: &'a Shared, coded: HashMap<Value, QParams>) -> Cx<'a> {
        let mut cx = Cx {
            q,
            shared,
            pending: HashMap::new(),
            on_grid: HashMap::new(),
            coded,
            can_write: HashMap::new(),
            can_read: HashSet::new(),
            node_writes: Vec::new(),
            node_reads: Vec::new(),
            broken: false,
            regrid: HashMap::new(),
        };
        // Graph inputs arrive raw; the simulator fake-quantises them first (their TQC).
        let q = cx.q;
        for &v in q.graph.inputs() {
            if let Some(p) = plan::quantises(q, q.out_tqc(v)) {
                cx.pending.insert(v, p);
            }
        }
        cx
    }

    /// The codes of operand `k` of `n` when that value is coded: then the operand is the
    /// byte tensor of `q` on this grid. Readers call this only where they take codes.
    fn in_codes(&self, n: NodeId, k: usize) -> Option<&QParams> {
        let v = self.q.graph.node(n).input(k)?;
        self.coded.get(&v)
    }

    /// The grid of result `k` of `n` when it is to be stored as codes.
    fn out_codes(&self, n: NodeId, k: usize) -> Option<&QParams> {
        let v = *self.q.graph.node(n).outputs().get(k)?;
        self.coded.get(&v)
    }

    /// Records that the kernel being built could read operand `k` as codes.
    fn could_read(&mut self, n: NodeId, k: usize) {
        self.node_reads.push((n, k));
    }

    /// Records that the kernel being built could write result `k` as codes of `p`. Nothing
    /// may fake-quantise the value afterwards (its TQC quantises with `p` itself, or not at
    /// all); that the stored value is then on `p`'s grid is checked in
    /// [`Cx::coded_values`].
    fn could_write(&mut self, n: NodeId, k: usize, p: &QParams) {
        let q = &self.q;
        let v = q.graph.node(n).outputs()[k];
        let after = plan::quantises(q, q.out_tqc(v));
        let stays = after.is_none_or(|t| &t == p && t.rounding != Rounding::Up);
        if stays && quantize::u8_codes(p) {
            self.node_writes.push((v, p.clone()));
        }
    }

    /// Values to store as codes: written as codes of the grid they are stored on, read as
    /// codes by every reader, not graph outputs, and not sharing a buffer in place with a value of
    /// the other width (an element-wise kernel reading f32 at `4i` while writing bytes at
    /// `i` of the same buffer would race across threads).
    fn coded_values(&self) -> Result<HashMap<Value, QParams>> {
        let g = &self.q.graph;
        let mut set: HashSet<Value> = self
            .can_write
            .iter()
            .filter(|&(v, p)| self.on_grid.get(v) == Some(p))
            .map(|(&v, _)| v)
            .filter(|&v| {
                !g.outputs().contains(&v)
                    && !g.uses(v).is_empty()
                    && g.uses(v).iter().all(|u| self.can_read.contains(u))
            })
            .collect();
        let pairs = kiln_graph::memory::plan(g)?.in_place;
        loop {
            let mixed: Vec<Value> = pairs
                .iter()
                .filter(|(a, b)| set.contains(a) != set.contains(b))
                .flat_map(|&(a, b)| [a, b])
                .collect();
            if mixed.is_empty() {
                break;
            }
            for v in mixed {
                set.remove(&v);
            }
        }
        Ok(set
            .into_iter()
            .map(|v| (v, self.can_write[&v].clone()))
            .collect())
    }

    fn lower_node(&mut self, n: NodeId, ncx: &NodeCx) -> Result<Vec<Piece>> {
        self.node_reads.clear();
        self.node_writes.clear();
        let pieces = self.lower_node_inner(n, ncx)?;
        let q = self.q;
        let node = q.graph.node(n);
        let host = matches!(pieces.as_slice(), [Piece::Host { .. }]);
        // Every coded operand and result must have been taken by a kernel that said so.
        let reads_ok = (0..node.inputs().len())
            .all(|k| self.in_codes(n, k).is_none() || self.node_reads.contains(&(n, k)));
        let writes_ok = node
            .outputs()
            .iter()
            .all(|v| !self.coded.contains_key(v) || self.node_writes.iter().any(|(w, _)| w == v));
        // A host step sees every value as f32, so it may touch no coded value at all.
        let touches = (0..node.inputs().len()).any(|k| self.in_codes(n, k).is_some())
            || node.outputs().iter().any(|v| self.coded.contains_key(v));
        if !reads_ok || !writes_ok || (host && touches) {
            self.broken = true;
        }
        if !host {
            self.can_read.extend(self.node_reads.drain(..));
            self.can_write.extend(self.node_writes.drain(..));
        }
        Ok(pieces)
    }

    fn lower_node_inner(&mut self, n: NodeId, ncx: &NodeCx) -> Result<Vec<Piece>> {
        let q = self.q;
        let node = q.graph.node(n);
        let plan = self.shared.plans.get(q, n)?;
        let lowered = match &*plan {
            // MatMul of two activations.
            Some(IntPlan::Compute(c))
                if c.w_codes.is_none() && matches!(node.op, Op::MatMul(_)) =>
            {
                matmul::lower(self, n, ncx, c)?
            }
            Some(IntPlan::Compute(c)) => compute::lower(self, n, ncx, c)?,
            Some(IntPlan::Binary(b)) => eltwise::binary(self, n, ncx, b),
            Some(IntPlan::Lut { x, out, table }) => {
                let t = eltwise::Tables {
                    table,
                    channels: 1,
                    inner: 1,
                };
                eltwise::lut(self, n, ncx, x, out, t)
            }
            Some(IntPlan::ChannelLut {
                x,
                out,
                table,
                channels,
                inner,
            }) => {
                let t = eltwise::Tables {
                    table,
                    channels: *channels,
                    inner: *inner,
                };
                eltwise::lut(self, n, ncx, x, out, t)
            }
            Some(IntPlan::GlobalAvg { x, out, m }) => {
                eltwise::global_avg(self, n, ncx, x, out, *m)?
            }
            None if matches!(node.op, Op::Transpose(_)) => match self.transpose_codes(n, ncx) {
                Some(p) => Some(p),
                None => self.lower_exact(n, ncx)?,
            },
            None if moves_data(&node.op) => match self
                .move_codes(n, ncx)
                .or_else(|| self.concat_codes(n, ncx))
            {
                Some(p) => Some(p),
                None => self.lower_exact(n, ncx)?,
            },
            None if exact_fp32(&node.op) => self.lower_exact(n, ncx)?,
            None => None,
        };
        let pieces = match lowered {
            Some(p) => p,
            None => vec![self.host(n)],
        };
        // What is now on a grid: results whose TQC quantises (the simulator fake-quantised
        // them; kernels either produced them on that grid or applied the same step), and
        // results of pure data movement whose operands were all on one grid.
        // An integer path also leaves its result on its output grid when the TQC there is
        // overlapped (the group requantises downstream, see `plan::output_params`).
        let moved = (*plan)
            .as_ref()
            .and_then(IntPlan::out_params)
            .cloned()
            .or_else(|| self.moved_grid(n));
        for &v in node.outputs() {
            let grid = plan::quantises(q, q.out_tqc(v))
                .or_else(|| self.regrid.get(&v).cloned())
                .or_else(|| moved.clone());
            match grid {
                Some(p) => self.on_grid.insert(v, p),
                None => self.on_grid.remove(&v),
            };
        }
        Ok(pieces)
    }

    /// The grid a data-movement op (or max pooling) leaves its results on: its data
    /// operands' common grid, after the fake quantisations it applies to them.
    fn moved_grid(&self, n: NodeId) -> Option<QParams> {
        let node = self.q.graph.node(n);
        if !moves_data(&node.op) {
            return None;
        }
        let grid = |k: usize| {
            let v = node.input(k)?;
            let chain = self.operand_fq(n, k);
            chain
                .last()
                .cloned()
                .or_else(|| self.on_grid.get(&v).cloned())
        };
        let data = match &node.op {
            Op::Concat(_) => node.inputs().len(),
            _ => 1,
        };
        let first = grid(0)?;
        (1..data)
            .all(|k| grid(k).as_ref() == Some(&first))
            .then_some(first)
    }

    /// An NCHW → NHWC transpose whose result can be stored as codes: one kernel quantises
    /// (with the operand's fake quantisations) while it transposes, where the f32 program
    /// fake-quantises, transposes, and the reader quantises again. Typically the model's
    /// input on its way to the first convolution.
    fn transpose_codes(&mut self, n: NodeId, ncx: &NodeCx) -> Option<Vec<Piece>> {
        let q = self.q;
        let node = q.graph.node(n);
        let Op::Transpose(t) = &node.op else {
            return None;
        };
        let shape = ncx.in_shape(0)?.to_vec();
        if shape.len() != 4 || t.perm_for(4).ok()? != [0, 2, 3, 1] {
            return None;
        }
        let grid = self.moved_grid(n)?;
        let mut chain = self.operand_fq(n, 0);
        if !chain.iter().all(quantize::kernel_params) {
            return None;
        }
        self.could_write(n, 0, &grid);
        // The first lowering only records; the second writes codes where decided.
        self.out_codes(n, 0)?;
        let spec = match chain.pop() {
            Some(last) => codes::CodeSpec {
                pre: chain,
                r: last.rounding,
                p: last,
                on_grid: false,
            },
            None => codes::CodeSpec {
                pre: Vec::new(),
                r: Rounding::HalfEven,
                p: grid,
                on_grid: true,
            },
        };
        let [b, c, h, w] = [shape[0], shape[1], shape[2], shape[3]];
        let map = codes::RowMap::padded_nhwc([b, h, w, c], h, w, 0, 0, b * h * w * c);
        let k = codes::quantize_nchw(&format!("{}_codes", ncx.name), [b, c, h, w], &map, &spec);
        Some(vec![Piece::Kernel(Lowered {
            kernel: k,
            args: vec![Arg::Operand(0), Arg::Result(0)],
        })])
    }

    /// The simulator's own code for node `n`.
    fn host(&self, n: NodeId) -> Piece {
        let q = self
            .shared
            .host_unit
            .get_or_init(|| Arc::new(self.q.clone()))
            .clone();
        let node = q.graph.node(n);
        let pre: Vec<Option<QParams>> = node
            .inputs()
            .iter()
            .map(|v| v.and_then(|v| self.pending.get(&v).cloned()))
            .collect();
        let run = HostFn(Arc::new(move |ins: &[Option<Tensor>]| {
            let mut ops = Vec::with_capacity(ins.len());
            for (t, p) in ins.iter().zip(&pre) {
                ops.push(match (t, p) {
                    (Some(t), Some(p)) => Some(sim::fake_quant_params(t, p)?),
                    (t, _) => t.clone(),
                });
            }
            Ok(sim::eval_node(&q, n, &ops)?.0)
        }));
        let node = self.q.graph.node(n);
        Piece::Host {
            run,
            inputs: (0..node.inputs().len())
                .map(|k| node.input(k).map(|_| Arg::Operand(k)))
                .collect(),
            outputs: (0..node.outputs().len()).map(Arg::Result).collect(),
        }
    }

    /// The fake quantisations the simulator applies to operand `k` before the op sees it.
    fn operand_fq(&self, n: NodeId, k: usize) -> Vec<QParams> {
        let q = &self.q;
        let Some(v) = q.graph.node(n).input(k) else {
            return Vec::new();
        };
        let mut chain: Vec<QParams> = self.pending.get(&v).cloned().into_iter().collect();
        if let Some(p) = plan::quantises(q, q.in_tqc(n, k)) {
            let identity =
                chain.is_empty() && self.on_grid.get(&v) == Some(&p) && p.rounding != Rounding::Up;
            if !identity {
                chain.push(p);
            }
        }
        chain
    }

    /// Operand `k` as the op sees it: the operand itself, or a fake-quantised copy in
    /// scratch (its kernel appended to `pieces`).
    fn operand_f32(
        &self,
        n: NodeId,
        k: usize,
        ncx: &NodeCx,
        scratch: &mut Scratch,
        pieces: &mut Vec<Piece>,
    ) -> Option<Arg> {
        let chain = self.operand_fq(n, k);
        if chain.is_empty() {
            return Some(Arg::Operand(k));
        }
        if !chain.iter().all(quantize::kernel_params) {
            return None;
        }
        let shape = ncx.in_shape(k)?.to_vec();
        let len: usize = shape.iter().product();
        let dst = scratch.alloc(len * 4);
        pieces.push(Piece::Kernel(fq_kernel(
            &format!("{}_fq{k}", ncx.name),
            &shape,
            Arg::Operand(k),
            dst.clone(),
            &chain,
        )));
        Some(dst)
    }

    /// The fake quantisation of result 0 after an op that did not already leave it on the
    /// grid `on`.
    fn result_fq(&self, n: NodeId, ncx: &NodeCx, on: Option<&QParams>) -> Option<Vec<Piece>> {
        self.result_k_fq(n, ncx, on, 0)
    }

    /// [`Cx::result_fq`] of result `k`.
    fn result_k_fq(
        &self,
        n: NodeId,
        ncx: &NodeCx,
        on: Option<&QParams>,
        k: usize,
    ) -> Option<Vec<Piece>> {
        let q = &self.q;
        let v = q.graph.node(n).outputs()[k];
        let Some(p) = plan::quantises(q, q.out_tqc(v)) else {
            return Some(Vec::new());
        };
        if on == Some(&p) && p.rounding != Rounding::Up {
            return Some(Vec::new());
        }
        if !quantize::kernel_params(&p) {
            return None;
        }
        let shape = ncx.out_shape(k).to_vec();
        Some(vec![Piece::Kernel(fq_kernel(
            &format!("{}_fqout{k}", ncx.name),
            &shape,
            Arg::Result(k),
            Arg::Result(k),
            &[p],
        ))])
    }

    /// A compute op's kernels followed by its result's fake quantisation, unless the
    /// epilogue already left the result on that grid.
    fn finish_compute(
        &self,
        n: NodeId,
        ncx: &NodeCx,
        p: &plan::ComputePlan,
        mut pieces: Vec<Piece>,
    ) -> Option<Vec<Piece>> {
        let on = match &p.epilogue {
            plan::Epilogue::Requant { out, .. }
            | plan::Epilogue::Table { out, .. }
            | plan::Epilogue::Float { out: Some(out), .. } => Some(out),
            plan::Epilogue::Float { out: None, .. } => None,
        };
        pieces.extend(self.result_fq(n, ncx, on)?);
        Some(pieces)
    }

    /// Data movement and max pooling through their fp32 kernels.
    fn lower_exact(&self, n: NodeId, ncx: &NodeCx) -> Result<Option<Vec<Piece>>> {
        let node = self.q.graph.node(n);
        let Some(kernels) = crate::lower::lower_op(&node.op, ncx)? else {
            return Ok(None);
        };
        // Fake-quantised operand copies go past the kernels' own scratch.
        let used = kernels
            .iter()
            .flat_map(|l| &l.args)
            .map(|a| match a {
                Arg::Scratch(b) => *b,
                Arg::ScratchAt(o, b) => o + b,
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        let mut scratch = Scratch::starting_at(used);
        let mut pieces = Vec::new();
        let mut remap: HashMap<usize, Arg> = HashMap::new();
        for k in 0..node.inputs().len() {
            if node.input(k).is_none() {
                continue;
            }
            let Some(a) = self.operand_f32(n, k, ncx, &mut scratch, &mut pieces) else {
                return Ok(None);
            };
            remap.insert(k, a);
        }
        for mut l in kernels {
            for a in &mut l.args {
                if let Arg::Operand(k) = a
                    && let Some(r) = remap.get(k)
                {
                    *a = r.clone();
                }
            }
            pieces.push(Piece::Kernel(l));
        }
        let on = self.moved_grid(n);
        for k in 0..node.outputs().len() {
            let Some(fq) = self.result_k_fq(n, ncx, on.as_ref(), k) else {
                return Ok(None);
            };
            pieces.extend(fq);
        }
        Ok(Some(pieces))
    }
}

/// `dst = fq_chain(src)` element by element over `shape`.
fn fq_kernel(name: &str, shape: &[usize], src: Arg, dst: Arg, chain: &[QParams]) -> Lowered {
    let len: usize = shape.iter().product();
    let view = |arg| View {
        arg,
        len,
        off: 0,
        strides: dense_strides(shape),
    };
    let chain = chain.to_vec();
    map_views(name, shape, &[view(src)], &view(dst), &move |b, v| {
        let mut x = v[0];
        for p in &chain {
            x = quantize::fake_quant(b, x, p);
        }
        x
    })
}
