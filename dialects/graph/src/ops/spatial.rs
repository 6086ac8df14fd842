//! Sliding-window geometry shared by conv, conv_transpose and the pools, and the
//! im2col / col2im gathers that turn a convolution into one matrix multiply per group.
//!
//! Every op resolves its attributes (defaults, `auto_pad`, `ceil_mode`) into one explicit
//! [`Geometry`] first, so the kernels only ever see explicit per-dimension numbers and the
//! shape rule and the interpreter cannot disagree about output sizes.

use super::util::resolve_auto_pad;
use kiln_core::{AttrReader, Attrs, Result, bail, ensure};

/// ONNX `auto_pad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoPad {
    #[default]
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

impl AutoPad {
    pub fn parse(s: &str) -> Result<AutoPad> {
        Ok(match s {
            // Some exporters write an empty string for the default.
            "NOTSET" | "" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            other => bail!(
                Attribute,
                "unknown auto_pad '{other}' (expected NOTSET, SAME_UPPER, SAME_LOWER or VALID)"
            ),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AutoPad::NotSet => "NOTSET",
            AutoPad::SameUpper => "SAME_UPPER",
            AutoPad::SameLower => "SAME_LOWER",
            AutoPad::Valid => "VALID",
        }
    }

    pub fn is_same(self) -> bool {
        matches!(self, AutoPad::SameUpper | AutoPad::SameLower)
    }
}

/// The window attributes as written in the model; an empty list means the ONNX default
/// (ones, zeros, or the weights' kernel), so printing gives back exactly what was read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Window {
    pub kernel_shape: Vec<i64>,
    pub strides: Vec<i64>,
    pub pads: Vec<i64>,
    pub dilations: Vec<i64>,
    pub auto_pad: AutoPad,
}

/// Kernel, strides and dilations with defaults filled in for `n` spatial dims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
}

fn to_usize(v: &[i64]) -> Vec<usize> {
    v.iter().map(|&x| x as usize).collect()
}

impl Window {
    /// Reads the window attributes, rejecting values no rank could make valid.
    pub fn read(r: &mut AttrReader) -> Result<Window> {
        let w = Window {
            kernel_shape: r.ints("kernel_shape")?,
            strides: r.ints("strides")?,
            pads: r.ints("pads")?,
            dilations: r.ints("dilations")?,
            auto_pad: AutoPad::parse(&r.str("auto_pad", "NOTSET")?)?,
        };
        w.check_values()?;
        ensure!(
            w.pads.len().is_multiple_of(2),
            Attribute,
            "pads {:?} must list begin values then end values (even length)",
            w.pads
        );
        Ok(w)
    }

    /// Values no rank could make valid (the usize conversions below rely on this).
    fn check_values(&self) -> Result<()> {
        for (name, v, min) in [
            ("kernel_shape", &self.kernel_shape, 1),
            ("strides", &self.strides, 1),
            ("dilations", &self.dilations, 1),
            ("pads", &self.pads, 0),
        ] {
            ensure!(
                v.iter().all(|&x| x >= min),
                Attribute,
                "{name} must all be >= {min}, got {v:?}"
            );
        }
        Ok(())
    }

    pub fn write(&self, a: Attrs) -> Attrs {
        a.ints("kernel_shape", &self.kernel_shape)
            .ints("strides", &self.strides)
            .ints("pads", &self.pads)
            .ints("dilations", &self.dilations)
            .str("auto_pad", self.auto_pad.name(), "NOTSET")
    }

    /// Fills defaults for `n` spatial dims. `weights` is the kernel implied by conv weights
    /// (pools have none and need `kernel_shape`); both must agree when both are given.
    pub fn params(&self, what: &str, n: usize, weights: Option<&[usize]>) -> Result<Params> {
        let check = |name: &str, v: &[i64], len: usize| -> Result<()> {
            ensure!(
                v.is_empty() || v.len() == len,
                Attribute,
                "{what}: {name} {v:?} has {} values but the input has {n} spatial dims (expected {len})",
                v.len()
            );
            Ok(())
        };
        check("kernel_shape", &self.kernel_shape, n)?;
        check("strides", &self.strides, n)?;
        check("dilations", &self.dilations, n)?;
        check("pads", &self.pads, 2 * n)?;
        // `read` checked already; ops built in code get the same guarantee here.
        self.check_values()?;
        let kernel = match weights {
            Some(k) => {
                ensure!(
                    self.kernel_shape.is_empty() || to_usize(&self.kernel_shape) == k,
                    Shape,
                    "{what}: kernel_shape {:?} does not match the weights' spatial shape {k:?}",
                    self.kernel_shape
                );
                ensure!(
                    k.iter().all(|&d| d > 0),
                    Shape,
                    "{what}: weights have an empty kernel {k:?}"
                );
                k.to_vec()
            }
            None => {
                ensure!(
                    !self.kernel_shape.is_empty(),
                    Attribute,
                    "{what} needs the kernel_shape attribute"
                );
                to_usize(&self.kernel_shape)
            }
        };
        let or_ones = |v: &[i64]| {
            if v.is_empty() {
                vec![1; n]
            } else {
                to_usize(v)
            }
        };
        Ok(Params {
            kernel,
            strides: or_ones(&self.strides),
            dilations: or_ones(&self.dilations),
        })
    }
}

/// One explicit sliding-window geometry over the spatial dims. For conv and the pools,
/// `input` is the operand image and `output` the result; conv_transpose uses the adjoint
/// convolution, so there `input` is its (large) result and `output` its operand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub input: Vec<usize>,
    pub output: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// Negative only for conv_transpose with an `output_shape` larger than the natural one.
    pub pad_begin: Vec<isize>,
    pub pad_end: Vec<isize>,
}

/// One output position's window along one dim: its taps inside the input are the
/// arithmetic progression `start, start + step, …` (`count` of them), and `padded` taps fall
/// inside the explicitly padded input (AveragePool's count_include_pad divisor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimWindow {
    pub start: usize,
    pub step: usize,
    pub count: usize,
    pub padded: usize,
}

impl Geometry {
    /// Geometry of conv and the pools. `ceil_mode` rounds the output size up, except that
    /// the last window must start inside the input or its left padding (the ONNX and
    /// PyTorch rule), so no output reads nothing but right padding.
    pub fn forward(
        win: &Window,
        what: &str,
        input: &[usize],
        weights: Option<&[usize]>,
        ceil_mode: bool,
    ) -> Result<Geometry> {
        let n = input.len();
        ensure!(n > 0, Shape, "{what} needs at least one spatial dim");
        ensure!(
            input.iter().all(|&d| d > 0),
            Shape,
            "{what}: spatial dims {input:?} must be non-empty"
        );
        let p = win.params(what, n, weights)?;
        let pads = resolve_auto_pad(
            win.auto_pad.name(),
            input,
            &p.kernel,
            &p.strides,
            &p.dilations,
            &win.pads,
        )?;
        let mut output = Vec::with_capacity(n);
        for i in 0..n {
            let eff = (p.kernel[i] - 1) * p.dilations[i] + 1;
            let padded = input[i] + pads[i] + pads[i + n];
            ensure!(
                padded >= eff,
                Shape,
                "{what}: spatial dim {i} is {} with padding, smaller than the window ({eff} = kernel {} with dilation {})",
                padded,
                p.kernel[i],
                p.dilations[i]
            );
            let span = padded - eff;
            let s = p.strides[i];
            let mut o = if ceil_mode {
                span.div_ceil(s) + 1
            } else {
                span / s + 1
            };
            if ceil_mode && (o - 1) * s >= input[i] + pads[i] {
                o -= 1;
            }
            output.push(o);
        }
        Ok(Geometry {
            input: input.to_vec(),
            output,
            kernel: p.kernel,
            strides: p.strides,
            dilations: p.dilations,
            pad_begin: pads[..n].iter().map(|&x| x as isize).collect(),
            pad_end: pads[n..].iter().map(|&x| x as isize).collect(),
        })
    }

    pub fn kernel_size(&self) -> usize {
        self.kernel.iter().product()
    }

    pub fn input_size(&self) -> usize {
        self.input.iter().product()
    }

    pub fn output_size(&self) -> usize {
        self.output.iter().product()
    }

    /// Input coordinate of tap `k` at output position `o` along dim `i`.
    fn coord(&self, i: usize, k: usize, o: usize) -> isize {
        (o * self.strides[i] + k * self.dilations[i]) as isize - self.pad_begin[i]
    }

    /// Per dim: entry `k * output[i] + o` is the input coordinate of tap `k` at output `o`,
    /// or -1 where it falls in the padding.
    fn taps(&self) -> Vec<Vec<isize>> {
        (0..self.input.len())
            .map(|i| {
                let (d, out) = (self.input[i] as isize, self.output[i]);
                let mut t = Vec::with_capacity(self.kernel[i] * out);
                for k in 0..self.kernel[i] {
                    for o in 0..out {
                        let c = self.coord(i, k, o);
                        t.push(if (0..d).contains(&c) { c } else { -1 });
                    }
                }
                t
            })
            .collect()
    }

    /// Walks the im2col matrix ([channels · kernel, output] row-major) in runs along the
    /// output's last dim: `f(row, run, channel, base, taps)` where `base` is the input
    /// offset (within the channel) of the outer dims, or `None` when they lie in padding,
    /// and `taps` the last dim's coordinates for this run.
    fn for_each_run(
        &self,
        channels: usize,
        mut f: impl FnMut(usize, usize, usize, Option<usize>, &[isize]),
    ) {
        let n = self.input.len();
        let taps = self.taps();
        let in_strides = row_major_strides(&self.input);
        let kprod = self.kernel_size();
        let last_out = self.output[n - 1];
        let runs: usize = self.output[..n - 1].iter().product();
        let mut k = vec![0usize; n];
        let mut o = vec![0usize; n - 1];
        for c in 0..channels {
            for kf in 0..kprod {
                let mut rem = kf;
                for i in (0..n).rev() {
                    k[i] = rem % self.kernel[i];
                    rem /= self.kernel[i];
                }
                let last = &taps[n - 1][k[n - 1] * last_out..][..last_out];
                o.fill(0);
                for run in 0..runs {
                    let mut base = Some(0usize);
                    for i in 0..n - 1 {
                        let t = taps[i][k[i] * self.output[i] + o[i]];
                        base = if t < 0 {
                            None
                        } else {
                            base.map(|b| b + t as usize * in_strides[i])
                        };
                    }
                    f(c * kprod + kf, run, c, base, last);
                    for i in (0..n - 1).rev() {
                        o[i] += 1;
                        if o[i] < self.output[i] {
                            break;
                        }
                        o[i] = 0;
                    }
                }
            }
        }
    }

    /// Gathers `x` ([channels, input]) into `col` ([channels · kernel, output]), zeros in
    /// the padding.
    pub fn im2col<T: Copy + Default>(&self, x: &[T], channels: usize, col: &mut [T]) {
        let (ip, op) = (self.input_size(), self.output_size());
        let last = self.output[self.output.len() - 1];
        self.for_each_run(channels, |row, run, c, base, taps| {
            let dst = &mut col[row * op + run * last..][..last];
            match base {
                None => dst.fill(T::default()),
                Some(b) => {
                    let src = &x[c * ip + b..(c + 1) * ip];
                    for (d, &t) in dst.iter_mut().zip(taps) {
                        *d = if t < 0 { T::default() } else { src[t as usize] };
                    }
                }
            }
        });
    }

    /// The adjoint of [`Geometry::im2col`]: adds every `col` entry into the input position
    /// it was gathered from (taps in the padding are dropped).
    pub fn col2im<T: Copy + std::ops::Add<Output = T>>(
        &self,
        col: &[T],
        channels: usize,
        x: &mut [T],
    ) {
        let (ip, op) = (self.input_size(), self.output_size());
        let last = self.output[self.output.len() - 1];
        self.for_each_run(channels, |row, run, c, base, taps| {
            if let Some(b) = base {
                let src = &col[row * op + run * last..][..last];
                let dst = &mut x[c * ip + b..(c + 1) * ip];
                for (&s, &t) in src.iter().zip(taps) {
                    if t >= 0 {
                        dst[t as usize] = dst[t as usize] + s;
                    }
                }
            }
        });
    }

    /// The pooling windows: `[dim][output position]`.
    pub fn pool_windows(&self) -> Vec<Vec<DimWindow>> {
        (0..self.input.len())
            .map(|i| {
                let d = self.input[i] as isize;
                let padded_end = d + self.pad_end[i];
                (0..self.output[i])
                    .map(|o| {
                        let taps: Vec<isize> =
                            (0..self.kernel[i]).map(|k| self.coord(i, k, o)).collect();
                        let inside = || taps.iter().filter(|&&c| (0..d).contains(&c));
                        DimWindow {
                            start: inside().next().map_or(0, |&c| c as usize),
                            step: self.dilations[i],
                            count: inside().count(),
                            padded: taps.iter().filter(|&&c| c < padded_end).count(),
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

/// Row-major element strides of `shape`.
pub fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

#[cfg(test)]
pub(super) mod test_util {
    use crate::ops::{InferInput, InferInputs, OpDef};
    use kiln_core::{AttrReader, Attrs, Error, Tensor, TensorType};

    /// A deterministic f32 test pattern: multiples of 1/4 in [-1.25, 1.25], exactly
    /// representable, mirrored in the numpy script that produced the expected values
    /// (`((i * mul + add) % 11) / 4 - 1.25`).
    pub fn pat(shape: &[usize], mul: usize, add: usize) -> Tensor {
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|i| ((i * mul + add) % 11) as f32 / 4.0 - 1.25)
            .collect();
        Tensor::from_vec(shape, v).unwrap()
    }

    pub fn build<O: OpDef>(name: &str, attrs: Attrs) -> Result<O, Error> {
        let mut r = AttrReader::new(attrs);
        let op = O::from_attrs(name, &mut r)?;
        r.finish()?;
        Ok(op)
    }

    /// Runs the shape rule and the interpreter and checks that they agree and that the
    /// attributes round-trip.
    pub fn run<O: OpDef + PartialEq + std::fmt::Debug>(
        op: &O,
        ins: &[Option<&Tensor>],
        n_out: usize,
    ) -> Result<Vec<Tensor>, Error> {
        let again = build::<O>(op.name(), op.attrs()).unwrap();
        assert_eq!(&again, op, "attributes must round-trip");
        let types: Vec<Option<TensorType>> = ins.iter().map(|t| t.map(|t| t.ty())).collect();
        let infer_ins: Vec<Option<InferInput>> = types
            .iter()
            .map(|t| t.as_ref().map(|ty| InferInput { ty, value: None }))
            .collect();
        let tys = op.infer(InferInputs {
            ins: &infer_ins,
            n_outputs: n_out,
        })?;
        let outs = op.eval(ins, n_out)?;
        let got: Vec<TensorType> = outs.iter().map(|t| t.ty()).collect();
        assert_eq!(got, tys, "eval and infer disagree");
        Ok(outs)
    }

    pub fn assert_close(got: &Tensor, shape: &[usize], want: &[f64]) {
        assert_eq!(got.shape(), shape, "shape");
        let g = got.to_f64_vec();
        assert_eq!(g.len(), want.len());
        for (i, (a, b)) in g.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 + 1e-5 * b.abs(),
                "element {i}: got {a}, want {b}\n got {g:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(
        kernel: &[i64],
        strides: &[i64],
        pads: &[i64],
        dil: &[i64],
        auto_pad: AutoPad,
    ) -> Window {
        Window {
            kernel_shape: kernel.to_vec(),
            strides: strides.to_vec(),
            pads: pads.to_vec(),
            dilations: dil.to_vec(),
            auto_pad,
        }
    }

    #[test]
    fn ceil_mode_keeps_last_window_inside() {
        // 2 wide, pads 1/1, kernel 3, stride 3: ceil gives 2 windows, but the second would
        // start on the right padding, so only one remains.
        let w = window(&[3], &[3], &[1, 1], &[], AutoPad::NotSet);
        assert_eq!(
            Geometry::forward(&w, "t", &[2], None, true).unwrap().output,
            vec![1]
        );
        // 4 wide, kernel 3, stride 2: floor 1, ceil 2.
        let w = window(&[3], &[2], &[], &[], AutoPad::NotSet);
        assert_eq!(
            Geometry::forward(&w, "t", &[4], None, false)
                .unwrap()
                .output,
            vec![1]
        );
        assert_eq!(
            Geometry::forward(&w, "t", &[4], None, true).unwrap().output,
            vec![2]
        );
    }

    #[test]
    fn same_and_valid() {
        let w = window(&[3, 2], &[2, 1], &[], &[1, 2], AutoPad::SameLower);
        let g = Geometry::forward(&w, "t", &[5, 4], None, false).unwrap();
        assert_eq!(g.output, vec![3, 4]);
        assert_eq!(
            (g.pad_begin.clone(), g.pad_end.clone()),
            (vec![1, 1], vec![1, 1])
        );
        let w = window(&[3], &[2], &[], &[], AutoPad::Valid);
        assert_eq!(
            Geometry::forward(&w, "t", &[8], None, false)
                .unwrap()
                .output,
            vec![3]
        );
    }

    #[test]
    fn bad_windows() {
        let w = window(&[5], &[], &[], &[], AutoPad::NotSet);
        let e = Geometry::forward(&w, "max_pool", &[3], None, false).unwrap_err();
        assert_eq!(e.kind, kiln_core::ErrorKind::Shape);
        assert!(
            e.message.contains("smaller than the window"),
            "{}",
            e.message
        );
        let w = window(&[3, 3], &[1], &[], &[], AutoPad::NotSet);
        let e = Geometry::forward(&w, "conv", &[5, 5], None, false).unwrap_err();
        assert!(e.message.contains("strides [1]"), "{}", e.message);
        let w = window(&[3], &[], &[], &[], AutoPad::NotSet);
        let e = Geometry::forward(&w, "conv", &[5], Some(&[2]), false).unwrap_err();
        assert_eq!(e.kind, kiln_core::ErrorKind::Shape);
    }

    #[test]
    fn im2col_col2im_are_adjoint() {
        // <im2col(x), y> == <x, col2im(y)> for any x, y: checks both gathers at once,
        // including strides, dilations and asymmetric padding.
        let w = window(&[2, 3], &[2, 1], &[1, 0, 0, 2], &[1, 2], AutoPad::NotSet);
        let g = Geometry::forward(&w, "t", &[5, 4], None, false).unwrap();
        let (c, ip, op, kp) = (2, g.input_size(), g.output_size(), g.kernel_size());
        let x: Vec<f64> = (0..c * ip).map(|i| ((i * 7) % 5) as f64 - 2.0).collect();
        let y: Vec<f64> = (0..c * kp * op)
            .map(|i| ((i * 3) % 7) as f64 - 3.0)
            .collect();
        let mut col = vec![0.0; c * kp * op];
        g.im2col(&x, c, &mut col);
        let mut back = vec![0.0; c * ip];
        g.col2im(&y, c, &mut back);
        let lhs: f64 = col.iter().zip(&y).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
        assert_eq!(lhs, rhs);
        assert!(lhs != 0.0);
    }
}
