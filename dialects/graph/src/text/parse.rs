//! The parser. It checks what the text alone can tell (syntax, define-before-use, unique
//! names, known ops and attributes, declared output types) and leaves op semantics
//! (operand counts, shapes) to the verifier and shape inference.

use super::{Lit, Pos, build, err_at};
use crate::graph::{Graph, Value};
use crate::ops::{Const, ConstSource, Op};
use kiln_core::lexer::{Cursor, Tok};
use kiln_core::{Attr, Attrs, DType, ErrorKind, Result, Tensor, TensorType};
use std::collections::HashMap;
use std::sync::Arc;

/// Parses a graph. Value types come from the `: types` of each op line (`?` leaves them
/// unknown) and from the input and `const` declarations. Resource constants have no data
/// until [`super::attach_weights`] fills them in.
pub fn parse(src: &str) -> Result<Graph> {
    let mut p = Parser {
        c: Cursor::new(src)?,
        g: Graph::default(),
        scope: HashMap::new(),
    };
    p.graph()?;
    Ok(p.g)
}

/// One attribute value on its own, for the format's unit tests.
#[cfg(test)]
pub(super) fn parse_attr(src: &str) -> Result<Attr> {
    let mut p = Parser {
        c: Cursor::new(src)?,
        g: Graph::default(),
        scope: HashMap::new(),
    };
    let a = p.attr_value()?;
    if !p.c.at_eof() {
        return Err(p.c.unexpected("end of input"));
    }
    Ok(a)
}

struct Parser {
    c: Cursor,
    g: Graph,
    scope: HashMap<String, Value>,
}

impl Parser {
    fn graph(&mut self) -> Result<()> {
        self.c.expect_ident("graph")?;
        self.g.name = match self.c.peek().clone() {
            Tok::Symbol(s) => {
                self.c.next();
                s
            }
            _ => return Err(self.c.unexpected("a graph name '@name'")),
        };
        self.c.expect_punct('(')?;
        if !self.c.eat_punct(')') {
            loop {
                let (pos, name) = self.value_name()?;
                self.c.expect_punct(':')?;
                let ty = self.opt_type()?;
                self.check_fresh(&name, pos)?;
                let v = self.g.add_input(name.clone(), ty);
                self.scope.insert(name, v);
                if !self.c.eat_punct(',') {
                    self.c.expect_punct(')')?;
                    break;
                }
            }
        }
        if *self.c.peek() != Tok::Arrow {
            return Err(self.c.unexpected("'->'"));
        }
        self.c.next();
        self.c.expect_punct('(')?;
        let mut declared = Vec::new();
        if !self.c.eat_punct(')') {
            loop {
                declared.push(self.opt_type()?);
                if !self.c.eat_punct(',') {
                    self.c.expect_punct(')')?;
                    break;
                }
            }
        }
        self.c.expect_punct('{')?;
        let ret_pos = loop {
            let pos = self.c.pos();
            if self.c.eat_ident("return") {
                break pos;
            }
            self.statement()?;
        };
        let mut outs = Vec::new();
        if matches!(self.c.peek(), Tok::Value(_)) {
            loop {
                let (pos, v) = self.use_value()?;
                outs.push((pos, v));
                if !self.c.eat_punct(',') {
                    break;
                }
            }
        }
        self.c.expect_punct('}')?;
        if !self.c.at_eof() {
            return Err(self.c.unexpected("end of input after the graph"));
        }
        if outs.len() != declared.len() {
            return Err(err_at(
                ErrorKind::Parse,
                ret_pos,
                format!(
                    "the header declares {} result(s) but {} value(s) are returned",
                    declared.len(),
                    outs.len()
                ),
            ));
        }
        for (i, ((pos, v), want)) in outs.iter().zip(&declared).enumerate() {
            if let (Some(want), Some(have)) = (want, &self.g.value(*v).ty)
                && want != have
            {
                return Err(err_at(
                    ErrorKind::Type,
                    *pos,
                    format!(
                        "result {i} is declared {want} in the header but the returned value is {have}"
                    ),
                ));
            }
        }
        self.g
            .set_outputs(outs.into_iter().map(|(_, v)| v).collect());
        Ok(())
    }

    fn value_name(&mut self) -> Result<(Pos, String)> {
        let pos = self.c.pos();
        match self.c.peek().clone() {
            Tok::Value(v) => {
                self.c.next();
                Ok((pos, v))
            }
            _ => Err(self.c.unexpected("a value '%name'")),
        }
    }

    fn use_value(&mut self) -> Result<(Pos, Value)> {
        let (pos, name) = self.value_name()?;
        match self.scope.get(&name) {
            Some(&v) => Ok((pos, v)),
            None => Err(err_at(
                ErrorKind::UndefinedValue,
                pos,
                format!("use of undefined value '%{name}'"),
            )),
        }
    }

    fn check_fresh(&self, name: &str, pos: Pos) -> Result<()> {
        if self.scope.contains_key(name) {
            return Err(err_at(
                ErrorKind::DuplicateDefinition,
                pos,
                format!("value '%{name}' is defined twice"),
            ));
        }
        Ok(())
    }

    /// `f32[1,3]`, `f32[]` or `?`.
    fn opt_type(&mut self) -> Result<Option<TensorType>> {
        if self.c.eat_punct('?') {
            return Ok(None);
        }
        self.tensor_type().map(Some)
    }

    fn tensor_type(&mut self) -> Result<TensorType> {
        let pos = self.c.pos();
        let word = match self.c.peek() {
            Tok::Ident(w) => w.clone(),
            _ => return Err(self.c.unexpected("a type such as 'f32[1,3]'")),
        };
        let dtype = DType::from_name(&word).ok_or_else(|| {
            err_at(
                ErrorKind::Parse,
                pos,
                format!("unknown element type '{word}'"),
            )
        })?;
        self.c.next();
        self.c.expect_punct('[')?;
        let mut shape = Vec::new();
        if !self.c.eat_punct(']') {
            loop {
                let dpos = self.c.pos();
                let d = self.c.int()?;
                let d = usize::try_from(d).map_err(|_| {
                    err_at(ErrorKind::Parse, dpos, format!("dimension {d} is negative"))
                })?;
                shape.push(d);
                if !self.c.eat_punct(',') {
                    self.c.expect_punct(']')?;
                    break;
                }
            }
        }
        let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let bytes = numel.and_then(|n| n.checked_mul(dtype.size_bytes()));
        if bytes.is_none_or(|b| b > isize::MAX as usize) {
            return Err(err_at(
                ErrorKind::Shape,
                pos,
                format!("type {word}{shape:?} is too large"),
            ));
        }
        Ok(TensorType::new(dtype, shape))
    }

    /// One body line: `%a, %b = graph.op(...) {...} : types loc("n")`, or a `const`.
    fn statement(&mut self) -> Result<()> {
        let mut results: Vec<(Pos, String)> = Vec::new();
        if matches!(self.c.peek(), Tok::Value(_)) {
            loop {
                let (pos, name) = self.value_name()?;
                self.check_fresh(&name, pos)?;
                if results.iter().any(|(_, n)| *n == name) {
                    return Err(err_at(
                        ErrorKind::DuplicateDefinition,
                        pos,
                        format!("value '%{name}' is defined twice"),
                    ));
                }
                results.push((pos, name));
                if !self.c.eat_punct(',') {
                    break;
                }
            }
            self.c.expect_punct('=')?;
        }
        let op_pos = self.c.pos();
        let word = match self.c.peek() {
            Tok::Ident(w) => w.clone(),
            Tok::Punct('}') | Tok::Eof if results.is_empty() => {
                return Err(self.c.unexpected("'return'"));
            }
            _ => return Err(self.c.unexpected("an op such as 'graph.add'")),
        };
        self.c.next();
        let (op, operands, types) = if word == "const" {
            if results.len() != 1 {
                return Err(err_at(
                    ErrorKind::Parse,
                    op_pos,
                    "a const defines exactly one value",
                ));
            }
            let c = self.const_decl()?;
            let ty = Some(c.ty.clone());
            (Op::Const(c), Vec::new(), vec![ty])
        } else {
            let Some(name) = word.strip_prefix("graph.") else {
                return Err(err_at(
                    ErrorKind::UnsupportedOp,
                    op_pos,
                    format!("unknown op '{word}' (graph ops are written 'graph.<name>')"),
                ));
            };
            self.generic_op(name, op_pos, results.len())?
        };
        let node_name = if self.c.eat_ident("loc") {
            self.c.expect_punct('(')?;
            let s = self.c.string()?;
            self.c.expect_punct(')')?;
            s
        } else {
            String::new()
        };
        let names = results.iter().map(|(_, n)| n.clone()).collect();
        let (_, outs) = self.g.add_node(node_name, op, operands, names);
        for ((v, ty), (_, name)) in outs.into_iter().zip(types).zip(results) {
            self.g.value_mut(v).ty = ty;
            self.scope.insert(name, v);
        }
        Ok(())
    }

    /// `graph.NAME(operands) {attrs} : types`, after the name.
    #[allow(clippy::type_complexity)]
    fn generic_op(
        &mut self,
        name: &str,
        op_pos: Pos,
        n_results: usize,
    ) -> Result<(Op, Vec<Option<Value>>, Vec<Option<TensorType>>)> {
        self.c.expect_punct('(')?;
        let mut operands = Vec::new();
        if !self.c.eat_punct(')') {
            loop {
                if self.c.eat_punct('_') {
                    operands.push(None);
                } else {
                    operands.push(Some(self.use_value()?.1));
                }
                if !self.c.eat_punct(',') {
                    self.c.expect_punct(')')?;
                    break;
                }
            }
        }
        let mut attrs = Attrs::new();
        let mut attr_pos: Vec<(String, Pos)> = Vec::new();
        if self.c.eat_punct('{') && !self.c.eat_punct('}') {
            loop {
                let pos = self.c.pos();
                let key = match self.c.next() {
                    Tok::Ident(k) | Tok::Str(k) => k,
                    _ => return Err(err_at(ErrorKind::Parse, pos, "expected an attribute name")),
                };
                if attrs.get(&key).is_some() {
                    return Err(err_at(
                        ErrorKind::Attribute,
                        pos,
                        format!("attribute '{key}' is given twice"),
                    ));
                }
                self.c.expect_punct('=')?;
                let value = self.attr_value()?;
                attrs.set(&key, value);
                attr_pos.push((key, pos));
                if !self.c.eat_punct(',') {
                    self.c.expect_punct('}')?;
                    break;
                }
            }
        }
        let mut types = Vec::new();
        let types_pos = self.c.pos();
        if n_results > 0 && *self.c.peek() != Tok::Punct(':') {
            return Err(self.c.unexpected("':' and the result types"));
        }
        if self.c.eat_punct(':') {
            loop {
                types.push(self.opt_type()?);
                if !self.c.eat_punct(',') {
                    break;
                }
            }
        }
        if types.len() != n_results {
            return Err(err_at(
                ErrorKind::Parse,
                types_pos,
                format!(
                    "{n_results} result(s) but {} type(s) after ':'",
                    types.len()
                ),
            ));
        }
        let op = Op::from_attrs(name, attrs).map_err(|e| {
            // Point at the attribute the message names, else at the op.
            let pos = attr_pos
                .iter()
                .find(|(k, _)| e.message.contains(&format!("'{k}'")))
                .map_or(op_pos, |(_, p)| *p);
            e.at_text(pos.0, pos.1)
        })?;
        Ok((op, operands, types))
    }

    fn attr_value(&mut self) -> Result<Attr> {
        let pos = self.c.pos();
        match self.c.peek().clone() {
            Tok::Int(v) => {
                self.c.next();
                Ok(Attr::Int(v))
            }
            Tok::Float(v) => {
                let f = self.c.peek_f32().unwrap_or(v as f32);
                self.c.next();
                Ok(Attr::Float(f))
            }
            Tok::Str(s) => {
                self.c.next();
                Ok(Attr::Str(s))
            }
            Tok::Punct('[') => {
                self.c.next();
                self.attr_list()
            }
            Tok::Ident(_) => {
                let ty = self.tensor_type()?;
                let form_pos = self.c.pos();
                match self.c.ident()?.as_str() {
                    "dense" => self.dense(&ty, form_pos).map(Attr::Tensor),
                    "splat" => self.splat(&ty).map(Attr::Tensor),
                    other => Err(err_at(
                        ErrorKind::Parse,
                        form_pos,
                        format!("expected 'dense' or 'splat' after a tensor type, found '{other}'"),
                    )),
                }
            }
            _ => Err(err_at(
                ErrorKind::Parse,
                pos,
                format!(
                    "expected an attribute value, found {}",
                    self.c.peek().describe()
                ),
            )),
        }
    }

    /// `[...]` after the `[`: ints, floats (any element written as a float makes the
    /// whole list floats) or strings.
    fn attr_list(&mut self) -> Result<Attr> {
        let (mut ints, mut floats, mut any_float) = (Vec::new(), Vec::new(), false);
        let mut strs: Vec<String> = Vec::new();
        if self.c.eat_punct(']') {
            return Ok(Attr::Ints(Vec::new()));
        }
        loop {
            let pos = self.c.pos();
            let f = self.c.peek_f32();
            match self.c.next() {
                Tok::Int(v) if strs.is_empty() => {
                    ints.push(v);
                    floats.push(v as f32);
                }
                Tok::Float(v) if strs.is_empty() => {
                    any_float = true;
                    floats.push(f.unwrap_or(v as f32));
                }
                Tok::Str(s) if floats.is_empty() => strs.push(s),
                t => {
                    return Err(err_at(
                        ErrorKind::Parse,
                        pos,
                        format!(
                            "expected a list element of the same kind as the first, found {}",
                            t.describe()
                        ),
                    ));
                }
            }
            if !self.c.eat_punct(',') {
                self.c.expect_punct(']')?;
                break;
            }
        }
        if !strs.is_empty() {
            return Ok(Attr::Strs(strs));
        }
        Ok(if any_float {
            Attr::Floats(floats)
        } else {
            Attr::Ints(ints)
        })
    }

    /// `const TYPE BODY`, after `const`.
    fn const_decl(&mut self) -> Result<Const> {
        let ty = self.tensor_type()?;
        let form_pos = self.c.pos();
        let form = self.c.ident()?;
        let (value, source) = match form.as_str() {
            "dense" => (Some(self.dense(&ty, form_pos)?), ConstSource::Dense),
            "splat" => (Some(self.splat(&ty)?), ConstSource::Splat),
            "random" => {
                self.c.expect_punct('(')?;
                self.c.expect_ident("seed")?;
                self.c.expect_punct('=')?;
                // Seeds are u64; those past i64::MAX are written as their two's complement.
                let seed = self.c.int()? as u64;
                self.c.expect_punct(',')?;
                self.c.expect_ident("min")?;
                self.c.expect_punct('=')?;
                let min = self.f32()?;
                self.c.expect_punct(',')?;
                self.c.expect_ident("max")?;
                self.c.expect_punct('=')?;
                let max = self.f32()?;
                self.c.expect_punct(')')?;
                return Ok(Const::random(ty, seed, min, max));
            }
            "resource" => {
                self.c.expect_punct('<')?;
                let name = self.c.string()?;
                self.c.expect_punct('>')?;
                (None, ConstSource::Resource(name))
            }
            other => {
                return Err(err_at(
                    ErrorKind::Parse,
                    form_pos,
                    format!("expected 'dense', 'splat', 'random' or 'resource', found '{other}'"),
                ));
            }
        };
        Ok(Const {
            ty,
            value: value.map(Arc::new),
            source,
        })
    }

    /// `<[e, ...]>` after `dense`: every element, row-major.
    fn dense(&mut self, ty: &TensorType, form_pos: Pos) -> Result<Tensor> {
        self.c.expect_punct('<')?;
        self.c.expect_punct('[')?;
        let mut lits = Vec::new();
        if !self.c.eat_punct(']') {
            loop {
                lits.push(self.lit()?);
                if !self.c.eat_punct(',') {
                    self.c.expect_punct(']')?;
                    break;
                }
            }
        }
        self.c.expect_punct('>')?;
        if lits.len() != ty.numel() {
            return Err(err_at(
                ErrorKind::Shape,
                form_pos,
                format!(
                    "dense data has {} element(s) but {ty} needs {}",
                    lits.len(),
                    ty.numel()
                ),
            ));
        }
        build(ty, &lits)
    }

    /// `(v)` after `splat`.
    fn splat(&mut self, ty: &TensorType) -> Result<Tensor> {
        self.c.expect_punct('(')?;
        let lit = self.lit()?;
        self.c.expect_punct(')')?;
        // Read the element once, then fill: a large splat costs one element of parsing.
        let one = build(&TensorType::new(ty.dtype, Vec::new()), &[lit])?;
        Ok(kiln_core::map_same!(&one, a => {
            let v = a.iter().next().copied().unwrap_or_default();
            ndarray::ArrayD::from_elem(ndarray::IxDyn(&ty.shape), v)
        }))
    }

    fn f32(&mut self) -> Result<f32> {
        match self.c.peek_f32() {
            Some(v) => {
                self.c.next();
                Ok(v)
            }
            None => Err(self.c.unexpected("a number")),
        }
    }

    fn lit(&mut self) -> Result<(Pos, Lit)> {
        let pos = self.c.pos();
        let lit = match self.c.peek() {
            Tok::Int(v) => Lit::Int(*v),
            Tok::Float(v) => Lit::Float(*v, self.c.peek_f32().unwrap_or(*v as f32)),
            Tok::Ident(w) if w == "true" => Lit::Bool(true),
            Tok::Ident(w) if w == "false" => Lit::Bool(false),
            _ => return Err(self.c.unexpected("a number, 'true' or 'false'")),
        };
        self.c.next();
        Ok((pos, lit))
    }
}
