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
//!   quantises, or it is OVERLAPPED and every reader's input TQC quantises with that same
//!   group (the device requantises once, at the producer). Integer paths: Conv, Gemm
//!   (alpha = beta = 1, no transA), MatMul (no transA), Add/Sub/Mul, global average pool,
//!   element-wise unary ops (lookup tables).
//! - Everything else runs the graph dialect's fp32 `eval` on the (fake-)quantised operands:
//!   quantise/dequantise at the boundary.

use crate::arith::{self, QParams};
use crate::ir::{QuantGraph, Site, TqcId};
use crate::platform::{self, Dispatch};
use crate::tqc::{State, Tqc};
use kiln_core::{DType, Error, ErrorKind, Result, Tensor, bail};
use kiln_graph::ops::{
    Activation, BinaryKind, GlobalPoolKind, activation::RESIDUAL, activation::SLOPE,
};
use kiln_graph::{NodeId, Op, Value};
use ndarray::{ArrayD, IxDyn};

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
    let a = t.cast(DType::F32);
    let a = a.as_f32()?.as_standard_layout().into_owned();
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
    /// Ops that took their integer path in the last run (so callers and tests can see
    /// that int8 arithmetic, not the fp32 fallback, produced a result).
    integer: std::cell::RefCell<Vec<NodeId>>,
}

impl<'q> Simulator<'q> {
    pub fn new(q: &'q QuantGraph) -> Result<Self> {
        Ok(Simulator {
            q,
            order: q.graph.topo_order()?,
            integer: Default::default(),
        })
    }

    /// The ops that ran their integer path in the last run, in schedule order.
    pub fn integer_ops(&self) -> Vec<NodeId> {
        self.integer.borrow().clone()
    }

    /// Effective parameters of a TQC, when it has them.
    fn params(&self, id: TqcId) -> Option<QParams> {
        QParams::from_tqc(self.q.effective(id))
    }

    fn quantises(&self, id: Option<TqcId>) -> Option<QParams> {
        let id = id?;
        if self.q.tqc(id).state.quantises() {
            self.params(id)
        } else {
            None
        }
    }

    /// Parameters an operand is held in for the integer path.
    fn operand_params(&self, n: NodeId, k: usize) -> Option<QParams> {
        let id = self.q.in_tqc(n, k)?;
        match self.q.tqc(id).state {
            State::Activated
            | State::Slave
            | State::Overlapped
            | State::Baked
            | State::Passive
            | State::PassiveBaked => self.params(id),
            _ => None,
        }
    }

    /// Output parameters of a result (see the module docs).
    fn output_params(&self, v: Value) -> Option<QParams> {
        let q = self.q;
        let id = q.out_tqc(v)?;
        match q.tqc(id).state {
            State::Activated | State::Slave => self.params(id),
            State::Overlapped => {
                if q.graph.outputs().contains(&v) {
                    return None;
                }
                let uses = q.graph.uses(v);
                let root = q.root(id);
                let all = !uses.is_empty()
                    && uses.iter().all(|&(m, k)| {
                        q.in_tqc(m, k)
                            .is_some_and(|i| q.tqc(i).state.quantises() && q.root(i) == root)
                    });
                if all { self.params(id) } else { None }
            }
            _ => None,
        }
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
            let t = match self.quantises(q.out_tqc(v)) {
                Some(p) if t.dtype().is_float() => {
                    dequantize_tensor(&quantize_tensor(t, &p)?, &p, t.dtype())
                }
                _ => t.clone(),
            };
            vals[v.index()] = Some(t);
        }
        for &n in &self.order {
            let node = g.node(n);
            let outs = if let Op::Const(c) = &node.op {
                vec![c.tensor().map_err(|e| node.locate(e))?.clone()]
            } else {
                let mut ins: Vec<Option<Tensor>> = Vec::with_capacity(node.inputs().len());
                for (k, v) in node.inputs().iter().enumerate() {
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
                    let t = match self.quantises(q.in_tqc(n, k)) {
                        Some(p) if t.dtype().is_float() => {
                            fake_quant_p(t, &p).map_err(|e| node.locate(e))?
                        }
                        _ => t.clone(),
                    };
                    ins.push(Some(t));
                }
                let int = if platform::dispatch(&node.op) == Dispatch::Int8 {
                    self.int_path(n, &ins).map_err(|e| node.locate(e))?
                } else {
                    None
                };
                match int {
                    Some(t) => {
                        self.integer.borrow_mut().push(n);
                        vec![t]
                    }
                    None => {
                        let refs: Vec<Option<&Tensor>> = ins.iter().map(|t| t.as_ref()).collect();
                        node.op
                            .eval(&refs, node.outputs().len())
                            .map_err(|e| node.locate(e))?
                    }
                }
            };
            for (&v, t) in node.outputs().iter().zip(outs) {
                let t = match self.quantises(q.out_tqc(v)) {
                    Some(p) if t.dtype().is_float() => {
                        fake_quant_p(&t, &p).map_err(|e| node.locate(e))?
                    }
                    _ => t,
                };
                observe(v, &t);
                vals[v.index()] = Some(t);
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

    /// The integer path of an int8 op, or `None` when its conditions do not hold.
    fn int_path(&self, n: NodeId, ins: &[Option<Tensor>]) -> Result<Option<Tensor>> {
        let node = self.q.graph.node(n);
        if node.outputs().len() != 1 || ins.iter().flatten().any(|t| t.dtype() != DType::F32) {
            return Ok(None);
        }
        let v = node.outputs()[0];
        let Some(out) = self.output_params(v) else {
            // A compute op whose result the platform leaves in f32 (a graph output on
            // kiln-x86) still accumulates in integers: the f32 epilogue, unquantised.
            let float_out = platform::is_compute(&node.op)
                && self
                    .q
                    .out_tqc(v)
                    .is_some_and(|t| self.q.tqc(t).state == State::Fp32);
            return if float_out {
                self.compute(n, ins, None)
            } else {
                Ok(None)
            };
        };
        if out.axis.is_some() {
            return Ok(None);
        }
        match &node.op {
            Op::Conv(_) | Op::Gemm(_) | Op::MatMul(_) => self.compute(n, ins, Some(&out)),
            Op::Binary(b)
                if matches!(b.kind, BinaryKind::Add | BinaryKind::Sub | BinaryKind::Mul) =>
            {
                self.binary(n, b.kind, ins, &out)
            }
            Op::GlobalPool(p) if p.kind == GlobalPoolKind::Average => self.global_avg(n, ins, &out),
            Op::Unary(_) | Op::LeakyRelu(_) | Op::HardSigmoid(_) | Op::Gelu(_)
                if ins.len() == 1 =>
            {
                self.lut(n, ins, &out)
            }
            _ => Ok(None),
        }
    }

    /// Codes and parameters of operand `k`.
    fn codes(
        &self,
        n: NodeId,
        k: usize,
        ins: &[Option<Tensor>],
    ) -> Result<Option<(ArrayD<i32>, QParams)>> {
        let (Some(t), Some(p)) = (
            ins.get(k).and_then(|t| t.as_ref()),
            self.operand_params(n, k),
        ) else {
            return Ok(None);
        };
        Ok(Some((recover_tensor(t, &p)?, p)))
    }

    /// The compute-op contract; `out` is `None` for a result left in f32.
    fn compute(
        &self,
        n: NodeId,
        ins: &[Option<Tensor>],
        out: Option<&QParams>,
    ) -> Result<Option<Tensor>> {
        let node = self.q.graph.node(n);
        let (mut op, act) = match &node.op {
            Op::Conv(c) => (Op::Conv(c.clone()), c.act),
            Op::Gemm(g) if g.alpha == 1.0 && g.beta == 1.0 && !g.trans_a => (Op::Gemm(*g), g.act),
            Op::MatMul(m) if !m.trans_a => (Op::MatMul(*m), m.act),
            _ => return Ok(None),
        };
        match &mut op {
            Op::Conv(c) => c.act = Activation::None,
            Op::Gemm(g) => g.act = Activation::None,
            Op::MatMul(m) => m.act = Activation::None,
            _ => {}
        }
        let (Some((xq, xp)), Some((wq, wp))) = (self.codes(n, 0, ins)?, self.codes(n, 1, ins)?)
        else {
            return Ok(None);
        };
        if xp.axis.is_some() {
            return Ok(None);
        }
        // The weight's channel axis must be the result's channel axis.
        let wshape = wq.shape().to_vec();
        let out_axis_ok = match (&node.op, wp.axis) {
            (_, None) => true,
            (Op::Conv(_), Some(0)) => true,
            (Op::Gemm(g), Some(a)) => a == if g.trans_b { 0 } else { 1 },
            (Op::MatMul(m), Some(a)) => {
                wshape.len() >= 2
                    && a == if m.trans_b {
                        wshape.len() - 2
                    } else {
                        wshape.len() - 1
                    }
            }
            _ => false,
        };
        if !out_axis_ok {
            return Ok(None);
        }
        let channels = wp.scale.len();
        let ws = |c: usize| wp.scale[if channels == 1 { 0 } else { c }];
        // The bias: i32 codes at scale s_x·s_w[c] exactly.
        let bias = match ins.get(2).and_then(|t| t.as_ref()) {
            None => None,
            Some(b) => {
                let Some(bp) = self.operand_params(n, 2) else {
                    return Ok(None);
                };
                let cn = b.len();
                let scale_ok = b.shape().len() == 1
                    && bp.scale.len() == if bp.axis.is_some() { cn } else { 1 }
                    && (0..cn).all(|c| {
                        bp.scale[if bp.axis.is_some() { c } else { 0 }]
                            == arith::product_scale(xp.s(), ws(if channels == 1 { 0 } else { c }))
                    });
                if !scale_ok {
                    return Ok(None);
                }
                // A baked bias is on its grid; a PASSIVE one is quantised here.
                let baked = self
                    .q
                    .in_tqc(n, 2)
                    .is_some_and(|i| self.q.tqc(i).state == State::PassiveBaked);
                let bq = if baked {
                    recover_tensor(b, &bp)?
                } else {
                    quantize_tensor(b, &bp)?
                };
                Some(Tensor::F64(bq.mapv(|v| v as f64)))
            }
        };
        let xc = centered(&xq, &xp);
        let wc = centered(&wq, &wp);
        // The reduction length K and the largest centred magnitudes bound the accumulator.
        let k_len = match &node.op {
            Op::Conv(_) => wq.len() / wshape[0].max(1),
            Op::Gemm(g) => wshape[if g.trans_b { 1 } else { 0 }],
            Op::MatMul(m) if wshape.len() >= 2 => {
                wshape[wshape.len() - if m.trans_b { 1 } else { 2 }]
            }
            _ => wshape.first().copied().unwrap_or(1),
        };
        let span = |p: &QParams| {
            p.zero
                .iter()
                .map(|&z| (p.qmax - z).max(z - p.qmin) as i64)
                .max()
                .unwrap_or(0)
        };
        if !arith::acc_fits_i32(k_len, span(&xp), span(&wp), i32::MAX as i64 / 2) {
            // Larger reductions would need an overflow analysis kernels do not have yet.
            return Ok(None);
        }
        let acc = op
            .eval(&[Some(&xc), Some(&wc), bias.as_ref()], 1)?
            .remove(0);
        let acc = acc.as_array::<f64>()?.as_standard_layout().into_owned();
        let oshape = acc.shape().to_vec();
        let caxis = match &node.op {
            Op::Conv(c) if !c.layout.is_nhwc() => 1,
            _ => oshape.len() - 1,
        };
        let ch = channel_of(&oshape, if channels == 1 { None } else { Some(caxis) });
        let residual = ins.get(RESIDUAL).and_then(|t| t.as_ref());
        let slope = ins.get(SLOPE).and_then(|t| t.as_ref());
        let clamp_only = out.is_some()
            && residual.is_none()
            && matches!(
                act,
                Activation::None | Activation::Relu | Activation::Clip { .. }
            );
        let to_i32 = |a: f64| a.clamp(i32::MIN as f64, i32::MAX as f64) as i32;
        let codes: Vec<i32> = if let (true, Some(out)) = (clamp_only, out) {
            let (mut lo, mut hi) = (out.qmin, out.qmax);
            match act {
                Activation::Relu => lo = lo.max(out.z()),
                Activation::Clip { min, max } => {
                    lo = lo.max(out.quantize(min, 0));
                    hi = hi.min(out.quantize(max, 0));
                }
                _ => {}
            }
            let m: Vec<f32> = (0..channels)
                .map(|c| arith::multiplier(xp.s(), ws(c), out.s()))
                .collect();
            acc.iter()
                .enumerate()
                .map(|(i, &a)| {
                    arith::requantize(to_i32(a), m[ch(i)], out.z(), lo, hi, out.rounding)
                })
                .collect()
        } else {
            // The f32 epilogue.
            let sc: Vec<f32> = (0..channels)
                .map(|c| arith::product_scale(xp.s(), ws(c)))
                .collect();
            let mut v: Vec<f32> = acc
                .iter()
                .enumerate()
                .map(|(i, &a)| to_i32(a) as f32 * sc[ch(i)])
                .collect();
            if let Some(y) = residual {
                let y = y
                    .as_f32()?
                    .broadcast(IxDyn(&oshape))
                    .ok_or_else(|| Error::new(ErrorKind::Shape, "residual does not broadcast"))?;
                for (d, r) in v.iter_mut().zip(y.iter()) {
                    *d += *r;
                }
            }
            let t = Tensor::F32(ArrayD::from_shape_vec(IxDyn(&oshape), v).expect("shape"));
            let t = kiln_graph::ops::activation::apply_epilogue(&act, t, None, slope)?;
            let Some(out) = out else {
                return Ok(Some(t));
            };
            let t = t.as_f32()?;
            t.iter().map(|&x| out.quantize(x, 0)).collect()
        };
        let codes = ArrayD::from_shape_vec(IxDyn(&oshape), codes).expect("shape");
        let out = out.expect("quantised paths have output parameters");
        Ok(Some(dequantize_tensor(&codes, out, DType::F32)))
    }

    fn binary(
        &self,
        n: NodeId,
        kind: BinaryKind,
        ins: &[Option<Tensor>],
        out: &QParams,
    ) -> Result<Option<Tensor>> {
        let (Some((aq, ap)), Some((bq, bp))) = (self.codes(n, 0, ins)?, self.codes(n, 1, ins)?)
        else {
            return Ok(None);
        };
        if ap.axis.is_some() || bp.axis.is_some() {
            return Ok(None);
        }
        let shape = kiln_graph::ops::util::broadcast_shapes(aq.shape(), bq.shape())?;
        let (a, b) = (
            aq.broadcast(IxDyn(&shape)).expect("broadcastable"),
            bq.broadcast(IxDyn(&shape)).expect("broadcastable"),
        );
        let data: Vec<i32> = match kind {
            BinaryKind::Mul => {
                let m = arith::multiplier(ap.s(), bp.s(), out.s());
                a.iter()
                    .zip(b.iter())
                    .map(|(&x, &y)| arith::mul(x, ap.z(), y, bp.z(), m, out))
                    .collect()
            }
            _ => {
                let (ma, mb) = (
                    arith::multiplier(ap.s(), 1.0, out.s()),
                    arith::multiplier(bp.s(), 1.0, out.s()),
                );
                let sub = kind == BinaryKind::Sub;
                a.iter()
                    .zip(b.iter())
                    .map(|(&x, &y)| arith::add(x, ap.z(), ma, y, bp.z(), mb, sub, out))
                    .collect()
            }
        };
        let codes = ArrayD::from_shape_vec(IxDyn(&shape), data).expect("shape");
        Ok(Some(dequantize_tensor(&codes, out, DType::F32)))
    }

    fn global_avg(
        &self,
        n: NodeId,
        ins: &[Option<Tensor>],
        out: &QParams,
    ) -> Result<Option<Tensor>> {
        let Some((xq, xp)) = self.codes(n, 0, ins)? else {
            return Ok(None);
        };
        let node = self.q.graph.node(n);
        // The op's own reduction over centred codes, in f64: avg·count recovers the exact
        // integer sum (|sum| < 2^31 is far inside f64's exact range).
        let avg = node.op.eval(&[Some(&centered(&xq, &xp))], 1)?.remove(0);
        let avg = avg.as_array::<f64>()?;
        let count = (xq.len() / avg.len().max(1)) as f64;
        // M = f32(f64(s_x) / (f64(s_y)·n)).
        let m = (xp.s() as f64 / (out.s() as f64 * count.max(1.0))) as f32;
        let codes = avg.mapv(|a| {
            let sum = (a * count).round() as i32;
            arith::requantize(sum, m, out.z(), out.qmin, out.qmax, out.rounding)
        });
        Ok(Some(dequantize_tensor(&codes, out, DType::F32)))
    }

    fn lut(&self, n: NodeId, ins: &[Option<Tensor>], out: &QParams) -> Result<Option<Tensor>> {
        let Some((xq, xp)) = self.codes(n, 0, ins)? else {
            return Ok(None);
        };
        if xp.axis.is_some() || xp.qmax - xp.qmin > 65535 {
            return Ok(None);
        }
        let table = lookup_table(&self.q.graph.node(n).op, &xp, out)?;
        let codes = xq.mapv(|c| table[(c - xp.qmin) as usize]);
        Ok(Some(dequantize_tensor(&codes, out, DType::F32)))
    }
}

fn fake_quant_p(t: &Tensor, p: &QParams) -> Result<Tensor> {
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
