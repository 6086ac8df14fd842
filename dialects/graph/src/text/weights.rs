//! The weights side file: the data of `resource<"name">` constants, so that text IR stays
//! readable for real models.
//!
//! Layout (little-endian): the magic `KILNWTS1`, a u64 entry count, then per entry a u32
//! name length and the UTF-8 name, a u8 length and the dtype name (`f32`, `i64`, ...), a u32
//! rank and that many u64 dims, a u64 byte length and the raw elements in row-major order
//! (bool as one byte, 0 or 1). Names and dtypes are spelt out rather than numbered so the
//! file stays meaningful if kiln's enums change. Every length is checked against what is
//! left before anything is allocated, so a truncated or garbled file is a `Decode` error.

use crate::graph::Graph;
use crate::ops::{Const, ConstSource, Op};
use kiln_core::{DType, Element, Error, ErrorKind, Result, Tensor, TensorType, dispatch};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"KILNWTS1";

/// Dimensions beyond this are certainly garbage (ONNX caps ranks far lower in practice).
const MAX_RANK: u32 = 64;

/// Element types as raw little-endian bytes.
trait Raw: Element {
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
    /// `None` for a byte pattern that is not a value of the type (a bool other than 0/1).
    fn get(b: &[u8]) -> Option<Self>;
}

macro_rules! raw {
    ($($t:ty),*) => {$(
        impl Raw for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(b: &[u8]) -> Option<Self> {
                Some(<$t>::from_le_bytes(b.try_into().ok()?))
            }
        }
    )*};
}
raw!(f32, f64, i8, u8, i16, u16, i32, u32, i64, u64);

impl Raw for bool {
    const SIZE: usize = 1;
    fn put(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
    fn get(b: &[u8]) -> Option<Self> {
        match b {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
}

/// The file's bytes for these entries.
pub fn encode_weights(entries: &[(String, Tensor)]) -> Vec<u8> {
    let data_len: usize = entries
        .iter()
        .map(|(_, t)| t.len() * t.dtype().size_bytes())
        .sum();
    let mut out = Vec::with_capacity(16 + data_len + 64 * entries.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (name, t) in entries {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        let dt = t.dtype().name();
        out.push(dt.len() as u8);
        out.extend_from_slice(dt.as_bytes());
        out.extend_from_slice(&(t.shape().len() as u32).to_le_bytes());
        for &d in t.shape() {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        out.extend_from_slice(&((t.len() * t.dtype().size_bytes()) as u64).to_le_bytes());
        dispatch!(t, a => a.iter().for_each(|v| v.put(&mut out)));
    }
    out
}

/// Writes the weights file atomically: to `<path>.tmp`, then renamed over `path`, so a
/// crash never leaves a half-written file where a complete one is expected.
pub fn write_weights(path: impl AsRef<Path>, entries: &[(String, Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let io = |what: &str, p: &Path, e: std::io::Error| {
        Error::new(
            ErrorKind::Io,
            format!("cannot {what} '{}': {e}", p.display()),
        )
    };
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, encode_weights(entries)).map_err(|e| io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("replace", path, e)
    })
}

/// Reads a weights file into name → tensor.
pub fn load_weights(path: impl AsRef<Path>) -> Result<HashMap<String, Tensor>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read '{}': {e}", path.display()),
        )
    })?;
    decode_weights(&bytes)
        .map_err(|e| Error::new(e.kind, format!("{}: {}", path.display(), e.message)))
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let left = self.b.len() - self.pos;
        if n > left {
            return Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "truncated weights file: {what} needs {n} byte(s) at offset {}, {left} left",
                    self.pos
                ),
            ));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("took 8 bytes")))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes(b.try_into().expect("took 4 bytes")))
    }

    fn str(&mut self, n: usize, what: &str) -> Result<String> {
        let at = self.pos;
        String::from_utf8(self.take(n, what)?.to_vec()).map_err(|_| {
            Error::new(
                ErrorKind::Decode,
                format!("{what} at offset {at} is not UTF-8"),
            )
        })
    }
}

fn decode_err(msg: String) -> Error {
    Error::new(ErrorKind::Decode, msg)
}

/// Parses the bytes of a weights file.
pub fn decode_weights(bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    let mut r = Reader { b: bytes, pos: 0 };
    if r.take(8, "the magic").ok() != Some(&MAGIC[..]) {
        return Err(decode_err("not a kiln weights file (bad magic)".into()));
    }
    let count = r.u64("the entry count")?;
    let mut out = HashMap::new();
    for i in 0..count {
        let n = r.u32("a name length")? as usize;
        let name = r.str(n, "a name")?;
        let n = r.take(1, "a dtype length")?[0] as usize;
        let dt = r.str(n, "a dtype")?;
        let dtype = DType::from_name(&dt)
            .ok_or_else(|| decode_err(format!("entry {i} ('{name}') has unknown dtype '{dt}'")))?;
        let rank = r.u32("a rank")?;
        if rank > MAX_RANK {
            return Err(decode_err(format!("entry {i} ('{name}') has rank {rank}")));
        }
        let mut shape = Vec::with_capacity(rank as usize);
        for _ in 0..rank {
            let d = r.u64("a dimension")?;
            shape.push(
                usize::try_from(d)
                    .map_err(|_| decode_err(format!("entry '{name}': dimension {d} too large")))?,
            );
        }
        let ty = TensorType::new(dtype, shape);
        let expect = ty
            .shape
            .iter()
            .try_fold(dtype.size_bytes(), |n, &d| n.checked_mul(d));
        let len = r.u64("a data length")?;
        if expect.map(|e| e as u64) != Some(len) {
            return Err(decode_err(format!(
                "entry '{name}' ({ty}) declares {len} data bytes, its type needs {}",
                expect.map_or("more than can be addressed".to_string(), |e| e.to_string())
            )));
        }
        let data = r.take(len as usize, "tensor data")?;
        let t = tensor_from_bytes(&ty, data)
            .ok_or_else(|| decode_err(format!("entry '{name}' has invalid bool bytes")))?;
        if out.insert(name.clone(), t).is_some() {
            return Err(decode_err(format!("entry '{name}' appears twice")));
        }
    }
    if r.pos != bytes.len() {
        return Err(decode_err(format!(
            "{} unexpected byte(s) after the last entry",
            bytes.len() - r.pos
        )));
    }
    Ok(out)
}

/// The length of `data` was checked against the type by the caller.
fn tensor_from_bytes(ty: &TensorType, data: &[u8]) -> Option<Tensor> {
    fn typed<T: Raw>(shape: &[usize], data: &[u8]) -> Option<Tensor> {
        let v = data
            .chunks_exact(T::SIZE)
            .map(T::get)
            .collect::<Option<Vec<T>>>()?;
        Tensor::from_vec(shape, v).ok()
    }
    let s = &ty.shape;
    match ty.dtype {
        DType::F32 => typed::<f32>(s, data),
        DType::F64 => typed::<f64>(s, data),
        DType::I8 => typed::<i8>(s, data),
        DType::U8 => typed::<u8>(s, data),
        DType::I16 => typed::<i16>(s, data),
        DType::U16 => typed::<u16>(s, data),
        DType::I32 => typed::<i32>(s, data),
        DType::U32 => typed::<u32>(s, data),
        DType::I64 => typed::<i64>(s, data),
        DType::U64 => typed::<u64>(s, data),
        DType::Bool => typed::<bool>(s, data),
    }
}

/// Fills in the data of every `resource<"name">` constant from a loaded weights file. A
/// resource the file lacks is an `Input` error; one whose stored type differs from the
/// type the IR declares is a `Type` error naming it.
pub fn attach_weights(g: &mut Graph, weights: &HashMap<String, Tensor>) -> Result<()> {
    for n in g.node_ids() {
        let Op::Const(Const {
            ty,
            value,
            source: ConstSource::Resource(name),
        }) = g.op_mut(n)
        else {
            continue;
        };
        let t = weights.get(name.as_str()).ok_or_else(|| {
            Error::new(
                ErrorKind::Input,
                format!("resource '{name}' is not in the weights file"),
            )
        })?;
        if t.ty() != *ty {
            return Err(Error::new(
                ErrorKind::Type,
                format!(
                    "resource '{name}' is {} in the weights file but the IR declares {ty}",
                    t.ty()
                ),
            ));
        }
        *value = Some(Arc::new(t.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte layout is a file format: pin it so a change is deliberate.
    #[test]
    fn layout_is_pinned() {
        let t = Tensor::from_vec(&[2], vec![1u16, 0x0203]).unwrap();
        let mut want = b"KILNWTS1".to_vec();
        want.extend([1, 0, 0, 0, 0, 0, 0, 0]);
        want.extend([1, 0, 0, 0, b'w']);
        want.extend([3, b'u', b'1', b'6']);
        want.extend([1, 0, 0, 0]);
        want.extend([2, 0, 0, 0, 0, 0, 0, 0]);
        want.extend([4, 0, 0, 0, 0, 0, 0, 0]);
        want.extend([1, 0, 3, 2]);
        assert_eq!(encode_weights(&[("w".into(), t.clone())]), want);
        assert_eq!(decode_weights(&want).unwrap()["w"], t);
    }

    #[test]
    fn empty_file_holds_no_entries() {
        assert!(decode_weights(&encode_weights(&[])).unwrap().is_empty());
        assert_eq!(decode_weights(b"").unwrap_err().kind, ErrorKind::Decode);
    }
}
