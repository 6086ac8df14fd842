//! `depth_to_space` and `space_to_depth`: moving blocks between channels and spatial
//! positions of an NCHW tensor (pixel shuffle and its inverse).
//!
//! Both are a reshape to 6-D, a transpose and a reshape back; the transpose is one strided
//! copy through ndarray.

use super::channel_layout::Layout;
use super::util::arg;
use super::{InferInputs, OpDef};
use kiln_core::{AttrReader, Attrs, Element, Result, Tensor, TensorType, bail, dispatch, ensure};
use ndarray::{ArrayD, IxDyn};

/// Channel order of the blocks: DCR (depth, column, row; the default) or CRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockMode {
    #[default]
    Dcr,
    Crd,
}

fn read_mode(r: &mut AttrReader) -> Result<BlockMode> {
    match r.str("mode", "DCR")?.as_str() {
        "DCR" => Ok(BlockMode::Dcr),
        "CRD" => Ok(BlockMode::Crd),
        other => bail!(Attribute, "unknown mode '{other}' (expected DCR or CRD)"),
    }
}

fn read_blocksize(r: &mut AttrReader) -> Result<usize> {
    let b = r.req_int("blocksize")?;
    ensure!(b >= 1, Attribute, "blocksize must be positive, got {b}");
    Ok(b as usize)
}

fn write_attrs(blocksize: usize, mode: BlockMode) -> Attrs {
    let mut a = Attrs::new();
    a.set("blocksize", kiln_core::Attr::Int(blocksize as i64));
    a.str(
        "mode",
        if mode == BlockMode::Crd { "CRD" } else { "DCR" },
        "DCR",
    )
}

/// The 6-D view, the permutation and the result shape of either op.
struct Plan {
    inter: [usize; 6],
    perm: [usize; 6],
    out: [usize; 4],
}

fn nchw(op: &str, shape: &[usize]) -> Result<[usize; 4]> {
    match shape {
        &[n, c, h, w] => Ok([n, c, h, w]),
        _ => bail!(Shape, "{op} needs a 4-D NCHW tensor, got {shape:?}"),
    }
}

fn depth_to_space_plan(shape: &[usize], b: usize, mode: BlockMode) -> Result<Plan> {
    let [n, c, h, w] = nchw("depth_to_space", shape)?;
    ensure!(
        c % (b * b) == 0,
        Shape,
        "depth_to_space: {c} channels are not divisible by blocksize² = {}",
        b * b
    );
    let c2 = c / (b * b);
    let (inter, perm) = match mode {
        BlockMode::Dcr => ([n, b, b, c2, h, w], [0, 3, 4, 1, 5, 2]),
        BlockMode::Crd => ([n, c2, b, b, h, w], [0, 1, 4, 2, 5, 3]),
    };
    Ok(Plan {
        inter,
        perm,
        out: [n, c2, h * b, w * b],
    })
}

fn space_to_depth_plan(shape: &[usize], b: usize, mode: BlockMode) -> Result<Plan> {
    let [n, c, h, w] = nchw("space_to_depth", shape)?;
    ensure!(
        h % b == 0 && w % b == 0,
        Shape,
        "space_to_depth: spatial size {h}x{w} is not divisible by blocksize {b}"
    );
    let perm = match mode {
        BlockMode::Dcr => [0, 3, 5, 1, 2, 4],
        BlockMode::Crd => [0, 1, 3, 5, 2, 4],
    };
    Ok(Plan {
        inter: [n, c, h / b, b, w / b, b],
        perm,
        out: [n, c * b * b, h / b, w / b],
    })
}

fn rearrange<T: Element>(a: &ArrayD<T>, p: &Plan) -> Tensor {
    let c = a.as_standard_layout();
    let v = c
        .view()
        .into_shape_with_order(IxDyn(&p.inter))
        .expect("plan keeps the element count");
    let t = v
        .permuted_axes(IxDyn(&p.perm))
        .as_standard_layout()
        .into_owned();
    T::wrap(
        t.into_shape_with_order(IxDyn(&p.out))
            .expect("plan keeps the element count"),
    )
}

macro_rules! block_op {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $plan:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty {
            pub blocksize: usize,
            pub mode: BlockMode,
            /// `nhwc`: the tensors are channels-last (set by `graph.layout`).
            pub layout: Layout,
        }

        impl OpDef for $ty {
            fn names() -> &'static [&'static str] {
                &[$name]
            }
            fn name(&self) -> &'static str {
                $name
            }
            fn from_attrs(_: &str, r: &mut AttrReader) -> Result<Self> {
                Ok($ty {
                    blocksize: read_blocksize(r)?,
                    mode: read_mode(r)?,
                    layout: Layout::read(r)?,
                })
            }
            fn attrs(&self) -> Attrs {
                self.layout.write(write_attrs(self.blocksize, self.mode))
            }
            fn infer(&self, ins: InferInputs) -> Result<Vec<TensorType>> {
                let x = self.layout.to_nchw_type(ins.ty(0)?);
                let out = $plan(&x.shape, self.blocksize, self.mode)?.out;
                Ok(vec![self.layout.from_nchw_type(&TensorType::new(x.dtype, out))])
            }
            fn eval(&self, ins: &[Option<&Tensor>], _: usize) -> Result<Vec<Tensor>> {
                let x = &*self.layout.to_nchw(arg(ins, 0)?);
                let p = $plan(x.shape(), self.blocksize, self.mode)?;
                Ok(vec![self.layout.from_nchw(dispatch!(x, a => rearrange(a, &p)))])
            }
            fn flops(&self, _: &[Option<&TensorType>], _: &[TensorType]) -> u64 {
                0
            }
        }
    };
}

block_op!(
    /// `depth_to_space(x) {blocksize, mode}`: `[N, C·b², H, W] → [N, C, H·b, W·b]`.
    DepthToSpace, "depth_to_space", depth_to_space_plan
);
block_op!(
    /// `space_to_depth(x) {blocksize, mode}`: `[N, C, H·b, W·b] → [N, C·b², H, W]`.
    SpaceToDepth, "space_to_depth", space_to_depth_plan
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::shape::testing::{fails, iota, run1, values};
    use kiln_core::ErrorKind;

    // Expected values from onnxruntime on arange(48).
    #[test]
    fn depth_to_space() {
        let x = || Some(iota(&[1, 8, 2, 3]));
        let t = run1(
            &DepthToSpace {
                blocksize: 2,
                mode: BlockMode::Dcr,
                layout: Layout::Nchw,
            },
            &[x()],
        );
        assert_eq!(t.shape(), [1, 2, 4, 6]);
        assert_eq!(
            values::<f32>(&t)[..12],
            [0., 12., 1., 13., 2., 14., 24., 36., 25., 37., 26., 38.]
        );
        let t = run1(
            &DepthToSpace {
                blocksize: 2,
                mode: BlockMode::Crd,
                layout: Layout::Nchw,
            },
            &[x()],
        );
        assert_eq!(
            values::<f32>(&t)[..12],
            [0., 6., 1., 7., 2., 8., 12., 18., 13., 19., 14., 20.]
        );
        assert_eq!(values::<f32>(&t)[24..30], [24., 30., 25., 31., 26., 32.]);
        assert_eq!(
            fails(
                &DepthToSpace {
                    blocksize: 3,
                    mode: BlockMode::Dcr,
                    layout: Layout::Nchw,
                },
                &[x()],
                1
            ),
            ErrorKind::Shape
        );
        assert_eq!(
            fails(
                &DepthToSpace {
                    blocksize: 2,
                    mode: BlockMode::Dcr,
                    layout: Layout::Nchw,
                },
                &[Some(iota(&[8, 2, 3]))],
                1
            ),
            ErrorKind::Shape
        );
    }

    #[test]
    fn space_to_depth() {
        let x = || Some(iota(&[1, 2, 4, 6]));
        let t = run1(
            &SpaceToDepth {
                blocksize: 2,
                mode: BlockMode::Dcr,
                layout: Layout::Nchw,
            },
            &[x()],
        );
        assert_eq!(t.shape(), [1, 8, 2, 3]);
        assert_eq!(
            values::<f32>(&t)[..12],
            [0., 2., 4., 12., 14., 16., 24., 26., 28., 36., 38., 40.]
        );
        let t = run1(
            &SpaceToDepth {
                blocksize: 2,
                mode: BlockMode::Crd,
                layout: Layout::Nchw,
            },
            &[x()],
        );
        assert_eq!(
            values::<f32>(&t)[..12],
            [0., 2., 4., 12., 14., 16., 1., 3., 5., 13., 15., 17.]
        );
        assert_eq!(
            fails(
                &SpaceToDepth {
                    blocksize: 3,
                    mode: BlockMode::Dcr,
                    layout: Layout::Nchw,
                },
                &[x()],
                1
            ),
            ErrorKind::Shape
        );
        // Each op undoes the other in the same mode.
        for mode in [BlockMode::Dcr, BlockMode::Crd] {
            let s = run1(
                &SpaceToDepth {
                    blocksize: 2,
                    mode,
                    layout: Layout::Nchw,
                },
                &[x()],
            );
            assert_eq!(
                run1(
                    &DepthToSpace {
                        blocksize: 2,
                        mode,
                        layout: Layout::Nchw
                    },
                    &[Some(s)]
                ),
                iota(&[1, 2, 4, 6])
            );
        }
        let zero = Attrs::new().int("blocksize", 0, 1);
        assert_eq!(
            SpaceToDepth::from_attrs("space_to_depth", &mut AttrReader::new(zero))
                .unwrap_err()
                .kind,
            ErrorKind::Attribute
        );
    }

    /// Channels last, each op moves the same blocks: its result is the channels-first
    /// result transposed.
    #[test]
    fn nhwc_forms_equal_the_transposed_nchw_ones() {
        fn check<O: OpDef + PartialEq + std::fmt::Debug>(op: impl Fn(Layout) -> O) {
            let x = iota(&[1, 8, 2, 4]);
            let to_nhwc = |t: &Tensor| Layout::Nhwc.from_nchw(t.clone());
            let want = to_nhwc(&run1(&op(Layout::Nchw), &[Some(x.clone())]));
            assert_eq!(run1(&op(Layout::Nhwc), &[Some(to_nhwc(&x))]), want);
        }
        for mode in [BlockMode::Dcr, BlockMode::Crd] {
            let (blocksize, mode) = (2, mode);
            check(|layout| DepthToSpace {
                blocksize,
                mode,
                layout,
            });
            check(|layout| SpaceToDepth {
                blocksize,
                mode,
                layout,
            });
        }
    }
}
