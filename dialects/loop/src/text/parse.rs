//! The parser: text to `Kernel`s. It checks syntax and names (every use refers to a visible
//! definition, no name is defined twice in one scope); types and structure are the
//! verifier's job, so a hand-written file with a type error gets the verifier's message.

use crate::ir::*;
use kiln_core::lexer::{Cursor, Tok};
use kiln_core::{Error, ErrorKind, Result};
use std::collections::HashMap;

/// A whole module: zero or more kernels.
pub fn parse_module(src: &str) -> Result<Module> {
    let mut c = Cursor::new(src)?;
    let mut m = Module::default();
    while !c.at_eof() {
        m.kernels.push(Parser::new(&mut c).kernel()?);
    }
    Ok(m)
}

/// Exactly one kernel.
pub fn parse_kernel(src: &str) -> Result<Kernel> {
    let mut c = Cursor::new(src)?;
    let k = Parser::new(&mut c).kernel()?;
    if !c.at_eof() {
        return Err(c.unexpected("end of input after the kernel"));
    }
    Ok(k)
}

struct Parser<'c> {
    c: &'c mut Cursor,
    types: Vec<Type>,
    /// Visible value names, innermost scope last.
    scopes: Vec<HashMap<String, Val>>,
    bufs: HashMap<String, Buf>,
}

impl<'c> Parser<'c> {
    fn new(c: &'c mut Cursor) -> Self {
        Parser {
            c,
            types: Vec::new(),
            scopes: vec![HashMap::new()],
            bufs: HashMap::new(),
        }
    }

    fn kernel(mut self) -> Result<Kernel> {
        self.c.expect_ident("kernel")?;
        let Tok::Symbol(name) = self.c.peek().clone() else {
            return Err(self.c.unexpected("a kernel name '@name'"));
        };
        self.c.next();
        self.c.expect_punct('(')?;
        let mut bufs = Vec::new();
        if !self.c.eat_punct(')') {
            loop {
                bufs.push(self.buf_decl(bufs.len())?);
                if self.c.eat_punct(')') {
                    break;
                }
                self.c.expect_punct(',')?;
            }
        }
        self.c.expect_punct('{')?;
        let body = self.region()?;
        Ok(Kernel {
            name,
            bufs,
            body,
            types: self.types,
        })
    }

    fn buf_decl(&mut self, index: usize) -> Result<BufDecl> {
        let label = match self.c.peek().clone() {
            Tok::Symbol(s) => s,
            _ => return Err(self.c.unexpected("a buffer label '@N'")),
        };
        if self.bufs.contains_key(&label) {
            return Err(self.c.error(format!("buffer @{label} declared twice")));
        }
        self.c.next();
        self.bufs.insert(label, Buf(index as u32));
        let name = match self.c.peek().clone() {
            Tok::Ident(s) | Tok::Str(s) => {
                self.c.next();
                s
            }
            _ => return Err(self.c.unexpected("a buffer name")),
        };
        self.c.expect_punct(':')?;
        let elem = self.ty()?;
        self.c.expect_punct('[')?;
        let pos = self.c.pos();
        let len = self.c.int()?;
        let len = usize::try_from(len).map_err(|_| {
            Error::new(ErrorKind::Parse, format!("negative buffer length {len}"))
                .at_text(pos.0, pos.1)
        })?;
        self.c.expect_punct(']')?;
        let readonly = self.c.eat_ident("readonly");
        Ok(BufDecl {
            name,
            elem,
            len,
            readonly,
        })
    }

    fn ty(&mut self) -> Result<Type> {
        if let Tok::Ident(w) = self.c.peek()
            && let Some(t) = Type::from_name(w)
        {
            self.c.next();
            return Ok(t);
        }
        Err(self.c.unexpected("a type"))
    }

    fn new_val(&mut self, ty: Type) -> Val {
        self.types.push(ty);
        Val(self.types.len() as u32 - 1)
    }

    fn lookup(&self, name: &str) -> Option<Val> {
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }

    /// Binds `name` in the innermost scope.
    fn bind(&mut self, name: &str, v: Val, pos: (usize, usize)) -> Result<()> {
        if self.lookup(name).is_some() {
            return Err(
                Error::new(ErrorKind::Parse, format!("value %{name} defined twice"))
                    .at_text(pos.0, pos.1),
            );
        }
        self.scopes
            .last_mut()
            .expect("a scope is open")
            .insert(name.to_string(), v);
        Ok(())
    }

    /// A value name being defined, not yet bound.
    fn def_name(&mut self) -> Result<(String, (usize, usize))> {
        let pos = self.c.pos();
        match self.c.peek().clone() {
            Tok::Value(n) => {
                self.c.next();
                Ok((n, pos))
            }
            _ => Err(self.c.unexpected("a value name '%name'")),
        }
    }

    fn use_val(&mut self) -> Result<Val> {
        match self.c.peek().clone() {
            Tok::Value(n) => match self.lookup(&n) {
                Some(v) => {
                    self.c.next();
                    Ok(v)
                }
                None => Err(self.c.error(format!("use of undefined value %{n}"))),
            },
            _ => Err(self.c.unexpected("a value '%name'")),
        }
    }

    fn use_list(&mut self) -> Result<Vec<Val>> {
        let mut vs = vec![self.use_val()?];
        while self.c.eat_punct(',') {
            vs.push(self.use_val()?);
        }
        Ok(vs)
    }

    fn region(&mut self) -> Result<Region> {
        let mut insts = Vec::new();
        while !self.c.eat_punct('}') {
            if self.c.at_eof() {
                return Err(self.c.unexpected("'}'"));
            }
            insts.push(self.inst()?);
        }
        Ok(Region { insts })
    }

    fn inst(&mut self) -> Result<Inst> {
        let mut results = Vec::new();
        if matches!(self.c.peek(), Tok::Value(_)) {
            results.push(self.def_name()?);
            while self.c.eat_punct(',') {
                results.push(self.def_name()?);
            }
            self.c.expect_punct('=')?;
        }
        let op_pos = self.c.pos();
        let op = self.c.ident()?;
        let n_results = results.len();
        let want = |n: usize, op: &str| -> Result<()> {
            if n_results == n {
                Ok(())
            } else {
                Err(perr(
                    op_pos,
                    format!("'{op}' defines {n} value(s), found {n_results}"),
                ))
            }
        };
        if op == "for" || op == "parallel" {
            return self.loop_(op == "parallel", results);
        }
        let (kind, ty) = match op.as_str() {
            "yield" => {
                want(0, &op)?;
                // `yield` ends its body, but a following `%a, %b = ...` must not be taken
                // for its operands: look past the value list for an `=`.
                let mut k = 0;
                while matches!(self.c.peek_at(k), Tok::Value(_)) {
                    k += 1;
                    if *self.c.peek_at(k) != Tok::Punct(',') {
                        break;
                    }
                    k += 1;
                }
                let defines_next = *self.c.peek_at(k) == Tok::Punct('=');
                let vs = if k > 0 && !defines_next {
                    self.use_list()?
                } else {
                    Vec::new()
                };
                return Ok(Inst {
                    kind: InstKind::Yield(vs),
                    results: vec![],
                });
            }
            "store" => {
                want(0, &op)?;
                let (b, off, disp) = self.addr()?;
                self.c.expect_punct(',')?;
                let x = self.use_val()?;
                return Ok(Inst {
                    kind: InstKind::Store(b, off, disp, x),
                    results: vec![],
                });
            }
            "iconst" => {
                let t = self.ty()?;
                (InstKind::Iconst(t, self.c.int()?), t)
            }
            "fconst" => (InstKind::Fconst(self.float()?), Type::F32),
            "fma" => {
                let a = self.use_val()?;
                self.c.expect_punct(',')?;
                let b = self.use_val()?;
                self.c.expect_punct(',')?;
                let c = self.use_val()?;
                (InstKind::Fma(a, b, c), self.result_ty()?)
            }
            "cmp" => {
                let pos = self.c.pos();
                let w = self.c.ident()?;
                let cop = CmpOp::ALL
                    .into_iter()
                    .find(|o| o.name() == w)
                    .ok_or_else(|| perr(pos, format!("unknown comparison '{w}'")))?;
                let a = self.use_val()?;
                self.c.expect_punct(',')?;
                let b = self.use_val()?;
                (InstKind::Cmp(cop, a, b), self.result_ty()?)
            }
            "select" => {
                let c = self.use_val()?;
                self.c.expect_punct(',')?;
                let a = self.use_val()?;
                self.c.expect_punct(',')?;
                let b = self.use_val()?;
                (InstKind::Select(c, a, b), self.result_ty()?)
            }
            "splat" => {
                let t = self.ty()?;
                (InstKind::Splat(t, self.use_val()?), t)
            }
            "cast" => {
                let t = self.ty()?;
                (InstKind::Cast(t, self.use_val()?), t)
            }
            "extract" => {
                let x = self.use_val()?;
                self.c.expect_punct(',')?;
                let lane = self.lane()?;
                (InstKind::Extract(x, lane), self.result_ty()?)
            }
            "insert" => {
                let x = self.use_val()?;
                self.c.expect_punct(',')?;
                let s = self.use_val()?;
                self.c.expect_punct(',')?;
                let lane = self.lane()?;
                (InstKind::Insert(x, s, lane), self.result_ty()?)
            }
            "bitcast" => {
                let t = self.ty()?;
                (InstKind::Bitcast(t, self.use_val()?), t)
            }
            "reduce" => {
                let pos = self.c.pos();
                let w = self.c.ident()?;
                let rop = RedOp::ALL
                    .into_iter()
                    .find(|o| o.name() == w)
                    .ok_or_else(|| perr(pos, format!("unknown reduction '{w}'")))?;
                (InstKind::Reduce(rop, self.use_val()?), self.result_ty()?)
            }
            "load" => {
                let t = self.ty()?;
                let (b, off, disp) = self.addr()?;
                (InstKind::Load(t, b, off, disp), t)
            }
            // The int8 instructions have one result type each, so the text names none.
            "dot_u8s8" => {
                let acc = self.use_val()?;
                self.c.expect_punct(',')?;
                let a = self.use_val()?;
                self.c.expect_punct(',')?;
                let b = self.use_val()?;
                (InstKind::DotU8S8(acc, a, b), Type::I32X4)
            }
            "narrow_u8" => {
                let pos = self.c.pos();
                let vs = self.use_list()?;
                let vs: [Val; 4] = vs.try_into().map_err(|vs: Vec<Val>| {
                    perr(
                        pos,
                        format!("narrow_u8 takes 4 operands, given {}", vs.len()),
                    )
                })?;
                (InstKind::NarrowU8(vs), Type::I8X16)
            }
            "widen_u8" => {
                let x = self.use_val()?;
                self.c.expect_punct(',')?;
                let part = self.lane()?;
                (InstKind::WidenU8(x, part), Type::I32X4)
            }
            "shuffle" => {
                let a = self.use_val()?;
                self.c.expect_punct(',')?;
                let b = self.use_val()?;
                self.c.expect_punct(',')?;
                self.c.expect_punct('[')?;
                let pos = self.c.pos();
                let mut m = Vec::with_capacity(16);
                loop {
                    m.push(self.lane()?);
                    if !self.c.eat_punct(',') {
                        break;
                    }
                }
                self.c.expect_punct(']')?;
                let m: [u8; 16] = m.try_into().map_err(|m: Vec<u8>| {
                    perr(
                        pos,
                        format!("shuffle takes 16 byte indices, given {}", m.len()),
                    )
                })?;
                (InstKind::Shuffle(a, b, m), Type::I8X16)
            }
            "call" => {
                let pos = self.c.pos();
                let w = self.c.ident()?;
                let h = Helper::from_name(&w)
                    .ok_or_else(|| perr(pos, format!("unknown helper '{w}'")))?;
                self.c.expect_punct('(')?;
                let args = if self.c.eat_punct(')') {
                    Vec::new()
                } else {
                    let a = self.use_list()?;
                    self.c.expect_punct(')')?;
                    a
                };
                (InstKind::Call(h, args), self.result_ty()?)
            }
            w => {
                if let Some(bop) = BinOp::ALL.into_iter().find(|o| o.name() == w) {
                    let a = self.use_val()?;
                    self.c.expect_punct(',')?;
                    let b = self.use_val()?;
                    (InstKind::Binary(bop, a, b), self.result_ty()?)
                } else if let Some(uop) = UnOp::ALL.into_iter().find(|o| o.name() == w) {
                    let a = self.use_val()?;
                    (InstKind::Unary(uop, a), self.result_ty()?)
                } else {
                    return Err(perr(op_pos, format!("unknown instruction '{w}'")));
                }
            }
        };
        want(1, &op)?;
        let (name, pos) = &results[0];
        let v = self.new_val(ty);
        self.bind(name, v, *pos)?;
        Ok(Inst {
            kind,
            results: vec![v],
        })
    }

    fn lane(&mut self) -> Result<u8> {
        let pos = self.c.pos();
        let lane = self.c.int()?;
        u8::try_from(lane).map_err(|_| perr(pos, format!("lane {lane} out of range")))
    }

    fn result_ty(&mut self) -> Result<Type> {
        self.c.expect_punct(':')?;
        self.ty()
    }

    /// An f32 read from its spelling (see `Cursor::peek_f32`), or `nan(BITS)`.
    fn float(&mut self) -> Result<f32> {
        if matches!(self.c.peek(), Tok::Float(v) if v.is_nan())
            && *self.c.peek_at(1) == Tok::Punct('(')
        {
            self.c.next();
            self.c.next();
            let pos = self.c.pos();
            let bits = self.c.int()?;
            let bits = u32::try_from(bits)
                .ok()
                .map(f32::from_bits)
                .filter(|f| f.is_nan())
                .ok_or_else(|| perr(pos, format!("{bits} is not the bit pattern of a NaN")))?;
            self.c.expect_punct(')')?;
            return Ok(bits);
        }
        match self.c.peek_f32() {
            Some(v) => {
                self.c.next();
                Ok(v)
            }
            None => Err(self.c.unexpected("a float")),
        }
    }

    /// `@buf[%off]`, `@buf[%off+4]` or `@buf[%off-4]`.
    fn addr(&mut self) -> Result<(Buf, Val, i64)> {
        let b = match self.c.peek().clone() {
            Tok::Symbol(s) => match self.bufs.get(&s) {
                Some(&b) => b,
                None => return Err(self.c.error(format!("unknown buffer @{s}"))),
            },
            _ => return Err(self.c.unexpected("a buffer '@name'")),
        };
        self.c.next();
        self.c.expect_punct('[')?;
        let off = self.use_val()?;
        let mut disp = 0;
        if let Tok::Int(d) = *self.c.peek() {
            if !self.c.peek_text().starts_with(['+', '-']) {
                return Err(self.c.unexpected("'+N' or '-N'"));
            }
            disp = d;
            self.c.next();
        }
        self.c.expect_punct(']')?;
        Ok((b, off, disp))
    }

    fn loop_(&mut self, parallel: bool, results: Vec<(String, (usize, usize))>) -> Result<Inst> {
        // Allocation order = textual order: results, induction variable, carried values, body.
        let res: Vec<Val> = results.iter().map(|_| self.new_val(Type::Index)).collect();
        let (var_name, var_pos) = self.def_name()?;
        let var = self.new_val(Type::Index);
        self.c.expect_punct('=')?;
        let lo = self.c.int()?;
        self.c.expect_ident("to")?;
        let hi = self.c.int()?;
        self.c.expect_ident("step")?;
        let step = self.c.int()?;
        let mut args = Vec::new();
        let mut inits = Vec::new();
        let mut arg_names = Vec::new();
        if self.c.eat_ident("iter") {
            self.c.expect_punct('(')?;
            loop {
                let (n, pos) = self.def_name()?;
                let a = self.new_val(Type::Index);
                self.c.expect_punct('=')?;
                let init = self.use_val()?;
                self.types[a.index()] = self.types[init.index()];
                args.push(a);
                inits.push(init);
                arg_names.push((n, pos));
                if self.c.eat_punct(')') {
                    break;
                }
                self.c.expect_punct(',')?;
            }
        }
        if res.len() != inits.len() {
            let pos = results.first().map_or(var_pos, |r| r.1);
            return Err(perr(
                pos,
                format!(
                    "the loop carries {} value(s) but defines {} result(s)",
                    inits.len(),
                    res.len()
                ),
            ));
        }
        for (r, i) in res.iter().zip(&inits) {
            self.types[r.index()] = self.types[i.index()];
        }
        self.c.expect_punct('{')?;
        self.scopes.push(HashMap::new());
        self.bind(&var_name, var, var_pos)?;
        for ((n, pos), &a) in arg_names.iter().zip(&args) {
            self.bind(n, a, *pos)?;
        }
        let body = self.region()?;
        self.scopes.pop();
        for ((n, pos), &r) in results.iter().zip(&res) {
            self.bind(n, r, *pos)?;
        }
        Ok(Inst {
            kind: InstKind::Loop(Box::new(Loop {
                var,
                lo,
                hi,
                step,
                parallel,
                inits,
                args,
                body,
            })),
            results: res,
        })
    }
}

fn perr(pos: (usize, usize), msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Parse, msg).at_text(pos.0, pos.1)
}
