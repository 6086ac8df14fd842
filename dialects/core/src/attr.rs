//! Op attributes: the values between `{...}` in the text format and in ONNX attributes.
//!
//! Ops are typed structs; attributes are their neutral, printable form. Every op converts
//! to an [`Attrs`] for printing and back with an [`AttrReader`] for parsing and importing,
//! so the printer and parser never need a per-op match and round trips are exact by
//! construction.

use crate::{Error, ErrorKind, Result, Tensor};

/// One attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Str(String),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strs(Vec<String>),
    Tensor(Tensor),
}

impl Attr {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Attr::Int(_) => "int",
            Attr::Float(_) => "float",
            Attr::Str(_) => "string",
            Attr::Ints(_) => "ints",
            Attr::Floats(_) => "floats",
            Attr::Strs(_) => "strings",
            Attr::Tensor(_) => "tensor",
        }
    }
}

/// An ordered attribute list (order is kept so printing is deterministic).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attrs(pub Vec<(String, Attr)>);

impl Attrs {
    pub fn new() -> Self {
        Attrs(Vec::new())
    }

    pub fn get(&self, name: &str) -> Option<&Attr> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    pub fn set(&mut self, name: &str, value: Attr) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Attr> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(i).1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Builder-style helpers for ops' `attrs()`; each writes only non-default values so the
    /// printed form stays short.
    pub fn int(mut self, name: &str, v: i64, default: i64) -> Self {
        if v != default {
            self.set(name, Attr::Int(v));
        }
        self
    }

    pub fn float(mut self, name: &str, v: f32, default: f32) -> Self {
        if v.to_bits() != default.to_bits() {
            self.set(name, Attr::Float(v));
        }
        self
    }

    pub fn ints(mut self, name: &str, v: &[i64]) -> Self {
        if !v.is_empty() {
            self.set(name, Attr::Ints(v.to_vec()));
        }
        self
    }

    pub fn floats(mut self, name: &str, v: &[f32]) -> Self {
        if !v.is_empty() {
            self.set(name, Attr::Floats(v.to_vec()));
        }
        self
    }

    pub fn str(mut self, name: &str, v: &str, default: &str) -> Self {
        if v != default {
            self.set(name, Attr::Str(v.to_string()));
        }
        self
    }

    pub fn opt_tensor(mut self, name: &str, v: &Option<Tensor>) -> Self {
        if let Some(t) = v {
            self.set(name, Attr::Tensor(t.clone()));
        }
        self
    }
}

/// Typed, consuming access to an [`Attrs`]: each getter removes what it reads, and
/// [`AttrReader::finish`] rejects anything left over, so a misspelt or unsupported
/// attribute is an error instead of being silently ignored.
pub struct AttrReader {
    attrs: Attrs,
}

impl AttrReader {
    pub fn new(attrs: Attrs) -> Self {
        AttrReader { attrs }
    }

    fn wrong(name: &str, want: &str, got: &Attr) -> Error {
        Error::new(
            ErrorKind::Attribute,
            format!("attribute '{name}' must be {want}, got {}", got.kind_name()),
        )
    }

    pub fn has(&self, name: &str) -> bool {
        self.attrs.get(name).is_some()
    }

    pub fn opt_int(&mut self, name: &str) -> Result<Option<i64>> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Int(v)) => Ok(Some(v)),
            Some(other) => Err(Self::wrong(name, "an int", &other)),
        }
    }

    pub fn int(&mut self, name: &str, default: i64) -> Result<i64> {
        Ok(self.opt_int(name)?.unwrap_or(default))
    }

    pub fn req_int(&mut self, name: &str) -> Result<i64> {
        self.opt_int(name)?
            .ok_or_else(|| Error::new(ErrorKind::Attribute, format!("missing attribute '{name}'")))
    }

    pub fn opt_float(&mut self, name: &str) -> Result<Option<f32>> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Float(v)) => Ok(Some(v)),
            // Integers written where a float is expected are accepted: `alpha=1` is obvious.
            Some(Attr::Int(v)) => Ok(Some(v as f32)),
            Some(other) => Err(Self::wrong(name, "a float", &other)),
        }
    }

    pub fn float(&mut self, name: &str, default: f32) -> Result<f32> {
        Ok(self.opt_float(name)?.unwrap_or(default))
    }

    pub fn opt_ints(&mut self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v)),
            Some(Attr::Floats(v)) if v.is_empty() => Ok(Some(Vec::new())),
            Some(other) => Err(Self::wrong(name, "a list of ints", &other)),
        }
    }

    pub fn ints(&mut self, name: &str) -> Result<Vec<i64>> {
        Ok(self.opt_ints(name)?.unwrap_or_default())
    }

    pub fn opt_floats(&mut self, name: &str) -> Result<Option<Vec<f32>>> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Floats(v)) => Ok(Some(v)),
            Some(Attr::Ints(v)) => Ok(Some(v.into_iter().map(|x| x as f32).collect())),
            Some(other) => Err(Self::wrong(name, "a list of floats", &other)),
        }
    }

    pub fn floats(&mut self, name: &str) -> Result<Vec<f32>> {
        Ok(self.opt_floats(name)?.unwrap_or_default())
    }

    pub fn opt_str(&mut self, name: &str) -> Result<Option<String>> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Str(v)) => Ok(Some(v)),
            Some(other) => Err(Self::wrong(name, "a string", &other)),
        }
    }

    pub fn str(&mut self, name: &str, default: &str) -> Result<String> {
        Ok(self.opt_str(name)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn opt_tensor(&mut self, name: &str) -> Result<Option<Tensor>> {
        match self.attrs.remove(name) {
            None => Ok(None),
            Some(Attr::Tensor(t)) => Ok(Some(t)),
            Some(other) => Err(Self::wrong(name, "a tensor", &other)),
        }
    }

    /// Drops an attribute kiln accepts but has no use for (documented at the call site).
    pub fn ignore(&mut self, name: &str) {
        self.attrs.remove(name);
    }

    /// Fails on any attribute nobody read.
    pub fn finish(self) -> Result<()> {
        match self.attrs.0.first() {
            None => Ok(()),
            Some((name, _)) => Err(Error::new(
                ErrorKind::Attribute,
                format!("unknown or unsupported attribute '{name}'"),
            )),
        }
    }
}
