//! Error-compensating weight rounding (GPTQ, after Optimal Brain Quantization).
//!
//! Rounding each weight to its nearest grid point minimises the weights' own error, but
//! what the network feels is the error of the layer's *output*, `(W − Q)·x`. With `H =
//! E[x·xᵀ]` over the calibration data, that error is `(w − q)ᵀ H (w − q)` per output
//! channel, and it can be made much smaller than nearest rounding gives: round one input
//! feature at a time and let the features not rounded yet absorb its error,
//! `w_j −= (w_i − q_i) · U_ij / U_ii` with `U` the upper Cholesky factor of `H⁻¹`. Inputs
//! that move together (a conv's neighbouring taps, correlated channels) cancel each
//! other's rounding. The grid itself is unchanged: the weight TQC's scales, offsets, bounds
//! and rounding policy stay as parameter quantisation set them, and only which grid point
//! each weight lands on changes. The result is written back as on-grid float weights, so
//! baking, the simulator and the int8 kernels take it as they take any other weight.
//!
//! Weights of 8 bits lose most of their output error this way; on the example models the
//! simulated SNR rises by 1–3 dB (see `quant.gptq`).

use crate::arith;
use crate::ir::{QuantGraph, Site, TqcId, const_data};
use crate::tqc::State;
use kiln_core::{DType, Result, Tensor};
use kiln_graph::interp::Interpreter;
use kiln_graph::ops::spatial::Geometry;
use kiln_graph::{Graph, NodeId, Op, Value};
use ndarray::{Array2, ArrayView2, linalg::general_mat_mul};
use std::collections::HashMap;

/// Dampening added to `H`'s diagonal, as a fraction of its mean: keeps the inverse stable
/// when features are (nearly) collinear.
const DAMP: f64 = 0.01;

/// One weight to re-round: how its data splits into independent groups of rows (output
/// channels) over shared input features, and where each (row, feature) lives in the data.
struct Layer {
    node: NodeId,
    tqc: TqcId,
    /// The weight constant.
    w: Value,
    /// The activation the weight multiplies.
    x: Value,
    kind: Kind,
    groups: usize,
    /// Rows per group.
    rows: usize,
    /// Features per row.
    k: usize,
}

enum Kind {
    /// `[M, C/g, kh, kw]` weights over 2-D im2col patches of an NCHW (or NHWC) input.
    Conv { geo: Geometry, nhwc: bool },
    /// Rows of `x` (a `[.., K]` matrix, or `[K, ..]` transposed) times a 2-D weight whose
    /// rows are the output channels (`rows_first`) or its columns are.
    Dense { trans_x: bool, rows_first: bool },
}

impl Layer {
    /// Index into the weight data of `(row r of group g, feature f)`.
    fn index(&self, g: usize, r: usize, f: usize) -> usize {
        let o = g * self.rows + r;
        match self.kind {
            Kind::Conv { .. } => o * self.k + f,
            Kind::Dense {
                rows_first: true, ..
            } => o * self.k + f,
            Kind::Dense {
                rows_first: false, ..
            } => f * self.rows + o,
        }
    }

    /// Output channel of row `r` of group `g` (the weight TQC's channel index).
    fn channel(&self, g: usize, r: usize) -> usize {
        g * self.rows + r
    }
}

/// The weights `quant.gptq` re-rounds: conv (2-D kernels), gemm and matmul weights that are
/// constants read by that op alone, whose TQC quantises (ACTIVATED, its own root).
fn layers(q: &QuantGraph) -> Vec<Layer> {
    let g = &q.graph;
    let mut out = Vec::new();
    for id in q.ids() {
        let Site::In(n, 1) = q.site(id) else { continue };
        let t = q.tqc(id);
        if t.state != State::Activated || q.root(id) != id || !t.has_params() {
            continue;
        }
        let node = g.node(n);
        let (Some(x), Some(w)) = (node.input(0), node.input(1)) else {
            continue;
        };
        let Some(wd) = const_data(g, w) else { continue };
        let Ok(xt) = g.ty(x) else { continue };
        if g.use_count(w) != 1 || wd.dtype() != DType::F32 {
            continue;
        }
        let ws = wd.shape().to_vec();
        let layer = |kind, groups: usize, rows, k| Layer {
            node: n,
            tqc: id,
            w,
            x,
            kind,
            groups,
            rows,
            k,
        };
        // `x·W` (x transposed with `trans_x`), W `[K, N]` or, with `trans_w`, `[N, K]`.
        let dense = |trans_x, trans_w| {
            let (k, n) = if trans_w {
                (ws[1], ws[0])
            } else {
                (ws[0], ws[1])
            };
            let kind = Kind::Dense {
                trans_x,
                rows_first: trans_w,
            };
            layer(kind, 1, n, k)
        };
        let found = match &node.op {
            Op::Conv(c) if ws.len() == 4 && xt.rank() == 4 => {
                let nhwc = c.layout.is_nhwc();
                let sp = if nhwc {
                    &xt.shape[1..3]
                } else {
                    &xt.shape[2..4]
                };
                Geometry::forward(&c.window, "conv", sp, Some(&ws[2..]), false)
                    .ok()
                    .filter(|_| c.group > 0 && ws[0] % c.group == 0)
                    .map(|geo| {
                        let k = ws[1] * ws[2] * ws[3];
                        layer(Kind::Conv { geo, nhwc }, c.group, ws[0] / c.group, k)
                    })
            }
            Op::Gemm(m) if ws.len() == 2 => Some(dense(m.trans_a, m.trans_b)),
            Op::MatMul(m) if ws.len() == 2 && xt.rank() >= 2 => Some(dense(m.trans_a, m.trans_b)),
            _ => None,
        };
        // Only per-channel TQCs along the output channels, or per-tensor ones.
        if let Some(l) = found
            && (t.axis.is_none() || t.scale.len() == l.groups * l.rows)
        {
            out.push(l);
        }
    }
    out
}

/// Adds `x`'s contribution to every group's `H = Σ x·xᵀ` (and counts the vectors).
fn accumulate(l: &Layer, x: &Tensor, h: &mut [Array2<f64>], count: &mut usize) -> Result<()> {
    let x = x.cast(DType::F32);
    let a = x.as_f32()?;
    let mut add = |gi: usize, cols: ArrayView2<f32>| {
        // cols: features × vectors.
        let mut part = Array2::<f32>::zeros((l.k, l.k));
        general_mat_mul(1.0, &cols, &cols.t(), 0.0, &mut part);
        h[gi].zip_mut_with(&part, |acc, &p| *acc += p as f64);
    };
    match &l.kind {
        Kind::Conv { geo, nhwc } => {
            let a = if *nhwc {
                a.view().permuted_axes(vec![0, 3, 1, 2])
            } else {
                a.view()
            };
            let a = a.as_standard_layout();
            let s = a.as_slice().expect("standard layout");
            let (n, c) = (a.shape()[0], a.shape()[1]);
            let (ip, op, cg) = (geo.input_size(), geo.output_size(), c / l.groups);
            let mut col = vec![0f32; l.k * op];
            for ni in 0..n {
                for gi in 0..l.groups {
                    let xg = &s[(ni * c + gi * cg) * ip..][..cg * ip];
                    geo.im2col(xg, cg, &mut col);
                    add(
                        gi,
                        ArrayView2::from_shape((l.k, op), &col).expect("sizes match"),
                    );
                }
                *count += op;
            }
        }
        Kind::Dense { trans_x, .. } => {
            let r = a.ndim();
            let m = if *trans_x {
                let mut v = a.view();
                v.swap_axes(r - 2, r - 1);
                v.as_standard_layout().into_owned()
            } else {
                a.as_standard_layout().into_owned()
            };
            let rows = m.len() / l.k;
            let m = m.into_shape_with_order((rows, l.k)).expect("rows of K");
            add(0, m.t());
            *count += rows;
        }
    }
    Ok(())
}

/// Collects the `H` of layers `ls` over the calibration samples (one interpreter run of
/// `float` per sample, observing the activations the layers read).
fn hessians(q: &QuantGraph, float: &Graph, ls: &[&Layer]) -> Result<Vec<Option<Vec<Array2<f64>>>>> {
    let mut h: Vec<Vec<Array2<f64>>> = ls
        .iter()
        .map(|l| vec![Array2::zeros((l.k, l.k)); l.groups])
        .collect();
    let mut counts = vec![0usize; ls.len()];
    let mut by_value: HashMap<Value, Vec<usize>> = HashMap::new();
    for (i, l) in ls.iter().enumerate() {
        by_value.entry(l.x).or_default().push(i);
    }
    let interp = Interpreter::new(float)?;
    for sample in &q.calib {
        let mut err = Ok(());
        let mut feed = |v: Value, t: &Tensor| {
            for &i in by_value.get(&v).into_iter().flatten() {
                if err.is_ok() {
                    err = accumulate(ls[i], t, &mut h[i], &mut counts[i])
                        .map_err(|e| float.node(ls[i].node).locate(e));
                }
            }
        };
        for (&v, t) in float.inputs().iter().zip(sample) {
            feed(v, t);
        }
        interp.run_observed(sample, &mut feed)?;
        err?;
    }
    Ok(h.into_iter()
        .zip(ls.iter().zip(&counts))
        .map(|(mut hs, (l, &c))| {
            // Even with fewer input vectors than features (a classifier head after global
            // pooling sees one per sample) the dampened H carries what matters most, the
            // inputs' shared mean: on the example models such heads gain on held-out inputs
            // too (resnet_style 44.1 → 49.0 dB). A layer that saw nothing is left alone.
            (c > 0 && l.k > 0).then(|| {
                hs.iter_mut().for_each(|m| m.mapv_inplace(|v| v / c as f64));
                hs
            })
        })
        .collect())
}

/// Lower Cholesky factor (row-major `n×n`) of a symmetric positive definite matrix, or
/// `None`.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s = dot(&l[i * n..i * n + j], &l[j * n..j * n + j]);
            if i == j {
                let d = a[i * n + i] - s;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// `a·b` in four interleaved partial sums: a strict left-to-right sum is one dependent
/// add per element, and the factorisation of a 4608-wide `H` spends most of its time here.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Inverse of a lower triangular matrix (row-major), row by row: row `i` of `L⁻¹` is
/// `(eᵢ − Σ_{k<i} L_ik · row k) / L_ii`.
fn lower_inverse(l: &[f64], n: usize) -> Vec<f64> {
    let mut m = vec![0f64; n * n];
    for i in 0..n {
        let (done, rest) = m.split_at_mut(i * n);
        let row = &mut rest[..n];
        row[i] = 1.0;
        for k in 0..i {
            let f = l[i * n + k];
            if f != 0.0 {
                for (r, &v) in row[..=k].iter_mut().zip(&done[k * n..k * n + k + 1]) {
                    *r -= f * v;
                }
            }
        }
        let d = l[i * n + i];
        row[..=i].iter_mut().for_each(|r| *r /= d);
    }
    m
}

/// The upper triangular `U` with `H⁻¹ = Uᵀ·U` (row-major), after dampening; retried with
/// more dampening if `H` is too ill-conditioned, `None` if it never factors.
///
/// No inverse of `H` is formed: with `J` the reversal permutation, the lower Cholesky
/// factor `L` of `J·H·J` gives `H = Ũ·Ũᵀ` for the upper `Ũ = J·L·J`, so `H⁻¹ = Ũ⁻ᵀ·Ũ⁻¹`
/// and `U = Ũ⁻¹ = J·L⁻¹·J`: one factorisation and one triangular inverse.
fn inverse_factor(h: &Array2<f64>) -> Option<Vec<f64>> {
    let n = h.nrows();
    let mut rev: Vec<f64> = (0..n * n)
        .map(|i| h[[n - 1 - i / n, n - 1 - i % n]])
        .collect();
    // A feature calibration never saw non-zero cannot matter there: rounded to nearest, it
    // compensates nothing and nothing compensates into it.
    for i in 0..n {
        if rev[i * n + i] == 0.0 {
            rev[i * n + i] = 1.0;
        }
    }
    let mean = (0..n).map(|i| rev[i * n + i]).sum::<f64>() / n as f64;
    for attempt in 0..4 {
        let mut hd = rev.clone();
        let damp = DAMP * 10f64.powi(attempt) * mean;
        (0..n).for_each(|i| hd[i * n + i] += damp);
        let Some(l) = cholesky(&hd, n) else { continue };
        let li = lower_inverse(&l, n);
        return Some(
            (0..n * n)
                .map(|i| li[(n - 1 - i / n) * n + n - 1 - i % n])
                .collect(),
        );
    }
    None
}

/// Re-rounds one layer's weights in `data` (f32, the constant's layout) against `H`.
fn round_layer(q: &QuantGraph, l: &Layer, h: &[Array2<f64>], data: &mut [f32]) {
    let t = q.tqc(l.tqc);
    for (gi, hg) in h.iter().enumerate() {
        let Some(u) = inverse_factor(hg) else {
            continue;
        };
        for r in 0..l.rows {
            let c = if t.axis.is_some() {
                l.channel(gi, r)
            } else {
                0
            };
            let (s, z) = (t.scale[c], t.offset[c]);
            let grid = |x: f32| {
                arith::dequantize(
                    arith::quantize(x, s, z, t.quant_min, t.quant_max, t.rounding),
                    s,
                    z,
                )
            };
            let mut w: Vec<f64> = (0..l.k).map(|f| data[l.index(gi, r, f)] as f64).collect();
            // A NaN or infinite weight would spread into every weight after it.
            if !w.iter().all(|v| v.is_finite()) {
                continue;
            }
            for (f, v) in round_row(&mut w, &u, grid).into_iter().enumerate() {
                data[l.index(gi, r, f)] = v;
            }
        }
    }
}

/// One row of weights rounded onto `grid` feature by feature, each rounding error spread
/// over the features after it through `U` (row-major upper factor of `H⁻¹`). `w` is used
/// as scratch.
fn round_row(w: &mut [f64], u: &[f64], grid: impl Fn(f32) -> f32) -> Vec<f32> {
    let n = w.len();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let on_grid = grid(w[i] as f32);
        out.push(on_grid);
        let e = (w[i] - on_grid as f64) / u[i * n + i];
        for (wj, &uij) in w[i + 1..].iter_mut().zip(&u[i * n + i + 1..(i + 1) * n]) {
            *wj -= e * uij;
        }
    }
    out
}

/// Widest layer re-rounded: `H` is `K×K`, factorised in `O(K³)`. Wider ones (none in the
/// models kiln is tested on; a 3×3 conv over 512 channels has K = 4608) keep nearest
/// rounding.
const MAX_K: usize = 4608;

/// Bytes of `H` collected per calibration sweep: layers are taken in batches this size.
const H_BUDGET: usize = 256 << 20;

/// Re-rounds every eligible weight of `q` against its layer's calibration inputs. Returns
/// whether any weight changed.
pub fn run(q: &mut QuantGraph) -> Result<bool> {
    let ls: Vec<Layer> = layers(q).into_iter().filter(|l| l.k <= MAX_K).collect();
    if ls.is_empty() {
        return Ok(false);
    }
    if q.calib.is_empty() {
        q.calib = crate::calib::random_samples(&q.graph, crate::calib::DEFAULT_RANDOM_SAMPLES)?;
    }
    // Every layer sees the float model's activations, whichever batch it is in.
    let float = q.graph.clone();
    let mut changed = false;
    let mut rest: &[Layer] = &ls;
    while !rest.is_empty() {
        let mut bytes = 0;
        let take = rest
            .iter()
            .take_while(|l| {
                bytes += l.groups * l.k * l.k * 8;
                bytes <= H_BUDGET
            })
            .count()
            .max(1);
        let (batch, next) = rest.split_at(take);
        rest = next;
        let batch: Vec<&Layer> = batch.iter().collect();
        let h = hessians(q, &float, &batch)?;
        for (l, hl) in batch.into_iter().zip(&h) {
            let Some(hl) = hl else { continue };
            let w = const_data(&q.graph, l.w).expect("layers() checked").clone();
            let mut data: Vec<f32> = w.as_f32()?.iter().copied().collect();
            round_layer(q, l, hl, &mut data);
            q.replace_const(l.w, Tensor::from_f64_fn(&w.ty(), |i| data[i] as f64));
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::Rng;

    /// A random symmetric positive definite `n×n` matrix with correlated features:
    /// `E[x·xᵀ]` of vectors with a shared offset, like post-ReLU activations.
    fn correlated_h(n: usize, rng: &mut Rng) -> Array2<f64> {
        let xs: Vec<Vec<f64>> = (0..4 * n)
            .map(|_| {
                let common = rng.next_f32() as f64;
                (0..n)
                    .map(|_| common + 0.3 * rng.next_f32() as f64)
                    .collect()
            })
            .collect();
        Array2::from_shape_fn((n, n), |(i, j)| {
            xs.iter().map(|x| x[i] * x[j]).sum::<f64>() / xs.len() as f64
        })
    }

    fn quad(h: &Array2<f64>, d: &[f64]) -> f64 {
        let n = d.len();
        (0..n)
            .map(|i| (0..n).map(|j| d[i] * h[[i, j]] * d[j]).sum::<f64>())
            .sum()
    }

    #[test]
    fn factor_inverts_the_dampened_matrix() {
        let mut rng = Rng::new(7);
        let n = 12;
        let h = correlated_h(n, &mut rng);
        let u = inverse_factor(&h).unwrap();
        let mean = h.diag().sum() / n as f64;
        let hd = &h + &(Array2::<f64>::eye(n) * (DAMP * mean));
        // Uᵀ·U·H_d = I.
        for i in 0..n {
            for j in 0..n {
                let v: f64 = (0..n)
                    .map(|k| (0..n).map(|m| u[m * n + i] * u[m * n + k]).sum::<f64>() * hd[[k, j]])
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-6, "({i},{j}): {v}");
            }
            for j in 0..i {
                assert_eq!(u[i * n + j], 0.0, "U is upper triangular");
            }
        }
    }

    #[test]
    fn compensated_rounding_beats_nearest_on_the_output() {
        let mut rng = Rng::new(3);
        let n = 24;
        let s = 0.05f32;
        let grid = |x: f32| (x / s).round_ties_even().clamp(-127.0, 127.0) * s;
        let (mut nearest, mut gptq) = (0.0, 0.0);
        for _ in 0..20 {
            let h = correlated_h(n, &mut rng);
            let u = inverse_factor(&h).unwrap();
            let w: Vec<f64> = (0..n).map(|_| rng.next_f32() as f64 - 0.5).collect();
            let near: Vec<f64> = w.iter().map(|&x| x - grid(x as f32) as f64).collect();
            let q = round_row(&mut w.clone(), &u, grid);
            let comp: Vec<f64> = w.iter().zip(&q).map(|(&x, &q)| x - q as f64).collect();
            assert!(q.iter().all(|&v| grid(v) == v), "every weight on the grid");
            nearest += quad(&h, &near);
            gptq += quad(&h, &comp);
        }
        assert!(
            gptq < 0.5 * nearest,
            "output error {gptq} vs nearest {nearest}"
        );
    }
}
