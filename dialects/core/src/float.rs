//! IEEE 754-2019 `minimum` and `maximum` on f32: what Cranelift's `fmin`/`fmax` compute,
//! so the loop dialect's evaluator and the int8 contract (kiln-quant's `arith`) agree with
//! compiled kernels. Unlike Rust's `f32::min`/`max`, a NaN operand wins and −0 < +0.

/// The smaller of `a` and `b`; NaN if either is NaN; −0 below +0.
pub fn minimum(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a == b {
        if a.is_sign_negative() { a } else { b }
    } else if a < b {
        a
    } else {
        b
    }
}

/// The larger of `a` and `b`; NaN if either is NaN; +0 above −0.
pub fn maximum(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a == b {
        if a.is_sign_positive() { a } else { b }
    } else if a > b {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_wins_and_zeros_are_ordered() {
        assert!(maximum(f32::NAN, 1.0).is_nan() && minimum(1.0, f32::NAN).is_nan());
        assert!(maximum(-0.0, 0.0).is_sign_positive() && maximum(0.0, -0.0).is_sign_positive());
        assert!(minimum(-0.0, 0.0).is_sign_negative() && minimum(0.0, -0.0).is_sign_negative());
        assert_eq!((maximum(-2.0, 3.0), minimum(-2.0, 3.0)), (3.0, -2.0));
    }
}
