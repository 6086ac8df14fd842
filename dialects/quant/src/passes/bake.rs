//! `quant.bake`: parameter baking. A constant read through an ACTIVATED (weight) or PASSIVE
//! (bias, bound) TQC is replaced by its fake-quantised values `dequant(quant(w))`, and the
//! TQC becomes BAKED / PASSIVE_BAKED: quantising it again is the identity, so the
//! simulator and the fp32 graph both see exactly the device's parameters (the float
//! originals stay with the unit, for the error analysis's reference). A constant
//! read by several ops is left alone (each reader may quantise it differently).

use crate::ir::{QuantGraph, Site, const_data};
use crate::sim::fake_quant;
use crate::tqc::State;
use kiln_core::{Pass, Result};

pub struct Bake;

impl Pass<QuantGraph> for Bake {
    fn name(&self) -> &'static str {
        "quant.bake"
    }

    fn run(&mut self, q: &mut QuantGraph) -> Result<bool> {
        let mut changed = false;
        for id in q.ids() {
            let site = q.site(id);
            let Site::In(n, _) = site else { continue };
            let next = match q.tqc(id).state {
                State::Activated => State::Baked,
                State::Passive => State::PassiveBaked,
                _ => continue,
            };
            let v = q.site_value(site);
            let Some(data) = const_data(&q.graph, v) else {
                continue;
            };
            if q.graph.use_count(v) != 1 || !q.tqc(id).has_params() {
                continue;
            }
            let baked = fake_quant(data, q.effective(id)).map_err(|e| q.graph.node(n).locate(e))?;
            q.replace_const(v, baked);
            q.tqc_mut(id).state = next;
            changed = true;
        }
        Ok(changed)
    }
}
