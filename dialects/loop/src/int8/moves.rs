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
//! result is on the grid, and [`quantize::recover_on_grid`] gives its code exactly.

use super::quantize;
use super::{Cx, Piece, plan};
use crate::builder::KernelBuilder;
use crate::ir::{Type, Val};
use crate::lower::copy::{Convert, Runs, affine, gather_kernel, source_map};
use crate::lower::{Arg, Lowered, NodeCx};
use kiln_graph::NodeId;
use kiln_quant::Rounding;
use kiln_quant::arith::QParams;

impl Cx {
    /// The op as a gather over codes, when its element map is not affine, the operand is
    /// on a u8 grid with no fake quantisation of its own, and the result stays on it.
    pub(super) fn move_codes(&mut self, n: NodeId, ncx: &NodeCx) -> Option<Vec<Piece>> {
        let q = self.q.clone();
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
        let after = plan::quantises(&q, q.out_tqc(v));
        if !quantize::u8_codes(&grid)
            || after.is_some_and(|t| t != grid || t.rounding == Rounding::Up)
        {
            return None;
        }
        self.could_read(n, 0);
        self.could_write(n, 0, &grid);
        let in_len: usize = ncx.in_shape(0)?.iter().product();
        let (coded_in, coded_out) = (
            self.in_codes(n, 0).is_some(),
            self.out_codes(n, 0).is_some(),
        );
        let types = |coded| if coded { Type::U8 } else { Type::F32 };
        let runs = Runs::of(&map, in_len);
        let conv = |b: &mut KernelBuilder, v: Val| convert(b, v, &grid, coded_in, coded_out);
        let kernel = gather_kernel(
            &ncx.name,
            in_len,
            &runs,
            (types(coded_in), types(coded_out)),
            None,
            (coded_in != coded_out).then_some(&conv as Convert),
        );
        Some(vec![Piece::Kernel(Lowered {
            kernel,
            args: vec![Arg::Operand(0), Arg::Const(runs.table()), Arg::Result(0)],
        })])
    }
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
