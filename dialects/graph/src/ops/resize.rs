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
mod tests;
