//! QDQ ONNX export: a quantised unit ([`QuantGraph`]) → an ONNX model whose
//! QuantizeLinear / DequantizeLinear pairs carry the unit's parameters, so onnxruntime (or
//! any QDQ-aware runtime) runs the network kiln quantised.
//!
//! Files: `builder.rs` the ONNX graph under construction (names, nodes, initializers,
//! attributes); `qdq.rs` where the Q/DQ pairs go and how quantised constants are written;
//! `ops.rs` graph op → ONNX nodes (`compute.rs` splits the fused Conv/Gemm/MatMul
//! epilogues back into standard nodes); this file assembles the model and writes it.
//!
//! **Layout.** ONNX's spatial ops are channels first, and the graph dialect marks the
//! channels-last ops that `graph.layout` produces with `layout="nhwc"`. Rather than wrap
//! every such op in Transposes for onnxruntime to cancel again, the export quantises the
//! graph that the `graph-opt` pipeline produces *without* `graph.layout`
//! ([`EXPORT_PIPELINE`], see [`prepare`]); a channels-last op reaching the exporter is an
//! error that names it. The layout pass only adds passive Transposes and moves channel
//! axes, so it changes neither what is quantised nor any parameter: the exported model and
//! `kiln run --precision int8` (which runs the laid-out graph) quantise identically
//! (`tests/qdq.rs` checks that the simulator's outputs are equal).
//!
//! **Opset.** 20: per-axis DequantizeLinear (13), LayerNormalization (17) and Gelu (20)
//! exist, and onnxruntime's QDQ fusions know every op the exporter writes.

mod builder;
mod compute;
mod ops;
mod qdq;

use super::dtype_to_onnx;
use super::proto::tensor_shape_proto::{Dimension, dimension};
use super::proto::type_proto::{self, Value as TypeValue};
use super::proto::{
    GraphProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use builder::Builder;
use kiln_core::{Result, err};
use kiln_graph::{Graph, NodeId, Op, Value};
use kiln_quant::QuantGraph;
use prost::Message;
use qdq::Grid;
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// The default-domain opset of exported models.
pub const OPSET: i64 = 20;
/// The IR version that goes with opset 20 (onnx 1.15).
pub const IR_VERSION: i64 = 9;

/// The name of the pipeline exports are quantised after (see the module docs).
pub const EXPORT_PIPELINE: &str = "graph-opt-nchw";

/// `graph-opt` without `graph.layout`, as a pass list.
fn export_pass_list() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| {
        kiln_graph::passes::GRAPH_OPT
            .split(',')
            .filter(|p| p.trim() != "graph.layout")
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// The graph registry plus [`EXPORT_PIPELINE`], a fixed point like `graph-opt`.
pub fn registry() -> kiln_core::PassRegistry<Graph> {
    let mut r = kiln_graph::passes::registry();
    r.register_fixed_point(
        EXPORT_PIPELINE,
        "graph-opt without graph.layout: the channels-first graph QDQ export quantises",
        export_pass_list(),
    );
    r
}

/// Runs [`EXPORT_PIPELINE`] over `g`.
pub fn prepare(g: &mut Graph) -> Result<()> {
    let mut pm = kiln_core::PassManager::new(registry().parse(EXPORT_PIPELINE)?);
    pm.options.verify_each = true;
    pm.run(g)?;
    Ok(())
}

/// Builds the QDQ model of a quantised unit.
pub fn qdq_model(q: &QuantGraph) -> Result<ModelProto> {
    let g = &q.graph;
    let mut b = Builder::default();
    for &v in g.inputs() {
        b.reserve(&g.value(v).name);
    }
    for n in g.node_ids() {
        for &v in g.node(n).outputs() {
            b.reserve(&g.value(v).name);
        }
    }
    let mut cur = Exporter {
        q,
        names: HashMap::new(),
        consts: HashMap::new(),
        edges: HashMap::new(),
        read_grids: HashMap::new(),
        on_grid: HashMap::new(),
    };
    for &v in g.inputs() {
        cur.place_output(&mut b, v, g.value(v).name.clone())?;
    }
    for n in g.topo_order()? {
        let node = g.node(n);
        if matches!(node.op, Op::Const(_)) {
            continue;
        }
        cur.node(&mut b, n).map_err(|e| node.locate(e))?;
    }
    let graph = GraphProto {
        node: std::mem::take(&mut b.nodes),
        name: Some(if g.name.is_empty() {
            "kiln".to_string()
        } else {
            g.name.clone()
        }),
        initializer: std::mem::take(&mut b.initializers),
        input: g
            .inputs()
            .iter()
            .map(|&v| value_info(g, v))
            .collect::<Result<_>>()?,
        output: g
            .outputs()
            .iter()
            .map(|&v| value_info(g, v))
            .collect::<Result<_>>()?,
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("kiln".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!(
            "QDQ model quantised by kiln (platform {})",
            q.platform.name
        )),
        graph: Some(graph),
        ..Default::default()
    })
}

/// Writes a model to `path` through a temporary file in the same directory, renamed into
/// place, so a failed write never leaves half a model behind.
pub fn write_model(path: &Path, m: &ModelProto) -> Result<()> {
    let bytes = m.encode_to_vec();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file = path
        .file_name()
        .ok_or_else(|| err!(Io, "'{}' is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file.to_string_lossy(),
        std::process::id()
    ));
    let io = |e: std::io::Error, p: &Path| err!(Io, "cannot write '{}': {e}", p.display());
    std::fs::write(&tmp, &bytes).map_err(|e| io(e, &tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e, path)
    })
}

/// Exports a quantised unit as a QDQ model file.
pub fn export_qdq(q: &QuantGraph, path: &Path) -> Result<()> {
    write_model(path, &qdq_model(q)?)
}

fn value_info(g: &Graph, v: Value) -> Result<ValueInfoProto> {
    let data = g.value(v);
    let ty = data
        .ty
        .as_ref()
        .ok_or_else(|| err!(InvalidModel, "value '{}' has no type", data.name))?;
    Ok(ValueInfoProto {
        name: Some(data.name.clone()),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(type_proto::Tensor {
                elem_type: Some(dtype_to_onnx(ty.dtype)),
                shape: Some(TensorShapeProto {
                    dim: ty
                        .shape
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d as i64)),
                            denotation: None,
                        })
                        .collect(),
                }),
            })),
            denotation: None,
        }),
        ..Default::default()
    })
}

/// The walk over the graph: which ONNX name holds each value, and which grid it is on.
struct Exporter<'q> {
    q: &'q QuantGraph,
    /// The name readers of a value read (its dequantised name when it has a pair at the
    /// producer).
    names: HashMap<Value, String>,
    /// Float initializers already written.
    consts: HashMap<Value, String>,
    /// Edge pairs already written, per value: the grid and the dequantised name.
    edges: HashMap<Value, Vec<(Grid, String)>>,
    /// The grid each data operand was read on.
    read_grids: HashMap<(NodeId, usize), Grid>,
    /// The grid a value is on after its producer-side pair.
    on_grid: HashMap<Value, Grid>,
}

impl Exporter<'_> {
    /// Decides and emits the producer-side pair of `v`, whose producer wrote `written`.
    fn place_output(&mut self, b: &mut Builder, v: Value, written: String) -> Result<()> {
        let read_grids = &self.read_grids;
        let grid = qdq::output_grid(self.q, v, |n, k| read_grids.get(&(n, k)).cloned());
        let name = match grid {
            Some(grid) => {
                let orig = self.q.graph.value(v).name.clone();
                // A graph output keeps its own name on the dequantised tensor.
                let out_name = (written != orig).then_some(orig);
                let dq = qdq::pair(b, &written, &grid, out_name)?;
                self.on_grid.insert(v, grid);
                dq
            }
            None => written,
        };
        self.names.insert(v, name);
        Ok(())
    }

    /// The name operand `k` of `n` reads, emitting constants and edge pairs as needed.
    fn operand(&mut self, b: &mut Builder, n: NodeId, k: usize, v: Value) -> Result<String> {
        let q = self.q;
        let g = &q.graph;
        let tqc = q.in_tqc(n, k);
        if qdq::is_const(g, v) {
            let data = kiln_quant::ir::const_data(g, v)
                .ok_or_else(|| err!(InvalidModel, "constant '{}' has no data", g.value(v).name))?;
            if let Some(grid) = qdq::baked(q, n, k)
                && data.dtype() == kiln_core::DType::F32
            {
                self.read_grids.insert((n, k), grid.clone());
                return qdq::baked_constant(b, &g.value(v).name, data, &grid);
            }
            if let std::collections::hash_map::Entry::Vacant(e) = self.consts.entry(v) {
                let name = g.value(v).name.clone();
                b.initializer_named(&name, data);
                e.insert(name);
            }
        }
        let base = match self.consts.get(&v) {
            Some(c) => c.clone(),
            None => self.names.get(&v).cloned().ok_or_else(|| {
                err!(
                    UndefinedValue,
                    "operand '{}' was not exported before its reader",
                    g.value(v).name
                )
            })?,
        };
        let Some(grid) = qdq::quantising(q, tqc) else {
            if let Some(gr) = self.on_grid.get(&v) {
                self.read_grids.insert((n, k), gr.clone());
            }
            return Ok(base);
        };
        self.read_grids.insert((n, k), grid.clone());
        if self.on_grid.get(&v) == Some(&grid) {
            return Ok(base);
        }
        let pairs = self.edges.entry(v).or_default();
        if let Some((_, name)) = pairs.iter().find(|(gr, _)| *gr == grid) {
            return Ok(name.clone());
        }
        let name = qdq::pair(b, &base, &grid, None)?;
        pairs.push((grid, name.clone()));
        Ok(name)
    }

    fn node(&mut self, b: &mut Builder, n: NodeId) -> Result<()> {
        let g = &self.q.graph;
        let node = g.node(n);
        let mut ins = Vec::with_capacity(node.inputs().len());
        let mut ranks = Vec::with_capacity(node.inputs().len());
        for (k, v) in node.inputs().iter().enumerate() {
            match v {
                Some(v) => {
                    ins.push(Some(self.operand(b, n, k, *v)?));
                    ranks.push(g.value(*v).ty.as_ref().map(|t| t.rank()));
                }
                None => {
                    ins.push(None);
                    ranks.push(None);
                }
            }
        }
        // Results that get a pair at the producer and are graph outputs: the producer
        // writes a fresh name, the pair's DequantizeLinear the output's own.
        let mut written = Vec::with_capacity(node.outputs().len());
        for &v in node.outputs() {
            let name = g.value(v).name.clone();
            let read_grids = &self.read_grids;
            let paired =
                qdq::output_grid(self.q, v, |m, k| read_grids.get(&(m, k)).cloned()).is_some();
            written.push(if paired && g.outputs().contains(&v) {
                b.fresh(&format!("{name}_float"))
            } else {
                name
            });
        }
        ops::export(b, &node.op, &ins, &ranks, &written)?;
        for (&v, w) in node.outputs().iter().zip(written) {
            self.place_output(b, v, w)?;
        }
        Ok(())
    }
}
