//! The ONNX graph under construction: nodes, initializers and the tensor-name space.
//!
//! Every name the exporter invents goes through [`Builder::fresh`], which never returns a
//! name that is already taken (by a kiln value or an earlier invention), so the emitted
//! graph is in SSA form whatever the source names look like.

use crate::onnx::proto::attribute_proto::AttributeType;
use crate::onnx::proto::{AttributeProto, NodeProto, TensorProto};
use crate::onnx::tensor_to_proto;
use kiln_core::{Attr, Attrs, Tensor};
use std::collections::HashSet;

#[derive(Default)]
pub(super) struct Builder {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    used: HashSet<String>,
}

impl Builder {
    /// Reserves a name chosen elsewhere (a kiln value's own name).
    pub fn reserve(&mut self, name: &str) {
        self.used.insert(name.to_string());
    }

    /// A new unique name starting with `base`.
    pub fn fresh(&mut self, base: &str) -> String {
        if self.used.insert(base.to_string()) {
            return base.to_string();
        }
        (1..)
            .map(|k| format!("{base}_{k}"))
            .find(|n| self.used.insert(n.clone()))
            .expect("an unused suffix exists")
    }

    /// Appends a default-domain node; its name is derived from its first output.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) {
        let name = self.fresh(&format!(
            "{}/{op_type}",
            outputs.first().map(String::as_str).unwrap_or("node")
        ));
        self.nodes.push(NodeProto {
            input: inputs,
            output: outputs,
            name: Some(name),
            op_type: Some(op_type.to_string()),
            attribute,
            ..Default::default()
        });
    }

    /// One node with a fresh single output named after `base`; returns that output.
    pub fn node1(
        &mut self,
        op_type: &str,
        base: &str,
        inputs: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(base);
        self.node(op_type, inputs, vec![out.clone()], attribute);
        out
    }

    /// Adds an initializer under a fresh name derived from `base`; returns the name.
    pub fn initializer(&mut self, base: &str, t: &Tensor) -> String {
        let name = self.fresh(base);
        self.initializers.push(tensor_to_proto(&name, t));
        name
    }

    /// Adds an initializer under an exact, already reserved name.
    pub fn initializer_named(&mut self, name: &str, t: &Tensor) {
        self.initializers.push(tensor_to_proto(name, t));
    }
}

/// An attribute from kiln's neutral form (the graph dialect's attribute names are ONNX's:
/// the importer hands ONNX attributes to `Op::from_attrs` unchanged).
pub(super) fn attr(name: &str, a: &Attr) -> AttributeProto {
    let mut p = AttributeProto {
        name: Some(name.to_string()),
        ..Default::default()
    };
    let ty = match a {
        Attr::Int(i) => {
            p.i = Some(*i);
            AttributeType::Int
        }
        Attr::Float(f) => {
            p.f = Some(*f);
            AttributeType::Float
        }
        Attr::Str(s) => {
            p.s = Some(s.as_bytes().to_vec());
            AttributeType::String
        }
        Attr::Ints(v) => {
            p.ints = v.clone();
            AttributeType::Ints
        }
        Attr::Floats(v) => {
            p.floats = v.clone();
            AttributeType::Floats
        }
        Attr::Strs(v) => {
            p.strings = v.iter().map(|s| s.as_bytes().to_vec()).collect();
            AttributeType::Strings
        }
        Attr::Tensor(t) => {
            p.t = Some(tensor_to_proto(name, t));
            AttributeType::Tensor
        }
    };
    p.set_type(ty);
    p
}

pub(super) fn int(name: &str, v: i64) -> AttributeProto {
    attr(name, &Attr::Int(v))
}

pub(super) fn float(name: &str, v: f32) -> AttributeProto {
    attr(name, &Attr::Float(v))
}

pub(super) fn string(name: &str, v: &str) -> AttributeProto {
    attr(name, &Attr::Str(v.to_string()))
}

pub(super) fn ints(name: &str, v: &[i64]) -> AttributeProto {
    attr(name, &Attr::Ints(v.to_vec()))
}

/// Every attribute of `a` except those `skip` rejects.
pub(super) fn attrs_except(a: &Attrs, skip: impl Fn(&str) -> bool) -> Vec<AttributeProto> {
    a.0.iter()
        .filter(|(n, _)| !skip(n))
        .map(|(n, v)| attr(n, v))
        .collect()
}
