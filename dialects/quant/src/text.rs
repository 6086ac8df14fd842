//! The quant dialect's text form: the graph as the graph dialect prints it, then a `quant`
//! section with one line per TQC, in site order:
//!
//! ```text
//! quant platform "kiln-x86" {
//!   q0 = out(%x) u8 asym tensor linear half_even minmax s=0.0123 z=128 ACTIVATED
//!   q1 = in(%y, 0) u8 asym tensor linear half_even minmax OVERLAPPED -> q0
//!   q2 = in(%y, 1) s8[-127, 127] sym channel(0) linear half_even minmax s=[0.1, 0.2] z=[0, 0] ACTIVATED
//! }
//! ```
//!
//! `out(%v)` is value `v`; `in(%r, k)` is operand `k` of the op whose first result is `%r`.
//! A dominated TQC prints `-> qR` with its root `R`, and a root its group's parameters; the
//! parser rebuilds the union-find from those links (flattened), so print → parse → print is
//! the identity. Without a `quant` section the parser builds fresh TQCs for the kiln-x86
//! platform; with a header only (`quant platform "trt-int8" {}`) for that platform. Ops the
//! user keeps in fp32 ([`QuantGraph::keep_fp32`]) follow the platform, each named by its
//! first result: `quant platform "kiln-x86" fp32(%c, %m) {`.

use crate::ir::{QuantGraph, Site, TqcId};
use crate::observer::ObserverKind;
use crate::platform;
use crate::rounding::Rounding;
use crate::tqc::{Policy, State, Tqc};
use kiln_core::lexer::{Cursor, Tok, quote_name, quote_string};
use kiln_core::{Error, ErrorKind, Result};
use kiln_graph::Value;
use std::collections::HashMap;
use std::fmt::Write;

/// `out(%v)` / `in(%r, k)`.
pub fn site_text(q: &QuantGraph, site: Site) -> String {
    let g = &q.graph;
    let name = |v: Value| format!("%{}", quote_name(&g.value(v).name));
    match site {
        Site::Out(v) => format!("out({})", name(v)),
        Site::In(n, k) => format!("in({}, {k})", name(g.node(n).outputs()[0])),
    }
}

fn list<T: std::fmt::Debug>(xs: &[T]) -> String {
    let parts: Vec<String> = xs.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", parts.join(", "))
}

/// The config part of a TQC line (everything between the site and the state).
pub fn tqc_text(t: &Tqc) -> String {
    let mut s = t.dtype_text();
    s.push_str(if t.policy.symmetric() {
        " sym"
    } else {
        " asym"
    });
    match t.axis {
        Some(a) => {
            let _ = write!(s, " channel({a})");
        }
        None => s.push_str(" tensor"),
    }
    s.push_str(if t.policy.has(Policy::FLOATING) {
        " float"
    } else if t.policy.pow2() {
        " pow2"
    } else {
        " linear"
    });
    let _ = write!(s, " {} {}", t.rounding.name(), t.observer.name());
    if t.has_params() {
        if t.axis.is_some() {
            let _ = write!(s, " s={} z={}", list(&t.scale), list(&t.offset));
        } else {
            let _ = write!(s, " s={:?} z={}", t.scale[0], t.offset[0]);
        }
    }
    if let Some((lo, hi)) = t.range {
        let _ = write!(s, " range=[{lo:?}, {hi:?}]");
    }
    s
}

pub fn print(q: &QuantGraph) -> String {
    let mut out = kiln_graph::text::print(&q.graph);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    let _ = write!(out, "quant platform {}", quote_string(q.platform.name));
    let kept = q.fp32_ops();
    if !kept.is_empty() {
        let names: Vec<String> = kept
            .iter()
            .map(|&n| {
                format!(
                    "%{}",
                    quote_name(&q.graph.value(q.graph.node(n).outputs()[0]).name)
                )
            })
            .collect();
        let _ = write!(out, " fp32({})", names.join(", "));
    }
    out.push_str(" {\n");
    for id in q.ids() {
        let t = q.tqc(id);
        let _ = write!(
            out,
            "  q{} = {} {} {}",
            id.0,
            site_text(q, q.site(id)),
            tqc_text(t),
            t.state.name()
        );
        let root = q.root(id);
        if root != id {
            let _ = write!(out, " -> q{}", root.0);
        }
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

/// Finds the line that starts the `quant` section (outside comments).
fn split(src: &str) -> (usize, Option<usize>) {
    let mut off = 0;
    for (i, line) in src.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with("quant ") || line.trim() == "quant" {
            return (off, Some(i));
        }
        off += line.len();
    }
    (src.len(), None)
}

pub fn parse(src: &str) -> Result<QuantGraph> {
    let (cut, line) = split(src);
    let mut g = kiln_graph::text::parse(&src[..cut])?;
    kiln_graph::infer::infer_shapes(&mut g)?;
    let Some(line) = line else {
        return QuantGraph::new(g, &platform::KILN_X86);
    };
    // Pad with newlines so token positions are positions in the whole file.
    let rest = format!("{}{}", "\n".repeat(line), &src[cut..]);
    let mut c = Cursor::new(&rest)?;
    c.expect_ident("quant")?;
    c.expect_ident("platform")?;
    let pf = platform::by_name(&c.string()?).map_err(|e| c.error(e.message))?;
    let mut q = QuantGraph::new(g, pf)?;
    let mut names: HashMap<String, Value> = HashMap::new();
    for i in 0..q.graph.num_values() {
        let v = Value(i as u32);
        names.insert(q.graph.value(v).name.clone(), v);
    }
    if c.eat_ident("fp32") {
        kept_ops(&mut c, &mut q, &names)?;
    }
    c.expect_punct('{')?;
    if c.eat_punct('}') {
        return finish(c, q);
    }
    let sites: HashMap<Site, usize> = q.ids().map(|id| (q.site(id), id.index())).collect();
    let n = q.len();
    let mut tqcs: Vec<Option<Tqc>> = vec![None; n];
    let mut roots: Vec<TqcId> = (0..n as u32).map(TqcId).collect();
    let mut expect = 0usize;
    while !c.eat_punct('}') {
        let id = tqc_ref(&mut c)?;
        if id != expect {
            return Err(c.error(format!("expected q{expect} next, found q{id}")));
        }
        c.expect_punct('=')?;
        let site = parse_site(&mut c, &q, &names)?;
        let Some(&idx) = sites.get(&site) else {
            return Err(c.error("this site has no TQC (a constant's result?)"));
        };
        if idx != id {
            return Err(c.error(format!(
                "q{id} names the site of q{idx}: TQCs must be listed in site order"
            )));
        }
        let t = parse_tqc(&mut c)?;
        if *c.peek() == Tok::Arrow {
            c.next();
            let r = tqc_ref(&mut c)?;
            if r >= n || r == id {
                return Err(c.error(format!("bad root q{r}")));
            }
            roots[id] = TqcId(r as u32);
        }
        tqcs[id] = Some(t);
        expect += 1;
    }
    if expect != n {
        return Err(c.error(format!(
            "the quant section lists {expect} TQCs, the graph has {n} sites"
        )));
    }
    for (i, r) in roots.iter().enumerate() {
        if roots[r.index()] != *r && r.index() != i {
            return Err(Error::new(
                ErrorKind::Parse,
                format!("q{i} -> q{}: q{} is not a root itself", r.0, r.0),
            ));
        }
    }
    q.replace_tqcs(tqcs.into_iter().map(|t| t.expect("all listed")).collect());
    q.set_roots(&roots);
    finish(c, q)
}

/// `(%r, ...)`: the ops kept in fp32, each named by its first result.
fn kept_ops(c: &mut Cursor, q: &mut QuantGraph, names: &HashMap<String, Value>) -> Result<()> {
    c.expect_punct('(')?;
    loop {
        let v = value_ref(c, names)?;
        let n = q
            .graph
            .producer(v)
            .filter(|&n| q.graph.node(n).outputs().first() == Some(&v))
            .filter(|&n| !matches!(q.graph.node(n).op, kiln_graph::Op::Const(_)))
            .ok_or_else(|| {
                c.error("fp32(..) names ops by their first result, and not constants")
            })?;
        q.keep_fp32_op(n);
        if !c.eat_punct(',') {
            break;
        }
    }
    c.expect_punct(')')
}

fn finish(c: Cursor, q: QuantGraph) -> Result<QuantGraph> {
    if !c.at_eof() {
        return Err(c.unexpected("end of input after the quant section"));
    }
    Ok(q)
}

fn tqc_ref(c: &mut Cursor) -> Result<usize> {
    let w = c.ident()?;
    w.strip_prefix('q')
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| c.error(format!("expected a TQC name like q3, found '{w}'")))
}

fn value_ref(c: &mut Cursor, names: &HashMap<String, Value>) -> Result<Value> {
    match c.peek().clone() {
        Tok::Value(v) => {
            let r = names
                .get(&v)
                .copied()
                .ok_or_else(|| c.error(format!("unknown value '%{v}'")));
            c.next();
            r
        }
        _ => Err(c.unexpected("a value '%name'")),
    }
}

fn parse_site(c: &mut Cursor, q: &QuantGraph, names: &HashMap<String, Value>) -> Result<Site> {
    let kind = c.ident()?;
    c.expect_punct('(')?;
    let v = value_ref(c, names)?;
    let site = match kind.as_str() {
        "out" => Site::Out(v),
        "in" => {
            c.expect_punct(',')?;
            let k = c.int()?;
            let Some(n) = q.graph.producer(v) else {
                return Err(c.error("in(%r, k) needs %r to be an op result"));
            };
            Site::In(n, k as usize)
        }
        other => return Err(c.error(format!("expected 'out' or 'in', found '{other}'"))),
    };
    c.expect_punct(')')?;
    Ok(site)
}

fn f32_num(c: &mut Cursor) -> Result<f32> {
    let neg = c.eat_punct('-');
    let v = c.peek_f32().ok_or_else(|| c.unexpected("a number"))?;
    c.next();
    Ok(if neg { -v } else { v })
}

fn int_num(c: &mut Cursor) -> Result<i64> {
    let neg = c.eat_punct('-');
    let v = c.int()?;
    Ok(if neg { -v } else { v })
}

fn num_list<T>(c: &mut Cursor, mut f: impl FnMut(&mut Cursor) -> Result<T>) -> Result<Vec<T>> {
    c.expect_punct('[')?;
    let mut v = Vec::new();
    if c.eat_punct(']') {
        return Ok(v);
    }
    loop {
        v.push(f(c)?);
        if !c.eat_punct(',') {
            c.expect_punct(']')?;
            return Ok(v);
        }
    }
}

fn to_i32(c: &Cursor, v: i64) -> Result<i32> {
    i32::try_from(v).map_err(|_| c.error(format!("{v} does not fit i32")))
}

fn parse_tqc(c: &mut Cursor) -> Result<Tqc> {
    let dt = c.ident()?;
    let (signed, bits) = match dt.split_at_checked(1) {
        Some(("s", b)) => (true, b),
        Some(("u", b)) => (false, b),
        _ => return Err(c.error(format!("expected an integer type like u8, found '{dt}'"))),
    };
    let bits: u8 = bits
        .parse()
        .ok()
        .filter(|b| (1..=32).contains(b))
        .ok_or_else(|| c.error(format!("bad bit width in '{dt}'")))?;
    let b = bits as u32;
    let (mut qmin, mut qmax) = if signed {
        (-(1i64 << (b - 1)), (1i64 << (b - 1)) - 1)
    } else {
        (0, (1i64 << b) - 1)
    };
    if *c.peek() == Tok::Punct('[') {
        let r = num_list(c, int_num)?;
        if r.len() != 2 {
            return Err(c.error("a quant range is [min, max]"));
        }
        (qmin, qmax) = (r[0], r[1]);
    }
    let (quant_min, quant_max) = (to_i32(c, qmin)?, to_i32(c, qmax)?);
    let mut p = match c.ident()?.as_str() {
        "sym" => Policy::SYMMETRIC,
        "asym" => Policy::ASYMMETRIC,
        w => return Err(c.error(format!("expected sym or asym, found '{w}'"))),
    };
    let axis = match c.ident()?.as_str() {
        "tensor" => {
            p |= Policy::PER_TENSOR;
            None
        }
        "channel" => {
            p |= Policy::PER_CHANNEL;
            c.expect_punct('(')?;
            let a = c.int()?;
            c.expect_punct(')')?;
            Some(a as usize)
        }
        w => return Err(c.error(format!("expected tensor or channel(axis), found '{w}'"))),
    };
    p |= match c.ident()?.as_str() {
        "linear" => Policy::LINEAR,
        "pow2" => Policy::LINEAR | Policy::POWER_OF_2,
        "float" => Policy::FLOATING,
        w => return Err(c.error(format!("expected linear, pow2 or float, found '{w}'"))),
    };
    let rounding = Rounding::from_name(&c.ident()?).map_err(|e| c.error(e.message))?;
    let observer = ObserverKind::from_name(&c.ident()?).map_err(|e| c.error(e.message))?;
    let mut t = Tqc {
        policy: Policy(p),
        axis,
        num_bits: bits,
        quant_min,
        quant_max,
        rounding,
        observer,
        scale: Vec::new(),
        offset: Vec::new(),
        range: None,
        state: State::Initial,
    };
    loop {
        let w = c.ident()?;
        match w.as_str() {
            "s" | "z" | "range" => {
                c.expect_punct('=')?;
                let is_list = *c.peek() == Tok::Punct('[');
                match w.as_str() {
                    "s" if is_list => t.scale = num_list(c, f32_num)?,
                    "s" => t.scale = vec![f32_num(c)?],
                    "z" => {
                        let z = if is_list {
                            num_list(c, int_num)?
                        } else {
                            vec![int_num(c)?]
                        };
                        t.offset = z.into_iter().map(|v| to_i32(c, v)).collect::<Result<_>>()?;
                    }
                    _ => {
                        let r = num_list(c, f32_num)?;
                        if r.len() != 2 {
                            return Err(c.error("range is [lo, hi]"));
                        }
                        t.range = Some((r[0], r[1]));
                    }
                }
            }
            other => {
                t.state = State::from_name(other)
                    .ok_or_else(|| c.error(format!("unknown TQC state or field '{other}'")))?;
                return Ok(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::Ir;

    const SRC: &str = "graph @t(%x: f32[1,2,4,4]) -> (f32[1,3,4,4]) {
  %w = const f32[3,2,1,1] dense<[1.0, -1.0, 0.5, 0.25, 2.0, -2.0]>
  %y = graph.conv(%x, %w) : f32[1,3,4,4]
  %r = graph.relu(%y) : f32[1,3,4,4]
  return %r
}
";

    #[test]
    fn fresh_units_print_and_parse_back() {
        let q = parse(SRC).unwrap();
        let text = q.print();
        assert!(
            text.contains("q1 = in(%y, 0) u8 asym tensor linear half_even minmax INITIAL"),
            "{text}"
        );
        assert!(
            text.contains("q2 = in(%y, 1) s8[-127, 127] sym channel(0) linear"),
            "{text}"
        );
        let again = parse(&text).unwrap();
        assert_eq!(again.print(), text);
        again.verify().unwrap();
    }

    #[test]
    fn params_and_links_round_trip() {
        let mut q = parse(SRC).unwrap();
        let (a, b) = (TqcId(3), TqcId(4));
        q.tqc_mut(b).set_range(-1.0, 2.5).unwrap();
        q.tqc_mut(b).state = State::Activated;
        q.overlap(b, a);
        q.tqc_mut(TqcId(2)).scale = vec![0.1, 0.2, 0.3];
        q.tqc_mut(TqcId(2)).offset = vec![0, 0, 0];
        let text = q.print();
        assert!(text.contains("OVERLAPPED -> q4"), "{text}");
        let again = parse(&text).unwrap();
        assert_eq!(again.print(), text);
        assert_eq!(again.root(a), b);
    }

    #[test]
    fn errors_point_into_the_quant_section() {
        let bad = format!("{SRC}quant platform \"kiln-x86\" {{\n  q0 = out(%x) u99 asym\n}}\n");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Parse);
        assert!(e.to_string().contains("8:"), "{e}");
        let e = parse(&format!("{SRC}quant platform \"nope\" {{}}\n")).unwrap_err();
        assert!(e.message.contains("unknown platform"), "{e}");
    }
}
