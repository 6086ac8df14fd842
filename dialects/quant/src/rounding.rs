//! The seven rounding policies (PPQ's set). They differ only on ties (`x.5`), except `Up`.
//!
//! Every policy is computed from `f = floor(x)` and `d = x - f`. For finite f32, `x - f` is
//! exact (both share an exponent range and `f` is `x` with low bits cleared), so the tie
//! test `d == 0.5` is exact; `(x + 0.5).floor()` would not be (`0.49999997 + 0.5` rounds to
//! 1.0 in f32). Int8 kernels must use these functions or their exact equivalents.

use kiln_core::{Result, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// Ties to even (IEEE default, ONNX QuantizeLinear): 2.5→2, 3.5→4, −2.5→−2.
    HalfEven,
    /// Ties toward +inf, `floor(x + 0.5)`: 2.5→3, −2.5→−2.
    HalfUp,
    /// Ties toward −inf, `ceil(x − 0.5)`: 2.5→2, −2.5→−3.
    HalfDown,
    /// Ties toward zero, `sign(x)·ceil(|x| − 0.5)`: 2.5→2, −2.5→−2.
    HalfTowardZero,
    /// Ties away from zero, `sign(x)·floor(|x| + 0.5)`: 2.5→3, −2.5→−3.
    HalfAwayFromZero,
    /// PPQ's round-to-nearest-int; ties away from zero (numerically the same function as
    /// `HalfAwayFromZero`, kept as its own policy because schemes name it).
    ToNearestInt,
    /// `ceil(x)`.
    Up,
}

pub const ALL: [Rounding; 7] = [
    Rounding::HalfEven,
    Rounding::HalfUp,
    Rounding::HalfDown,
    Rounding::HalfTowardZero,
    Rounding::HalfAwayFromZero,
    Rounding::ToNearestInt,
    Rounding::Up,
];

impl Rounding {
    pub fn name(self) -> &'static str {
        match self {
            Rounding::HalfEven => "half_even",
            Rounding::HalfUp => "half_up",
            Rounding::HalfDown => "half_down",
            Rounding::HalfTowardZero => "half_toward_zero",
            Rounding::HalfAwayFromZero => "half_away_from_zero",
            Rounding::ToNearestInt => "to_nearest_int",
            Rounding::Up => "up",
        }
    }

    pub fn from_name(s: &str) -> Result<Rounding> {
        match ALL.iter().find(|r| r.name() == s) {
            Some(r) => Ok(*r),
            None => bail!(Input, "unknown rounding policy '{s}'"),
        }
    }

    /// Rounds `x` to an integral f32 (NaN stays NaN, infinities stay).
    pub fn round(self, x: f32) -> f32 {
        if !x.is_finite() {
            return x;
        }
        if self == Rounding::Up {
            return x.ceil();
        }
        let f = floor(x);
        let d = x - f;
        if d > 0.5 {
            return f + 1.0;
        }
        if d < 0.5 {
            return f;
        }
        // An exact tie: f + 0.5.
        match self {
            Rounding::HalfEven => {
                if f % 2.0 == 0.0 {
                    f
                } else {
                    f + 1.0
                }
            }
            Rounding::HalfUp => f + 1.0,
            Rounding::HalfDown => f,
            Rounding::HalfTowardZero => {
                if x > 0.0 {
                    f
                } else {
                    f + 1.0
                }
            }
            Rounding::HalfAwayFromZero | Rounding::ToNearestInt => {
                if x > 0.0 {
                    f + 1.0
                } else {
                    f
                }
            }
            Rounding::Up => unreachable!("handled above"),
        }
    }
}

/// `x.floor()` for finite `x`, without the libm call that `f32::floor` becomes on a
/// baseline x86-64 build (it was a fifth of the int8 simulator path's time): every f32 of
/// magnitude at least 2^23 is already an integer; below that, truncation through i32 is
/// exact and one step down fixes negative non-integers; ±0 are returned as they are.
pub(crate) fn floor(x: f32) -> f32 {
    if x.abs() >= 8_388_608.0 || x == 0.0 {
        return x;
    }
    let t = x as i32 as f32;
    if t > x { t - 1.0 } else { t }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inline floor equals `f32::floor` bit for bit: around zero, near every power of
    /// two up to 2^24 and beyond, in both signs, and on a sweep of bit patterns.
    #[test]
    fn floor_matches_libm() {
        let mut xs = vec![
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            8_388_607.5,
            -8_388_607.5,
        ];
        for e in 0..32 {
            let p = 2f32.powi(e);
            for x in [p, p.next_down(), p.next_up(), p + 0.5, p - 0.5] {
                xs.extend([x, -x]);
            }
        }
        xs.extend((0..1u32 << 20).map(|i| f32::from_bits(i.wrapping_mul(4099))));
        for x in xs.into_iter().filter(|x| x.is_finite()) {
            assert_eq!(floor(x).to_bits(), x.floor().to_bits(), "floor({x:e})");
        }
    }

    /// Inputs, then one row of expected results per policy in [`ALL`] order.
    const XS: [f32; 10] = [2.5, -2.5, 1.5, -0.5, 0.5, 3.5, 2.4, -2.6, -1.5, 0.0];
    const TABLE: [[f32; 10]; 7] = [
        // half_even
        [2.0, -2.0, 2.0, 0.0, 0.0, 4.0, 2.0, -3.0, -2.0, 0.0],
        // half_up
        [3.0, -2.0, 2.0, 0.0, 1.0, 4.0, 2.0, -3.0, -1.0, 0.0],
        // half_down
        [2.0, -3.0, 1.0, -1.0, 0.0, 3.0, 2.0, -3.0, -2.0, 0.0],
        // half_toward_zero
        [2.0, -2.0, 1.0, 0.0, 0.0, 3.0, 2.0, -3.0, -1.0, 0.0],
        // half_away_from_zero
        [3.0, -3.0, 2.0, -1.0, 1.0, 4.0, 2.0, -3.0, -2.0, 0.0],
        // to_nearest_int
        [3.0, -3.0, 2.0, -1.0, 1.0, 4.0, 2.0, -3.0, -2.0, 0.0],
        // up
        [3.0, -2.0, 2.0, -0.0, 1.0, 4.0, 3.0, -2.0, -1.0, 0.0],
    ];

    #[test]
    fn seed_examples_per_policy() {
        for (r, row) in ALL.iter().zip(TABLE) {
            for (x, want) in XS.iter().zip(row) {
                assert_eq!(r.round(*x), want, "{} of {x}", r.name());
            }
        }
    }

    #[test]
    fn near_ties_are_not_ties() {
        // 0.49999997 + 0.5 rounds to 1.0 in f32; the exact tie test must not be fooled.
        let x = 0.49999997f32;
        for r in ALL {
            if r != Rounding::Up {
                assert_eq!(r.round(x), 0.0, "{}", r.name());
            }
        }
        assert_eq!(Rounding::HalfEven.round(-0.50000006), -1.0);
    }

    #[test]
    fn names_round_trip() {
        for r in ALL {
            assert_eq!(Rounding::from_name(r.name()).unwrap(), r);
        }
        assert!(Rounding::from_name("banker").is_err());
    }
}
