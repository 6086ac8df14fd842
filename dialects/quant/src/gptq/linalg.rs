//! The dense linear algebra of GPTQ, blocked so that nearly all of its `O(K³)` work is
//! matrix products (`general_mat_mul`, matrixmultiply's packed FMA kernels) rather than
//! dependent scalar dot products: a 3×3 conv over 512 channels has `K = 4608`, and the
//! unblocked factorisation of its `H` took tens of seconds.
//!
//! The blocked forms compute the same factors as the textbook loops; only the order of
//! the floating-point sums differs.

use ndarray::{Array2, ArrayView2, ArrayViewMut2, linalg::general_mat_mul, s};

/// Block size: large enough that the products dominate, small enough that the scalar
/// work on diagonal blocks (`O(K·NB²)`) stays minor.
const NB: usize = 64;

/// Dampening added to `H`'s diagonal, as a fraction of its mean: keeps the inverse stable
/// when features are (nearly) collinear.
pub const DAMP: f64 = 0.01;

/// The lower Cholesky factor of a symmetric positive definite matrix (only its lower
/// triangle is read), or `None` when a pivot is not positive and finite.
pub fn cholesky(mut a: Array2<f64>) -> Option<Array2<f64>> {
    let n = a.nrows();
    let mut k = 0;
    while k < n {
        let b = NB.min(n - k);
        chol_block(a.slice_mut(s![k..k + b, k..k + b]))?;
        if k + b < n {
            let l11 = a.slice(s![k..k + b, k..k + b]).to_owned();
            // L21 = A21·L11⁻ᵀ: each row solves x·L11ᵀ = a by forward substitution.
            for mut row in a.slice_mut(s![k + b.., k..k + b]).rows_mut() {
                for j in 0..b {
                    let mut v = row[j];
                    for t in 0..j {
                        v -= row[t] * l11[[j, t]];
                    }
                    row[j] = v / l11[[j, j]];
                }
            }
            // A22 −= L21·L21ᵀ.
            let l21 = a.slice(s![k + b.., k..k + b]).to_owned();
            general_mat_mul(
                -1.0,
                &l21,
                &l21.t(),
                1.0,
                &mut a.slice_mut(s![k + b.., k + b..]),
            );
        }
        k += b;
    }
    for i in 0..n {
        a.slice_mut(s![i, i + 1..]).fill(0.0);
    }
    Some(a)
}

/// Unblocked Cholesky of a diagonal block, in place (lower triangle).
fn chol_block(mut a: ArrayViewMut2<f64>) -> Option<()> {
    let n = a.nrows();
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[[i, j]];
            for t in 0..j {
                sum -= a[[i, t]] * a[[j, t]];
            }
            if i == j {
                if sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                a[[i, i]] = sum.sqrt();
            } else {
                a[[i, j]] = sum / a[[j, j]];
            }
        }
    }
    Some(())
}

/// Inverse of a lower triangular matrix, by block rows: `X_ii = L_ii⁻¹` and
/// `X[i, ..i] = −X_ii·(L[i, ..i]·X[..i, ..i])`.
pub fn lower_inverse(l: &Array2<f64>) -> Array2<f64> {
    let n = l.nrows();
    let mut x = Array2::<f64>::zeros((n, n));
    let mut i = 0;
    while i < n {
        let b = NB.min(n - i);
        let d = lower_inverse_block(l.slice(s![i..i + b, i..i + b]));
        if i > 0 {
            let mut t = Array2::<f64>::zeros((b, i));
            general_mat_mul(
                1.0,
                &l.slice(s![i..i + b, ..i]),
                &x.slice(s![..i, ..i]),
                0.0,
                &mut t,
            );
            general_mat_mul(-1.0, &d, &t, 0.0, &mut x.slice_mut(s![i..i + b, ..i]));
        }
        x.slice_mut(s![i..i + b, i..i + b]).assign(&d);
        i += b;
    }
    x
}

/// Inverse of a small lower triangular block, row by row: row `i` of `L⁻¹` is
/// `(eᵢ − Σ_{k<i} L_ik · row k) / L_ii`.
fn lower_inverse_block(l: ArrayView2<f64>) -> Array2<f64> {
    let n = l.nrows();
    let mut m = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        m[[i, i]] = 1.0;
        for k in 0..i {
            let f = l[[i, k]];
            if f != 0.0 {
                for j in 0..=k {
                    m[[i, j]] -= f * m[[k, j]];
                }
            }
        }
        let d = l[[i, i]];
        m.slice_mut(s![i, ..=i]).mapv_inplace(|v| v / d);
    }
    m
}

/// The upper triangular `U` with `H⁻¹ = Uᵀ·U`, after dampening; retried with more
/// dampening if `H` is too ill-conditioned, `None` if it never factors.
///
/// No inverse of `H` is formed: with `J` the reversal permutation, the lower Cholesky
/// factor `L` of `J·H·J` gives `H = Ũ·Ũᵀ` for the upper `Ũ = J·L·J`, so `H⁻¹ = Ũ⁻ᵀ·Ũ⁻¹`
/// and `U = Ũ⁻¹ = J·L⁻¹·J`: one factorisation and one triangular inverse.
pub fn inverse_factor(h: &Array2<f64>) -> Option<Array2<f64>> {
    let n = h.nrows();
    let mut rev = Array2::from_shape_fn((n, n), |(i, j)| h[[n - 1 - i, n - 1 - j]]);
    // A feature calibration never saw non-zero cannot matter there: rounded to nearest, it
    // compensates nothing and nothing compensates into it.
    for i in 0..n {
        if rev[[i, i]] == 0.0 {
            rev[[i, i]] = 1.0;
        }
    }
    let mean = rev.diag().sum() / n.max(1) as f64;
    for attempt in 0..4 {
        let mut hd = rev.clone();
        let damp = DAMP * 10f64.powi(attempt) * mean;
        hd.diag_mut().mapv_inplace(|v| v + damp);
        let Some(l) = cholesky(hd) else { continue };
        let li = lower_inverse(&l);
        return Some(Array2::from_shape_fn((n, n), |(i, j)| {
            li[[n - 1 - i, n - 1 - j]]
        }));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::Rng;

    /// A random symmetric positive definite `n×n` matrix with correlated features:
    /// `E[x·xᵀ]` of vectors with a shared offset, like post-ReLU activations.
    pub fn correlated_h(n: usize, rng: &mut Rng) -> Array2<f64> {
        let xs = Array2::from_shape_fn((4 * n, n), |_| rng.next_f32() as f64);
        let common: Vec<f64> = (0..4 * n).map(|_| rng.next_f32() as f64).collect();
        let x = Array2::from_shape_fn((4 * n, n), |(r, c)| common[r] + 0.3 * xs[[r, c]]);
        x.t().dot(&x) / (4 * n) as f64
    }

    fn max_abs(a: &Array2<f64>) -> f64 {
        a.iter().fold(0.0, |m, v| m.max(v.abs()))
    }

    #[test]
    fn blocked_cholesky_and_inverse_span_several_blocks() {
        let mut rng = Rng::new(5);
        // Sizes below, at and across block edges.
        for n in [1, 7, NB, NB + 1, 2 * NB + 13] {
            let h = correlated_h(n, &mut rng) + Array2::<f64>::eye(n) * 0.01;
            let l = cholesky(h.clone()).expect("positive definite");
            let back = l.dot(&l.t());
            assert!(
                max_abs(&(&back - &h)) < 1e-9 * max_abs(&h),
                "n={n}: L·Lᵀ = H"
            );
            for i in 0..n {
                assert!(l.slice(s![i, i + 1..]).iter().all(|&v| v == 0.0), "lower");
            }
            let li = lower_inverse(&l);
            let eye = l.dot(&li);
            assert!(
                max_abs(&(&eye - &Array2::<f64>::eye(n))) < 1e-8,
                "n={n}: L·L⁻¹ = I"
            );
        }
        // Not positive definite.
        let mut bad = Array2::<f64>::eye(NB + 3);
        bad[[NB + 1, NB + 1]] = -1.0;
        assert!(cholesky(bad).is_none());
    }

    #[test]
    fn factor_inverts_the_dampened_matrix() {
        let mut rng = Rng::new(7);
        for n in [12, NB + 9] {
            let h = correlated_h(n, &mut rng);
            let u = inverse_factor(&h).unwrap();
            let mean = h.diag().sum() / n as f64;
            let hd = &h + &(Array2::<f64>::eye(n) * (DAMP * mean));
            // Uᵀ·U·H_d = I.
            let eye = u.t().dot(&u).dot(&hd);
            assert!(max_abs(&(&eye - &Array2::<f64>::eye(n))) < 1e-6, "n={n}");
            for i in 0..n {
                for j in 0..i {
                    assert_eq!(u[[i, j]], 0.0, "U is upper triangular");
                }
            }
        }
    }
}
