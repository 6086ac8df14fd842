//! The import driver: decode, check the model's structure, give every graph input a static
//! type, lower every node (see `opset.rs`), wire operands by name, then infer shapes.
//!
//! Operands are resolved only after every node exists, so a use that precedes its
//! definition is fine (ONNX asks for topological order, not every writer obeys), a
//! genuinely missing value is an undefined-value error and a loop is a cycle error.

use super::opset::{Ctx, Lowered, const_op, lower};
use super::proto::tensor_shape_proto::dimension::Value as Dim;
use super::proto::type_proto::Value as TypeValue;
use super::proto::{GraphProto, ModelProto, TensorProto, ValueInfoProto};
use super::tensor::{dtype_from_onnx, tensor_from_proto};
use kiln_core::{DType, Error, ErrorKind, Result, TensorType, bail, ensure, err};
use kiln_graph::{Graph, Value};
use prost::Message;
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The default-domain opsets kiln imports: 7 up to the newest that onnx 1.23 defines.
/// Op versions after opset 21 add element types (bfloat16, float8, int4) or attributes;
/// kiln refuses the element types it lacks when it meets them, and an attribute it does not
/// know is an error at that node, so no newer op version can be misread silently.
pub const OPSET_RANGE: RangeInclusive<i64> = 7..=28;

/// How to import a model.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Static shapes for graph inputs (`--shape NAME=D0,D1,...`); they replace the
    /// model's declared shape, which is how symbolic dimensions get fixed.
    pub shapes: HashMap<String, Vec<usize>>,
    /// Directory that external-data locations are relative to.
    pub base_dir: Option<PathBuf>,
    /// Known values of graph inputs. An input that feeds a shape operand (a Reshape's
    /// shape, a Resize's scales, a Slice's starts) becomes a constant with this value, since
    /// kiln compiles static shapes; inputs that carry only data stay inputs.
    pub static_inputs: HashMap<String, kiln_core::Tensor>,
}

/// Reads and imports a `.onnx` file; external data is looked up next to it unless
/// `opts.base_dir` says otherwise.
pub fn load_model(path: &Path, opts: &ImportOptions) -> Result<Graph> {
    let bytes =
        std::fs::read(path).map_err(|e| err!(Io, "cannot read '{}': {e}", path.display()))?;
    let base = match &opts.base_dir {
        Some(b) => b.clone(),
        None => match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    import(&bytes, opts, Some(base)).map_err(|e| match e.kind {
        // Undecodable bytes contain no names; the file is the only thing to point at.
        ErrorKind::Decode => Error {
            message: format!("{}: {}", path.display(), e.message),
            ..e
        },
        _ => e,
    })
}

/// Imports a serialised model. External data needs `opts.base_dir`.
pub fn import_model(bytes: &[u8], opts: &ImportOptions) -> Result<Graph> {
    import(bytes, opts, opts.base_dir.clone())
}

fn import(bytes: &[u8], opts: &ImportOptions, base_dir: Option<PathBuf>) -> Result<Graph> {
    // Zero bytes decode as an empty ModelProto; an empty file is not a model.
    ensure!(
        !bytes.is_empty(),
        Decode,
        "the file is empty, not an ONNX model"
    );
    let model =
        ModelProto::decode(bytes).map_err(|e| err!(Decode, "not a valid ONNX model: {e}"))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| err!(InvalidModel, "the model has no graph"))?;
    // Checked where a default-domain node needs it: a model made only of other domains'
    // ops is unsupported, not malformed.
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain(), "" | "ai.onnx"))
        .map(|o| o.version());
    Importer::new(graph, opset, opts, base_dir)?.run()
}

struct Importer<'a> {
    graph: &'a GraphProto,
    opset: Option<i64>,
    opts: &'a ImportOptions,
    ctx: Ctx,
    g: Graph,
    /// Value by name, for operand resolution.
    defs: HashMap<String, Value>,
    initializers: HashMap<&'a str, &'a TensorProto>,
}

impl<'a> Importer<'a> {
    fn new(
        graph: &'a GraphProto,
        opset: Option<i64>,
        opts: &'a ImportOptions,
        base_dir: Option<PathBuf>,
    ) -> Result<Self> {
        let mut initializers = HashMap::new();
        for t in &graph.initializer {
            ensure!(
                initializers.insert(t.name(), t).is_none(),
                DuplicateDefinition,
                "initializer '{}' is defined twice",
                t.name()
            );
        }
        if let Some(s) = graph.sparse_initializer.first() {
            let name = s.values.as_ref().map(|v| v.name()).unwrap_or("");
            bail!(Unsupported, "sparse initializer '{name}' is not supported");
        }
        let mut ctx = Ctx {
            base_dir,
            ..Ctx::default()
        };
        ctx.names
            .extend(graph.initializer.iter().map(|t| t.name().to_string()));
        ctx.names
            .extend(graph.input.iter().map(|i| i.name().to_string()));
        for n in &graph.node {
            ctx.names
                .extend(n.output.iter().filter(|o| !o.is_empty()).cloned());
            ctx.used
                .extend(n.input.iter().filter(|i| !i.is_empty()).cloned());
        }
        ctx.used
            .extend(graph.output.iter().map(|o| o.name().to_string()));
        // Element types the opset rewrites may need; unsupported ones are reported where used.
        for vi in graph
            .value_info
            .iter()
            .chain(&graph.output)
            .chain(&graph.input)
        {
            if let Some(dt) = declared_dtype(vi) {
                ctx.dtypes.insert(vi.name().to_string(), dt);
            }
        }
        for t in &graph.initializer {
            if let Ok(dt) = dtype_from_onnx(t.data_type(), "") {
                ctx.dtypes.insert(t.name().to_string(), dt);
            }
        }
        let g = Graph::new(graph.name());
        Ok(Importer {
            graph,
            opset,
            opts,
            ctx,
            g,
            defs: HashMap::new(),
            initializers,
        })
    }

    fn run(mut self) -> Result<Graph> {
        self.inputs()?;
        self.constants()?;
        let mut lowered = Vec::new();
        for node in &self.graph.node {
            let (name, op_type) = (node.name(), node.op_type());
            let nodes = self
                .lower_node(node)
                .map_err(|e| e.at_node(name, op_type))?;
            lowered.push((name, op_type, nodes));
        }
        self.build(lowered)?;
        self.outputs()?;
        self.freeze_static_inputs()?;
        kiln_graph::infer::infer_shapes(&mut self.g)?;
        self.check_outputs()?;
        Ok(self.g)
    }

    /// Replaces the inputs that feed shape operands by their known values.
    fn freeze_static_inputs(&mut self) -> Result<()> {
        for v in self.g.inputs().to_vec() {
            let name = self.g.value(v).name.clone();
            if let Some(t) = self.opts.static_inputs.get(&name)
                && self.g.feeds_shape_operand(v)
            {
                if let Some(ty) = &self.g.value(v).ty
                    && *ty != t.ty()
                {
                    bail!(
                        Input,
                        "input '{name}' is declared {ty}, but the value given for it is {}",
                        t.ty()
                    );
                }
                self.g.freeze_input(v, t.clone())?;
            }
        }
        Ok(())
    }

    /// Graph inputs become typed kiln inputs, except those that are also initializers: old
    /// (IR < 4) models list every weight as an input, and they are constants.
    fn inputs(&mut self) -> Result<()> {
        let real: Vec<&ValueInfoProto> = self
            .graph
            .input
            .iter()
            .filter(|i| !self.initializers.contains_key(i.name()))
            .collect();
        let given = [
            ("--shape", self.opts.shapes.keys().collect::<Vec<_>>()),
            ("--input", self.opts.static_inputs.keys().collect()),
        ];
        for (flag, mut names) in given {
            names.sort_unstable();
            for name in names {
                if !real.iter().any(|i| i.name() == name) {
                    let list: Vec<&str> = real.iter().map(|i| i.name()).collect();
                    bail!(
                        Input,
                        "{flag} names '{name}', which is not an input of the model (inputs: {})",
                        list.join(", ")
                    );
                }
            }
        }
        for vi in real {
            let name = vi.name();
            ensure!(
                !self.defs.contains_key(name),
                DuplicateDefinition,
                "graph input '{name}' is listed twice"
            );
            let ty = self.input_type(vi)?;
            let v = self.g.add_input(name, Some(ty));
            self.defs.insert(name.to_string(), v);
        }
        Ok(())
    }

    fn input_type(&self, vi: &ValueInfoProto) -> Result<TensorType> {
        let name = vi.name();
        let tensor = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(TypeValue::TensorType(t)) => t,
            Some(_) => bail!(
                Unsupported,
                "graph input '{name}' is not a tensor (sequences, maps and optionals are not supported)"
            ),
            None => bail!(Input, "graph input '{name}' has no type"),
        };
        let dtype = dtype_from_onnx(tensor.elem_type(), &format!("graph input '{name}'"))?;
        let declared = tensor.shape.as_ref().map(|s| &s.dim);
        if let Some(shape) = self.opts.shapes.get(name) {
            if let Some(dims) = declared {
                ensure!(
                    dims.len() == shape.len(),
                    Input,
                    "--shape {name}={} has rank {} but the model's input '{name}' has rank {}",
                    join(shape),
                    shape.len(),
                    dims.len()
                );
            }
            return Ok(TensorType::new(dtype, shape.clone()));
        }
        let Some(dims) = declared else {
            bail!(
                Input,
                "graph input '{name}' has no shape; give one with --shape {name}=D0,D1,..."
            );
        };
        let mut shape = Vec::with_capacity(dims.len());
        for (axis, d) in dims.iter().enumerate() {
            match &d.value {
                // 0 is a real size (an empty tensor), as in onnxruntime.
                Some(Dim::DimValue(v)) if *v >= 0 => shape.push(*v as usize),
                other => {
                    let what = match other {
                        Some(Dim::DimParam(p)) if !p.is_empty() => {
                            format!("a symbolic dimension '{p}'")
                        }
                        _ => "an unknown dimension".to_string(),
                    };
                    let shown: Vec<String> = dims
                        .iter()
                        .map(|d| match &d.value {
                            Some(Dim::DimValue(v)) if *v >= 0 => v.to_string(),
                            Some(Dim::DimParam(p)) if !p.is_empty() => p.clone(),
                            _ => "?".to_string(),
                        })
                        .collect();
                    bail!(
                        Input,
                        "graph input '{name}' has {what} at axis {axis} (shape [{}]); kiln compiles static \
                         shapes: fix it with --shape {name}=D0,D1,...",
                        shown.join(",")
                    );
                }
            }
        }
        Ok(TensorType::new(dtype, shape))
    }

    /// Initializers that something reads become `const` nodes, named after the tensor.
    fn constants(&mut self) -> Result<()> {
        for t in &self.graph.initializer {
            let name = t.name();
            if !self.ctx.used.contains(name) || self.defs.contains_key(name) {
                continue;
            }
            let value = Arc::new(tensor_from_proto(t, self.ctx.base_dir.as_deref())?);
            self.ctx.consts.insert(name.to_string(), value.clone());
            let (_, outs) =
                self.g
                    .add_node(name, const_op(value), Vec::new(), vec![name.to_string()]);
            self.defs.insert(name.to_string(), outs[0]);
        }
        Ok(())
    }

    fn lower_node(&mut self, node: &super::proto::NodeProto) -> Result<Vec<Lowered>> {
        let op_type = node.op_type();
        ensure!(!op_type.is_empty(), InvalidModel, "node has no op type");
        let domain = node.domain();
        if !matches!(domain, "" | "ai.onnx") {
            bail!(
                UnsupportedOp,
                "op '{op_type}' of domain '{domain}' is not supported (kiln imports the default ONNX domain only)"
            );
        }
        let Some(opset) = self.opset else {
            bail!(
                InvalidModel,
                "the model imports no default ('ai.onnx') opset, so op '{op_type}' has no version"
            );
        };
        if !OPSET_RANGE.contains(&opset) {
            bail!(
                UnsupportedOp,
                "op '{op_type}' at opset {opset} is not supported (kiln imports opsets {} to {})",
                OPSET_RANGE.start(),
                OPSET_RANGE.end()
            );
        }
        lower(node, opset, &mut self.ctx)
    }

    /// Adds every lowered node, then resolves operands by name.
    fn build(&mut self, lowered: Vec<(&str, &str, Vec<Lowered>)>) -> Result<()> {
        let mut pending = Vec::new();
        for (name, op_type, nodes) in lowered {
            for l in nodes {
                let (id, outs) = self.g.add_node(l.name, l.op, Vec::new(), l.outputs.clone());
                for (o, v) in l.outputs.iter().zip(outs) {
                    if self.defs.contains_key(o) || self.initializers.contains_key(o.as_str()) {
                        return Err(err!(
                            DuplicateDefinition,
                            "value '{o}' is defined more than once"
                        )
                        .at_node(name, op_type));
                    }
                    self.defs.insert(o.clone(), v);
                }
                pending.push((name, op_type, id, l.inputs));
            }
        }
        for (name, op_type, id, inputs) in pending {
            for (k, i) in inputs.into_iter().enumerate() {
                let v = match i {
                    None => None,
                    Some(i) => Some(*self.defs.get(&i).ok_or_else(|| {
                        err!(
                            UndefinedValue,
                            "input '{i}' is not produced by any node, graph input or initializer"
                        )
                        .at_node(name, op_type)
                    })?),
                };
                self.g.set_input(id, k, v);
            }
        }
        Ok(())
    }

    fn outputs(&mut self) -> Result<()> {
        ensure!(
            !self.graph.output.is_empty(),
            InvalidModel,
            "the graph has no outputs, so it computes nothing"
        );
        let mut outs = Vec::with_capacity(self.graph.output.len());
        for o in &self.graph.output {
            let v = self.defs.get(o.name()).ok_or_else(|| {
                err!(
                    UndefinedValue,
                    "graph output '{}' is not produced by any node, graph input or initializer",
                    o.name()
                )
            })?;
            outs.push(*v);
        }
        self.g.set_outputs(outs);
        Ok(())
    }

    /// The declared output types must agree with inference: a disagreement means the model
    /// and kiln read some op differently, which is better caught here than in the results.
    /// Dimensions are compared only when no input shape was overridden (an override
    /// legitimately changes them).
    fn check_outputs(&self) -> Result<()> {
        for (o, &v) in self.graph.output.iter().zip(self.g.outputs()) {
            let name = o.name();
            let Some(TypeValue::TensorType(t)) = o.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                continue;
            };
            let got = self.g.ty(v)?;
            if t.elem_type() != 0 {
                let want = dtype_from_onnx(t.elem_type(), &format!("graph output '{name}'"))?;
                ensure!(
                    want == got.dtype,
                    Type,
                    "graph output '{name}' is declared {want} but computes {}",
                    got.dtype
                );
            }
            let Some(shape) = &t.shape else { continue };
            ensure!(
                shape.dim.len() == got.rank(),
                Shape,
                "graph output '{name}' is declared with rank {} but computes {got}",
                shape.dim.len()
            );
            if self.opts.shapes.is_empty() {
                for (axis, (d, &have)) in shape.dim.iter().zip(&got.shape).enumerate() {
                    if let Some(Dim::DimValue(want)) = d.value {
                        ensure!(
                            want <= 0 || want as usize == have,
                            Shape,
                            "graph output '{name}' is declared with dimension {want} at axis {axis} but computes {got}"
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

fn declared_dtype(vi: &ValueInfoProto) -> Option<DType> {
    match vi.r#type.as_ref()?.value.as_ref()? {
        TypeValue::TensorType(t) => dtype_from_onnx(t.elem_type(), "").ok(),
        _ => None,
    }
}

fn join(v: &[usize]) -> String {
    v.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
