//! The verifier: each rule rejects what it should, with a message naming the kernel and
//! quoting the instruction; well-formed kernels pass.

mod common;

use kiln_core::{ErrorKind, Ir};
use kiln_loop::text::parse_kernel;
use kiln_loop::verify::verify_kernel;
use kiln_loop::*;

/// The verifier's message for a kernel body (the header declares the buffers below).
fn verr(body: &str) -> String {
    let src =
        format!("kernel @bad(@0 x: f32[64] readonly, @1 y: f32[64], @2 q: u8[64]) {{\n{body}\n}}");
    let k = parse_kernel(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let e = verify_kernel(&k).expect_err(&src);
    assert_eq!(e.kind, ErrorKind::Verify);
    assert!(e.message.starts_with("kernel @bad: `"), "{}", e.message);
    e.message
}

fn ok(body: &str) {
    let src =
        format!("kernel @good(@0 x: f32[64] readonly, @1 y: f32[64], @2 q: u8[64]) {{\n{body}\n}}");
    let k = parse_kernel(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
    verify_kernel(&k).unwrap_or_else(|e| panic!("{e}\n{src}"));
}

const CONSTS: &str =
    "%i = iconst index 0\n%f = fconst 1.0\n%n = iconst i32 3\n%v = splat f32x4 %f\n";

fn with_consts(s: &str) -> String {
    format!("{CONSTS}{s}")
}

#[test]
fn sample_kernels_verify() {
    for k in common::all() {
        verify_kernel(&k).unwrap();
    }
    Module {
        kernels: common::all(),
    }
    .verify()
    .unwrap();
    ok(&with_consts(
        "%m = cmp lt %v, %v : i32x4\n%s = select %m, %v, %v : f32x4\n\
         %b = cmp lt %f, %f : bool\n%t = select %b, %v, %v : f32x4\n\
         %w = load i8x16 @2[%i]\n%sh = shr %w, %n : i8x16\n\
         %e = call pow(%f, %f) : f32\nstore @1[%i+60], %s",
    ));
}

#[test]
fn operand_types_must_agree() {
    let cases = [
        ("%r = add %f, %n : f32", "operand types differ (f32, i32)"),
        (
            "%r = add %f, %f : i32",
            "the first operand has type f32, the result i32",
        ),
        ("%r = fma %n, %n, %n : i32", "fma needs float operands"),
        ("%r = fma %v, %f, %v : f32x4", "operand b has type f32"),
        ("%r = rem %f, %f : f32", "rem needs integer operands"),
        ("%r = shl %v, %v : f32x4", "shl needs integer operands"),
        ("%r = sqrt %n : i32", "sqrt needs a float operand"),
        ("%r = splat f32x4 %n", "cannot splat i32 to f32x4"),
        ("%r = splat i32 %n", "cannot splat i32 to i32"),
        (
            "%r = cmp lt %v, %v : f32x4",
            "comparing f32x4 gives i32x4, not f32x4",
        ),
        ("%r = cmp lt %f, %f : i32", "comparing f32 gives bool"),
        (
            "%r = select %f, %v, %v : f32x4",
            "the condition has type f32",
        ),
        ("%r = extract %v, 4 : f32", "lane 4 of f32x4"),
        (
            "%r = extract %f, 0 : f32",
            "extract from the scalar type f32",
        ),
        ("%r = insert %v, %n, 0 : f32x4", "inserts i32 into f32x4"),
        (
            "%r = reduce add %v : i32",
            "the lane type has type f32, the result i32",
        ),
        ("%r = cast bool %n", "cannot cast i32 to bool"),
        ("%r = cast i32x4 %f", "cannot cast f32 to i32x4"),
        ("%r = bitcast i16 %f", "widths differ"),
        ("%r = iconst i8 300", "300 does not fit in i8"),
        ("%r = iconst f32 1", "iconst of type f32"),
        (
            "%r = call pow(%f) : f32",
            "pow takes 2 argument(s), given 1",
        ),
        ("%r = call exp(%n) : f32", "has type i32, not f32"),
        (
            "%r = call exp(%f) : i32",
            "f32 has type f32, the result i32",
        ),
    ];
    for (body, msg) in cases {
        let m = verr(&with_consts(body));
        assert!(m.contains(msg), "{body}: {m}");
        // The message quotes the instruction as printed.
        let op = body.split(' ').nth(2).unwrap();
        assert!(m.contains(&format!("= {op}")), "{body}: {m}");
    }
}

#[test]
fn memory_accesses_match_their_buffers() {
    let cases = [
        ("%r = load i32 @0[%i]", "loads i32 from a buffer of f32"),
        ("%r = load i32x4 @0[%i]", "loads i32x4 from a buffer of f32"),
        ("%r = load f32 @0[%n]", "the offset has type i32, not index"),
        ("store @0[%i], %f", "stores to the readonly buffer @0 (x)"),
        ("store @1[%i], %n", "stores i32 to a buffer of f32"),
        ("store @2[%i], %v", "stores f32x4 to a buffer of u8"),
        ("store @1[%f], %f", "the offset has type f32"),
    ];
    for (body, msg) in cases {
        let m = verr(&with_consts(body));
        assert!(m.contains(msg), "{body}: {m}");
    }
}

#[test]
fn loops_are_well_formed() {
    let cases = [
        (
            "for %j = 0 to 4 step 0 {\nyield\n}",
            "step 0 is not positive",
        ),
        (
            "%r = for %j = 0 to 4 step 1 iter(%a = %f) {\nyield\n}",
            "yields 0 value(s) but the loop carries 1",
        ),
        (
            "%r = for %j = 0 to 4 step 1 iter(%a = %f) {\nyield %n\n}",
            "yields %2 of type i32 for carried value %6 of type f32",
        ),
        (
            "for %j = 0 to 4 step 1 {\n%z = fconst 0.0\n}",
            "does not end in a yield",
        ),
        ("yield", "yield must be the last instruction of a loop body"),
        (
            "for %j = 0 to 4 step 1 {\nyield\n%z = fconst 0.0\nyield\n}",
            "yield must be the last",
        ),
        (
            "parallel %j = 0 to 4 step 1 {\nyield\n}\nparallel %k = 0 to 4 step 1 {\nyield\n}",
            "at most one parallel loop",
        ),
        (
            "for %j = 0 to 4 step 1 {\nparallel %k = 0 to 4 step 1 {\nyield\n}\nyield\n}",
            "must be at the top level",
        ),
        (
            "%r = parallel %j = 0 to 4 step 1 iter(%a = %f) {\nyield %a\n}",
            "cannot carry values",
        ),
    ];
    for (body, msg) in cases {
        let m = verr(&with_consts(body));
        assert!(m.contains(msg), "{body}: {m}");
    }
    ok(&with_consts(
        "parallel %j = 0 to 64 step 4 {\n%r = for %k = 0 to 4 step 1 iter(%a = %f) {\n\
         %s = add %a, %f : f32\nyield %s\n}\nstore @1[%j], %r\nyield\n}",
    ));
}

#[test]
fn uses_need_a_visible_definition() {
    // A value defined in one loop body used in a sibling loop body.
    let mut b = KernelBuilder::new("sibling");
    let y = b.buf("y", Type::Index, 8, false);
    let mut leaked = None;
    b.for_(0, 4, 1, |b, i| leaked = Some(b.add(i, i)));
    b.for_(0, 4, 1, |b, j| {
        let v = b.add(leaked.unwrap(), j);
        b.store(y, j, 0, v);
    });
    let e = verify_kernel(&b.finish()).unwrap_err();
    assert!(
        e.message
            .contains("kernel @sibling: `%3 = add %1, %2 : index`"),
        "{}",
        e.message
    );
    assert!(
        e.message
            .contains("%1 is used where no definition of it is visible")
    );

    // A use before its definition in the same region.
    let mut k = common::relu();
    k.body.insts.swap(0, 1);
    let e = verify_kernel(&k).unwrap_err();
    assert!(e.message.contains("`%0 = splat f32x4 %1`"), "{}", e.message);

    // A value defined twice.
    let mut k = common::relu();
    let dup = k.body.insts[0].clone();
    k.body.insts.insert(1, dup);
    let e = verify_kernel(&k).unwrap_err();
    assert!(e.message.contains("%0 is defined twice"), "{}", e.message);

    // A value without a type, and a buffer that does not exist.
    let mut k = common::relu();
    k.types.truncate(1);
    assert!(
        verify_kernel(&k)
            .unwrap_err()
            .message
            .contains("has no type")
    );
    let mut k = common::relu();
    k.bufs.pop();
    let e = verify_kernel(&k).unwrap_err();
    assert!(e.message.contains("no buffer @1"), "{}", e.message);
    let mut k = common::relu();
    k.bufs[0].elem = Type::F32X4;
    let e = verify_kernel(&k).unwrap_err();
    assert!(e.message.contains("no buffer may hold"), "{}", e.message);
}

#[test]
fn static_bounds_are_checked_where_exact() {
    let cases = [
        (
            "for %j = 0 to 64 step 4 {\n%w = load f32x4 @0[%j+1]\nyield\n}",
            "`%5 = load f32x4 @0[%4+1]`: accesses elements 1..65 of @0 (x), which has 64",
        ),
        (
            "%four = iconst index 4\nfor %j = 0 to 17 step 1 {\n%k = mul %j, %four : index\n\
             %m = sub %k, %four : index\nstore @1[%m], %f\nyield\n}",
            "accesses elements -4..61 of @1 (y), which has 64",
        ),
        ("store @1[%i+64], %f", "accesses elements 64..65 of @1 (y)"),
        ("store @1[%i-1], %f", "accesses elements -1..0 of @1 (y)"),
        (
            "%c = iconst index 70\nfor %j = 0 to 8 step 1 {\n%m = min %j, %c : index\n\
             %w = load u8 @2[%m+57]\nyield\n}",
            "accesses elements 57..65 of @2 (q), which has 64",
        ),
    ];
    for (body, msg) in cases {
        let m = verr(&with_consts(body));
        assert!(m.contains(msg), "{body}: {m}");
    }
    // Exact ranges only: two varying operands, a loop that never runs, data-dependent
    // offsets are not checked.
    ok(&with_consts(
        "for %j = 0 to 64 step 1 {\n%k = add %j, %j : index\n%m = sub %k, %j : index\n\
         %w = load f32 @0[%m]\nyield\n}\n\
         for %j = 0 to 0 step 1 {\nstore @1[%j+100], %f\nyield\n}\n\
         %b = load u8 @2[%i]\n%x = cast index %b\nstore @1[%x+1000], %f",
    ));
    ok(&with_consts(
        "%four = iconst index 4\nfor %j = 1 to 16 step 1 {\n%k = mul %j, %four : index\n\
         %m = sub %k, %four : index\n%w = load f32x4 @0[%m]\nstore @1[%m], %w\nyield\n}",
    ));
}

#[test]
fn kernel_names_are_unique_in_a_module() {
    let m = Module {
        kernels: vec![common::relu(), common::gemm(), common::relu()],
    };
    let e = m.verify().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Verify);
    assert!(e.message.contains("kernel @relu is defined twice"), "{e}");
}
