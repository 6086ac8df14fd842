//! The graph dialect's container: ops as nodes of a petgraph `StableDiGraph`, values in an
//! arena.
//!
//! Why both: petgraph gives us toposort, cycle detection and stable node handles across
//! removals; values need their own identity because one op output can feed many operands,
//! including the *same* consumer twice (`Mul(a, a)` is two parallel edges). Each edge is one
//! use: (value, operand index). The node's operand list is the source of truth for order; the
//! edges mirror it and every mutation goes through methods that keep both in step.

use crate::ops::Op;
use kiln_core::{Error, ErrorKind, Result, TensorType};
use petgraph::Direction;
use petgraph::stable_graph::{EdgeIndex, NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;

/// Handle of an op node.
pub type NodeId = NodeIndex<u32>;

/// Handle of an SSA value (a graph input or an op result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub u32);

impl Value {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where a value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueDef {
    /// The i-th graph input.
    Input(usize),
    /// Result `k` of a node.
    Result(NodeId, usize),
    /// Its producer was removed; any remaining use is a verifier error.
    Detached,
}

#[derive(Debug, Clone)]
pub struct ValueData {
    /// The name from the model (kept for errors, output files and readable IR).
    pub name: String,
    /// Unknown until shape inference has run.
    pub ty: Option<TensorType>,
    pub def: ValueDef,
}

/// An op instance.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's name in the source model (may be empty).
    pub name: String,
    pub op: Op,
    /// Operands in order; `None` is an omitted optional operand.
    inputs: Vec<Option<Value>>,
    outputs: Vec<Value>,
}

impl Node {
    pub fn inputs(&self) -> &[Option<Value>] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[Value] {
        &self.outputs
    }

    /// Operand `i`, or `None` when absent or omitted.
    pub fn input(&self, i: usize) -> Option<Value> {
        self.inputs.get(i).copied().flatten()
    }

    /// Wraps an error with this node's name and op, for messages users can act on.
    pub fn locate(&self, e: Error) -> Error {
        e.at_node(&self.name, self.op.name())
    }
}

/// One use of a value by a node operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Use {
    pub value: Value,
    pub operand: usize,
}

/// A graph-dialect function: inputs, ops, outputs.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub name: String,
    g: StableDiGraph<Node, Use>,
    values: Vec<ValueData>,
    inputs: Vec<Value>,
    outputs: Vec<Value>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Self {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    // ----- values -----

    pub fn value(&self, v: Value) -> &ValueData {
        &self.values[v.index()]
    }

    pub fn value_mut(&mut self, v: Value) -> &mut ValueData {
        &mut self.values[v.index()]
    }

    /// The value's type, or a verification error when inference has not run.
    pub fn ty(&self, v: Value) -> Result<&TensorType> {
        let d = self.value(v);
        d.ty.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Verify,
                format!("value '%{}' has no type yet", d.name),
            )
        })
    }

    pub fn num_values(&self) -> usize {
        self.values.len()
    }

    fn new_value(&mut self, name: String, ty: Option<TensorType>, def: ValueDef) -> Value {
        let v = Value(self.values.len() as u32);
        self.values.push(ValueData { name, ty, def });
        v
    }

    pub fn inputs(&self) -> &[Value] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[Value] {
        &self.outputs
    }

    pub fn add_input(&mut self, name: impl Into<String>, ty: Option<TensorType>) -> Value {
        let v = self.new_value(name.into(), ty, ValueDef::Input(self.inputs.len()));
        self.inputs.push(v);
        v
    }

    pub fn set_outputs(&mut self, outputs: Vec<Value>) {
        self.outputs = outputs;
    }

    /// Turns graph input `v` into a constant with the given data: its uses read a new
    /// `const` op (which takes the input's name) and the input is removed from the
    /// signature. This is how values known at compile time — a shape fed as an input —
    /// become static.
    pub fn freeze_input(&mut self, v: Value, data: kiln_core::Tensor) -> Result<Value> {
        let ValueDef::Input(i) = self.value(v).def else {
            return Err(Error::new(
                ErrorKind::Input,
                format!("'{}' is not a graph input", self.value(v).name),
            ));
        };
        let name = self.value(v).name.clone();
        let ty = data.ty();
        let op = Op::Const(crate::ops::Const::new(data));
        let (_, outs) = self.add_node(name, op, vec![], vec![self.value(v).name.clone()]);
        self.value_mut(outs[0]).ty = Some(ty);
        self.replace_all_uses(v, outs[0]);
        self.inputs.remove(i);
        self.value_mut(v).def = ValueDef::Detached;
        for (k, &w) in self.inputs.iter().enumerate() {
            self.values[w.index()].def = ValueDef::Input(k);
        }
        Ok(outs[0])
    }

    /// Whether any op reads `v` as one of its shape operands ([`Op::shape_operands`]).
    pub fn feeds_shape_operand(&self, v: Value) -> bool {
        self.uses(v)
            .into_iter()
            .any(|(n, k)| self.g[n].op.shape_operands().contains(&k))
    }

    /// The node producing `v`, if it is an op result.
    pub fn producer(&self, v: Value) -> Option<NodeId> {
        match self.value(v).def {
            ValueDef::Result(n, _) if self.g.contains_node(n) => Some(n),
            _ => None,
        }
    }

    /// Every (node, operand) reading `v`, in no particular order.
    pub fn uses(&self, v: Value) -> Vec<(NodeId, usize)> {
        match self.value(v).def {
            ValueDef::Result(n, _) if self.g.contains_node(n) => self
                .g
                .edges_directed(n, Direction::Outgoing)
                .filter(|e| e.weight().value == v)
                .map(|e| (e.target(), e.weight().operand))
                .collect(),
            // Graph inputs have no producer node, so scan the (few) operand lists.
            _ => self
                .g
                .node_indices()
                .flat_map(|n| {
                    self.g[n]
                        .inputs
                        .iter()
                        .enumerate()
                        .filter(move |(_, i)| **i == Some(v))
                        .map(move |(k, _)| (n, k))
                })
                .collect(),
        }
    }

    /// Number of readers of `v`, counting graph outputs (a value returned is used).
    pub fn use_count(&self, v: Value) -> usize {
        self.uses(v).len() + self.outputs.iter().filter(|o| **o == v).count()
    }

    // ----- nodes -----

    pub fn node(&self, n: NodeId) -> &Node {
        &self.g[n]
    }

    /// Mutable access to a node's name and op; operands change only through
    /// [`Graph::set_input`] so the edges stay in step.
    pub fn op_mut(&mut self, n: NodeId) -> &mut Op {
        &mut self.g[n].op
    }

    pub fn contains(&self, n: NodeId) -> bool {
        self.g.contains_node(n)
    }

    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// Node handles in insertion order (not necessarily topological).
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.g.node_indices().collect()
    }

    /// Adds an op with fresh result values named `out_names`.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<Option<Value>>,
        out_names: Vec<String>,
    ) -> (NodeId, Vec<Value>) {
        let n = self.g.add_node(Node {
            name: name.into(),
            op,
            inputs: Vec::new(),
            outputs: Vec::new(),
        });
        let outs: Vec<Value> = out_names
            .into_iter()
            .enumerate()
            .map(|(k, name)| self.new_value(name, None, ValueDef::Result(n, k)))
            .collect();
        self.g[n].outputs = outs.clone();
        self.g[n].inputs = vec![None; inputs.len()];
        for (k, v) in inputs.into_iter().enumerate() {
            self.set_input(n, k, v);
        }
        (n, outs)
    }

    /// Rebinds operand `k` of `n` (growing the operand list if needed).
    pub fn set_input(&mut self, n: NodeId, k: usize, v: Option<Value>) {
        if let Some(old) = self.g[n].inputs.get(k).copied().flatten()
            && let Some(e) = self.find_edge(old, n, k)
        {
            self.g.remove_edge(e);
        }
        if self.g[n].inputs.len() <= k {
            self.g[n].inputs.resize(k + 1, None);
        }
        self.g[n].inputs[k] = v;
        if let Some(v) = v
            && let ValueDef::Result(p, _) = self.value(v).def
            && self.g.contains_node(p)
        {
            self.g.add_edge(
                p,
                n,
                Use {
                    value: v,
                    operand: k,
                },
            );
        }
        // Optional operands at the end carry no information; keep the list canonical.
        while self.g[n].inputs.last() == Some(&None) {
            self.g[n].inputs.pop();
        }
    }

    fn find_edge(&self, v: Value, n: NodeId, k: usize) -> Option<EdgeIndex<u32>> {
        self.g
            .edges_directed(n, Direction::Incoming)
            .find(|e| e.weight().value == v && e.weight().operand == k)
            .map(|e| e.id())
    }

    /// Redirects every use of `old` (operands and graph outputs) to `new`.
    pub fn replace_all_uses(&mut self, old: Value, new: Value) {
        for (n, k) in self.uses(old) {
            self.set_input(n, k, Some(new));
        }
        for o in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Removes a node; its results become detached (the verifier flags leftover uses).
    pub fn remove_node(&mut self, n: NodeId) -> Option<Node> {
        let node = self.g.remove_node(n)?;
        for &v in &node.outputs {
            self.values[v.index()].def = ValueDef::Detached;
        }
        // Uses of graph inputs are recorded only in operand lists, which went with the node.
        Some(node)
    }

    /// Ops in a topological order (stable: ties keep insertion order), or a cycle error
    /// naming one node on the cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeId>> {
        // Kahn's algorithm with the smallest ready index first, so printing is deterministic.
        let mut indeg: std::collections::HashMap<NodeId, usize> = self
            .g
            .node_indices()
            .map(|n| (n, self.g.edges_directed(n, Direction::Incoming).count()))
            .collect();
        let mut ready: std::collections::BTreeSet<NodeId> = indeg
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target()).expect("edge target exists");
                *d -= 1;
                if *d == 0 {
                    ready.insert(e.target());
                }
            }
        }
        if order.len() != self.g.node_count() {
            let stuck = self
                .g
                .node_indices()
                .find(|n| indeg[n] > 0)
                .expect("some node is left");
            let node = &self.g[stuck];
            return Err(node.locate(Error::new(
                ErrorKind::Cycle,
                "the graph has a cycle through this node",
            )));
        }
        Ok(order)
    }

    /// The underlying petgraph, read-only, for analyses (dominators, SCCs, ...).
    pub fn petgraph(&self) -> &StableDiGraph<Node, Use> {
        &self.g
    }
}
