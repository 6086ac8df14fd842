//! Where QuantizeLinear / DequantizeLinear go, and how they are written.
//!
//! The exported model must compute, in float, what the simulator computes: a QDQ model's
//! `DequantizeLinear(QuantizeLinear(x))` is the simulator's fake quantisation
//! `dequant(quant(x))` (ONNX quantises with ties to even and saturates to the integer
//! type; kiln's platforms quantise activations over the full 8-bit range). The placement
//! rules, per value `v` (see [`Placement`]):
//!
//! - **At the producer**: when `v`'s output TQC quantises (ACTIVATED / SLAVE), or when
//!   `v` is no graph output and every reader's input TQC quantises with one and the same
//!   grid. The second case is the simulator's "overlapped result with output parameters":
//!   a Conv whose result is OVERLAPPED into the group of the Add that reads it requantises
//!   once, at the Conv — in ONNX that is `Conv → Q → DQ`, which onnxruntime fuses into
//!   QLinearConv.
//! - **Identity pairs after exact passive ops**: MaxPool, Reshape, Transpose, Flatten and
//!   the other data-movement ops whose result holds only values of their input, when the
//!   input was read on a grid: the result gets a Q/DQ pair with that same grid. The pair is
//!   an identity on grid values (requantising `(q − z)·s` with ties to even gives back `q`,
//!   see `kiln_quant::arith`), so the numbers do not change, but onnxruntime sees
//!   `DQ → MaxPool → Q` and keeps the data in int8, as its own quantiser writes it.
//! - **On one edge**: a reader whose input TQC quantises with a grid the value is not
//!   already on (a SLAVE input of an Add that takes the master's parameters, a constant
//!   read through an ACTIVATED TQC) gets its own pair; readers with equal grids share it.
//! - **Never** at FP32, SOI, DEACTIVATED, PASSIVE or OVERLAPPED sites otherwise: that data
//!   is float in the simulator, and stays float here.
//!
//! Constants read through a BAKED (weight) or PASSIVE_BAKED (bias) TQC become integer
//! initializers (`int8` weights per channel, `int32` biases at scale `s_x·s_w[c]`, any
//! other baked constant in its TQC's type) followed by a DequantizeLinear with `axis`
//! for per-channel parameters. The baked constant already holds `dequant(q)`, so its codes
//! are recovered exactly; the exporter checks that DequantizeLinear gives back the very
//! same floats.

use super::builder::{Builder, int};
use kiln_core::{DType, Result, Tensor, bail, ensure};
use kiln_graph::{Graph, NodeId, Op, Value};
use kiln_quant::arith::QParams;
use kiln_quant::{QuantGraph, State, TqcId};

/// One quantisation grid: what a Q/DQ pair needs.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Grid {
    pub scale: Vec<f32>,
    pub zero: Vec<i32>,
    pub qmin: i32,
    pub qmax: i32,
    pub axis: Option<usize>,
}

impl Grid {
    fn from_params(p: &QParams) -> Grid {
        Grid {
            scale: p.scale.clone(),
            zero: p.zero.clone(),
            qmin: p.qmin,
            qmax: p.qmax,
            axis: p.axis,
        }
    }

    /// The integer type that holds this grid's codes in an initializer (DequantizeLinear
    /// reads uint8, int8 and int32 at opset 20; codes are i32 already, so int32 always fits).
    fn storage(&self) -> DType {
        if self.qmin >= 0 && self.qmax <= 255 {
            DType::U8
        } else if self.qmin >= -128 && self.qmax <= 127 {
            DType::I8
        } else {
            DType::I32
        }
    }

    /// The type of a QuantizeLinear result: it saturates to the whole type, so the grid
    /// must span exactly `[0, 255]` or `[-128, 127]`.
    fn activation_type(&self) -> Result<DType> {
        match (self.qmin, self.qmax) {
            (0, 255) => Ok(DType::U8),
            (-128, 127) => Ok(DType::I8),
            (lo, hi) => bail!(
                Unsupported,
                "an activation quantised to [{lo}, {hi}] has no QuantizeLinear form (it saturates to \
                 [0, 255] or [-128, 127])"
            ),
        }
    }

    /// Scale and zero-point initializers (scalars per tensor, vectors per channel).
    fn params(&self, b: &mut Builder, base: &str, zp_type: DType) -> (String, String) {
        let per_channel = self.axis.is_some();
        let shape: Vec<usize> = if per_channel {
            vec![self.scale.len()]
        } else {
            vec![]
        };
        let scale = Tensor::from_vec(&shape, self.scale.clone()).expect("shape matches");
        let zero: Vec<i64> = self.zero.iter().map(|&z| z as i64).collect();
        let zero = Tensor::from_vec(&shape, zero)
            .expect("shape matches")
            .cast(zp_type);
        (
            b.initializer(&format!("{base}_scale"), &scale),
            b.initializer(&format!("{base}_zero_point"), &zero),
        )
    }
}

/// The grid a TQC quantises with when its state quantises.
pub(super) fn quantising(q: &QuantGraph, id: Option<TqcId>) -> Option<Grid> {
    let id = id?;
    if !q.tqc(id).state.quantises() {
        return None;
    }
    QParams::from_tqc(q.effective(id)).map(|p| Grid::from_params(&p))
}

/// The effective grid of a TQC, whatever its state.
pub(super) fn effective(q: &QuantGraph, id: Option<TqcId>) -> Option<Grid> {
    QParams::from_tqc(q.effective(id?)).map(|p| Grid::from_params(&p))
}

/// Ops whose every result element is one of their data input's elements, so grid values
/// stay on the grid (the identity-pair rule above).
pub(super) fn exact_passive(op: &Op) -> bool {
    matches!(
        op,
        Op::MaxPool(_)
            | Op::Reshape(_)
            | Op::Flatten(_)
            | Op::Squeeze(_)
            | Op::Unsqueeze(_)
            | Op::Transpose(_)
            | Op::Slice(_)
            | Op::Split(_)
            | Op::DepthToSpace(_)
            | Op::SpaceToDepth(_)
            | Op::Expand(_)
            | Op::Tile(_)
            | Op::Gather(_)
    ) || matches!(op, Op::GlobalPool(p) if p.kind == kiln_graph::ops::GlobalPoolKind::Max)
        || matches!(op, Op::Unary(u) if u.kind == kiln_graph::ops::UnaryKind::Identity)
}

/// Where the pair of value `v` goes (the rules in the module docs). `read_grid(n, k)` is
/// the grid the data operand `k` of `n` was read on.
pub(super) fn output_grid(
    q: &QuantGraph,
    v: Value,
    read_grid: impl Fn(NodeId, usize) -> Option<Grid>,
) -> Option<Grid> {
    let g = &q.graph;
    if !g
        .value(v)
        .ty
        .as_ref()
        .is_some_and(|t| t.dtype == DType::F32)
    {
        return None;
    }
    let out = q.out_tqc(v);
    if let Some(grid) = quantising(q, out) {
        return Some(grid);
    }
    let uses = g.uses(v);
    if !g.outputs().contains(&v) && !uses.is_empty() {
        let grids: Vec<Option<Grid>> = uses
            .iter()
            .map(|&(m, k)| quantising(q, q.in_tqc(m, k)))
            .collect();
        if let Some(Some(first)) = grids.first()
            && grids.iter().all(|x| x.as_ref() == Some(first))
        {
            return Some(first.clone());
        }
    }
    // The identity pair after an exact passive op.
    let n = g.producer(v)?;
    if !exact_passive(&g.node(n).op) || q.tqc(out?).state != State::Overlapped {
        return None;
    }
    let grid = effective(q, out)?;
    (grid.axis.is_none() && read_grid(n, 0).as_ref() == Some(&grid)).then_some(grid)
}

/// Emits `Q → DQ` of `input`; returns the dequantised name.
pub(super) fn pair(
    b: &mut Builder,
    input: &str,
    grid: &Grid,
    out_name: Option<String>,
) -> Result<String> {
    let ty = grid.activation_type()?;
    let (s, z) = grid.params(b, input, ty);
    let mut axis = Vec::new();
    if let Some(a) = grid.axis {
        axis.push(int("axis", a as i64));
    }
    let qn = b.node1(
        "QuantizeLinear",
        &format!("{input}_quantized"),
        vec![input.to_string(), s.clone(), z.clone()],
        axis.clone(),
    );
    let dq = match out_name {
        Some(n) => n,
        None => b.fresh(&format!("{input}_dequantized")),
    };
    b.node("DequantizeLinear", vec![qn, s, z], vec![dq.clone()], axis);
    Ok(dq)
}

/// Emits a baked constant as integer codes plus DequantizeLinear; returns the
/// dequantised name. `data` must lie exactly on `grid`.
pub(super) fn baked_constant(
    b: &mut Builder,
    base: &str,
    data: &Tensor,
    grid: &Grid,
) -> Result<String> {
    ensure!(
        data.dtype() == DType::F32,
        Unsupported,
        "baked constant '{base}' is {}, only f32 constants are exported quantised",
        data.dtype()
    );
    let p = QParams {
        scale: grid.scale.clone(),
        zero: grid.zero.clone(),
        qmin: grid.qmin,
        qmax: grid.qmax,
        rounding: kiln_quant::Rounding::HalfEven,
        axis: grid.axis,
    };
    let codes = kiln_quant::sim::recover_tensor(data, &p)?;
    // DequantizeLinear must give back the baked floats bit for bit.
    let back = kiln_quant::sim::dequantize_tensor(&codes, &p, DType::F32);
    let same = back
        .as_f32()?
        .iter()
        .zip(data.as_f32()?.iter())
        .all(|(a, b)| a.to_bits() == b.to_bits() || (*a == 0.0 && *b == 0.0));
    ensure!(
        same,
        InvalidModel,
        "baked constant '{base}' does not lie on its quantisation grid"
    );
    let ty = grid.storage();
    let shape = codes.shape().to_vec();
    let flat: Vec<i64> = codes.iter().map(|&c| c as i64).collect();
    let t = Tensor::from_vec(&shape, flat)?.cast(ty);
    let qname = b.initializer(&format!("{base}_quantized"), &t);
    let (s, z) = grid.params(b, base, ty);
    let mut attrs = Vec::new();
    if let Some(a) = grid.axis {
        attrs.push(int("axis", a as i64));
    }
    Ok(b.node1(
        "DequantizeLinear",
        &format!("{base}_dequantized"),
        vec![qname, s, z],
        attrs,
    ))
}

/// The grid of a constant read through a baked TQC, if it is one.
pub(super) fn baked(q: &QuantGraph, n: NodeId, k: usize) -> Option<Grid> {
    let id = q.in_tqc(n, k)?;
    matches!(q.tqc(id).state, State::Baked | State::PassiveBaked)
        .then(|| effective(q, Some(id)))
        .flatten()
}

/// Whether `v` is a constant.
pub(super) fn is_const(g: &Graph, v: Value) -> bool {
    kiln_quant::ir::is_const(g, v)
}
