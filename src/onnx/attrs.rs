//! ONNX attributes → kiln [`Attrs`], and typed access for the opset rewrites.
//!
//! Attributes are converted once, up front, to kiln's neutral form; the rewrites in
//! `opset.rs` then take out what they turn into operands and hand the rest to
//! `Op::from_attrs`, which rejects anything it does not read. So a legacy attribute that no
//! rewrite handles is an error, never silently dropped.

use super::proto::attribute_proto::AttributeType;
use super::proto::{AttributeProto, NodeProto};
use super::tensor::tensor_from_proto;
use kiln_core::{Attr, Attrs, Result, bail, err};
use std::path::Path;

/// Converts one attribute. Graph-valued attributes (If/Loop/Scan bodies), sparse tensors
/// and type protos have no kiln equivalent.
pub fn attr_from_proto(a: &AttributeProto, base_dir: Option<&Path>) -> Result<Attr> {
    let name = a.name();
    if a.ref_attr_name.is_some() {
        bail!(
            Attribute,
            "attribute '{name}' refers to a function attribute, which only exists inside functions"
        );
    }
    // prost maps an unset or unknown type to Undefined.
    let ty = match a.r#type() {
        AttributeType::Undefined => guess_type(a)
            .ok_or_else(|| err!(Attribute, "attribute '{name}' has no type and no value"))?,
        t => t,
    };
    let utf8 = |s: &[u8]| {
        String::from_utf8(s.to_vec())
            .map_err(|_| err!(Attribute, "attribute '{name}' is not valid UTF-8 text"))
    };
    Ok(match ty {
        AttributeType::Int => Attr::Int(a.i()),
        AttributeType::Float => Attr::Float(a.f()),
        AttributeType::String => Attr::Str(utf8(a.s())?),
        AttributeType::Ints => Attr::Ints(a.ints.clone()),
        AttributeType::Floats => Attr::Floats(a.floats.clone()),
        AttributeType::Strings => {
            Attr::Strs(a.strings.iter().map(|s| utf8(s)).collect::<Result<_>>()?)
        }
        AttributeType::Tensor => {
            let t =
                a.t.as_ref()
                    .ok_or_else(|| err!(Attribute, "tensor attribute '{name}' has no tensor"))?;
            Attr::Tensor(tensor_from_proto(t, base_dir)?)
        }
        AttributeType::Graph | AttributeType::Graphs => {
            bail!(
                Unsupported,
                "attribute '{name}' is a subgraph; kiln does not support control flow"
            )
        }
        other => bail!(
            Unsupported,
            "attribute '{name}' has type {other:?}, which kiln does not support"
        ),
    })
}

/// Very old writers left `type` unset; the populated field still says what was meant.
fn guess_type(a: &AttributeProto) -> Option<AttributeType> {
    Some(if a.f.is_some() {
        AttributeType::Float
    } else if a.i.is_some() {
        AttributeType::Int
    } else if a.s.is_some() {
        AttributeType::String
    } else if a.t.is_some() {
        AttributeType::Tensor
    } else if a.g.is_some() {
        AttributeType::Graph
    } else if !a.floats.is_empty() {
        AttributeType::Floats
    } else if !a.ints.is_empty() {
        AttributeType::Ints
    } else if !a.strings.is_empty() {
        AttributeType::Strings
    } else {
        return None;
    })
}

/// Every attribute of a node, in order. A repeated name is an error: which one would win
/// differs between runtimes.
pub fn node_attrs(node: &NodeProto, base_dir: Option<&Path>) -> Result<Attrs> {
    let mut out = Attrs::new();
    for a in &node.attribute {
        if out.get(a.name()).is_some() {
            bail!(Attribute, "attribute '{}' is given twice", a.name());
        }
        out.0
            .push((a.name().to_string(), attr_from_proto(a, base_dir)?));
    }
    Ok(out)
}

fn wrong(name: &str, want: &str, got: &Attr) -> kiln_core::Error {
    err!(
        Attribute,
        "attribute '{name}' must be {want}, got {}",
        got.kind_name()
    )
}

/// Removes and returns an int attribute.
pub fn take_int(a: &mut Attrs, name: &str) -> Result<Option<i64>> {
    match a.remove(name) {
        None => Ok(None),
        Some(Attr::Int(v)) => Ok(Some(v)),
        Some(other) => Err(wrong(name, "an int", &other)),
    }
}

/// Removes and returns a float attribute (an int is accepted, as `AttrReader` does).
pub fn take_float(a: &mut Attrs, name: &str) -> Result<Option<f32>> {
    match a.remove(name) {
        None => Ok(None),
        Some(Attr::Float(v)) => Ok(Some(v)),
        Some(Attr::Int(v)) => Ok(Some(v as f32)),
        Some(other) => Err(wrong(name, "a float", &other)),
    }
}

/// Removes and returns an ints attribute.
pub fn take_ints(a: &mut Attrs, name: &str) -> Result<Option<Vec<i64>>> {
    match a.remove(name) {
        None => Ok(None),
        Some(Attr::Ints(v)) => Ok(Some(v)),
        Some(other) => Err(wrong(name, "a list of ints", &other)),
    }
}

/// Removes and returns a floats attribute (ints are accepted and widened).
pub fn take_floats(a: &mut Attrs, name: &str) -> Result<Option<Vec<f32>>> {
    match a.remove(name) {
        None => Ok(None),
        Some(Attr::Floats(v)) => Ok(Some(v)),
        Some(Attr::Ints(v)) => Ok(Some(v.into_iter().map(|x| x as f32).collect())),
        Some(other) => Err(wrong(name, "a list of floats", &other)),
    }
}

/// Removes and returns a string attribute.
pub fn take_str(a: &mut Attrs, name: &str) -> Result<Option<String>> {
    match a.remove(name) {
        None => Ok(None),
        Some(Attr::Str(v)) => Ok(Some(v)),
        Some(other) => Err(wrong(name, "a string", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::ErrorKind;

    fn attr(name: &str, ty: AttributeType) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            r#type: Some(ty as i32),
            ..Default::default()
        }
    }

    #[test]
    fn converts_each_kind() {
        let mut a = attr("i", AttributeType::Int);
        a.i = Some(3);
        assert_eq!(attr_from_proto(&a, None).unwrap(), Attr::Int(3));
        let mut a = attr("f", AttributeType::Float);
        a.f = Some(0.5);
        assert_eq!(attr_from_proto(&a, None).unwrap(), Attr::Float(0.5));
        let mut a = attr("s", AttributeType::String);
        a.s = Some(b"nearest".to_vec());
        assert_eq!(
            attr_from_proto(&a, None).unwrap(),
            Attr::Str("nearest".into())
        );
        let mut a = attr("is", AttributeType::Ints);
        a.ints = vec![1, 2];
        assert_eq!(attr_from_proto(&a, None).unwrap(), Attr::Ints(vec![1, 2]));
        let mut a = attr("fs", AttributeType::Floats);
        a.floats = vec![1.0];
        assert_eq!(attr_from_proto(&a, None).unwrap(), Attr::Floats(vec![1.0]));
        let mut a = attr("ss", AttributeType::Strings);
        a.strings = vec![b"a".to_vec(), b"b".to_vec()];
        assert_eq!(
            attr_from_proto(&a, None).unwrap(),
            Attr::Strs(vec!["a".into(), "b".into()])
        );
        // An INT attribute whose value is 0 is still an int (proto2 presence).
        let a = attr("zero", AttributeType::Int);
        assert_eq!(attr_from_proto(&a, None).unwrap(), Attr::Int(0));
    }

    #[test]
    fn untyped_attribute_is_guessed() {
        let a = AttributeProto {
            name: Some("alpha".into()),
            f: Some(0.1),
            ..Default::default()
        };
        assert_eq!(attr_from_proto(&a, None).unwrap(), Attr::Float(0.1));
        let a = AttributeProto {
            name: Some("empty".into()),
            ..Default::default()
        };
        assert_eq!(
            attr_from_proto(&a, None).unwrap_err().kind,
            ErrorKind::Attribute
        );
    }

    #[test]
    fn bad_attributes() {
        let mut a = attr("s", AttributeType::String);
        a.s = Some(vec![0xff, 0xfe]);
        assert_eq!(
            attr_from_proto(&a, None).unwrap_err().kind,
            ErrorKind::Attribute
        );
        let a = attr("then_branch", AttributeType::Graph);
        assert_eq!(
            attr_from_proto(&a, None).unwrap_err().kind,
            ErrorKind::Unsupported
        );
        let a = attr("sp", AttributeType::SparseTensor);
        assert_eq!(
            attr_from_proto(&a, None).unwrap_err().kind,
            ErrorKind::Unsupported
        );
    }

    #[test]
    fn typed_takes() {
        let mut a = Attrs(vec![
            ("axes".into(), Attr::Ints(vec![0])),
            ("mode".into(), Attr::Int(1)),
        ]);
        assert_eq!(take_ints(&mut a, "axes").unwrap(), Some(vec![0]));
        assert_eq!(take_ints(&mut a, "axes").unwrap(), None);
        assert_eq!(
            take_str(&mut a, "mode").unwrap_err().kind,
            ErrorKind::Attribute
        );
        assert!(a.is_empty());
    }
}
