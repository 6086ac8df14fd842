//! Softmax, LogSoftmax and Hardmax along one axis (opset-13 semantics; the importer turns
//! older opsets' flatten-to-2-D behaviour into explicit reshapes).

use super::norm::{float_tensor, float_values, require_float};
use super::util::{arg, norm_axis};
use super::{InferInputs, OpDef};
use kiln_core::{AttrReader, Attrs, Result, Tensor, TensorType, ensure};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftmaxKind {
    Softmax,
    LogSoftmax,
    Hardmax,
}

const KINDS: &[(SoftmaxKind, &str)] = &[
    (SoftmaxKind::Softmax, "softmax"),
    (SoftmaxKind::LogSoftmax, "log_softmax"),
    (SoftmaxKind::Hardmax, "hardmax"),
];

impl SoftmaxKind {
    pub fn name(self) -> &'static str {
        KINDS
            .iter()
            .find(|(k, _)| *k == self)
            .expect("every kind is in the table")
            .1
    }
}

/// `softmax(x) {axis}` and its siblings: normalise each 1-D lane along `axis`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Softmax {
    pub kind: SoftmaxKind,
    pub axis: i64,
}

impl Softmax {
    pub fn new(kind: SoftmaxKind, axis: i64) -> Self {
        Softmax { kind, axis }
    }

    fn axis_of(&self, shape: &[usize]) -> Result<usize> {
        ensure!(
            !shape.is_empty(),
            Shape,
            "{} needs a tensor of rank >= 1, got a scalar",
            self.kind.name()
        );
        norm_axis(self.axis, shape.len())
    }

    /// Transforms one lane in place. The maximum is subtracted first so large logits
    /// neither overflow nor lose the small differences that decide the result.
    fn lane(&self, x: &mut [f64]) {
        let Some(max) = x.iter().copied().reduce(f64::max) else {
            return;
        };
        match self.kind {
            SoftmaxKind::Hardmax => {
                // The first maximum wins ties (ONNX: "the first maximum").
                let at = x.iter().position(|&v| v == max);
                x.iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v = (Some(i) == at) as u8 as f64);
            }
            _ if max.is_infinite() && max > 0.0 => {
                // +inf logits: e^(inf - inf) is NaN, as in onnxruntime and numpy.
                x.iter_mut().for_each(|v| {
                    *v = if self.kind == SoftmaxKind::Softmax {
                        f64::NAN
                    } else {
                        *v - max
                    }
                });
            }
            SoftmaxKind::Softmax => {
                let mut sum = 0.0;
                for v in x.iter_mut() {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                x.iter_mut().for_each(|v| *v /= sum);
            }
            SoftmaxKind::LogSoftmax => {
                let log_sum = x.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                x.iter_mut().for_each(|v| *v = *v - max - log_sum);
            }
        }
    }
}

impl OpDef for Softmax {
    fn names() -> &'static [&'static str] {
        &["softmax", "log_softmax", "hardmax"]
    }
    fn name(&self) -> &'static str {
        self.kind.name()
    }
    fn from_attrs(name: &str, r: &mut AttrReader) -> Result<Self> {
        let kind = KINDS
            .iter()
            .find(|(_, n)| *n == name)
            .expect("name comes from names()")
            .0;
        Ok(Softmax {
            kind,
            axis: r.int("axis", -1)?,
        })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().int("axis", self.axis, -1)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        require_float(x, self.kind.name())?;
        self.axis_of(&x.shape)?;
        Ok(vec![x.clone()])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let shape = x.shape();
        let axis = self.axis_of(shape)?;
        let mut v = float_values(x, self.kind.name())?;
        let (len, inner) = (shape[axis], shape[axis + 1..].iter().product::<usize>());
        if len > 0 && inner > 0 {
            if inner == 1 {
                v.chunks_mut(len).for_each(|lane| self.lane(lane));
            } else {
                // Gather each strided lane into a scratch buffer and scatter it back.
                let mut lane = vec![0.0; len];
                for block in v.chunks_mut(len * inner) {
                    for i in 0..inner {
                        lane.iter_mut()
                            .enumerate()
                            .for_each(|(j, l)| *l = block[j * inner + i]);
                        self.lane(&mut lane);
                        lane.iter()
                            .enumerate()
                            .for_each(|(j, &l)| block[j * inner + i] = l);
                    }
                }
            }
        }
        Ok(vec![float_tensor(x.dtype(), shape, v)?])
    }
    fn flops(&self, _: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        // Max, subtract, exp, sum, divide.
        let per = if self.kind == SoftmaxKind::Hardmax {
            1
        } else {
            5
        };
        per * outs[0].numel() as u64
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::norm::test_support::*;
    use kiln_core::{Attr, ErrorKind};

    // Expected values: onnxruntime 1.32.

    #[test]
    fn softmax_family_along_inner_and_outer_axes() {
        let x = data(&[2, 3, 4], 11, 19, 1.5, 3.0);
        let out = run(&op("softmax", &[("axis", Attr::Int(1))]), &[Some(&x)], 1).unwrap();
        #[rustfmt::skip]
        close(&out[0], &[2, 3, 4], &[
            0.0003293204, 0.017983174, 0.0003293204, 0.990515, 0.017980287, 0.98184764, 0.017980287, 0.00017059858,
            0.98169035, 0.00016910594, 0.98169035, 0.009314367, 0.990515, 0.01798317, 0.0003293204, 0.990515,
            0.00017059858, 0.98184764, 0.017980287, 0.00017059874, 0.009314371, 0.00016910594, 0.98169035,
            0.009314371,
        ]);
        let out = run(&op("log_softmax", &[]), &[Some(&x)], 1).unwrap();
        #[rustfmt::skip]
        close(&out[0], &[2, 3, 4], &[
            -9.460916, -2.1275811, -7.4609146, -0.12758113, -7.3388224, -0.0054895133, -5.3388224, -10.672155,
            -2.1317444, -7.465078, -0.1317444, -5.465078, -0.0397257, -5.373059, -10.706392, -3.3730593, -7.3388224,
            -0.0054895133, -5.3388224, -10.672155, -2.1317444, -7.465078, -0.1317444, -5.465078,
        ]);
        let out = run(&op("hardmax", &[("axis", Attr::Int(0))]), &[Some(&x)], 1).unwrap();
        #[rustfmt::skip]
        close(&out[0], &[2, 3, 4], &[
            0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0,
            1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
        ]);
    }

    #[test]
    fn large_logits_and_ties() {
        let x = f32s(&[2, 3], &[1e4, 1e4 + 1.0, 1e4 + 2.0, 3.0, 3.0, 1.0]);
        let out = run(&op("softmax", &[]), &[Some(&x)], 1).unwrap();
        close(
            &out[0],
            &[2, 3],
            &[
                0.09003057, 0.24472848, 0.66524094, 0.46831053, 0.46831053, 0.06337894,
            ],
        );
        let out = run(&op("hardmax", &[]), &[Some(&x)], 1).unwrap();
        close(&out[0], &[2, 3], &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn errors() {
        let x = data(&[2, 3], 1, 7, 1.0, 0.0);
        let e = run(&op("softmax", &[("axis", Attr::Int(2))]), &[Some(&x)], 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Shape);
        let e = run(&op("softmax", &[]), &[Some(&i64s(&[1, 2]))], 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Type);
        let scalar = kiln_core::Tensor::scalar(1.0f32);
        assert_eq!(
            run(&op("log_softmax", &[]), &[Some(&scalar)], 1)
                .unwrap_err()
                .kind,
            ErrorKind::Shape
        );
    }
}
