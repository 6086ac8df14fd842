//! `graph.fuse-hard-sigmoid`: `relu6(x + 3) / 6` (`clip(add(x, 3), 0, 6)` then `/ 6` or
//! `· 0.16666667`) becomes `hard_sigmoid {alpha=1/6, beta=0.5}`, the form MobileNetV3's
//! squeeze-excite gate takes when exported from `F.relu6(x + 3) / 6`.
//!
//! Run after `graph.fuse-hard-swish` so `x · relu6(x + 3) / 6` becomes a `hard_swish`
//! directly; when run first, `graph.fuse-hard-swish` still fuses `x · hard_sigmoid(x)`.

use super::fuse_hard_swish::{div6, relu6_of_x_plus_3};
use super::pattern::{out, replace, same_float_type};
use crate::graph::{Graph, NodeId};
use crate::ops::{HardSigmoid, Op};
use kiln_core::{Pass, Result};

pub struct FuseHardSigmoid;

impl Pass<Graph> for FuseHardSigmoid {
    fn name(&self) -> &'static str {
        "graph.fuse-hard-sigmoid"
    }
    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        super::pattern::for_each_node(g, rewrite)
    }
}

fn rewrite(g: &mut Graph, clip: NodeId) -> bool {
    let Some((x, add)) = relu6_of_x_plus_3(g, clip) else {
        return false;
    };
    let Some(d) = div6(g, out(g, clip)) else {
        return false;
    };
    if !same_float_type(g, out(g, d), x) {
        return false;
    }
    let op = Op::HardSigmoid(HardSigmoid {
        alpha: 1.0 / 6.0,
        beta: 0.5,
    });
    replace(g, d, op, vec![Some(x)], &[add, clip, d]);
    true
}
