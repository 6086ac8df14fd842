//! Observers: from the values a TQC sees during calibration to its clip range `[lo, hi]`.
//!
//! Min-max needs one pass. The histogram observers (percentile, KL, MSE) need the range
//! first, so calibration runs twice over the samples: pass one feeds [`Observer::first`],
//! pass two [`Observer::second`] with histogram bounds fixed from pass one. Everything is
//! deterministic: no sampling, bins are fixed by the data range.

use kiln_core::{Result, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObserverKind {
    MinMax,
    /// Clips at the given percentile of the values (both tails), default 99.99 %.
    Percentile,
    /// TensorRT's entropy calibration: the threshold minimising KL(P‖Q) on a 2048-bin
    /// histogram of |x|, quantised to the levels the target grid gives the clipped range
    /// (TensorRT's 128 for signed data on a symmetric grid; see [`Observer::range`]).
    Kl,
    /// Grid search over clip ranges minimising the expected squared quantisation error.
    Mse,
}

pub const PERCENTILE: f64 = 0.9999;
pub const BINS: usize = 2048;

impl ObserverKind {
    pub fn name(self) -> &'static str {
        match self {
            ObserverKind::MinMax => "minmax",
            ObserverKind::Percentile => "percentile",
            ObserverKind::Kl => "kl",
            ObserverKind::Mse => "mse",
        }
    }

    pub fn from_name(s: &str) -> Result<ObserverKind> {
        Ok(match s {
            "minmax" => ObserverKind::MinMax,
            "percentile" => ObserverKind::Percentile,
            "kl" => ObserverKind::Kl,
            "mse" => ObserverKind::Mse,
            _ => bail!(
                Input,
                "unknown observer '{s}' (minmax, percentile, kl, mse)"
            ),
        })
    }

    pub fn needs_histogram(self) -> bool {
        self != ObserverKind::MinMax
    }
}

/// Running statistics of one TQC.
#[derive(Debug, Clone)]
pub struct Observer {
    pub kind: ObserverKind,
    pub min: f32,
    pub max: f32,
    /// Histogram over [min, max] (percentile, MSE) or over [0, max|x|] (KL).
    hist: Vec<u64>,
    /// Finite values seen in pass one.
    count: u64,
}

impl Observer {
    pub fn new(kind: ObserverKind) -> Self {
        Observer {
            kind,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            hist: Vec::new(),
            count: 0,
        }
    }

    /// Pass one: the range. NaNs are skipped (a NaN activation has no quantisation).
    pub fn first(&mut self, xs: &[f32]) {
        for &x in xs {
            if x.is_finite() {
                self.count += 1;
                self.min = self.min.min(x);
                self.max = self.max.max(x);
            }
        }
    }

    fn hist_bounds(&self) -> (f32, f32) {
        if self.kind == ObserverKind::Kl {
            (0.0, self.min.abs().max(self.max.abs()))
        } else {
            (self.min, self.max)
        }
    }

    /// Pass two: the histogram.
    pub fn second(&mut self, xs: &[f32]) {
        if self.hist.is_empty() {
            self.hist = vec![0; BINS];
        }
        let (lo, hi) = self.hist_bounds();
        let width = (hi - lo) as f64 / BINS as f64;
        for &x in xs {
            if !x.is_finite() {
                continue;
            }
            let v = if self.kind == ObserverKind::Kl {
                x.abs()
            } else {
                x
            };
            let b = if width > 0.0 {
                (((v - lo) as f64 / width) as usize).min(BINS - 1)
            } else {
                0
            };
            self.hist[b] += 1;
        }
    }

    /// The clip range. `levels` is the number of quantisation steps of the target (255 for
    /// 8 bits) and `symmetric` whether its grid is centred on zero; MSE and KL use them.
    pub fn range(&self, levels: u32, symmetric: bool) -> Result<(f32, f32)> {
        if self.min > self.max {
            bail!(Eval, "the observer saw no finite value");
        }
        // A histogram with fewer values than bins (a classifier's logits over a few
        // samples) says nothing about tails: such tensors keep their min-max range.
        if self.kind == ObserverKind::MinMax || self.min == self.max || self.count < BINS as u64 {
            return Ok((self.min, self.max));
        }
        if self.hist.is_empty() {
            bail!(Eval, "histogram observer used without its second pass");
        }
        let (lo, hi) = self.hist_bounds();
        let width = (hi - lo) as f64 / BINS as f64;
        Ok(match self.kind {
            ObserverKind::MinMax => unreachable!("returned above"),
            ObserverKind::Percentile => {
                let total: u64 = self.hist.iter().sum();
                let tail = ((1.0 - PERCENTILE) * total as f64).floor() as u64;
                let (mut acc, mut b_lo) = (0u64, 0usize);
                for (i, &h) in self.hist.iter().enumerate() {
                    acc += h;
                    if acc > tail {
                        b_lo = i;
                        break;
                    }
                }
                let (mut acc, mut b_hi) = (0u64, BINS - 1);
                for (i, &h) in self.hist.iter().enumerate().rev() {
                    acc += h;
                    if acc > tail {
                        b_hi = i;
                        break;
                    }
                }
                let l = (lo as f64 + b_lo as f64 * width) as f32;
                let h = (lo as f64 + (b_hi + 1) as f64 * width) as f32;
                (l.max(self.min), h.min(self.max))
            }
            ObserverKind::Kl => {
                // The levels the grid spends on |x| ≤ t, the clip under test. TensorRT's
                // 128 are the positive half of s8: a symmetric grid over signed data.
                // Never-negative data gets every level (256 for u8). An asymmetric grid
                // spans [−min(small, t), t], where `small` is the lesser of the two sides
                // (SiLU's −0.28 against its positive range): nearly every level lands on
                // the side being clipped, and counting only half of them picks a clip far
                // too tight (about 10 dB lost on PP-OCRv4 rec and YOLOv8n).
                let small = (-self.min).min(self.max).max(0.0) as f64;
                let target = |bins: usize| -> usize {
                    let l = if self.min >= 0.0 {
                        (levels + 1) as f64
                    } else if symmetric {
                        levels.div_ceil(2) as f64
                    } else {
                        let t = bins as f64 * width;
                        (levels + 1) as f64 * t / (t + small.min(t))
                    };
                    (l.round() as usize).clamp(2, BINS)
                };
                // Never-negative data (after a Relu) has a spike of exact zeros in bin 0;
                // zeros quantise exactly, and the spike would make every wide candidate
                // look bad (merging spreads it over its level), so the search ignores it.
                let mut h = self.hist.clone();
                if self.min >= 0.0 {
                    h[0] = 0;
                }
                let t = (kl_threshold(&h, target) as f64 * width) as f32;
                (self.min.max(-t), self.max.min(t))
            }
            ObserverKind::Mse => mse_range(&self.hist, lo, hi, levels),
        })
    }
}

/// TensorRT's entropy calibration (as in its published reference, MXNet's
/// `_get_optimal_threshold`), with `levels(i)` target levels for a clip at bin `i`
/// (TensorRT: always 128). For each candidate `i` in levels(i)..=2048 bins: P is the first `i`
/// bins with the outliers folded into the last; Q is the first `i` bins *without* the
/// outliers, merged into `levels` levels and spread back evenly over the bins where P is
/// non-empty. Both are normalised; a bin where P has mass and Q none (only the folded
/// outlier bin can be one) counts Q as [`KL_EPS`]. Returns the bin count `i` of the smallest KL(P‖Q).
fn kl_threshold(hist: &[u64], levels: impl Fn(usize) -> usize) -> usize {
    let n = hist.len();
    let mut best = (f64::INFINITY, n);
    for i in 2..=n {
        let levels = levels(i);
        if levels > i {
            continue;
        }
        let mut p: Vec<f64> = hist[..i].iter().map(|&h| h as f64).collect();
        let outliers: u64 = hist[i..].iter().sum();
        p[i - 1] += outliers as f64;
        let mut q = vec![0f64; i];
        for l in 0..levels {
            let (a, b) = (l * i / levels, (l + 1) * i / levels);
            let sum: f64 = hist[a..b].iter().map(|&h| h as f64).sum();
            let nonzero = p[a..b].iter().filter(|&&h| h > 0.0).count();
            if nonzero > 0 {
                for j in a..b {
                    if p[j] > 0.0 {
                        q[j] = sum / nonzero as f64;
                    }
                }
            }
        }
        let (pt, qt): (f64, f64) = (p.iter().sum(), q.iter().sum());
        if pt <= 0.0 || qt <= 0.0 {
            continue;
        }
        // Q is zero where P is not only in the last bin (the folded outliers): a bin
        // with no quantisation level gets KL_EPS of probability instead of infinity.
        let kl: f64 = p
            .iter()
            .zip(&q)
            .filter(|(pj, _)| **pj > 0.0)
            .map(|(pj, qj)| {
                let (pj, qj) = (pj / pt, (qj / qt).max(KL_EPS * f64::from(*qj == 0.0)));
                pj * (pj / qj).ln()
            })
            .sum();
        if kl < best.0 {
            best = (kl, i);
        }
    }
    best.1
}

/// The smoothing constant of the KL search.
const KL_EPS: f64 = 1e-4;

/// Expected squared error of quantising the histogram with clip range `[a, b]` and
/// `levels` steps (bin centres stand for their values).
fn mse_of(hist: &[u64], lo: f32, width: f64, a: f64, b: f64, levels: u32) -> f64 {
    let s = ((b - a) / levels as f64).max(1e-12);
    let mut err = 0.0;
    for (i, &h) in hist.iter().enumerate() {
        if h == 0 {
            continue;
        }
        let x = lo as f64 + (i as f64 + 0.5) * width;
        let q = (((x.clamp(a, b) - a) / s).round()) * s + a;
        err += h as f64 * (x - q) * (x - q);
    }
    err
}

/// MSE grid search: clip ranges `[lo·t, hi·t]` for t = 1.00, 0.99, … 0.30 (each end scaled
/// toward zero; a range that excludes zero would be widened by the quantiser anyway).
fn mse_range(hist: &[u64], lo: f32, hi: f32, levels: u32) -> (f32, f32) {
    let width = (hi - lo) as f64 / hist.len() as f64;
    let (l0, h0) = ((lo as f64).min(0.0), (hi as f64).max(0.0));
    let mut best = (f64::INFINITY, 1.0);
    for step in 0..=70 {
        let t = 1.0 - step as f64 * 0.01;
        let e = mse_of(hist, lo, width, l0 * t, h0 * t, levels);
        if e < best.0 {
            best = (e, t);
        }
    }
    (
        ((l0 * best.1) as f32).max(lo),
        ((h0 * best.1) as f32).min(hi),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: ObserverKind, xs: &[f32]) -> (f32, f32) {
        let mut o = Observer::new(kind);
        o.first(xs);
        if kind.needs_histogram() {
            o.second(xs);
        }
        o.range(255, false).unwrap()
    }

    /// A deterministic heavy-tailed sample: mostly in [-1, 1], a few outliers at ±50.
    fn data() -> Vec<f32> {
        let mut rng = kiln_core::Rng::new(7);
        let mut v: Vec<f32> = (0..100_000).map(|_| rng.uniform(-1.0, 1.0)).collect();
        v[10] = 50.0;
        v[20] = -50.0;
        v
    }

    #[test]
    fn minmax_is_the_range() {
        assert_eq!(run(ObserverKind::MinMax, &data()), (-50.0, 50.0));
    }

    #[test]
    fn histogram_observers_clip_outliers() {
        let d = data();
        for k in [
            ObserverKind::Percentile,
            ObserverKind::Kl,
            ObserverKind::Mse,
        ] {
            let (lo, hi) = run(k, &d);
            assert!(
                lo < -0.5 && hi > 0.5,
                "{}: [{lo}, {hi}] keeps the bulk",
                k.name()
            );
            assert!(
                lo > -50.0 && hi < 50.0,
                "{}: [{lo}, {hi}] clips the outliers",
                k.name()
            );
        }
        let (lo, hi) = run(ObserverKind::Percentile, &d);
        assert!(
            lo < -0.95 && hi > 0.95 && hi < 1.2,
            "percentile: [{lo}, {hi}]"
        );
    }

    /// u8 asymmetric quantisation's squared error of `xs` clipped to `[lo, hi]`.
    fn u8_mse(xs: &[f32], (lo, hi): (f32, f32)) -> f64 {
        let (lo, hi) = (lo.min(0.0) as f64, hi.max(0.0) as f64);
        let s = (hi - lo) / 255.0;
        let z = (-lo / s).round();
        xs.iter()
            .map(|&x| {
                let q = ((x as f64 / s).round() + z).clamp(0.0, 255.0);
                let e = (q - z) * s - x as f64;
                e * e
            })
            .sum::<f64>()
            / xs.len() as f64
    }

    #[test]
    fn kl_counts_the_levels_an_asymmetric_grid_gives_the_clipped_side() {
        // SiLU of a wide normal: a small negative side (≥ −0.28), a long positive tail.
        let mut rng = kiln_core::Rng::new(11);
        let xs: Vec<f32> = (0..200_000)
            .map(|_| {
                let n = rng.normal() * 3.0;
                n / (1.0 + (-n).exp())
            })
            .collect();
        let mut o = Observer::new(ObserverKind::Kl);
        o.first(&xs);
        o.second(&xs);
        let (asym, sym) = (o.range(255, false).unwrap(), o.range(255, true).unwrap());
        assert!(asym.1 > sym.1, "asymmetric {asym:?} vs symmetric {sym:?}");
        assert!(
            u8_mse(&xs, asym) < u8_mse(&xs, sym),
            "on the u8 grid the asymmetric choice {asym:?} must beat {sym:?}"
        );
    }

    #[test]
    fn constant_data_and_empty() {
        assert_eq!(run(ObserverKind::Kl, &[2.0; 10]), (2.0, 2.0));
        assert!(
            Observer::new(ObserverKind::MinMax)
                .range(255, false)
                .is_err()
        );
    }
}
