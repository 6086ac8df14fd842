//! The memory layout of the spatial ops' activations: channels first (`nchw`, ONNX's) or
//! channels last (`nhwc`).
//!
//! ONNX defines every spatial op on `[N, C, D…]` tensors. `graph.layout` moves
//! convolution regions to channels last because kiln's conv kernels are implicit GEMMs
//! over NHWC (see that pass for why), so the spatial ops carry a `layout` attribute:
//! with `layout="nhwc"` the data operand and the result are `[N, D…, C]` — the same
//! logical tensor with its channel axis moved last — and every other operand keeps its
//! meaning (conv weights stay `[M, C/group, k…]`, batch-norm parameters stay `[C]`).
//! The default `nchw` is not printed, so nothing changes for graphs that never met the
//! layout pass.
//!
//! The reference semantics of an `nhwc` op are defined by reduction to the `nchw` one:
//! eval transposes the operand to channels first, runs the ONNX kernel and transposes the
//! result back. That is slow but exactly the op the layout pass rewrote, which is what
//! the interpreter, as the oracle, has to be.

use kiln_core::{AttrReader, Attrs, Result, Tensor, TensorType, bail, map_same};
use ndarray::IxDyn;

/// Where a spatial op's channel axis lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Layout {
    /// `[N, C, D…]`, ONNX's layout.
    #[default]
    Nchw,
    /// `[N, D…, C]`: channels contiguous.
    Nhwc,
}

impl Layout {
    /// The `layout` attribute value.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        }
    }

    pub fn is_nhwc(self) -> bool {
        self == Layout::Nhwc
    }

    /// Reads the `layout` attribute (default `nchw`).
    pub fn read(r: &mut AttrReader) -> Result<Layout> {
        match r.str("layout", "nchw")?.as_str() {
            "nchw" => Ok(Layout::Nchw),
            "nhwc" => Ok(Layout::Nhwc),
            other => bail!(
                Attribute,
                "unknown layout \"{other}\" (expected \"nchw\" or \"nhwc\")"
            ),
        }
    }

    /// Adds the `layout` attribute when it is not the default.
    pub fn write(self, a: Attrs) -> Attrs {
        a.str("layout", self.name(), "nchw")
    }

    /// The logical (channels-first) type of an operand stored in this layout. Ranks below
    /// 3 are returned as they are; the op's own rank check then rejects them.
    pub fn to_nchw_type(self, t: &TensorType) -> TensorType {
        self.convert_type(t, to_first_perm)
    }

    /// The stored type of a channels-first result in this layout.
    pub fn from_nchw_type(self, t: &TensorType) -> TensorType {
        self.convert_type(t, to_last_perm)
    }

    fn convert_type(self, t: &TensorType, perm: fn(usize) -> Vec<usize>) -> TensorType {
        if self == Layout::Nchw || t.rank() < 3 {
            return t.clone();
        }
        TensorType::new(t.dtype, permute(&t.shape, &perm(t.rank())))
    }

    /// An operand stored in this layout, as a channels-first tensor (borrowed for nchw).
    pub fn to_nchw<'a>(self, t: &'a Tensor) -> std::borrow::Cow<'a, Tensor> {
        if self == Layout::Nchw || t.shape().len() < 3 {
            return std::borrow::Cow::Borrowed(t);
        }
        std::borrow::Cow::Owned(transpose(t, &to_first_perm(t.shape().len())))
    }

    /// A channels-first result, stored in this layout.
    pub fn from_nchw(self, t: Tensor) -> Tensor {
        if self == Layout::Nchw || t.shape().len() < 3 {
            return t;
        }
        transpose(&t, &to_last_perm(t.shape().len()))
    }
}

/// The permutation taking a rank-`r` channels-first tensor to channels last:
/// `[0, 2, …, r-1, 1]` (`[0, 2, 3, 1]` for NCHW → NHWC).
pub fn to_last_perm(r: usize) -> Vec<usize> {
    std::iter::once(0)
        .chain(2..r)
        .chain(std::iter::once(1))
        .collect()
}

/// The inverse of [`to_last_perm`]: `[0, r-1, 1, …, r-2]` (`[0, 3, 1, 2]` for 4-D).
pub fn to_first_perm(r: usize) -> Vec<usize> {
    [0, r - 1].into_iter().chain(1..r - 1).collect()
}

/// `shape` read through `perm` (result dim `i` is operand dim `perm[i]`), the rule of
/// `transpose`.
pub fn permute<T: Copy>(shape: &[T], perm: &[usize]) -> Vec<T> {
    perm.iter().map(|&p| shape[p]).collect()
}

/// `transpose(t) {perm}` on a tensor, in standard layout.
pub fn transpose(t: &Tensor, perm: &[usize]) -> Tensor {
    map_same!(t, a => a.view().permuted_axes(IxDyn(perm)).as_standard_layout().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::DType;

    #[test]
    fn perms_are_inverse() {
        assert_eq!(to_last_perm(4), vec![0, 2, 3, 1]);
        assert_eq!(to_first_perm(4), vec![0, 3, 1, 2]);
        assert_eq!(to_last_perm(3), vec![0, 2, 1]);
        for r in 3..6 {
            let (a, b) = (to_last_perm(r), to_first_perm(r));
            let id: Vec<usize> = (0..r).collect();
            assert_eq!(permute(&a, &b), id);
        }
    }

    #[test]
    fn round_trip_through_nhwc() {
        let ty = TensorType::new(DType::F32, vec![1, 2, 3, 4]);
        let t = Tensor::from_f64_fn(&ty, |i| i as f64);
        let s = Layout::Nhwc.from_nchw(t.clone());
        assert_eq!(s.shape(), &[1, 3, 4, 2]);
        // Element (c=1, h=0, w=1) is 13; channels last it sits at (h=0, w=1, c=1), flat
        // index (0·4 + 1)·2 + 1 = 3.
        assert_eq!(s.to_f64_vec()[3], 13.0);
        assert_eq!(Layout::Nhwc.to_nchw(&s).into_owned(), t);
        assert_eq!(Layout::Nhwc.from_nchw_type(&ty).shape, vec![1, 3, 4, 2]);
        assert_eq!(Layout::Nchw.from_nchw_type(&ty), ty);
    }
}
