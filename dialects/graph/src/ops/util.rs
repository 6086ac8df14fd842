//! Helpers shared by the shape rules and kernels of several op families.

use kiln_core::{Error, ErrorKind, Result, Tensor};

/// A required operand at eval time.
pub fn arg<'a>(ins: &[Option<&'a Tensor>], i: usize) -> Result<&'a Tensor> {
    ins.get(i).copied().flatten().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidModel,
            format!("missing required operand {i}"),
        )
    })
}

/// An optional operand at eval time.
pub fn opt_arg<'a>(ins: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    ins.get(i).copied().flatten()
}

/// Normalises a possibly negative axis against `rank` (ONNX allows `-rank..rank`).
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r.max(1) {
        return Err(Error::new(
            ErrorKind::Shape,
            format!("axis {axis} is out of range for rank {rank}"),
        ));
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}

/// numpy-style broadcast of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::new(
                    ErrorKind::Shape,
                    format!(
                        "shapes {a:?} and {b:?} do not broadcast (dimension {i}: {da} vs {db})"
                    ),
                ));
            }
        };
    }
    Ok(out)
}

/// Resolves convolution/pooling padding for `auto_pad` (`NOTSET`, `SAME_UPPER`, `SAME_LOWER`,
/// `VALID`) into explicit `[begin..., end...]` pads, so kernels only see explicit pads.
pub fn resolve_auto_pad(
    auto_pad: &str,
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
    pads: &[i64],
) -> Result<Vec<usize>> {
    let n = input.len();
    match auto_pad {
        "NOTSET" | "" => {
            if pads.is_empty() {
                return Ok(vec![0; 2 * n]);
            }
            if pads.len() != 2 * n || pads.iter().any(|&p| p < 0) {
                return Err(Error::new(
                    ErrorKind::Attribute,
                    format!("pads {pads:?} do not fit {n} spatial dims"),
                ));
            }
            Ok(pads.iter().map(|&p| p as usize).collect())
        }
        "VALID" => Ok(vec![0; 2 * n]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut out = vec![0; 2 * n];
            for i in 0..n {
                let o = input[i].div_ceil(strides[i]);
                let eff_k = (kernel[i] - 1) * dilations[i] + 1;
                let total = ((o - 1) * strides[i] + eff_k).saturating_sub(input[i]);
                let (small, big) = (total / 2, total - total / 2);
                if auto_pad == "SAME_UPPER" {
                    out[i] = small;
                    out[i + n] = big;
                } else {
                    out[i] = big;
                    out[i + n] = small;
                }
            }
            Ok(out)
        }
        other => Err(Error::new(
            ErrorKind::Attribute,
            format!("unknown auto_pad '{other}'"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(
            broadcast_shapes(&[2, 1, 4], &[3, 1]).unwrap(),
            vec![2, 3, 4]
        );
        assert_eq!(broadcast_shapes(&[], &[5]).unwrap(), vec![5]);
        assert_eq!(
            broadcast_shapes(&[2, 3], &[4, 3]).unwrap_err().kind,
            ErrorKind::Shape
        );
    }

    #[test]
    fn same_padding() {
        // 5 wide, kernel 3, stride 2: output 3, total pad 2 → 1/1.
        assert_eq!(
            resolve_auto_pad("SAME_UPPER", &[5], &[3], &[2], &[1], &[]).unwrap(),
            vec![1, 1]
        );
        // 4 wide, kernel 3, stride 1: total pad 2; kernel 2: total 1 split upper-heavy.
        assert_eq!(
            resolve_auto_pad("SAME_UPPER", &[4], &[2], &[1], &[1], &[]).unwrap(),
            vec![0, 1]
        );
        assert_eq!(
            resolve_auto_pad("SAME_LOWER", &[4], &[2], &[1], &[1], &[]).unwrap(),
            vec![1, 0]
        );
    }
}
