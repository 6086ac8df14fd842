//! `quant.align`: groups share one range, chosen by the group's kind (PPQ's defaults):
//! a group holding a Concat output aligns to that output's range; any other group
//! (Add/Sub/Max/Min masters and slaves) to the widest range of its active members.
//! Parameters are re-derived at the root from that range.

use crate::ir::{QuantGraph, Site, TqcId};
use crate::tqc::State;
use kiln_core::{Pass, Result};
use kiln_graph::Op;

pub struct Align;

fn is_concat_output(q: &QuantGraph, id: TqcId) -> bool {
    match q.site(id) {
        Site::Out(v) => q
            .graph
            .producer(v)
            .is_some_and(|n| matches!(q.graph.node(n).op, Op::Concat(_))),
        Site::In(..) => false,
    }
}

impl Pass<QuantGraph> for Align {
    fn name(&self) -> &'static str {
        "quant.align"
    }

    fn run(&mut self, q: &mut QuantGraph) -> Result<bool> {
        let mut changed = false;
        let mut groups: Vec<_> = q.groups().into_iter().collect();
        groups.sort_by_key(|(r, _)| *r);
        for (root, members) in groups {
            let ranged: Vec<TqcId> = members
                .iter()
                .copied()
                .filter(|&m| {
                    matches!(q.tqc(m).state, State::Activated | State::Slave)
                        && q.tqc(m).range.is_some()
                })
                .collect();
            if members.len() < 2 || ranged.is_empty() || q.tqc(root).axis.is_some() {
                continue;
            }
            let range = |m: TqcId| q.tqc(m).range.expect("filtered");
            let target = match ranged.iter().copied().find(|&m| is_concat_output(q, m)) {
                Some(c) => range(c),
                None => ranged
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &m| {
                        let (a, b) = range(m);
                        (lo.min(a), hi.max(b))
                    }),
            };
            let (s, o) = q.tqc(root).params_for_range(target.0, target.1)?;
            let t = q.tqc_mut(root);
            if t.scale != [s] || t.offset != [o] {
                t.scale = vec![s];
                t.offset = vec![o];
                changed = true;
            }
        }
        Ok(changed)
    }
}
