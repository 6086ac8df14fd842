//! Which ops take an integer path, and with which parameters: decided once, statically.
//!
//! The simulator ([`crate::sim`]) and the int8 kernels (kiln-loop's `int8` lowering) both
//! ask this module, so they cannot disagree on *whether* an op runs in integers or on the
//! multipliers, clamps and bias codes it uses; [`crate::arith`] fixes *how* the arithmetic
//! goes. Everything here depends only on the quant unit (TQCs, shapes, constants), never
//! on run-time data.

use crate::act_table::{self, ActTable};
use crate::arith::{self, QParams};
use crate::ir::{self, QuantGraph, TqcId};
use crate::platform::{self, Dispatch};
use crate::sim::{as_read, lookup_table, quantize_tensor, recover_tensor};
use crate::tqc::State;
use kiln_core::{DType, Result};
use kiln_graph::ops::{
    Activation, BatchNormalization, BinaryKind, CoordMode, GlobalPoolKind, ResizeMode,
    activation::RESIDUAL, activation::SLOPE,
};
use kiln_graph::{NodeId, Op, Value};
use ndarray::ArrayD;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

mod compute;
use compute::compute;

/// Effective parameters of a TQC, when it has them.
pub fn params(q: &QuantGraph, id: TqcId) -> Option<QParams> {
    QParams::from_tqc(q.effective(id))
}

/// The parameters a TQC quantises with (ACTIVATED or SLAVE), if it quantises.
pub fn quantises(q: &QuantGraph, id: Option<TqcId>) -> Option<QParams> {
    let id = id?;
    if q.tqc(id).state.quantises() {
        params(q, id)
    } else {
        None
    }
}

/// Parameters operand `k` of `n` is held in for the integer path.
pub fn operand_params(q: &QuantGraph, n: NodeId, k: usize) -> Option<QParams> {
    let id = q.in_tqc(n, k)?;
    match q.tqc(id).state {
        State::Activated
        | State::Slave
        | State::Overlapped
        | State::Baked
        | State::Passive
        | State::PassiveBaked => params(q, id),
        _ => None,
    }
}

/// Output parameters of a result: its TQC quantises, or it is OVERLAPPED, per tensor, not a
/// graph output, and requantised downstream by its group ([`requantised_downstream`]).
pub fn output_params(q: &QuantGraph, v: Value) -> Option<QParams> {
    let id = q.out_tqc(v)?;
    match q.tqc(id).state {
        State::Activated | State::Slave => params(q, id),
        State::Overlapped => {
            let p = params(q, id)?;
            (p.axis.is_none() && requantised_downstream(q, v, q.root(id), 0)).then_some(p)
        }
        _ => None,
    }
}

/// Whether every element of `v` is fake-quantised with the group `root` (per tensor)
/// before anything computes with it: each reader quantises with that group, or copies
/// elements (a Concat, a nearest upsampling, a depth_to_space, ...), is overlapped by it
/// and its result is, in turn, requantised so. Such an op moves elements unchanged, so
/// fake-quantising its result per tensor equals fake-quantising its operands first: the
/// producer may then write its result on the group's grid (the device requantises once,
/// at the producer, and the codes move) and the simulator, which asks the same question,
/// agrees.
fn requantised_downstream(q: &QuantGraph, v: Value, root: TqcId, depth: usize) -> bool {
    // Concat chains in real models are one or two deep; the bound only guards cycles in
    // malformed graphs.
    if depth > 8 || q.graph.outputs().contains(&v) {
        return false;
    }
    let uses = q.graph.uses(v);
    let group = |t: Option<TqcId>| t.is_some_and(|i| q.root(i) == root);
    !uses.is_empty()
        && uses.iter().all(|&(m, k)| {
            let tin = q.in_tqc(m, k);
            if tin.is_some_and(|i| q.tqc(i).state.quantises()) {
                return group(tin);
            }
            let node = q.graph.node(m);
            let [out] = node.outputs() else {
                return false;
            };
            copies_elements(&node.op)
                && (k == 0 || matches!(node.op, Op::Concat(_)))
                && (tin.is_none() || group(tin))
                && group(q.out_tqc(*out))
                && match q.out_tqc(*out).map(|t| q.tqc(t).state) {
                    Some(State::Activated | State::Slave) => true,
                    Some(State::Overlapped) => requantised_downstream(q, *out, root, depth + 1),
                    _ => false,
                }
        })
}

/// Ops whose result elements are elements of their data operands (operand 0, or every
/// operand of a Concat), unchanged: quantising per tensor commutes with them.
pub fn copies_elements(op: &Op) -> bool {
    match op {
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
        | Op::SpaceToDepth(_) => true,
        // Nearest resizing picks elements; only `tf_crop_and_resize` can write a fill value.
        Op::Resize(r) => r.mode == ResizeMode::Nearest && r.coord != CoordMode::TfCropAndResize,
        _ => false,
    }
}

/// How a compute op's accumulator becomes its result.
#[derive(Debug, Clone, PartialEq)]
pub enum Epilogue {
    /// `q = clamp(R(f32(acc)·m[c]) + z, lo, hi)`: no activation, Relu or Clip (as clamps).
    Requant {
        out: QParams,
        m: Vec<f32>,
        lo: i32,
        hi: i32,
    },
    /// A smooth activation as a table ([`crate::act_table`]): `q =
    /// table[clamp(R_even(f32(acc)·m[c]) − base, 0, n − 1)]` with `m[c] =
    /// f32(f64(s_x)·f64(s_w[c])/f64(step))`.
    Table {
        out: QParams,
        m: Vec<f32>,
        table: ActTable,
    },
    /// `v = f32(acc)·sc[c]`, `+ x̂_residual`, `act` in f32 ([`arith::activation`]); then
    /// quantised with `out` (multiplying by `1/s`: [`QParams::quantize_epilogue`]), or
    /// left in f32 when `out` is `None`.
    Float {
        out: Option<QParams>,
        sc: Vec<f32>,
        act: Activation,
        residual: bool,
        slope: bool,
    },
}

/// Conv, Gemm or MatMul in integers.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputePlan {
    /// The activation operand's parameters (per tensor).
    pub x: QParams,
    /// The weight's parameters (per tensor, or per output channel).
    pub w: QParams,
    /// Weight codes when the weight is a constant (the usual case); else they are
    /// recovered at run time from the operand.
    pub w_codes: Option<ArrayD<i32>>,
    /// Bias codes (scale `s_x·s_w[c]`, offset 0), one per output channel or one in all.
    pub bias: Option<Vec<i32>>,
    /// The result's channel axis (the one per-channel scales run along).
    pub channel_axis: usize,
    pub epilogue: Epilogue,
}

impl ComputePlan {
    /// Weight scale of output channel `c`.
    pub fn ws(&self, c: usize) -> f32 {
        self.w.scale[if self.w.scale.len() == 1 { 0 } else { c }]
    }
}

/// Add, Sub or Mul of two quantised tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryPlan {
    pub kind: BinaryKind,
    pub a: QParams,
    pub b: QParams,
    pub out: QParams,
    /// Add/Sub: `(M_a, M_b)`; Mul: `(M, 0)`.
    pub m: (f32, f32),
}

/// An op's integer path.
#[derive(Debug, Clone, PartialEq)]
pub enum IntPlan {
    Compute(Box<ComputePlan>),
    Binary(BinaryPlan),
    /// Global average pool: `t = f32(Σ(q − z_x))·m`.
    GlobalAvg {
        x: QParams,
        out: QParams,
        m: f32,
    },
    /// Element-wise unary op as a table over the input codes `x.qmin..=x.qmax`.
    Lut {
        x: QParams,
        out: QParams,
        table: Vec<i32>,
    },
    /// A per-channel affine op (BatchNormalization) as one table per channel, each over
    /// the input codes: element `i` is in channel `ch = (i / inner) % channels` and maps
    /// through `table[ch·n + q − x.qmin]`, `n = x.qmax − x.qmin + 1`.
    ChannelLut {
        x: QParams,
        out: QParams,
        table: Vec<i32>,
        channels: usize,
        inner: usize,
    },
}

impl IntPlan {
    /// The grid the result is written on (`None`: left in f32).
    pub fn out_params(&self) -> Option<&QParams> {
        match self {
            IntPlan::Compute(c) => match &c.epilogue {
                Epilogue::Requant { out, .. } | Epilogue::Table { out, .. } => Some(out),
                Epilogue::Float { out, .. } => out.as_ref(),
            },
            IntPlan::Binary(b) => Some(&b.out),
            IntPlan::GlobalAvg { out, .. }
            | IntPlan::Lut { out, .. }
            | IntPlan::ChannelLut { out, .. } => Some(out),
        }
    }
}

/// The plans of one unit, each made on first use. A plan holds the codes of its op's
/// weights, so remaking it is a copy of them: the simulator runs a unit once per sample and
/// the int8 lowering lowers it twice, and both ask again for every node each time.
#[derive(Default)]
pub struct Plans(RefCell<HashMap<NodeId, Rc<Option<IntPlan>>>>);

impl Plans {
    /// [`int_plan`] of `n`, made once.
    pub fn get(&self, q: &QuantGraph, n: NodeId) -> Result<Rc<Option<IntPlan>>> {
        if let Some(p) = self.0.borrow().get(&n) {
            return Ok(p.clone());
        }
        let p = Rc::new(int_plan(q, n)?);
        self.0.borrow_mut().insert(n, p.clone());
        Ok(p)
    }
}

/// The integer path of node `n`, or `None` when the op runs in fp32.
pub fn int_plan(q: &QuantGraph, n: NodeId) -> Result<Option<IntPlan>> {
    let g = &q.graph;
    let node = g.node(n);
    if q.dispatch(n) != Dispatch::Int8 || node.outputs().len() != 1 {
        return Ok(None);
    }
    for v in node.inputs().iter().flatten() {
        if g.ty(*v)?.dtype != DType::F32 {
            return Ok(None);
        }
    }
    let v = node.outputs()[0];
    let Some(out) = output_params(q, v) else {
        // A compute op whose result the platform leaves in f32 (a graph output on kiln-x86)
        // still accumulates in integers: the f32 epilogue, unquantised.
        let float_out = platform::is_compute(&node.op)
            && q.out_tqc(v).is_some_and(|t| q.tqc(t).state == State::Fp32);
        return Ok(if float_out {
            compute(q, n, None)?.map(|c| IntPlan::Compute(Box::new(c)))
        } else {
            None
        });
    };
    if out.axis.is_some() {
        return Ok(None);
    }
    Ok(match &node.op {
        Op::Conv(_) | Op::Gemm(_) | Op::MatMul(_) => {
            compute(q, n, Some(out))?.map(|c| IntPlan::Compute(Box::new(c)))
        }
        Op::Binary(b) if matches!(b.kind, BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul) => {
            let (Some(a), Some(bp)) = (operand_params(q, n, 0), operand_params(q, n, 1)) else {
                return Ok(None);
            };
            if a.axis.is_some() || bp.axis.is_some() || node.inputs().len() != 2 {
                return Ok(None);
            }
            let m = if b.kind == BinaryKind::Mul {
                (arith::multiplier(a.s(), bp.s(), out.s()), 0.0)
            } else {
                (
                    arith::multiplier(a.s(), 1.0, out.s()),
                    arith::multiplier(bp.s(), 1.0, out.s()),
                )
            };
            Some(IntPlan::Binary(BinaryPlan {
                kind: b.kind,
                a,
                b: bp,
                out,
                m,
            }))
        }
        Op::GlobalPool(p) if p.kind == GlobalPoolKind::Average => {
            let Some(x) = operand_params(q, n, 0) else {
                return Ok(None);
            };
            let (xt, yt) = (g.ty(node.inputs()[0].expect("operand 0"))?, g.ty(v)?);
            let count = (xt.numel() / yt.numel().max(1)).max(1) as f64;
            // M = f32(f64(s_x) / (f64(s_y)·n)).
            let m = (x.s() as f64 / (out.s() as f64 * count)) as f32;
            Some(IntPlan::GlobalAvg { x, out, m })
        }
        Op::Unary(_) | Op::LeakyRelu(_) | Op::HardSigmoid(_) | Op::Gelu(_)
            if node.inputs().len() == 1 =>
        {
            let Some(x) = operand_params(q, n, 0) else {
                return Ok(None);
            };
            if x.axis.is_some() || x.qmax - x.qmin > 65535 {
                return Ok(None);
            }
            let table = lookup_table(&node.op, &x, &out)?;
            Some(IntPlan::Lut { x, out, table })
        }
        Op::EltwiseSum(e) => affine_table(q, n, &e.coeffs, out)?,
        Op::BatchNormalization(bn) => batch_norm_tables(q, n, bn, out)?,
        _ => None,
    })
}

/// EltwiseSum of one quantised operand (operand 0, result-shaped) and constant scalars:
/// `c₀·x + Σ cᵢ·kᵢ` depends on one code, so it is a table like a unary op's. The entries
/// are the fp32 path's own values: [`arith::eltwise_sum`] of the dequantised code and the
/// constants as the simulator sees them (fake-quantised where their TQC quantises), then
/// quantised onto the result's grid. PP-OCRv4's learnable affine blocks (`x·a + b` after
/// every hard-swish) are this shape.
fn affine_table(
    q: &QuantGraph,
    n: NodeId,
    coeffs: &[f32],
    out: QParams,
) -> Result<Option<IntPlan>> {
    let g = &q.graph;
    let node = g.node(n);
    let Some(x) = operand_params(q, n, 0) else {
        return Ok(None);
    };
    let (Some(x0), Some(&y)) = (node.input(0), node.outputs().first()) else {
        return Ok(None);
    };
    if x.axis.is_some()
        || x.qmax - x.qmin > 65535
        || coeffs.len() != node.inputs().len()
        || g.ty(x0)?.shape != g.ty(y)?.shape
    {
        return Ok(None);
    }
    let mut consts = Vec::with_capacity(node.inputs().len().saturating_sub(1));
    for k in 1..node.inputs().len() {
        let Some(t) = node.input(k).and_then(|v| ir::const_data(g, v)) else {
            return Ok(None);
        };
        if t.dtype() != DType::F32 || t.len() != 1 {
            return Ok(None);
        }
        let t = as_read(q, n, k, t)?;
        consts.push(*t.as_f32()?.iter().next().expect("one element"));
    }
    let table = (x.qmin..=x.qmax)
        .map(|c| {
            let xv = arith::dequantize(c, x.s(), x.z());
            let terms = std::iter::once(xv).chain(consts.iter().copied());
            out.quantize(arith::eltwise_sum(terms, coeffs), 0)
        })
        .collect();
    Ok(Some(IntPlan::Lut { x, out, table }))
}

/// BatchNormalization of a quantised operand: per channel an affine map of one code, so a
/// table per channel. The entries are the fp32 path's own values ([`arith::batch_norm`]
/// on the dequantised code, the graph op's f32 multipliers) quantised onto the result's
/// grid. DenseNet's pre-activation BNs, which no convolution can absorb, are this shape.
fn batch_norm_tables(
    q: &QuantGraph,
    n: NodeId,
    bn: &BatchNormalization,
    out: QParams,
) -> Result<Option<IntPlan>> {
    let g = &q.graph;
    let node = g.node(n);
    let (Some(x), Some(x0)) = (operand_params(q, n, 0), node.input(0)) else {
        return Ok(None);
    };
    let shape = &g.ty(x0)?.shape;
    let nhwc = bn.layout.is_nhwc();
    let codes = (x.qmax - x.qmin + 1) as usize;
    if x.axis.is_some() || node.inputs().len() != 5 || shape.len() < 2 + nhwc as usize {
        return Ok(None);
    }
    let (channels, inner) = if nhwc {
        (shape[shape.len() - 1], 1)
    } else {
        (shape[1], shape[2..].iter().product())
    };
    // Tables beyond a megabyte would cost more to read than the f32 kernel.
    if codes > 256 || channels * codes > 1 << 20 || inner == 0 {
        return Ok(None);
    }
    // The parameters as the f32 kernel takes them: constants no TQC quantises.
    let mut p: Vec<Vec<f32>> = Vec::with_capacity(4);
    for k in 1..5 {
        let Some(t) = node.input(k).and_then(|v| ir::const_data(g, v)) else {
            return Ok(None);
        };
        if quantises(q, q.in_tqc(n, k)).is_some() || t.dtype() != DType::F32 {
            return Ok(None);
        }
        let v: Vec<f32> = t.as_f32()?.iter().copied().collect();
        if v.len() != channels {
            return Ok(None);
        }
        p.push(v);
    }
    let k = bn.multipliers(&p[0], &p[3]);
    let xs: Vec<f32> = (x.qmin..=x.qmax)
        .map(|c| arith::dequantize(c, x.s(), x.z()))
        .collect();
    let mut table = Vec::with_capacity(channels * codes);
    for ch in 0..channels {
        let y = arith::batch_norm(&xs, |_| ch, &p[2], &k, &p[1]);
        table.extend(y.iter().map(|&v| out.quantize(v, 0)));
    }
    Ok(Some(IntPlan::ChannelLut {
        x,
        out,
        table,
        channels,
        inner,
    }))
}
