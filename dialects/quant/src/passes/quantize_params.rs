//! `quant.quantize-params`: parameter quantisation. A constant read through an INITIAL
//! input TQC (a weight, or a constant operand of an element-wise op) gets parameters from
//! its own data — per channel along the TQC's axis when the policy says so — by min-max,
//! and becomes ACTIVATED.

use crate::ir::{QuantGraph, Site, const_data, is_const};
use crate::tqc::State;
use kiln_core::{Pass, Result, Tensor, ensure};

pub struct QuantizeParams;

/// Per-channel (or whole-tensor) min and max of a float tensor.
pub fn channel_ranges(t: &Tensor, axis: Option<usize>) -> Result<Vec<(f32, f32)>> {
    let a = t.cast(kiln_core::DType::F32);
    let a = a.as_f32()?;
    let fold = |it: &mut dyn Iterator<Item = &f32>| {
        it.fold((0f32, 0f32), |(lo, hi), &x| {
            if x.is_finite() {
                (lo.min(x), hi.max(x))
            } else {
                (lo, hi)
            }
        })
    };
    match axis {
        None => Ok(vec![fold(&mut a.iter())]),
        Some(ax) => {
            ensure!(
                ax < a.ndim(),
                Shape,
                "channel axis {ax} out of rank {}",
                a.ndim()
            );
            Ok(a.axis_iter(ndarray::Axis(ax))
                .map(|c| fold(&mut c.iter()))
                .collect())
        }
    }
}

impl Pass<QuantGraph> for QuantizeParams {
    fn name(&self) -> &'static str {
        "quant.quantize-params"
    }

    fn run(&mut self, q: &mut QuantGraph) -> Result<bool> {
        let mut changed = false;
        for id in q.ids() {
            let site = q.site(id);
            let Site::In(n, _) = site else { continue };
            let v = q.site_value(site);
            if q.tqc(id).state != State::Initial || !is_const(&q.graph, v) || q.root(id) != id {
                continue;
            }
            let Some(data) = const_data(&q.graph, v).cloned() else {
                continue;
            };
            let axis = q.tqc(id).axis;
            let ranges = channel_ranges(&data, axis).map_err(|e| q.graph.node(n).locate(e))?;
            let mut scale = Vec::with_capacity(ranges.len());
            let mut offset = Vec::with_capacity(ranges.len());
            for &(lo, hi) in &ranges {
                let (s, o) = q
                    .tqc(id)
                    .params_for_range(lo, hi)
                    .map_err(|e| q.graph.node(n).locate(e))?;
                scale.push(s);
                offset.push(o);
            }
            let t = q.tqc_mut(id);
            t.scale = scale;
            t.offset = offset;
            if axis.is_none() {
                t.range = Some(ranges[0]);
            }
            t.state = State::Activated;
            changed = true;
        }
        Ok(changed)
    }
}
