//! Quant dialect → loop dialect: the int8 program, equal to the simulator bit for bit.
//!
//! Values are stored exactly as the simulator holds them — f32 tensors, on their
//! quantisation grid where a TQC quantised them — so each node can be lowered on its own:
//!
//! * an op with an integer path ([`kiln_quant::plan::int_plan`]) becomes int8 kernels: its
//!   operand turned into u8 codes (quantised, padded, im2col'd), the `vpdpbusd` GEMM, the
//!   contract's epilogue in registers, the result written as `dequant(q)`;
//! * a pure data-movement op (and max pooling) runs its fp32 kernel, which moves the same
//!   bits the simulator's fp32 evaluation moves;
//! * everything else runs the simulator's own code for that node ([`Step::Host`]), so the
//!   program is exact by construction and the host steps are counted and reported;
//! * fake quantisation happens where the simulator applies it — at graph inputs, at
//!   operands and at results whose TQC quantises — as element-wise kernels, skipped only
//!   where it is provably the identity (data already on that grid, rounding not `Up`).
//!
//! [`Step::Host`]: crate::program::Step::Host

mod codes;
mod compute;
mod depthwise;
mod eltwise;
pub mod gemm;
pub mod quantize;

use crate::lower::elementwise::{View, dense_strides, map_views};
use crate::lower::{Arg, Lowered, NodeCx};
use crate::program::{self, HostFn, Piece, Program};
use kiln_core::{Result, Tensor};
use kiln_graph::ops::{BinaryKind, GlobalPoolKind, Op};
use kiln_graph::{NodeId, Value};
use kiln_quant::QuantGraph;
use kiln_quant::arith::QParams;
use kiln_quant::plan::{self, IntPlan};
use kiln_quant::{Rounding, sim};
use std::collections::HashMap;
use std::sync::Arc;

/// Lowers a quantised unit to an int8 program.
pub fn build(q: &QuantGraph) -> Result<Program> {
    let g = &q.graph;
    let shared = Arc::new(q.clone());
    let mut cx = Cx {
        q: shared,
        pending: HashMap::new(),
        on_grid: HashMap::new(),
    };
    // Graph inputs arrive raw; the simulator fake-quantises them first (their TQC).
    for &v in g.inputs() {
        if let Some(p) = plan::quantises(q, q.out_tqc(v)) {
            cx.pending.insert(v, p);
        }
    }
    program::build_with(g, &mut |n, ncx| cx.lower_node(n, ncx))
}

struct Cx {
    q: Arc<QuantGraph>,
    /// Graph inputs still to be fake-quantised (at each reader).
    pending: HashMap<Value, QParams>,
    /// Values known to be stored on a grid.
    on_grid: HashMap<Value, QParams>,
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
/// does: it moves or selects bits, or does one correctly rounded operation per element.
fn exact_fp32(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape(_)
            | Op::Flatten(_)
            | Op::Squeeze(_)
            | Op::Unsqueeze(_)
            | Op::Transpose(_)
            | Op::Slice(_)
            | Op::Concat(_)
            | Op::Split(_)
            | Op::Expand(_)
            | Op::Tile(_)
            | Op::DepthToSpace(_)
            | Op::SpaceToDepth(_)
            | Op::MaxPool(_)
    ) || matches!(op, Op::GlobalPool(p) if p.kind == GlobalPoolKind::Max)
        // One IEEE operation per element: the f32 result is the correctly rounded one,
        // whether the reference computes in f32 or in f64 and rounds (double rounding is
        // innocuous for +, −, ×, ÷). Max/Min are left out: NaN and ±0 conventions differ.
        || matches!(op, Op::Binary(b) if matches!(
            b.kind,
            BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul | BinaryKind::Div
        ))
}

impl Cx {
    fn lower_node(&mut self, n: NodeId, ncx: &NodeCx) -> Result<Vec<Piece>> {
        let q = self.q.clone();
        let node = q.graph.node(n);
        let plan = plan::int_plan(&q, n)?;
        let lowered = match &plan {
            Some(IntPlan::Compute(c)) => compute::lower(self, n, ncx, c)?,
            Some(IntPlan::Binary(b)) => eltwise::binary(self, n, ncx, b),
            Some(IntPlan::Lut { x, out, table }) => eltwise::lut(self, n, ncx, x, out, table),
            Some(IntPlan::GlobalAvg { x, out, m }) => {
                eltwise::global_avg(self, n, ncx, x, out, *m)?
            }
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
        let moved = self.moved_grid(n);
        for &v in node.outputs() {
            match plan::quantises(&q, q.out_tqc(v)).or_else(|| moved.clone()) {
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
        if !exact_fp32(&node.op) || matches!(node.op, Op::Binary(_)) {
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

    /// The simulator's own code for node `n`.
    fn host(&self, n: NodeId) -> Piece {
        let q = self.q.clone();
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
            plan::Epilogue::Requant { out, .. } | plan::Epilogue::Float { out: Some(out), .. } => {
                Some(out)
            }
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
