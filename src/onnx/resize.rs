//! Upsample and Resize: the one op family whose coordinate conventions changed with the
//! opset (Upsample-7/9, Resize-10, Resize-11's `tf_half_pixel_for_nn`), normalised here to
//! Resize-19 semantics with explicit modes.

use super::attrs::{take_floats, take_str};
use super::opset::{Ins, Lowering, first};
use kiln_core::{Attr, Attrs, Result, Tensor, bail, ensure, err};

impl Lowering<'_> {
    /// Upsample (7: `scales` attribute; 9, 10: `scales` operand) is a legacy resize.
    pub(super) fn upsample(&mut self, mut a: Attrs, ins: Ins, outs: Vec<String>) -> Result<()> {
        let scales = if self.version < 9 {
            let s = take_floats(&mut a, "scales")?
                .ok_or_else(|| err!(Attribute, "missing attribute 'scales'"))?;
            self.konst("scales", Tensor::from_vec(&[s.len()], s)?)
        } else {
            ins.get(1)
                .cloned()
                .flatten()
                .ok_or_else(|| err!(InvalidModel, "Upsample needs a scales operand"))?
        };
        let mode = take_str(&mut a, "mode")?.unwrap_or_else(|| "nearest".into());
        self.legacy_resize(a, mode, first(&ins)?, scales, outs)
    }

    /// Upsample and Resize-10 map output to input coordinates as x / scale (`asymmetric`).
    /// Nearest rounds down along axes that grow and *up* along axes that shrink (what
    /// onnxruntime does: 7 → 2 at scale 0.4 picks elements 0 and 3, not 0 and 2). One
    /// Resize has one rounding mode, so a node that grows
    /// some axes and shrinks others becomes two (nearest resizing is separable). Scales
    /// unknown at import are taken to grow, which is what Upsample is for.
    fn legacy_resize(
        &mut self,
        mut a: Attrs,
        mode: String,
        x: Option<String>,
        scales: String,
        outs: Vec<String>,
    ) -> Result<()> {
        let mode = match mode.as_str() {
            "nearest" => "nearest",
            "linear" | "bilinear" => "linear",
            other => bail!(
                Unsupported,
                "{} mode '{other}' is not supported",
                self.node.op_type()
            ),
        };
        a.set("mode", Attr::Str(mode.into()));
        a.set(
            "coordinate_transformation_mode",
            Attr::Str("asymmetric".into()),
        );
        if mode == "linear" {
            return self.emit_resize(a, vec![x, None, Some(scales)], outs);
        }
        let known = self.ctx.consts.get(&scales).map(|t| t.to_f64_vec());
        let shrinks = known.as_ref().is_some_and(|s| s.iter().any(|&v| v < 1.0));
        let grows = known.as_ref().is_none_or(|s| s.iter().any(|&v| v > 1.0));
        let with_mode = |a: &Attrs, m: &str| {
            let mut a = a.clone();
            a.set("nearest_mode", Attr::Str(m.into()));
            a
        };
        match (known, shrinks, grows) {
            (Some(s), true, true) => {
                let part = |keep: fn(f64) -> bool| -> Result<Tensor> {
                    Tensor::from_vec(
                        &[s.len()],
                        s.iter()
                            .map(|&v| if keep(v) { v as f32 } else { 1.0 })
                            .collect(),
                    )
                };
                let down = self.konst("scales_down", part(|v| v < 1.0)?);
                let up = self.konst("scales_up", part(|v| v > 1.0)?);
                let mid = self.helper(
                    "shrink",
                    "resize",
                    with_mode(&a, "ceil"),
                    vec![x, None, Some(down)],
                )?;
                self.emit_resize(
                    with_mode(&a, "floor"),
                    vec![Some(mid), None, Some(up)],
                    outs,
                )
            }
            (_, true, false) => {
                self.emit_resize(with_mode(&a, "ceil"), vec![x, None, Some(scales)], outs)
            }
            _ => self.emit_resize(with_mode(&a, "floor"), vec![x, None, Some(scales)], outs),
        }
    }

    pub(super) fn resize(&mut self, mut a: Attrs, ins: Ins, outs: Vec<String>) -> Result<()> {
        if self.version < 11 {
            let mode = take_str(&mut a, "mode")?.unwrap_or_else(|| "nearest".into());
            let scales = ins
                .get(1)
                .cloned()
                .flatten()
                .ok_or_else(|| err!(InvalidModel, "Resize-10 needs a scales operand"))?;
            return self.legacy_resize(a, mode, first(&ins)?, scales, outs);
        }
        // Exporters pass empty tensors for "not given" (Resize-11 has no optional inputs).
        let mut ins = ins;
        ins.resize(4, None);
        for slot in ins.iter_mut().skip(1) {
            if slot
                .as_ref()
                .and_then(|n| self.ctx.consts.get(n))
                .is_some_and(|t| t.is_empty())
            {
                *slot = None;
            }
        }
        if self.version < 13
            && matches!(a.get("coordinate_transformation_mode"), Some(Attr::Str(s)) if s == "tf_half_pixel_for_nn")
        {
            self.tf_half_pixel_for_nn(&mut a)?;
        }
        self.emit_resize(a, ins, outs)
    }

    /// `tf_half_pixel_for_nn` maps x to (x + 0.5) / scale, which is half_pixel + 0.5; the
    /// +0.5 folds into the rounding: floor(h + 0.5) = round_prefer_ceil(h) and
    /// round_prefer_floor(h + 0.5) = ceil(h). Other combinations have no equivalent.
    fn tf_half_pixel_for_nn(&mut self, a: &mut Attrs) -> Result<()> {
        let mode = match a.get("mode") {
            Some(Attr::Str(s)) => s.clone(),
            _ => "nearest".into(),
        };
        ensure!(
            mode == "nearest",
            Unsupported,
            "coordinate_transformation_mode tf_half_pixel_for_nn with mode '{mode}'"
        );
        let nearest = match a.get("nearest_mode") {
            Some(Attr::Str(s)) => s.clone(),
            _ => "round_prefer_floor".into(),
        };
        let mapped = match nearest.as_str() {
            "floor" => "round_prefer_ceil",
            "round_prefer_floor" => "ceil",
            other => bail!(
                Unsupported,
                "coordinate_transformation_mode tf_half_pixel_for_nn with nearest_mode '{other}'"
            ),
        };
        a.set(
            "coordinate_transformation_mode",
            Attr::Str("half_pixel".into()),
        );
        a.set("nearest_mode", Attr::Str(mapped.into()));
        Ok(())
    }

    fn emit_resize(&mut self, a: Attrs, ins: Ins, outs: Vec<String>) -> Result<()> {
        let op = self.build("resize", a)?;
        self.push(self.node.name().to_string(), op, ins, outs);
        Ok(())
    }
}
