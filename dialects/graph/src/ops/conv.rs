//! Convolutions: `conv` and `conv_transpose`, N-D over the spatial dims of NC(D…) tensors.
//!
//! Both run as one matrix multiply per (image, group): conv gathers its input with im2col
//! and multiplies the weights by it; conv_transpose multiplies the transposed weights by
//! the input and scatters the columns back with col2im. That keeps the interpreter's inner
//! loop inside ndarray's GEMM, which matters because it is the oracle for calibration runs.

use super::activation::{
    Activation, RESIDUAL, SLOPE, apply_epilogue, check_epilogue, epilogue_flops,
};
use super::channel_layout::Layout;
use super::spatial::{AutoPad, Geometry, Window};
use super::util::{arg, opt_arg};
use super::{InferInputs, OpDef};
use kiln_core::{AttrReader, Attrs, Element, Result, Tensor, TensorType, bail, ensure};
use ndarray::LinalgScalar;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayD, ArrayView2, ArrayViewMut2, IxDyn, s};

/// The operand shapes every convolution shares: X `[N, C, D…]`, W, optional B `[M]`.
struct Operands<'a> {
    x: &'a [usize],
    w: &'a [usize],
    b: Option<&'a [usize]>,
}

/// Checks ranks, element types and the bias, for both convolutions.
fn check_operands(
    what: &str,
    x: &TensorType,
    w: &TensorType,
    b: Option<&TensorType>,
) -> Result<()> {
    ensure!(
        x.dtype.is_float(),
        Type,
        "{what} needs f32 or f64 operands, got {}",
        x.dtype
    );
    ensure!(
        w.dtype == x.dtype && b.is_none_or(|b| b.dtype == x.dtype),
        Type,
        "{what} operands must share one element type: X {}, W {}{}",
        x.dtype,
        w.dtype,
        b.map(|b| format!(", B {}", b.dtype)).unwrap_or_default()
    );
    ensure!(
        x.rank() >= 3,
        Shape,
        "{what} input X {x} must be [N, C, spatial…] with at least one spatial dim"
    );
    ensure!(
        w.rank() == x.rank(),
        Shape,
        "{what} weights W {w} must have the same rank as X {x}"
    );
    Ok(())
}

fn check_bias(what: &str, b: Option<&[usize]>, m: usize) -> Result<()> {
    if let Some(b) = b {
        ensure!(
            b == [m],
            Shape,
            "{what} bias B {b:?} must be [{m}], one value per output channel"
        );
    }
    Ok(())
}

/// The epilogue operands' shape rule (shared by both convolutions).
fn epilogue_types(what: &str, act: &Activation, out: &TensorType, ins: &InferInputs) -> Result<()> {
    check_epilogue(
        what,
        act,
        out,
        ins.opt(RESIDUAL).map(|i| i.ty),
        ins.opt(SLOPE).map(|i| i.ty),
    )
}

fn read_group(r: &mut AttrReader) -> Result<usize> {
    let g = r.int("group", 1)?;
    ensure!(g >= 1, Attribute, "group must be >= 1, got {g}");
    Ok(g as usize)
}

/// The data of a float tensor as a standard-layout slice view (copied only if strided).
fn contiguous<T: Clone>(a: &ArrayD<T>) -> ndarray::CowArray<'_, T, IxDyn> {
    a.as_standard_layout()
}

/// `conv(X, W, B?, Y?, slope?) {act}`: W is `[M, C/group, k…]`. Y (a residual broadcast
/// to the result) and the fused activation form the epilogue `act(W∗X + B + Y)`; the slope
/// is operand 4 for `act="prelu"` (see [`super::activation`]).
///
/// With `layout="nhwc"` X, Y and the result are channels last (`[N, D…, C]`) and the slope
/// broadcasts to that result; W keeps its `[M, C/group, k…]` meaning (kernels pack weights
/// for their own loops anyway), see [`Layout`].
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    pub window: Window,
    pub group: usize,
    pub act: Activation,
    pub layout: Layout,
}

/// Resolved convolution sizes.
struct ConvPlan {
    n: usize,
    c: usize,
    m: usize,
    group: usize,
    geo: Geometry,
}

impl Conv {
    fn plan(&self, o: &Operands) -> Result<ConvPlan> {
        let (x, w) = (o.x, o.w);
        let (n, c, m, cg) = (x[0], x[1], w[0], w[1]);
        let g = self.group;
        ensure!(
            cg * g == c,
            Shape,
            "conv: W {w:?} expects {cg} channels per group × group {g} = {} input channels, but X {x:?} has {c}",
            cg * g
        );
        ensure!(
            m % g == 0,
            Shape,
            "conv: {m} output channels (W {w:?}) are not divisible by group {g}"
        );
        check_bias("conv", o.b, m)?;
        let geo = Geometry::forward(&self.window, "conv", &x[2..], Some(&w[2..]), false)?;
        Ok(ConvPlan {
            n,
            c,
            m,
            group: g,
            geo,
        })
    }

    fn out_shape(p: &ConvPlan) -> Vec<usize> {
        [p.n, p.m]
            .into_iter()
            .chain(p.geo.output.iter().copied())
            .collect()
    }
}

fn conv_kernel<T: LinalgScalar + Element>(
    p: &ConvPlan,
    x: &ArrayD<T>,
    w: &ArrayD<T>,
    b: Option<&ArrayD<T>>,
) -> Tensor {
    let (x, w) = (contiguous(x), contiguous(w));
    let (xs, ws) = (
        x.as_slice().expect("standard layout"),
        w.as_slice().expect("standard layout"),
    );
    let geo = &p.geo;
    let (ip, op, kp) = (geo.input_size(), geo.output_size(), geo.kernel_size());
    let (cg, mg) = (p.c / p.group, p.m / p.group);
    let w2 = ArrayView2::from_shape((p.m, cg * kp), ws).expect("W is [M, C/group, k…]");
    // A 1×1 kernel with unit stride and no padding reads the input as it is.
    let pointwise = kp == 1
        && geo.strides.iter().all(|&s| s == 1)
        && geo.pad_begin.iter().all(|&p| p == 0)
        && ip == op;
    let mut col = if pointwise {
        Vec::new()
    } else {
        vec![T::default(); cg * kp * op]
    };
    let mut out = vec![T::default(); p.n * p.m * op];
    let bias: Option<Vec<T>> = b.map(|b| b.iter().copied().collect());
    for ni in 0..p.n {
        for gi in 0..p.group {
            let xg = &xs[(ni * p.c + gi * cg) * ip..][..cg * ip];
            let cols = if pointwise {
                ArrayView2::from_shape((cg, ip), xg).expect("sizes match")
            } else {
                geo.im2col(xg, cg, &mut col);
                ArrayView2::from_shape((cg * kp, op), &col[..]).expect("sizes match")
            };
            let dst = &mut out[(ni * p.m + gi * mg) * op..][..mg * op];
            let mut dv = ArrayViewMut2::from_shape((mg, op), dst).expect("sizes match");
            general_mat_mul(
                T::from_f64(1.0),
                &w2.slice(s![gi * mg..(gi + 1) * mg, ..]),
                &cols,
                T::default(),
                &mut dv,
            );
            if let Some(bias) = &bias {
                for (mm, mut row) in dv.outer_iter_mut().enumerate() {
                    let bv = bias[gi * mg + mm];
                    row.mapv_inplace(|v| v + bv);
                }
            }
        }
    }
    T::wrap(ArrayD::from_shape_vec(IxDyn(&Conv::out_shape(p)), out).expect("sizes match"))
}

/// Dispatches a float kernel over f32 / f64 operands of one type.
macro_rules! float_conv {
    ($what:literal, $x:expr, $w:expr, $b:expr, |$xa:ident, $wa:ident, $ba:ident| $body:expr) => {
        match ($x, $w) {
            (Tensor::F32($xa), Tensor::F32($wa)) => {
                let $ba = $b.map(|t| t.as_array::<f32>()).transpose()?;
                $body
            }
            (Tensor::F64($xa), Tensor::F64($wa)) => {
                let $ba = $b.map(|t| t.as_array::<f64>()).transpose()?;
                $body
            }
            (x, w) => bail!(
                Type,
                "{} needs f32 or f64 operands of one type, got {} and {}",
                $what,
                x.dtype(),
                w.dtype()
            ),
        }
    };
}

impl OpDef for Conv {
    fn names() -> &'static [&'static str] {
        &["conv"]
    }
    fn name(&self) -> &'static str {
        "conv"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        Ok(Conv {
            window: Window::read(r)?,
            group: read_group(r)?,
            act: Activation::read(r)?,
            layout: Layout::read(r)?,
        })
    }
    fn attrs(&self) -> Attrs {
        let a = self
            .window
            .write(Attrs::new())
            .int("group", self.group as i64, 1);
        self.layout.write(self.act.write(a))
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let (x, w, b) = (ins.ty(0)?, ins.ty(1)?, ins.opt(2).map(|b| b.ty));
        let x = &self.layout.to_nchw_type(x);
        check_operands("conv", x, w, b)?;
        let p = self.plan(&Operands {
            x: &x.shape,
            w: &w.shape,
            b: b.map(|b| &b.shape[..]),
        })?;
        let out = self
            .layout
            .from_nchw_type(&TensorType::new(x.dtype, Conv::out_shape(&p)));
        epilogue_types("conv", &self.act, &out, &ins)?;
        Ok(vec![out])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let (x, w, b) = (arg(ins, 0)?, arg(ins, 1)?, opt_arg(ins, 2));
        let x = &*self.layout.to_nchw(x);
        check_operands("conv", &x.ty(), &w.ty(), b.map(|b| b.ty()).as_ref())?;
        let p = self.plan(&Operands {
            x: x.shape(),
            w: w.shape(),
            b: b.map(|b| b.shape()),
        })?;
        let out = float_conv!("conv", x, w, b, |xa, wa, ba| conv_kernel(&p, xa, wa, ba));
        let out = self.layout.from_nchw(out);
        let (y, slope) = (opt_arg(ins, RESIDUAL), opt_arg(ins, SLOPE));
        check_epilogue(
            "conv",
            &self.act,
            &out.ty(),
            y.map(|t| t.ty()).as_ref(),
            slope.map(|t| t.ty()).as_ref(),
        )?;
        Ok(vec![apply_epilogue(&self.act, out, y, slope)?])
    }
    fn flops(&self, ins: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        let (Some(Some(w)), Some(y)) = (ins.get(1), outs.first()) else {
            return 0;
        };
        // Each output element is a dot product over C/group · prod(k) weights.
        let per_out: usize = w.shape.iter().skip(1).product();
        let has_y = matches!(ins.get(RESIDUAL), Some(Some(_)));
        2 * (y.numel() * per_out) as u64 + epilogue_flops(&self.act, has_y, y)
    }
}

/// `conv_transpose(X, W, B?, Y?, slope?) {act}`: W is `[C, M/group, k…]`; the adjoint of
/// conv, with the same fused epilogue as [`Conv`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConvTranspose {
    pub window: Window,
    pub group: usize,
    pub output_padding: Vec<i64>,
    pub output_shape: Vec<i64>,
    pub act: Activation,
}

impl ConvTranspose {
    /// Sizes per the ONNX spec: the natural output is `s·(in−1) + output_padding + eff_k −
    /// pads`; an explicit `output_shape` (or SAME, which asks for `in·s`) instead fixes the
    /// output and derives the pads, the odd one going to the end for SAME_UPPER and to the
    /// beginning otherwise. Returns the adjoint conv geometry (its `input` is our output).
    fn plan(&self, o: &Operands) -> Result<ConvPlan> {
        let (x, w) = (o.x, o.w);
        let (n, c, g) = (x[0], x[1], self.group);
        ensure!(
            w[0] == c,
            Shape,
            "conv_transpose: W {w:?} has {} input channels but X {x:?} has {c}",
            w[0]
        );
        ensure!(
            c % g == 0,
            Shape,
            "conv_transpose: {c} input channels (X {x:?}) are not divisible by group {g}"
        );
        let m = w[1] * g;
        check_bias("conv_transpose", o.b, m)?;
        let input = &x[2..];
        let nd = input.len();
        ensure!(
            input.iter().all(|&d| d > 0),
            Shape,
            "conv_transpose: spatial dims {input:?} must be non-empty"
        );
        let p = self.window.params("conv_transpose", nd, Some(&w[2..]))?;
        for (name, v) in [
            ("output_padding", &self.output_padding),
            ("output_shape", &self.output_shape),
        ] {
            ensure!(
                v.is_empty() || v.len() == nd,
                Attribute,
                "conv_transpose: {name} {v:?} must have one value per spatial dim ({nd})"
            );
        }
        let adj = |i: usize| self.output_padding.get(i).copied().unwrap_or(0);
        let mut pad_begin = vec![0isize; nd];
        let mut pad_end = vec![0isize; nd];
        let mut output = vec![0usize; nd];
        for i in 0..nd {
            let eff = ((p.kernel[i] - 1) * p.dilations[i] + 1) as i64;
            let natural = (p.strides[i] * (input[i] - 1)) as i64 + adj(i) + eff;
            let target = if !self.output_shape.is_empty() {
                Some(self.output_shape[i])
            } else if self.window.auto_pad.is_same() {
                Some((input[i] * p.strides[i]) as i64)
            } else {
                None
            };
            let (pb, pe) = match (target, self.window.auto_pad) {
                (Some(t), mode) => {
                    // Floor division: a negative total (a larger output) must still split.
                    let total = natural - t;
                    let half = total.div_euclid(2);
                    if mode == AutoPad::SameUpper {
                        (half, total - half)
                    } else {
                        (total - half, half)
                    }
                }
                (None, AutoPad::Valid) => (0, 0),
                (None, _) => (
                    self.window.pads.get(i).copied().unwrap_or(0),
                    self.window.pads.get(i + nd).copied().unwrap_or(0),
                ),
            };
            let out = natural - pb - pe;
            ensure!(
                out > 0,
                Shape,
                "conv_transpose: spatial dim {i} would have size {out} (input {}, stride {}, kernel {}, pads {pb}/{pe})",
                input[i],
                p.strides[i],
                p.kernel[i]
            );
            pad_begin[i] = pb as isize;
            pad_end[i] = pe as isize;
            output[i] = out as usize;
        }
        // The adjoint conv reads our output as its input and produces our operand.
        let geo = Geometry {
            input: output,
            output: input.to_vec(),
            kernel: p.kernel,
            strides: p.strides,
            dilations: p.dilations,
            pad_begin,
            pad_end,
        };
        Ok(ConvPlan {
            n,
            c,
            m,
            group: g,
            geo,
        })
    }

    fn out_shape(p: &ConvPlan) -> Vec<usize> {
        [p.n, p.m]
            .into_iter()
            .chain(p.geo.input.iter().copied())
            .collect()
    }
}

fn conv_transpose_kernel<T: LinalgScalar + Element>(
    p: &ConvPlan,
    x: &ArrayD<T>,
    w: &ArrayD<T>,
    b: Option<&ArrayD<T>>,
) -> Tensor {
    let (x, w) = (contiguous(x), contiguous(w));
    let (xs, ws) = (
        x.as_slice().expect("standard layout"),
        w.as_slice().expect("standard layout"),
    );
    let geo = &p.geo;
    // In the adjoint geometry our operand is the conv "output" and our result its "input".
    let (ip, op, kp) = (geo.output_size(), geo.input_size(), geo.kernel_size());
    let (cg, mg) = (p.c / p.group, p.m / p.group);
    let w2 = ArrayView2::from_shape((p.c, mg * kp), ws).expect("W is [C, M/group, k…]");
    let mut col = vec![T::default(); mg * kp * ip];
    let mut out = vec![T::default(); p.n * p.m * op];
    for ni in 0..p.n {
        for gi in 0..p.group {
            let xg = ArrayView2::from_shape((cg, ip), &xs[(ni * p.c + gi * cg) * ip..][..cg * ip])
                .expect("sizes match");
            let wg = w2.slice(s![gi * cg..(gi + 1) * cg, ..]);
            let mut cv =
                ArrayViewMut2::from_shape((mg * kp, ip), &mut col[..]).expect("sizes match");
            general_mat_mul(T::from_f64(1.0), &wg.t(), &xg, T::default(), &mut cv);
            geo.col2im(&col, mg, &mut out[(ni * p.m + gi * mg) * op..][..mg * op]);
        }
    }
    if let Some(b) = b {
        let bias: Vec<T> = b.iter().copied().collect();
        for (i, chunk) in out.chunks_mut(op).enumerate() {
            let bv = bias[i % p.m];
            chunk.iter_mut().for_each(|v| *v = *v + bv);
        }
    }
    T::wrap(ArrayD::from_shape_vec(IxDyn(&ConvTranspose::out_shape(p)), out).expect("sizes match"))
}

impl OpDef for ConvTranspose {
    fn names() -> &'static [&'static str] {
        &["conv_transpose"]
    }
    fn name(&self) -> &'static str {
        "conv_transpose"
    }
    fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
        let window = Window::read(r)?;
        let group = read_group(r)?;
        let output_padding = r.ints("output_padding")?;
        let output_shape = r.ints("output_shape")?;
        ensure!(
            output_padding.iter().all(|&v| v >= 0),
            Attribute,
            "output_padding must be >= 0, got {output_padding:?}"
        );
        ensure!(
            output_shape.iter().all(|&v| v > 0),
            Attribute,
            "output_shape must be > 0, got {output_shape:?}"
        );
        Ok(ConvTranspose {
            window,
            group,
            output_padding,
            output_shape,
            act: Activation::read(r)?,
        })
    }
    fn attrs(&self) -> Attrs {
        let a = self
            .window
            .write(Attrs::new())
            .int("group", self.group as i64, 1)
            .ints("output_padding", &self.output_padding)
            .ints("output_shape", &self.output_shape);
        self.act.write(a)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let (x, w, b) = (ins.ty(0)?, ins.ty(1)?, ins.opt(2).map(|b| b.ty));
        check_operands("conv_transpose", x, w, b)?;
        let p = self.plan(&Operands {
            x: &x.shape,
            w: &w.shape,
            b: b.map(|b| &b.shape[..]),
        })?;
        let out = TensorType::new(x.dtype, ConvTranspose::out_shape(&p));
        epilogue_types("conv_transpose", &self.act, &out, &ins)?;
        Ok(vec![out])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let (x, w, b) = (arg(ins, 0)?, arg(ins, 1)?, opt_arg(ins, 2));
        check_operands(
            "conv_transpose",
            &x.ty(),
            &w.ty(),
            b.map(|b| b.ty()).as_ref(),
        )?;
        let p = self.plan(&Operands {
            x: x.shape(),
            w: w.shape(),
            b: b.map(|b| b.shape()),
        })?;
        let out = float_conv!("conv_transpose", x, w, b, |xa, wa, ba| {
            conv_transpose_kernel(&p, xa, wa, ba)
        });
        let (y, slope) = (opt_arg(ins, RESIDUAL), opt_arg(ins, SLOPE));
        check_epilogue(
            "conv_transpose",
            &self.act,
            &out.ty(),
            y.map(|t| t.ty()).as_ref(),
            slope.map(|t| t.ty()).as_ref(),
        )?;
        Ok(vec![apply_epilogue(&self.act, out, y, slope)?])
    }
    fn flops(&self, ins: &[Option<&TensorType>], outs: &[TensorType]) -> u64 {
        let (Some(Some(x)), Some(Some(w))) = (ins.first(), ins.get(1)) else {
            return 0;
        };
        // Every input element meets M/group · prod(k) weights.
        let per_in: usize = w.shape.iter().skip(1).product();
        let has_y = matches!(ins.get(RESIDUAL), Some(Some(_)));
        let epi = outs
            .first()
            .map_or(0, |y| epilogue_flops(&self.act, has_y, y));
        2 * (x.numel() * per_in) as u64 + epi
    }
}

#[cfg(test)]
mod tests;
