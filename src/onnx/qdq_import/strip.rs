//! Stripping a QDQ model down to its float graph, remembering every pair's parameters.
//!
//! - `DequantizeLinear(integer constant)` (a weight, a bias, any quantised constant)
//!   becomes a float initializer holding `(q − zp)·scale` under the DequantizeLinear's
//!   output name: exactly the floats the QDQ model computes, so the float graph is the
//!   QDQ model's own arithmetic. Its grid is kept in [`Qdq::consts`].
//! - `DequantizeLinear(QuantizeLinear(x))` disappears: readers of its output read `x`
//!   again. The grid is kept per value in [`Qdq::values`] when every reader of `x` reads it
//!   through such a pair with the same grid (the usual onnxruntime layout: one Q per
//!   tensor), and per reading operand in [`Qdq::edges`] otherwise.
//! - A pair whose DequantizeLinear output is a graph output gives `x`'s producer that output
//!   name instead, so the model keeps its interface and the output stays quantised.
//!
//! Anything else with an integer tensor in it (a QuantizeLinear read by a non-DQ node, a
//! DequantizeLinear of a graph input, block quantisation, 16-bit or 4-bit types) is an
//! error naming the node: kiln would otherwise run a different model.

use crate::onnx::proto::{GraphProto, ModelProto, NodeProto, TensorProto};
use crate::onnx::tensor_from_proto;
use crate::onnx::tensor_to_proto;
use kiln_core::{DType, Error, Result, Tensor, bail, ensure, err};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A QuantizeLinear/DequantizeLinear grid as the model states it.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub scale: Vec<f32>,
    pub zero: Vec<i32>,
    /// The integer type's range.
    pub qmin: i32,
    pub qmax: i32,
    /// The channel axis (non-negative) of per-axis parameters.
    pub axis: Option<usize>,
}

/// Where a reading operand sits in the stripped model: the reader node's key (its name,
/// or its first output when unnamed) and the operand index.
pub type EdgeKey = (String, usize);

/// What stripping found.
#[derive(Debug, Default, Clone)]
pub struct Qdq {
    /// Activation grids of values every reader reads quantised.
    pub values: HashMap<String, Grid>,
    /// Activation grids of single reading operands (readers of a value that is also read
    /// unquantised, or is a graph output in float).
    pub edges: HashMap<EdgeKey, Grid>,
    /// Grids of dequantised constants, by the float constant's name.
    pub consts: HashMap<String, Grid>,
    /// Float constants that some node reads as they are, not through a pair. A conv, gemm
    /// or matmul whose weight is one runs in float in the QDQ model: onnxruntime only fuses
    /// an op into its integer kernel when every input is dequantised, and that is how
    /// `quantize_static(nodes_to_exclude=..)` and `kiln quantize --fp32` leave an op out.
    pub float_consts: HashSet<String>,
}

/// The key of a node for [`EdgeKey`].
pub fn node_key(name: &str, first_output: &str) -> String {
    if name.is_empty() {
        format!("->{first_output}")
    } else {
        name.to_string()
    }
}

fn is_q(n: &NodeProto) -> bool {
    matches!(n.domain(), "" | "ai.onnx") && n.op_type() == "QuantizeLinear"
}

fn is_dq(n: &NodeProto) -> bool {
    matches!(n.domain(), "" | "ai.onnx") && n.op_type() == "DequantizeLinear"
}

/// Whether a model has any QuantizeLinear or DequantizeLinear node.
pub fn is_qdq(m: &ModelProto) -> bool {
    m.graph
        .as_ref()
        .is_some_and(|g| g.node.iter().any(|n| is_q(n) || is_dq(n)))
}

fn int_attr(n: &NodeProto, name: &str) -> Option<i64> {
    n.attribute.iter().find(|a| a.name() == name).map(|a| a.i())
}

/// Tensors known at load time: initializers and `Constant` nodes' `value`.
struct Known<'a> {
    inits: HashMap<&'a str, &'a TensorProto>,
    base_dir: Option<&'a Path>,
}

impl Known<'_> {
    fn get(&self, name: &str, what: &str) -> Result<Tensor> {
        let t = self.inits.get(name).ok_or_else(|| {
            err!(
                Unsupported,
                "the {what} '{name}' must be an initializer or a Constant"
            )
        })?;
        tensor_from_proto(t, self.base_dir)
    }
}

/// The grid of a Q or DQ node (operands 1 and 2), for a tensor of rank `rank`.
fn grid(n: &NodeProto, known: &Known, rank: Option<usize>) -> Result<Grid> {
    ensure!(
        int_attr(n, "block_size").unwrap_or(0) == 0,
        Unsupported,
        "blocked quantisation (block_size) is not supported"
    );
    let scale_name = n.input.get(1).map(String::as_str).unwrap_or("");
    let scale = known.get(scale_name, "scale")?;
    ensure!(
        scale.dtype() == DType::F32,
        Unsupported,
        "scale '{scale_name}' is {}, kiln reads f32 scales",
        scale.dtype()
    );
    let (zero, zdt) = match n.input.get(2).filter(|z| !z.is_empty()) {
        Some(z) => {
            let t = known.get(z, "zero point")?;
            let dt = t.dtype();
            (t.to_f64_vec().iter().map(|&v| v as i32).collect(), dt)
        }
        // Absent: uint8 zero (the output type of QuantizeLinear without a zero point).
        None => (vec![0; scale.len()], DType::U8),
    };
    let (qmin, qmax) = match zdt {
        DType::U8 => (0, 255),
        DType::I8 => (-128, 127),
        DType::I32 => (-i32::MAX, i32::MAX),
        other => bail!(
            Unsupported,
            "{other} quantisation is not supported (uint8, int8 and int32 are)"
        ),
    };
    ensure!(
        zero.len() == scale.len(),
        InvalidModel,
        "{} scales but {} zero points",
        scale.len(),
        zero.len()
    );
    // onnxruntime's reading: one value is per tensor whatever its shape, several are per axis.
    let axis = if scale.len() > 1 {
        let a = int_attr(n, "axis").unwrap_or(1);
        let r =
            rank.ok_or_else(|| err!(Unsupported, "per-axis parameters need a known rank"))? as i64;
        ensure!(
            (-r..r).contains(&a),
            InvalidModel,
            "axis {a} out of rank {r}"
        );
        Some(((a + r) % r) as usize)
    } else {
        ensure!(
            scale.len() == 1,
            InvalidModel,
            "a per-tensor scale must hold one value, '{scale_name}' holds {}",
            scale.len()
        );
        None
    };
    let scale: Vec<f32> = scale.as_f32()?.iter().copied().collect();
    for &s in &scale {
        ensure!(
            s.is_finite() && s > 0.0,
            InvalidModel,
            "scale {s} must be positive and finite"
        );
    }
    Ok(Grid {
        scale,
        zero,
        qmin,
        qmax,
        axis,
    })
}

/// `(q − zp)·scale` of an integer tensor, per channel along the grid's axis.
fn dequantize(q: &Tensor, g: &Grid) -> Result<Tensor> {
    ensure!(
        q.dtype().is_integer(),
        Type,
        "DequantizeLinear of a {} constant",
        q.dtype()
    );
    let shape = q.shape().to_vec();
    let (inner, dim) = match g.axis {
        Some(a) => {
            ensure!(
                a < shape.len() && shape[a] == g.scale.len(),
                Shape,
                "{} scales do not fit axis {a} of {:?}",
                g.scale.len(),
                shape
            );
            (shape[a + 1..].iter().product::<usize>().max(1), shape[a])
        }
        None => (1, 1),
    };
    let data: Vec<f32> = q
        .to_f64_vec()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / inner) % dim;
            kiln_quant::arith::dequantize(v as i32, g.scale[c], g.zero[c])
        })
        .collect();
    Tensor::from_vec(&shape, data)
}

/// The float constants of `g` that a node other than a QuantizeLinear reads.
fn float_consts(g: &GraphProto, known: &Known) -> HashSet<String> {
    let float = |name: &str| {
        known.inits.get(name).is_some_and(|t| {
            crate::onnx::dtype_from_onnx(t.data_type(), name).is_ok_and(|d| d.is_float())
        })
    };
    g.node
        .iter()
        .filter(|n| !is_q(n) && !is_dq(n))
        .flat_map(|n| n.input.iter())
        .filter(|i| float(i))
        .cloned()
        .collect()
}

/// Strips the pairs of `m` (see the module docs).
pub fn strip(m: &ModelProto, base_dir: Option<&Path>) -> Result<(ModelProto, Qdq)> {
    let g = m
        .graph
        .as_ref()
        .ok_or_else(|| err!(InvalidModel, "the model has no graph"))?;
    let mut inits: HashMap<&str, &TensorProto> =
        g.initializer.iter().map(|t| (t.name(), t)).collect();
    // Constant nodes' tensors count as known (some writers put scales there).
    let consts_from_nodes: Vec<TensorProto> = g
        .node
        .iter()
        .filter(|n| n.op_type() == "Constant" && n.output.len() == 1)
        .filter_map(|n| {
            let t = n
                .attribute
                .iter()
                .find(|a| a.name() == "value")?
                .t
                .clone()?;
            Some(TensorProto {
                name: Some(n.output[0].clone()),
                ..t
            })
        })
        .collect();
    for t in &consts_from_nodes {
        inits.entry(t.name()).or_insert(t);
    }
    let known = Known { inits, base_dir };
    let producer: HashMap<&str, usize> = g
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let outputs: HashSet<&str> = g.output.iter().map(|o| o.name()).collect();
    let rank_of = |name: &str| -> Option<usize> {
        known
            .inits
            .get(name)
            .map(|t| t.dims.len())
            .or_else(|| declared_rank(g, name))
    };
    let locate = |n: &NodeProto, e: Error| e.at_node(n.name(), n.op_type());

    let mut out = Qdq::default();
    let mut removed: HashSet<usize> = HashSet::new();
    let mut new_inits: Vec<TensorProto> = Vec::new();
    // DQ output → (float source, grid) for activation pairs.
    let mut through: HashMap<String, (String, Grid)> = HashMap::new();
    for (i, n) in g.node.iter().enumerate().filter(|(_, n)| is_dq(n)) {
        let (x, y) = match (n.input.first(), n.output.first()) {
            (Some(x), Some(y)) => (x.as_str(), y.as_str()),
            _ => {
                return Err(locate(
                    n,
                    err!(InvalidModel, "DequantizeLinear needs X and Y"),
                ));
            }
        };
        if known.inits.contains_key(x) {
            let q = known
                .get(x, "quantised constant")
                .map_err(|e| locate(n, e))?;
            let gr = grid(n, &known, Some(q.shape().len())).map_err(|e| locate(n, e))?;
            let f = dequantize(&q, &gr).map_err(|e| locate(n, e))?;
            new_inits.push(tensor_to_proto(y, &f));
            out.consts.insert(y.to_string(), gr);
            removed.insert(i);
            continue;
        }
        let Some(&qi) = producer.get(x).filter(|&&p| is_q(&g.node[p])) else {
            return Err(locate(
                n,
                err!(
                    Unsupported,
                    "DequantizeLinear of '{x}', which no QuantizeLinear or initializer produces"
                ),
            ));
        };
        let qn = &g.node[qi];
        let src = qn.input.first().cloned().unwrap_or_default();
        if producer
            .get(src.as_str())
            .map(|&p| &g.node[p])
            .is_some_and(|p| {
                is_dq(p)
                    && p.input
                        .first()
                        .is_some_and(|x| !known.inits.contains_key(x.as_str()))
            })
        {
            return Err(locate(
                qn,
                err!(
                    Unsupported,
                    "'{src}' is requantised (DequantizeLinear → QuantizeLinear); kiln imports \
                     one pair per quantisation point"
                ),
            ));
        }
        let gr = grid(n, &known, rank_of(&src)).map_err(|e| locate(n, e))?;
        let gq = grid(qn, &known, rank_of(&src)).map_err(|e| locate(qn, e))?;
        ensure!(
            gr == gq,
            Unsupported,
            "QuantizeLinear '{}' and DequantizeLinear '{}' use different parameters",
            qn.name(),
            n.name()
        );
        through.insert(y.to_string(), (src, gr));
        removed.insert(i);
    }
    // Every QuantizeLinear must feed only DequantizeLinear nodes that were removed.
    for (i, n) in g.node.iter().enumerate().filter(|(_, n)| is_q(n)) {
        let y = n.output.first().map(String::as_str).unwrap_or("");
        let readers_ok =
            g.node.iter().enumerate().all(|(j, m)| {
                !m.input.iter().any(|x| x == y) || (is_dq(m) && removed.contains(&j))
            });
        if !readers_ok || outputs.contains(y) {
            return Err(locate(
                n,
                err!(
                    Unsupported,
                    "the quantised tensor '{y}' is used as an integer tensor; kiln imports \
                     QDQ models whose every QuantizeLinear feeds DequantizeLinear nodes"
                ),
            ));
        }
        removed.insert(i);
    }

    // Graph outputs produced by a pair: the source takes the output's name.
    let mut alias: HashMap<String, String> = HashMap::new();
    for o in &g.output {
        if let Some((src, gr)) = through.get(o.name()) {
            ensure!(
                !outputs.contains(src.as_str()) && !alias.contains_key(src),
                Unsupported,
                "graph output '{}' is a quantised copy of '{src}', which is also an output",
                o.name()
            );
            ensure!(
                !g.input.iter().any(|i| i.name() == src),
                Unsupported,
                "graph output '{}' is a quantised graph input",
                o.name()
            );
            alias.insert(src.clone(), o.name().to_string());
            out.values.insert(o.name().to_string(), gr.clone());
        }
    }
    let rename = |s: &str| alias.get(s).cloned().unwrap_or_else(|| s.to_string());

    // Rewire readers; collect per-value grids.
    let mut nodes = Vec::with_capacity(g.node.len());
    // value → (grids read through pairs, read unquantised anywhere)
    let mut reads: HashMap<String, (Vec<(EdgeKey, Grid)>, bool)> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        if removed.contains(&i) {
            continue;
        }
        let mut n = n.clone();
        for o in n.output.iter_mut() {
            *o = rename(o);
        }
        let key = node_key(n.name(), n.output.first().map(String::as_str).unwrap_or(""));
        for (k, x) in n.input.iter_mut().enumerate() {
            if x.is_empty() {
                continue;
            }
            match through.get(x.as_str()) {
                Some((src, gr)) => {
                    let src = rename(src);
                    reads
                        .entry(src.clone())
                        .or_default()
                        .0
                        .push(((key.clone(), k), gr.clone()));
                    *x = src;
                }
                None => {
                    let r = rename(x);
                    reads.entry(r.clone()).or_default().1 = true;
                    *x = r;
                }
            }
        }
        nodes.push(n);
    }
    for (v, (quantised, raw)) in reads {
        if quantised.is_empty() {
            continue;
        }
        let same = quantised.iter().all(|(_, gr)| *gr == quantised[0].1);
        let is_output = outputs.contains(v.as_str()) && !out.values.contains_key(&v);
        if same && !raw && !is_output {
            let gr = quantised[0].1.clone();
            if let Some(prev) = out.values.get(&v) {
                ensure!(
                    *prev == gr,
                    Unsupported,
                    "'{v}' is quantised with two different grids"
                );
            }
            out.values.insert(v, gr);
        } else {
            out.edges.extend(quantised);
        }
    }

    restore_relus(&mut nodes, &out.values);
    out.float_consts = float_consts(g, &known);

    let produced: HashSet<String> = nodes
        .iter()
        .flat_map(|n| n.output.iter().cloned())
        .chain(g.input.iter().map(|i| i.name().to_string()))
        .collect();
    let mut initializer: Vec<TensorProto> = g
        .initializer
        .iter()
        .filter(|t| !new_inits.iter().any(|n| n.name() == t.name()))
        .cloned()
        .collect();
    initializer.extend(new_inits);
    let value_info = g
        .value_info
        .iter()
        .filter(|v| produced.contains(v.name()))
        .cloned()
        .collect();
    let graph = GraphProto {
        node: nodes,
        initializer,
        value_info,
        ..g.clone()
    };
    Ok((
        ModelProto {
            graph: Some(graph),
            ..m.clone()
        },
        out,
    ))
}

/// onnxruntime's quantiser deletes a Relu that follows a quantised op and lets the
/// QuantizeLinear's saturation do its work: the Conv's result is quantised with zero point
/// 0 on uint8, which maps every negative value to the code of 0. Stripping the pair would
/// then leave a float graph without the Relu — a different network, whose float outputs
/// would be a meaningless reference. So a value produced by a compute op or an Add/Sub
/// and quantised with `zero point == qmin == 0` gets a Relu back (`producer → Relu →
/// value`).
/// That is exact for the quantised model — `quant(relu(x)) = quant(x)` when the zero point
/// is the lowest code — and restores the float model wherever the quantiser removed one
/// (graph-opt then fuses it into the compute op, as in the original model). Where nothing
/// was removed (`var + eps` of a decomposed LayerNorm is never negative) the Relu changes
/// no number, though it keeps kiln's LayerNorm pattern from matching, so such a norm stays
/// decomposed with its pairs, as in the QDQ model. A removed Clip's upper bound cannot be
/// told apart from a calibrated range and is not restored (its lower bound 0 is, as a Relu).
fn restore_relus(nodes: &mut Vec<NodeProto>, values: &HashMap<String, Grid>) {
    const PRODUCERS: &[&str] = &["Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub"];
    let mut taken: HashSet<String> = nodes
        .iter()
        .flat_map(|n| n.output.iter().chain(&n.input).cloned())
        .collect();
    let mut i = 0;
    while i < nodes.len() {
        let n = &nodes[i];
        let hit = PRODUCERS.contains(&n.op_type())
            && matches!(n.domain(), "" | "ai.onnx")
            && n.output.len() == 1
            && values
                .get(&n.output[0])
                .is_some_and(|g| g.qmin == 0 && g.zero.iter().all(|&z| z == 0));
        if hit {
            let v = n.output[0].clone();
            let pre = (0..)
                .map(|k| {
                    format!(
                        "{v}/pre_relu{}",
                        if k == 0 { String::new() } else { k.to_string() }
                    )
                })
                .find(|c| !taken.contains(c))
                .expect("a free name exists");
            taken.insert(pre.clone());
            nodes[i].output[0] = pre.clone();
            let relu = NodeProto {
                input: vec![pre],
                output: vec![v.clone()],
                name: Some(format!("{v}/restored_relu")),
                op_type: Some("Relu".into()),
                ..Default::default()
            };
            nodes.insert(i + 1, relu);
            i += 1;
        }
        i += 1;
    }
}

/// The rank a value is declared with (graph inputs, outputs, value_info).
fn declared_rank(g: &GraphProto, name: &str) -> Option<usize> {
    use crate::onnx::proto::type_proto::Value as TypeValue;
    g.input
        .iter()
        .chain(&g.output)
        .chain(&g.value_info)
        .find(|v| v.name() == name)
        .and_then(|v| match v.r#type.as_ref()?.value.as_ref()? {
            TypeValue::TensorType(t) => t.shape.as_ref().map(|s| s.dim.len()),
            _ => None,
        })
}
