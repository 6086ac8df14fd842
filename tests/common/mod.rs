//! Helpers shared by the integration tests.
#![allow(dead_code)]

use kiln_core::Tensor;
use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh scratch directory under the target dir (no temp-dir crate needed).
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An example model's ONNX file.
pub fn example(name: &str) -> PathBuf {
    repo_root()
        .join("examples/models")
        .join(name)
        .join("model.onnx")
}

/// Where generated (gitignored) test data lives; `scripts/test.sh` fills it.
pub fn data_dir(name: &str) -> PathBuf {
    repo_root().join("tests").join("data").join(name)
}

/// Fails with a pointer to the script that generates the data, so a missing install step
/// is loud rather than a silently empty test.
pub fn require_dir(p: &Path) {
    assert!(
        p.is_dir(),
        "{} is missing: run `bash scripts/test.sh` (it generates the test data) instead of plain `cargo test`",
        p.display()
    );
}

/// Element-wise closeness: |a - b| <= atol + rtol·|b| (b is the reference); NaNs match
/// NaNs; non-float types must be equal. Returns the first mismatch as text.
pub fn compare(got: &Tensor, want: &Tensor, rtol: f64, atol: f64) -> Result<f64, String> {
    if got.dtype() != want.dtype() {
        return Err(format!(
            "dtype {} vs expected {}",
            got.dtype(),
            want.dtype()
        ));
    }
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?} vs expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let exact = !got.dtype().is_float();
    let mut worst: f64 = 0.0;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        if a.is_nan() && b.is_nan() || a == b {
            continue;
        }
        let err = (a - b).abs();
        if exact || err > atol + rtol * b.abs() || err.is_nan() {
            return Err(format!("element {i}: got {a}, expected {b}"));
        }
        worst = worst.max(err / b.abs().max(1e-12));
    }
    Ok(worst)
}

/// Largest relative error over elements, relative to the largest reference magnitude
/// (the "max error" figure reported for whole models).
pub fn max_rel_error(got: &Tensor, want: &Tensor) -> f64 {
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let scale = w.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    g.iter()
        .zip(&w)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs() / scale))
}
