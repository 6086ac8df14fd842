//! QDQ ONNX import: a model quantised by another tool (onnxruntime's `quantize_static`
//! with `QuantFormat.QDQ`, or kiln's own export) → a float graph plus the model's
//! quantisation parameters, and from them a quant unit with no calibration, so that
//! `kiln run --precision int8 --engine sim MODEL.qdq.onnx` simulates the model kiln's way
//! with the model's own scales and zero points.
//!
//! Two steps, one file each: `strip.rs` removes the QuantizeLinear/DequantizeLinear
//! pairs from the protobuf (dequantising integer initializers to f32 constants) and keeps
//! each pair's grid by tensor name; the float model then goes through the ordinary
//! importer and whatever graph pipeline the user picks; `attach.rs` builds the
//! [`QuantGraph`] and puts the grids on the TQCs of the values and operands that survived
//! the pipeline (what fusion does to pairs is documented there).

mod attach;
mod strip;

pub use attach::quant_graph;
pub use strip::{EdgeKey, Grid, Qdq, is_qdq, strip};

use super::import::{ImportOptions, import_model};
use super::proto::ModelProto;
use kiln_core::{Result, err};
use kiln_graph::Graph;
use prost::Message;
use std::path::Path;

/// A stripped QDQ model: its float graph and the grids of its pairs.
#[derive(Debug, Clone)]
pub struct QdqModel {
    pub graph: Graph,
    pub qdq: Qdq,
}

/// Imports serialised ONNX bytes as a QDQ model; `None` when the model has no
/// QuantizeLinear/DequantizeLinear node (import it the ordinary way).
pub fn import(bytes: &[u8], opts: &ImportOptions) -> Result<Option<QdqModel>> {
    let Ok(m) = ModelProto::decode(bytes) else {
        // Not decodable: the ordinary importer reports it.
        return Ok(None);
    };
    if !is_qdq(&m) {
        return Ok(None);
    }
    let (float, qdq) = strip(&m, opts.base_dir.as_deref())?;
    let graph = import_model(&float.encode_to_vec(), opts)?;
    Ok(Some(QdqModel { graph, qdq }))
}

/// Reads `path` and imports it as a QDQ model (see [`import`]); external data is looked up
/// next to the file unless `opts.base_dir` says otherwise.
pub fn load(path: &Path, opts: &ImportOptions) -> Result<Option<QdqModel>> {
    let bytes =
        std::fs::read(path).map_err(|e| err!(Io, "cannot read '{}': {e}", path.display()))?;
    let mut opts = opts.clone();
    if opts.base_dir.is_none() {
        opts.base_dir = Some(match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        });
    }
    import(&bytes, &opts)
}

#[cfg(test)]
mod tests;
