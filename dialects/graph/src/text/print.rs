//! The printer. It never fails: a graph a pass left inconsistent (a cycle, a use of a
//! detached value) still prints, so that it can be looked at; the parser or the verifier
//! then says what is wrong with it.

use super::{f32_text, f64_text, type_text};
use crate::graph::{Graph, NodeId, Value};
use crate::ops::{Const, ConstSource, Op};
use kiln_core::lexer::{quote_name, quote_string};
use kiln_core::{Attr, Tensor, TensorType, dispatch};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// Constants that the printer chooses to write inline (`ConstSource::Auto`) are written
/// densely up to this many elements, and as a resource of the weights file above it.
const MAX_AUTO_DENSE: usize = 16;

/// The graph as text. Large computed constants are written as `resource<"name">`; use
/// [`print_with_weights`] to also get their data for the weights side file.
pub fn print(g: &Graph) -> String {
    Printer::new(g).run().0
}

/// The graph as text, and the tensors its `resource<"name">` constants refer to (each name
/// once), ready for [`super::write_weights`].
pub fn print_with_weights(g: &Graph) -> (String, Vec<(String, Tensor)>) {
    Printer::new(g).run()
}

struct Printer<'a> {
    g: &'a Graph,
    order: Vec<NodeId>,
    names: HashMap<Value, String>,
    /// Resource names taken, explicit ones first, so a generated name never aliases one.
    resources: HashSet<String>,
    weights: Vec<(String, Tensor)>,
    collected: HashSet<String>,
    out: String,
}

impl<'a> Printer<'a> {
    fn new(g: &'a Graph) -> Self {
        // A cycle cannot be printed in a define-before-use order; insertion order still shows
        // the graph, and parsing it back reports the use before its definition.
        let order = g.topo_order().unwrap_or_else(|_| g.node_ids());
        let names = assign_names(g, &order);
        let resources = order
            .iter()
            .filter_map(|&n| match &g.node(n).op {
                Op::Const(Const {
                    source: ConstSource::Resource(r),
                    ..
                }) => Some(r.clone()),
                _ => None,
            })
            .collect();
        Printer {
            g,
            order,
            names,
            resources,
            weights: Vec::new(),
            collected: HashSet::new(),
            out: String::new(),
        }
    }

    fn run(mut self) -> (String, Vec<(String, Tensor)>) {
        let g = self.g;
        let ins: Vec<String> = g
            .inputs()
            .iter()
            .map(|&v| format!("{}: {}", self.value(v), type_text(g.value(v).ty.as_ref())))
            .collect();
        let outs: Vec<String> = g.outputs().iter().map(|&v| type_text(self.ty(v))).collect();
        let _ = writeln!(
            self.out,
            "graph @{}({}) -> ({}) {{",
            quote_name(&g.name),
            ins.join(", "),
            outs.join(", ")
        );
        for n in self.order.clone() {
            self.node(n);
        }
        let rets: Vec<String> = g.outputs().iter().map(|&v| self.value(v)).collect();
        if rets.is_empty() {
            self.out.push_str("  return\n}\n");
        } else {
            let _ = writeln!(self.out, "  return {}\n}}", rets.join(", "));
        }
        (self.out, self.weights)
    }

    /// A value's type as the parser will see it: a constant's result has its declared type
    /// even before inference, because `const TYPE ...` states it.
    fn ty(&self, v: Value) -> Option<&'a TensorType> {
        let g = self.g;
        g.value(v)
            .ty
            .as_ref()
            .or_else(|| match &g.node(g.producer(v)?).op {
                Op::Const(c) => Some(&c.ty),
                _ => None,
            })
    }

    fn value(&self, v: Value) -> String {
        format!("%{}", quote_name(&self.names[&v]))
    }

    fn node(&mut self, n: NodeId) {
        let g = self.g;
        let node = g.node(n);
        let results: Vec<String> = node.outputs().iter().map(|&v| self.value(v)).collect();
        self.out.push_str("  ");
        if !results.is_empty() {
            let _ = write!(self.out, "{} = ", results.join(", "));
        }
        match &node.op {
            Op::Const(c) if node.outputs().len() == 1 => {
                let body = self.const_body(c, node.outputs()[0]);
                let _ = write!(self.out, "const {} {body}", c.ty);
            }
            op => {
                let operands: Vec<String> = node
                    .inputs()
                    .iter()
                    .map(|v| match v {
                        Some(v) => self.value(*v),
                        None => "_".to_string(),
                    })
                    .collect();
                let _ = write!(self.out, "graph.{}({})", op.name(), operands.join(", "));
                let attrs = op.attrs();
                if !attrs.is_empty() {
                    let items: Vec<String> = attrs
                        .0
                        .iter()
                        .map(|(k, a)| format!("{}={}", attr_key(k), attr_text(a)))
                        .collect();
                    let _ = write!(self.out, " {{{}}}", items.join(", "));
                }
                if !results.is_empty() {
                    let tys: Vec<String> = node
                        .outputs()
                        .iter()
                        .map(|&v| type_text(g.value(v).ty.as_ref()))
                        .collect();
                    let _ = write!(self.out, " : {}", tys.join(", "));
                }
            }
        }
        if !node.name.is_empty() {
            let _ = write!(self.out, " loc({})", quote_string(&node.name));
        }
        self.out.push('\n');
    }

    /// The written form of a constant: its recorded source when that still describes the
    /// data, otherwise the shortest honest form.
    fn const_body(&mut self, c: &Const, result: Value) -> String {
        if let ConstSource::Random { seed, min, max } = &c.source {
            // Seeds past i64::MAX do not lex as integers; they are written as their two's
            // complement and read back with the same cast.
            let seed = *seed as i64;
            return format!(
                "random(seed={seed}, min={}, max={})",
                f32_text(*min),
                f32_text(*max)
            );
        }
        if let ConstSource::Resource(r) = &c.source {
            if let Some(t) = c.value.as_deref() {
                self.collect(r, t);
            }
            return format!("resource<{}>", quote_string(r));
        }
        let Some(t) = c.value.as_deref() else {
            let name = self.fresh_resource(result);
            return format!("resource<{}>", quote_string(&name));
        };
        let inline = inline_ok(t);
        match c.source {
            ConstSource::Dense if inline => return format!("dense<{}>", dense_text(t)),
            ConstSource::Splat if inline && t.is_splat() => {
                return format!("splat({})", first_text(t));
            }
            _ => {}
        }
        if inline && t.len() > 1 && t.is_splat() {
            format!("splat({})", first_text(t))
        } else if inline && t.len() <= MAX_AUTO_DENSE {
            format!("dense<{}>", dense_text(t))
        } else {
            let name = self.fresh_resource(result);
            self.collect(&name, t);
            format!("resource<{}>", quote_string(&name))
        }
    }

    /// A resource name for a constant that has none yet: its value's printed name, made
    /// distinct from every other resource of the graph.
    fn fresh_resource(&mut self, result: Value) -> String {
        let base = self.names[&result].clone();
        let name = unique(&base, &self.resources);
        self.resources.insert(name.clone());
        name
    }

    fn collect(&mut self, name: &str, t: &Tensor) {
        if self.collected.insert(name.to_string()) {
            self.weights.push((name.to_string(), t.clone()));
        }
    }
}

/// Printed names for every value the text mentions: the model's name when it is non-empty
/// and not taken by an earlier value, else `v<index>` (suffixed until unique). Names kept
/// are reserved first so that a generated name never steals a real one printed later.
fn assign_names(g: &Graph, order: &[NodeId]) -> HashMap<Value, String> {
    let mut seq = Vec::new();
    let mut seen = HashSet::new();
    let mut visit = |v: Value, seq: &mut Vec<Value>| {
        if seen.insert(v) {
            seq.push(v);
        }
    };
    for &v in g.inputs() {
        visit(v, &mut seq);
    }
    for &n in order {
        for &v in g.node(n).outputs() {
            visit(v, &mut seq);
        }
    }
    // Values that are used but defined nowhere printed (detached results) still need names.
    for &n in order {
        for v in g.node(n).inputs().iter().flatten() {
            visit(*v, &mut seq);
        }
    }
    for &v in g.outputs() {
        visit(v, &mut seq);
    }
    let mut used = HashSet::new();
    let mut names = HashMap::new();
    for &v in &seq {
        let name = &g.value(v).name;
        if !name.is_empty() && used.insert(name.clone()) {
            names.insert(v, name.clone());
        }
    }
    for &v in &seq {
        names.entry(v).or_insert_with(|| {
            let name = unique(&format!("v{}", v.index()), &used);
            used.insert(name.clone());
            name
        });
    }
    names
}

fn unique(base: &str, used: &HashSet<String>) -> String {
    if !used.contains(base) {
        return base.to_string();
    }
    (1..)
        .map(|k| format!("{base}_{k}"))
        .find(|c| !used.contains(c))
        .expect("some suffix is free")
}

/// Attribute names are identifiers in practice; anything else is quoted so it still lexes.
fn attr_key(k: &str) -> String {
    let word =
        kiln_core::lexer::is_bare_name(k) && k.starts_with(|c: char| c.is_alphabetic() || c == '_');
    if word && !matches!(k, "_" | "inf" | "nan") {
        k.to_string()
    } else {
        quote_string(k)
    }
}

pub(super) fn attr_text(a: &Attr) -> String {
    match a {
        Attr::Int(v) => v.to_string(),
        Attr::Float(v) => f32_text(*v),
        Attr::Str(s) => quote_string(s),
        Attr::Ints(v) => format!(
            "[{}]",
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        Attr::Floats(v) => format!(
            "[{}]",
            v.iter().map(|x| f32_text(*x)).collect::<Vec<_>>().join(",")
        ),
        Attr::Strs(v) => format!(
            "[{}]",
            v.iter()
                .map(|x| quote_string(x))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Attr::Tensor(t) if t.len() > 1 && t.is_splat() => {
            format!("{} splat({})", t.ty(), first_text(t))
        }
        Attr::Tensor(t) => format!("{} dense<{}>", t.ty(), dense_text(t)),
    }
}

/// Elements as the parser reads them back exactly.
trait ElemText {
    fn text(self) -> String;
}

macro_rules! int_text {
    ($($t:ty),*) => {$(
        impl ElemText for $t {
            fn text(self) -> String {
                self.to_string()
            }
        }
    )*};
}
int_text!(i8, u8, i16, u16, i32, u32, i64, u64);

impl ElemText for f32 {
    fn text(self) -> String {
        f32_text(self)
    }
}

impl ElemText for f64 {
    fn text(self) -> String {
        f64_text(self)
    }
}

impl ElemText for bool {
    fn text(self) -> String {
        if self { "true".into() } else { "false".into() }
    }
}

fn dense_text(t: &Tensor) -> String {
    let items: Vec<String> = dispatch!(t, a => a.iter().map(|v| v.text()).collect());
    format!("[{}]", items.join(", "))
}

fn first_text(t: &Tensor) -> String {
    dispatch!(t, a => a.iter().next().map(|v| v.text()).unwrap_or_default())
}

/// Integer literals lex as i64, so u64 values above i64::MAX cannot be written inline; such
/// constants go to the weights file instead.
fn inline_ok(t: &Tensor) -> bool {
    match t {
        Tensor::U64(a) => a.iter().all(|&v| i64::try_from(v).is_ok()),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::{Attrs, DType, ErrorKind};

    /// A graph a pass left broken still prints, and the parser names the problem.
    #[test]
    fn broken_graphs_still_print() {
        let mut g = Graph::new("broken");
        let x = g.add_input("x", Some(TensorType::new(DType::F32, [2])));
        let relu = || Op::from_attrs("relu", Attrs::new()).unwrap();
        let (n, a) = g.add_node("", relu(), vec![Some(x)], vec!["a".into()]);
        let (_, b) = g.add_node("", relu(), vec![Some(a[0])], vec![String::new()]);
        g.set_outputs(vec![b[0]]);
        g.remove_node(n);
        let text = print(&g);
        assert!(text.contains("%v2 = graph.relu(%a) : ?"), "{text}");
        assert_eq!(
            super::super::parse(&text).unwrap_err().kind,
            ErrorKind::UndefinedValue
        );
    }

    #[test]
    fn resources_without_data_keep_their_name() {
        let mut g = Graph::new("r");
        let c = Const {
            ty: TensorType::new(DType::I8, [3]),
            value: None,
            source: ConstSource::Dense,
        };
        let (_, v) = g.add_node("", Op::Const(c), vec![], vec!["k".into()]);
        g.set_outputs(vec![v[0]]);
        let (text, weights) = print_with_weights(&g);
        assert!(text.contains("%k = const i8[3] resource<\"k\">"), "{text}");
        assert!(weights.is_empty());
    }
}
