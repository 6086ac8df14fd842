//! `graph.fuse-transpose-matmul`: a Transpose that only swaps the last two axes of a
//! MatMul or Gemm operand becomes the op's `transA`/`transB` flag (toggled, so a flag that
//! is already set is cleared): the kernel then reads the operand with swapped strides
//! instead of materialising the transposed copy. Attention's `Q·Kᵀ` is the common case.
//!
//! The Transpose must be read by that one operand alone (and not be returned): otherwise
//! its result is still needed and nothing is saved. A Transpose feeding both operands of
//! one MatMul (`x·xᵀ`'s other form, `xᵀ·xᵀ`) is read twice and stays.

use super::fuse_util::single_private_use;
use crate::graph::{Graph, NodeId};
use crate::ops::Op;
use kiln_core::{Pass, Result};

pub struct FuseTransposeMatMul;

/// Whether `perm` (already resolved for its rank) is the identity but for the last two axes.
fn swaps_last_two(perm: &[usize]) -> bool {
    let r = perm.len();
    r >= 2
        && perm[r - 2] == r - 1
        && perm[r - 1] == r - 2
        && perm[..r - 2].iter().enumerate().all(|(i, &p)| i == p)
}

/// Folds the transpose feeding operand `k` (0 = A, 1 = B) of `n`, if there is one.
fn fold_operand(g: &mut Graph, n: NodeId, k: usize) -> bool {
    let Some(v) = g.node(n).input(k) else {
        return false;
    };
    let Some(t) = g.producer(v) else { return false };
    let Op::Transpose(tr) = &g.node(t).op else {
        return false;
    };
    let Some(x) = g.node(t).input(0) else {
        return false;
    };
    let Some(rank) = g.value(x).ty.as_ref().map(|t| t.rank()) else {
        return false;
    };
    let swaps = tr.perm_for(rank).is_ok_and(|p| swaps_last_two(&p));
    // Gemm is 2-D only; the epilogue operands (bias, Y, slope) are never transposed.
    if !swaps || !single_private_use(g, v) {
        return false;
    }
    match g.op_mut(n) {
        Op::MatMul(m) if k == 0 => m.trans_a = !m.trans_a,
        Op::MatMul(m) => m.trans_b = !m.trans_b,
        Op::Gemm(m) if k == 0 => m.trans_a = !m.trans_a,
        Op::Gemm(m) => m.trans_b = !m.trans_b,
        _ => return false,
    }
    g.set_input(n, k, Some(x));
    g.remove_node(t);
    true
}

impl Pass<Graph> for FuseTransposeMatMul {
    fn name(&self) -> &'static str {
        "graph.fuse-transpose-matmul"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for n in g.topo_order()? {
            if !g.contains(n) || !matches!(g.node(n).op, Op::MatMul(_) | Op::Gemm(_)) {
                continue;
            }
            changed |= fold_operand(g, n, 0);
            changed |= fold_operand(g, n, 1);
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::swaps_last_two;

    #[test]
    fn last_two_swap() {
        assert!(swaps_last_two(&[1, 0]));
        assert!(swaps_last_two(&[0, 1, 3, 2]));
        assert!(!swaps_last_two(&[0, 2, 1, 3]));
        assert!(!swaps_last_two(&[1, 0, 2]));
        assert!(!swaps_last_two(&[0]));
        assert!(!swaps_last_two(&[0, 1]));
    }
}
