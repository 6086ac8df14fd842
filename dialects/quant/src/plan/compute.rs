//! The plan of a compute op (Conv, Gemm, MatMul): its operands' grids, the codes of its
//! constant weights and bias, and its epilogue.

use super::*;

/// Codes of constant operand `k` as the simulator sees them: the operand's own TQC
/// fake-quantises it first when it quantises; then the codes are recovered (weights, a
/// baked bias: on their grid already) or quantised (a bias still PASSIVE).
fn const_codes(
    q: &QuantGraph,
    n: NodeId,
    k: usize,
    p: &QParams,
    weight: bool,
) -> Result<Option<ArrayD<i32>>> {
    let Some(v) = q.graph.node(n).input(k) else {
        return Ok(None);
    };
    let Some(t) = ir::const_data(&q.graph, v) else {
        return Ok(None);
    };
    let t = as_read(q, n, k, t)?;
    let baked = q
        .in_tqc(n, k)
        .is_some_and(|i| q.tqc(i).state == State::PassiveBaked);
    Ok(Some(if weight || baked {
        recover_tensor(&t, p)?
    } else {
        quantize_tensor(&t, p)?
    }))
}

pub(super) fn compute(
    q: &QuantGraph,
    n: NodeId,
    out: Option<QParams>,
) -> Result<Option<ComputePlan>> {
    let g = &q.graph;
    let node = g.node(n);
    let act = match &node.op {
        Op::Conv(c) => c.act,
        Op::Gemm(gm) if gm.alpha == 1.0 && gm.beta == 1.0 => gm.act,
        Op::MatMul(m) => m.act,
        _ => return Ok(None),
    };
    let (Some(x), Some(w)) = (operand_params(q, n, 0), operand_params(q, n, 1)) else {
        return Ok(None);
    };
    let (Some(_), Some(wv)) = (node.input(0), node.input(1)) else {
        return Ok(None);
    };
    if x.axis.is_some() {
        return Ok(None);
    }
    // The weight's channel axis must be the result's channel axis.
    let wshape = g.ty(wv)?.shape.clone();
    let out_axis_ok = match (&node.op, w.axis) {
        (_, None) => true,
        (Op::Conv(_), Some(0)) => true,
        (Op::Gemm(gm), Some(a)) => a == if gm.trans_b { 0 } else { 1 },
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
    let channels = w.scale.len();
    let ws = |c: usize| w.scale[if channels == 1 { 0 } else { c }];
    // The bias: i32 codes at scale s_x·s_w[c] exactly, from a constant.
    let bias = match node.input(2) {
        None => None,
        Some(_) => {
            let Some(bp) = operand_params(q, n, 2) else {
                return Ok(None);
            };
            let Some(codes) = const_codes(q, n, 2, &bp, false)? else {
                // A computed bias has no integer path (no model kiln has met needs one).
                return Ok(None);
            };
            let cn = codes.len();
            let scale_ok = codes.ndim() == 1
                && bp.scale.len() == if bp.axis.is_some() { cn } else { 1 }
                && (0..cn).all(|c| {
                    bp.scale[if bp.axis.is_some() { c } else { 0 }]
                        == arith::product_scale(x.s(), ws(if channels == 1 { 0 } else { c }))
                });
            if !scale_ok {
                return Ok(None);
            }
            Some(codes.iter().copied().collect::<Vec<i32>>())
        }
    };
    let w_codes = const_codes(q, n, 1, &w, true)?;
    // The reduction length K and the largest centred magnitudes bound the accumulator.
    let k_len = match &node.op {
        Op::Conv(_) => wshape.iter().skip(1).product(),
        Op::Gemm(gm) => wshape[if gm.trans_b { 1 } else { 0 }],
        Op::MatMul(m) if wshape.len() >= 2 => wshape[wshape.len() - if m.trans_b { 1 } else { 2 }],
        _ => wshape.first().copied().unwrap_or(1),
    };
    let span = |p: &QParams| {
        p.zero
            .iter()
            .map(|&z| (p.qmax - z).max(z - p.qmin) as i64)
            .max()
            .unwrap_or(0)
    };
    // The bias starts the sum: a bias code near the i32 limit (a degenerate activation
    // scale makes `s_x·s_w` tiny) would wrap in the kernel's i32 accumulator.
    let bmax = bias
        .iter()
        .flatten()
        .map(|&b| (b as i64).abs())
        .max()
        .unwrap_or(0);
    if !arith::acc_fits_i32(k_len, span(&x), span(&w), bmax) {
        // Larger reductions would need an overflow analysis kernels do not have yet.
        return Ok(None);
    }
    let oshape = &g.ty(node.outputs()[0])?.shape;
    let channel_axis = match &node.op {
        Op::Conv(c) if !c.layout.is_nhwc() => 1,
        _ => oshape.len() - 1,
    };
    let residual = node.input(RESIDUAL).is_some();
    let slope = node.input(SLOPE).is_some();
    let clamp_only = out.is_some()
        && !residual
        && matches!(
            act,
            Activation::None | Activation::Relu | Activation::Clip { .. }
        );
    let epilogue = match out {
        Some(out) if clamp_only => {
            let (mut lo, mut hi) = (out.qmin, out.qmax);
            match act {
                Activation::Relu => lo = lo.max(out.z()),
                Activation::Clip { min, max } => {
                    lo = lo.max(out.quantize(min, 0));
                    hi = hi.min(out.quantize(max, 0));
                }
                _ => {}
            }
            let m = (0..channels)
                .map(|c| arith::multiplier(x.s(), ws(c), out.s()))
                .collect();
            Epilogue::Requant { out, m, lo, hi }
        }
        Some(out)
            if !residual
                && !slope
                && q.platform.activation_tables
                && let Some(table) = act_table::build(&act, &out) =>
        {
            let m: Vec<f32> = (0..channels)
                .map(|c| arith::multiplier(x.s(), ws(c), table.step))
                .collect();
            if m.iter().all(|v| v.is_finite() && *v > 0.0) {
                Epilogue::Table { out, m, table }
            } else {
                float_epilogue(Some(out), &x, &ws, channels, act, residual, slope)
            }
        }
        out => float_epilogue(out, &x, &ws, channels, act, residual, slope),
    };
    Ok(Some(ComputePlan {
        x,
        w,
        w_codes,
        bias,
        channel_axis,
        epilogue,
    }))
}

/// The f32 epilogue (see [`Epilogue::Float`]).
fn float_epilogue(
    out: Option<QParams>,
    x: &QParams,
    ws: &dyn Fn(usize) -> f32,
    channels: usize,
    act: Activation,
    residual: bool,
    slope: bool,
) -> Epilogue {
    Epilogue::Float {
        out,
        sc: (0..channels)
            .map(|c| arith::product_scale(x.s(), ws(c)))
            .collect(),
        act,
        residual,
        slope,
    }
}
