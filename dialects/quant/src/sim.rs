//! The simulator: runs a quant unit with exact TQC semantics, and int8 arithmetic exactly
//! as [`crate::arith`] specifies it. This is the specification kiln's int8 kernels must
//! equal bit for bit.
//!
//! Values flow as f32 tensors; a quantised value holds `dequant(q)` exactly, so its codes
//! are recovered by re-quantising (exact on the grid, see `arith`'s tests).
//!
//! - At an op operand, an ACTIVATED or SLAVE input TQC quantises with its effective (root)
//!   parameters; at a result, an ACTIVATED or SLAVE output TQC does. Every other state
//!   passes data through (OVERLAPPED data is already quantised by its group; BAKED and
//!   PASSIVE_BAKED constants already hold quantised values).
//! - An op the platform runs in int8 takes its *integer path* when all its operands have
//!   parameters (their TQC quantises, is OVERLAPPED into a group with parameters, or is a
//!   baked/activated weight) and its result has *output parameters*: its output TQC
//!   quantises, or it is OVERLAPPED and every reader quantises with that same group,
//!   directly or after a Concat whose result does (the device requantises once, at the
//!   producer). Integer paths: Conv, Gemm (alpha = beta = 1), MatMul, Add/Sub/Mul, global
//!   average pool, element-wise unary ops (lookup tables).
//! - Everything else runs the graph dialect's fp32 `eval` on the (fake-)quantised operands:
//!   quantise/dequantise at the boundary; except the ops whose fp32 kernels the int8
//!   programs use, which run those kernels' own f32 arithmetic from `arith` (Softmax,
//!   LayerNormalization, BatchNormalization, average pooling, EltwiseSum, Sigmoid).

use crate::act_table;
use crate::arith::{self, QParams};
use crate::ir::{QuantGraph, Site, TqcId};
use crate::plan::{self, ComputePlan, Epilogue, IntPlan};
use crate::tqc::Tqc;
use kiln_core::{DType, Error, ErrorKind, Result, Tensor, bail};
use kiln_graph::ops::{
    Activation, BinaryKind, SoftmaxKind, UnaryKind, activation::RESIDUAL, activation::SLOPE,
};
use kiln_graph::{NodeId, Op, Value};
use ndarray::{ArrayD, IxDyn};
use std::borrow::Cow;

mod contracts;
mod lockstep;
use contracts::{batch_norm, eltwise_sum, layer_norm, softmax};
pub use lockstep::lockstep;

/// Fake-quantises a float tensor with a TQC's parameters (per channel along its axis).
pub fn fake_quant(t: &Tensor, tqc: &Tqc) -> Result<Tensor> {
    let Some(p) = QParams::from_tqc(tqc) else {
        bail!(Eval, "TQC has no parameters");
    };
    if !t.dtype().is_float() {
        return Ok(t.clone());
    }
    let codes = quantize_tensor(t, &p)?;
    Ok(dequantize_tensor(&codes, &p, t.dtype()))
}

/// The channel of each flat (standard-order) index along `axis` of `shape`.
fn channel_of(shape: &[usize], axis: Option<usize>) -> impl Fn(usize) -> usize + use<> {
    let (inner, dim) = match axis {
        Some(a) if a < shape.len() => (shape[a + 1..].iter().product::<usize>().max(1), shape[a]),
        _ => (1, 1),
    };
    move |i| (i / inner) % dim.max(1)
}

/// Codes of a float tensor.
pub fn quantize_tensor(t: &Tensor, p: &QParams) -> Result<ArrayD<i32>> {
    // f32 data in standard layout (every weight) is read in place: a large model's weights
    // are hundreds of megabytes.
    let cast;
    let a = match t {
        Tensor::F32(a) => a,
        _ => {
            cast = t.cast(DType::F32);
            cast.as_f32()?
        }
    };
    let a = a.as_standard_layout();
    let ch = channel_of(a.shape(), p.axis);
    if p.axis
        .is_some_and(|ax| ax >= a.ndim() || a.shape()[ax] != p.scale.len())
    {
        bail!(
            Eval,
            "{} per-channel scales do not fit a {:?} tensor",
            p.scale.len(),
            a.shape()
        );
    }
    let data: Vec<i32> = a
        .iter()
        .enumerate()
        .map(|(i, &x)| p.quantize(x, ch(i)))
        .collect();
    Ok(ArrayD::from_shape_vec(a.raw_dim(), data).expect("same shape"))
}

/// Codes of a tensor already on its grid ([`arith::recover`]).
pub fn recover_tensor(t: &Tensor, p: &QParams) -> Result<ArrayD<i32>> {
    let r = QParams {
        rounding: crate::Rounding::HalfEven,
        ..p.clone()
    };
    quantize_tensor(t, &r)
}

/// `dequant(q)` as a tensor of `dtype`.
pub fn dequantize_tensor(q: &ArrayD<i32>, p: &QParams, dtype: DType) -> Tensor {
    let ch = channel_of(q.shape(), p.axis);
    let data: Vec<f32> = q
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let k = ch(i);
            arith::dequantize(c, p.scale[k], p.zero[k])
        })
        .collect();
    Tensor::F32(ArrayD::from_shape_vec(q.raw_dim(), data).expect("same shape")).cast(dtype)
}

fn centered(q: &ArrayD<i32>, p: &QParams) -> Tensor {
    let ch = channel_of(q.shape(), p.axis);
    let data: Vec<f64> = q
        .iter()
        .enumerate()
        .map(|(i, &c)| (c - p.zero[ch(i)]) as f64)
        .collect();
    Tensor::F64(ArrayD::from_shape_vec(q.raw_dim(), data).expect("same shape"))
}

/// The simulator over one unit.
pub struct Simulator<'q> {
    q: &'q QuantGraph,
    order: Vec<NodeId>,
    /// Per value, the position in `order` of its last reader: a value is freed there, so a
    /// run holds the live activations, not every activation of the network (a graph
    /// output is never freed).
    last_use: Vec<usize>,
    /// Ops that took their integer path in the last run (so callers and tests can see
    /// that int8 arithmetic, not the fp32 fallback, produced a result).
    integer: std::cell::RefCell<Vec<NodeId>>,
    /// Each int8 op's plan, made on its first run rather than once per sample.
    plans: plan::Plans,
}

impl<'q> Simulator<'q> {
    pub fn new(q: &'q QuantGraph) -> Result<Self> {
        let order = q.graph.topo_order()?;
        let last_use = kiln_graph::memory::last_reads(&q.graph, &order);
        Ok(Simulator {
            q,
            order,
            last_use,
            integer: Default::default(),
            plans: Default::default(),
        })
    }

    /// The ops that ran their integer path in the last run, in schedule order.
    pub fn integer_ops(&self) -> Vec<NodeId> {
        self.integer.borrow().clone()
    }

    /// Runs the unit; `observe(value, tensor)` sees every op result as simulated.
    pub fn run_observed(
        &self,
        inputs: &[Tensor],
        mut observe: impl FnMut(Value, &Tensor),
    ) -> Result<Vec<Tensor>> {
        let q = self.q;
        let g = &q.graph;
        if inputs.len() != g.inputs().len() {
            bail!(
                Input,
                "the graph takes {} inputs, {} given",
                g.inputs().len(),
                inputs.len()
            );
        }
        let mut vals: Vec<Option<Tensor>> = vec![None; g.num_values()];
        self.integer.borrow_mut().clear();
        for (&v, t) in g.inputs().iter().zip(inputs) {
            vals[v.index()] = Some(input_value(q, v, t)?);
        }
        for (i, &n) in self.order.iter().enumerate() {
            let node = g.node(n);
            let outs = if let Op::Const(c) = &node.op {
                vec![c.tensor().map_err(|e| node.locate(e))?.clone()]
            } else {
                let mut ins: Vec<Option<&Tensor>> = Vec::with_capacity(node.inputs().len());
                for v in node.inputs() {
                    let Some(v) = v else {
                        ins.push(None);
                        continue;
                    };
                    let t = vals[v.index()].as_ref().ok_or_else(|| {
                        node.locate(Error::new(
                            ErrorKind::UndefinedValue,
                            format!("operand '%{}' was not computed", g.value(*v).name),
                        ))
                    })?;
                    ins.push(Some(t));
                }
                let plan = self.plans.get(q, n).map_err(|e| node.locate(e))?;
                let (outs, int) = eval_planned(q, n, &ins, (*plan).as_ref())?;
                if int {
                    self.integer.borrow_mut().push(n);
                }
                outs
            };
            for (&v, t) in node.outputs().iter().zip(outs) {
                observe(v, &t);
                vals[v.index()] = Some(t);
            }
            for v in node.inputs().iter().flatten() {
                if self.last_use[v.index()] == i {
                    vals[v.index()] = None;
                }
            }
        }
        g.outputs()
            .iter()
            .map(|&v| {
                vals[v.index()].clone().ok_or_else(|| {
                    Error::new(
                        ErrorKind::Eval,
                        format!("output '%{}' was not computed", g.value(v).name),
                    )
                })
            })
            .collect()
    }

    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.run_observed(inputs, |_, _| {})
    }
}

/// Operand `k` of node `n` as the op reads it: fake-quantised by its input TQC when that
/// quantises and the data is float, as it is.
/// Borrowed when the TQC passes it through: no copy of an activation per reader.
pub fn as_read<'t>(q: &QuantGraph, n: NodeId, k: usize, t: &'t Tensor) -> Result<Cow<'t, Tensor>> {
    match plan::quantises(q, q.in_tqc(n, k)) {
        Some(p) if t.dtype().is_float() => Ok(Cow::Owned(fake_quant_params(t, &p)?)),
        _ => Ok(Cow::Borrowed(t)),
    }
}

/// A graph input as the unit sees it: fake-quantised when its TQC quantises.
pub fn input_value(q: &QuantGraph, v: Value, t: &Tensor) -> Result<Tensor> {
    Ok(match plan::quantises(q, q.out_tqc(v)) {
        Some(p) if t.dtype().is_float() => fake_quant_params(t, &p)?,
        _ => t.clone(),
    })
}

/// Runs node `n` on its operands as stored (before its input TQCs act): input TQCs that
/// quantise fake-quantise, the integer path or the fp32 op computes, output TQCs that
/// quantise fake-quantise. Returns the results and whether the integer path ran.
/// The int8 JIT calls this too, for ops it has no kernel for.
pub fn eval_node(
    q: &QuantGraph,
    n: NodeId,
    operands: &[Option<Tensor>],
) -> Result<(Vec<Tensor>, bool)> {
    let plan = plan::int_plan(q, n).map_err(|e| q.graph.node(n).locate(e))?;
    let operands: Vec<Option<&Tensor>> = operands.iter().map(Option::as_ref).collect();
    eval_planned(q, n, &operands, plan.as_ref())
}

/// [`eval_node`] with `n`'s plan already made.
fn eval_planned(
    q: &QuantGraph,
    n: NodeId,
    operands: &[Option<&Tensor>],
    plan: Option<&IntPlan>,
) -> Result<(Vec<Tensor>, bool)> {
    let node = q.graph.node(n);
    let mut read: Vec<Option<Cow<'_, Tensor>>> = Vec::with_capacity(operands.len());
    for (k, t) in operands.iter().enumerate() {
        let r = t.map(|t| as_read(q, n, k, t));
        read.push(r.transpose().map_err(|e| node.locate(e))?);
    }
    let refs: Vec<Option<&Tensor>> = read.iter().map(|t| t.as_deref()).collect();
    let int = match plan {
        Some(p) => Some(int_path(q, n, p, &refs).map_err(|e| node.locate(e))?),
        None => None,
    };
    let (outs, is_int) = match int {
        Some(t) => (vec![t], true),
        None => {
            let f32_data = refs.iter().flatten().all(|t| matches!(t, Tensor::F32(_)))
                && matches!(refs.first(), Some(Some(_)));
            let outs = match &node.op {
                Op::EltwiseSum(e) => {
                    vec![eltwise_sum(&refs, &e.coeffs).map_err(|e| node.locate(e))?]
                }
                // The f32 contracts (their kernels' arithmetic) for f32 data; other float
                // types keep the graph op's evaluation, as their programs do.
                Op::AveragePool(p) if f32_data => {
                    let x = refs[0].expect("f32 data");
                    vec![p.eval_f32_kernel_order(x).map_err(|e| node.locate(e))?]
                }
                Op::LayerNormalization(ln) if f32_data && node.outputs().len() == 1 => {
                    vec![layer_norm(&refs, ln.axis, ln.epsilon).map_err(|e| node.locate(e))?]
                }
                Op::BatchNormalization(bn) if f32_data && node.outputs().len() == 1 => {
                    vec![batch_norm(bn, &refs).map_err(|e| node.locate(e))?]
                }
                Op::Softmax(s) if f32_data && s.kind == SoftmaxKind::Softmax => {
                    vec![softmax(&refs, s.axis).map_err(|e| node.locate(e))?]
                }
                // `1/(1 + exp(−x))` with kiln's `exp`, which the fp32 kernel computes: a
                // Sigmoid left in f32 (a detector's class scores) runs as a kernel.
                Op::Unary(u) if f32_data && u.kind == UnaryKind::Sigmoid => {
                    let x = refs[0].expect("f32 data").as_f32()?;
                    let sig = |v: f32| arith::activation(&Activation::Sigmoid, v, 0.0);
                    vec![Tensor::F32(x.mapv(sig))]
                }
                op => op
                    .eval(&refs, node.outputs().len())
                    .map_err(|e| node.locate(e))?,
            };
            (outs, false)
        }
    };
    let outs = node
        .outputs()
        .iter()
        .zip(outs)
        .map(|(&v, t)| match plan::quantises(q, q.out_tqc(v)) {
            Some(p) if t.dtype().is_float() => {
                fake_quant_params(&t, &p).map_err(|e| node.locate(e))
            }
            _ => Ok(t),
        })
        .collect::<Result<_>>()?;
    Ok((outs, is_int))
}

/// The integer path of an int8 op: executes its plan ([`plan::int_plan`]) with
/// [`arith`]'s arithmetic.
fn int_path(q: &QuantGraph, n: NodeId, p: &IntPlan, ins: &[Option<&Tensor>]) -> Result<Tensor> {
    let operand = |k: usize| {
        ins.get(k)
            .copied()
            .flatten()
            .ok_or_else(|| Error::new(ErrorKind::Eval, format!("operand {k} is missing")))
    };
    let node = q.graph.node(n);
    Ok(match p {
        IntPlan::Compute(c) => compute(q, n, c, ins)?,
        IntPlan::Binary(b) => {
            let aq = recover_tensor(operand(0)?, &b.a)?;
            let bq = recover_tensor(operand(1)?, &b.b)?;
            let shape = kiln_graph::ops::util::broadcast_shapes(aq.shape(), bq.shape())?;
            let (x, y) = (
                aq.broadcast(IxDyn(&shape)).expect("broadcastable"),
                bq.broadcast(IxDyn(&shape)).expect("broadcastable"),
            );
            let (za, zb) = (b.a.z(), b.b.z());
            let sub = b.kind == BinaryKind::Sub;
            let data: Vec<i32> = x
                .iter()
                .zip(y.iter())
                .map(|(&u, &v)| match b.kind {
                    BinaryKind::Mul => arith::mul(u, za, v, zb, b.m.0, &b.out),
                    _ => arith::add(u, za, b.m.0, v, zb, b.m.1, sub, &b.out),
                })
                .collect();
            let codes = ArrayD::from_shape_vec(IxDyn(&shape), data).expect("shape");
            dequantize_tensor(&codes, &b.out, DType::F32)
        }
        IntPlan::GlobalAvg { x, out, m } => {
            let xq = recover_tensor(operand(0)?, x)?;
            // The op's own reduction over centred codes, in f64: avg·count recovers
            // the exact integer sum (|sum| < 2^31 is far inside f64's exact range).
            let avg = node.op.eval(&[Some(&centered(&xq, x))], 1)?.remove(0);
            let avg = avg.as_array::<f64>()?;
            let count = (xq.len() / avg.len().max(1)) as f64;
            let codes = avg.mapv(|a| {
                let sum = (a * count).round() as i32;
                arith::requantize(sum, *m, out.z(), out.qmin, out.qmax, out.rounding)
            });
            dequantize_tensor(&codes, out, DType::F32)
        }
        IntPlan::Lut { x, out, table } => {
            let xq = recover_tensor(operand(0)?, x)?;
            let codes = xq.mapv(|c| table[(c - x.qmin) as usize]);
            dequantize_tensor(&codes, out, DType::F32)
        }
        IntPlan::ChannelLut {
            x,
            out,
            table,
            channels,
            inner,
        } => {
            let xq = recover_tensor(operand(0)?, x)?;
            let n = (x.qmax - x.qmin + 1) as usize;
            let codes: Vec<i32> = xq
                .iter()
                .enumerate()
                .map(|(i, &c)| table[(i / inner) % channels * n + (c - x.qmin) as usize])
                .collect();
            let codes = ArrayD::from_shape_vec(xq.raw_dim(), codes).expect("same shape");
            dequantize_tensor(&codes, out, DType::F32)
        }
    })
}

/// The compute-op contract.
fn compute(q: &QuantGraph, n: NodeId, p: &ComputePlan, ins: &[Option<&Tensor>]) -> Result<Tensor> {
    let node = q.graph.node(n);
    let mut op = node.op.clone();
    match &mut op {
        Op::Conv(c) => c.act = Activation::None,
        Op::Gemm(g) => g.act = Activation::None,
        Op::MatMul(m) => m.act = Activation::None,
        _ => {}
    }
    let operand = |k: usize| {
        ins.get(k)
            .copied()
            .flatten()
            .ok_or_else(|| Error::new(ErrorKind::Eval, format!("operand {k} is missing")))
    };
    let xq = recover_tensor(operand(0)?, &p.x)?;
    let wq = match &p.w_codes {
        Some(w) => w.clone(),
        None => recover_tensor(operand(1)?, &p.w)?,
    };
    let bias = p.bias.as_ref().map(|b| {
        Tensor::F64(
            ArrayD::from_shape_vec(IxDyn(&[b.len()]), b.iter().map(|&v| v as f64).collect())
                .expect("1-D"),
        )
    });
    let acc = op
        .eval(
            &[
                Some(&centered(&xq, &p.x)),
                Some(&centered(&wq, &p.w)),
                bias.as_ref(),
            ],
            1,
        )?
        .remove(0);
    let acc = acc.as_array::<f64>()?.as_standard_layout().into_owned();
    let oshape = acc.shape().to_vec();
    let channels = p.w.scale.len();
    let ch = channel_of(&oshape, (channels > 1).then_some(p.channel_axis));
    let to_i32 = |a: f64| a.clamp(i32::MIN as f64, i32::MAX as f64) as i32;
    let (codes, out) = match &p.epilogue {
        Epilogue::Requant { out, m, lo, hi } => (
            acc.iter()
                .enumerate()
                .map(|(i, &a)| {
                    arith::requantize(to_i32(a), m[ch(i)], out.z(), *lo, *hi, out.rounding)
                })
                .collect::<Vec<i32>>(),
            out,
        ),
        Epilogue::Table { out, m, table } => (
            acc.iter()
                .enumerate()
                .map(|(i, &a)| act_table::lookup(table, to_i32(a), m[ch(i)]))
                .collect::<Vec<i32>>(),
            out,
        ),
        Epilogue::Float {
            out,
            sc,
            act,
            residual,
            slope,
        } => {
            let mut v: Vec<f32> = acc
                .iter()
                .enumerate()
                .map(|(i, &a)| to_i32(a) as f32 * sc[ch(i)])
                .collect();
            let full = |k: usize| -> Result<Vec<f32>> {
                let t = operand(k)?.as_f32()?;
                let b = t.broadcast(IxDyn(&oshape)).ok_or_else(|| {
                    Error::new(ErrorKind::Shape, format!("operand {k} does not broadcast"))
                })?;
                Ok(b.iter().copied().collect())
            };
            if *residual {
                for (d, r) in v.iter_mut().zip(full(RESIDUAL)?) {
                    *d += r;
                }
            }
            let slopes = if *slope { Some(full(SLOPE)?) } else { None };
            for (i, d) in v.iter_mut().enumerate() {
                *d = arith::activation(act, *d, slopes.as_ref().map_or(0.0, |s| s[i]));
            }
            match out {
                None => {
                    return Ok(Tensor::F32(
                        ArrayD::from_shape_vec(IxDyn(&oshape), v).expect("shape"),
                    ));
                }
                Some(out) => (v.iter().map(|&x| out.quantize_epilogue(x)).collect(), out),
            }
        }
    };
    let codes = ArrayD::from_shape_vec(IxDyn(&oshape), codes).expect("shape");
    Ok(dequantize_tensor(&codes, out, DType::F32))
}

/// Fake-quantises `t` with parameters `p` (codes, then their values).
pub fn fake_quant_params(t: &Tensor, p: &QParams) -> Result<Tensor> {
    // Per tensor on a row-major f32 tensor (host steps' usual case): one pass, the same
    // arithmetic, without the dynamic-rank walks and the intermediate code array.
    if let (Tensor::F32(a), None, [s], [z]) = (t, p.axis, p.scale.as_slice(), p.zero.as_slice())
        && let Some(xs) = a.as_slice()
    {
        let (s, z) = (*s, *z);
        let v: Vec<f32> = xs
            .iter()
            .map(|&x| arith::dequantize(arith::quantize(x, s, z, p.qmin, p.qmax, p.rounding), s, z))
            .collect();
        return Ok(Tensor::F32(
            ArrayD::from_shape_vec(a.raw_dim(), v).expect("same shape"),
        ));
    }
    Ok(dequantize_tensor(&quantize_tensor(t, p)?, p, t.dtype()))
}

/// The lookup table of an element-wise op: entry `i` is the output code for input code
/// `x.qmin + i`, computed with the op's own fp32 `eval`.
pub fn lookup_table(op: &Op, x: &QParams, out: &QParams) -> Result<Vec<i32>> {
    let xs: Vec<f32> = (x.qmin..=x.qmax)
        .map(|c| arith::dequantize(c, x.s(), x.z()))
        .collect();
    let n = xs.len();
    let t = Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[n]), xs).expect("1-D"));
    let y = op.eval(&[Some(&t)], 1)?.remove(0);
    Ok(y.as_f32()?.iter().map(|&v| out.quantize(v, 0)).collect())
}

/// Sites of one op (its operands and results), for layer-wise analysis.
pub fn op_sites(q: &QuantGraph, n: NodeId) -> Vec<TqcId> {
    q.ids()
        .filter(|&id| match q.site(id) {
            Site::In(m, _) => m == n,
            Site::Out(v) => q.graph.producer(v) == Some(n),
        })
        .collect()
}
