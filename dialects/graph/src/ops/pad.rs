//! `pad(data, pads, constant_value?, axes?) {mode}`: constant, reflect, edge and wrap padding,
//! with negative pads cropping.
//!
//! Negative pads crop *before* the other side is padded (onnxruntime's order: reflecting or
//! wrapping an end sees the cropped data). Reflect follows numpy (the ONNX reference): pads
//! longer than the axis keep reflecting, where onnxruntime rejects them.

use super::layout::{blocks, contiguous, from_vec};
use super::shape::{MAX_ELEMENTS, norm_axes, sized};
use super::util::{arg, opt_arg};
use super::{InferInputs, OpDef};
use kiln_core::{
    AttrReader, Attrs, Element, Error, ErrorKind, Result, Tensor, TensorType, bail, dispatch,
};
use ndarray::ArrayD;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PadMode {
    #[default]
    Constant,
    Reflect,
    Edge,
    Wrap,
}

impl PadMode {
    pub fn name(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
            PadMode::Wrap => "wrap",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pad {
    pub mode: PadMode,
}

/// Per axis of the input: how many elements to add (negative: remove) at each end.
pub fn pad_amounts(rank: usize, pads: &[i64], axes: Option<&[i64]>) -> Result<Vec<(i64, i64)>> {
    let all: Vec<i64> = (0..rank as i64).collect();
    let axes = norm_axes(axes.unwrap_or(&all), rank, "pad axes")?;
    if pads.len() != 2 * axes.len() {
        bail!(
            Shape,
            "pads {pads:?} must have 2 values per padded axis ({} axes)",
            axes.len()
        );
    }
    let mut out = vec![(0, 0); rank];
    for (i, &a) in axes.iter().enumerate() {
        out[a] = (pads[i], pads[i + axes.len()]);
    }
    Ok(out)
}

impl Pad {
    /// Where each result position along one axis reads from (`None`: the fill value).
    fn axis_map(self, dim: usize, begin: i64, end: i64) -> Result<Vec<Option<usize>>> {
        let d = dim as i64;
        let out = d.saturating_add(begin).saturating_add(end);
        if out > MAX_ELEMENTS as i64 {
            bail!(
                Shape,
                "pads ({begin}, {end}) make an axis of {out} elements"
            );
        }
        if out < 0 {
            bail!(
                Shape,
                "pads ({begin}, {end}) leave a negative size for an axis of size {dim}"
            );
        }
        // The data left after cropping, in input coordinates.
        let (lo, hi) = (begin.min(0).saturating_neg(), d.saturating_add(end.min(0)));
        let n = hi - lo;
        let padded = begin > 0 || end > 0;
        if self.mode != PadMode::Constant && padded && n <= 0 {
            bail!(
                Shape,
                "{} padding needs data to copy, but the axis has {} elements left after cropping",
                self.mode.name(),
                n.max(0)
            );
        }
        Ok((0..out)
            .map(|o| {
                let i = o - begin;
                if (lo..hi).contains(&i) {
                    return Some(i as usize);
                }
                let j = i - lo;
                let j = match self.mode {
                    PadMode::Constant => return None,
                    PadMode::Edge => j.clamp(0, n - 1),
                    PadMode::Wrap => j.rem_euclid(n),
                    PadMode::Reflect if n == 1 => 0,
                    PadMode::Reflect => {
                        let m = j.rem_euclid(2 * (n - 1));
                        if m >= n { 2 * (n - 1) - m } else { m }
                    }
                };
                Some((lo + j) as usize)
            })
            .collect())
    }

    fn plan(
        self,
        shape: &[usize],
        pads: &[i64],
        axes: Option<&[i64]>,
    ) -> Result<Vec<Option<Vec<Option<usize>>>>> {
        let maps = pad_amounts(shape.len(), pads, axes)?
            .into_iter()
            .zip(shape)
            .map(|((b, e), &d)| {
                if b == 0 && e == 0 {
                    Ok(None)
                } else {
                    self.axis_map(d, b, e).map(Some)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        sized("pad", out_shape(shape, &maps))?;
        Ok(maps)
    }
}

fn out_shape(shape: &[usize], maps: &[Option<Vec<Option<usize>>>]) -> Vec<usize> {
    maps.iter()
        .zip(shape)
        .map(|(m, &d)| m.as_ref().map_or(d, |m| m.len()))
        .collect()
}

/// Pads one axis of a row-major array: runs of consecutive sources are one copy each.
fn pad_axis<T: Element>(a: &ArrayD<T>, axis: usize, map: &[Option<usize>], fill: T) -> ArrayD<T> {
    let c = contiguous(a);
    let data = c.as_slice().expect("standard layout");
    let (outer, dim, inner) = blocks(a.shape(), axis);
    let mut shape = a.shape().to_vec();
    shape[axis] = map.len();
    let mut v = Vec::with_capacity(outer * map.len() * inner);
    for o in 0..outer {
        let mut k = 0;
        while k < map.len() {
            match map[k] {
                None => {
                    v.extend(std::iter::repeat_n(fill, inner));
                    k += 1;
                }
                Some(s) => {
                    let mut run = 1;
                    while k + run < map.len() && map[k + run] == Some(s + run) {
                        run += 1;
                    }
                    let start = (o * dim + s) * inner;
                    v.extend_from_slice(&data[start..start + run * inner]);
                    k += run;
                }
            }
        }
    }
    from_vec(&shape, v)
}

fn pad_kernel<T: Element>(
    a: &ArrayD<T>,
    plan: &[Option<Vec<Option<usize>>>],
    fill: Option<&Tensor>,
) -> Result<Tensor> {
    let fill = match fill {
        Some(t) if !t.is_empty() => *t.as_array::<T>()?.iter().next().expect("non-empty"),
        _ => T::default(),
    };
    let mut cur: Option<ArrayD<T>> = None;
    for (axis, map) in plan.iter().enumerate() {
        if let Some(map) = map {
            cur = Some(pad_axis(cur.as_ref().unwrap_or(a), axis, map, fill));
        }
    }
    Ok(T::wrap(cur.unwrap_or_else(|| a.clone())))
}

impl OpDef for Pad {
    fn shape_operands(&self) -> &'static [usize] {
        &[1, 3]
    }
    fn names() -> &'static [&'static str] {
        &["pad"]
    }
    fn name(&self) -> &'static str {
        "pad"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        let mode = match r.str("mode", "constant")?.as_str() {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            "wrap" => PadMode::Wrap,
            other => bail!(
                Attribute,
                "unknown pad mode '{other}' (expected constant, reflect, edge or wrap)"
            ),
        };
        Ok(Pad { mode })
    }
    fn attrs(&self) -> Attrs {
        Attrs::new().str("mode", self.mode.name(), "constant")
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        super::shape::check_index_list(&ins, 1, "pads")?;
        super::shape::check_index_list(&ins, 3, "pad axes")?;
        if let Some(c) = ins.opt(2)
            && (c.ty.dtype != x.dtype || c.ty.numel() > 1)
        {
            bail!(
                Type,
                "pad constant_value must be a one-element {} tensor, got {}",
                x.dtype,
                c.ty
            );
        }
        let pads = ins
            .const_ints(1, "pads")?
            .ok_or_else(|| Error::new(ErrorKind::InvalidModel, "pad needs pads"))?;
        let plan = self.plan(&x.shape, &pads, ins.const_ints(3, "axes")?.as_deref())?;
        Ok(vec![TensorType::new(x.dtype, out_shape(&x.shape, &plan))])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let axes = opt_arg(ins, 3).map(|t| t.to_i64_vec()).transpose()?;
        let plan = self.plan(x.shape(), &arg(ins, 1)?.to_i64_vec()?, axes.as_deref())?;
        let fill = if self.mode == PadMode::Constant {
            opt_arg(ins, 2)
        } else {
            None
        };
        Ok(vec![dispatch!(x, a => pad_kernel(a, &plan, fill))?])
    }
    fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::shape::testing::{f32s, fails, ints, run1, values};

    fn x() -> Option<Tensor> {
        Some(f32s(&[2, 3], &[1., 2., 3., 4., 5., 6.]))
    }

    fn padded(mode: PadMode, pads: &[i64], value: Option<f32>, axes: Option<&[i64]>) -> Tensor {
        run1(
            &Pad { mode },
            &[
                x(),
                Some(ints(pads)),
                value.map(Tensor::scalar),
                axes.map(ints),
            ],
        )
    }

    // Expected values below come from onnxruntime (reflect with long pads: numpy.pad, the ONNX
    // reference, since onnxruntime refuses those).
    #[test]
    fn constant() {
        let t = padded(PadMode::Constant, &[1, 0, 0, 2], Some(2.5), None);
        assert_eq!(t.shape(), [3, 5]);
        assert_eq!(
            values::<f32>(&t),
            [
                2.5, 2.5, 2.5, 2.5, 2.5, 1., 2., 3., 2.5, 2.5, 4., 5., 6., 2.5, 2.5
            ]
        );
        assert_eq!(
            values::<f32>(&padded(PadMode::Constant, &[-1, 1, 0, -1], None, None)),
            [0., 4., 5.]
        );
        // Cropping past the data leaves only padding (onnxruntime agrees).
        assert_eq!(
            values::<f32>(&padded(PadMode::Constant, &[0, -4, 0, 2], None, None)),
            [0., 0.]
        );
        let b = Tensor::from_vec(&[2], vec![true, true]).unwrap();
        let t = run1(&Pad::default(), &[Some(b), Some(ints(&[1, 1]))]);
        assert_eq!(values::<bool>(&t), [false, true, true, false]);
        let t = run1(
            &Pad::default(),
            &[
                Some(ints(&[7])),
                Some(ints(&[0, 2])),
                Some(Tensor::scalar(-1i64)),
            ],
        );
        assert_eq!(values::<i64>(&t), [7, -1, -1]);
    }

    #[test]
    fn reflect_edge_wrap() {
        let t = padded(PadMode::Reflect, &[1, 2, 1, 2], None, None);
        assert_eq!(t.shape(), [4, 7]);
        assert_eq!(
            values::<f32>(&t),
            [
                6., 5., 4., 5., 6., 5., 4., 3., 2., 1., 2., 3., 2., 1., 6., 5., 4., 5., 6., 5., 4.,
                3., 2., 1., 2., 3., 2., 1.
            ]
        );
        let t = padded(PadMode::Reflect, &[2, 3, 1, 4], None, None);
        assert_eq!(t.shape(), [5, 10]);
        assert_eq!(
            values::<f32>(&t)[..20],
            [
                2., 3., 2., 1., 2., 3., 2., 1., 2., 3., 5., 6., 5., 4., 5., 6., 5., 4., 5., 6.
            ]
        );
        let t = padded(PadMode::Edge, &[1, 2, 2, 1], None, None);
        assert_eq!(t.shape(), [5, 6]);
        assert_eq!(
            values::<f32>(&t)[..12],
            [1., 1., 1., 2., 3., 3., 1., 1., 1., 2., 3., 3.]
        );
        assert_eq!(values::<f32>(&t)[24..], [4., 4., 4., 5., 6., 6.]);
        let t = padded(PadMode::Wrap, &[3, 1, 2, 5], None, None);
        assert_eq!(t.shape(), [7, 9]);
        assert_eq!(
            values::<f32>(&t)[..18],
            [
                6., 4., 5., 6., 4., 5., 6., 4., 5., 3., 1., 2., 3., 1., 2., 3., 1., 2.
            ]
        );
    }

    #[test]
    fn axes_and_cropping() {
        // Cropping happens first: reflecting/wrapping sees the cropped data.
        assert_eq!(
            values::<f32>(&padded(PadMode::Reflect, &[1, -1], None, Some(&[-1]))),
            [2., 1., 2., 5., 4., 5.]
        );
        let t = padded(PadMode::Wrap, &[-1, 4], None, Some(&[1]));
        assert_eq!(
            values::<f32>(&t),
            [2., 3., 2., 3., 2., 3., 5., 6., 5., 6., 5., 6.]
        );
        // Nothing left to copy from.
        let ins = [x(), Some(ints(&[2, -2])), None, Some(ints(&[0]))];
        assert_eq!(
            fails(
                &Pad {
                    mode: PadMode::Edge
                },
                &ins,
                1
            ),
            ErrorKind::Shape
        );
    }

    #[test]
    fn errors() {
        let p = Pad::default();
        assert_eq!(
            fails(&p, &[x(), Some(ints(&[1, 1, 1]))], 1),
            ErrorKind::Shape
        );
        assert_eq!(
            fails(&p, &[x(), Some(ints(&[0, -2, 0, -2]))], 1),
            ErrorKind::Shape
        );
        assert_eq!(
            fails(&p, &[x(), Some(ints(&[1, 1])), None, Some(ints(&[2]))], 1),
            ErrorKind::Shape
        );
        assert_eq!(
            fails(
                &p,
                &[x(), Some(ints(&[1, 1])), Some(Tensor::scalar(1i64))],
                1
            ),
            ErrorKind::Type
        );
        let bad = Attrs::new().str("mode", "symmetric", "constant");
        assert_eq!(
            Pad::from_attrs("pad", &mut AttrReader::new(bad))
                .unwrap_err()
                .kind,
            ErrorKind::Attribute
        );
    }
}
