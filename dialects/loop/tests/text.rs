//! The text format: exact round trips for every instruction kind and type, bit-exact
//! floats, and located parse errors.

mod common;

use kiln_core::{ErrorKind, Location};
use kiln_loop::text::{parse_kernel, parse_module, print_kernel, print_module};
use kiln_loop::verify::verify_kernel;
use kiln_loop::*;

/// print → parse → print is the identity, and the parsed kernel verifies.
fn round_trip(k: &Kernel) -> String {
    verify_kernel(k).unwrap_or_else(|e| panic!("{e}\n{}", print_kernel(k)));
    let text = print_kernel(k);
    let back = parse_kernel(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    verify_kernel(&back).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(print_kernel(&back), text);
    // Parsing numbers values densely in textual order: a second round trip changes nothing,
    // not even the value table. (Compared as text: NaN constants are not `==` themselves.)
    let again = parse_kernel(&print_kernel(&back)).unwrap();
    assert_eq!(again.types, back.types);
    assert_eq!(format!("{again:?}"), format!("{back:?}"));
    text
}

/// A kernel using every instruction kind, every type and every op name.
fn everything() -> Kernel {
    let mut b = KernelBuilder::new("every.thing");
    let elems = [
        Type::F32,
        Type::I32,
        Type::I16,
        Type::I8,
        Type::U8,
        Type::Index,
    ];
    let bufs: Vec<Buf> = elems
        .iter()
        .enumerate()
        .map(|(i, &t)| b.buf(format!("b{i}"), t, 64, i % 2 == 1))
        .collect();
    let out = b.buf("out buffer", Type::F32, 64, false);
    let outs: Vec<Buf> = elems
        .iter()
        .map(|&t| b.buf(t.name(), t, 64, false))
        .collect();
    let zero = b.index(0);
    for t in Type::ALL {
        let s = match t {
            Type::F32 => b.fconst(-1.5),
            t if t.is_vector() => {
                let lane = if t.is_float() {
                    b.fconst(2.0)
                } else {
                    b.iconst(t.lane(), -3)
                };
                b.splat(t, lane)
            }
            Type::Bool => b.iconst(Type::Bool, 1),
            t => b.iconst(t, 7),
        };
        match t {
            Type::Bool => {
                let o = b.binary(BinOp::And, s, s);
                b.binary(BinOp::Or, o, s);
            }
            t => {
                for op in BinOp::ALL {
                    let int_only = matches!(
                        op,
                        BinOp::Rem | BinOp::And | BinOp::Or | BinOp::Shl | BinOp::Shr
                    );
                    if !(t.is_float() && int_only) {
                        b.binary(op, s, s);
                    }
                }
                for op in UnOp::ALL {
                    if t.is_float() || matches!(op, UnOp::Neg | UnOp::Abs) {
                        b.unary(op, s);
                    }
                }
                for op in CmpOp::ALL {
                    let m = b.cmp(op, s, s);
                    b.select(m, s, s);
                }
                if t.is_float() {
                    b.fma(s, s, s);
                }
                if t.is_vector() {
                    let l = b.extract(s, (t.lanes() - 1) as u8);
                    b.insert(s, l, 0);
                    for op in RedOp::ALL {
                        b.reduce(op, s);
                    }
                }
            }
        }
    }
    let f = b.fconst(0.25);
    for t in [Type::I32, Type::I16, Type::I8, Type::U8, Type::Index] {
        let c = b.cast(t, f);
        b.cast(Type::F32, c);
    }
    let fv = b.fsplat(Type::F32X4, 1.0);
    let iv = b.cast(Type::I32X4, fv);
    b.cast(Type::F32X4, iv);
    let bits = b.bitcast(Type::I32, f);
    b.bitcast(Type::F32, bits);
    let vb = b.bitcast(Type::I8X16, fv);
    b.bitcast(Type::I16X8, vb);
    for h in Helper::ALL {
        let args = vec![f; h.arity()];
        b.call(h, &args);
    }
    for (i, &t) in elems.iter().enumerate() {
        let v = b.load(t, bufs[i], zero, 3);
        b.store(outs[i], zero, -0, v);
        if let Some(vt) = t.vector() {
            let v = b.load(vt, bufs[i], zero, 16);
            b.store(outs[i], zero, 32, v);
        }
    }
    // Loops: carried values of several types, nesting, negative bounds and displacements.
    let acc = b.fsplat(Type::F32X4, 0.0);
    let n = b.iconst(Type::I32, 0);
    let res = b.loop_(-4, 60, 4, false, &[acc, n], |b, i, c| {
        let x = b.load(Type::F32X4, bufs[0], i, 4);
        let inner = b.loop_(0, 3, 1, false, &[c[0]], |b, _, a| vec![b.add(a[0], x)]);
        let one = b.iconst(Type::I32, 1);
        let n = b.add(c[1], one);
        b.store(out, i, 4, inner[0]);
        vec![inner[0], n]
    });
    b.store(out, zero, 60, res[0]);
    b.finish()
}

#[test]
fn every_instruction_and_type_round_trips() {
    let text = round_trip(&everything());
    for word in [
        "iconst bool 1",
        "fconst -1.5",
        "splat i8x16",
        "fma ",
        "cmp ge ",
        "select ",
        "extract ",
        "insert ",
        "bitcast i16x8 ",
        "reduce min ",
        "cast u8 ",
        "load i8x16 @4[%",
        "store @",
        "call fmod(",
        "nearest ",
        "shr ",
        "= for %",
        "iter(%",
        "yield %",
        "@6 \"out buffer\": f32[64]",
        "@1 b1: i32[64] readonly",
        "kernel @every.thing(",
        "+16]",
        "-4 to 60 step 4",
    ] {
        assert!(text.contains(word), "missing {word:?} in\n{text}");
    }
    for t in Type::ALL {
        assert!(text.contains(&format!(": {t}")) || text.contains(&format!(" {t} ")));
    }
}

#[test]
fn sample_kernels_round_trip() {
    for k in common::all() {
        round_trip(&k);
    }
}

#[test]
fn relu_prints_as_documented() {
    let text = print_kernel(&common::relu());
    let want = "\
kernel @relu(@0 x: f32[64] readonly, @1 y: f32[64]) {
  %0 = fconst 0.0
  %1 = splat f32x4 %0
  parallel %2 = 0 to 64 step 4 {
    %3 = load f32x4 @0[%2]
    %4 = max %3, %1 : f32x4
    store @1[%2], %4
    yield
  }
}
";
    assert_eq!(text, want);
}

#[test]
fn values_are_renumbered_in_textual_order() {
    // The builder numbers a loop's results after its body; the text numbers them first.
    let text = print_kernel(&common::gemm());
    assert!(
        text.contains("%3 = for %4 = 0 to 6 step 1 iter(%5 = %2) {"),
        "{text}"
    );
}

#[test]
fn floats_round_trip_bit_exactly() {
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        -1.5,
        0.1,
        1e-7,
        7.038531e-26,
        f32::MIN_POSITIVE,
        1e-45, // smallest subnormal
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7f80_0001), // signalling NaN
        f32::from_bits(0xffc1_2345),
        16777217.0,
        3.4028235e38,
    ];
    let mut b = KernelBuilder::new("floats");
    let o = b.buf("o", Type::F32, specials.len(), false);
    for (i, &x) in specials.iter().enumerate() {
        let c = b.fconst(x);
        let at = b.index(i as i64);
        b.store(o, at, 0, c);
    }
    let k = b.finish();
    let text = round_trip(&k);
    let back = parse_kernel(&text).unwrap();
    let consts: Vec<u32> = back
        .body
        .insts
        .iter()
        .filter_map(|i| match i.kind {
            InstKind::Fconst(x) => Some(x.to_bits()),
            _ => None,
        })
        .collect();
    let want: Vec<u32> = specials.iter().map(|x| x.to_bits()).collect();
    assert_eq!(consts, want);
    assert!(text.contains("fconst nan\n") && text.contains("fconst -inf"));
}

#[test]
fn integer_extremes_round_trip() {
    let mut b = KernelBuilder::new("ints");
    b.index(i64::MIN);
    b.index(i64::MAX);
    b.iconst(Type::I32, -(1 << 31));
    b.iconst(Type::U8, 255);
    round_trip(&b.finish());
}

#[test]
fn modules_print_kernels_in_order() {
    let m = Module {
        kernels: common::all(),
    };
    let text = print_module(&m);
    let back = parse_module(&text).unwrap();
    assert_eq!(back.kernels.len(), 4);
    assert_eq!(print_module(&back), text);
    assert_eq!(parse_module("").unwrap().kernels.len(), 0);
    assert_eq!(
        parse_module("// only a comment\n").unwrap(),
        Module::default()
    );
}

#[test]
fn hand_written_names_are_scoped() {
    let src = "
kernel @k(@x in: f32[8] readonly, @y out: f32[8]) {
  %z = fconst 0.0
  %s = for %i = 0 to 8 step 1 iter(%acc = %z) {
    %v = load f32 @x[%i]
    %n = add %acc, %v : f32
    yield %n
  }
  for %i = 0 to 8 step 2 {
    store @y[%i+1], %s
    yield
  }
}";
    let k = parse_kernel(src).unwrap();
    verify_kernel(&k).unwrap();
    let text = print_kernel(&k);
    assert!(text.contains("store @1[%6+1], %1"), "{text}");
}

fn parse_err(src: &str) -> (String, usize, usize) {
    let e = parse_kernel(src).expect_err("must not parse");
    assert_eq!(e.kind, ErrorKind::Parse, "{e}");
    match e.location {
        Location::Text { line, col } => (e.message, line, col),
        l => panic!("no text location: {l:?}"),
    }
}

#[test]
fn parse_errors_are_located() {
    let head = "kernel @k(@0 x: f32[8]) {\n";
    let cases = [
        ("  %0 = add %1, %1 : f32\n}", "undefined value %1", 2, 12),
        (
            "  %0 = fconst 1.0\n  %0 = fconst 2.0\n}",
            "defined twice",
            3,
            3,
        ),
        (
            "  %0 = frobnicate\n}",
            "unknown instruction 'frobnicate'",
            2,
            8,
        ),
        ("  %0 = iconst f64 1\n}", "expected a type", 2, 15),
        ("  %0 = index 0\n", "unknown instruction", 2, 8),
        (
            "  %0 = iconst index 0\n  %1 = load f32 @9[%0]\n}",
            "unknown buffer @9",
            3,
            17,
        ),
        (
            "  %0 = iconst index 0\n  %1 = load f32 @0[%0 4]\n}",
            "'+N' or '-N'",
            3,
            23,
        ),
        (
            "  %0 = iconst index 0\n  store @0[%0], %0",
            "found end of input",
            3,
            19,
        ),
        (
            "  %a, %b = fconst 1.0\n}",
            "defines 1 value(s), found 2",
            2,
            12,
        ),
        (
            "  %r = for %i = 0 to 4 step 1 {\n    yield\n  }\n}",
            "carries 0",
            2,
            3,
        ),
        (
            "  %z = fconst 0.0\n  for %z = 0 to 4 step 1 {\n    yield\n  }\n}",
            "defined twice",
            3,
            7,
        ),
        (
            "  %0 = fconst nan(5)\n}",
            "not the bit pattern of a NaN",
            2,
            19,
        ),
        ("  %0 = extract %0, 1 : f32\n}", "undefined value %0", 2, 16),
        (
            "  %v = fconst 1.0\n  %0 = extract %v, 300 : f32\n}",
            "lane 300 out of range",
            3,
            20,
        ),
        (
            "  %0 = call sinh(%0) : f32\n}",
            "unknown helper 'sinh'",
            2,
            13,
        ),
    ];
    for (body, msg, line, col) in cases {
        let (m, l, c) = parse_err(&format!("{head}{body}"));
        assert!(m.contains(msg), "{body:?}: {m}");
        assert_eq!((l, c), (line, col), "{body:?}: {m}");
    }
    let (m, l, _) = parse_err("kernel @k() {\n}\nkernel @j() {\n}");
    assert!(m.contains("end of input"), "{m}");
    assert_eq!(l, 3);
    let (m, ..) = parse_err("kernel @k(@0 x: f32[8], @0 y: f32[8]) {\n}");
    assert!(m.contains("declared twice"), "{m}");
}
