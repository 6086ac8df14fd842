//! Element-wise int8 kernels whose operands or result are stored as u8 codes.
//!
//! Codes are loaded sixteen at a time (one byte vector, widened to four `i32x4`), so the
//! innermost loop steps by 16 lanes; operands still stored as f32 load four vectors and
//! turn them into codes as the all-f32 kernels do. Either way each lane ends as the
//! same integral f32 centred code `q − z` the simulator computes with, so the arithmetic
//! after the loads is shared with [`super::eltwise`].

use super::codes::CodeSpec;
use crate::builder::KernelBuilder;
use crate::ir::{Buf, Kernel, Type, Val};
use crate::lower::elementwise::{broadcast_strides, collapse, dense_strides};
use kiln_quant::arith::QParams;

/// One operand of a coded element-wise kernel.
pub(super) struct Operand {
    pub shape: Vec<usize>,
    /// How a stored f32 value becomes its code; for a coded operand, only `p` is used.
    pub spec: CodeSpec,
    pub coded: bool,
}

/// The result: codes of `p`, or `dequant(q)` in f32.
pub(super) struct Output<'a> {
    pub shape: &'a [usize],
    pub p: &'a QParams,
    pub coded: bool,
    /// `t` is never NaN (see [`super::tame`]).
    pub tame: bool,
}

/// `out = requant(f(centred codes))` over the broadcast iteration space, where `f` maps
/// the operands' centred codes (integral f32 or f32x4) to the unrounded result `t`.
pub(super) fn map_codes(
    name: &str,
    ops: &[Operand],
    out: &Output,
    f: &dyn Fn(&mut KernelBuilder, &[Val]) -> Val,
) -> Kernel {
    let mut b = KernelBuilder::new(name);
    let bufs: Vec<Buf> = ops
        .iter()
        .enumerate()
        .map(|(k, o)| {
            let len = o.shape.iter().product();
            let ty = if o.coded { Type::U8 } else { Type::F32 };
            b.buf(format!("in{k}"), ty, len, true)
        })
        .collect();
    let n_out: usize = out.shape.iter().product();
    let oty = if out.coded { Type::U8 } else { Type::F32 };
    let ob = b.buf("out", oty, n_out, false);
    let mut strides: Vec<Vec<i64>> = ops
        .iter()
        .map(|o| broadcast_strides(&o.shape, out.shape))
        .collect();
    strides.push(dense_strides(out.shape));
    let (dims, st) = collapse(out.shape, &strides);
    let zero = b.index(0);
    let offs = vec![zero; st.len()];
    let nest = Nest {
        ops,
        out,
        bufs: &bufs,
        ob,
        dims: &dims,
        st: &st,
        f,
    };
    nest.level(&mut b, 0, &offs);
    b.finish()
}

struct Nest<'a> {
    ops: &'a [Operand],
    out: &'a Output<'a>,
    bufs: &'a [Buf],
    ob: Buf,
    dims: &'a [usize],
    st: &'a [Vec<i64>],
    f: &'a dyn Fn(&mut KernelBuilder, &[Val]) -> Val,
}

impl Nest<'_> {
    fn level(&self, b: &mut KernelBuilder, level: usize, offs: &[Val]) {
        let n = self.dims[level] as i64;
        let last = level + 1 == self.dims.len();
        if !last {
            let body = |b: &mut KernelBuilder, i: Val| {
                let offs = self.advance(b, offs, level, i);
                self.level(b, level + 1, &offs);
            };
            if level == 0 {
                b.parallel(0, n, 1, body);
            } else {
                b.for_(0, n, 1, body);
            }
            return;
        }
        let contiguous = self.st.iter().all(|s| s[level] == 0 || s[level] == 1);
        let vec_end = if contiguous { n / 16 * 16 } else { 0 };
        let parallel = level == 0;
        if vec_end > 0 {
            let go = |b: &mut KernelBuilder, i: Val| {
                let offs = self.advance(b, offs, level, i);
                self.vector(b, level, &offs);
            };
            if parallel {
                b.parallel(0, vec_end, 16, go);
            } else {
                b.for_(0, vec_end, 16, go);
            }
        }
        if vec_end < n {
            let go = |b: &mut KernelBuilder, i: Val| {
                let offs = self.advance(b, offs, level, i);
                self.scalar(b, &offs);
            };
            if parallel && vec_end == 0 {
                b.parallel(0, n, 1, go);
            } else {
                b.for_(vec_end, n, 1, go);
            }
        }
    }

    fn advance(&self, b: &mut KernelBuilder, offs: &[Val], level: usize, i: Val) -> Vec<Val> {
        offs.iter()
            .zip(self.st)
            .map(|(&o, s)| {
                let d = b.mul_imm(i, s[level]);
                b.add(o, d)
            })
            .collect()
    }

    /// Sixteen lanes at `offs` (innermost strides 0 or 1).
    fn vector(&self, b: &mut KernelBuilder, level: usize, offs: &[Val]) {
        let parts: Vec<[Val; 4]> = self
            .ops
            .iter()
            .enumerate()
            .map(|(k, o)| {
                let (buf, at) = (self.bufs[k], offs[k]);
                if self.st[k][level] == 0 {
                    let c = scalar_code(b, o, buf, at);
                    let v = b.splat(Type::F32X4, c);
                    return [v; 4];
                }
                if o.coded {
                    let bytes = b.load(Type::I8X16, buf, at, 0);
                    let z = b.iconst(Type::I32, o.spec.p.z() as i64);
                    let z = b.splat(Type::I32X4, z);
                    std::array::from_fn(|j| {
                        let w = b.widen_u8(bytes, j as u8);
                        let c = b.sub(w, z);
                        b.cast(Type::F32X4, c)
                    })
                } else {
                    std::array::from_fn(|j| {
                        let v = b.load(Type::F32X4, buf, at, 4 * j as i64);
                        let c = o.spec.centred_int(b, v);
                        b.cast(Type::F32X4, c)
                    })
                }
            })
            .collect();
        let at = offs[offs.len() - 1];
        let results: Vec<Val> = (0..4)
            .map(|j| {
                let vals: Vec<Val> = parts.iter().map(|p| p[j]).collect();
                let t = (self.f)(b, &vals);
                self.finish(b, t)
            })
            .collect();
        if self.out.coded {
            let bytes = b.narrow_u8(results[0], results[1], results[2], results[3]);
            b.store(self.ob, at, 0, bytes);
        } else {
            for (j, &r) in results.iter().enumerate() {
                b.store(self.ob, at, 4 * j as i64, r);
            }
        }
    }

    fn scalar(&self, b: &mut KernelBuilder, offs: &[Val]) {
        let vals: Vec<Val> = self
            .ops
            .iter()
            .enumerate()
            .map(|(k, o)| scalar_code(b, o, self.bufs[k], offs[k]))
            .collect();
        let t = (self.f)(b, &vals);
        let r = self.finish(b, t);
        let r = if self.out.coded {
            b.cast(Type::U8, r)
        } else {
            r
        };
        b.store(self.ob, offs[offs.len() - 1], 0, r);
    }

    /// `t` → the code `q` (i32) when the result is coded, else `dequant(q)`.
    fn finish(&self, b: &mut KernelBuilder, t: Val) -> Val {
        if self.out.coded {
            super::eltwise::code_of(b, t, self.out.p, self.out.tame)
        } else {
            super::eltwise::requant(b, t, self.out.p, self.out.tame)
        }
    }
}

/// The centred code of one element as an integral f32.
fn scalar_code(b: &mut KernelBuilder, o: &Operand, buf: Buf, at: Val) -> Val {
    if o.coded {
        let q = b.load(Type::U8, buf, at, 0);
        let q = b.cast(Type::I32, q);
        let z = b.iconst(Type::I32, o.spec.p.z() as i64);
        let c = b.sub(q, z);
        b.cast(Type::F32, c)
    } else {
        let v = b.load(Type::F32, buf, at, 0);
        let c = o.spec.centred_int(b, v);
        b.cast(Type::F32, c)
    }
}
