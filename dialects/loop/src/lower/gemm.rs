//! The fp32 GEMM micro-kernel and the Gemm/MatMul lowerings built on it.
//!
//! `C[m, n] = act(alpha · Σ_k A[m, k] B[k, n] + beta · bias + Y)`, computed in register tiles of
//! up to 4 rows × 8 columns (eight `f32x4` accumulators carried through the k loop, which is
//! unrolled 4×). Per k step a tile does 2 vector loads of B, 4 scalar loads of A broadcast to
//! vectors, and 8 FMAs; the epilogue (bias, residual, activation) runs on the accumulators before
//! the single store. 4×8 is the largest tile that fits the 16 xmm registers without spilling
//! (ARCHITECTURE.md: a 6×8 tile measured slower).
//!
//! Constant operands are packed at compile time: A (conv weights) into 4-row panels so a k step
//! reads the tile's four A values from one 16-byte line, B (Gemm weights) into 8-column panels
//! so a tile streams one contiguous block.
//!
//! The column tiles of width 8 form the kernel's parallel loop; leftover columns (N mod 8) go
//! to a second, serial kernel, because a kernel's parallel loop must be its only top-level loop.

use super::{Arg, Lowered, act};
use crate::builder::KernelBuilder;
use crate::ir::{Buf, Type, Val};
use kiln_graph::ops::activation::Activation;

/// Rows and vector columns of the largest register tile.
pub const MR: usize = 4;
pub const NR: usize = 8;
const K_UNROLL: usize = 4;

/// A matrix operand: element `(i, j)` of batch `b` at `off + batch(b) + i*rs + j*cs`.
#[derive(Debug, Clone)]
pub struct Strided {
    pub buf: Buf,
    pub rs: i64,
    pub cs: i64,
    /// Stride per batch dimension of the result (0 where broadcast).
    pub batch: Vec<i64>,
}

/// How the kernel reads A.
#[derive(Debug, Clone)]
pub enum AOperand {
    Strided(Strided),
    /// Packed by [`pack_a`]; no batch dimensions.
    Packed(Buf),
}

/// How the kernel reads B.
#[derive(Debug, Clone)]
pub enum BOperand {
    Strided(Strided),
    /// Packed by [`pack_b`]; no batch dimensions.
    Packed(Buf),
}

/// A whole (batched) GEMM with its epilogue.
#[derive(Debug, Clone)]
pub struct GemmSpec {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Batch dimensions of the result, outermost first.
    pub batch: Vec<usize>,
    pub a: AOperand,
    pub b: BOperand,
    /// Must have `cs == 1`.
    pub c: Strided,
    pub bias: Option<Strided>,
    pub residual: Option<Strided>,
    pub slope: Option<Strided>,
    pub alpha: f32,
    pub beta: f32,
    pub act: Activation,
}

/// Packs A `[m, k]` (row-major) into panels of 4 rows: panel `p` holds `(r, k)` at
/// `p·4k + k·4 + r`; the last panel, of `m mod 4` rows, at `(m/4)·4k + k·mr + r`.
pub fn pack_a(a: &[f32], m: usize, k: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(m * k);
    for p in (0..m).step_by(MR) {
        let mr = MR.min(m - p);
        for kk in 0..k {
            for r in 0..mr {
                out.push(a[(p + r) * k + kk]);
            }
        }
    }
    out
}

/// Packs B `[k, n]` given by an accessor into panels of 8 columns (`(k, c)` at
/// `p·8k + k·8 + c`) followed by the `n mod 8` leftover columns, row-major.
pub fn pack_b(k: usize, n: usize, at: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let full = n / NR * NR;
    let mut out = Vec::with_capacity(k * n);
    for p in (0..full).step_by(NR) {
        for kk in 0..k {
            for c in 0..NR {
                out.push(at(kk, p + c));
            }
        }
    }
    for kk in 0..k {
        for c in full..n {
            out.push(at(kk, c));
        }
    }
    out
}

/// Offsets of the batch entry being computed, per operand.
struct BatchOffs {
    a: Val,
    b: Val,
    c: Val,
    bias: Val,
    res: Val,
    slope: Val,
}

impl BatchOffs {
    /// All offsets zero: the first batch entry.
    fn zero(b: &mut KernelBuilder) -> BatchOffs {
        let z = b.index(0);
        BatchOffs {
            a: z,
            b: z,
            c: z,
            bias: z,
            res: z,
            slope: z,
        }
    }
}

/// Which columns a tile covers.
#[derive(Clone, Copy)]
enum Cols {
    /// `nv` vectors of 4 starting at column `n0`.
    Vectors(usize),
    /// One scalar column.
    Scalar,
}

struct Gen<'s> {
    s: &'s GemmSpec,
}

impl Gen<'_> {
    fn k_off(&self, b: &mut KernelBuilder, base: Val, k: Val, ks: i64) -> Val {
        let t = b.mul_imm(k, ks);
        b.add(base, t)
    }

    /// A tile of `mr` rows from row `m0` (a constant) and the columns `cols` from `n0`.
    #[allow(clippy::too_many_arguments)]
    fn tile(&self, b: &mut KernelBuilder, o: &BatchOffs, m0: Val, mr: usize, n0: Val, cols: Cols) {
        let s = self.s;
        let (ty, nv) = match cols {
            Cols::Vectors(nv) => (Type::F32X4, nv),
            Cols::Scalar => (Type::F32, 1),
        };
        let width = match cols {
            Cols::Vectors(_) => 4,
            Cols::Scalar => 1,
        };
        // A: a base offset and per-row / per-k strides.
        let (a_base, a_rs, a_ks) = match &s.a {
            AOperand::Strided(a) => {
                let t = b.mul_imm(m0, a.rs);
                (b.add(o.a, t), a.rs, a.cs)
            }
            // Full panels hold 4 rows; only the last one holds `mr < 4`.
            AOperand::Packed(_) => (b.mul_imm(m0, s.k as i64), 1, mr as i64),
        };
        let a_buf = match &s.a {
            AOperand::Strided(a) => a.buf,
            AOperand::Packed(p) => *p,
        };
        // B: base offset of column n0 at k = 0, and the k stride.
        let (b_buf, b_base, b_ks) = match &s.b {
            BOperand::Strided(bs) => {
                let t = b.mul_imm(n0, bs.cs);
                (bs.buf, b.add(o.b, t), bs.rs)
            }
            BOperand::Packed(p) => {
                let full = s.n / NR * NR;
                // A full-width tile lies inside the 8-column panels (n0 a multiple of 8);
                // narrower ones read the row-major leftover block after them.
                if matches!(cols, Cols::Vectors(2)) {
                    let t = b.mul_imm(n0, s.k as i64);
                    (*p, t, NR as i64)
                } else {
                    let base = (full * s.k) as i64;
                    let t = b.add_imm(n0, base - full as i64);
                    (*p, t, (s.n - full) as i64)
                }
            }
        };
        let zero = b.fsplat(ty, 0.0);
        let inits = vec![zero; mr * nv];
        let kk = s.k as i64 / K_UNROLL as i64 * K_UNROLL as i64;
        let step = |b: &mut KernelBuilder, k: Val, accs: &[Val], unroll: usize| -> Vec<Val> {
            let ao = self.k_off(b, a_base, k, a_ks);
            let bo = self.k_off(b, b_base, k, b_ks);
            let mut accs = accs.to_vec();
            for u in 0..unroll as i64 {
                let bv: Vec<Val> = (0..nv)
                    .map(|j| b.load(ty, b_buf, bo, u * b_ks + (j * width) as i64))
                    .collect();
                for r in 0..mr {
                    let a = b.load(Type::F32, a_buf, ao, u * a_ks + r as i64 * a_rs);
                    let a = if ty.is_vector() { b.splat(ty, a) } else { a };
                    for j in 0..nv {
                        accs[r * nv + j] = b.fma(a, bv[j], accs[r * nv + j]);
                    }
                }
            }
            accs
        };
        let mut accs = inits;
        if kk > 0 {
            accs = b.loop_(0, kk, K_UNROLL as i64, false, &accs, |b, k, a| {
                step(b, k, a, K_UNROLL)
            });
        }
        if kk < s.k as i64 {
            accs = b.loop_(kk, s.k as i64, 1, false, &accs, |b, k, a| step(b, k, a, 1));
        }
        self.epilogue(b, o, m0, mr, n0, ty, nv, width, &accs);
    }

    #[allow(clippy::too_many_arguments)]
    fn epilogue(
        &self,
        b: &mut KernelBuilder,
        o: &BatchOffs,
        m0: Val,
        mr: usize,
        n0: Val,
        ty: Type,
        nv: usize,
        width: usize,
        accs: &[Val],
    ) {
        let s = self.s;
        // Loads element (m0 + r, n0 + j·width) of a broadcast operand as `ty`.
        let load = |b: &mut KernelBuilder, op: &Strided, base: Val, r: usize, j: usize| -> Val {
            let t = b.mul_imm(n0, op.cs);
            let off = b.add(base, t);
            let u = b.mul_imm(m0, op.rs);
            let off = b.add(off, u);
            let disp = r as i64 * op.rs + (j * width) as i64 * op.cs;
            load_strided(b, ty, op.buf, off, disp, op.cs)
        };
        let alpha = (s.alpha != 1.0).then(|| b.fsplat(ty, s.alpha));
        let beta = (s.beta != 1.0).then(|| b.fsplat(ty, s.beta));
        for r in 0..mr {
            for j in 0..nv {
                let mut x = accs[r * nv + j];
                if let Some(al) = alpha {
                    x = b.mul(x, al);
                }
                if let Some(bias) = &s.bias {
                    let bv = load(b, bias, o.bias, r, j);
                    x = match beta {
                        Some(be) => b.fma(bv, be, x),
                        None => b.add(x, bv),
                    };
                }
                if let Some(y) = &s.residual {
                    let yv = load(b, y, o.res, r, j);
                    x = b.add(x, yv);
                }
                let slope = s.slope.as_ref().map(|sl| load(b, sl, o.slope, r, j));
                x = act::activation(b, &s.act, x, slope);
                let t = b.mul_imm(n0, s.c.cs);
                let off = b.add(o.c, t);
                let u = b.mul_imm(m0, s.c.rs);
                let off = b.add(off, u);
                b.store(s.c.buf, off, r as i64 * s.c.rs + (j * width) as i64, x);
            }
        }
    }

    /// All row tiles for the columns at `n0`.
    fn rows(&self, b: &mut KernelBuilder, o: &BatchOffs, n0: Val, cols: Cols) {
        let full = self.s.m / MR * MR;
        if full > 0 {
            b.for_(0, full as i64, MR as i64, |b, m0| {
                self.tile(b, o, m0, MR, n0, cols)
            });
        }
        if full < self.s.m {
            let m0 = b.index(full as i64);
            self.tile(b, o, m0, self.s.m - full, n0, cols);
        }
    }

    /// All column tiles for the `mr` rows at `m0`: full 8-column panels, then a 4-column
    /// vector tile and single columns for what is left.
    fn cols(&self, b: &mut KernelBuilder, o: &BatchOffs, m0: Val, mr: usize) {
        let full = self.s.n / NR * NR;
        if full > 0 {
            b.for_(0, full as i64, NR as i64, |b, n0| {
                self.tile(b, o, m0, mr, n0, Cols::Vectors(2))
            });
        }
        self.leftover_cols(b, &mut |b, n0, cols| self.tile(b, o, m0, mr, n0, cols));
    }

    /// The columns after the last 8-column panel: one 4-column vector tile if they allow,
    /// then single columns, each handed to `f` with its first column.
    fn leftover_cols(
        &self,
        b: &mut KernelBuilder,
        f: &mut dyn FnMut(&mut KernelBuilder, Val, Cols),
    ) {
        let n = self.s.n;
        let mut c = n / NR * NR;
        if n - c >= 4 {
            let n0 = b.index(c as i64);
            f(b, n0, Cols::Vectors(1));
            c += 4;
        }
        for col in c..n {
            let n0 = b.index(col as i64);
            f(b, n0, Cols::Scalar);
        }
    }

    /// Nested loops over the batch dimensions, then `body` with the batch offsets.
    fn batches(
        &self,
        b: &mut KernelBuilder,
        level: usize,
        o: BatchOffs,
        body: &dyn Fn(&mut KernelBuilder, &BatchOffs),
    ) {
        let s = self.s;
        if level == s.batch.len() {
            body(b, &o);
            return;
        }
        let st = |op: Option<&Strided>| op.map_or(0, |x| x.batch[level]);
        let a_st = match &s.a {
            AOperand::Strided(a) => a.batch[level],
            AOperand::Packed(_) => 0,
        };
        let b_st = match &s.b {
            BOperand::Strided(x) => x.batch[level],
            BOperand::Packed(_) => 0,
        };
        let strides = [
            a_st,
            b_st,
            s.c.batch[level],
            st(s.bias.as_ref()),
            st(s.residual.as_ref()),
            st(s.slope.as_ref()),
        ];
        b.for_(0, s.batch[level] as i64, 1, |b, i| {
            let base = [o.a, o.b, o.c, o.bias, o.res, o.slope];
            let v: Vec<Val> = base
                .iter()
                .zip(strides)
                .map(|(&x, st)| {
                    let t = b.mul_imm(i, st);
                    b.add(x, t)
                })
                .collect();
            let o = BatchOffs {
                a: v[0],
                b: v[1],
                c: v[2],
                bias: v[3],
                res: v[4],
                slope: v[5],
            };
            self.batches(b, level + 1, o, body);
        });
    }
}

/// Whether the GEMM sweeps row tiles in its outer (parallel) loop, each row tile visiting
/// every column panel, instead of the reverse. The outer operand's block stays in L1 while
/// the inner one is streamed once per outer step, so the smaller operand should be the
/// streamed one: with columns outer, A is read `n / 8` times; with rows outer, B is read
/// `m / 4` times. A 3×3 NHWC conv at 56×56×64 has A (its im2col) 49× larger than B, and
/// columns outer spent most of its time streaming A from memory. Batched products keep
/// columns outer (their row counts are small).
pub fn rows_outer(m: usize, n: usize, batched: bool) -> bool {
    !batched && m > n && m >= 2 * MR
}

/// Emits the GEMM as one or two kernels: the tiles along the outer dimension in parallel
/// (see [`rows_outer`]), then the leftover rows or columns. `declare` declares the kernel's
/// buffers (the same in both kernels) and returns the spec, whose column count is `n`.
pub fn emit(
    name: &str,
    n: usize,
    declare: &dyn Fn(&mut KernelBuilder) -> GemmSpec,
) -> Vec<crate::ir::Kernel> {
    let (m, batched) = {
        let s = declare(&mut KernelBuilder::new(name));
        (s.m, s.batch.iter().product::<usize>() > 1)
    };
    if rows_outer(m, n, batched) {
        // Full 4-row tiles in parallel, the `m mod 4` leftover rows in the second kernel.
        let full = m / MR * MR;
        two_kernels(
            name,
            declare,
            (full, MR),
            &|g, b, o, m0| g.cols(b, o, m0, MR),
            (full < m).then_some(&|g: &Gen, b: &mut KernelBuilder, o: &BatchOffs| {
                let m0 = b.index(full as i64);
                g.cols(b, o, m0, m - full)
            }),
        )
    } else {
        // Full 8-column panels in parallel, the `n mod 8` leftover columns in the second.
        let full = n / NR * NR;
        two_kernels(
            name,
            declare,
            (full, NR),
            &|g, b, o, n0| g.rows(b, o, n0, Cols::Vectors(2)),
            (full < n).then_some(&|g: &Gen, b: &mut KernelBuilder, o: &BatchOffs| {
                g.leftover_cols(b, &mut |b, n0, cols| g.rows(b, o, n0, cols))
            }),
        )
    }
}

/// The body of a GEMM's second kernel (leftover rows or columns).
type EdgeFn<'a> = dyn Fn(&Gen, &mut KernelBuilder, &BatchOffs) + 'a;

/// A kernel whose parallel loop runs `main` for each outer tile `0..full` (step `step`)
/// and, when there is one, an `_edge` kernel running `edge` once, both inside the batch
/// loops: a kernel's parallel loop must be its only top-level loop.
fn two_kernels(
    name: &str,
    declare: &dyn Fn(&mut KernelBuilder) -> GemmSpec,
    (full, step): (usize, usize),
    main: &dyn Fn(&Gen, &mut KernelBuilder, &BatchOffs, Val),
    edge: Option<&EdgeFn<'_>>,
) -> Vec<crate::ir::Kernel> {
    let mut out = Vec::new();
    if full > 0 {
        let mut b = KernelBuilder::new(name);
        let s = declare(&mut b);
        let g = Gen { s: &s };
        b.parallel(0, full as i64, step as i64, |b, t| {
            let o = BatchOffs::zero(b);
            g.batches(b, 0, o, &|b, o| main(&g, b, o, t));
        });
        out.push(b.finish());
    }
    if let Some(edge) = edge {
        let mut b = KernelBuilder::new(format!("{name}_edge"));
        let s = declare(&mut b);
        let g = Gen { s: &s };
        let o = BatchOffs::zero(&mut b);
        g.batches(&mut b, 0, o, &|b, o| edge(&g, b, o));
        out.push(b.finish());
    }
    out
}

/// Kernels that pack a runtime A (`(i, j)` at `i·rs + j·cs` of `src`) into the panel layout of
/// [`pack_a`] in `dst`: the tile then reads its four A values per k step from one 16-byte line
/// instead of four rows apart (see [`worth_packing_a`] for when that pays).
pub fn pack_a_kernels(
    name: &str,
    (m, k): (usize, usize),
    (rs, cs): (i64, i64),
    src: (Arg, usize),
    dst: Arg,
) -> Vec<Lowered> {
    use super::elementwise::{View, map_views};
    let full = m / MR * MR;
    let mut out = Vec::new();
    if full > 0 {
        out.push(map_views(
            &format!("{name}_pack_a"),
            &[full / MR, k, MR],
            &[View {
                arg: src.0.clone(),
                len: src.1,
                off: 0,
                strides: vec![MR as i64 * rs, cs, rs],
            }],
            &View {
                arg: dst.clone(),
                len: m * k,
                off: 0,
                strides: vec![(MR * k) as i64, MR as i64, 1],
            },
            &|_, v| v[0],
        ));
    }
    if full < m {
        let mr = m - full;
        out.push(map_views(
            &format!("{name}_pack_a_tail"),
            &[k, mr],
            &[View {
                arg: src.0,
                len: src.1,
                off: full as i64 * rs,
                strides: vec![cs, rs],
            }],
            &View {
                arg: dst,
                len: m * k,
                off: (full * k) as i64,
                strides: vec![mr as i64, 1],
            },
            &|_, v| v[0],
        ));
    }
    out
}

/// Whether packing A at run time pays. The pack is a scalar strided copy costing a few ns per
/// element, so it only wins when A is large (measured: a 256×144 A took as long to pack as its
/// whole GEMM; a 3136×576 A saved 20 % of the conv).
pub fn worth_packing_a(m: usize, k: usize, n: usize) -> bool {
    !rows_outer(m, n, false) && m * k >= 1 << 16 && m >= 2 * MR && k >= 16 && n >= 2 * NR
}

/// Loads `ty` (f32 or f32x4) at `off + disp` from a row with element stride `cs`: a splat when
/// the row is broadcast (`cs == 0`), a vector load when contiguous, else lane by lane. Epilogue
/// operands (bias, residual, slope) broadcast in every way ONNX allows, so all three occur.
pub fn load_strided(
    b: &mut KernelBuilder,
    ty: Type,
    buf: Buf,
    off: Val,
    disp: i64,
    cs: i64,
) -> Val {
    if cs == 0 && ty.is_vector() {
        let x = b.load(Type::F32, buf, off, disp);
        b.splat(ty, x)
    } else if cs == 1 || !ty.is_vector() {
        b.load(ty, buf, off, disp)
    } else {
        let mut v = b.fsplat(ty, 0.0);
        for lane in 0..4 {
            let x = b.load(Type::F32, buf, off, disp + lane * cs);
            v = b.insert(v, x, lane as u8);
        }
        v
    }
}
