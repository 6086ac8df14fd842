//! `graph.merge-linear`: two adjacent linear ops with nothing between them become one
//! (`W = W1·W2`, `b = b1·W2 + b2` in row-vector orientation), when the first one's result
//! is read by the second alone.
//!
//! Pairs handled:
//! - gemm → gemm and matmul → matmul with constant 2-D weights (the second op must not
//!   transpose its A, which is the first one's result; the merged op keeps the first's
//!   `transA` and stores its weights untransposed); biases must be vectors along the
//!   last dim (a per-row gemm C is left alone: exporters do not emit it);
//! - a 1×1 conv (group 1, stride 1, no pads) → a conv of any kernel (group 1, stride and
//!   dilation free): `W[m, c, k…] = Σ_j W2[m, j, k…]·W1[j, c]`,
//!   `b[m] = b2[m] + Σ_{j,k} W2[m, j, k]·b1[j]`.
//!
//! The second conv may pad only when the first has no bias: padding inserts zeros into the
//! *intermediate* tensor, whereas the merged conv pads `X`, and the first conv maps those
//! zeros to `b1`, not to zero. Without a bias the 1×1 conv maps zero to zero, so padding
//! commutes with it and the merge is exact.
//!
//! The first op must have nothing fused after its bias (an activation or residual makes it
//! non-linear or reads another tensor); the second keeps its epilogue, which applies to the
//! merged accumulator unchanged. The merge is skipped when the merged op costs more FLOPs
//! than the two (`K·N2 > K·N1 + N1·N2`: merging a narrow bottleneck such as 64 → 8 → 64
//! would replace two thin products by one 64×64 product). Weights fold in f64 and round once to the weights' type.

use super::fuse_util::{
    add_const, bare_compute, const_tensor, drop_dead_const, single_private_use,
};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::{AutoPad, Gemm, MatMul, Op};
use kiln_core::{DType, Pass, Result, Tensor, TensorType};

pub struct MergeLinear;

impl Pass<Graph> for MergeLinear {
    fn name(&self) -> &'static str {
        "graph.merge-linear"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        super::fuse_util::sweep(g, try_merge)
    }
}

/// The merged weights and bias, ready to be put into the second op.
struct Merged {
    w: Tensor,
    b: Option<Tensor>,
}

fn tensor(dtype: DType, shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_f64_fn(&TensorType::new(dtype, shape.to_vec()), |i| v[i])
}

/// A constant float tensor's values and shape.
fn const_f64(g: &Graph, v: Value) -> Option<(Vec<f64>, Vec<usize>, DType)> {
    let t = const_tensor(g, v)?;
    t.dtype()
        .is_float()
        .then(|| (t.to_f64_vec(), t.shape().to_vec(), t.dtype()))
}

/// A bias that is a vector along the last dim (rank ≤ 2 with every other dim 1) of length
/// `n`, or a splat, as `n` values; `None` for no bias, `Some(None)` when it does not fit.
fn row_bias(g: &Graph, b: Option<Value>, n: usize) -> Option<Option<Vec<f64>>> {
    let Some(b) = b else { return Some(None) };
    let (v, shape, _) = const_f64(g, b)?;
    if shape.len() > 2 || shape.iter().rev().skip(1).any(|&d| d != 1) {
        return None;
    }
    match v.len() {
        1 => Some(Some(vec![v[0]; n])),
        l if l == n => Some(Some(v)),
        _ => None,
    }
}

/// A 2-D constant weight as a row-major `[rows, cols]` matrix, transposed when `trans`.
fn matrix(g: &Graph, w: Value, trans: bool) -> Option<(Vec<f64>, usize, usize, DType)> {
    let (v, shape, dt) = const_f64(g, w)?;
    let [r, c] = shape[..] else { return None };
    if !trans {
        return Some((v, r, c, dt));
    }
    let mut t = vec![0.0; v.len()];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = v[i * c + j];
        }
    }
    Some((t, c, r, dt))
}

/// `W1·W2` for `[k, n1]·[n1, n2]` and `b1·W2·s1 + b2·s2`, skipped when it costs more.
fn compose_dense(
    (w1, k, n1): (&[f64], usize, usize),
    (w2, n2): (&[f64], usize),
    scale: f64,
    b1: Option<Vec<f64>>,
    b2: Option<Vec<f64>>,
    dtype: DType,
) -> Option<Merged> {
    if k * n2 > k * n1 + n1 * n2 {
        return None;
    }
    let mut w = vec![0.0; k * n2];
    for i in 0..k {
        for j in 0..n1 {
            let a = w1[i * n1 + j] * scale;
            for o in 0..n2 {
                w[i * n2 + o] += a * w2[j * n2 + o];
            }
        }
    }
    let b = match (&b1, &b2) {
        (None, None) => None,
        _ => {
            let mut b = b2.unwrap_or_else(|| vec![0.0; n2]);
            if let Some(b1) = b1 {
                for j in 0..n1 {
                    for o in 0..n2 {
                        b[o] += b1[j] * w2[j * n2 + o];
                    }
                }
            }
            Some(tensor(dtype, &[n2], &b))
        }
    };
    Some(Merged {
        w: tensor(dtype, &[k, n2], &w),
        b,
    })
}

fn merge_gemm(g: &Graph, first: NodeId, second: NodeId) -> Option<(Merged, Gemm)> {
    let (Op::Gemm(g1), Op::Gemm(g2)) = (&g.node(first).op, &g.node(second).op) else {
        return None;
    };
    if g2.trans_a {
        return None;
    }
    let (n1, n2) = (g.node(first), g.node(second));
    let (w1, k, c1, dt) = matrix(g, n1.input(1)?, g1.trans_b)?;
    let (w2, r2, c2, dt2) = matrix(g, n2.input(1)?, g2.trans_b)?;
    if r2 != c1 || dt != dt2 {
        return None;
    }
    let (a1, a2) = (g1.alpha as f64, g2.alpha as f64);
    // Y2 = a2·(a1·A·W1 + β1·C1)·W2 + β2·C2: fold the scales into the weights and biases.
    let b1 = row_bias(g, n1.input(2), c1)?.map(|b| scaled(b, g1.beta as f64 * a2));
    let b2 = row_bias(g, n2.input(2), c2)?.map(|b| scaled(b, g2.beta as f64));
    let m = compose_dense((&w1, k, c1), (&w2, c2), a1 * a2, b1, b2, dt)?;
    let op = Gemm {
        trans_a: g1.trans_a,
        act: g2.act,
        ..Gemm::default()
    };
    Some((m, op))
}

fn scaled(mut v: Vec<f64>, s: f64) -> Vec<f64> {
    v.iter_mut().for_each(|x| *x *= s);
    v
}

fn merge_matmul(g: &Graph, first: NodeId, second: NodeId) -> Option<(Merged, MatMul)> {
    let (Op::MatMul(m1), Op::MatMul(m2)) = (&g.node(first).op, &g.node(second).op) else {
        return None;
    };
    if m2.trans_a {
        return None;
    }
    let (n1, n2) = (g.node(first), g.node(second));
    let (w1, k, c1, dt) = matrix(g, n1.input(1)?, m1.trans_b)?;
    let (w2, r2, c2, dt2) = matrix(g, n2.input(1)?, m2.trans_b)?;
    // A 1-D A makes the first result 1-D, which matmul treats the same as a row: fine.
    if r2 != c1 || dt != dt2 {
        return None;
    }
    let b1 = row_bias(g, n1.input(2), c1)?;
    let b2 = row_bias(g, n2.input(2), c2)?;
    let op = MatMul {
        act: m2.act,
        trans_a: m1.trans_a,
        trans_b: false,
    };
    Some((compose_dense((&w1, k, c1), (&w2, c2), 1.0, b1, b2, dt)?, op))
}

fn all_zero(v: &[i64]) -> bool {
    v.iter().all(|&p| p == 0)
}

fn merge_conv(g: &Graph, first: NodeId, second: NodeId) -> Option<Merged> {
    let (Op::Conv(c1), Op::Conv(c2)) = (&g.node(first).op, &g.node(second).op) else {
        return None;
    };
    // layout: only channels-first pairs, so both read and write one layout.
    if c1.layout.is_nhwc() || c2.layout.is_nhwc() {
        return None;
    }
    let (n1, n2) = (g.node(first), g.node(second));
    let (w1, s1, dt) = const_f64(g, n1.input(1)?)?;
    let (w2, s2, dt2) = const_f64(g, n2.input(1)?)?;
    if dt != dt2 || c1.group != 1 || c2.group != 1 || s1.len() != s2.len() || s1.len() < 3 {
        return None;
    }
    let win1 = &c1.window;
    let pointwise = s1[2..].iter().all(|&k| k == 1)
        && win1.strides.iter().all(|&s| s == 1)
        && all_zero(&win1.pads)
        && matches!(win1.auto_pad, AutoPad::NotSet | AutoPad::Valid);
    let (mid, cin) = (s1[0], s1[1]);
    if !pointwise || s2[1] != mid {
        return None;
    }
    let b1 = match n1.input(2) {
        Some(b) => Some(const_f64(g, b)?.0),
        None => None,
    };
    let win2 = &c2.window;
    let padded =
        !all_zero(&win2.pads) || !matches!(win2.auto_pad, AutoPad::NotSet | AutoPad::Valid);
    if padded && b1.is_some() {
        return None;
    }
    let b2 = match n2.input(2) {
        Some(b) => Some(const_f64(g, b)?.0),
        None => None,
    };
    let m = s2[0];
    if b1.as_ref().is_some_and(|b| b.len() != mid) || b2.as_ref().is_some_and(|b| b.len() != m) {
        return None;
    }
    let kp: usize = s2[2..].iter().product();
    // MACs: the 1×1 conv runs on every input pixel (mid·cin each), the second and the
    // merged conv on every output pixel (m·mid·kp and m·cin·kp each). A strided second
    // conv makes the merge cheaper still: the 1×1 work at skipped pixels disappears.
    let x = g.value(n1.input(0)?).ty.as_ref()?;
    let y = g.value(n2.outputs()[0]).ty.as_ref()?;
    let in_px: usize = x.shape.get(2..)?.iter().product();
    let out_px: usize = y.shape.get(2..)?.iter().product();
    if m * cin * kp * out_px > mid * cin * in_px + m * mid * kp * out_px {
        return None;
    }
    let mut w = vec![0.0; m * cin * kp];
    for o in 0..m {
        for j in 0..mid {
            for c in 0..cin {
                let a = w1[j * cin + c];
                for p in 0..kp {
                    w[(o * cin + c) * kp + p] += w2[(o * mid + j) * kp + p] * a;
                }
            }
        }
    }
    let b = match (&b1, &b2) {
        (None, None) => None,
        _ => {
            let mut b = b2.unwrap_or_else(|| vec![0.0; m]);
            if let Some(b1) = &b1 {
                for (o, bo) in b.iter_mut().enumerate() {
                    for (j, bj) in b1.iter().enumerate() {
                        let row = &w2[(o * mid + j) * kp..(o * mid + j + 1) * kp];
                        *bo += bj * row.iter().sum::<f64>();
                    }
                }
            }
            Some(tensor(dt, &[m], &b))
        }
    };
    let mut shape = s2.clone();
    shape[1] = cin;
    Some(Merged {
        w: tensor(dt, &shape, &w),
        b,
    })
}

fn try_merge(g: &mut Graph, second: NodeId) -> bool {
    let Some(mid) = g.node(second).input(0) else {
        return false;
    };
    let Some(first) = g.producer(mid) else {
        return false;
    };
    if !bare_compute(g, first) || !single_private_use(g, mid) {
        return false;
    }
    // The first's result must be the second's data operand only, not its weights.
    if g.node(second).inputs()[1..].contains(&Some(mid)) {
        return false;
    }
    let (merged, op) = match (&g.node(first).op, &g.node(second).op) {
        (Op::Gemm(_), Op::Gemm(_)) => match merge_gemm(g, first, second) {
            Some((m, op)) => (m, Some(Op::Gemm(op))),
            None => return false,
        },
        (Op::MatMul(_), Op::MatMul(_)) => match merge_matmul(g, first, second) {
            Some((m, op)) => (m, Some(Op::MatMul(op))),
            None => return false,
        },
        (Op::Conv(_), Op::Conv(_)) => match merge_conv(g, first, second) {
            Some(m) => (m, None),
            None => return false,
        },
        _ => return false,
    };
    let Some(x) = g.node(first).input(0) else {
        return false;
    };
    let (i1, i2) = (g.node(first).inputs(), g.node(second).inputs());
    let old: Vec<Value> = i1
        .iter()
        .skip(1)
        .chain(i2.iter().skip(1).take(2))
        .flatten()
        .copied()
        .collect();
    let base = g.value(g.node(second).outputs()[0]).name.clone();
    let w = add_const(g, format!("{base}_w"), merged.w);
    let b = merged.b.map(|b| add_const(g, format!("{base}_b"), b));
    g.set_input(second, 0, Some(x));
    g.set_input(second, 1, Some(w));
    g.set_input(second, 2, b);
    if let Some(op) = op {
        *g.op_mut(second) = op;
    }
    g.remove_node(first);
    for v in old {
        drop_dead_const(g, v);
    }
    true
}
