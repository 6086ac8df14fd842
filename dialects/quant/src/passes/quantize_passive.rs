//! `quant.quantize-passive`: passive parameter quantisation. A compute op's bias gets scale
//! `s_b[c] = s_x · s_w[c]` (see [`crate::arith`]), offset 0, 32 bits; clip bounds and pad
//! values take their op's data input's parameters. PASSIVE_INIT → PASSIVE once the sources
//! have parameters.

use crate::arith::product_scale;
use crate::ir::{QuantGraph, Site};
use crate::platform::{Role, is_compute};
use crate::tqc::State;
use kiln_core::{Pass, Result};

pub struct QuantizePassive;

impl Pass<QuantGraph> for QuantizePassive {
    fn name(&self) -> &'static str {
        "quant.quantize-passive"
    }

    fn run(&mut self, q: &mut QuantGraph) -> Result<bool> {
        let mut changed = false;
        for id in q.ids() {
            let site = q.site(id);
            let Site::In(n, _) = site else { continue };
            if q.tqc(id).state != State::PassiveInit {
                continue;
            }
            let Some(x) = q.in_tqc(n, 0) else { continue };
            let xp = q.effective(x).clone();
            if !xp.has_params() {
                continue;
            }
            let (scale, offset) = match q.role(site) {
                Role::Bias if is_compute(&q.graph.node(n).op) => {
                    let Some(w) = q.in_tqc(n, 1) else { continue };
                    let wp = q.effective(w);
                    let ty = q.graph.value(q.site_value(site)).ty.clone();
                    let channels = ty.as_ref().map(|t| (t.rank(), t.numel()));
                    // Only a 1-D bias with one entry per weight channel is quantised.
                    let fits = wp.has_params()
                        && wp.offset.iter().all(|&z| z == 0)
                        && channels.is_some_and(|(r, n)| {
                            r == 1 && (n == wp.scale.len() || wp.scale.len() == 1)
                        });
                    if !fits {
                        continue;
                    }
                    let n = channels.expect("checked").1;
                    let per = q.tqc(id).axis.is_some();
                    let ws = |c: usize| wp.scale[if wp.scale.len() == 1 { 0 } else { c }];
                    if per {
                        let s: Vec<f32> =
                            (0..n).map(|c| product_scale(xp.scale[0], ws(c))).collect();
                        (s, vec![0; n])
                    } else if wp.scale.len() == 1 {
                        (vec![product_scale(xp.scale[0], wp.scale[0])], vec![0])
                    } else {
                        continue;
                    }
                }
                Role::Passive => (xp.scale.clone(), xp.offset.clone()),
                _ => continue,
            };
            let t = q.tqc_mut(id);
            if t.axis.is_none() && scale.len() != 1 {
                continue;
            }
            t.scale = scale;
            t.offset = offset;
            t.state = State::Passive;
            changed = true;
        }
        Ok(changed)
    }
}
