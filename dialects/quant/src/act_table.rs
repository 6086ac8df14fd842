//! Smooth fused activations (Sigmoid, Swish, Tanh, Gelu) as a table over a fine grid of
//! the pre-activation: the compute op's epilogue requantises its accumulator onto that grid
//! and looks the result code up ([`crate::plan::Epilogue::Table`]).
//!
//! Evaluating `exp` (or `tanh`, `erf`) in the epilogue cost YOLOv8n's SiLU convs about
//! 1.6 ns per output, as much as the dot products of a small conv; a lookup is a few
//! instructions. The table changes what is computed — the activation of the pre-activation
//! rounded to the fine grid, rather than of the exact one — so it is part of the contract,
//! chosen only where that rounding is far below the result's own: the grid's step, times
//! the activation's steepest slope, is at most a quarter of the result's scale.
//!
//! Beyond the table's ends the result codes are constant (the activation has saturated on
//! the result's grid, or settled at its limit), which is what lets the index be clamped.

use crate::arith::{self, QParams};
use kiln_graph::ops::Activation;

/// Most entries: 4096 codes as f32 are 16 KiB, beside the kernel's weights in L1.
const MAX_ENTRIES: usize = 4096;

/// The pre-activations below this are in every supported activation's monotone left tail.
const LEFT: f32 = -2.0;

/// A table epilogue's grid and entries: fine code `k` stands for `k·step`, entry `i` is the
/// result code of fine code `base + i`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActTable {
    pub step: f32,
    pub base: i32,
    pub table: Vec<i32>,
}

/// The activation's steepest slope (an upper bound), or `None` for activations tables do
/// not replace (clamps are exact already; HardSwish and the like are cheap in registers).
fn max_slope(act: &Activation) -> Option<f32> {
    match act {
        Activation::Sigmoid => Some(0.25),
        Activation::Tanh => Some(1.0),
        Activation::Swish => Some(1.1),
        Activation::Gelu { .. } => Some(1.13),
        _ => None,
    }
}

/// The table of `act` onto `out`'s grid, when one is accurate enough (see the module
/// documentation).
pub fn build(act: &Activation, out: &QParams) -> Option<ActTable> {
    let slope = max_slope(act)?;
    if out.axis.is_some() || !(out.s() > 0.0 && out.s().is_finite()) {
        return None;
    }
    let code = |x: f32| out.quantize(arith::activation(act, x, 0.0), 0);
    // The limits' codes, and where they are reached: on [0, ∞) and (−∞, LEFT] every
    // supported activation is monotone, so the codes are too and bisection finds the
    // first point of each constant tail.
    let (c_hi, c_lo) = (code(1e30), code(-1e30));
    let hi = bisect(0.0, 1e30, |x| code(x) == c_hi)?;
    let lo = if code(LEFT) == c_lo {
        LEFT
    } else {
        -bisect(-LEFT, 1e30, |x| code(-x) == c_lo)?
    };
    let mut n = 256;
    while n <= MAX_ENTRIES {
        let step = (hi - lo) / (n - 2) as f32;
        if step > 0.0 && step * slope <= out.s() / 4.0 {
            // Entry 0 at or below `lo`, the last at or above `hi`: both in their tails.
            let base = (lo / step).floor();
            let top = (hi / step).ceil();
            let count = (top - base) as usize + 1;
            if count > n || base < -(MAX_ENTRIES as f32) {
                n *= 2;
                continue;
            }
            let table = (0..count)
                .map(|i| code((base + i as f32) * step))
                .collect::<Vec<i32>>();
            if table[0] != c_lo || table[count - 1] != c_hi {
                return None;
            }
            return Some(ActTable {
                step,
                base: base as i32,
                table,
            });
        }
        n *= 2;
    }
    None
}

/// The smallest `x` in `[a, b]` (up to f32 resolution) with `tail(x)`, given that `tail`
/// holds from some point on and at `b`.
fn bisect(mut a: f32, mut b: f32, tail: impl Fn(f32) -> bool) -> Option<f32> {
    if !tail(b) {
        return None;
    }
    if tail(a) {
        return Some(a);
    }
    for _ in 0..200 {
        let m = if b > 1e6 * a.abs().max(1.0) {
            // Over a huge interval, halve the exponent first.
            (a.abs().max(1.0) * b).sqrt().copysign(b)
        } else {
            0.5 * (a + b)
        };
        if m <= a || m >= b {
            break;
        }
        if tail(m) {
            b = m;
        } else {
            a = m;
        }
    }
    Some(b)
}

/// The result code of accumulator `acc` with fine-grid multiplier `m` (`s_x·s_w[c]/step`):
/// `table[clamp(R_even(f32(acc)·m) − base, 0, n − 1)]`.
pub fn lookup(t: &ActTable, acc: i32, m: f32) -> i32 {
    let last = t.table.len() as i32 - 1;
    let i = arith::requantize(acc, m, -t.base, 0, last, crate::Rounding::HalfEven);
    t.table[i as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rounding;

    fn grid(lo: f32, hi: f32) -> QParams {
        let s = (hi - lo) / 255.0;
        let z = (-lo / s).round() as i32;
        QParams::per_tensor(s, z, 0, 255, Rounding::HalfEven)
    }

    #[test]
    fn tables_hold_the_activation_on_the_fine_grid_and_saturate_at_their_ends() {
        for (act, out) in [
            (Activation::Swish, grid(-0.28, 20.0)),
            (Activation::Swish, grid(-0.28, 3.0)),
            (Activation::Sigmoid, grid(0.0, 1.0)),
            (Activation::Tanh, grid(-1.0, 1.0)),
            (Activation::Gelu { tanh: false }, grid(-0.17, 8.0)),
            (Activation::Gelu { tanh: true }, grid(-0.17, 8.0)),
        ] {
            let t = build(&act, &out).unwrap_or_else(|| panic!("{act:?}"));
            assert!(t.table.len() <= MAX_ENTRIES);
            let code = |x: f32| out.quantize(arith::activation(&act, x, 0.0), 0);
            for (i, &c) in t.table.iter().enumerate() {
                assert_eq!(
                    c,
                    code((t.base + i as i32) as f32 * t.step),
                    "{act:?} entry {i}"
                );
            }
            // Far beyond either end the exact codes are the end entries.
            for x in [-1e6f32, -300.0, -40.0] {
                assert_eq!(code(x), t.table[0], "{act:?} at {x}");
            }
            for x in [1e6f32, 300.0, 40.0] {
                assert_eq!(code(x), *t.table.last().unwrap(), "{act:?} at {x}");
            }
            // A lookup is within one code of the exact epilogue everywhere.
            let m = 0.01 / t.step;
            for acc in (-5000..5000).step_by(7) {
                let exact = out.quantize_epilogue(arith::activation(&act, acc as f32 * 0.01, 0.0));
                let got = lookup(&t, acc, m);
                assert!(
                    (got - exact).abs() <= 1,
                    "{act:?} acc {acc}: {got} vs {exact}"
                );
            }
        }
        // Clamps and cheap activations keep their own epilogues.
        assert!(build(&Activation::Relu, &grid(0.0, 6.0)).is_none());
        assert!(build(&Activation::HardSwish, &grid(-0.4, 6.0)).is_none());
    }
}
