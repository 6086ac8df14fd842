//! A weighted layer (conv, gemm, matmul with a constant weight) seen as what it is
//! arithmetically: one matrix product per group, rows of weights (output channels) against
//! columns of input features (im2col patches, or the rows of a dense input). The passes
//! that reason about a layer's output over calibration inputs (GPTQ's `E[x·xᵀ]`, bias
//! correction's `E[x]`) need exactly this view, and need it to agree on which weight entry
//! multiplies which feature.

use crate::ir::{QuantGraph, TqcId, const_data};
use kiln_core::{DType, Result, Tensor};
use kiln_graph::ops::spatial::Geometry;
use kiln_graph::{NodeId, Op, Value};
use ndarray::ArrayView2;

/// One layer: how its weight splits into independent groups of rows (output channels) over
/// shared input features, and where each (row, feature) lives in the weight's data.
pub(crate) struct Layer {
    pub node: NodeId,
    /// The weight operand's TQC.
    pub tqc: TqcId,
    /// The weight constant.
    pub w: Value,
    /// The activation the weight multiplies.
    pub x: Value,
    pub kind: Kind,
    pub groups: usize,
    /// Rows per group.
    pub rows: usize,
    /// Features per row.
    pub k: usize,
}

pub(crate) enum Kind {
    /// `[M, C/g, kh, kw]` weights over 2-D im2col patches of an NCHW (or NHWC) input.
    Conv { geo: Geometry, nhwc: bool },
    /// Rows of `x` (a `[.., K]` matrix, or `[K, ..]` transposed) times a 2-D weight whose
    /// rows are the output channels (`rows_first`) or its columns are.
    Dense { trans_x: bool, rows_first: bool },
}

impl Layer {
    /// Node `n` as a layer: a 2-D conv, gemm or matmul whose weight (operand 1) is an f32
    /// constant read by `n` alone.
    pub fn of(q: &QuantGraph, n: NodeId) -> Option<Layer> {
        let g = &q.graph;
        let node = g.node(n);
        let (x, w) = (node.input(0)?, node.input(1)?);
        let tqc = q.in_tqc(n, 1)?;
        let wd = const_data(g, w)?;
        let xt = g.ty(x).ok()?;
        if g.use_count(w) != 1 || wd.dtype() != DType::F32 {
            return None;
        }
        let ws = wd.shape();
        let layer = |kind, groups: usize, rows, k| Layer {
            node: n,
            tqc,
            w,
            x,
            kind,
            groups,
            rows,
            k,
        };
        // `x·W` (x transposed with `trans_x`), W `[K, N]` or, with `trans_w`, `[N, K]`.
        let dense = |trans_x, trans_w| {
            let (k, n) = if trans_w {
                (ws[1], ws[0])
            } else {
                (ws[0], ws[1])
            };
            let kind = Kind::Dense {
                trans_x,
                rows_first: trans_w,
            };
            layer(kind, 1, n, k)
        };
        match &node.op {
            Op::Conv(c) if ws.len() == 4 && xt.rank() == 4 => {
                let nhwc = c.layout.is_nhwc();
                let sp = if nhwc {
                    &xt.shape[1..3]
                } else {
                    &xt.shape[2..4]
                };
                Geometry::forward(&c.window, "conv", sp, Some(&ws[2..]), false)
                    .ok()
                    .filter(|_| c.group > 0 && ws[0] % c.group == 0)
                    .map(|geo| {
                        let k = ws[1] * ws[2] * ws[3];
                        layer(Kind::Conv { geo, nhwc }, c.group, ws[0] / c.group, k)
                    })
            }
            Op::Gemm(m) if ws.len() == 2 => Some(dense(m.trans_a, m.trans_b)),
            Op::MatMul(m) if ws.len() == 2 && xt.rank() >= 2 => Some(dense(m.trans_a, m.trans_b)),
            _ => None,
        }
    }

    /// Index into the weight data of `(row r of group g, feature f)`.
    pub fn index(&self, g: usize, r: usize, f: usize) -> usize {
        let o = g * self.rows + r;
        match self.kind {
            Kind::Conv { .. } => o * self.k + f,
            Kind::Dense {
                rows_first: true, ..
            } => o * self.k + f,
            Kind::Dense {
                rows_first: false, ..
            } => f * self.rows + o,
        }
    }

    /// Output channel of row `r` of group `g` (the weight TQC's channel index).
    pub fn channel(&self, g: usize, r: usize) -> usize {
        g * self.rows + r
    }

    /// Output channels in all.
    pub fn channels(&self) -> usize {
        self.groups * self.rows
    }

    /// Calls `f(group, cols)` with the layer's input `x` as feature columns, `cols` being
    /// `k × vectors` (every output position's patch, or every row of a dense input), in as
    /// many calls as it takes. Returns the vectors each group saw.
    pub fn columns(&self, x: &Tensor, mut f: impl FnMut(usize, ArrayView2<f32>)) -> Result<usize> {
        let x = x.cast(DType::F32);
        let a = x.as_f32()?;
        match &self.kind {
            Kind::Conv { geo, nhwc } => {
                let a = if *nhwc {
                    a.view().permuted_axes(vec![0, 3, 1, 2])
                } else {
                    a.view()
                };
                let a = a.as_standard_layout();
                let s = a.as_slice().expect("standard layout");
                let (n, c) = (a.shape()[0], a.shape()[1]);
                let (ip, op, cg) = (geo.input_size(), geo.output_size(), c / self.groups);
                let mut col = vec![0f32; self.k * op];
                for ni in 0..n {
                    for gi in 0..self.groups {
                        let xg = &s[(ni * c + gi * cg) * ip..][..cg * ip];
                        geo.im2col(xg, cg, &mut col);
                        f(
                            gi,
                            ArrayView2::from_shape((self.k, op), &col).expect("sizes match"),
                        );
                    }
                }
                Ok(n * op)
            }
            Kind::Dense { trans_x, .. } => {
                let r = a.ndim();
                let m = if *trans_x {
                    let mut v = a.view();
                    v.swap_axes(r - 2, r - 1);
                    v.as_standard_layout().into_owned()
                } else {
                    a.as_standard_layout().into_owned()
                };
                let rows = m.len() / self.k;
                let m = m.into_shape_with_order((rows, self.k)).expect("rows of K");
                f(0, m.t());
                Ok(rows)
            }
        }
    }
}
