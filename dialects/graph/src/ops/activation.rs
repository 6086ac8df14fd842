//! The fused epilogue shared by the compute ops (conv, conv_transpose, gemm, matmul):
//! `out = act(W·x + b + Y)`.
//!
//! Fusion passes fold a following activation and a residual Add into the compute op so the
//! later kernels can keep the accumulator in registers; the interpreter evaluates the fused
//! op with exactly the arithmetic of the unfused ops (add in the element type, then the
//! activation in f64 rounded back, like the element-wise ops do), so every fusion can be
//! checked numerically against the graph it replaced.
//!
//! Operand layout, the same for every compute op: `(x, w, bias?, Y?, slope?)` — operand 3 is
//! the residual added after the bias, operand 4 the PRelu slope, present exactly when the
//! activation is [`Activation::PRelu`].

use super::unary::UnaryKind;
use super::util::broadcast_shapes;
use kiln_core::{AttrReader, Attrs, Element, Result, Tensor, TensorType, bail, ensure};
use ndarray::ArrayD;

/// HardSwish's slope α = 1/6 in ONNX's definition `x·clamp(αx + 0.5, 0, 1)`, rounded to f32
/// as ONNX's attribute is. The f32 kernels and the int8 contract multiply by it (a division
/// by 6 per element cost a `divps` per vector in every fused epilogue).
pub const HARD_SWISH_ALPHA: f32 = 1.0 / 6.0;

/// Operand index of the fused residual input.
pub const RESIDUAL: usize = 3;
/// Operand index of the fused PRelu slope.
pub const SLOPE: usize = 4;

/// A fused activation. Parameters are f32 like the ONNX attributes they come from.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    #[default]
    None,
    Relu,
    /// Clip with constant bounds (±inf for a missing one); Relu6 is `Clip{0, 6}`.
    Clip {
        min: f32,
        max: f32,
    },
    LeakyRelu {
        alpha: f32,
    },
    /// The slope is operand [`SLOPE`], broadcast to the result.
    PRelu,
    Sigmoid,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    /// `x·sigmoid(x)`.
    Swish,
    Tanh,
    Gelu {
        tanh: bool,
    },
}

impl Activation {
    pub fn is_none(&self) -> bool {
        *self == Activation::None
    }

    /// The `act` attribute value.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Clip { .. } => "clip",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::PRelu => "prelu",
            Activation::Sigmoid => "sigmoid",
            Activation::HardSigmoid { .. } => "hard_sigmoid",
            Activation::HardSwish => "hard_swish",
            Activation::Swish => "swish",
            Activation::Tanh => "tanh",
            Activation::Gelu { tanh: false } => "gelu",
            Activation::Gelu { tanh: true } => "gelu_tanh",
        }
    }

    /// Reads `act` and the parameters that kind uses; parameters of other kinds are left
    /// unread, so the op's attribute check rejects them.
    pub fn read(r: &mut AttrReader) -> Result<Activation> {
        let act = r.str("act", "none")?;
        Ok(match act.as_str() {
            "none" => Activation::None,
            "relu" => Activation::Relu,
            "clip" => {
                let (min, max) = (
                    r.float("act_min", f32::NEG_INFINITY)?,
                    r.float("act_max", f32::INFINITY)?,
                );
                ensure!(
                    !min.is_nan() && !max.is_nan(),
                    Attribute,
                    "act_min/act_max must not be NaN"
                );
                Activation::Clip { min, max }
            }
            "leaky_relu" => Activation::LeakyRelu {
                alpha: r.float("act_alpha", 0.01)?,
            },
            "prelu" => Activation::PRelu,
            "sigmoid" => Activation::Sigmoid,
            "hard_sigmoid" => Activation::HardSigmoid {
                alpha: r.float("act_alpha", 0.2)?,
                beta: r.float("act_beta", 0.5)?,
            },
            "hard_swish" => Activation::HardSwish,
            "swish" => Activation::Swish,
            "tanh" => Activation::Tanh,
            "gelu" => Activation::Gelu { tanh: false },
            "gelu_tanh" => Activation::Gelu { tanh: true },
            other => bail!(Attribute, "unknown fused activation act=\"{other}\""),
        })
    }

    /// Adds the attributes [`Activation::read`] turns back into `self` (nothing for None).
    pub fn write(&self, a: Attrs) -> Attrs {
        let a = a.str("act", self.name(), "none");
        match *self {
            Activation::Clip { min, max } => {
                a.float("act_min", min, f32::NEG_INFINITY)
                    .float("act_max", max, f32::INFINITY)
            }
            Activation::LeakyRelu { alpha } => a.float("act_alpha", alpha, 0.01),
            Activation::HardSigmoid { alpha, beta } => a
                .float("act_alpha", alpha, 0.2)
                .float("act_beta", beta, 0.5),
            _ => a,
        }
    }

    /// The scalar function (PRelu takes its slope separately, see [`Activation::apply_prelu`]).
    pub fn apply(&self, x: f64) -> f64 {
        match *self {
            Activation::None | Activation::PRelu => x,
            Activation::Relu => x.max(0.0),
            // max-then-min like Clip: min > max yields max.
            Activation::Clip { min, max } => x.max(min as f64).min(max as f64),
            Activation::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha as f64 * x
                }
            }
            Activation::Sigmoid => UnaryKind::Sigmoid.apply(x),
            Activation::HardSigmoid { alpha, beta } => {
                (alpha as f64 * x + beta as f64).clamp(0.0, 1.0)
            }
            Activation::HardSwish => UnaryKind::HardSwish.apply(x),
            // The same expression as the swish op, so fusing it changes no bits.
            Activation::Swish => x / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::Gelu { tanh } => super::Gelu { tanh_approx: tanh }.apply(x),
        }
    }

    pub fn apply_prelu(x: f64, slope: f64) -> f64 {
        if x < 0.0 { x * slope } else { x }
    }
}

/// Shape rule of the epilogue: Y and the slope must broadcast to the result `out` and share
/// its element type; the slope is present exactly for PRelu.
pub fn check_epilogue(
    what: &str,
    act: &Activation,
    out: &TensorType,
    y: Option<&TensorType>,
    slope: Option<&TensorType>,
) -> Result<()> {
    for (name, t) in [("residual Y", y), ("PRelu slope", slope)] {
        let Some(t) = t else { continue };
        ensure!(
            t.dtype == out.dtype,
            Type,
            "{what}: {name} is {} but the result is {}",
            t.dtype,
            out.dtype
        );
        let ok = broadcast_shapes(&t.shape, &out.shape).is_ok_and(|s| s == out.shape);
        ensure!(
            ok,
            Shape,
            "{what}: {name} {:?} does not broadcast to the result {:?}",
            t.shape,
            out.shape
        );
    }
    let prelu = *act == Activation::PRelu;
    ensure!(
        prelu == slope.is_some(),
        Shape,
        "{what}: {}",
        if prelu {
            "act=\"prelu\" needs the slope as operand 4"
        } else {
            "operand 4 (a PRelu slope) is only allowed with act=\"prelu\""
        }
    );
    Ok(())
}

fn finish_typed<T: Element + std::ops::Add<Output = T>>(
    act: &Activation,
    mut out: ArrayD<T>,
    y: Option<&Tensor>,
    slope: Option<&Tensor>,
) -> Result<ArrayD<T>> {
    if let Some(y) = y {
        let y = y.as_array::<T>()?;
        let yb = y
            .broadcast(out.raw_dim())
            .ok_or_else(|| kiln_core::err!(Shape, "residual Y does not broadcast"))?;
        out.zip_mut_with(&yb, |o, &v| *o = *o + v);
    }
    match (act, slope) {
        (Activation::None, _) => {}
        (Activation::PRelu, Some(s)) => {
            let s = s.as_array::<T>()?;
            let sb = s
                .broadcast(out.raw_dim())
                .ok_or_else(|| kiln_core::err!(Shape, "PRelu slope does not broadcast"))?;
            out.zip_mut_with(&sb, |o, &v| {
                *o = T::from_f64(Activation::apply_prelu(o.to_f64(), v.to_f64()))
            });
        }
        (Activation::PRelu, None) => bail!(Shape, "act=\"prelu\" needs the slope as operand 4"),
        (act, _) => out.mapv_inplace(|v| T::from_f64(act.apply(v.to_f64()))),
    }
    Ok(out)
}

/// Applies the epilogue to the compute op's result (which already includes its bias).
pub fn apply_epilogue(
    act: &Activation,
    out: Tensor,
    y: Option<&Tensor>,
    slope: Option<&Tensor>,
) -> Result<Tensor> {
    if act.is_none() && y.is_none() {
        return Ok(out);
    }
    Ok(match out {
        Tensor::F32(a) => Tensor::F32(finish_typed(act, a, y, slope)?),
        Tensor::F64(a) => Tensor::F64(finish_typed(act, a, y, slope)?),
        t => bail!(Type, "fused epilogues need f32 or f64, got {}", t.dtype()),
    })
}

/// Work of the epilogue: one operation per result element for the residual add and for
/// the activation.
pub fn epilogue_flops(act: &Activation, has_y: bool, out: &TensorType) -> u64 {
    (out.numel() as u64) * (u64::from(has_y) + u64::from(!act.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::Attr;

    #[test]
    fn attrs_round_trip() {
        let all = [
            Activation::None,
            Activation::Relu,
            Activation::Clip { min: 0.0, max: 6.0 },
            Activation::Clip {
                min: f32::NEG_INFINITY,
                max: 1.5,
            },
            Activation::LeakyRelu { alpha: 0.1 },
            Activation::PRelu,
            Activation::Sigmoid,
            Activation::HardSigmoid {
                alpha: 0.25,
                beta: 0.5,
            },
            Activation::HardSwish,
            Activation::Swish,
            Activation::Tanh,
            Activation::Gelu { tanh: false },
            Activation::Gelu { tanh: true },
        ];
        for a in all {
            let attrs = a.write(Attrs::new());
            assert_eq!(attrs.is_empty(), a.is_none());
            let mut r = AttrReader::new(attrs);
            assert_eq!(Activation::read(&mut r).unwrap(), a);
            r.finish().unwrap();
        }
        let mut r = AttrReader::new(Attrs(vec![("act".into(), Attr::Str("nope".into()))]));
        assert!(Activation::read(&mut r).is_err());
    }

    #[test]
    fn scalar_semantics() {
        let c = Activation::Clip { min: 0.0, max: 6.0 };
        assert_eq!(c.apply(7.0), 6.0);
        assert_eq!(c.apply(-1.0), 0.0);
        assert_eq!(Activation::LeakyRelu { alpha: 0.5 }.apply(-2.0), -1.0);
        assert_eq!(Activation::HardSwish.apply(3.0), 3.0);
        assert_eq!(Activation::apply_prelu(-2.0, 0.25), -0.5);
        assert!((Activation::Swish.apply(1.0) - 0.7310585786300049).abs() < 1e-12);
    }
}
