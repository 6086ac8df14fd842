//! The stripped model's grids → TQCs of a quant unit, without calibration.
//!
//! The graph has been through the chosen pipeline (fusion included) before this runs, so
//! parameters attach to what survived, by name:
//!
//! - a value with a grid in [`Qdq::values`] gets an ACTIVATED output TQC with it, and every
//!   operand reading it an OVERLAPPED input TQC in its group (one quantisation per data
//!   flow, as `quant.reduce-points` would make it);
//! - an operand with its own grid in [`Qdq::edges`] (found by its reader's node name, or the
//!   reader's first result when the node has none) gets an ACTIVATED input TQC;
//! - a float constant the model quantises with a QuantizeLinear gets an ACTIVATED input
//!   TQC with that grid;
//! - a constant read through a TQC whose constant came from a DequantizeLinear is BAKED
//!   (weights, quantised constant operands) or, for a compute op's bias whose scale is
//!   exactly `s_x·s_w[c]` (onnxruntime's bias rule, and kiln's), PASSIVE_BAKED — provided
//!   the constant still lies on its grid;
//! - every other activation site carries float data in the QDQ model, so its TQC is FP32;
//! - a conv, gemm or matmul whose weight the model reads in float (no pair: onnxruntime's
//!   `nodes_to_exclude`, `kiln quantize --fp32`) is kept in fp32, as onnxruntime runs it.
//!
//! **Fusion.** Values that vanish when `graph-opt` fuses ops (a Conv's result folded into
//! its fused residual Add, the pieces of a decomposed LayerNorm or Gelu) lose their pair:
//! the fused op keeps the intermediate in its f32 epilogue, as a fused kernel keeps it in
//! registers. Constants that a pass rewrites (merged linear ops, folded scale/shift) no
//! longer lie on their grid; they, and weights and biases the model left in float, get
//! kiln's own parameters (`quant.quantize-params`, `quant.quantize-passive`, `quant.bake`
//! with the platform's templates). Run with `--pipeline cleanup` to keep every pair of the
//! model.

use super::strip::{Grid, Qdq, node_key};
use kiln_core::{PassManager, Result};
use kiln_graph::{Graph, NodeId, Value};
use kiln_quant::platform::Role;
use kiln_quant::{Platform, Policy, QuantGraph, Rounding, Site, State, Tqc, TqcId};

/// A TQC holding `grid`, in `state`.
fn tqc(grid: &Grid, state: State) -> Tqc {
    let symmetric = grid.zero.iter().all(|&z| z == 0) && grid.qmin < 0;
    let mut p = Policy::LINEAR;
    p |= if symmetric {
        Policy::SYMMETRIC
    } else {
        Policy::ASYMMETRIC
    };
    p |= if grid.axis.is_some() {
        Policy::PER_CHANNEL
    } else {
        Policy::PER_TENSOR
    };
    let bits = if grid.qmax as i64 - grid.qmin as i64 <= 255 {
        8
    } else {
        32
    };
    Tqc {
        policy: Policy(p),
        axis: grid.axis,
        num_bits: bits,
        quant_min: grid.qmin,
        quant_max: grid.qmax,
        rounding: Rounding::HalfEven,
        observer: kiln_quant::ObserverKind::MinMax,
        scale: grid.scale.clone(),
        offset: grid.zero.clone(),
        range: None,
        state,
    }
}

/// Whether `data` lies exactly on `grid` (dequantising its codes gives it back).
fn on_grid(data: &kiln_core::Tensor, grid: &Grid) -> bool {
    let t = tqc(grid, State::Baked);
    match (kiln_quant::sim::fake_quant(data, &t), data.as_f32()) {
        (Ok(f), Ok(d)) => f
            .as_f32()
            .is_ok_and(|f| f.iter().zip(d.iter()).all(|(a, b)| a == b)),
        _ => false,
    }
}

/// The reader key of node `n`, as [`node_key`] spells it.
fn key_of(g: &Graph, n: NodeId) -> String {
    let node = g.node(n);
    let first = node
        .outputs()
        .first()
        .map(|&v| g.value(v).name.as_str())
        .unwrap_or("");
    node_key(&node.name, first)
}

/// Builds the quant unit of a stripped QDQ model's (optimised) graph.
pub fn quant_graph(g: Graph, platform: &'static Platform, qdq: &Qdq) -> Result<QuantGraph> {
    let mut q = QuantGraph::new(g, platform)?;
    // A compute op whose weight the model reads in float runs in float there.
    for n in q.graph.topo_order()? {
        let node = q.graph.node(n);
        let float_weight = node.input(1).is_some_and(|w| {
            kiln_quant::ir::is_const(&q.graph, w)
                && qdq.float_consts.contains(&q.graph.value(w).name)
        });
        if float_weight && kiln_quant::platform::is_compute(&node.op) {
            q.keep_fp32_op(n);
        }
    }
    let reg = kiln_quant::passes::registry();
    PassManager::new(reg.parse("quant.refine")?).run(&mut q)?;
    let name = |q: &QuantGraph, v: Value| q.graph.value(v).name.clone();

    // Activations, at their producers.
    let mut quantised: Vec<(Value, TqcId)> = Vec::new();
    for id in q.ids().collect::<Vec<_>>() {
        let Site::Out(v) = q.site(id) else { continue };
        if !matches!(q.role(q.site(id)), Role::Activation) {
            continue;
        }
        match qdq.values.get(&name(&q, v)) {
            Some(grid) => {
                *q.tqc_mut(id) = tqc(grid, State::Activated);
                quantised.push((v, id));
            }
            None if q.tqc(id).state == State::Initial => q.tqc_mut(id).state = State::Fp32,
            None => {}
        }
    }
    // Operands.
    for id in q.ids().collect::<Vec<_>>() {
        let Site::In(n, k) = q.site(id) else { continue };
        let v = q.site_value(q.site(id));
        let role = q.role(q.site(id));
        if kiln_quant::ir::is_const(&q.graph, v) {
            // A float constant quantised by a QuantizeLinear in the model.
            let name = q.graph.value(v).name.clone();
            let pair = qdq
                .edges
                .get(&(key_of(&q.graph, n), k))
                .or_else(|| qdq.values.get(&name));
            match pair {
                Some(grid) if matches!(role, Role::Activation | Role::Weight { .. }) => {
                    *q.tqc_mut(id) = tqc(grid, State::Activated)
                }
                _ => constant(&mut q, id, n, v, role, qdq)?,
            }
            continue;
        }
        if !matches!(role, Role::Activation) {
            continue;
        }
        let edge = qdq.edges.get(&(key_of(&q.graph, n), k));
        let up = quantised.iter().find(|(u, _)| *u == v).map(|&(_, t)| t);
        match (edge, up) {
            (Some(grid), Some(up)) if *q.effective(up) == tqc(grid, State::Activated) => {
                q.overlap(up, id);
            }
            (Some(grid), _) => *q.tqc_mut(id) = tqc(grid, State::Activated),
            (None, Some(up)) => {
                q.overlap(up, id);
            }
            (None, None) => {
                if matches!(q.tqc(id).state, State::Initial) {
                    q.tqc_mut(id).state = State::Fp32;
                }
            }
        }
    }
    // Weights and biases without usable grids get kiln's own parameters.
    PassManager::new(reg.parse("quant.quantize-params,quant.quantize-passive,quant.bake")?)
        .run(&mut q)?;
    // What is still waiting for parameters (a bias whose input the model left in float, a
    // constant without data) stays float, as it is in the QDQ model.
    for id in q.ids().collect::<Vec<_>>() {
        if matches!(q.tqc(id).state, State::Initial | State::PassiveInit) {
            q.tqc_mut(id).state = State::Fp32;
        }
    }
    kiln_core::Ir::verify(&q)?;
    Ok(q)
}

/// A constant operand: BAKED / PASSIVE_BAKED with the model's grid when it still holds.
fn constant(
    q: &mut QuantGraph,
    id: TqcId,
    n: NodeId,
    v: Value,
    role: Role,
    qdq: &Qdq,
) -> Result<()> {
    let name = q.graph.value(v).name.clone();
    let data = kiln_quant::ir::const_data(&q.graph, v).cloned();
    let grid = qdq.consts.get(&name);
    let usable = match (&data, grid) {
        (Some(d), Some(g)) => d.dtype() == kiln_core::DType::F32 && on_grid(d, g),
        _ => false,
    };
    match role {
        Role::Weight { .. } | Role::Activation if usable => {
            *q.tqc_mut(id) = tqc(grid.expect("usable"), State::Baked);
        }
        Role::Bias if usable => {
            let grid = grid.expect("usable");
            let (x, w) = (q.in_tqc(n, 0), q.in_tqc(n, 1));
            let (Some(x), Some(w)) = (x, w) else {
                return Ok(());
            };
            let (xs, ws) = (q.effective(x).scale.clone(), q.effective(w).scale.clone());
            let fits = xs.len() == 1
                && !ws.is_empty()
                && grid.zero.iter().all(|&z| z == 0)
                && (0..grid.scale.len()).all(|c| {
                    let wsc = ws[if ws.len() == 1 {
                        0
                    } else {
                        c.min(ws.len() - 1)
                    }];
                    grid.scale[c] == kiln_quant::arith::product_scale(xs[0], wsc)
                });
            if fits {
                *q.tqc_mut(id) = tqc(grid, State::PassiveBaked);
            }
        }
        // A float constant the model reads unquantised.
        Role::Activation if q.tqc(id).state == State::Initial => {
            q.tqc_mut(id).state = State::Fp32;
        }
        _ => {}
    }
    Ok(())
}
