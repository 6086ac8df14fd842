//! The printer. It never fails and never panics: a kernel a pass left inconsistent (a use of
//! a value nothing defines, a missing type) still prints, so it can be looked at; parsing it
//! back or verifying it then says what is wrong.

use super::{f32_text, word_text};
use crate::ir::*;
use kiln_core::lexer::quote_name;
use std::collections::HashMap;
use std::fmt::Write;

/// The dense textual numbering of a kernel's values: definition order as printed.
pub struct Names {
    map: HashMap<Val, u32>,
}

impl Names {
    pub fn new(k: &Kernel) -> Names {
        fn walk(r: &Region, map: &mut HashMap<Val, u32>) {
            let def = |v: Val, map: &mut HashMap<Val, u32>| {
                let n = map.len() as u32;
                map.entry(v).or_insert(n);
            };
            for inst in &r.insts {
                for &v in &inst.results {
                    def(v, map);
                }
                if let InstKind::Loop(l) = &inst.kind {
                    def(l.var, map);
                    for &a in &l.args {
                        def(a, map);
                    }
                    walk(&l.body, map);
                }
            }
        }
        let mut map = HashMap::new();
        walk(&k.body, &mut map);
        Names { map }
    }

    /// `%N`, or `%undefN` (the internal index) for a value nothing defines, which the
    /// parser rejects as undefined.
    pub fn val(&self, v: Val) -> String {
        match self.map.get(&v) {
            Some(n) => format!("%{n}"),
            None => format!("%undef{}", v.0),
        }
    }

    fn list(&self, vs: &[Val]) -> String {
        vs.iter()
            .map(|&v| self.val(v))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every kernel of the module, separated by blank lines.
pub fn print_module(m: &Module) -> String {
    m.kernels
        .iter()
        .map(print_kernel)
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn print_kernel(k: &Kernel) -> String {
    let names = Names::new(k);
    let bufs: Vec<String> = k
        .bufs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "@{i} {}: {}[{}]{}",
                word_text(&b.name),
                b.elem,
                b.len,
                if b.readonly { " readonly" } else { "" }
            )
        })
        .collect();
    let mut out = format!("kernel @{}({}) {{\n", quote_name(&k.name), bufs.join(", "));
    region(k, &names, &k.body, 1, &mut out);
    out.push_str("}\n");
    out
}

fn region(k: &Kernel, names: &Names, r: &Region, depth: usize, out: &mut String) {
    for inst in &r.insts {
        let pad = "  ".repeat(depth);
        let _ = writeln!(out, "{pad}{}", inst_text(k, names, inst));
        if let InstKind::Loop(l) = &inst.kind {
            region(k, names, &l.body, depth + 1, out);
            let _ = writeln!(out, "{pad}}}");
        }
    }
}

fn ty(k: &Kernel, v: Option<&Val>) -> String {
    match v.and_then(|v| k.types.get(v.index())) {
        Some(t) => t.name().to_string(),
        None => "?".to_string(),
    }
}

fn addr(names: &Names, b: Buf, off: Val, disp: i64) -> String {
    match disp {
        0 => format!("@{}[{}]", b.0, names.val(off)),
        d if d > 0 => format!("@{}[{}+{d}]", b.0, names.val(off)),
        d => format!("@{}[{}{d}]", b.0, names.val(off)),
    }
}

/// One instruction on one line, without indentation; a loop prints its header up to the
/// opening brace. Used by the verifier so its messages quote the text a user sees.
pub fn inst_text(k: &Kernel, names: &Names, inst: &Inst) -> String {
    let v = |x: Val| names.val(x);
    let rty = ty(k, inst.results.first());
    let body = match &inst.kind {
        InstKind::Iconst(t, x) => format!("iconst {t} {x}"),
        InstKind::Fconst(x) => format!("fconst {}", f32_text(*x)),
        InstKind::Binary(op, a, b) => format!("{} {}, {} : {rty}", op.name(), v(*a), v(*b)),
        InstKind::Unary(op, a) => format!("{} {} : {rty}", op.name(), v(*a)),
        InstKind::Fma(a, b, c) => format!("fma {}, {}, {} : {rty}", v(*a), v(*b), v(*c)),
        InstKind::Cmp(op, a, b) => format!("cmp {} {}, {} : {rty}", op.name(), v(*a), v(*b)),
        InstKind::Select(c, a, b) => format!("select {}, {}, {} : {rty}", v(*c), v(*a), v(*b)),
        InstKind::Splat(t, x) => format!("splat {t} {}", v(*x)),
        InstKind::Extract(x, lane) => format!("extract {}, {lane} : {rty}", v(*x)),
        InstKind::Insert(x, s, lane) => format!("insert {}, {}, {lane} : {rty}", v(*x), v(*s)),
        InstKind::Bitcast(t, x) => format!("bitcast {t} {}", v(*x)),
        InstKind::Reduce(op, x) => format!("reduce {} {} : {rty}", op.name(), v(*x)),
        InstKind::Cast(t, x) => format!("cast {t} {}", v(*x)),
        InstKind::Load(t, b, off, d) => format!("load {t} {}", addr(names, *b, *off, *d)),
        InstKind::Store(b, off, d, x) => format!("store {}, {}", addr(names, *b, *off, *d), v(*x)),
        InstKind::Call(h, args) => format!("call {}({}) : {rty}", h.name(), names.list(args)),
        InstKind::DotU8S8(acc, a, b) => format!("dot_u8s8 {}, {}, {}", v(*acc), v(*a), v(*b)),
        InstKind::NarrowU8(vs) => format!("narrow_u8 {}", names.list(vs)),
        InstKind::WidenU8(x, part) => format!("widen_u8 {}, {part}", v(*x)),
        InstKind::Shuffle(a, b, m) => {
            let m: Vec<String> = m.iter().map(|i| i.to_string()).collect();
            format!("shuffle {}, {}, [{}]", v(*a), v(*b), m.join(", "))
        }
        InstKind::Yield(vs) if vs.is_empty() => "yield".to_string(),
        InstKind::Yield(vs) => format!("yield {}", names.list(vs)),
        InstKind::Loop(l) => {
            let mut s = format!(
                "{} {} = {} to {} step {}",
                if l.parallel { "parallel" } else { "for" },
                v(l.var),
                l.lo,
                l.hi,
                l.step
            );
            if !l.args.is_empty() || !l.inits.is_empty() {
                let n = l.args.len().max(l.inits.len());
                let pairs: Vec<String> = (0..n)
                    .map(|i| {
                        let a = l.args.get(i).map_or("%missing".into(), |&a| v(a));
                        let x = l.inits.get(i).map_or("%missing".into(), |&x| v(x));
                        format!("{a} = {x}")
                    })
                    .collect();
                let _ = write!(s, " iter({})", pairs.join(", "));
            }
            s.push_str(" {");
            s
        }
    };
    if inst.results.is_empty() {
        body
    } else {
        format!("{} = {body}", names.list(&inst.results))
    }
}
