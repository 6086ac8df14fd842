//! ONNX nodes → graph-dialect nodes, normalising opsets 7–21 to the latest operand forms.
//!
//! kiln's ops take the newest ONNX layout (shape-like things are operands, not attributes),
//! so this is the only place in kiln that knows which opset a model came from. Each ONNX
//! node becomes one or more [`Lowered`] nodes whose operands are still *names*: the driver
//! (`import.rs`) resolves them once every node exists, which is what lets it report a
//! cycle as a cycle rather than as an undefined value. Attributes that become operands turn
//! into `const` nodes; helper nodes and values get names derived from the original node
//! (`"<node>/coerce"`) so errors and printed IR still point at the model.

use super::attrs::{node_attrs, take_float, take_int, take_ints};
use super::kiln_name;
use super::proto::NodeProto;
use super::tensor::{dtype_from_onnx, onnx_type_name};
use kiln_core::{
    Attr, Attrs, DType, Error, ErrorKind, Result, Tensor, TensorType, bail, ensure, err,
};
use kiln_graph::Op;
use kiln_graph::ops::{Const, ConstSource};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// What the rewrites may know about the model beyond the node at hand.
#[derive(Default)]
pub(crate) struct Ctx {
    /// Every value name in use (the model's and the ones made up here).
    pub names: HashSet<String>,
    /// Values known at import: initializers and `Constant` outputs seen so far.
    pub consts: HashMap<String, Arc<Tensor>>,
    /// Element types known at import (inputs, initializers, constants, `value_info`), for
    /// constants that must match an operand's type.
    pub dtypes: HashMap<String, DType>,
    /// Names read by some node or returned by the graph.
    pub used: HashSet<String>,
    pub base_dir: Option<PathBuf>,
}

impl Ctx {
    /// `base`, or `base.1`, `base.2`, ... whichever is free; the name is then taken.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 0;
        while self.names.contains(&name) {
            k += 1;
            name = format!("{base}.{k}");
        }
        self.names.insert(name.clone());
        name
    }
}

/// One graph-dialect node, operands by name.
#[derive(Debug)]
pub(crate) struct Lowered {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<Option<String>>,
    pub outputs: Vec<String>,
}

/// Lowers one ONNX node of the default domain at opset `version` (already range-checked).
pub(crate) fn lower(node: &NodeProto, version: i64, ctx: &mut Ctx) -> Result<Vec<Lowered>> {
    let op_type = node.op_type();
    let kiln = kiln_name(op_type).ok_or_else(|| {
        err!(
            UnsupportedOp,
            "ONNX op '{op_type}' (opset {version}) is not supported by kiln"
        )
    })?;
    let attrs = node_attrs(node, ctx.base_dir.as_deref())?;
    let base = match (node.name(), node.output.first()) {
        ("", Some(o)) if !o.is_empty() => o.clone(),
        ("", _) => op_type.to_string(),
        (n, _) => n.to_string(),
    };
    let mut l = Lowering {
        node,
        version,
        kiln,
        base,
        ctx,
        out: Vec::new(),
    };
    l.run(attrs)?;
    Ok(l.out)
}

pub(super) struct Lowering<'a> {
    pub(super) node: &'a NodeProto,
    pub(super) version: i64,
    pub(super) kiln: &'static str,
    /// Prefix for helper nodes and values: the node name, else its first output.
    pub(super) base: String,
    pub(super) ctx: &'a mut Ctx,
    pub(super) out: Vec<Lowered>,
}

pub(super) type Ins = Vec<Option<String>>;

impl Lowering<'_> {
    fn run(&mut self, mut a: Attrs) -> Result<()> {
        let v = self.version;
        let ins: Ins = self
            .node
            .input
            .iter()
            .map(|s| (!s.is_empty()).then(|| s.clone()))
            .collect();
        let outs = self.outputs();
        match self.node.op_type() {
            "Constant" => self.constant(a, outs),
            "Dropout" => self.dropout(a, ins, outs),
            "Sum" | "Mean" | "Max" | "Min" => self.variadic(a, ins, outs),
            "Softmax" | "LogSoftmax" | "Hardmax" if v < 13 => self.coerce_2d(a, ins, outs),
            "Clip" if v < 11 => {
                let dt = self.dtype_of(&ins, 0);
                let min =
                    take_float(&mut a, "min")?.map(|x| self.konst("min", scalar(dt, x as f64)));
                let max =
                    take_float(&mut a, "max")?.map(|x| self.konst("max", scalar(dt, x as f64)));
                self.emit_main(a, vec![first(&ins)?, min, max], outs)
            }
            "Slice" if v < 10 => {
                let starts = self.req_ints_operand(&mut a, "starts")?;
                let ends = self.req_ints_operand(&mut a, "ends")?;
                let axes = self.ints_operand(&mut a, "axes")?;
                self.emit_main(a, vec![first(&ins)?, Some(starts), Some(ends), axes], outs)
            }
            "Squeeze" if v < 13 => {
                let axes = self.ints_operand(&mut a, "axes")?;
                self.emit_main(a, vec![first(&ins)?, axes], outs)
            }
            "Unsqueeze" if v < 13 => {
                let axes = self.req_ints_operand(&mut a, "axes")?;
                self.emit_main(a, vec![first(&ins)?, Some(axes)], outs)
            }
            "Split" => {
                // Every output counts here (it is the number of pieces), so none is trimmed.
                let outs = self.all_outputs();
                let split = if v < 13 {
                    self.ints_operand(&mut a, "split")?
                } else {
                    ins.get(1).cloned().flatten()
                };
                self.emit_main(a, vec![first(&ins)?, split], outs)
            }
            "Pad" if v < 11 => {
                let pads = self.req_ints_operand(&mut a, "pads")?;
                let dt = self.dtype_of(&ins, 0);
                let value = match take_float(&mut a, "value")? {
                    Some(x) if x != 0.0 => Some(self.konst("value", scalar(dt, x as f64))),
                    _ => None,
                };
                self.emit_main(a, vec![first(&ins)?, Some(pads), value], outs)
            }
            "ReduceSum" if v < 13 => self.reduce_axes(a, ins, outs),
            op if op.starts_with("Reduce") && op != "ReduceSum" && v < 18 => {
                self.reduce_axes(a, ins, outs)
            }
            "Upsample" => self.upsample(a, ins, outs),
            "Resize" => self.resize(a, ins, outs),
            "BatchNormalization" => self.batch_norm(a, ins, outs),
            "Cast" => {
                let to = take_int(&mut a, "to")?
                    .ok_or_else(|| err!(Attribute, "missing attribute 'to'"))?;
                let dt = dtype_from_onnx(to as i32, "the cast's target").map_err(|_| {
                    err!(
                        Unsupported,
                        "cast to {} is not supported by kiln",
                        onnx_type_name(to as i32)
                    )
                })?;
                // `saturate` (opset 19) only affects float8 targets, which kiln does not have.
                a.remove("saturate");
                a.set("to", Attr::Str(dt.name().to_string()));
                self.emit_main(a, vec![first(&ins)?], outs)
            }
            "CastLike" => {
                // The target's element type is known after shape inference, which
                // graph.cast_like consults; nothing needs to be known here.
                a.remove("saturate");
                self.emit_main(a, ins, outs)
            }
            "TopK" if v < 10 => {
                let k = take_int(&mut a, "k")?
                    .ok_or_else(|| err!(Attribute, "missing attribute 'k'"))?;
                let k = self.konst("k", Tensor::from_vec(&[1], vec![k])?);
                self.emit_main(a, vec![first(&ins)?, Some(k)], outs)
            }
            _ => self.emit_main(a, ins, outs),
        }
    }

    // ----- naming and emitting -----

    /// The node's outputs, an omitted trailing optional output dropped (ops see how many
    /// results are wanted) and an omitted one in the middle given a private name.
    fn outputs(&mut self) -> Vec<String> {
        let mut outs = self.node.output.clone();
        while outs.last().is_some_and(|s| s.is_empty()) {
            outs.pop();
        }
        self.name_unnamed(outs)
    }

    fn all_outputs(&mut self) -> Vec<String> {
        self.name_unnamed(self.node.output.clone())
    }

    fn name_unnamed(&mut self, outs: Vec<String>) -> Vec<String> {
        outs.into_iter()
            .enumerate()
            .map(|(k, o)| {
                if o.is_empty() {
                    self.ctx.fresh(&format!("{}/unused{k}", self.base))
                } else {
                    o
                }
            })
            .collect()
    }

    pub(super) fn synth(&mut self, suffix: &str) -> String {
        self.ctx.fresh(&format!("{}/{suffix}", self.base))
    }

    /// Builds `kiln` from attributes; an op kiln lacks is reported under the ONNX name.
    pub(super) fn build(&self, kiln: &str, a: Attrs) -> Result<Op> {
        Op::from_attrs(kiln, a).map_err(|e| match e.kind {
            ErrorKind::UnsupportedOp => err!(
                UnsupportedOp,
                "ONNX op '{}' (opset {}) is not supported: kiln has no 'graph.{kiln}' op",
                self.node.op_type(),
                self.version
            ),
            _ => e,
        })
    }

    pub(super) fn push(&mut self, name: String, op: Op, inputs: Ins, outputs: Vec<String>) {
        self.out.push(Lowered {
            name,
            op,
            inputs,
            outputs,
        });
    }

    /// Emits the node's own op under the node's name.
    pub(super) fn emit_main(&mut self, a: Attrs, ins: Ins, outs: Vec<String>) -> Result<()> {
        let op = self.build(self.kiln, a)?;
        self.push(self.node.name().to_string(), op, ins, outs);
        Ok(())
    }

    /// Emits a helper op named `<node>/<suffix>` with one fresh result, returning it.
    pub(super) fn helper(
        &mut self,
        suffix: &str,
        kiln: &str,
        a: Attrs,
        ins: Ins,
    ) -> Result<String> {
        let out = self.synth(suffix);
        let op = self.build(kiln, a)?;
        self.push(
            format!("{}/{suffix}", self.base),
            op,
            ins,
            vec![out.clone()],
        );
        Ok(out)
    }

    /// Emits a constant and returns its value name.
    pub(super) fn konst(&mut self, suffix: &str, t: Tensor) -> String {
        let out = self.synth(suffix);
        let t = Arc::new(t);
        self.ctx.dtypes.insert(out.clone(), t.dtype());
        self.ctx.consts.insert(out.clone(), t.clone());
        self.push(out.clone(), const_op(t), Vec::new(), vec![out.clone()]);
        out
    }

    fn ints_operand(&mut self, a: &mut Attrs, name: &str) -> Result<Option<String>> {
        Ok(match take_ints(a, name)? {
            Some(v) => Some(self.konst(name, Tensor::from_vec(&[v.len()], v)?)),
            None => None,
        })
    }

    fn req_ints_operand(&mut self, a: &mut Attrs, name: &str) -> Result<String> {
        self.ints_operand(a, name)?
            .ok_or_else(|| err!(Attribute, "missing attribute '{name}'"))
    }

    /// The element type of operand `i` when known at import. Legacy float-only ops
    /// (Clip-6, Pad-2, Mean) default to f32, kiln's compute type; were the operand f64,
    /// shape inference would then report the mismatch.
    fn dtype_of(&self, ins: &Ins, i: usize) -> DType {
        ins.get(i)
            .cloned()
            .flatten()
            .and_then(|n| self.ctx.dtypes.get(&n).copied())
            .unwrap_or(DType::F32)
    }

    // ----- rewrites -----

    fn constant(&mut self, mut a: Attrs, outs: Vec<String>) -> Result<()> {
        ensure!(
            outs.len() == 1,
            InvalidModel,
            "Constant must have one output, has {}",
            outs.len()
        );
        ensure!(
            a.0.len() == 1,
            Attribute,
            "Constant needs exactly one value attribute, has {}",
            a.0.len()
        );
        let (name, value) = a.0.pop().expect("one attribute");
        let t = match (name.as_str(), value) {
            ("value", Attr::Tensor(t)) => t,
            ("value_float", Attr::Float(x)) => Tensor::scalar(x),
            ("value_floats", Attr::Floats(v)) => Tensor::from_vec(&[v.len()], v)?,
            ("value_int", Attr::Int(x)) => Tensor::scalar(x),
            ("value_ints", Attr::Ints(v)) => Tensor::from_vec(&[v.len()], v)?,
            ("value_string" | "value_strings", _) => {
                bail!(Unsupported, "string constants are not supported")
            }
            (n, v) => bail!(
                Attribute,
                "unexpected Constant attribute '{n}' of kind {}",
                v.kind_name()
            ),
        };
        let out = outs.into_iter().next().expect("one output");
        let t = Arc::new(t);
        self.ctx.dtypes.insert(out.clone(), t.dtype());
        self.ctx.consts.insert(out.clone(), t.clone());
        self.push(
            self.node.name().to_string(),
            const_op(t),
            Vec::new(),
            vec![out],
        );
        Ok(())
    }

    /// Inference-mode Dropout is the identity, and its mask (when read) is all true: a
    /// `constant_of_shape(shape(x))` that constant folding turns into a splat.
    fn dropout(&mut self, mut a: Attrs, ins: Ins, outs: Vec<String>) -> Result<()> {
        for legacy in ["ratio", "seed", "is_test"] {
            a.remove(legacy);
        }
        if let Some(mask) = outs.get(1).filter(|m| self.ctx.used.contains(*m)) {
            let shape = self.helper("mask_shape", "shape", Attrs::new(), vec![first(&ins)?])?;
            let mut fill = Attrs::new();
            fill.set(
                "value",
                kiln_core::Attr::Tensor(Tensor::from_vec(&[1], vec![true])?),
            );
            let op = self.build("constant_of_shape", fill)?;
            self.push(
                format!("{}/mask", self.base),
                op,
                vec![Some(shape)],
                vec![mask.clone()],
            );
        }
        if let Some(tm) = ins.get(2).cloned().flatten() {
            let Some(t) = self.ctx.consts.get(&tm) else {
                bail!(
                    Unsupported,
                    "Dropout's training_mode '{tm}' is not a constant"
                );
            };
            ensure!(
                t.to_f64_vec().iter().all(|&x| x == 0.0),
                Unsupported,
                "Dropout in training mode is not supported"
            );
        }
        let op = self.build("identity", a)?;
        self.push(
            self.node.name().to_string(),
            op,
            vec![first(&ins)?],
            outs.into_iter().take(1).collect(),
        );
        Ok(())
    }

    /// Sum/Mean/Max/Min of N operands → a chain of binary ops (Mean: adds, then ÷ N).
    fn variadic(&mut self, a: Attrs, ins: Ins, outs: Vec<String>) -> Result<()> {
        ensure!(
            a.is_empty(),
            Attribute,
            "unknown or unsupported attribute '{}'",
            a.0[0].0
        );
        ensure!(
            outs.len() == 1,
            InvalidModel,
            "{} must have one output",
            self.node.op_type()
        );
        let ins: Vec<String> = ins
            .into_iter()
            .map(|i| {
                i.ok_or_else(|| {
                    err!(
                        InvalidModel,
                        "operands of {} cannot be omitted",
                        self.node.op_type()
                    )
                })
            })
            .collect::<Result<_>>()?;
        ensure!(
            !ins.is_empty(),
            InvalidModel,
            "{} needs at least one operand",
            self.node.op_type()
        );
        let out = outs.into_iter().next().expect("one output");
        let n = ins.len();
        let mean = self.node.op_type() == "Mean";
        if n == 1 {
            let op = self.build("identity", Attrs::new())?;
            self.push(
                self.node.name().to_string(),
                op,
                vec![Some(ins[0].clone())],
                vec![out],
            );
            return Ok(());
        }
        let mut acc = ins[0].clone();
        for (k, x) in ins.iter().enumerate().skip(1) {
            let last = k == n - 1 && !mean;
            let (name, res) = if last {
                (self.node.name().to_string(), out.clone())
            } else {
                (
                    format!("{}/{}{k}", self.base, self.kiln),
                    self.synth(&format!("{}{k}", self.kiln)),
                )
            };
            let op = self.build(self.kiln, Attrs::new())?;
            self.push(
                name,
                op,
                vec![Some(acc), Some(x.clone())],
                vec![res.clone()],
            );
            acc = res;
        }
        if mean {
            let dt = self.ctx.dtypes.get(&ins[0]).copied().unwrap_or(DType::F32);
            let count = self.konst("count", scalar(dt, n as f64));
            let op = self.build("div", Attrs::new())?;
            self.push(
                self.node.name().to_string(),
                op,
                vec![Some(acc), Some(count)],
                vec![out],
            );
        }
        Ok(())
    }

    /// Softmax-family before opset 13 works on the input coerced to 2-D at `axis`:
    /// flatten → softmax over axis 1 → reshape back to the input's shape, taken with a
    /// `shape` op so nothing about shapes needs to be known here.
    fn coerce_2d(&mut self, mut a: Attrs, ins: Ins, outs: Vec<String>) -> Result<()> {
        let axis = take_int(&mut a, "axis")?.unwrap_or(1);
        ensure!(
            a.is_empty(),
            Attribute,
            "unknown or unsupported attribute '{}'",
            a.0[0].0
        );
        ensure!(
            outs.len() == 1,
            InvalidModel,
            "{} must have one output",
            self.node.op_type()
        );
        let x = first(&ins)?;
        let flat = self.helper(
            "coerce",
            "flatten",
            Attrs::new().int("axis", axis, 1),
            vec![x.clone()],
        )?;
        let sm = self.synth(self.kiln);
        let op = self.build(self.kiln, Attrs(vec![("axis".into(), Attr::Int(1))]))?;
        self.push(
            self.node.name().to_string(),
            op,
            vec![Some(flat)],
            vec![sm.clone()],
        );
        let shape = self.helper("shape", "shape", Attrs::new(), vec![x])?;
        let op = self.build("reshape", Attrs::new())?;
        self.push(
            format!("{}/restore", self.base),
            op,
            vec![Some(sm), Some(shape)],
            outs,
        );
        Ok(())
    }

    fn reduce_axes(&mut self, mut a: Attrs, ins: Ins, outs: Vec<String>) -> Result<()> {
        // An empty axes list meant "all axes", as an absent one does.
        let axes = match take_ints(&mut a, "axes")? {
            Some(v) if !v.is_empty() => Some(self.konst("axes", Tensor::from_vec(&[v.len()], v)?)),
            _ => None,
        };
        self.emit_main(a, vec![first(&ins)?, axes], outs)
    }

    /// Drops the pre-opset-9 attributes that have no meaning in inference and the extra
    /// outputs that only training fills in.
    fn batch_norm(&mut self, mut a: Attrs, ins: Ins, mut outs: Vec<String>) -> Result<()> {
        if let Some(spatial) = take_int(&mut a, "spatial")? {
            ensure!(
                spatial == 1,
                Unsupported,
                "BatchNormalization with spatial=0 (per-activation statistics)"
            );
        }
        a.remove("is_test");
        a.remove("consumed_inputs");
        if self.version < 14 && outs.len() > 1 {
            if let Some(o) = outs[1..].iter().find(|o| self.ctx.used.contains(*o)) {
                bail!(
                    Unsupported,
                    "BatchNormalization's training output '{o}' is used; kiln runs inference only"
                );
            }
            outs.truncate(1);
        }
        self.emit_main(a, ins, outs)
    }
}

pub(super) fn first(ins: &Ins) -> Result<Option<String>> {
    match ins.first() {
        Some(Some(x)) => Ok(Some(x.clone())),
        _ => Err(Error::new(
            ErrorKind::InvalidModel,
            "the first operand is missing",
        )),
    }
}

/// A rank-0 tensor of `dt` holding `v`.
fn scalar(dt: DType, v: f64) -> Tensor {
    Tensor::from_f64_fn(&TensorType::new(dt, Vec::<usize>::new()), |_| v)
}

/// A `const` op sharing `t` with the importer's table of known values (weights can be
/// large; they are stored once).
pub(crate) fn const_op(t: Arc<Tensor>) -> Op {
    Op::Const(Const {
        ty: t.ty(),
        value: Some(t),
        source: ConstSource::Auto,
    })
}
