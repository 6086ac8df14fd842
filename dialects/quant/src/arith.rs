//! kiln's int8 arithmetic: THE CONTRACT the int8 kernels must match bit for bit.
//!
//! Every function here is plain scalar code over integers and f32, in an order the kernels
//! can mirror exactly. Nothing relies on fused multiply-add: Rust never contracts `a*b + c`,
//! and kernels must not either (or must prove the result equal).
//!
//! **Quantise** (any TQC): `q = clamp(R(x / s) + z, qmin, qmax)` where `x / s` is one f32
//! division, `R` the TQC's rounding ([`crate::Rounding::round`]) and the add and clamp are
//! in i64 (so `R` results beyond i32 saturate instead of wrapping). **Dequantise**:
//! `x̂ = f32(q − z) · s` (the subtraction in i32, one f32 multiply).
//!
//! **Compute ops** (Conv, Gemm with alpha = beta = 1, MatMul) on kiln-x86:
//! 1. `acc[c] = Σ (q_x − z_x)·(q_w[c] − z_w[c]) + q_b[c]` exactly, in i32 (the
//!    simulator computes it in f64, which is exact for these integers: every partial sum
//!    is below 2^53; [`acc_fits_i32`] is the bound check).
//! 2. the requantisation multiplier, once per channel: `M[c] = f32(f64(s_x)·f64(s_w[c]) /
//!    f64(s_y))` (f64 product and quotient, one rounding to f32);
//! 3. `t = f32(acc) · M[c]` (i32→f32 conversion rounds to nearest even above 2^24, then
//!    one f32 multiply), `q_y = clamp(R(t) + z_y, lo, hi)`;
//! 4. a fused Relu is `lo = max(qmin, z_y)`, a fused Clip{a, b} is `lo = max(qmin,
//!    quantise(a))`, `hi = min(qmax, quantise(b))`: exact, because quantisation is monotone.
//!    On a platform with `activation_tables` (kiln-x86), a fused Sigmoid, Swish, Tanh or
//!    Gelu without residual or slope whose result is quantised is a **table epilogue**
//!    ([`crate::act_table`]): `k = R_even(f32(acc)·m[c])` with `m[c] = f32(f64(s_x)·
//!    f64(s_w[c])/f64(step))`, `q_y = table[clamp(k − base, 0, n − 1)]`, where entry `i`
//!    is `quantise(act(f32(base + i)·step))`.
//!    Every other fused activation, a residual operand or a PRelu slope use the **f32
//!    epilogue**: `v = f32(acc) · f32(f64(s_x)·f64(s_w[c]))` (same f32 conversions),
//!    `v = v + x̂_residual` (f32 add), `v = act(v)` in f32 exactly as [`activation`]
//!    writes it (operation by operation; `exp` is [`exp`], `tanh` and `erf` libm's f32
//!    functions), then
//!    `q_y = quantise(v)`.
//!
//! 5. a result the platform leaves in f32 (kiln-x86's graph outputs: their TQC is FP32)
//!    is the f32 epilogue's `v` itself, not quantised.
//!
//! The bias is quantised with scale `s_b[c] = f32(f64(s_x)·f64(s_w[c]))`, offset 0, 32-bit
//! range: `q_b = clamp(R(b / s_b[c]), −(2^31−1), 2^31−1)`.
//!
//! **Add/Sub** with both inputs quantised: `t = f32(q_a − z_a)·M_a ± f32(q_b − z_b)·M_b`
//! (two f32 multiplies, then one f32 add or subtract), `M_i = f32(f64(s_i)/f64(s_y))`,
//! `q_y = clamp(R(t) + z_y)`. **Mul**: `t = f32((q_a − z_a)·(q_b − z_b)) · M`, with the
//! product in i32 and `M = f32(f64(s_a)·f64(s_b)/f64(s_y))`.
//!
//! **BatchNormalization** left standing (DenseNet's pre-activation BN, no conv to fold
//! into): on a quantised operand it is a per-channel table over the input's codes,
//! `table[c][i] = quantise_y(batch_norm(dequantise_x(qmin_x + i)))` with [`batch_norm`]'s
//! f32 arithmetic; unquantised, [`batch_norm`] itself.
//!
//! **Global average pool**: `sum = Σ (q − z_x)` in i32 over the spatial extent `n`,
//! `t = f32(sum) · M`, `M = f32(f64(s_x)/(f64(s_y)·n))`, `q_y = clamp(R(t) + z_y)`.
//!
//! **Lookup tables** (element-wise unary ops):
//! `table[i] = quantise_y(f(dequantise_x(qmin_x + i)))` for every input code, with `f` the
//! graph dialect's own fp32 op; then `q_y = table[q_x − qmin_x]`. That equals
//! fake-quantised fp32 by construction.
//!
//! **Passive ops** (MaxPool, Reshape, Transpose, Slice, Pad, Concat of aligned inputs, …)
//! move codes unchanged; the simulator runs them in f32 on dequantised values, and an
//! integer path recovers codes from on-grid values with [`recover`] (round to nearest),
//! which is exact: `round((q − z)·s / s) = q − z` for |q − z| < 2^22 (tested below). With
//! rounding `Up`, re-quantising on-grid data is *not* the identity, which is why recovery
//! never uses the TQC's rounding.

use crate::rounding::Rounding;
use kiln_core::float::{maximum, minimum};
use kiln_graph::ops::Activation;
use kiln_graph::ops::activation::HARD_SWISH_ALPHA;

/// The fused activation of the f32 epilogue, in f32, one operation at a time in this
/// order (kernels mirror it; no contraction into fused multiply-adds). `slope` is PRelu's.
pub fn activation(act: &Activation, v: f32, slope: f32) -> f32 {
    match *act {
        Activation::None => v,
        Activation::PRelu => {
            if v < 0.0 {
                v * slope
            } else {
                v
            }
        }
        // IEEE maximum/minimum, as the kernels' `fmax`/`fmin`: NaN stays NaN. An f32
        // residual (kiln-x86 does not round it) can bring one in.
        Activation::Relu => maximum(v, 0.0),
        Activation::Clip { min, max } => minimum(maximum(v, min), max),
        Activation::LeakyRelu { alpha } => {
            if v >= 0.0 {
                v
            } else {
                alpha * v
            }
        }
        Activation::HardSigmoid { alpha, beta } => (alpha * v + beta).clamp(0.0, 1.0),
        Activation::HardSwish => v * (v * HARD_SWISH_ALPHA + 0.5).clamp(0.0, 1.0),
        Activation::Sigmoid => 1.0 / (1.0 + exp(-v)),
        Activation::Swish => v / (1.0 + exp(-v)),
        Activation::Tanh => v.tanh(),
        Activation::Gelu { tanh: false } => {
            0.5 * v * (1.0 + libm::erff(v / std::f32::consts::SQRT_2))
        }
        Activation::Gelu { tanh: true } => {
            let c = (2.0 / std::f64::consts::PI).sqrt() as f32;
            0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())
        }
    }
}

/// Cody–Waite range reduction and Cephes' single-precision polynomial for `e^x`.
/// Kernels build the same operations from these constants (kiln-loop's `act::exp`).
pub mod exp_poly {
    /// Inputs are clamped to `[LO, HI]`, where `e^x` is finite and normal.
    pub const HI: f32 = 88.376_26;
    pub const LO: f32 = -87.336_55;
    /// `ln 2 = LN2_HI + LN2_LO`; `LN2_HI` = 355/512 has 9 significant bits, so `n·LN2_HI`
    /// is exact.
    pub const LN2_HI: f32 = 355.0 / 512.0;
    pub const LN2_LO: f32 = -2.121_944_4e-4;
    /// Horner coefficients of `p(r)`, highest degree first: `e^r ≈ 1 + r + r²·p(r)`.
    pub const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ];
}

/// `e^x` as kiln's kernels compute it, in both precisions: a few ulp from the true value,
/// vectorised in every kernel, and the same on every host. Separate multiplies and adds
/// (no fused multiply-add, which a host without FMA could not reproduce); the clamps are
/// `x < HI ? x : HI` and `x > LO ? x : LO` (a NaN becomes `HI`), the form of a vector
/// compare and select.
pub fn exp(x: f32) -> f32 {
    use exp_poly::*;
    let x = if x < HI { x } else { HI };
    let x = if x > LO { x } else { LO };
    // n = ⌊x·log2(e) + ½⌋, r = x − n·ln 2.
    let n = crate::rounding::floor(x * std::f32::consts::LOG2_E + 0.5);
    let r = x - n * LN2_HI;
    let r = r - n * LN2_LO;
    let mut p = P[0];
    for k in &P[1..] {
        p = p * r + k;
    }
    let p = p * (r * r) + (r + 1.0);
    // 2^n from its exponent bits: n is in [−126, 128] after the clamps.
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Per-tensor or per-channel quantisation parameters in the form kernels use.
#[derive(Debug, Clone, PartialEq)]
pub struct QParams {
    pub scale: Vec<f32>,
    pub zero: Vec<i32>,
    pub qmin: i32,
    pub qmax: i32,
    pub rounding: Rounding,
    /// The channel axis when per-channel.
    pub axis: Option<usize>,
}

impl QParams {
    pub fn per_tensor(s: f32, z: i32, qmin: i32, qmax: i32, rounding: Rounding) -> Self {
        QParams {
            scale: vec![s],
            zero: vec![z],
            qmin,
            qmax,
            rounding,
            axis: None,
        }
    }

    pub fn from_tqc(t: &crate::Tqc) -> Option<Self> {
        if !t.has_params() {
            return None;
        }
        Some(QParams {
            scale: t.scale.clone(),
            zero: t.offset.clone(),
            qmin: t.quant_min,
            qmax: t.quant_max,
            rounding: t.rounding,
            axis: t.axis,
        })
    }

    pub fn s(&self) -> f32 {
        self.scale[0]
    }

    pub fn z(&self) -> i32 {
        self.zero[0]
    }

    /// `f32(1/s)`: the multiplier a compute op's epilogue quantises with.
    pub fn recip(&self) -> f32 {
        1.0 / self.s()
    }

    /// How a compute op's f32 epilogue (activation, residual) quantises its result: by
    /// multiplying with [`QParams::recip`] where [`quantize`] divides. The two differ only
    /// where `x/s` lies within an ulp of a rounding boundary, and a multiply is a fraction
    /// of a division's cost in the kernels' register epilogue (a division per output
    /// vector was a tenth of PP-OCRv4 rec's 1×1 convs). Per tensor.
    pub fn quantize_epilogue(&self, x: f32) -> i32 {
        quantize_recip(
            x,
            self.recip(),
            self.z(),
            self.qmin,
            self.qmax,
            self.rounding,
        )
    }

    /// Quantises one value with channel `c`'s parameters.
    pub fn quantize(&self, x: f32, c: usize) -> i32 {
        quantize(
            x,
            self.scale[c],
            self.zero[c],
            self.qmin,
            self.qmax,
            self.rounding,
        )
    }
}

/// `clamp(R(x / s) + z, qmin, qmax)`; NaN quantises to `z` (it has no code).
pub fn quantize(x: f32, s: f32, z: i32, qmin: i32, qmax: i32, r: Rounding) -> i32 {
    code_of(x / s, z, qmin, qmax, r)
}

/// `clamp(R(x·inv) + z, qmin, qmax)` with `inv = f32(1/s)` ([`QParams::recip`]): how a
/// compute op's f32 epilogue quantises its result (see [`QParams::quantize_epilogue`]).
pub fn quantize_recip(x: f32, inv: f32, z: i32, qmin: i32, qmax: i32, r: Rounding) -> i32 {
    code_of(x * inv, z, qmin, qmax, r)
}

/// `clamp(R(t) + z, qmin, qmax)` of `t` in code units; NaN gives `z`.
fn code_of(t: f32, z: i32, qmin: i32, qmax: i32, r: Rounding) -> i32 {
    let t = r.round(t);
    if t.is_nan() {
        return z.clamp(qmin, qmax);
    }
    // `as i64` saturates ±inf and huge values; the add saturates too.
    (t as i64)
        .saturating_add(z as i64)
        .clamp(qmin as i64, qmax as i64) as i32
}

/// Recovers the code of a value already on the grid `(q − z)·s`: round to nearest (ties
/// cannot occur), whatever the TQC's rounding — `Up` (ceil) would turn the
/// `q − z + ε` that f32 division can give into `q − z + 1`.
pub fn recover(x: f32, s: f32, z: i32, qmin: i32, qmax: i32) -> i32 {
    quantize(x, s, z, qmin, qmax, Rounding::HalfEven)
}

/// `f32(q − z) · s`.
pub fn dequantize(q: i32, s: f32, z: i32) -> f32 {
    (q - z) as f32 * s
}

/// `f32(f64(a)·f64(b)/f64(c))`.
pub fn multiplier(a: f32, b: f32, c: f32) -> f32 {
    (a as f64 * b as f64 / c as f64) as f32
}

/// `f32(f64(a)·f64(b))`: the bias and f32-epilogue scale.
pub fn product_scale(a: f32, b: f32) -> f32 {
    (a as f64 * b as f64) as f32
}

/// Step 3 of the compute-op contract: `clamp(R(f32(acc)·m) + z, lo, hi)`.
pub fn requantize(acc: i32, m: f32, z: i32, lo: i32, hi: i32, r: Rounding) -> i32 {
    let t = r.round(acc as f32 * m);
    (t as i64)
        .saturating_add(z as i64)
        .clamp(lo as i64, hi as i64) as i32
}

/// Add/Sub: `clamp(R(f32(a−za)·ma ± f32(b−zb)·mb) + z)`.
#[allow(clippy::too_many_arguments)]
pub fn add(a: i32, za: i32, ma: f32, b: i32, zb: i32, mb: f32, sub: bool, out: &QParams) -> i32 {
    let (x, y) = ((a - za) as f32 * ma, (b - zb) as f32 * mb);
    let t = out.rounding.round(if sub { x - y } else { x + y });
    (t as i64)
        .saturating_add(out.z() as i64)
        .clamp(out.qmin as i64, out.qmax as i64) as i32
}

/// Mul: `clamp(R(f32((a−za)·(b−zb))·m) + z)`.
pub fn mul(a: i32, za: i32, b: i32, zb: i32, m: f32, out: &QParams) -> i32 {
    requantize(
        (a - za) * (b - zb),
        m,
        out.z(),
        out.qmin,
        out.qmax,
        out.rounding,
    )
}

/// EltwiseSum in a quantised unit: `Σ cᵢ·xᵢ` in f32, operand by operand, each product
/// rounded and then added (no fused multiply-add, so every host computes the same bits).
/// The graph op itself sums in f64; this is the form an int8 program's kernel can compute.
pub fn eltwise_sum(xs: impl Iterator<Item = f32>, coeffs: &[f32]) -> f32 {
    let mut terms = xs.zip(coeffs).map(|(x, &c)| x * c);
    let first = terms.next().unwrap_or(0.0);
    terms.fold(first, |acc, t| acc + t)
}

/// Softmax in a quantised unit, over lanes of `len` elements `inner` apart (`x` holds
/// whole `[outer, len, inner]` blocks), in f32: `m` = the lane's maximum (IEEE `maximum`:
/// NaN wins, +0 above −0, so any order gives it), `e = exp(x − m)` with [`exp`], `s` =
/// the sum of the `e`, and `y = e · f32(1 / s)`. The graph op computes in f64; this is
/// the form a kernel computes, in kiln's fp32 softmax kernel's order of additions:
/// * a strided lane (`inner > 1`) adds one element after another from +0;
/// * a contiguous lane (`inner = 1`) adds its first `⌊len/16⌋·16` elements into sixteen
///   partial sums (sum `j` takes the elements `j mod 16`), combined `(p₀ + p₁) + (p₂ +
///   p₃)` as four groups of four; then each further group of four element by element
///   into those four; then the four in order; then the remaining elements one by one.
pub fn softmax(x: &[f32], len: usize, inner: usize) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    if len == 0 || inner == 0 {
        return y;
    }
    let block = len * inner;
    for (xb, yb) in x.chunks(block).zip(y.chunks_mut(block)) {
        for i in 0..inner {
            let lane: Vec<f32> = (0..len).map(|j| xb[j * inner + i]).collect();
            let m = lane
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, kiln_core::float::maximum);
            let e: Vec<f32> = lane.iter().map(|&v| exp(v - m)).collect();
            let s = if inner == 1 {
                lane_sum(&e)
            } else {
                e.iter().fold(0.0, |a, &v| a + v)
            };
            let inv = 1.0 / s;
            for (j, &v) in e.iter().enumerate() {
                yb[j * inner + i] = v * inv;
            }
        }
    }
    y
}

/// LayerNormalization in a quantised unit, over rows of `cols` elements, in f32 as kiln's
/// fp32 kernel computes it: `k = f32(1 / cols)`, `mean = Σx · k` and `var = Σ(x − mean)² ·
/// k` with [`softmax`]'s contiguous-lane order of additions, `inv = 1 / sqrt(var + eps)`,
/// then `y = ((x − mean) · inv) · scale + bias` (separate multiplies and adds). `scale`
/// and `bias` hold one value per element of `x` (broadcast by the caller). The graph op
/// computes in f64.
pub fn layer_norm(
    x: &[f32],
    cols: usize,
    eps: f32,
    scale: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    if cols == 0 {
        return y;
    }
    let k = 1.0 / cols as f32;
    for (r, (xr, yr)) in x.chunks(cols).zip(y.chunks_mut(cols)).enumerate() {
        let mean = lane_sum(xr) * k;
        let sq: Vec<f32> = xr.iter().map(|&v| (v - mean) * (v - mean)).collect();
        let var = lane_sum(&sq) * k;
        let inv = 1.0 / (var + eps).sqrt();
        for (j, (o, &v)) in yr.iter_mut().zip(xr).enumerate() {
            let i = r * cols + j;
            let t = (v - mean) * inv * scale[i];
            *o = match bias {
                Some(b) => t + b[i],
                None => t,
            };
        }
    }
    y
}

/// BatchNormalization in inference form, per element of channel `c`:
/// `(x − mean[c]) · k[c] + B[c]`, one f32 subtract, multiply and add in that order (no
/// fused multiply-add, whose presence depends on the host), with `k` the graph op's
/// f32 multipliers ([`kiln_graph::ops::BatchNormalization::multipliers`]). `channel(i)`
/// names element `i`'s channel, so either layout is one call.
pub fn batch_norm(
    x: &[f32],
    channel: impl Fn(usize) -> usize,
    mean: &[f32],
    k: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = channel(i);
            (v - mean[c]) * k[c] + bias[c]
        })
        .collect()
}

/// The sum of a contiguous lane in the order [`softmax`] documents.
fn lane_sum(e: &[f32]) -> f32 {
    let n16 = e.len() / 16 * 16;
    let mut acc: Option<[f32; 4]> = None;
    if n16 > 0 {
        let mut p = [[0.0f32; 4]; 4];
        for chunk in e[..n16].chunks(16) {
            for (j, pj) in p.iter_mut().enumerate() {
                for (l, v) in pj.iter_mut().enumerate() {
                    *v += chunk[4 * j + l];
                }
            }
        }
        acc = Some(std::array::from_fn(|l| {
            (p[0][l] + p[1][l]) + (p[2][l] + p[3][l])
        }));
    }
    let mut k = n16;
    while k + 4 <= e.len() {
        let a = acc.get_or_insert([0.0; 4]);
        for l in 0..4 {
            a[l] += e[k + l];
        }
        k += 4;
    }
    let mut s = acc.map_or(0.0, |a| ((a[0] + a[1]) + a[2]) + a[3]);
    for &v in &e[k..] {
        s += v;
    }
    s
}

/// Whether an accumulation of `k` products of `|x| ≤ xmax`, `|w| ≤ wmax` plus a bias of
/// magnitude `bmax` always fits i32 (the compile-time check kernels rely on).
pub fn acc_fits_i32(k: usize, xmax: i64, wmax: i64, bmax: i64) -> bool {
    (k as i128) * (xmax as i128) * (wmax as i128) + bmax as i128 <= i32::MAX as i128
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rounding::ALL;

    #[test]
    fn quantize_clamps_saturates_and_rounds() {
        let r = Rounding::HalfEven;
        assert_eq!(quantize(0.25, 0.1, 128, 0, 255, r), 130, "2.5 ties to even");
        assert_eq!(quantize(1e30, 0.1, 128, 0, 255, r), 255);
        assert_eq!(quantize(-1e30, 0.1, 128, 0, 255, r), 0);
        assert_eq!(quantize(f32::NAN, 0.1, 128, 0, 255, r), 128);
        assert_eq!(
            quantize(0.25, 0.1, 0, -127, 127, Rounding::HalfAwayFromZero),
            3
        );
        assert_eq!(
            quantize(-0.25, 0.1, 0, -127, 127, Rounding::HalfAwayFromZero),
            -3
        );
    }

    #[test]
    fn requantising_grid_values_is_the_identity() {
        // What passive ops rely on: dequantise then quantise gives back the code.
        for &s in &[1e-6f32, 0.0123, 0.1, 3.7, 1234.5] {
            for z in [0, 3, 128, 255] {
                for q in 0..=255 {
                    let x = dequantize(q, s, z);
                    assert_eq!(recover(x, s, z, 0, 255), q, "s={s} z={z} q={q}");
                    for r in ALL.into_iter().filter(|&r| r != Rounding::Up) {
                        assert_eq!(
                            quantize(x, s, z, 0, 255, r),
                            q,
                            "s={s} z={z} q={q} {}",
                            r.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn quantisation_noise_matches_theory() {
        // N(0,1) data, symmetric scale max|x|/128: the noise is uniform on [-s/2, s/2]
        // (variance s²/12) while nothing clips, so noise/signal = s²/12 / E[x²].
        let mut rng = kiln_core::Rng::new(42);
        let n = 200_000;
        let xs: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let maxabs = xs.iter().fold(0f32, |m, x| m.max(x.abs()));
        let s = maxabs / 128.0;
        let (mut sig, mut noise) = (0f64, 0f64);
        for &x in &xs {
            let q = quantize(x, s, 0, -128, 127, Rounding::HalfEven);
            let e = (dequantize(q, s, 0) - x) as f64;
            sig += (x as f64).powi(2);
            noise += e * e;
        }
        let measured = noise / sig;
        let expected = (s as f64).powi(2) / 12.0 / (sig / xs.len() as f64);
        let rel = (measured - expected).abs() / expected;
        assert!(
            rel < 0.03,
            "noise/signal {measured:.3e} vs expected {expected:.3e}"
        );
        // And the textbook figure: about 6.02·8 dB minus the crest-factor penalty.
        let db = -10.0 * measured.log10();
        assert!((30.0..45.0).contains(&db), "SNR {db:.1} dB");
    }

    #[test]
    fn requantize_and_elementwise_contract() {
        let out = QParams::per_tensor(0.5, 10, 0, 255, Rounding::HalfEven);
        assert_eq!(
            requantize(5, 0.5, 10, 0, 255, Rounding::HalfEven),
            12,
            "2.5 → 2"
        );
        assert_eq!(
            requantize(7, 0.5, 10, 0, 255, Rounding::HalfEven),
            14,
            "3.5 → 4"
        );
        assert_eq!(
            requantize(-1000, 0.5, 10, 10, 255, Rounding::HalfEven),
            10,
            "relu clamp"
        );
        // (3-1)*0.5 + (4-2)*0.25 = 1.5 → 2 (even) + 10
        assert_eq!(add(3, 1, 0.5, 4, 2, 0.25, false, &out), 12);
        assert_eq!(add(3, 1, 0.5, 4, 2, 0.25, true, &out), 10);
        assert_eq!(mul(3, 1, 4, 2, 0.25, &out), 11);
        assert!(acc_fits_i32(3 * 3 * 512, 255, 127, 1 << 20));
        assert!(!acc_fits_i32(1 << 20, 255, 127, 0));
    }

    /// Seeded values in `[-a, a)`.
    fn values(n: usize, a: f32, seed: u64) -> Vec<f32> {
        let mut rng = kiln_core::Rng::new(seed);
        (0..n)
            .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a)
            .collect()
    }

    #[test]
    fn softmax_contract_is_close_to_the_f64_softmax() {
        // Contiguous lanes of every remainder mod 16 and mod 4, and a strided layout.
        for (len, inner) in [(1, 1), (3, 1), (16, 1), (37, 1), (6625, 1), (5, 3), (20, 7)] {
            let x = values(2 * len * inner, 8.0, len as u64);
            let y = softmax(&x, len, inner);
            for (b, (xb, yb)) in x.chunks(len * inner).zip(y.chunks(len * inner)).enumerate() {
                for i in 0..inner {
                    let lane: Vec<f64> = (0..len).map(|j| xb[j * inner + i] as f64).collect();
                    let m = lane.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let s: f64 = lane.iter().map(|v| (v - m).exp()).sum();
                    for (j, v) in lane.iter().enumerate() {
                        let want = (v - m).exp() / s;
                        let got = yb[j * inner + i] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * want + 1e-30,
                            "len {len} inner {inner} block {b}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn layer_norm_contract_is_close_to_the_f64_layer_norm() {
        for cols in [1, 4, 15, 16, 33, 384] {
            let x = values(3 * cols, 3.0, cols as u64);
            let scale = values(3 * cols, 2.0, 7);
            let bias = values(3 * cols, 1.0, 8);
            let y = layer_norm(&x, cols, 1e-5, &scale, Some(&bias));
            for (r, row) in x.chunks(cols).enumerate() {
                let n = cols as f64;
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                let inv = 1.0 / (var + 1e-5).sqrt();
                for (j, &v) in row.iter().enumerate() {
                    let i = r * cols + j;
                    let want = (v as f64 - mean) * inv * scale[i] as f64 + bias[i] as f64;
                    assert!(
                        (y[i] as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "cols {cols} row {r} col {j}: {} vs {want}",
                        y[i]
                    );
                }
            }
        }
    }
}
