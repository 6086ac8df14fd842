//! Global pooling: `global_average_pool`, `global_max_pool` and `global_lp_pool` reduce
//! every spatial position of each (image, channel) plane: `[N, C, D…]` → `[N, C, 1…]`.

use super::channel_layout::Layout;
use super::pool::{FLOAT_TYPES, MAX_TYPES, check_input, max_of, pow_abs, read_p, root};
use super::spatial::DimWindow;
use super::util::arg;
use super::{InferInputs, OpDef};
use kiln_core::{AttrReader, Attrs, DType, Element, Result, Tensor, TensorType, bail, ensure};
use ndarray::{ArrayD, IxDyn};

/// Which reduction a global pool applies over all spatial positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalPoolKind {
    Average,
    Max,
    /// The p-norm, p in 1..=64.
    Lp(i64),
}

/// `global_average_pool(X)`, `global_max_pool(X)`, `global_lp_pool(X) {p}`, each with
/// an optional `layout` (channels-last X and result, see [`Layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalPool {
    pub kind: GlobalPoolKind,
    pub layout: Layout,
}

impl GlobalPool {
    fn types(self) -> &'static [DType] {
        match self.kind {
            GlobalPoolKind::Max => MAX_TYPES,
            _ => FLOAT_TYPES,
        }
    }

    fn out_type(self, x: &TensorType) -> Result<TensorType> {
        check_input(self.name(), x, self.types())?;
        ensure!(
            x.shape[2..].iter().all(|&d| d > 0),
            Shape,
            "{}: spatial dims of {x} must be non-empty",
            self.name()
        );
        let shape: Vec<usize> = x
            .shape
            .iter()
            .enumerate()
            .map(|(i, &d)| if i < 2 { d } else { 1 })
            .collect();
        Ok(TensorType::new(x.dtype, shape))
    }
}

fn global_kernel<T: Element + PartialOrd>(
    x: &ArrayD<T>,
    kind: GlobalPoolKind,
    shape: &[usize],
) -> Tensor {
    let x = x.as_standard_layout();
    let planes = shape[0] * shape[1];
    let xs = x.as_slice().expect("standard layout");
    let size = x.len().checked_div(planes).unwrap_or(0);
    let all = DimWindow {
        start: 0,
        step: 1,
        count: size,
        padded: size,
    };
    let vals = xs
        .chunks(size.max(1))
        .take(planes)
        .map(|plane| match kind {
            GlobalPoolKind::Average => {
                T::from_f64(plane.iter().map(|v| v.to_f64()).sum::<f64>() / size as f64)
            }
            GlobalPoolKind::Max => max_of(plane, &[&all], &[1]).0,
            GlobalPoolKind::Lp(p) => {
                T::from_f64(root(plane.iter().map(|v| pow_abs(v.to_f64(), p)).sum(), p))
            }
        })
        .collect();
    T::wrap(ArrayD::from_shape_vec(IxDyn(shape), vals).expect("sizes match"))
}

impl OpDef for GlobalPool {
    fn names() -> &'static [&'static str] {
        &["global_average_pool", "global_max_pool", "global_lp_pool"]
    }
    fn name(&self) -> &'static str {
        match self.kind {
            GlobalPoolKind::Average => "global_average_pool",
            GlobalPoolKind::Max => "global_max_pool",
            GlobalPoolKind::Lp(_) => "global_lp_pool",
        }
    }
    fn from_attrs(name: &str, r: &mut AttrReader) -> Result<Self> {
        let kind = match name {
            "global_max_pool" => GlobalPoolKind::Max,
            "global_lp_pool" => GlobalPoolKind::Lp(read_p(r)?),
            _ => GlobalPoolKind::Average,
        };
        Ok(GlobalPool {
            kind,
            layout: Layout::read(r)?,
        })
    }
    fn attrs(&self) -> Attrs {
        let a = match self.kind {
            GlobalPoolKind::Lp(p) => Attrs::new().int("p", p, 2),
            _ => Attrs::new(),
        };
        self.layout.write(a)
    }
    fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
        let x = self.layout.to_nchw_type(ins.ty(0)?);
        Ok(vec![self.layout.from_nchw_type(&self.out_type(&x)?)])
    }
    fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
        let x = &*self.layout.to_nchw(arg(ins, 0)?);
        let shape = self.out_type(&x.ty())?.shape;
        let y = match x {
            Tensor::F32(a) => global_kernel(a, self.kind, &shape),
            Tensor::F64(a) => global_kernel(a, self.kind, &shape),
            Tensor::I8(a) => global_kernel(a, self.kind, &shape),
            Tensor::U8(a) => global_kernel(a, self.kind, &shape),
            t => bail!(
                Type,
                "{} is not defined for {} tensors",
                self.name(),
                t.dtype()
            ),
        };
        Ok(vec![self.layout.from_nchw(y)])
    }
    fn flops(&self, ins: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
        ins.first()
            .copied()
            .flatten()
            .map_or(0, |x| x.numel() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::spatial::test_util::{assert_close, build, pat, run};
    use super::*;
    use crate::ops::InferInput;
    use kiln_core::{Attr, ErrorKind};

    // Expected values: onnxruntime 1.32 on the same `pat` inputs (see test_util::pat).
    const GLP3: &[f64] = &[1.52055, 1.652872, 1.432164, 1.60174, 1.695606, 1.316409];
    const GLP2: &[f64] = &[1.85405, 2.106537, 1.732051, 1.984313, 2.12132, 1.620185];

    #[test]
    fn average_and_max() {
        let x = pat(&[2, 3, 2, 3], 3, 1);
        let gap: GlobalPool = build("global_average_pool", Attrs::new()).unwrap();
        let y = run(&gap, &[Some(&x)], 1).unwrap();
        let want = [-0.04166667, -0.125, 0.25, -0.2916667, 0.08333334, 0.0];
        assert_close(&y[0], &[2, 3, 1, 1], &want);
        let gmp: GlobalPool = build("global_max_pool", Attrs::new()).unwrap();
        let y = run(&gmp, &[Some(&x)], 1).unwrap();
        assert_close(&y[0], &[2, 3, 1, 1], &[1.25, 1.0, 1.25, 1.0, 1.25, 1.0]);
        assert_eq!(gmp.flops(&[Some(&x.ty())], &[y[0].ty()]), 36);
        let y = run(&gmp, &[Some(&x.cast(DType::I8))], 1).unwrap();
        assert_eq!(y[0].dtype(), DType::I8);
    }

    #[test]
    fn lp_norms() {
        let x = pat(&[2, 3, 2, 3], 3, 1);
        let op: GlobalPool =
            build("global_lp_pool", Attrs(vec![("p".into(), Attr::Int(3))])).unwrap();
        assert_close(&run(&op, &[Some(&x)], 1).unwrap()[0], &[2, 3, 1, 1], GLP3);
        let op: GlobalPool = build("global_lp_pool", Attrs::new()).unwrap();
        assert_eq!(op.kind, GlobalPoolKind::Lp(2));
        assert_close(&run(&op, &[Some(&x)], 1).unwrap()[0], &[2, 3, 1, 1], GLP2);
    }

    #[test]
    fn errors() {
        let gap: GlobalPool = build("global_average_pool", Attrs::new()).unwrap();
        let x = pat(&[2, 3, 2, 3], 3, 1);
        assert_eq!(
            run(&gap, &[Some(&x.cast(DType::U8))], 1).unwrap_err().kind,
            ErrorKind::Type
        );
        let e = run(&gap, &[Some(&pat(&[2, 3], 1, 0))], 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Shape);
        let e = build::<GlobalPool>(
            "global_average_pool",
            Attrs(vec![("p".into(), Attr::Int(3))]),
        );
        assert_eq!(e.unwrap_err().kind, ErrorKind::Attribute);
        let e = build::<GlobalPool>("global_lp_pool", Attrs(vec![("p".into(), Attr::Int(0))]));
        assert_eq!(e.unwrap_err().kind, ErrorKind::Attribute);
        let i = InferInput {
            ty: &x.ty(),
            value: None,
        };
        let tys = gap
            .infer(InferInputs {
                ins: &[Some(i)],
                n_outputs: 1,
            })
            .unwrap();
        assert_eq!(tys[0].shape, vec![2, 3, 1, 1]);
    }
}
