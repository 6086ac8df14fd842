//! The rewrite half of `graph.layout`: turns the search's decision (which ops are flipped
//! to channels last) into IR — flipped ops get their `layout` attribute, a remapped axis
//! or permuted constants, conversions are inserted where a producer and a reader disagree,
//! and conversions that meet a transpose of the model compose with it (and vanish when the
//! two cancel).

use super::fuse_util::{add_const, const_tensor, drop_dead_const};
use super::layout::{Analysis, is_free};
use crate::graph::{Graph, NodeId, Value};
use crate::infer::infer_shapes;
use crate::ops::channel_layout::transpose;
use crate::ops::channel_layout::{Layout as DataLayout, permute, to_first_perm, to_last_perm};
use crate::ops::util::norm_axis;
use crate::ops::{Op, Reshape, Transpose};
use kiln_core::{Result, Tensor};
use std::collections::HashSet;

/// What the rewrite did: conversions left in the graph, and transposes of the model that
/// cancelled against one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub inserted: usize,
    pub cancelled: usize,
}

/// One conversion to insert: the value, the operands that read it converted, whether a
/// graph output must see the converted value, and whether `v` is produced channels last.
struct Conversion {
    v: Value,
    uses: Vec<(NodeId, usize)>,
    output: bool,
    from_last: bool,
}

/// Applies the decision `d` to `g`.
pub fn materialize(g: &mut Graph, d: &Analysis) -> Result<Outcome> {
    // Read every mismatch off the unchanged graph first: rewriting moves uses around.
    let mut values: Vec<Value> = g.inputs().to_vec();
    let order = g.topo_order()?;
    for &n in &order {
        if !matches!(g.node(n).op, Op::Const(_)) {
            values.extend(g.node(n).outputs().iter().copied());
        }
    }
    let conversions: Vec<Conversion> = values
        .into_iter()
        .filter_map(|v| {
            let (uses, output) = d.mismatched(g, v);
            (!uses.is_empty() || output).then(|| Conversion {
                v,
                uses,
                output,
                from_last: d.produced_flipped(g, v),
            })
        })
        .collect();
    for &n in &order {
        if d.flipped.contains(&n) {
            flip_op(g, n, d)?;
        }
    }
    let mut inserted: HashSet<NodeId> = HashSet::new();
    for c in &conversions {
        if let Some(t) = convert(g, c)? {
            inserted.insert(t);
        }
    }
    infer_shapes(g)?;
    let cancelled = compose(g, &mut inserted)?;
    infer_shapes(g)?;
    Ok(Outcome {
        inserted: inserted.len(),
        cancelled,
    })
}

/// Rewrites flipped op `n` to read and write channels-last tensors.
fn flip_op(g: &mut Graph, n: NodeId, d: &Analysis) -> Result<()> {
    let out = g.node(n).outputs()[0];
    let r = g.ty(out)?.rank();
    match g.op_mut(n) {
        Op::Conv(o) => o.layout = DataLayout::Nhwc,
        Op::MaxPool(o) => o.layout = DataLayout::Nhwc,
        Op::DepthToSpace(o) => o.layout = DataLayout::Nhwc,
        Op::SpaceToDepth(o) => o.layout = DataLayout::Nhwc,
        Op::AveragePool(o) => o.layout = DataLayout::Nhwc,
        Op::GlobalPool(o) => o.layout = DataLayout::Nhwc,
        Op::BatchNormalization(o) => o.layout = DataLayout::Nhwc,
        Op::Lrn(o) => o.layout = DataLayout::Nhwc,
        Op::Concat(o) => o.axis = new_axis(o.axis, r)?,
        Op::Split(o) => o.axis = new_axis(o.axis, r)?,
        Op::Resize(o) if !o.axes.is_empty() => {
            // Spatial axes only (checked by `roles`): each moves one place forward.
            for a in &mut o.axes {
                *a = new_axis(*a, r)?;
            }
        }
        _ => {}
    }
    match &g.node(n).op {
        Op::Slice(_) => {
            // axes: each remapped.
            permute_const(g, n, 3, |t| {
                let axes = t.to_i64_vec()?;
                let moved = axes
                    .iter()
                    .map(|&a| new_axis(a, r))
                    .collect::<Result<Vec<i64>>>()?;
                Tensor::from_vec(t.shape(), moved)
            })?;
        }
        Op::Resize(o) if o.axes.is_empty() => {
            // roi is [begins…, ends…] per axis; scales and sizes one value per axis.
            for k in 1..=3 {
                permute_const(g, n, k, |t| {
                    if t.len() == 2 * r && k == 1 {
                        let v = t.to_f64_vec();
                        let mut q = permute(&v[..r], &to_last_perm(r));
                        q.extend(permute(&v[r..], &to_last_perm(r)));
                        Ok(Tensor::from_f64_fn(&t.ty(), |i| q[i]))
                    } else if t.len() == r && k > 1 {
                        let q = permute(&t.to_f64_vec(), &to_last_perm(r));
                        Ok(Tensor::from_f64_fn(&t.ty(), |i| q[i]))
                    } else {
                        Ok(t.clone())
                    }
                })?;
            }
        }
        _ => {}
    }
    if matches!(g.node(n).op, Op::Pad(_)) {
        let pads_v = g.node(n).input(1);
        if let Some(pv) = pads_v
            && let Some(pads) = const_tensor(g, pv)
        {
            let p = pads.to_i64_vec()?;
            if p.len() == 2 * r {
                let perm = to_last_perm(r);
                let mut q = permute(&p[..r], &perm);
                q.extend(permute(&p[r..], &perm));
                let name = format!("{}_nhwc", g.value(pv).name);
                let c = add_const(g, name, Tensor::from_vec(&[2 * r], q)?);
                g.set_input(n, 1, Some(c));
                drop_dead_const(g, pv);
            }
        }
    }
    for &k in &d.roles[&n].consts {
        let Some(v) = g.node(n).input(k) else {
            continue;
        };
        let Some(t) = const_tensor(g, v) else {
            continue;
        };
        if t.len() <= 1 {
            continue; // a single value broadcasts the same in any layout
        }
        let mut shape = vec![1; r - t.shape().len()];
        shape.extend_from_slice(t.shape());
        let p = transpose(&t.reshape(&shape)?, &to_last_perm(r));
        let name = format!("{}_nhwc", g.value(v).name);
        let c = add_const(g, name, p);
        g.set_input(n, k, Some(c));
        drop_dead_const(g, v);
    }
    Ok(())
}

/// Where axis `a` of a rank-`r` channels-first tensor lives once it is channels last.
fn new_axis(a: i64, r: usize) -> Result<i64> {
    let a = norm_axis(a, r)?;
    Ok(to_last_perm(r).iter().position(|&p| p == a).unwrap_or(a) as i64)
}

/// Replaces constant operand `k` of `n` (if present and constant) by `f` of it.
fn permute_const(
    g: &mut Graph,
    n: NodeId,
    k: usize,
    f: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<()> {
    let Some(v) = g.node(n).input(k) else {
        return Ok(());
    };
    let Some(t) = const_tensor(g, v) else {
        return Ok(());
    };
    let new = f(t)?;
    if &new == t {
        return Ok(());
    }
    let name = format!("{}_nhwc", g.value(v).name);
    let c = add_const(g, name, new);
    g.set_input(n, k, Some(c));
    drop_dead_const(g, v);
    Ok(())
}

/// Inserts one conversion of `c.v` and points the mismatched readers at it. Returns the
/// new transpose (a conversion that only moves unit dims is a reshape and not counted).
fn convert(g: &mut Graph, c: &Conversion) -> Result<Option<NodeId>> {
    // The logical (channels-first) shape: flipped values have not been re-typed yet.
    let shape = g.ty(c.v)?.shape.clone();
    let r = shape.len();
    if r < 3 {
        return Ok(None);
    }
    let name = g.value(c.v).name.clone();
    let new_name = if c.from_last {
        // The converted value is the one with the model's meaning: it keeps the name, so
        // graph outputs and their files keep theirs.
        g.value_mut(c.v).name = format!("{name}_nhwc");
        name
    } else {
        format!("{name}_nhwc")
    };
    let free = is_free(&shape, false);
    let (node, outs) = if free {
        let target: Vec<i64> = if c.from_last {
            shape.iter().map(|&d| d as i64).collect()
        } else {
            permute(&shape, &to_last_perm(r))
                .iter()
                .map(|&d| d as i64)
                .collect()
        };
        let s = add_const(
            g,
            format!("{new_name}_shape"),
            Tensor::from_vec(&[r], target)?,
        );
        g.add_node(
            "",
            Op::Reshape(Reshape::default()),
            vec![Some(c.v), Some(s)],
            vec![new_name],
        )
    } else {
        let perm = if c.from_last {
            to_first_perm(r)
        } else {
            to_last_perm(r)
        };
        let op = Op::Transpose(Transpose {
            perm: perm.iter().map(|&p| p as i64).collect(),
        });
        g.add_node("", op, vec![Some(c.v)], vec![new_name])
    };
    for &(n, k) in &c.uses {
        g.set_input(n, k, Some(outs[0]));
    }
    if c.output {
        let outputs = g
            .outputs()
            .iter()
            .map(|&o| if o == c.v { outs[0] } else { o })
            .collect();
        g.set_outputs(outputs);
    }
    Ok((!free).then_some(node))
}

/// Composes each inserted conversion with a transpose it reads or that reads it; removes
/// identities and transposes left without readers. Returns how many of the model's own
/// transposes disappeared.
fn compose(g: &mut Graph, inserted: &mut HashSet<NodeId>) -> Result<usize> {
    let mut cancelled = 0;
    loop {
        let mut changed = false;
        for u in g.topo_order()? {
            if !g.contains(u) {
                continue;
            }
            let Op::Transpose(tu) = &g.node(u).op else {
                continue;
            };
            let Some(x1) = g.node(u).input(0) else {
                continue;
            };
            let Some(t) = g.producer(x1) else { continue };
            let Op::Transpose(tt) = &g.node(t).op else {
                continue;
            };
            if !inserted.contains(&u) && !inserted.contains(&t) {
                continue;
            }
            let Some(x0) = g.node(t).input(0) else {
                continue;
            };
            let r = g.ty(x1)?.rank();
            let (pu, pt) = (tu.perm_for(r)?, tt.perm_for(r)?);
            let p: Vec<usize> = pu.iter().map(|&i| pt[i]).collect();
            let out = g.node(u).outputs()[0];
            if p.iter().enumerate().all(|(i, &a)| i == a) {
                if g.outputs().contains(&out) {
                    // A graph output keeps its name: only cancel when x0 can take it.
                    let x0_free = g.producer(x0).is_some() && !g.outputs().contains(&x0);
                    if !x0_free {
                        continue;
                    }
                    g.value_mut(x0).name = g.value(out).name.clone();
                }
                g.replace_all_uses(out, x0);
                g.remove_node(u);
                if !inserted.remove(&u) {
                    cancelled += 1;
                }
            } else {
                g.set_input(u, 0, Some(x0));
                if let Op::Transpose(tu) = g.op_mut(u) {
                    tu.perm = p.iter().map(|&a| a as i64).collect();
                }
            }
            if g.use_count(x1) == 0 {
                g.remove_node(t);
                if !inserted.remove(&t) {
                    cancelled += 1;
                }
            }
            changed = true;
        }
        if !changed {
            return Ok(cancelled);
        }
    }
}
