//! Data movement on codes: a gather (nearest Resize, DepthToSpace, SpaceToDepth, and any
//! other op whose element map is not affine) whose operand or result may be stored as u8
//! codes.
//!
//! Such an op leaves its result on its operand's grid, so the codes move with the values:
//! reading codes where the operand is coded and writing codes where the result is costs a
//! quarter of the data traffic, and spares the next int8 kernel its f32 → code step. The
//! two sides are decided separately (the operand by its producer and readers, the result
//! by this op and its readers), so the kernel converts where they differ: a code read for
//! an f32 result is `f32(q − z)·s`, the value the simulator holds; an f32 read for a coded
//! result is on the grid, and [`quantize::recover_on_grid`] gives its code exactly. Where
//! every reader quantises the result onto one other grid, the move applies that step itself
//! through a 256-entry table ([`Cx::readers_grid`]).

use super::quantize;
use super::{Cx, Piece, plan};
use crate::builder::KernelBuilder;
use crate::ir::{Buf, Type, Val};
use crate::lower::copy::{Runs, affine, copy_run, gather_kernel, source_map};
use crate::lower::{Arg, Lowered, NodeCx};
use kiln_graph::NodeId;
use kiln_quant::Rounding;
use kiln_quant::arith::{QParams, dequantize};

impl Cx<'_> {
    /// The op as a gather over codes, when its element map is not affine, the operand is
    /// on a u8 grid with no fake quantisation of its own, and the result stays on it.
    pub(super) fn move_codes(&mut self, n: NodeId, ncx: &NodeCx) -> Option<Vec<Piece>> {
        let q = self.q;
        let node = q.graph.node(n);
        if node.outputs().len() != 1 {
            return None;
        }
        let map = source_map(&node.op, ncx)?;
        let out_shape = ncx.out_shape(0).to_vec();
        if affine(&map, &out_shape).is_some()
            || map.iter().any(|&m| m < 0)
            || map.len() > i32::MAX as usize
            || !self.operand_fq(n, 0).is_empty()
        {
            return None;
        }
        let grid = self.moved_grid(n)?;
        let v = node.outputs()[0];
        let after = plan::quantises(q, q.out_tqc(v));
        if !quantize::u8_codes(&grid)
            || after
                .as_ref()
                .is_some_and(|t| *t != grid || t.rounding == Rounding::Up)
        {
            return None;
        }
        // Where every reader quantises the result onto one other grid, the move stores it
        // there already (through a table over the operand's codes).
        let target = after
            .is_none()
            .then(|| self.readers_grid(v, &grid))
            .flatten();
        self.could_read(n, 0);
        self.could_write(n, 0, target.as_ref().unwrap_or(&grid));
        let in_len: usize = ncx.in_shape(0)?.iter().product();
        let (coded_in, coded_out) = (
            self.in_codes(n, 0).is_some(),
            self.out_codes(n, 0).is_some(),
        );
        let types = |coded| if coded { Type::U8 } else { Type::F32 };
        let runs = Runs::of(&map, in_len);
        let mut args = vec![
            Arg::Operand(0),
            Arg::Const(runs.table().into()),
            Arg::Result(0),
        ];
        type Conv<'c> = Box<dyn Fn(&mut KernelBuilder, Val, Option<Buf>) -> Val + 'c>;
        let (conv, lut): (Option<Conv>, _) = match &target {
            Some(to) => {
                // Entry `q`: the reader's quantisation of the value `dequant(q)`, as its
                // code (coded result) or that code's value.
                let codes = (grid.qmin..=grid.qmax)
                    .map(|c| to.quantize(dequantize(c, grid.s(), grid.z()), 0));
                let (lut_ty, lut) = if coded_out {
                    (Type::U8, Arg::ConstBytes(codes.map(|c| c as u8).collect()))
                } else {
                    let vals = codes.map(|c| dequantize(c, to.s(), to.z())).collect();
                    (Type::F32, Arg::Const(vals))
                };
                args.push(lut);
                let grid = &grid;
                let conv: Conv = Box::new(move |b, v, lut| {
                    regrid(b, v, grid, coded_in, (lut_ty, lut.expect("a table")))
                });
                let len = (grid.qmax - grid.qmin + 1) as usize;
                (Some(conv), Some((lut_ty, len)))
            }
            None if coded_in != coded_out => {
                let grid = &grid;
                let conv: Conv = Box::new(move |b, v, _| convert(b, v, grid, coded_in, coded_out));
                (Some(conv), None)
            }
            None => (None, None),
        };
        let kernel = gather_kernel(
            &ncx.name,
            in_len,
            &runs,
            (types(coded_in), types(coded_out)),
            None,
            conv.as_deref(),
            lut,
        );
        if let Some(to) = target {
            self.regrid.insert(v, to);
        }
        Some(vec![Piece::Kernel(Lowered { kernel, args })])
    }

    /// A Concat of operands on one u8 grid (aligned scales: the lecture's "a copy"), none
    /// fake-quantised on the way in, with codes on either side: each operand's rows go to
    /// their slot of every result row, as whole vectors where both sides have one form,
    /// element by element through [`convert`] where they differ.
    pub(super) fn concat_codes(&mut self, n: NodeId, ncx: &NodeCx) -> Option<Vec<Piece>> {
        let q = self.q;
        let node = q.graph.node(n);
        let kiln_graph::Op::Concat(c) = &node.op else {
            return None;
        };
        let out_shape = ncx.out_shape(0).to_vec();
        let r = out_shape.len() as i64;
        let axis = if c.axis < 0 { c.axis + r } else { c.axis };
        if node.outputs().len() != 1 || !(0..r).contains(&axis) {
            return None;
        }
        let axis = axis as usize;
        if (0..node.inputs().len())
            .any(|k| node.input(k).is_none() || !self.operand_fq(n, k).is_empty())
        {
            return None;
        }
        let grid = self.moved_grid(n)?;
        let after = plan::quantises(q, q.out_tqc(node.outputs()[0]));
        if !quantize::u8_codes(&grid)
            || after
                .as_ref()
                .is_some_and(|t| *t != grid || t.rounding == Rounding::Up)
        {
            return None;
        }
        for k in 0..node.inputs().len() {
            self.could_read(n, k);
        }
        self.could_write(n, 0, &grid);
        let coded_out = self.out_codes(n, 0).is_some();
        let outer: usize = out_shape[..axis].iter().product();
        let after_axis: usize = out_shape[axis + 1..].iter().product();
        let whole_row = out_shape[axis] * after_axis;
        let ty = |coded| if coded { Type::U8 } else { Type::F32 };
        let mut pieces = Vec::new();
        let mut at = 0usize;
        for k in 0..node.inputs().len() {
            let shape = ncx.in_shape(k)?;
            let row = shape.get(axis)? * after_axis;
            let coded_in = self.in_codes(n, k).is_some();
            if row > 0 && outer > 0 {
                let mut b = KernelBuilder::new(format!("{}_{k}", ncx.name));
                let x = b.buf("x", ty(coded_in), outer * row, true);
                let out = b.buf("out", ty(coded_out), outer * whole_row, false);
                b.parallel(0, outer as i64, 1, |b, i| {
                    let s = b.mul_imm(i, row as i64);
                    let d = b.mul_imm(i, whole_row as i64);
                    let d = b.add_imm(d, at as i64);
                    if coded_in == coded_out {
                        copy_run(b, (x, s), (out, d), row, ty(coded_in));
                        return;
                    }
                    b.for_(0, row as i64, 1, |b, e| {
                        let se = b.add(s, e);
                        let v = b.load(ty(coded_in), x, se, 0);
                        let v = convert(b, v, &grid, coded_in, coded_out);
                        let de = b.add(d, e);
                        b.store(out, de, 0, v);
                    });
                });
                pieces.push(Piece::Kernel(Lowered {
                    kernel: b.finish(),
                    args: vec![Arg::Operand(k), Arg::Result(0)],
                }));
            }
            at += row;
        }
        Some(pieces)
    }

    /// The grid every reader of `v` quantises it onto, when that is one grid other than
    /// `own`, with u8 codes and a rounding that fixes its own grid (not `Up`), and `v` is
    /// not a graph output. The readers then find `v` on their grid and skip that step, so
    /// storing `quantise(v)` rather than `v` changes nothing they compute. PP-OCRv4 det's
    /// upsampling Resizes feed Adds and a Concat whose operand grids differ from their
    /// sources'.
    fn readers_grid(&self, v: kiln_graph::Value, own: &QParams) -> Option<QParams> {
        let q = &self.q;
        let uses = q.graph.uses(v);
        if uses.is_empty() || q.graph.outputs().contains(&v) {
            return None;
        }
        let mut grids = uses
            .iter()
            .map(|&(m, k)| plan::quantises(q, q.in_tqc(m, k)));
        let first = grids.next()??;
        let ok = grids.all(|g| g.as_ref() == Some(&first))
            && &first != own
            && quantize::u8_codes(&first)
            && first.axis.is_none()
            && first.rounding != Rounding::Up;
        ok.then_some(first)
    }
}

/// A code of `p` (a byte, or an f32 value on `p`'s grid) through a 256-entry table indexed
/// by `q − qmin`.
fn regrid(
    b: &mut KernelBuilder,
    v: Val,
    p: &QParams,
    coded_in: bool,
    (ty, lut): (Type, Buf),
) -> Val {
    let idx = if coded_in {
        let q = b.cast(Type::I32, v);
        let o = b.iconst(Type::I32, -(p.qmin as i64));
        b.add(q, o)
    } else {
        let c = quantize::recover_on_grid(b, v, p);
        let o = b.iconst(Type::I32, (p.z() - p.qmin) as i64);
        b.add(c, o)
    };
    let idx = b.cast(Type::Index, idx);
    b.load(ty, lut, idx, 0)
}

/// An element of `p`'s grid from the operand's form to the result's: a code read for an
/// f32 result is `f32(q − z)·s`; an f32 value read for a coded result gets its code back.
fn convert(b: &mut KernelBuilder, v: Val, p: &QParams, coded_in: bool, coded_out: bool) -> Val {
    match (coded_in, coded_out) {
        (true, false) => {
            let c = b.cast(Type::I32, v);
            let z = b.iconst(Type::I32, p.z() as i64);
            let c = b.sub(c, z);
            let c = b.cast(Type::F32, c);
            let s = b.fconst(p.s());
            b.mul(c, s)
        }
        (false, true) => {
            let c = quantize::recover_on_grid(b, v, p);
            let z = b.iconst(Type::I32, p.z() as i64);
            let q = b.add(c, z);
            b.cast(Type::U8, q)
        }
        _ => v,
    }
}
