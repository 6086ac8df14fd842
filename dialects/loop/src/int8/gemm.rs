//! The int8 GEMM: u8 activation panels × s8 weights packed at compile time, i32 accumulators
//! updated by `dot_u8s8` (one `vpdpbusd` on VNNI hosts), and the epilogue of kiln-quant's
//! contract applied in registers before the single store.
//!
//! Register tile: twelve `i32x4` accumulators, as 3 rows × 4 vectors of 4 output channels,
//! 4 × 3, 6 × 2 or 12 × 1 (with the weight vectors and one broadcast, or for 3 × 4 the three
//! broadcasts and one weight vector, they fit the 16 xmm registers). Twelve independent chains cover `vpdpbusd`'s latency at two per cycle; a
//! narrower tile of 4 rows (the old column tail) has too few and ran at a third of the
//! speed. The widest tile that divides the channel count is used, so a 64-channel conv has
//! no column tail. Per k step of 4 bytes a tile loads its weight vectors and broadcasts
//! one activation word per row, then issues 12 dot products.
//!
//! The activation zero point is folded into the bias at compile time:
//! `Σ (a − z)·w = Σ a·w − z·Σ w`, so the k loop works on raw u8 codes; i32 arithmetic wraps,
//! and the exact result fits i32 (the plan checked the bound), so wrapping partial sums are
//! harmless.

use super::epilogue::{epilogue, epilogue_code, table_len};
use crate::builder::KernelBuilder;
use crate::ir::{BinOp, Buf, Kernel, Type, Val};
use kiln_quant::plan::Epilogue;

/// Vectors (of 4 channels) of the widest tile whose weights stay in registers across its
/// rows (MatMul of two activations uses this width).
pub const NV: usize = 3;

/// Vectors of the widest GEMM tile: 3 rows × 16 channels. Its weights are loaded one
/// vector at a time after the rows' broadcasts (twelve accumulators, three broadcasts and
/// one weight vector: all sixteen xmm registers), so a k step issues 3 broadcasts rather
/// than the 6 × 8 tile's 6, each a load and a shuffle (Cranelift cannot fold the load into
/// `vbroadcastss` because the broadcast has several users). The int8 GEMM 512³ kernel went
/// from 83 to 86 % of the peak, the 3×3 conv's from 83 to 88 %.
const WIDEST: usize = 4;

/// Rows of a tile `nv` vectors wide: twelve accumulators in all.
fn rows_for(nv: usize) -> usize {
    12 / nv.clamp(1, WIDEST)
}

/// The tile width (in vectors) for `n` channels: the widest whose blocks divide `n`, else
/// 3 (the leftover columns get a kernel of their own).
fn main_nv(n: usize) -> usize {
    (1..=WIDEST)
        .rev()
        .find(|&nv| n.is_multiple_of(4 * nv))
        .unwrap_or(NV)
}

/// Where result `(row r, channel n)` goes:
/// `base + (r / per_batch)·bs + (r mod per_batch)·rs + n·cs`.
#[derive(Debug, Clone, Copy)]
pub struct OutLayout {
    /// Offset of channel 0 (a grouped conv's group writes its channels from here).
    pub base: usize,
    pub per_batch: usize,
    pub bs: usize,
    pub rs: usize,
    pub cs: usize,
    pub len: usize,
}

/// One int8 GEMM: `rows × n`, reduction over `kp` panel bytes (a multiple of 4).
#[derive(Debug, Clone)]
pub struct QGemm {
    pub rows: usize,
    pub n: usize,
    pub kp: usize,
    pub out: OutLayout,
    pub epilogue: Epilogue,
    /// Results stored as u8 codes (the epilogue's grid) rather than `dequant(q)`; needs
    /// dense rows of whole vectors (`cs == 1`, `n` and `rs` multiples of 4).
    pub codes_out: bool,
    /// Rows read in place from a padded image rather than from an im2col panel.
    pub implicit: Option<Implicit>,
}

/// An implicit-GEMM convolution: the panel is the padded NHWC image itself, and row `r`'s
/// k step `t·cw + s` (tap `t`, channel word `s`) is image word `rows[r] + taps[t] + s`,
/// with `rows` a table of one word offset per output pixel. The im2col copy it replaces
/// wrote and re-read kh·kw bytes per input byte (22 MB for one of PP-OCRv4 det's 3×3
/// convs); reading the image in place touches each byte from cache instead. Needs whole
/// channel words (channels a multiple of 4) so no word straddles two taps.
#[derive(Debug, Clone)]
pub struct Implicit {
    /// Words in the image.
    pub words: usize,
    /// Word offset of each tap from a row's first word.
    pub taps: Vec<i64>,
    /// Words of channels per tap.
    pub cw: usize,
}

impl Implicit {
    /// Group `gi` of a grouped conv: the same rows, its own `cw` words of each tap.
    pub fn group(&self, gi: usize) -> Implicit {
        let shift = (gi * self.cw) as i64;
        Implicit {
            taps: self.taps.iter().map(|&t| t + shift).collect(),
            ..self.clone()
        }
    }
}

impl QGemm {
    /// Channels rounded up to whole vectors.
    pub fn np(&self) -> usize {
        self.n.div_ceil(4) * 4
    }

    /// Whether the kernels take a residual buffer.
    pub fn residual(&self) -> bool {
        matches!(self.epilogue, Epilogue::Float { residual: true, .. })
    }
}

/// Packs weights `w(n, k)` (an accessor, `k < k_len`) for the kernel: block `nb` of 4
/// channels, step `k4`: 16 bytes, byte `4i + j` = `w(4nb + i, 4k4 + j)` (zero past the ends).
pub fn pack_weights(n: usize, k_len: usize, kp: usize, w: &dyn Fn(usize, usize) -> i32) -> Vec<u8> {
    let nb = n.div_ceil(4);
    let k4 = kp / 4;
    let mut out = vec![0u8; nb * k4 * 16];
    for b in 0..nb {
        for s in 0..k4 {
            for i in 0..4 {
                for j in 0..4 {
                    let (c, k) = (4 * b + i, 4 * s + j);
                    if c < n && k < k_len {
                        out[(b * k4 + s) * 16 + 4 * i + j] = w(c, k) as i8 as u8;
                    }
                }
            }
        }
    }
    out
}

/// The kernels of one GEMM; buffers in the order
/// `panel, [rows], weights, bias, scales, [residual], out` (`rows`, the i32 row table, for
/// an [`Implicit`] GEMM; see [`QGemm::residual`]).
pub fn kernels(name: &str, g: &QGemm) -> Vec<Kernel> {
    let nv = main_nv(g.n);
    let full_cols = g.n / (4 * nv) * (4 * nv);
    let mut ks = Vec::new();
    // The main columns, then the leftover ones (under one block), each in row tiles of the
    // height that suits its width and a kernel for the rows left under one tile.
    for (suffix, cols, nv) in [
        ("", (0, full_cols), nv),
        ("_c", (full_cols, g.n), (g.n - full_cols).div_ceil(4)),
    ] {
        if cols.0 >= cols.1 {
            continue;
        }
        let mr = rows_for(nv);
        let full_rows = g.rows / mr * mr;
        if full_rows > 0 {
            ks.push(kernel(
                &format!("{name}{suffix}"),
                g,
                (0, full_rows),
                mr,
                cols,
                nv,
            ));
        }
        if full_rows < g.rows {
            let rows = (full_rows, g.rows);
            ks.push(kernel(
                &format!("{name}_r{suffix}"),
                g,
                rows,
                g.rows - full_rows,
                cols,
                nv,
            ));
        }
    }
    ks
}

fn kernel(
    name: &str,
    g: &QGemm,
    rows: (usize, usize),
    mr: usize,
    cols: (usize, usize),
    nv: usize,
) -> Kernel {
    let mut b = KernelBuilder::new(name);
    let k4 = g.kp / 4;
    let np = g.np();
    let panel_words = g.implicit.as_ref().map_or(g.rows * k4, |im| im.words);
    let panel = b.buf("panel", Type::F32, panel_words, true);
    let rows_table = g
        .implicit
        .is_some()
        .then(|| b.buf("rows", Type::I32, g.rows, true));
    let wts = b.buf("weights", Type::F32, np / 4 * k4 * 4, true);
    let bias = b.buf("bias", Type::I32, np, true);
    let scales = b.buf("scales", Type::F32, table_len(&g.epilogue) + np, true);
    let residual = g
        .residual()
        .then(|| b.buf("residual", Type::F32, g.out.len, true));
    // Codes go out four bytes (one vector of channels) per i32 store.
    let out = if g.codes_out {
        b.buf("out", Type::I32, g.out.len / 4, false)
    } else {
        b.buf("out", Type::F32, g.out.len, false)
    };
    let bufs = Bufs {
        panel,
        rows: rows_table,
        wts,
        bias,
        scales,
        residual,
        out,
    };
    // Whole blocks of `nv` vectors loop; the column tail is one block of its own width.
    let blocks = (cols.1 - cols.0) / (4 * nv);
    b.parallel(rows.0 as i64, rows.1 as i64, mr as i64, |b, r| {
        if blocks <= 1 {
            let cb = b.index(cols.0 as i64);
            tile(b, g, &bufs, r, mr, cb, cols.0, nv);
        } else {
            b.for_(cols.0 as i64, cols.1 as i64, (4 * nv) as i64, |b, cb| {
                tile(b, g, &bufs, r, mr, cb, usize::MAX, nv);
            });
        }
    });
    b.finish()
}

struct Bufs {
    panel: Buf,
    rows: Option<Buf>,
    wts: Buf,
    bias: Buf,
    scales: Buf,
    residual: Option<Buf>,
    out: Buf,
}

/// One `mr × nv` tile at rows `r..`, channels `cb..`; `cb_const` is `cb` when known at
/// compile time (the tail), which is when vectors may run past the last channel.
#[allow(clippy::too_many_arguments)]
fn tile(
    b: &mut KernelBuilder,
    g: &QGemm,
    bufs: &Bufs,
    r: Val,
    mr: usize,
    cb: Val,
    cb_const: usize,
    nv: usize,
) {
    let k4 = (g.kp / 4) as i64;
    // Initial accumulators: the folded bias of each channel vector.
    let mut inits = Vec::with_capacity(mr * nv);
    for _ in 0..mr {
        for v in 0..nv {
            inits.push(b.load(Type::I32X4, bufs.bias, cb, 4 * v as i64));
        }
    }
    // Weight block of channel `cb` starts at float (cb/4)·k4·4.
    let wbase = b.mul_imm(cb, k4);
    let (rows, segs) = match (&g.implicit, bufs.rows) {
        (Some(im), Some(table)) => {
            let rows = (0..mr)
                .map(|i| {
                    let w = b.load(Type::I32, table, r, i as i64);
                    b.cast(Type::Index, w)
                })
                .collect();
            let segs = im
                .taps
                .iter()
                .enumerate()
                .map(|(t, &a_off)| Seg {
                    a_off,
                    w_off: (t * im.cw) as i64,
                    len: im.cw as i64,
                })
                .collect();
            (Rows::At(rows), segs)
        }
        _ => {
            let base = b.mul_imm(r, k4);
            (Rows::Dense { base, stride: k4 }, vec![Seg::whole(k4)])
        }
    };
    let accs = k_loop(
        b, bufs.panel, bufs.wts, wbase, &rows, k4, &segs, mr, nv, inits,
    );
    for i in 0..mr {
        // Output offset of row r + i.
        let ri = b.add_imm(r, i as i64);
        let off = out_offset(b, &g.out, ri);
        if g.codes_out {
            store_codes(b, g, bufs, &accs[i * nv..(i + 1) * nv], off, cb);
            continue;
        }
        for v in 0..nv {
            let ch = b.add_imm(cb, 4 * v as i64);
            let lanes = if cb_const == usize::MAX {
                4
            } else {
                g.n.saturating_sub(cb_const + 4 * v).min(4)
            };
            if lanes == 0 {
                continue;
            }
            let acc = accs[i * nv + v];
            let o = if g.out.cs == 1 {
                b.add(off, ch)
            } else {
                let c = b.mul_imm(ch, g.out.cs as i64);
                b.add(off, c)
            };
            let res = match bufs.residual {
                Some(rb) if g.out.cs == 1 && lanes == 4 => Some(b.load(Type::F32X4, rb, o, 0)),
                Some(rb) => {
                    let z = b.fsplat(Type::F32X4, 0.0);
                    let mut vec = z;
                    for l in 0..lanes {
                        let x = b.load(Type::F32, rb, o, (l * g.out.cs) as i64);
                        vec = b.insert(vec, x, l as u8);
                    }
                    Some(vec)
                }
                None => None,
            };
            let y = epilogue(b, &g.epilogue, acc, bufs.scales, ch, res);
            if g.out.cs == 1 && lanes == 4 {
                b.store(bufs.out, o, 0, y);
            } else {
                for l in 0..lanes {
                    let x = b.extract(y, l as u8);
                    b.store(bufs.out, o, (l * g.out.cs) as i64, x);
                }
            }
        }
    }
}

/// One row's accumulators as codes: packed to bytes, one i32 store per vector of four
/// channels at word `(off + cb) / 4` (both multiples of 4).
fn store_codes(b: &mut KernelBuilder, g: &QGemm, bufs: &Bufs, accs: &[Val], off: Val, cb: Val) {
    let codes: Vec<Val> = accs
        .iter()
        .enumerate()
        .map(|(v, &acc)| {
            let ch = b.add_imm(cb, 4 * v as i64);
            epilogue_code(b, &g.epilogue, acc, bufs.scales, ch, None)
        })
        .collect();
    let last = *codes.last().expect("a tile has vectors");
    let part = |v: usize| codes.get(v).copied().unwrap_or(last);
    let packed = b.narrow_u8(part(0), part(1), part(2), part(3));
    let words = b.bitcast(Type::I32X4, packed);
    let o = b.add(off, cb);
    let two = b.index(2);
    let wo = b.binary(BinOp::Shr, o, two);
    for v in 0..codes.len() {
        let w = b.extract(words, v as u8);
        b.store(bufs.out, wo, v as i64, w);
    }
}

/// Where a tile's activation rows start, in words of the panel.
pub(super) enum Rows {
    /// Row `i` at `base + i·stride`.
    Dense { base: Val, stride: i64 },
    /// Row `i` at its own offset (an implicit GEMM's rows, from the row table).
    At(Vec<Val>),
}

/// A stretch of the reduction: `len` k steps whose activation words start `a_off` words
/// past each row's start and whose packed weights start at k step `w_off`.
pub(super) struct Seg {
    pub a_off: i64,
    pub w_off: i64,
    pub len: i64,
}

impl Seg {
    /// All `k4` steps of a dense panel.
    pub(super) fn whole(k4: i64) -> Seg {
        Seg {
            a_off: 0,
            w_off: 0,
            len: k4,
        }
    }
}

/// The reduction of one `mr × nv` tile: `accs[i·nv + v] += Σ_k panel(row i, k) · w(v, k)`
/// over the stretches `segs`; the packed weight vectors are `k4·4` words apart from word
/// `wbase`. Each stretch loops with k unrolled by two (half the loop overhead per dot
/// product), its offsets folded into the loads' displacements.
#[allow(clippy::too_many_arguments)]
pub(super) fn k_loop(
    b: &mut KernelBuilder,
    panel: Buf,
    wts: Buf,
    wbase: Val,
    rows: &Rows,
    k4: i64,
    segs: &[Seg],
    mr: usize,
    nv: usize,
    inits: Vec<Val>,
) -> Vec<Val> {
    // One k step of 4 bytes at `s + d` of stretch `seg` (`d` folded into displacements).
    let kstep = |b: &mut KernelBuilder, seg: &Seg, s: Val, d: i64, accs: &[Val]| -> Vec<Val> {
        let wo = b.mul_imm(s, 4);
        let wo = b.add(wbase, wo);
        let weight = |b: &mut KernelBuilder, v: usize| {
            let disp = (v as i64) * k4 * 4 + 4 * (seg.w_off + d);
            let w = b.load(Type::F32X4, wts, wo, disp);
            b.bitcast(Type::I8X16, w)
        };
        let dense = match rows {
            Rows::Dense { base, .. } => Some(b.add(*base, s)),
            Rows::At(_) => None,
        };
        let broadcast = |b: &mut KernelBuilder, i: usize| {
            let a = match (rows, dense) {
                (Rows::Dense { stride, .. }, Some(ao)) => {
                    b.load(Type::F32, panel, ao, i as i64 * stride + seg.a_off + d)
                }
                (Rows::At(at), _) => {
                    let ao = b.add(at[i], s);
                    b.load(Type::F32, panel, ao, seg.a_off + d)
                }
                (Rows::Dense { .. }, None) => unreachable!("a dense tile has its base"),
            };
            let a = b.splat(Type::F32X4, a);
            b.bitcast(Type::I8X16, a)
        };
        if nv <= NV {
            // Weights first, held across the rows.
            let ws: Vec<Val> = (0..nv).map(|v| weight(b, v)).collect();
            let mut next = Vec::with_capacity(accs.len());
            for i in 0..mr {
                let a = broadcast(b, i);
                for (v, &w) in ws.iter().enumerate() {
                    next.push(b.dot_u8s8(accs[i * nv + v], a, w));
                }
            }
            next
        } else {
            // Broadcasts first, held across the weight vectors.
            let a: Vec<Val> = (0..mr).map(|i| broadcast(b, i)).collect();
            let mut next = accs.to_vec();
            for v in 0..nv {
                let w = weight(b, v);
                for (i, &a) in a.iter().enumerate() {
                    next[i * nv + v] = b.dot_u8s8(accs[i * nv + v], a, w);
                }
            }
            next
        }
    };
    let mut accs = inits;
    for seg in segs {
        let even = seg.len / 2 * 2;
        if even > 0 {
            accs = b.loop_(0, even, 2, false, &accs, |b, s, accs| {
                let next = kstep(b, seg, s, 0, accs);
                kstep(b, seg, s, 1, &next)
            });
        }
        if even < seg.len {
            let s = b.index(even);
            accs = kstep(b, seg, s, 0, &accs);
        }
    }
    accs
}

fn out_offset(b: &mut KernelBuilder, o: &OutLayout, r: Val) -> Val {
    let at = out_row(b, o, r);
    b.add_imm(at, o.base as i64)
}

fn out_row(b: &mut KernelBuilder, o: &OutLayout, r: Val) -> Val {
    if o.bs == 0 || o.per_batch == 0 {
        return b.mul_imm(r, o.rs as i64);
    }
    let pb = b.index(o.per_batch as i64);
    let bi = b.binary(crate::ir::BinOp::Div, r, pb);
    let bm = b.mul_imm(bi, o.per_batch as i64);
    let mi = b.sub(r, bm);
    let x = b.mul_imm(bi, o.bs as i64);
    let y = b.mul_imm(mi, o.rs as i64);
    b.add(x, y)
}
