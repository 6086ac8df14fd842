//! `quant.reduce-points`: one quantisation per data flow. An op input still INITIAL whose
//! producer's output already quantises (or is overlapped into an active group) becomes
//! OVERLAPPED by it: re-quantising on-grid data with the same parameters changes nothing.

use crate::ir::{QuantGraph, Site};
use crate::tqc::State;
use kiln_core::{Pass, Result};

pub struct ReducePoints;

impl Pass<QuantGraph> for ReducePoints {
    fn name(&self) -> &'static str {
        "quant.reduce-points"
    }

    fn run(&mut self, q: &mut QuantGraph) -> Result<bool> {
        let mut changed = false;
        let mut size = vec![0usize; q.len()];
        for id in q.ids() {
            size[q.root(id).index()] += 1;
        }
        for id in q.ids() {
            let Site::In(..) = q.site(id) else { continue };
            if q.tqc(id).state != State::Initial || q.root(id) != id || size[id.index()] > 1 {
                continue;
            }
            let v = q.site_value(q.site(id));
            let Some(up) = q.out_tqc(v) else { continue };
            let st = q.tqc(up).state;
            let quantised = st.is_active()
                || (st == State::Overlapped && q.tqc(q.root(up)).state != State::Fp32);
            if quantised {
                changed |= q.overlap(up, id);
            }
        }
        Ok(changed)
    }
}
