//! MatMul of two activations (attention's `Q·Kᵀ` and `P·V`) on its integer path: both
//! operands become codes at run time, then the `vpdpbusd` GEMM with the plan's epilogue.
//!
//! `dot_u8s8` multiplies UNSIGNED bytes by SIGNED ones, but neither operand's centred code
//! `c = q − z` fits a byte in general (an asymmetric u8 tensor with `z = 137` has centred
//! codes in `[−137, 118]`). So each operand is stored shifted into its byte type and the
//! shifts are undone in the accumulator's start value: with `a = c_a + ZA ∈ [0, 255]`
//! (`ZA = z_a − qmin_a`) and `b = c_b + ZB ∈ [−128, 127]` (`ZB = z_b − qmin_b − 128`),
//!
//! `Σ c_a·c_b = Σ a·b − ZB·Σ_k a − ZA·Σ_k b + K·ZA·ZB`,
//!
//! a per-row term (from A's row sums, formed while quantising A) plus a per-column term
//! (from B's column sums, formed while packing B). All of it is wrapping i32 arithmetic,
//! which is exact because the true result fits i32 (the plan checked the bound, and the
//! bias is kept below `2^30` here). The epilogue is [`epilogue::epilogue`], as for the
//! constant-weight GEMM. Batch dimensions broadcast as numpy's matmul does: each result
//! matrix reads the A and B matrices a small constant table names.

use super::codes::CodeSpec;
use super::epilogue;
use super::gemm::{self, NV};
use super::quantize::{self, store_code};
use super::{Cx, Scratch};
use crate::builder::KernelBuilder;
use crate::ir::{BinOp, Buf, Kernel, RedOp, Type, Val};
use crate::lower::{Arg, Lowered, NodeCx};
use crate::program::Piece;
use kiln_core::Result;
use kiln_graph::NodeId;
use kiln_graph::ops::Op;
use kiln_graph::ops::activation::RESIDUAL;
use kiln_graph::ops::util::broadcast_shapes;
use kiln_quant::arith::QParams;
use kiln_quant::plan::{ComputePlan, Epilogue};

/// Sizes of one batched product.
struct Geo {
    m: usize,
    k: usize,
    n: usize,
    /// K rounded up to 4 bytes, in 4-byte words.
    k4: usize,
    /// N rounded up to whole vectors.
    np: usize,
    a_mats: usize,
    b_mats: usize,
    /// Per result matrix: which A and which B matrix it multiplies.
    pairs: Vec<(usize, usize)>,
    trans_b: bool,
}

fn geometry(a: &[usize], b: &[usize], trans_b: bool) -> Option<Geo> {
    let (a_batch, m, k) = match a.len() {
        0 => return None,
        1 => (&[][..], 1, a[0]),
        r => (&a[..r - 2], a[r - 2], a[r - 1]),
    };
    let (b_batch, k2, n) = match (b.len(), trans_b) {
        (0, _) | (1, true) => return None,
        (1, false) => (&[][..], b[0], 1),
        (r, false) => (&b[..r - 2], b[r - 2], b[r - 1]),
        (r, true) => (&b[..r - 2], b[r - 1], b[r - 2]),
    };
    if k != k2 || m == 0 || n == 0 || k == 0 {
        return None;
    }
    let batch = broadcast_shapes(a_batch, b_batch).ok()?;
    let pairs: Vec<(usize, usize)> = kiln_graph::ops::matmul::batch_index(a_batch, &batch)
        .into_iter()
        .zip(kiln_graph::ops::matmul::batch_index(b_batch, &batch))
        .collect();
    Some(Geo {
        m,
        k,
        n,
        k4: k.div_ceil(4),
        np: n.div_ceil(4) * 4,
        a_mats: a_batch.iter().product(),
        b_mats: b_batch.iter().product(),
        pairs,
        trans_b,
    })
}

/// Whether codes of `p` span at most one byte.
fn byte_wide(p: &QParams) -> bool {
    quantize::kernel_params(p) && p.qmax - p.qmin <= 255
}

pub(super) fn lower(
    cx: &Cx,
    n: NodeId,
    ncx: &NodeCx,
    p: &ComputePlan,
) -> Result<Option<Vec<Piece>>> {
    let q = &cx.q;
    let node = q.graph.node(n);
    let Op::MatMul(mm) = &node.op else {
        return Ok(None);
    };
    if mm.trans_a || p.w_codes.is_some() || !byte_wide(&p.x) || !byte_wide(&p.w) {
        return Ok(None);
    }
    if let Epilogue::Requant { out, .. } | Epilogue::Float { out: Some(out), .. } = &p.epilogue
        && !quantize::kernel_params(out)
    {
        return Ok(None);
    }
    let out_shape = ncx.out_shape(0).to_vec();
    match p.epilogue {
        Epilogue::Float { slope: true, .. } => return Ok(None),
        Epilogue::Float { residual: true, .. }
            if ncx.in_shape(RESIDUAL) != Some(out_shape.as_slice()) =>
        {
            return Ok(None);
        }
        _ => {}
    }
    let (Some(a_shape), Some(b_shape)) = (ncx.in_shape(0), ncx.in_shape(1)) else {
        return Ok(None);
    };
    let Some(g) = geometry(a_shape, b_shape, mm.trans_b) else {
        return Ok(None);
    };
    if g.pairs.len() * g.m * g.n != out_shape.iter().product::<usize>() {
        return Ok(None);
    }
    let bias: Vec<i64> = match &p.bias {
        None => vec![0; g.n],
        Some(v) if v.len() == 1 || v.len() == g.n => (0..g.n)
            .map(|c| v[if v.len() == 1 { 0 } else { c }] as i64)
            .collect(),
        Some(_) => return Ok(None),
    };
    // The contract clamps an f64 accumulator to i32; wrapping sums equal it only when the
    // true value fits, which the plan's bound leaves room for when |bias| < 2^30.
    if bias.iter().any(|b| b.abs() >= 1 << 30) {
        return Ok(None);
    }
    let (Some(sa), Some(sb)) = (
        super::eltwise::code_spec(cx, n, 0, &p.x),
        super::eltwise::code_spec(cx, n, 1, &p.w),
    ) else {
        return Ok(None);
    };
    let za = (p.x.z() - p.x.qmin) as i64;
    let zb = (p.w.z() - p.w.qmin - 128) as i64;
    let kk = g.k as i64;
    // Column constant: bias + K·ZA·ZB, plus 128·K·ZA because B's column sums are taken
    // over the biased bytes `b + 128` (see `pack_b`).
    let cconst: Vec<i32> = (0..g.np)
        .map(|c| {
            let b0 = bias.get(c).copied().unwrap_or(0);
            (b0 + kk * za * zb + 128 * kk * za) as i32
        })
        .collect();
    let scales = epilogue::channel_scales(&p.epilogue);
    if scales.len() != 1 {
        return Ok(None);
    }
    let scales: std::sync::Arc<[f32]> =
        epilogue::scale_data(&p.epilogue, vec![scales[0]; g.np]).into();

    let name = &ncx.name;
    let mut scratch = Scratch::default();
    let mut pieces = Vec::new();
    let a_rows = g.a_mats * g.m;
    let panel = scratch.alloc(a_rows * g.k4 * 4);
    let rowterm = scratch.alloc(a_rows * 4);
    let packed = scratch.alloc(g.b_mats * g.np * g.k4 * 4);
    let colterm = scratch.alloc(g.b_mats * g.np * 4);
    pieces.push(kernel(
        codes_a(&format!("{name}_codes"), &g, &sa, za as i32, -zb as i32),
        vec![Arg::Operand(0), panel.clone(), rowterm.clone()],
    ));
    pieces.push(kernel(
        pack_b(
            &format!("{name}_pack"),
            &g,
            &sb,
            p.w.z() - p.w.qmin,
            za as i32,
        ),
        vec![
            Arg::Operand(1),
            Arg::ConstBytes(i32_bytes(&cconst).into()),
            packed.clone(),
            colterm.clone(),
        ],
    ));
    let pairs: Vec<i32> = g
        .pairs
        .iter()
        .flat_map(|&(ia, ib)| [ia as i32, ib as i32])
        .collect();
    let pairs: std::sync::Arc<[u8]> = i32_bytes(&pairs).into();
    let residual = matches!(p.epilogue, Epilogue::Float { residual: true, .. });
    let res_arg = if residual {
        match cx.operand_f32(n, RESIDUAL, ncx, &mut scratch, &mut pieces) {
            Some(a) => Some(a),
            None => return Ok(None),
        }
    } else {
        None
    };
    for (suffix, mr) in [("", 4), ("_r", g.m % 4)] {
        let tiles = if mr == 4 { g.m / 4 } else { 1 };
        if mr == 0 || tiles == 0 {
            continue;
        }
        let k = gemm_kernel(
            &format!("{name}_gemm{suffix}"),
            &g,
            &p.epilogue,
            mr,
            residual,
        );
        let mut args = vec![
            panel.clone(),
            packed.clone(),
            colterm.clone(),
            rowterm.clone(),
            Arg::ConstBytes(pairs.clone()),
            Arg::Const(scales.clone()),
        ];
        if let Some(r) = &res_arg {
            args.push(r.clone());
        }
        args.push(Arg::Result(0));
        pieces.push(kernel(k, args));
    }
    Ok(cx.finish_compute(n, ncx, p, pieces))
}

fn kernel(kernel: Kernel, args: Vec<Arg>) -> Piece {
    Piece::Kernel(Lowered { kernel, args })
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn splat_i32(b: &mut KernelBuilder, x: i64) -> Val {
    let c = b.iconst(Type::I32, x);
    b.splat(Type::I32X4, c)
}

/// A's rows as bytes `c_a + ZA` (padding bytes 0, so they add nothing to the dot
/// products), and each row's term `−ZB·Σ_k (c_a + ZA)`.
fn codes_a(name: &str, g: &Geo, spec: &CodeSpec, za: i32, neg_zb: i32) -> Kernel {
    let rows = g.a_mats * g.m;
    let (k, kp) = (g.k, g.k4 * 4);
    let mut b = KernelBuilder::new(name);
    let x = b.buf("a", Type::F32, rows * k, true);
    let out = b.buf("panel", Type::U8, rows * kp, false);
    let rt = b.buf("rowterm", Type::I32, rows, false);
    let vec_end = k / 16 * 16;
    b.parallel(0, rows as i64, 1, |b, r| {
        let sbase = b.mul_imm(r, k as i64);
        let dbase = b.mul_imm(r, kp as i64);
        let zero = b.iconst(Type::I32, 0);
        let mut sum = zero;
        if vec_end > 0 {
            let z4 = b.splat(Type::I32X4, zero);
            let acc = b.loop_(0, vec_end as i64, 16, false, &[z4], |b, j, acc| {
                let so = b.add(sbase, j);
                let zv = splat_i32(b, za as i64);
                let mut parts = Vec::with_capacity(4);
                let mut s = acc[0];
                for t in 0..4 {
                    let v = b.load(Type::F32X4, x, so, 4 * t);
                    let c = spec.centred_int(b, v);
                    let c = b.add(c, zv);
                    s = b.add(s, c);
                    parts.push(c);
                }
                let bytes = b.narrow_u8(parts[0], parts[1], parts[2], parts[3]);
                let dof = b.add(dbase, j);
                b.store(out, dof, 0, bytes);
                vec![s]
            });
            sum = b.reduce(RedOp::Add, acc[0]);
        }
        if vec_end < k {
            let s = b.loop_(vec_end as i64, k as i64, 1, false, &[sum], |b, j, acc| {
                let so = b.add(sbase, j);
                let v = b.load(Type::F32, x, so, 0);
                let c = spec.centred_int(b, v);
                let zs = b.iconst(Type::I32, za as i64);
                let c = b.add(c, zs);
                let dof = b.add(dbase, j);
                store_code(b, out, dof, c);
                vec![b.add(acc[0], c)]
            });
            sum = s[0];
        }
        let zero8 = b.iconst(Type::U8, 0);
        for j in k..kp {
            b.store(out, dbase, j as i64, zero8);
        }
        let f = b.iconst(Type::I32, neg_zb as i64);
        let t = b.mul(sum, f);
        b.store(rt, r, 0, t);
    });
    b.finish()
}

/// B's matrices packed for the GEMM — per matrix, block `nb` of 4 columns, word step `s`:
/// 16 bytes, byte `4i + j` = `b(k = 4s + j, column 4nb + i) = c_b + ZB` as s8 — and each
/// column's term `cconst[c] − ZA·Σ_k (c_b + ZB + 128)`. Bytes are formed biased
/// (`u = c_b + ZB + 128 = c_b + zb8 ∈ [0, 255]`) and flipped to s8 by adding −128 per byte.
fn pack_b(name: &str, g: &Geo, spec: &CodeSpec, zb8: i32, za: i32) -> Kernel {
    let (k, n, k4, np) = (g.k, g.n, g.k4, g.np);
    let mut b = KernelBuilder::new(name);
    let y = b.buf("b", Type::F32, g.b_mats * k * n, true);
    let cc = b.buf("cconst", Type::I32, np, true);
    let out = b.buf("packed", Type::U8, g.b_mats * np * k4 * 4, false);
    let ct = b.buf("colterm", Type::I32, g.b_mats * np, false);
    let (full_blocks, full_steps) = (n / 4, k / 4);
    // Offset of element (kk, c) within a matrix.
    let (ks, cs) = if g.trans_b { (1, k) } else { (n, 1) };
    b.parallel(0, g.b_mats as i64, 1, |b, mat| {
        let sbase = b.mul_imm(mat, (k * n) as i64);
        let dmat = b.mul_imm(mat, (np * k4 * 4) as i64);
        let cmat = b.mul_imm(mat, np as i64);
        // One block of 4 columns from `c0`; `cols`/`steps` static when at an edge.
        let block = |b: &mut KernelBuilder, c0: Val, cols: usize| {
            let dblk = b.mul_imm(c0, (k4 * 4) as i64);
            let dblk = b.add(dmat, dblk);
            let z = splat_i32(b, 0);
            // The 4-byte groups of step `s` (k = 4s..4s+rows): lanes along k per column
            // when B is stored transposed (then `narrow_u8` packs them in place), else
            // lanes along the columns per k row, packed by shifts. `acc` sums per column.
            let step = |b: &mut KernelBuilder, s: Val, rows: usize, acc: &[Val]| -> Vec<Val> {
                let k0 = b.mul_imm(s, 4);
                let co = b.mul_imm(c0, cs as i64);
                let base = b.mul_imm(k0, ks as i64);
                let base = b.add(base, co);
                let base = b.add(base, sbase);
                let zbv = splat_i32(b, zb8 as i64);
                // u(j, i) for element (k = 4s + j, column c0 + i), lanes along `lane`.
                let gather = |b: &mut KernelBuilder, fixed: usize, along_k: bool| -> Val {
                    let count = if along_k { rows } else { cols };
                    let off = |t: usize, f: usize| {
                        if along_k {
                            t * ks + f * cs
                        } else {
                            f * ks + t * cs
                        }
                    };
                    let contiguous = if along_k { ks == 1 } else { cs == 1 };
                    if count == 4 && contiguous {
                        let v = b.load(Type::F32X4, y, base, off(0, fixed) as i64);
                        let c = spec.centred_int(b, v);
                        return b.add(c, zbv);
                    }
                    let mut v = splat_i32(b, 128);
                    for t in 0..count {
                        let e = b.load(Type::F32, y, base, off(t, fixed) as i64);
                        let c = spec.centred_int(b, e);
                        let zs = b.iconst(Type::I32, zb8 as i64);
                        let c = b.add(c, zs);
                        v = b.insert(v, c, t as u8);
                    }
                    v
                };
                let mut acc = acc.to_vec();
                let bytes = if g.trans_b {
                    let mut us = Vec::with_capacity(4);
                    for (i, a) in acc.iter_mut().enumerate() {
                        let u = if i < cols {
                            gather(b, i, true)
                        } else {
                            splat_i32(b, 128)
                        };
                        if i < cols {
                            // Lanes past K hold 128 only in the tail step: masked below.
                            let add = if rows == 4 {
                                u
                            } else {
                                let mut v = splat_i32(b, 0);
                                for t in 0..rows {
                                    let x = b.extract(u, t as u8);
                                    v = b.insert(v, x, t as u8);
                                }
                                v
                            };
                            *a = b.add(*a, add);
                        }
                        us.push(u);
                    }
                    b.narrow_u8(us[0], us[1], us[2], us[3])
                } else {
                    let mut word = splat_i32(b, 0);
                    for j in 0..4 {
                        let u = if j < rows {
                            gather(b, j, false)
                        } else {
                            splat_i32(b, 128)
                        };
                        if j < rows {
                            // Lanes past the last column hold 128; their sums go unused.
                            acc[0] = b.add(acc[0], u);
                        }
                        let sh = b.iconst(Type::I32, 8 * j as i64);
                        let u = b.binary(BinOp::Shl, u, sh);
                        word = b.binary(BinOp::Or, word, u);
                    }
                    b.bitcast(Type::I8X16, word)
                };
                let m = b.iconst(Type::I8, -128);
                let m = b.splat(Type::I8X16, m);
                let bytes = b.add(bytes, m);
                let so = b.mul_imm(s, 16);
                let dof = b.add(dblk, so);
                b.store(out, dof, 0, bytes);
                acc
            };
            let n_acc = if g.trans_b { 4 } else { 1 };
            let mut acc = vec![z; n_acc];
            if full_steps > 0 {
                acc = b.loop_(0, full_steps as i64, 1, false, &acc, |b, s, a| {
                    step(b, s, 4, a)
                });
            }
            if full_steps < k4 {
                let s = b.index(full_steps as i64);
                acc = step(b, s, k - 4 * full_steps, &acc);
            }
            // Column sums as one vector (lane i = column c0 + i).
            let sums = if g.trans_b {
                let mut v = splat_i32(b, 0);
                for (i, &a) in acc.iter().enumerate() {
                    let x = b.reduce(RedOp::Add, a);
                    v = b.insert(v, x, i as u8);
                }
                v
            } else {
                acc[0]
            };
            let c = b.load(Type::I32X4, cc, c0, 0);
            let zav = splat_i32(b, za as i64);
            let t = b.mul(sums, zav);
            let t = b.sub(c, t);
            let o = b.add(cmat, c0);
            b.store(ct, o, 0, t);
        };
        if full_blocks > 0 {
            b.for_(0, full_blocks as i64 * 4, 4, |b, c0| block(b, c0, 4));
        }
        if full_blocks * 4 < n {
            let c0 = b.index(full_blocks as i64 * 4);
            block(b, c0, n - full_blocks * 4);
        }
    });
    b.finish()
}

/// The GEMM over every result matrix's row tiles of height `mr` (4, or the remainder rows
/// of each matrix); buffers `panel, packed, colterm, rowterm, pairs, scales, [residual], out`.
fn gemm_kernel(name: &str, g: &Geo, e: &Epilogue, mr: usize, residual: bool) -> Kernel {
    let (m, n, k4, np) = (g.m, g.n, g.k4, g.np);
    let a_rows = g.a_mats * m;
    let out_len = g.pairs.len() * m * n;
    let mut b = KernelBuilder::new(name);
    let bufs = Bufs {
        panel: b.buf("panel", Type::F32, a_rows * k4, true),
        packed: b.buf("packed", Type::F32, g.b_mats * np * k4, true),
        colterm: b.buf("colterm", Type::I32, g.b_mats * np, true),
        rowterm: b.buf("rowterm", Type::I32, a_rows, true),
        pairs: b.buf("pairs", Type::I32, 2 * g.pairs.len(), true),
        scales: b.buf("scales", Type::F32, epilogue::table_len(e) + np, true),
        residual: residual.then(|| b.buf("residual", Type::F32, out_len, true)),
        out: b.buf("out", Type::F32, out_len, false),
    };
    let (tiles, row0) = if mr == 4 { (m / 4, 0) } else { (1, m / 4 * 4) };
    b.parallel(0, (g.pairs.len() * tiles) as i64, 1, |b, t| {
        let tv = b.index(tiles as i64);
        let ob = b.binary(BinOp::Div, t, tv);
        let obt = b.mul_imm(ob, tiles as i64);
        let mt = b.sub(t, obt);
        let m0 = b.mul_imm(mt, 4);
        let m0 = b.add_imm(m0, row0 as i64);
        let p2 = b.mul_imm(ob, 2);
        let ia = b.load(Type::I32, bufs.pairs, p2, 0);
        let ia = b.cast(Type::Index, ia);
        let ib = b.load(Type::I32, bufs.pairs, p2, 1);
        let ib = b.cast(Type::Index, ib);
        let arow = b.mul_imm(ia, m as i64);
        let arow = b.add(arow, m0);
        let orow = b.mul_imm(ob, m as i64);
        let orow = b.add(orow, m0);
        let wmat = b.mul_imm(ib, (np * k4) as i64);
        let cmat = b.mul_imm(ib, np as i64);
        let at = Tile {
            mr,
            arow,
            orow,
            wmat,
            cmat,
        };
        let full_vecs = n / 4;
        let groups = full_vecs / NV;
        if groups > 0 {
            b.for_(0, (groups * NV * 4) as i64, (NV * 4) as i64, |b, cb| {
                tile(b, g, e, &bufs, &at, cb, &[4; NV]);
            });
        }
        let c0 = groups * NV * 4;
        if c0 < n {
            let lanes: Vec<usize> = (c0..n).step_by(4).map(|c| (n - c).min(4)).collect();
            let cb = b.index(c0 as i64);
            tile(b, g, e, &bufs, &at, cb, &lanes);
        }
    });
    b.finish()
}

struct Bufs {
    panel: Buf,
    packed: Buf,
    colterm: Buf,
    rowterm: Buf,
    pairs: Buf,
    scales: Buf,
    residual: Option<Buf>,
    out: Buf,
}

/// Where one row tile reads and writes.
struct Tile {
    mr: usize,
    /// First panel row (A matrix row), first result row.
    arow: Val,
    orow: Val,
    /// The B matrix's packed words and column terms.
    wmat: Val,
    cmat: Val,
}

/// One `mr × lanes.len()` tile of vectors at columns `cb..`; `lanes[v]` valid columns of
/// vector `v` (4 except at the right edge).
fn tile(
    b: &mut KernelBuilder,
    g: &Geo,
    e: &Epilogue,
    bufs: &Bufs,
    at: &Tile,
    cb: Val,
    lanes: &[usize],
) {
    let (n, k4) = (g.n, g.k4 as i64);
    let nv = lanes.len();
    let mr = at.mr;
    let cbase = b.add(at.cmat, cb);
    let cols: Vec<Val> = (0..nv)
        .map(|v| b.load(Type::I32X4, bufs.colterm, cbase, 4 * v as i64))
        .collect();
    let mut inits = Vec::with_capacity(mr * nv);
    for i in 0..mr {
        let r = b.load(Type::I32, bufs.rowterm, at.arow, i as i64);
        let r = b.splat(Type::I32X4, r);
        for &c in &cols {
            inits.push(b.add(c, r));
        }
    }
    // Block of column cb starts at word (cb/4)·k4·4 = cb·k4 of the matrix.
    let wbase = b.mul_imm(cb, k4);
    let wbase = b.add(at.wmat, wbase);
    let base = b.mul_imm(at.arow, k4);
    let rows = gemm::Rows::Dense { base, stride: k4 };
    let segs = [gemm::Seg::whole(k4)];
    let accs = gemm::k_loop(
        b,
        bufs.panel,
        bufs.packed,
        wbase,
        &rows,
        k4,
        &segs,
        mr,
        nv,
        inits,
    );
    for i in 0..mr {
        let r = b.add_imm(at.orow, i as i64);
        let off = b.mul_imm(r, n as i64);
        for (v, &l) in lanes.iter().enumerate() {
            let ch = b.add_imm(cb, 4 * v as i64);
            let o = b.add(off, ch);
            let res = bufs.residual.map(|rb| {
                if l == 4 {
                    b.load(Type::F32X4, rb, o, 0)
                } else {
                    let mut vec = b.fsplat(Type::F32X4, 0.0);
                    for t in 0..l {
                        let x = b.load(Type::F32, rb, o, t as i64);
                        vec = b.insert(vec, x, t as u8);
                    }
                    vec
                }
            });
            let y = epilogue::epilogue(b, e, accs[i * nv + v], bufs.scales, ch, res);
            if l == 4 {
                b.store(bufs.out, o, 0, y);
            } else {
                for t in 0..l {
                    let x = b.extract(y, t as u8);
                    b.store(bufs.out, o, t as i64, x);
                }
            }
        }
    }
}
