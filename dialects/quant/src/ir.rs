//! The quant dialect's unit: a graph plus one TQC per value and per op operand.
//!
//! Sites: every non-constant value has an *output* TQC (its producer's, or the graph
//! input's), and every present operand of every op has an *input* TQC bound to that op.
//! Constants get no output TQC: a weight is quantised at the operand that reads it, with
//! that op's scheme (the same constant can be a weight to one op and data to another).

use crate::platform::{self, Platform, Role};
use crate::tqc::{State, Tqc};
use crate::union_find::UnionFind;
use kiln_core::{Ir, Result, Tensor, bail};
use kiln_graph::ops::Const;
use kiln_graph::{Graph, NodeId, Op, Value};
use std::collections::{HashMap, HashSet};

/// Handle of a TQC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TqcId(pub u32);

impl TqcId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where a TQC sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Site {
    /// A value (graph input or op result), quantised where it is produced.
    Out(Value),
    /// Operand `k` of a node, quantised where it is read.
    In(NodeId, usize),
}

/// A quant-dialect unit.
#[derive(Debug, Clone)]
pub struct QuantGraph {
    pub graph: Graph,
    pub platform: &'static Platform,
    tqcs: Vec<Tqc>,
    sites: Vec<Site>,
    uf: UnionFind,
    outs: HashMap<Value, TqcId>,
    ins: HashMap<(NodeId, usize), TqcId>,
    /// Calibration samples (graph-input order); not part of the text form. Empty: the
    /// calibration pass generates seeded random ones (see [`crate::calib`]).
    pub calib: Vec<Vec<Tensor>>,
    /// The observer calibration uses for activations (overrides the templates').
    pub observer: Option<crate::ObserverKind>,
    /// The constants the flow replaced (baked or re-rounded weights), as they were given:
    /// the error analysis judges the quantised model against the float one, which must
    /// not already carry the weights' rounding. Not part of the text form.
    float_consts: HashMap<NodeId, Op>,
    /// How calibration, GPTQ, bias correction and the error analysis run the float model
    /// (`None`: the reference interpreter). Not part of the text form.
    pub runner: Option<crate::float_run::FloatRunner>,
    /// How the error analysis runs this unit (`None`: the simulator). Not part of the text
    /// form.
    pub int8_runner: Option<crate::float_run::Int8Runner>,
    /// Ops the user keeps in fp32 whatever the platform would do ([`QuantGraph::keep_fp32`]).
    fp32_ops: HashSet<NodeId>,
}

/// Whether `v` is the result of a `const` op.
pub fn is_const(g: &Graph, v: Value) -> bool {
    g.producer(v)
        .is_some_and(|n| matches!(g.node(n).op, Op::Const(_)))
}

/// The constant data of `v`, when it is a constant with data.
pub fn const_data(g: &Graph, v: Value) -> Option<&Tensor> {
    match &g.node(g.producer(v)?).op {
        Op::Const(c) => c.value.as_deref(),
        _ => None,
    }
}

fn is_float(g: &Graph, v: Value) -> bool {
    g.value(v).ty.as_ref().is_some_and(|t| t.dtype.is_float())
}

/// Gives every value a unique non-empty name, keeping the first holder of each name (the
/// graph printer's rule), so that TQC sites print and parse by name.
fn canonical_names(g: &mut Graph) -> Result<()> {
    let order = g.topo_order()?;
    let mut seq: Vec<Value> = g.inputs().to_vec();
    for &n in &order {
        seq.extend_from_slice(g.node(n).outputs());
    }
    let mut used = HashSet::new();
    let mut rename = Vec::new();
    for &v in &seq {
        let name = g.value(v).name.clone();
        if name.is_empty() || !used.insert(name) {
            rename.push(v);
        }
    }
    for v in rename {
        let mut k = 0;
        let name = loop {
            let cand = format!("v{}_{k}", v.index());
            if !used.contains(&cand) {
                break cand;
            }
            k += 1;
        };
        used.insert(name.clone());
        g.value_mut(v).name = name;
    }
    Ok(())
}

impl QuantGraph {
    /// Builds the unit with fresh TQCs from the platform's templates (states: INITIAL for
    /// activations and weights, PASSIVE_INIT for biases and clip bounds, SOI for shape
    /// operands). Shapes must be inferred.
    pub fn new(mut graph: Graph, platform: &'static Platform) -> Result<QuantGraph> {
        canonical_names(&mut graph)?;
        let mut q = QuantGraph {
            graph,
            platform,
            tqcs: Vec::new(),
            sites: Vec::new(),
            uf: UnionFind::default(),
            outs: HashMap::new(),
            ins: HashMap::new(),
            calib: Vec::new(),
            observer: None,
            float_consts: HashMap::new(),
            runner: None,
            int8_runner: None,
            fp32_ops: HashSet::new(),
        };
        for site in q.site_order()? {
            let tqc = q.fresh(site)?;
            q.push(site, tqc);
        }
        Ok(q)
    }

    /// How node `n` runs: the platform's dispatcher, unless the user keeps `n` in fp32.
    /// Every pass asks this, never the dispatcher directly.
    pub fn dispatch(&self, n: NodeId) -> platform::Dispatch {
        if self.fp32_ops.contains(&n) {
            platform::Dispatch::Fp32
        } else {
            platform::dispatch(&self.graph.node(n).op)
        }
    }

    /// The ops the user keeps in fp32, in node order (the order the text form lists them).
    pub fn fp32_ops(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.fp32_ops.iter().copied().collect();
        v.sort();
        v
    }

    /// Keeps the ops `name` names in fp32, as PPQ's dispatching table and onnxruntime's
    /// `nodes_to_exclude` do: a layer the error report shows as the worst, or one whose
    /// accuracy matters more than its speed, runs in float with its operands dequantised
    /// at the boundary. `name` is an op's result as the report lists it, or the name of
    /// the source model's node (every op fused from it). Call before `quant.refine`.
    /// Returns the ops named.
    pub fn keep_fp32(&mut self, name: &str) -> Result<Vec<NodeId>> {
        let g = &self.graph;
        let found: Vec<NodeId> = g
            .topo_order()?
            .into_iter()
            .filter(|&n| {
                let node = g.node(n);
                !matches!(node.op, Op::Const(_))
                    && (node.name == name
                        || node.outputs().iter().any(|&v| g.value(v).name == name))
            })
            .collect();
        if found.is_empty() {
            let constant = (0..g.num_values() as u32)
                .map(Value)
                .any(|v| g.value(v).name == name && is_const(g, v));
            if constant {
                bail!(Input, "'{name}' is a constant: name the op that reads it");
            }
            bail!(
                Input,
                "no op named '{name}': give an op's result as the error report lists it, or a node name of the model"
            );
        }
        self.fp32_ops.extend(found.iter().copied());
        Ok(found)
    }

    /// Keeps op `n` in fp32 (see [`QuantGraph::keep_fp32`]).
    pub fn keep_fp32_op(&mut self, n: NodeId) {
        self.fp32_ops.insert(n);
    }

    /// Replaces the data of constant `v` (which must be a constant), remembering the float
    /// original for [`QuantGraph::float_graph`].
    pub fn replace_const(&mut self, v: Value, t: Tensor) {
        let p = self.graph.producer(v).expect("a constant has a producer");
        let old = std::mem::replace(self.graph.op_mut(p), Op::Const(Const::new(t)));
        self.float_consts.entry(p).or_insert(old);
    }

    /// Replaces the data of constant `v` with an equivalent rewrite of the float model (one
    /// that computes the same function, like [`crate::equalize`]'s): unlike
    /// [`QuantGraph::replace_const`] it is not undone for the float reference.
    pub fn rewrite_const(&mut self, v: Value, t: Tensor) {
        let p = self.graph.producer(v).expect("a constant has a producer");
        *self.graph.op_mut(p) = Op::Const(Const::new(t));
    }

    /// The float model the quantisation is judged against: the graph with the constants
    /// the flow replaced restored, except those that `keep` says stay replaced.
    pub fn float_graph(&self, keep: impl Fn(NodeId) -> bool) -> Graph {
        let mut g = self.graph.clone();
        for (&p, op) in &self.float_consts {
            if !keep(p) {
                *g.op_mut(p) = op.clone();
            }
        }
        g
    }

    /// Every site in canonical order: graph inputs, then per node in topological order its
    /// present operands and then its results (constants' results excluded).
    pub fn site_order(&self) -> Result<Vec<Site>> {
        let g = &self.graph;
        let mut v: Vec<Site> = g.inputs().iter().map(|&x| Site::Out(x)).collect();
        for n in g.topo_order()? {
            let node = g.node(n);
            if matches!(node.op, Op::Const(_)) {
                continue;
            }
            for (k, x) in node.inputs().iter().enumerate() {
                if x.is_some() {
                    v.push(Site::In(n, k));
                }
            }
            v.extend(node.outputs().iter().map(|&o| Site::Out(o)));
        }
        Ok(v)
    }

    /// The role of a site.
    pub fn role(&self, site: Site) -> Role {
        let g = &self.graph;
        match site {
            Site::Out(v) => {
                if !is_float(g, v) {
                    if g.feeds_shape_operand(v) {
                        Role::Soi
                    } else {
                        Role::Fp32
                    }
                } else {
                    Role::Activation
                }
            }
            Site::In(n, k) => {
                let node = g.node(n);
                let x = node.input(k).expect("sites are present operands");
                let r = platform::role(&node.op, k, is_const(g, x));
                if !is_float(g, x) && r != Role::Fp32 {
                    return Role::Soi;
                }
                match r {
                    // MatMul's output channels: B's last axis, or the one before it when
                    // B is transposed.
                    Role::Weight {
                        axis: Some(usize::MAX),
                    } => {
                        let back = match &node.op {
                            kiln_graph::Op::MatMul(m) if m.trans_b => 2,
                            _ => 1,
                        };
                        Role::Weight {
                            axis: g
                                .value(x)
                                .ty
                                .as_ref()
                                .map(|t| t.rank().saturating_sub(back)),
                        }
                    }
                    r => r,
                }
            }
        }
    }

    /// A fresh TQC for a site.
    pub fn fresh(&self, site: Site) -> Result<Tqc> {
        let role = self.role(site);
        let axis = match role {
            Role::Weight { axis } => axis,
            Role::Bias => Some(0),
            _ => None,
        };
        let mut t = platform::template(self.platform, role).make(axis);
        t.state = platform::initial_state(role);
        Ok(t)
    }

    pub(crate) fn push(&mut self, site: Site, tqc: Tqc) -> TqcId {
        let id = TqcId(self.tqcs.len() as u32);
        self.tqcs.push(tqc);
        self.sites.push(site);
        self.uf.push();
        match site {
            Site::Out(v) => self.outs.insert(v, id),
            Site::In(n, k) => self.ins.insert((n, k), id),
        };
        id
    }

    pub fn len(&self) -> usize {
        self.tqcs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tqcs.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = TqcId> + use<> {
        (0..self.tqcs.len() as u32).map(TqcId)
    }

    pub fn tqc(&self, id: TqcId) -> &Tqc {
        &self.tqcs[id.index()]
    }

    pub fn tqc_mut(&mut self, id: TqcId) -> &mut Tqc {
        &mut self.tqcs[id.index()]
    }

    pub fn site(&self, id: TqcId) -> Site {
        self.sites[id.index()]
    }

    /// The output TQC of a value (none for constants).
    pub fn out_tqc(&self, v: Value) -> Option<TqcId> {
        self.outs.get(&v).copied()
    }

    /// The input TQC of operand `k` of `n` (none when the operand is absent).
    pub fn in_tqc(&self, n: NodeId, k: usize) -> Option<TqcId> {
        self.ins.get(&(n, k)).copied()
    }

    /// The value a site observes.
    pub fn site_value(&self, site: Site) -> Value {
        match site {
            Site::Out(v) => v,
            Site::In(n, k) => self.graph.node(n).input(k).expect("present operand"),
        }
    }

    /// The root of a TQC's group (the holder of its effective parameters).
    pub fn root(&self, id: TqcId) -> TqcId {
        TqcId(self.uf.root(id.index()) as u32)
    }

    /// The effective config and parameters of a TQC: its root's.
    pub fn effective(&self, id: TqcId) -> &Tqc {
        self.tqc(self.root(id))
    }

    /// Merges two groups. The losing root, if active (INITIAL/ACTIVATED), becomes SLAVE of
    /// the winner: PPQ's "one root is elected and the other root becomes its SLAVE". On
    /// equal ranks `a`'s group wins.
    pub fn merge(&mut self, a: TqcId, b: TqcId) -> bool {
        match self.uf.union(a.index(), b.index()) {
            Some((_, lose)) => {
                let t = &mut self.tqcs[lose];
                if matches!(t.state, State::Initial | State::Activated) {
                    t.state = State::Slave;
                }
                true
            }
            None => false,
        }
    }

    /// Makes `b` overlapped by `a`'s group: `b` stops quantising and joins the group.
    pub fn overlap(&mut self, a: TqcId, b: TqcId) -> bool {
        let changed = self.tqc(b).state != State::Overlapped;
        self.tqc_mut(b).state = State::Overlapped;
        self.merge(a, b) | changed
    }

    /// Members of every group with more than one TQC, keyed by root.
    pub fn groups(&self) -> HashMap<TqcId, Vec<TqcId>> {
        let mut m: HashMap<TqcId, Vec<TqcId>> = HashMap::new();
        for id in self.ids() {
            m.entry(self.root(id)).or_default().push(id);
        }
        m
    }

    /// Rebuilds the union-find with `parent[i] = roots[i]` (flattened trees, parser use).
    pub(crate) fn set_roots(&mut self, roots: &[TqcId]) {
        for (i, r) in roots.iter().enumerate() {
            if r.index() != i {
                self.uf.link(i, r.index());
            }
        }
    }

    /// Replaces the TQCs wholesale (parser use); sites must be in [`Self::site_order`].
    pub(crate) fn replace_tqcs(&mut self, tqcs: Vec<Tqc>) {
        self.tqcs = tqcs;
    }

    /// A short label for errors: the site in text form.
    pub fn describe(&self, id: TqcId) -> String {
        crate::text::site_text(self, self.site(id))
    }

    fn verify_tqcs(&self) -> Result<()> {
        let sites = self.site_order()?;
        if sites.len() != self.sites.len() || sites.iter().zip(&self.sites).any(|(a, b)| a != b) {
            bail!(
                Verify,
                "the TQC sites no longer match the graph (a graph pass ran on a quant unit?)"
            );
        }
        for id in self.ids() {
            let t = self.tqc(id);
            t.validate().map_err(|e| kiln_core::Error {
                message: format!("TQC q{} at {}: {}", id.0, self.describe(id), e.message),
                ..e
            })?;
            let root = self.root(id);
            if root != id && matches!(t.state, State::Initial | State::Activated) {
                bail!(
                    Verify,
                    "TQC q{} at {} is {} but dominated by q{}: it must be SLAVE or OVERLAPPED",
                    id.0,
                    self.describe(id),
                    t.state.name(),
                    root.0
                );
            }
            if let (Some(axis), Some(ty)) = (
                t.axis,
                self.graph.value(self.site_value(self.site(id))).ty.as_ref(),
            ) {
                if axis >= ty.rank() {
                    bail!(
                        Verify,
                        "TQC q{} at {}: channel axis {axis} out of rank {}",
                        id.0,
                        self.describe(id),
                        ty.rank()
                    );
                }
                if t.has_params() && t.scale.len() != ty.shape[axis] {
                    bail!(
                        Verify,
                        "TQC q{} at {}: {} scales for {} channels",
                        id.0,
                        self.describe(id),
                        t.scale.len(),
                        ty.shape[axis]
                    );
                }
            }
        }
        Ok(())
    }
}

impl Ir for QuantGraph {
    fn verify(&self) -> Result<()> {
        self.graph.verify()?;
        self.verify_tqcs()
    }
    fn print(&self) -> String {
        crate::text::print(self)
    }
}
