//! The graph dialect's text format: a printer and a parser that round-trip exactly
//! (print → parse → print gives the same text), plus the binary weights side file that
//! keeps large constants out of the text.
//!
//! ```text
//! // comment
//! graph @net(%x: f32[1,3,8,8], %"in/1:0": i64[2]) -> (f32[1,4,8,8], i64[2]) {
//!   %w = const f32[4,3,3,3] random(seed=1, min=-1.0, max=1.0)
//!   %b = const f32[4] dense<[0.5, -1.0, 2.0, 3.25]>
//!   %c = graph.conv(%x, %w, %b) {pads=[1,1,1,1]} : f32[1,4,8,8] loc("Conv_0")
//!   %r = graph.resize(%x, _, %scales) {mode="linear"} : ?
//!   return %c, %"in/1:0"
//! }
//! ```
//!
//! Both directions are generic over ops: the printer writes `op.name()` and `op.attrs()`,
//! the parser calls `Op::from_attrs`, so a new op needs no change here. Only `const` has its
//! own syntax, because its payload is data rather than attributes and its written form
//! (`dense`, `splat`, `random`, `resource`) is part of what must survive a round trip.
//!
//! Attribute values: `3` (int), `1.5` / `1e-7` / `inf` / `nan` (float: always written with
//! `.` or `e` so the kind survives), `"s"` (string), `[1,2]` (ints), `[1.0,2.5]` (floats),
//! `["a","b"]` (strings), `f32[2] dense<[1.0, 2.0]>` / `f32[4] splat(0.0)` (tensor). `[]`
//! reads as an empty int list, which attribute readers accept where floats are wanted.
//!
//! Constants: `const TYPE dense<[row-major elements]>`, `splat(v)`, `random(seed=S, min=A,
//! max=B)` or `resource<"name">` (data in the weights file, possibly not loaded).
//! `Const::source` remembers which, so the printer writes a parsed constant the same way;
//! computed constants (`ConstSource::Auto`) become a splat when all elements are equal,
//! dense up to 16 elements, and a resource named after their value beyond that.
//!
//! Names: values print through `quote_name` (`%x`, `%"in/1:0"`). The printer makes them
//! unique and non-empty (`v<index>`, suffixed as needed), so its output always parses;
//! the parser requires define-before-use and one definition per name. Trailing omitted
//! operands (`_`) are not kept by `Graph`, so `f(%x, _)` prints back as `f(%x)`.
//!
//! Floats are read as f32 from their spelling, not via f64: rounding twice is off by an
//! ulp for some shortest spellings (`7.038531e-26`).

mod parse;
mod print;
mod weights;

pub use parse::parse;
pub use print::{print, print_with_weights};
pub use weights::{attach_weights, decode_weights, encode_weights, load_weights, write_weights};

use kiln_core::{DType, Element, Error, ErrorKind, Result, Tensor, TensorType};

/// A (line, column) in the source text, 1-based.
type Pos = (usize, usize);

fn err_at(kind: ErrorKind, pos: Pos, msg: impl Into<String>) -> Error {
    Error::new(kind, msg).at_text(pos.0, pos.1)
}

/// `f32[1,3]`, or `?` for a type shape inference has not filled in yet.
fn type_text(ty: Option<&TensorType>) -> String {
    match ty {
        Some(t) => t.to_string(),
        None => "?".to_string(),
    }
}

/// Shortest text that reads back to the same f32 (Rust's `{:?}` is round-trip exact and
/// always has a `.` or an exponent, so a float never reads back as an int).
fn f32_text(v: f32) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else {
        format!("{v:?}")
    }
}

fn f64_text(v: f64) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else {
        format!("{v:?}")
    }
}

/// One element of a `dense<[...]>` / `splat(...)` literal, kept loose until the dtype says
/// how to read it.
#[derive(Debug, Clone, Copy)]
enum Lit {
    Int(i64),
    /// The f64 and, rounded separately from the spelling, the f32 (see `Cursor::peek_f32`).
    Float(f64, f32),
    Bool(bool),
}

/// Reads a literal as one element type, exactly (no rounding of integers through f64).
trait FromLit: Element {
    fn from_lit(l: Lit) -> Option<Self>;
}

impl FromLit for f32 {
    fn from_lit(l: Lit) -> Option<Self> {
        match l {
            Lit::Int(v) => Some(v as f32),
            Lit::Float(_, v) => Some(v),
            Lit::Bool(_) => None,
        }
    }
}

impl FromLit for f64 {
    fn from_lit(l: Lit) -> Option<Self> {
        match l {
            Lit::Int(v) => Some(v as f64),
            Lit::Float(v, _) => Some(v),
            Lit::Bool(_) => None,
        }
    }
}

macro_rules! int_lit {
    ($($t:ty),*) => {$(
        impl FromLit for $t {
            fn from_lit(l: Lit) -> Option<Self> {
                match l {
                    Lit::Int(v) => <$t>::try_from(v).ok(),
                    _ => None,
                }
            }
        }
    )*};
}
int_lit!(i8, u8, i16, u16, i32, u32, i64, u64);

impl FromLit for bool {
    fn from_lit(l: Lit) -> Option<Self> {
        match l {
            Lit::Bool(b) => Some(b),
            _ => None,
        }
    }
}

fn build(ty: &TensorType, lits: &[(Pos, Lit)]) -> Result<Tensor> {
    fn typed<T: FromLit>(ty: &TensorType, lits: &[(Pos, Lit)]) -> Result<Tensor> {
        let data = lits
            .iter()
            .map(|&(pos, l)| {
                T::from_lit(l).ok_or_else(|| {
                    let shown = match l {
                        Lit::Int(v) => v.to_string(),
                        Lit::Float(v, _) => format!("{v:?}"),
                        Lit::Bool(b) => b.to_string(),
                    };
                    err_at(
                        ErrorKind::Type,
                        pos,
                        format!("{shown} is not a valid {} element", ty.dtype),
                    )
                })
            })
            .collect::<Result<Vec<T>>>()?;
        Tensor::from_vec(&ty.shape, data)
    }
    match ty.dtype {
        DType::F32 => typed::<f32>(ty, lits),
        DType::F64 => typed::<f64>(ty, lits),
        DType::I8 => typed::<i8>(ty, lits),
        DType::U8 => typed::<u8>(ty, lits),
        DType::I16 => typed::<i16>(ty, lits),
        DType::U16 => typed::<u16>(ty, lits),
        DType::I32 => typed::<i32>(ty, lits),
        DType::U32 => typed::<u32>(ty, lits),
        DType::I64 => typed::<i64>(ty, lits),
        DType::U64 => typed::<u64>(ty, lits),
        DType::Bool => typed::<bool>(ty, lits),
    }
}

#[cfg(test)]
mod tests {
    use super::parse::parse_attr;
    use super::print::attr_text;
    use kiln_core::{Attr, ErrorKind, Location, Tensor};

    /// Attribute kinds are kept apart by their spelling alone, so each must read back as
    /// the same kind with the same bits.
    fn round_trip(a: Attr) {
        let text = attr_text(&a);
        let back = parse_attr(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        match (&a, &back) {
            (Attr::Float(x), Attr::Float(y)) if x.is_nan() => assert!(y.is_nan(), "{text}"),
            (Attr::Float(x), Attr::Float(y)) => assert_eq!(x.to_bits(), y.to_bits(), "{text}"),
            (Attr::Floats(x), Attr::Floats(y)) => {
                let bits = |v: &[f32]| {
                    v.iter()
                        .map(|f| if f.is_nan() { u32::MAX } else { f.to_bits() })
                        .collect::<Vec<_>>()
                };
                assert_eq!(bits(x), bits(y), "{text}");
            }
            _ => assert_eq!(a, back, "{text}"),
        }
        assert_eq!(attr_text(&back), text);
    }

    #[test]
    fn every_attribute_kind_round_trips() {
        for v in [0, 3, -1, i64::MIN, i64::MAX] {
            round_trip(Attr::Int(v));
        }
        let tricky = [
            0.0,
            -0.0,
            1.0,
            -2.5,
            0.1,
            f32::from_bits(0.1f32.to_bits() + 1),
            16_777_217.0,
            1.000_000_1,
            f32::MAX,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            1e-7,
            1e20,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x15ae_43fd),
        ];
        for v in tricky {
            round_trip(Attr::Float(v));
        }
        round_trip(Attr::Floats(tricky.to_vec()));
        round_trip(Attr::Str(String::new()));
        round_trip(Attr::Str(
            "quote \" backslash \\ newline \n tab \t bell \u{7} é".into(),
        ));
        round_trip(Attr::Ints(vec![1, -2, 0, i64::MIN]));
        round_trip(Attr::Ints(vec![]));
        round_trip(Attr::Floats(vec![1.0, 2.5]));
        round_trip(Attr::Strs(vec!["a".into(), "b\"c".into(), String::new()]));
        round_trip(Attr::Tensor(
            Tensor::from_vec(&[2], vec![0.5f32, -1.0]).unwrap(),
        ));
        round_trip(Attr::Tensor(
            Tensor::from_vec(&[3], vec![7i64, 7, 7]).unwrap(),
        ));
        round_trip(Attr::Tensor(Tensor::scalar(true)));
        round_trip(Attr::Tensor(Tensor::from_vec::<u8>(&[0], vec![]).unwrap()));
        round_trip(Attr::Tensor(
            Tensor::from_vec(&[1, 2], vec![f64::NEG_INFINITY, 1e300]).unwrap(),
        ));
    }

    #[test]
    fn spelling_decides_the_kind() {
        assert_eq!(attr_text(&Attr::Float(1.0)), "1.0");
        assert_eq!(attr_text(&Attr::Ints(vec![1, 2])), "[1,2]");
        assert_eq!(attr_text(&Attr::Floats(vec![1.0, 2.5])), "[1.0,2.5]");
        assert_eq!(
            parse_attr("[1, 2.0]").unwrap(),
            Attr::Floats(vec![1.0, 2.0])
        );
        assert_eq!(parse_attr("[]").unwrap(), Attr::Ints(vec![]));
        assert_eq!(parse_attr("-inf").unwrap(), Attr::Float(f32::NEG_INFINITY));
        assert_eq!(
            attr_text(&Attr::Tensor(
                Tensor::from_vec(&[4], vec![0.5f32; 4]).unwrap()
            )),
            "f32[4] splat(0.5)"
        );
    }

    #[test]
    fn malformed_attribute_values() {
        let at = |src: &str, col| {
            let e = parse_attr(src).unwrap_err();
            assert_eq!(e.location, Location::Text { line: 1, col }, "{src}: {e}");
            e.kind
        };
        assert_eq!(at("[1, \"a\"]", 5), ErrorKind::Parse);
        assert_eq!(at("f32[2] dense<[1.0]>", 8), ErrorKind::Shape);
        assert_eq!(at("u8[1] dense<[300]>", 14), ErrorKind::Type);
        assert_eq!(at("bool[1] splat(2)", 15), ErrorKind::Type);
        assert_eq!(at("f32[2] ones", 8), ErrorKind::Parse);
        assert_eq!(at("q8[2] splat(1)", 1), ErrorKind::Parse);
        assert_eq!(at("[1,", 4), ErrorKind::Parse);
    }
}
