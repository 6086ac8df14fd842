//! `resize(X, roi?, scales?, sizes?)`, opset 13–19 semantics: nearest, N-linear and cubic
//! interpolation on any subset of axes, every coordinate transformation, antialiasing.
//!
//! Interpolation is separable, so the kernel resizes one axis at a time, each output index
//! reading a few weighted source rows ("taps"). The taps are computed exactly the way the
//! ONNX reference computes them (its neighbour window, its `ratio = 1` convention at integer
//! coordinates, f32 roi arithmetic), because the conformance data comes from it and a
//! rounding difference in a coordinate flips a nearest-neighbour pick.

use super::util::{arg, norm_axis, opt_arg};
use super::{InferInputs, OpDef};
use kiln_core::{
    AttrReader, Attrs, DType, Element, Result, Tensor, TensorType, bail, dispatch, ensure,
};
use ndarray::ArrayD;

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident, $attr:literal { $($v:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($v),* }

        impl $name {
            pub fn name(self) -> &'static str {
                match self { $($name::$v => $s),* }
            }

            fn parse(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok($name::$v),)*
                    other => bail!(Attribute, "unknown {} '{other}' (expected one of: {})", $attr, [$($s),*].join(", ")),
                }
            }
        }
    };
}

str_enum!(ResizeMode, "mode" { Nearest = "nearest", Linear = "linear", Cubic = "cubic" });
str_enum!(
    /// How an output index maps back to a (fractional) input coordinate.
    CoordMode, "coordinate_transformation_mode" {
        HalfPixel = "half_pixel",
        HalfPixelSymmetric = "half_pixel_symmetric",
        PytorchHalfPixel = "pytorch_half_pixel",
        AlignCorners = "align_corners",
        Asymmetric = "asymmetric",
        TfCropAndResize = "tf_crop_and_resize",
    }
);
str_enum!(NearestMode, "nearest_mode" {
    RoundPreferFloor = "round_prefer_floor",
    RoundPreferCeil = "round_prefer_ceil",
    Floor = "floor",
    Ceil = "ceil",
});
str_enum!(AspectPolicy, "keep_aspect_ratio_policy" {
    Stretch = "stretch",
    NotLarger = "not_larger",
    NotSmaller = "not_smaller",
});

/// The Resize op; attribute names and defaults are ONNX's.
#[derive(Debug, Clone, PartialEq)]
pub struct Resize {
    pub mode: ResizeMode,
    pub coord: CoordMode,
    pub nearest_mode: NearestMode,
    pub cubic_coeff_a: f32,
    pub exclude_outside: bool,
    pub extrapolation_value: f32,
    pub antialias: bool,
    /// The axes that scales/sizes/roi refer to; empty means all, in order.
    pub axes: Vec<i64>,
    pub keep_aspect_ratio_policy: AspectPolicy,
}

impl Default for Resize {
    fn default() -> Self {
        Resize {
            mode: ResizeMode::Nearest,
            coord: CoordMode::HalfPixel,
            nearest_mode: NearestMode::RoundPreferFloor,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            antialias: false,
            axes: Vec::new(),
            keep_aspect_ratio_policy: AspectPolicy::Stretch,
        }
    }
}

/// One resized axis: its scale (as the coordinate transforms see it) and output length.
#[derive(Debug, Clone, Copy)]
struct AxisPlan {
    axis: usize,
    scale: f64,
    out: usize,
}

/// One axis' crop window for tf_crop_and_resize, remembering whether it came as f32 (the
/// reference then does part of the arithmetic in f32).
#[derive(Debug, Clone, Copy)]
struct Roi {
    start: f64,
    end: f64,
    f32: bool,
}

const DEFAULT_ROI: Roi = Roi {
    start: 0.0,
    end: 1.0,
    f32: false,
};

/// Source rows of one resized axis: `n` (index, weight) taps per output index, or a
/// constant for outputs outside a crop (or whose every tap was excluded).
struct Taps {
    n: usize,
    idx: Vec<usize>,
    w: Vec<f64>,
    fill: Vec<Option<f64>>,
}

/// Python's `math.isclose` with its default tolerance.
fn isclose(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Largest output kiln will allocate; beyond it an absurd scale is reported, not attempted.
const MAX_ELEMENTS: usize = 1 << 36;

impl Resize {
    /// The resized axes (in the order scales/sizes list them) and the output shape.
    fn plan(
        &self,
        shape: &[usize],
        scales: Option<&[f64]>,
        sizes: Option<&[i64]>,
    ) -> Result<(Vec<AxisPlan>, Vec<usize>)> {
        let rank = shape.len();
        let axes: Vec<usize> = if self.axes.is_empty() {
            (0..rank).collect()
        } else {
            let mut v = Vec::new();
            for &a in &self.axes {
                let i = norm_axis(a, rank)?;
                // norm_axis lets axis 0 through for scalars.
                ensure!(i < rank, Shape, "axis {a} is out of range for rank {rank}");
                ensure!(
                    !v.contains(&i),
                    Attribute,
                    "axis {a} appears twice in resize axes {:?}",
                    self.axes
                );
                v.push(i);
            }
            v
        };
        let k = axes.len();
        let mut plans = Vec::with_capacity(k);
        match (scales, sizes) {
            (Some(_), Some(_)) => bail!(InvalidModel, "resize takes scales or sizes, not both"),
            (None, None) => bail!(InvalidModel, "resize needs non-empty scales or sizes"),
            (Some(s), None) => {
                ensure!(
                    s.len() == k,
                    Shape,
                    "resize has {} scales for {k} axes of X {shape:?}",
                    s.len()
                );
                for (&axis, &scale) in axes.iter().zip(s) {
                    ensure!(
                        scale > 0.0 && scale.is_finite(),
                        Shape,
                        "resize scales must be positive, got {scale}"
                    );
                    let out = (scale * shape[axis] as f64).floor();
                    ensure!(
                        out <= MAX_ELEMENTS as f64,
                        Shape,
                        "resize scale {scale} gives an absurd output size"
                    );
                    plans.push(AxisPlan {
                        axis,
                        scale,
                        out: out as usize,
                    });
                }
            }
            (None, Some(s)) => {
                ensure!(
                    s.len() == k,
                    Shape,
                    "resize has {} sizes for {k} axes of X {shape:?}",
                    s.len()
                );
                let mut ratios = Vec::with_capacity(k);
                for (&axis, &size) in axes.iter().zip(s) {
                    ensure!(
                        (0..=MAX_ELEMENTS as i64).contains(&size),
                        Shape,
                        "resize sizes must be non-negative, got {size}"
                    );
                    ensure!(
                        shape[axis] > 0,
                        Shape,
                        "cannot resize axis {axis} of size 0 to {size}"
                    );
                    ratios.push(size as f64 / shape[axis] as f64);
                }
                let uniform = match self.keep_aspect_ratio_policy {
                    AspectPolicy::Stretch => None,
                    AspectPolicy::NotLarger => ratios.iter().copied().reduce(f64::min),
                    AspectPolicy::NotSmaller => ratios.iter().copied().reduce(f64::max),
                };
                for (i, &axis) in axes.iter().enumerate() {
                    plans.push(match uniform {
                        None => AxisPlan {
                            axis,
                            scale: ratios[i],
                            out: s[i] as usize,
                        },
                        // The reference rounds half up: int(x + 0.5).
                        Some(r) => AxisPlan {
                            axis,
                            scale: r,
                            out: (r * shape[axis] as f64 + 0.5) as usize,
                        },
                    });
                }
            }
        }
        let mut out = shape.to_vec();
        for p in &plans {
            out[p.axis] = p.out;
        }
        let total = out.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        ensure!(
            total.is_some_and(|t| t <= MAX_ELEMENTS),
            Shape,
            "resize output {out:?} is too large"
        );
        Ok((plans, out))
    }

    /// Maps output index `y` to an input coordinate; `true` when it lies outside the crop.
    fn source(&self, y: f64, scale: f64, in_len: usize, out_len: usize, roi: Roi) -> (f64, bool) {
        let in_w = in_len as f64;
        let out_w = scale * in_w;
        let x = match self.coord {
            CoordMode::AlignCorners if out_w == 1.0 => 0.0,
            CoordMode::AlignCorners => y * (in_w - 1.0) / (out_w - 1.0),
            CoordMode::Asymmetric => y / scale,
            CoordMode::PytorchHalfPixel if out_w == 1.0 => -0.5,
            CoordMode::PytorchHalfPixel | CoordMode::HalfPixel => (y + 0.5) / scale - 0.5,
            CoordMode::HalfPixelSymmetric => {
                let adjustment = out_len as f64 / out_w;
                let offset = in_w / 2.0 * (1.0 - adjustment);
                offset + (y + 0.5) / scale - 0.5
            }
            CoordMode::TfCropAndResize => {
                let span = in_w - 1.0;
                let (width, begin) = if roi.f32 {
                    let (s, e) = (roi.start as f32, roi.end as f32);
                    ((e - s) as f64, (s * span as f32) as f64)
                } else {
                    (roi.end - roi.start, roi.start * span)
                };
                let x = if out_w == 1.0 {
                    if roi.f32 {
                        (width as f32 * span as f32 / 2.0) as f64
                    } else {
                        width * span / 2.0
                    }
                } else {
                    y * width * span / (out_w - 1.0)
                };
                let x = x + begin;
                return (x, x < 0.0 || x > span);
            }
        };
        (x, false)
    }

    /// Interpolation weights for the taps left to right, given `ratio` in (0, 1] (the
    /// distance from the tap just left of the coordinate).
    fn coeffs(&self, ratio: f64, scale: f64) -> Vec<f64> {
        let a = self.cubic_coeff_a as f64;
        let normalise = |c: Vec<f64>| {
            let s: f64 = c.iter().sum();
            c.into_iter().map(|v| v / s).collect()
        };
        match self.mode {
            ResizeMode::Nearest => {
                let up = match self.nearest_mode {
                    _ if ratio == 1.0 => true,
                    NearestMode::RoundPreferFloor => ratio > 0.5,
                    NearestMode::RoundPreferCeil => ratio >= 0.5,
                    NearestMode::Floor => false,
                    NearestMode::Ceil => true,
                };
                vec![!up as u8 as f64, up as u8 as f64]
            }
            ResizeMode::Linear if self.antialias => {
                // The tent filter stretched by 1/scale when downscaling.
                let s = scale.min(1.0);
                let start = (-1.0 / s).floor() as i64 + 1;
                let c = (start..2 - start)
                    .map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0))
                    .collect();
                normalise(c)
            }
            ResizeMode::Linear => vec![1.0 - ratio, ratio],
            ResizeMode::Cubic if self.antialias => {
                let s = scale.min(1.0);
                let start = (-2.0 / s).floor() as i64 + 1;
                let c = (start..2 - start)
                    .map(|i| cubic(a, (s * (i as f64 - ratio)).abs()))
                    .collect();
                normalise(c)
            }
            ResizeMode::Cubic => {
                let r = ratio;
                vec![
                    cubic(a, r + 1.0),
                    cubic(a, r),
                    cubic(a, 1.0 - r),
                    cubic(a, 2.0 - r),
                ]
            }
        }
    }

    fn taps(&self, in_len: usize, out_len: usize, scale: f64, roi: Roi) -> Taps {
        let ev = self.extrapolation_value as f64;
        let mut t = Taps {
            n: 0,
            idx: Vec::new(),
            w: Vec::new(),
            fill: Vec::with_capacity(out_len),
        };
        for y in 0..out_len {
            let (x, outside) = self.source(y as f64, scale, in_len, out_len, roi);
            // An empty input has nothing to read (plan() rejects it; this keeps taps total).
            let outside = outside || in_len == 0;
            let fl = x.floor();
            let c = self.coeffs(if x == fl { 1.0 } else { x - fl }, scale);
            let n = c.len();
            t.n = n;
            if outside {
                t.fill.push(Some(ev));
                t.idx.extend(std::iter::repeat_n(0, n));
                t.w.extend(std::iter::repeat_n(0.0, n));
                continue;
            }
            // The reference's window: the n indices nearest to x, ties to the left. Every
            // kernel here has an even number of taps.
            let half = (n / 2) as i64;
            let xp = x.clamp(-1e15, 1e15) + half as f64;
            let p = xp.floor();
            let start = p as i64 - half + if xp == p { -half } else { 1 - half };
            let last = in_len as i64 - 1;
            let mut w: Vec<f64> = c;
            if self.exclude_outside {
                w.iter_mut()
                    .enumerate()
                    .filter(|(k, _)| !(0..=last).contains(&(start + *k as i64)))
                    .for_each(|(_, v)| *v = 0.0);
                let s: f64 = w.iter().sum();
                let s = if s == 0.0 { 1.0 } else { s };
                w.iter_mut().for_each(|v| *v /= s);
            }
            // Outside the input the reference pads by edge replication, i.e. clamps.
            t.idx
                .extend((0..n as i64).map(|k| (start + k).clamp(0, last.max(0)) as usize));
            t.fill.push(if w.iter().all(|&v| v == 0.0) {
                Some(0.0)
            } else {
                None
            });
            t.w.extend(w);
        }
        t
    }

    /// Per-axis crop windows from the roi operand (only tf_crop_and_resize reads them).
    fn rois(&self, roi: Option<&Tensor>, plans: &[AxisPlan]) -> Result<Vec<Roi>> {
        if self.coord != CoordMode::TfCropAndResize {
            return Ok(vec![DEFAULT_ROI; plans.len()]);
        }
        let roi = roi.filter(|t| !t.is_empty());
        let Some(roi) = roi else {
            bail!(
                InvalidModel,
                "resize with tf_crop_and_resize needs a roi operand"
            )
        };
        let k = plans.len();
        ensure!(
            roi.len() == 2 * k,
            Shape,
            "resize roi has {} values, expected {} (2 per axis)",
            roi.len(),
            2 * k
        );
        let f32 = roi.dtype() == DType::F32;
        let v = match roi {
            Tensor::F32(_) | Tensor::F64(_) => roi.to_f64_vec(),
            t => bail!(Type, "resize roi must be a float tensor, got {}", t.dtype()),
        };
        Ok((0..k)
            .map(|i| Roi {
                start: v[i],
                end: v[i + k],
                f32,
            })
            .collect())
    }

    /// The axes that actually change, with their taps (the reference skips the others).
    /// Shrinking axes go first and, among equals, inner axes first: the result is the same
    /// up to f64 rounding, and the intermediate tensors stay small.
    fn passes(&self, shape: &[usize], plans: &[AxisPlan], rois: &[Roi]) -> Vec<(usize, Taps)> {
        let crop = self.coord == CoordMode::TfCropAndResize;
        let mut v: Vec<_> = plans
            .iter()
            .zip(rois)
            .filter(|(p, r)| {
                let same_roi = !crop || (r.start == 0.0 && isclose(r.end, 1.0));
                !(isclose(p.scale, 1.0) && p.out == shape[p.axis] && same_roi)
            })
            .map(|(p, &r)| (p.axis, self.taps(shape[p.axis], p.out, p.scale, r)))
            .collect();
        let growth = |(a, t): &(usize, Taps)| t.fill.len() as f64 / shape[*a].max(1) as f64;
        v.sort_by(|x, y| growth(x).total_cmp(&growth(y)).then(y.0.cmp(&x.0)));
        v
    }
}

/// The cubic convolution kernel (Keys) with coefficient `a`, at distance `x >= 0`.
fn cubic(a: f64, x: f64) -> f64 {
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// Applies one axis' taps to a row-major buffer viewed as `[outer, in_len, inner]`.
fn interpolate(src: &[f64], [outer, in_len, inner]: [usize; 3], t: &Taps) -> Vec<f64> {
    let out_len = t.fill.len();
    let mut out = vec![0.0; outer * out_len * inner];
    if inner == 0 || out_len == 0 {
        return out;
    }
    let taps = |y: usize| (y * t.n..(y + 1) * t.n).filter(|&k| t.w[k] != 0.0);
    for (o, dst_block) in out.chunks_mut(out_len * inner).enumerate() {
        let s = &src[o * in_len * inner..(o + 1) * in_len * inner];
        if inner == 1 {
            // The innermost axis: one element per tap, no row slices.
            for (y, d) in dst_block.iter_mut().enumerate() {
                *d = match t.fill[y] {
                    Some(f) => f,
                    None => taps(y).fold(0.0, |acc, k| acc + t.w[k] * s[t.idx[k]]),
                };
            }
            continue;
        }
        for (y, d) in dst_block.chunks_mut(inner).enumerate() {
            if let Some(f) = t.fill[y] {
                d.fill(f);
                continue;
            }
            for k in taps(y) {
                let row = &s[t.idx[k] * inner..][..inner];
                d.iter_mut().zip(row).for_each(|(a, b)| *a += t.w[k] * b);
            }
        }
    }
    out
}

/// Nearest-neighbour twin of [`interpolate`]: copies whole rows, in the element type.
fn gather<T: Copy>(
    src: &[T],
    [outer, in_len, inner]: [usize; 3],
    t: &Taps,
    fill: impl Fn(f64) -> T,
) -> Vec<T> {
    // Each output row reads one source row (its tap of weight 1) or is a constant.
    let pick: Vec<std::result::Result<usize, T>> = (0..t.fill.len())
        .map(|y| match t.fill[y] {
            Some(f) => Err(fill(f)),
            None => Ok((y * t.n..(y + 1) * t.n)
                .find(|&k| t.w[k] != 0.0)
                .map_or(0, |k| t.idx[k])),
        })
        .collect();
    let mut out = Vec::with_capacity(outer * pick.len() * inner);
    for o in 0..outer {
        let s = &src[o * in_len * inner..(o + 1) * in_len * inner];
        match inner {
            1 => out.extend(pick.iter().map(|p| match p {
                Ok(i) => s[*i],
                Err(v) => *v,
            })),
            _ => {
                for p in &pick {
                    match p {
                        Ok(i) => out.extend_from_slice(&s[i * inner..][..inner]),
                        Err(v) => out.extend(std::iter::repeat_n(*v, inner)),
                    }
                }
            }
        }
    }
    out
}

/// f64 → element type as the reference's saturate_cast: integers round half to even.
fn to_elem<T: Element>(v: f64) -> T {
    if T::DTYPE.is_integer() {
        T::from_f64(v.round_ties_even())
    } else {
        T::from_f64(v)
    }
}

/// `shape` seen as `[outer, shape[axis], inner]`.
fn split(shape: &[usize], axis: usize) -> [usize; 3] {
    [
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    ]
}

fn resize_nearest<T: Element>(
    a: &ArrayD<T>,
    passes: &[(usize, Taps)],
    out: &[usize],
) -> Result<Tensor> {
    let mut shape = a.shape().to_vec();
    let mut data: Vec<T> = a.iter().copied().collect();
    for (axis, t) in passes {
        data = gather(&data, split(&shape, *axis), t, to_elem::<T>);
        shape[*axis] = t.fill.len();
    }
    debug_assert_eq!(shape, out);
    Tensor::from_vec(out, data)
}

impl OpDef for Resize {
    fn shape_operands(&self) -> &'static [usize] {
        &[1, 2, 3]
    }
    fn names() -> &'static [&'static str] {
        &["resize"]
    }
    fn name(&self) -> &'static str {
        "resize"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        let op = Resize {
            mode: ResizeMode::parse(&r.str("mode", "nearest")?)?,
            coord: CoordMode::parse(&r.str("coordinate_transformation_mode", "half_pixel")?)?,
            nearest_mode: NearestMode::parse(&r.str("nearest_mode", "round_prefer_floor")?)?,
            cubic_coeff_a: r.float("cubic_coeff_a", -0.75)?,
            exclude_outside: r.int("exclude_outside", 0)? != 0,
            extrapolation_value: r.float("extrapolation_value", 0.0)?,
            antialias: r.int("antialias", 0)? != 0,
            axes: r.ints("axes")?,
            keep_aspect_ratio_policy: AspectPolicy::parse(
                &r.str("keep_aspect_ratio_policy", "stretch")?,
            )?,
        };
        ensure!(
            !(op.antialias && op.mode == ResizeMode::Nearest),
            Unsupported,
            "resize antialias applies to linear and cubic modes only, not nearest"
        );
        Ok(op)
    }
    fn attrs(&self) -> Attrs {
        Attrs::new()
            .str("mode", self.mode.name(), "nearest")
            .str(
                "coordinate_transformation_mode",
                self.coord.name(),
                "half_pixel",
            )
            .str(
                "nearest_mode",
                self.nearest_mode.name(),
                "round_prefer_floor",
            )
            .float("cubic_coeff_a", self.cubic_coeff_a, -0.75)
            .int("exclude_outside", self.exclude_outside as i64, 0)
            .float("extrapolation_value", self.extrapolation_value, 0.0)
            .int("antialias", self.antialias as i64, 0)
            .ints("axes", &self.axes)
            .str(
                "keep_aspect_ratio_policy",
                self.keep_aspect_ratio_policy.name(),
                "stretch",
            )
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = ins.ty(0)?;
        ensure!(
            x.dtype != DType::Bool,
            Type,
            "resize is not defined for bool tensors"
        );
        let scales = match ins.const_value(2, "scales")?.filter(|t| !t.is_empty()) {
            Some(t) => Some(scale_values(t)?),
            None => None,
        };
        let sizes = ins
            .const_value(3, "sizes")?
            .filter(|t| !t.is_empty())
            .map(|t| t.to_i64_vec())
            .transpose()?;
        let (plans, out) = self.plan(&x.shape, scales.as_deref(), sizes.as_deref())?;
        if self.coord == CoordMode::TfCropAndResize {
            let Some(roi) = ins.opt(1).filter(|r| r.ty.numel() > 0) else {
                bail!(
                    InvalidModel,
                    "resize with tf_crop_and_resize needs a roi operand"
                );
            };
            let (n, k) = (roi.ty.numel(), 2 * plans.len());
            ensure!(
                n == k,
                Shape,
                "resize roi has {n} values, expected {k} (2 per axis)"
            );
            ensure!(
                roi.ty.dtype.is_float(),
                Type,
                "resize roi must be a float tensor, got {}",
                roi.ty.dtype
            );
        }
        Ok(vec![TensorType::new(x.dtype, out)])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = arg(ins, 0)?;
        let scales = opt_arg(ins, 2)
            .filter(|t| !t.is_empty())
            .map(scale_values)
            .transpose()?;
        let sizes = opt_arg(ins, 3)
            .filter(|t| !t.is_empty())
            .map(|t| t.to_i64_vec())
            .transpose()?;
        let (plans, out) = self.plan(x.shape(), scales.as_deref(), sizes.as_deref())?;
        let rois = self.rois(opt_arg(ins, 1), &plans)?;
        let passes = self.passes(x.shape(), &plans, &rois);
        let y = match (self.mode, x) {
            (_, Tensor::Bool(_)) => bail!(Type, "resize is not defined for bool tensors"),
            (ResizeMode::Nearest, x) => dispatch!(x, a => resize_nearest(a, &passes, &out)?),
            (_, x) => {
                let mut shape = x.shape().to_vec();
                let mut data = x.to_f64_vec();
                for (axis, t) in &passes {
                    data = interpolate(&data, split(&shape, *axis), t);
                    shape[*axis] = t.fill.len();
                }
                match x {
                    Tensor::F32(_) => {
                        Tensor::from_vec(&out, data.iter().map(|&v| v as f32).collect())?
                    }
                    Tensor::F64(_) => Tensor::from_vec(&out, data)?,
                    _ => Tensor::from_f64_fn(&TensorType::new(x.dtype(), out), |i| {
                        data[i].round_ties_even()
                    }),
                }
            }
        };
        Ok(vec![y])
    }
    fn flops(&self, ins: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        let taps = match self.mode {
            ResizeMode::Nearest => return 0,
            ResizeMode::Linear => 2,
            ResizeMode::Cubic => 4,
        };
        let changed = match ins.first().copied().flatten() {
            Some(x) => x
                .shape
                .iter()
                .zip(&outs[0].shape)
                .filter(|(a, b)| a != b)
                .count()
                .max(1),
            None => 1,
        };
        2 * taps * changed as u64 * outs[0].numel() as u64
    }
}

fn scale_values(t: &Tensor) -> Result<Vec<f64>> {
    match t {
        Tensor::F32(_) | Tensor::F64(_) => Ok(t.to_f64_vec()),
        t => bail!(
            Type,
            "resize scales must be a float tensor, got {}",
            t.dtype()
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::norm::test_support::*;
    use kiln_core::{Attr, ErrorKind, Tensor};

    // Expected values: onnxruntime 1.32, except where noted (the ONNX reference).

    fn x() -> Tensor {
        data(&[1, 1, 3, 4], 7, 11, 2.0, 1.0)
    }

    fn s(v: &[&str]) -> Vec<(&'static str, Attr)> {
        let names = ["mode", "coordinate_transformation_mode", "nearest_mode"];
        names
            .iter()
            .zip(v)
            .map(|(n, v)| (*n, Attr::Str(v.to_string())))
            .collect()
    }

    fn scaled(attrs: &[(&str, Attr)], scales: &[f32]) -> Tensor {
        let sc = f32s(&[scales.len()], scales);
        run(&op("resize", attrs), &[Some(&x()), None, Some(&sc)], 1)
            .unwrap()
            .remove(0)
    }

    fn sized(attrs: &[(&str, Attr)], sizes: &[i64]) -> Tensor {
        run(
            &op("resize", attrs),
            &[Some(&x()), None, None, Some(&i64s(sizes))],
            1,
        )
        .unwrap()
        .remove(0)
    }

    #[test]
    fn nearest_asymmetric_floor_like_upsample() {
        let a = s(&["nearest", "asymmetric", "floor"]);
        let up = scaled(&a, &[1.0, 1.0, 2.0, 3.0]);
        let row = |v: [f32; 4]| v.iter().flat_map(|&e| [e; 3]).collect::<Vec<_>>();
        let mut want = Vec::new();
        for r in [
            [-1.0, 2.5, 0.5, 4.0],
            [2.0, 0.0, 3.5, 1.5],
            [-0.5, 3.0, 1.0, -1.0],
        ] {
            want.extend(row(r));
            want.extend(row(r));
        }
        close(&up, &[1, 1, 6, 12], &want);
        close(
            &scaled(&a, &[1.0, 1.0, 0.6, 0.5]),
            &[1, 1, 1, 2],
            &[-1.0, 0.5],
        );
    }

    #[test]
    fn nearest_half_pixel_round_prefer_floor() {
        let up = scaled(&[], &[1.0, 1.0, 2.5, 1.5]);
        #[rustfmt::skip]
        close(&up, &[1, 1, 7, 6], &[
            -1.0, -1.0, 2.5, 0.5, 0.5, 4.0, -1.0, -1.0, 2.5, 0.5, 0.5, 4.0, -1.0, -1.0, 2.5, 0.5, 0.5, 4.0,
            2.0, 2.0, 0.0, 3.5, 3.5, 1.5, 2.0, 2.0, 0.0, 3.5, 3.5, 1.5, -0.5, -0.5, 3.0, 1.0, 1.0, -1.0,
            -0.5, -0.5, 3.0, 1.0, 1.0, -1.0,
        ]);
        close(
            &scaled(&[], &[1.0, 1.0, 0.7, 0.6]),
            &[1, 1, 2, 2],
            &[-1.0, 0.5, -0.5, 1.0],
        );
    }

    #[test]
    fn linear_half_pixel() {
        let a = s(&["linear"]);
        #[rustfmt::skip]
        close(&scaled(&a, &[1.0, 1.0, 2.0, 1.5]), &[1, 1, 6, 6], &[
            -1.0, 0.75, 2.1666667, 0.8333335, 2.25, 4.0, -0.25, 0.8125, 1.7708333, 1.3541667, 2.3125, 3.375, 1.25,
            0.9375, 0.97916657, 2.395833, 2.4375, 2.125, 1.375, 1.0625, 1.1041665, 2.520833, 1.875, 0.875, 0.125,
            1.1875, 2.1458333, 1.7291667, 0.625, -0.375, -0.5, 1.25, 2.6666665, 1.3333335, 0.0, -1.0,
        ]);
        let down = scaled(&a, &[1.0, 1.0, 0.7, 0.6]);
        close(
            &down,
            &[1, 1, 2, 2],
            &[0.41666663, 1.1428572, 0.9047619, 1.8928573],
        );
    }

    #[test]
    fn linear_align_corners() {
        let a = s(&["linear", "align_corners"]);
        #[rustfmt::skip]
        close(&scaled(&a, &[1.0, 1.0, 2.0, 2.0]), &[1, 1, 6, 8], &[
            -1.0, 0.5, 2.0, 1.9285715, 1.0714285, 0.99999976, 2.5, 4.0, 0.19999999, 0.7571429, 1.3142858, 1.5571429,
            1.6428571, 1.8857143, 2.4428573, 3.0, 1.4000001, 1.0142857, 0.6285714, 1.1857142, 2.2142856, 2.7714288,
            2.3857143, 2.0, 1.4999999, 1.1142857, 0.72857153, 1.2857143, 2.3142855, 2.7142859, 1.8571429, 0.9999999,
            0.49999994, 1.0571429, 1.6142857, 1.8571429, 1.942857, 1.7142859, 0.8571429, -5.9604645e-08, -0.5, 1.0,
            2.5, 2.4285712, 1.5714285, 0.71428585, -0.14285707, -1.0,
        ]);
        close(
            &sized(&a, &[1, 1, 2, 3]),
            &[1, 1, 2, 3],
            &[-1.0, 1.5, 4.0, -0.5, 2.0, -1.0],
        );
        // A scale whose output size is not whole: the ONNX reference divides by
        // scale·length − 1, not by the rounded length − 1 (onnxruntime gives
        // [-1, 4, -0.5, -1] here); kiln follows the reference and its conformance data.
        let odd = scaled(&a, &[1.0, 1.0, 0.7, 0.6]);
        close(
            &odd,
            &[1, 1, 2, 2],
            &[-1.0, 0.99999946, -0.045454692, 1.1688313],
        );
    }

    #[test]
    fn linear_pytorch_half_pixel() {
        let a = s(&["linear", "pytorch_half_pixel"]);
        #[rustfmt::skip]
        close(&scaled(&a, &[1.0, 1.0, 2.0, 2.5]), &[1, 1, 6, 10], &[
            -1.0, -0.6499999, 0.75, 2.15, 1.9000001, 1.0999999, 0.84999967, 2.25, 3.6500003, 4.0, -0.25,
            -0.037499905, 0.8125, 1.6624999, 1.6875, 1.4375, 1.4624999, 2.3125, 3.1625001, 3.375, 1.25, 1.1874999,
            0.9375, 0.68750006, 1.2624999, 2.1125002, 2.6875, 2.4375, 2.1875, 2.125, 1.375, 1.3125, 1.0625, 0.8125,
            1.3875, 2.2375, 2.6750002, 1.875, 1.0749998, 0.875, 0.125, 0.33750007, 1.1875, 2.0375, 2.0625, 1.8125,
            1.4250002, 0.625, -0.17500019, -0.375, -0.5, -0.14999992, 1.25, 2.6499999, 2.4, 1.5999999, 0.8000002,
            0.0, -0.8000002, -1.0,
        ]);
        // Length-1 outputs sample the first row (coordinate -0.5).
        close(
            &sized(&a, &[1, 1, 1, 3]),
            &[1, 1, 1, 3],
            &[-0.4166666, 1.5, 3.4166665],
        );
    }

    #[test]
    fn cubic_half_pixel() {
        #[rustfmt::skip]
        close(&scaled(&s(&["cubic"]), &[1.0, 1.0, 2.0, 2.0]), &[1, 1, 6, 8], &[
            -1.746727, -0.30130768, 2.1113968, 2.4660034, 0.4812622, 0.83586884, 3.2485733, 4.6939926, -0.44974518,
            0.2541275, 1.4204025, 1.8392105, 1.2293015, 1.7191086, 2.991127, 3.759201, 1.724678, 1.1821213,
            0.25333405, 0.77788544, 2.4745255, 3.2120743, 2.6005173, 2.2505646, 1.8906937, 1.3481369, 0.41934967,
            1.0081024, 2.8331451, 2.9643478, 1.3541031, 0.39780426, -0.045448303, 0.6584244, 1.8246994, 2.3998566,
            2.1026459, 1.1158218, -0.044258118, -0.75281525, -1.1939926, 0.2514267, 2.6641312, 3.2324905,
            1.6752548, 0.01108551, -0.90125275, -1.4746094,
        ]);
    }

    #[test]
    fn linear_on_a_subset_of_axes() {
        // N-linear over axes 1 and 3 of a rank-4 tensor (onnxruntime refuses this layout;
        // expected values from the ONNX reference).
        let v = data(&[2, 3, 2, 3], 5, 13, 2.0, 1.5);
        let mut a = s(&["linear"]);
        a.push(("axes", Attr::Ints(vec![1, 3])));
        let sc = f32s(&[2], &[2.0, 0.5]);
        let out = run(&op("resize", &a), &[Some(&v), None, Some(&sc)], 1).unwrap();
        #[rustfmt::skip]
        close(&out[0], &[2, 6, 2, 1], &[
            -0.25, 0.75, 0.25, 1.25, 1.25, 2.25, 1.4375, 2.4375, 0.8125, 1.8125, 0.5, 1.5, 2.5, 0.25, 2.1875, 0.75,
            1.5625, 1.75, 1.75, 1.9375, 2.75, 1.3125, 3.25, 1.0,
        ]);
    }

    #[test]
    fn integer_nearest_is_exact_and_linear_rounds() {
        let v = Tensor::from_vec(&[1, 3], vec![(1i64 << 60) + 1, 5, 7]).unwrap();
        let sc = f32s(&[2], &[1.0, 2.0]);
        let up = run(
            &op("resize", &s(&["nearest", "asymmetric", "floor"])),
            &[Some(&v), None, Some(&sc)],
            1,
        );
        let want = vec![(1i64 << 60) + 1, (1 << 60) + 1, 5, 5, 7, 7];
        assert_eq!(up.unwrap()[0], Tensor::from_vec(&[1, 6], want).unwrap());
        let u8s = Tensor::from_vec(&[1, 2], vec![0u8, 255]).unwrap();
        let sc = f32s(&[2], &[1.0, 2.0]);
        let lin = run(
            &op("resize", &s(&["linear"])),
            &[Some(&u8s), None, Some(&sc)],
            1,
        )
        .unwrap();
        // 63.75 rounds to 64, 191.25 to 191.
        assert_eq!(
            lin[0],
            Tensor::from_vec(&[1, 4], vec![0u8, 64, 191, 255]).unwrap()
        );
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let r = op("resize", &[]);
        let x = x();
        let kind = |ins: &[Option<&Tensor>]| run(&r, ins, 1).unwrap_err().kind;
        let sc = f32s(&[4], &[1.0, 1.0, 2.0, 2.0]);
        let sz = i64s(&[1, 1, 6, 8]);
        assert_eq!(
            kind(&[Some(&x), None, Some(&sc), Some(&sz)]),
            ErrorKind::InvalidModel
        );
        assert_eq!(kind(&[Some(&x)]), ErrorKind::InvalidModel);
        assert_eq!(
            kind(&[Some(&x), None, Some(&f32s(&[2], &[2.0, 2.0]))]),
            ErrorKind::Shape
        );
        assert_eq!(
            kind(&[Some(&x), None, Some(&f32s(&[4], &[1.0, 1.0, 0.0, 2.0]))]),
            ErrorKind::Shape
        );
        assert_eq!(
            kind(&[Some(&x), None, Some(&f32s(&[4], &[1.0, 1.0, 1e30, 1e30]))]),
            ErrorKind::Shape
        );
        assert_eq!(
            kind(&[Some(&x), None, None, Some(&i64s(&[1, 1, -2, 3]))]),
            ErrorKind::Shape
        );
        let crop = op("resize", &s(&["linear", "tf_crop_and_resize"]));
        let no_roi = run(&crop, &[Some(&x), None, Some(&sc)], 1).unwrap_err();
        assert_eq!(no_roi.kind, ErrorKind::InvalidModel);
        let roi = f32s(&[4], &[0.0, 0.0, 1.0, 1.0]);
        let short = run(&crop, &[Some(&x), Some(&roi), Some(&sc)], 1).unwrap_err();
        assert_eq!(short.kind, ErrorKind::Shape);
        let attrs = |k: &str, v: Attr| kiln_core::Attrs(vec![(k.to_string(), v)]);
        let on_axis_0 = crate::ops::Op::from_attrs("resize", attrs("axes", Attr::Ints(vec![0])));
        let scalar = Tensor::scalar(1.0f32);
        let one = f32s(&[1], &[2.0]);
        let e = run(&on_axis_0.unwrap(), &[Some(&scalar), None, Some(&one)], 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Shape);
        let e = crate::ops::Op::from_attrs("resize", attrs("mode", Attr::Str("bilinear".into())));
        assert_eq!(e.unwrap_err().kind, ErrorKind::Attribute);
        let e = crate::ops::Op::from_attrs("resize", attrs("antialias", Attr::Int(1)));
        assert_eq!(e.unwrap_err().kind, ErrorKind::Unsupported);
        let e = crate::ops::Op::from_attrs("resize", attrs("axes", Attr::Ints(vec![2, 2])));
        let r2 = e.unwrap();
        let two = f32s(&[2], &[2.0, 2.0]);
        assert_eq!(
            run(&r2, &[Some(&x), None, Some(&two)], 1).unwrap_err().kind,
            ErrorKind::Attribute
        );
    }
}
