//! ONNX `TensorProto` ↔ kiln [`Tensor`].
//!
//! A tensor's payload can live in four places: `raw_data` (little-endian bytes, what
//! exporters normally write), one of the typed lists (`float_data`, `int32_data` — which
//! also carries every type narrower than 32 bits, one element per `int32` — `int64_data`,
//! `double_data`, `uint64_data`), or an external file next to the model. Every path checks
//! the element count against `dims`, because a truncated weight would otherwise surface much
//! later as a wrong answer instead of an error naming the tensor.

use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::{StringStringEntryProto, TensorProto};
use kiln_core::{DType, Element, Result, Tensor, bail, dispatch, ensure, err};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// The kiln element type of an ONNX `DataType` code, or an `Unsupported` error that names
/// the ONNX type (float16, bfloat16, string, ...) and `what` carries it.
pub fn dtype_from_onnx(code: i32, what: &str) -> Result<DType> {
    let dt = DataType::try_from(code).ok();
    Ok(match dt {
        Some(DataType::Float) => DType::F32,
        Some(DataType::Double) => DType::F64,
        Some(DataType::Int8) => DType::I8,
        Some(DataType::Uint8) => DType::U8,
        Some(DataType::Int16) => DType::I16,
        Some(DataType::Uint16) => DType::U16,
        Some(DataType::Int32) => DType::I32,
        Some(DataType::Uint32) => DType::U32,
        Some(DataType::Int64) => DType::I64,
        Some(DataType::Uint64) => DType::U64,
        Some(DataType::Bool) => DType::Bool,
        _ => bail!(
            Unsupported,
            "{what} has element type {}, which kiln does not support",
            onnx_type_name(code)
        ),
    })
}

/// The ONNX `DataType` code of a kiln element type.
pub fn dtype_to_onnx(dt: DType) -> i32 {
    let d = match dt {
        DType::F32 => DataType::Float,
        DType::F64 => DataType::Double,
        DType::I8 => DataType::Int8,
        DType::U8 => DataType::Uint8,
        DType::I16 => DataType::Int16,
        DType::U16 => DataType::Uint16,
        DType::I32 => DataType::Int32,
        DType::U32 => DataType::Uint32,
        DType::I64 => DataType::Int64,
        DType::U64 => DataType::Uint64,
        DType::Bool => DataType::Bool,
    };
    d as i32
}

/// The schema's spelling of a `DataType` code (`FLOAT16`), for messages.
pub fn onnx_type_name(code: i32) -> String {
    match DataType::try_from(code) {
        Ok(DataType::Undefined) => "UNDEFINED".to_string(),
        Ok(d) => format!("{d:?}").to_uppercase(),
        Err(_) => format!("unknown ({code})"),
    }
}

/// Decodes a tensor. `base_dir` is the model's directory, needed only for external data.
pub fn tensor_from_proto(t: &TensorProto, base_dir: Option<&Path>) -> Result<Tensor> {
    let name = t.name();
    let what = format!("tensor '{name}'");
    if t.segment.is_some() {
        bail!(
            Unsupported,
            "{what} is segmented (split over several messages), which kiln does not support"
        );
    }
    let dtype = dtype_from_onnx(t.data_type(), &what)?;
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        let d = usize::try_from(d)
            .map_err(|_| err!(InvalidModel, "{what} has a negative dimension {d}"))?;
        shape.push(d);
    }
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err!(InvalidModel, "{what} has too many elements ({:?})", t.dims))?;
    let external = t.data_location == Some(DataLocation::External as i32);
    if external {
        let bytes = read_external(t, base_dir, &what)?;
        return from_raw(&bytes, dtype, &shape, numel, &what);
    }
    if let Some(raw) = &t.raw_data {
        return from_raw(raw, dtype, &shape, numel, &what);
    }
    let count = |n: usize, field: &str| -> Result<()> {
        ensure!(
            n == numel,
            InvalidModel,
            "{what} has {n} values in {field} but its dims {:?} need {numel}",
            t.dims
        );
        Ok(())
    };
    match dtype {
        DType::F32 => {
            count(t.float_data.len(), "float_data")?;
            Tensor::from_vec(&shape, t.float_data.clone())
        }
        DType::F64 => {
            count(t.double_data.len(), "double_data")?;
            Tensor::from_vec(&shape, t.double_data.clone())
        }
        DType::I64 => {
            count(t.int64_data.len(), "int64_data")?;
            Tensor::from_vec(&shape, t.int64_data.clone())
        }
        DType::U64 => {
            count(t.uint64_data.len(), "uint64_data")?;
            Tensor::from_vec(&shape, t.uint64_data.clone())
        }
        DType::U32 => {
            count(t.uint64_data.len(), "uint64_data")?;
            narrow(&t.uint64_data, &shape, &what, "uint64_data", |v| {
                u32::try_from(v).ok()
            })
        }
        DType::Bool => {
            count(t.int32_data.len(), "int32_data")?;
            Tensor::from_vec(&shape, t.int32_data.iter().map(|&v| v != 0).collect())
        }
        DType::I32 => {
            count(t.int32_data.len(), "int32_data")?;
            Tensor::from_vec(&shape, t.int32_data.clone())
        }
        DType::I8 => {
            count(t.int32_data.len(), "int32_data")?;
            narrow(&t.int32_data, &shape, &what, "int32_data", |v| {
                i8::try_from(v).ok()
            })
        }
        DType::U8 => {
            count(t.int32_data.len(), "int32_data")?;
            narrow(&t.int32_data, &shape, &what, "int32_data", |v| {
                u8::try_from(v).ok()
            })
        }
        DType::I16 => {
            count(t.int32_data.len(), "int32_data")?;
            narrow(&t.int32_data, &shape, &what, "int32_data", |v| {
                i16::try_from(v).ok()
            })
        }
        DType::U16 => {
            count(t.int32_data.len(), "int32_data")?;
            narrow(&t.int32_data, &shape, &what, "int32_data", |v| {
                u16::try_from(v).ok()
            })
        }
    }
}

/// Converts a widened typed list to its element type, rejecting values that do not fit
/// (a corrupt file, not something to wrap around silently).
fn narrow<S: Copy + std::fmt::Display, T: Element>(
    data: &[S],
    shape: &[usize],
    what: &str,
    field: &str,
    f: impl Fn(S) -> Option<T>,
) -> Result<Tensor> {
    let mut v = Vec::with_capacity(data.len());
    for &x in data {
        v.push(f(x).ok_or_else(|| {
            err!(
                InvalidModel,
                "{what}: value {x} in {field} does not fit {}",
                T::DTYPE
            )
        })?);
    }
    Tensor::from_vec(shape, v)
}

/// Decodes little-endian element bytes.
fn from_raw(raw: &[u8], dtype: DType, shape: &[usize], numel: usize, what: &str) -> Result<Tensor> {
    let size = dtype.size_bytes();
    let want = numel
        .checked_mul(size)
        .ok_or_else(|| err!(InvalidModel, "{what} is too large"))?;
    ensure!(
        raw.len() == want,
        InvalidModel,
        "{what} has {} bytes of data but its shape {shape:?} of {dtype} needs {want}",
        raw.len()
    );
    fn le<T: Element, const N: usize>(
        raw: &[u8],
        shape: &[usize],
        f: fn([u8; N]) -> T,
    ) -> Result<Tensor> {
        let v = raw
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunks_exact yields N bytes")))
            .collect();
        Tensor::from_vec(shape, v)
    }
    match dtype {
        DType::F32 => le(raw, shape, f32::from_le_bytes),
        DType::F64 => le(raw, shape, f64::from_le_bytes),
        DType::I8 => le(raw, shape, i8::from_le_bytes),
        DType::U8 => le(raw, shape, u8::from_le_bytes),
        DType::I16 => le(raw, shape, i16::from_le_bytes),
        DType::U16 => le(raw, shape, u16::from_le_bytes),
        DType::I32 => le(raw, shape, i32::from_le_bytes),
        DType::U32 => le(raw, shape, u32::from_le_bytes),
        DType::I64 => le(raw, shape, i64::from_le_bytes),
        DType::U64 => le(raw, shape, u64::from_le_bytes),
        DType::Bool => le(raw, shape, |b: [u8; 1]| b[0] != 0),
    }
}

fn external_key<'a>(entries: &'a [StringStringEntryProto], key: &str) -> Option<&'a str> {
    entries.iter().find(|e| e.key() == key).map(|e| e.value())
}

/// Reads the bytes of an external-data tensor. The location is relative to the model's
/// directory and must stay inside it: a model is untrusted input, and `../../etc/passwd`
/// or an absolute path must not turn an import into a file read anywhere on the machine.
fn read_external(t: &TensorProto, base_dir: Option<&Path>, what: &str) -> Result<Vec<u8>> {
    let loc = external_key(&t.external_data, "location").ok_or_else(|| {
        err!(
            InvalidModel,
            "{what} is marked external but has no 'location'"
        )
    })?;
    let Some(base) = base_dir else {
        bail!(
            Unsupported,
            "{what} stores its data in the external file '{loc}', which needs the model's directory \
             (load the model from a file)"
        );
    };
    let rel = Path::new(loc);
    let mut depth = 0usize;
    for c in rel.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            _ => bail!(
                InvalidModel,
                "{what}: external data location '{loc}' is outside the model's directory"
            ),
        }
    }
    ensure!(
        depth > 0,
        InvalidModel,
        "{what}: external data location '{loc}' names no file"
    );
    let path: PathBuf = base.join(rel);
    // Symbolic links could still lead outside; compare the resolved paths.
    let io = |e: std::io::Error| {
        err!(
            Io,
            "{what}: cannot read external data file '{}': {e}",
            path.display()
        )
    };
    let real = path.canonicalize().map_err(io)?;
    let real_base = base.canonicalize().map_err(io)?;
    ensure!(
        real.starts_with(&real_base),
        InvalidModel,
        "{what}: external data location '{loc}' resolves outside the model's directory"
    );
    let parse = |key: &str| -> Result<Option<u64>> {
        external_key(&t.external_data, key)
            .map(|s| {
                s.parse::<u64>().map_err(|_| {
                    err!(
                        InvalidModel,
                        "{what}: external data {key} '{s}' is not a number"
                    )
                })
            })
            .transpose()
    };
    let offset = parse("offset")?.unwrap_or(0);
    let length = parse("length")?;
    let mut f = std::fs::File::open(&real).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    let end = match length {
        Some(l) => offset.checked_add(l),
        None => Some(file_len),
    };
    let end = end.filter(|&e| e <= file_len && offset <= e).ok_or_else(|| {
        err!(
            InvalidModel,
            "{what}: external data range offset {offset} length {length:?} exceeds the file '{loc}' ({file_len} bytes)"
        )
    })?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let n = usize::try_from(end - offset)
        .map_err(|_| err!(InvalidModel, "{what}: external data is too large"))?;
    let mut buf = vec![0u8; n];
    f.read_exact(&mut buf).map_err(io)?;
    Ok(buf)
}

/// Encodes a tensor as `raw_data` (little-endian), the form onnx itself writes.
pub fn tensor_to_proto(name: &str, t: &Tensor) -> TensorProto {
    let raw: Vec<u8> = match t {
        Tensor::Bool(a) => a.iter().map(|&b| b as u8).collect(),
        Tensor::F32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Tensor::F64(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Tensor::I8(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Tensor::U8(a) => a.iter().copied().collect(),
        Tensor::I16(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Tensor::U16(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Tensor::I32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Tensor::U32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Tensor::I64(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Tensor::U64(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    TensorProto {
        name: Some(name.to_string()),
        dims: dispatch!(t, a => a.shape().iter().map(|&d| d as i64).collect()),
        data_type: Some(dtype_to_onnx(t.dtype())),
        raw_data: Some(raw),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::ErrorKind;

    fn proto(dt: DataType, dims: &[i64]) -> TensorProto {
        TensorProto {
            name: Some("t".into()),
            dims: dims.to_vec(),
            data_type: Some(dt as i32),
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_every_dtype() {
        for dt in DType::ALL {
            let t =
                Tensor::from_f64_fn(&kiln_core::TensorType::new(dt, [2, 3]), |i| (i % 5) as f64);
            let p = tensor_to_proto("x", &t);
            assert_eq!(p.name(), "x");
            assert_eq!(tensor_from_proto(&p, None).unwrap(), t, "{dt}");
        }
    }

    #[test]
    fn raw_data_is_little_endian() {
        let mut p = proto(DataType::Int32, &[2]);
        p.raw_data = Some(vec![1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            tensor_from_proto(&p, None).unwrap(),
            Tensor::from_vec(&[2], vec![1i32, -1]).unwrap()
        );
    }

    #[test]
    fn typed_fields() {
        let mut p = proto(DataType::Float, &[2]);
        p.float_data = vec![1.5, -2.0];
        assert_eq!(
            tensor_from_proto(&p, None).unwrap(),
            Tensor::from_vec(&[2], vec![1.5f32, -2.0]).unwrap()
        );

        let mut p = proto(DataType::Int8, &[3]);
        p.int32_data = vec![-128, 0, 127];
        assert_eq!(
            tensor_from_proto(&p, None).unwrap(),
            Tensor::from_vec(&[3], vec![-128i8, 0, 127]).unwrap()
        );
        p.int32_data = vec![-129, 0, 127];
        assert_eq!(
            tensor_from_proto(&p, None).unwrap_err().kind,
            ErrorKind::InvalidModel
        );

        let mut p = proto(DataType::Bool, &[2]);
        p.int32_data = vec![0, 1];
        assert_eq!(
            tensor_from_proto(&p, None).unwrap(),
            Tensor::from_vec(&[2], vec![false, true]).unwrap()
        );

        let mut p = proto(DataType::Uint16, &[1]);
        p.int32_data = vec![65535];
        assert_eq!(
            tensor_from_proto(&p, None).unwrap(),
            Tensor::from_vec(&[1], vec![65535u16]).unwrap()
        );

        let mut p = proto(DataType::Int64, &[]);
        p.int64_data = vec![7];
        assert_eq!(tensor_from_proto(&p, None).unwrap(), Tensor::scalar(7i64));

        let mut p = proto(DataType::Double, &[1]);
        p.double_data = vec![0.25];
        assert_eq!(
            tensor_from_proto(&p, None).unwrap(),
            Tensor::from_vec(&[1], vec![0.25f64]).unwrap()
        );

        let mut p = proto(DataType::Uint32, &[1]);
        p.uint64_data = vec![4_000_000_000];
        assert_eq!(
            tensor_from_proto(&p, None).unwrap(),
            Tensor::from_vec(&[1], vec![4_000_000_000u32]).unwrap()
        );
        p.uint64_data = vec![1 << 40];
        assert_eq!(
            tensor_from_proto(&p, None).unwrap_err().kind,
            ErrorKind::InvalidModel
        );

        let mut p = proto(DataType::Uint64, &[1]);
        p.uint64_data = vec![u64::MAX];
        assert_eq!(
            tensor_from_proto(&p, None).unwrap(),
            Tensor::from_vec(&[1], vec![u64::MAX]).unwrap()
        );
    }

    #[test]
    fn empty_tensor_needs_no_data() {
        let p = proto(DataType::Float, &[0, 3]);
        assert_eq!(tensor_from_proto(&p, None).unwrap().shape(), &[0, 3]);
    }

    #[test]
    fn inconsistent_lengths() {
        let mut p = proto(DataType::Float, &[4, 4]);
        p.raw_data = Some(vec![0; 60]);
        let e = tensor_from_proto(&p, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidModel);
        assert!(e.message.contains("'t'") && e.message.contains("60"), "{e}");

        let mut p = proto(DataType::Float, &[3]);
        p.float_data = vec![1.0];
        assert_eq!(
            tensor_from_proto(&p, None).unwrap_err().kind,
            ErrorKind::InvalidModel
        );

        let p = proto(DataType::Float, &[-1]);
        assert_eq!(
            tensor_from_proto(&p, None).unwrap_err().kind,
            ErrorKind::InvalidModel
        );
    }

    #[test]
    fn unsupported_types_name_the_tensor() {
        for dt in [
            DataType::Float16,
            DataType::Bfloat16,
            DataType::String,
            DataType::Complex64,
        ] {
            let e = tensor_from_proto(&proto(dt, &[1]), None).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unsupported);
            assert!(e.message.contains("'t'"), "{e}");
            assert!(e.message.contains(&format!("{dt:?}").to_uppercase()), "{e}");
        }
        assert_eq!(
            tensor_from_proto(&proto(DataType::Undefined, &[1]), None)
                .unwrap_err()
                .kind,
            ErrorKind::Unsupported
        );
    }

    #[test]
    fn external_without_base_dir() {
        let mut p = proto(DataType::Float, &[1]);
        p.data_location = Some(DataLocation::External as i32);
        p.external_data.push(StringStringEntryProto {
            key: Some("location".into()),
            value: Some("w.bin".into()),
        });
        assert_eq!(
            tensor_from_proto(&p, None).unwrap_err().kind,
            ErrorKind::Unsupported
        );
    }

    #[test]
    fn external_paths_must_stay_inside() {
        let base = std::env::temp_dir();
        for loc in ["../w.bin", "/etc/passwd", "a/../../w.bin", "."] {
            let mut p = proto(DataType::Float, &[1]);
            p.data_location = Some(DataLocation::External as i32);
            p.external_data.push(StringStringEntryProto {
                key: Some("location".into()),
                value: Some(loc.into()),
            });
            let e = tensor_from_proto(&p, Some(&base)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidModel, "{loc}: {e}");
        }
    }
}
