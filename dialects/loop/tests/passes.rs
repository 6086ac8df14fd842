//! The loop passes preserve what kernels compute (checked with the reference evaluator on
//! random inputs) and do what they are for.

mod common;

use kiln_core::{Ir, PassManager};
use kiln_loop::eval::{self, Data, Scalar};
use kiln_loop::passes::{registry, unroll::Unroll};
use kiln_loop::text::{parse_kernel, print_kernel};
use kiln_loop::*;

/// Runs a pass list on one kernel; returns the result and whether anything changed.
fn run_passes(k: &Kernel, list: &str) -> (Kernel, bool) {
    let mut m = Module {
        kernels: vec![k.clone()],
    };
    let mut pm = PassManager::new(registry().parse(list).unwrap());
    let changed = pm
        .run(&mut m)
        .unwrap_or_else(|e| panic!("{list}: {e}\n{}", print_kernel(k)));
    m.verify().unwrap();
    (m.kernels.remove(0), changed)
}

fn count(r: &Region, f: &dyn Fn(&Inst) -> bool) -> usize {
    r.insts
        .iter()
        .map(|i| {
            usize::from(f(i))
                + match &i.kind {
                    InstKind::Loop(l) => count(&l.body, f),
                    _ => 0,
                }
        })
        .sum()
}

const LISTS: [&str; 9] = [
    "loop.fold-constants",
    "loop.cse",
    "loop.dce",
    "loop.unroll",
    "loop.unroll-inner",
    "loop-opt",
    "loop.unroll,loop.unroll-inner,loop-opt",
    "loop.unroll,loop.cse,loop.dce",
    "loop.cse,loop.fold-constants,loop.cse",
];

#[test]
fn passes_preserve_results() {
    for k in common::all() {
        for list in LISTS {
            let (after, _) = run_passes(&k, list);
            // The result also survives the text format.
            let text = print_kernel(&after);
            assert_eq!(print_kernel(&parse_kernel(&text).unwrap()), text);
            for seed in 0..3 {
                let want = common::run(&k, seed);
                let got = common::run(&after, seed);
                assert!(
                    common::same(&want, &got),
                    "{list} changed the results of @{}:\n{}\n---\n{text}",
                    k.name,
                    print_kernel(&k)
                );
            }
        }
    }
}

#[test]
fn loop_opt_flattens_the_register_block() {
    let (k, changed) = run_passes(&common::gemm(), "loop-opt");
    assert!(changed);
    let text = print_kernel(&k);
    assert_eq!(
        count(&k.body, &|i| matches!(i.kind, InstKind::Loop(_))),
        0,
        "{text}"
    );
    assert_eq!(
        count(&k.body, &|i| matches!(i.kind, InstKind::Fma(..))),
        4 * 2 * 6
    );
    // All index arithmetic folded into constant offsets.
    assert_eq!(
        count(&k.body, &|i| matches!(i.kind, InstKind::Binary(..))),
        0,
        "{text}"
    );
    // One constant per distinct offset.
    let consts = count(&k.body, &|i| matches!(i.kind, InstKind::Iconst(..)));
    assert!(consts <= 48, "{consts} constants:\n{text}");
    // A second run finds nothing to do.
    let (again, changed) = run_passes(&k, "loop-opt");
    assert!(!changed);
    assert_eq!(print_kernel(&again), text);
}

#[test]
fn nothing_to_do_reports_no_change() {
    for list in LISTS {
        let (k, changed) = run_passes(&common::relu(), list);
        assert!(!changed, "{list}");
        assert_eq!(k, common::relu());
    }
}

#[test]
fn cse_merges_commutative_ops_but_not_loads_across_stores() {
    let k = common::redundant();
    let (after, changed) = run_passes(&k, "loop.cse");
    assert!(changed);
    let muls = |k: &Kernel| {
        count(&k.body, &|i| {
            matches!(i.kind, InstKind::Binary(BinOp::Mul, ..))
        })
    };
    // i*2 and 2*i merge; s*1.0 and 2*3 stay.
    assert_eq!(muls(&after), muls(&k) - 1);
    let loads = |k: &Kernel| count(&k.body, &|i| matches!(i.kind, InstKind::Load(..)));
    // The reload of x[o1] after the store to y stays.
    assert_eq!(loads(&after), loads(&k));
    let (after, _) = run_passes(&k, "loop.fold-constants,loop.cse");
    // Folding moves the +6 and -6 into displacements that cancel, so x[i*2+0] and
    // x[(2*i+6)-6] become the same load; x[o1] after the store still stays.
    assert_eq!(loads(&after), loads(&k) - 1, "{}", print_kernel(&after));
}

#[test]
fn cse_merges_loads_when_nothing_stores_between() {
    let src = "
kernel @k(@0 x: f32[8] readonly, @1 y: f32[8]) {
  %i = iconst index 0
  %a = load f32 @0[%i+1]
  %b = load f32 @0[%i+1]
  %s = for %j = 0 to 4 step 1 iter(%acc = %a) {
    %c = load f32 @0[%i+1]
    %n = add %acc, %c : f32
    yield %n
  }
  for %j = 0 to 4 step 1 {
    %d = load f32 @0[%i+1]
    store @1[%j], %d
    yield
  }
  %t = add %s, %b : f32
  store @1[%i+7], %t
}";
    let k = parse_kernel(src).unwrap();
    let (after, _) = run_passes(&k, "loop.cse");
    let text = print_kernel(&after);
    // %b and the load in the store-free loop merge into %a; the storing loop keeps its own.
    assert_eq!(
        count(&after.body, &|i| matches!(i.kind, InstKind::Load(..))),
        2,
        "{text}"
    );
    assert!(text.contains("%8 = add %2, %1 : f32"), "{text}");
    for seed in 0..3 {
        assert!(common::same(
            &common::run(&k, seed),
            &common::run(&after, seed)
        ));
    }
}

#[test]
fn dce_removes_dead_chains_and_store_free_loops() {
    let k = common::redundant();
    let (after, changed) = run_passes(&k, "loop.dce");
    assert!(changed);
    let text = print_kernel(&after);
    assert!(!text.contains("call exp"), "{text}");
    assert!(!text.contains("to 100"), "{text}");
    assert_eq!(
        count(&after.body, &|i| matches!(i.kind, InstKind::Loop(_))),
        1
    );
    // Stores stay, and so does everything they read.
    let stores = |k: &Kernel| count(&k.body, &|i| matches!(i.kind, InstKind::Store(..)));
    assert_eq!(stores(&after), stores(&k));
}

#[test]
fn unroll_threads_carried_values() {
    let src = "
kernel @k(@0 x: f32[16] readonly, @1 y: f32[2]) {
  %z = fconst 0.0
  %one = fconst 1.0
  %s, %c = for %i = 1 to 16 step 2 iter(%acc = %z, %cnt = %z) {
    %v = load f32 @0[%i]
    %n = add %acc, %v : f32
    %m = add %cnt, %one : f32
    yield %n, %m
  }
  %o = iconst index 0
  store @1[%o], %s
  store @1[%o+1], %c
}";
    let k = parse_kernel(src).unwrap();
    let (after, changed) = run_passes(&k, "loop.unroll");
    assert!(changed);
    let text = print_kernel(&after);
    assert_eq!(
        count(&after.body, &|i| matches!(i.kind, InstKind::Loop(_))),
        0,
        "{text}"
    );
    assert_eq!(
        count(&after.body, &|i| matches!(i.kind, InstKind::Load(..))),
        8
    );
    assert!(text.contains("iconst index 15"), "{text}");
    let mut bufs = common::inputs(&after, 7);
    eval::run(&after, &mut bufs).unwrap();
    let Data::F32(x) = &bufs[0] else { panic!() };
    let Data::F32(y) = &bufs[1] else { panic!() };
    let want: f32 = (1..16).step_by(2).map(|i| x[i]).fold(0.0, |a, b| a + b);
    assert_eq!(y[0], want);
    assert_eq!(y[1], 8.0);
}

#[test]
fn unroll_limits_and_empty_loops() {
    let src = "
kernel @k(@0 y: f32[16]) {
  %z = fconst 2.0
  %r = for %i = 5 to 5 step 1 iter(%a = %z) {
    %b = add %a, %a : f32
    yield %b
  }
  %o = iconst index 0
  store @0[%o], %r
  for %i = 0 to 9 step 1 {
    store @0[%i+1], %z
    yield
  }
  parallel %i = 0 to 2 step 1 {
    store @0[%i+10], %z
    yield
  }
}";
    let k = parse_kernel(src).unwrap();
    let (after, _) = run_passes(&k, "loop.unroll");
    let text = print_kernel(&after);
    // The empty loop is gone, its result is its initial value; 9 iterations and the parallel
    // loop stay.
    assert!(text.contains("store @0[%1], %0"), "{text}");
    assert!(text.contains("for %2 = 0 to 9 step 1"), "{text}");
    assert!(text.contains("parallel"), "{text}");
    // A larger limit unrolls the 9-iteration loop.
    let mut m = Module { kernels: vec![k] };
    let mut pm = PassManager::new(vec![Box::new(Unroll {
        max_trip: 16,
        ..Unroll::default()
    })]);
    pm.run(&mut m).unwrap();
    let text = print_kernel(&m.kernels[0]);
    assert!(!text.contains("for "), "{text}");
    // A body too big for the instruction budget stays a loop.
    let mut pm = PassManager::new(vec![Box::new(Unroll {
        max_trip: 8,
        max_insts: 4,
    })]);
    let mut m = Module {
        kernels: vec![common::gemm()],
    };
    pm.run(&mut m).unwrap();
    let text = print_kernel(&m.kernels[0]);
    assert!(text.contains("to 6 step 1 iter"), "{text}");
}

#[test]
fn fold_constants_uses_evaluator_semantics() {
    let (k, changed) = run_passes(&common::mixed(), "loop.fold-constants,loop.dce");
    assert!(changed);
    let text = print_kernel(&k);
    // (i8: 127 + 1 = -128) → i16 × -300 wraps → i32 ÷ -7 and rem → f32 → fma → floor.
    let want = (((-27136i32 / -7 + -27136 % -7) as f32).mul_add(0.5, 0.5)).floor();
    assert!(text.contains(&format!("fconst {want:?}")), "{want}\n{text}");
    // u8 250 + 10 wraps to 4, 4 < 10, the select picks 1.0 (the first store of 1.0).
    assert!(text.contains("store @5[%"), "{text}");
    // Division by zero is left for run time.
    let src = "
kernel @k(@0 y: i32[1]) {
  %a = iconst i32 7
  %z = iconst i32 0
  %o = iconst index 0
  %d = div %a, %z : i32
  store @0[%o], %d
}";
    let (k, changed) = run_passes(&parse_kernel(src).unwrap(), "loop.fold-constants");
    assert!(!changed);
    assert!(print_kernel(&k).contains("div"));
}

#[test]
fn evaluator_semantics() {
    use BinOp::*;
    let b = |op, t, x: i64, y: i64| eval::binary(op, t, Scalar::I(x), Scalar::I(y)).unwrap();
    assert_eq!(b(Add, Type::I8, 127, 1), Scalar::I(-128));
    assert_eq!(b(Add, Type::U8, 250, 10), Scalar::I(4));
    assert_eq!(b(Max, Type::U8, 200, 10), Scalar::I(200));
    assert_eq!(b(Shr, Type::I32, -8, 1), Scalar::I(-4));
    assert_eq!(b(Shr, Type::U8, 0x80, 33), Scalar::I(0x40));
    assert_eq!(b(Shl, Type::I16, 1, 15), Scalar::I(-32768));
    assert_eq!(b(Rem, Type::I32, i32::MIN.into(), -1), Scalar::I(0));
    assert!(eval::binary(Div, Type::I32, Scalar::I(i32::MIN.into()), Scalar::I(-1)).is_err());
    assert!(eval::binary(Div, Type::I32, Scalar::I(1), Scalar::I(0)).is_err());
    let f = |op, x: f32, y: f32| match eval::binary(op, Type::F32, Scalar::F(x), Scalar::F(y)) {
        Ok(Scalar::F(r)) => r,
        r => panic!("{r:?}"),
    };
    assert_eq!(f(Min, 0.0, -0.0).to_bits(), (-0.0f32).to_bits());
    assert_eq!(f(Max, -0.0, 0.0).to_bits(), 0.0f32.to_bits());
    assert!(f(Max, f32::NAN, 1.0).is_nan());
    assert_eq!(
        eval::cast(Type::F32, Type::I8, Scalar::F(1e9)),
        Scalar::I(127)
    );
    assert_eq!(
        eval::cast(Type::F32, Type::I32, Scalar::F(f32::NAN)),
        Scalar::I(0)
    );
    assert_eq!(
        eval::cast(Type::F32, Type::U8, Scalar::F(-3.7)),
        Scalar::I(0)
    );
    assert_eq!(
        eval::cast(Type::Index, Type::I16, Scalar::I(70000)),
        Scalar::I(4464)
    );
    assert_eq!(
        eval::unary(UnOp::Nearest, Type::F32, Scalar::F(2.5)),
        Scalar::F(2.0)
    );
    let erf = eval::call(Helper::Erf, &[0.5]);
    assert!((erf - 0.520_499_9).abs() < 1e-6, "{erf}");
    let erf = eval::call(Helper::Erf, &[-3.0]);
    assert!((erf + 0.999_977_9).abs() < 1e-6, "{erf}");
    let mut lanes = [Scalar::I(0); 16];
    lanes[0] = Scalar::F(1.0);
    assert_eq!(
        eval::bitcast(Type::F32, Type::I32, &lanes)[0],
        Scalar::I(0x3f80_0000)
    );
}

#[test]
fn evaluator_rejects_bad_runs() {
    let k = common::relu();
    let mut bufs = vec![Data::F32(vec![0.0; 64])];
    assert!(
        eval::run(&k, &mut bufs)
            .unwrap_err()
            .message
            .contains("takes 2 buffers")
    );
    let mut bufs = vec![Data::F32(vec![0.0; 64]), Data::I32(vec![0; 64])];
    let e = eval::run(&k, &mut bufs).unwrap_err();
    assert!(
        e.message.contains("buffer @1 is f32[64], given i32[64]"),
        "{e}"
    );
    let src = "
kernel @oob(@0 y: f32[8]) {
  // %i + %i has two varying operands: the verifier does not know its range.
  %z = fconst 0.0
  %v = splat f32x4 %z
  for %i = 0 to 8 step 2 {
    %j = add %i, %i : index
    store @0[%j], %v
    yield
  }
}";
    let k = parse_kernel(src).unwrap();
    let mut bufs = vec![Data::F32(vec![0.0; 8])];
    let e = eval::run(&k, &mut bufs).unwrap_err();
    assert_eq!(e.kind, kiln_core::ErrorKind::Eval);
    assert!(
        e.message.contains("`store @0[%3], %1`") && e.message.contains("at 8+0 is outside @0"),
        "{e}"
    );
}

#[test]
fn parallel_chunks_cover_the_whole_run() {
    let k = common::relu();
    let whole = common::run(&k, 3);
    let mut split = common::inputs(&k, 3);
    for chunk in [(0, 16), (16, 40), (40, 64)] {
        eval::run_chunk(&k, &mut split, Some(chunk)).unwrap();
    }
    assert!(common::same(&whole, &split));
    let mut part = common::inputs(&k, 3);
    eval::run_chunk(&k, &mut part, Some((0, 16))).unwrap();
    assert!(!common::same(&whole, &part));
}

#[test]
fn passes_reject_malformed_input() {
    let mut k = common::relu();
    k.types.truncate(2);
    for list in LISTS {
        let mut m = Module {
            kernels: vec![k.clone()],
        };
        let e = PassManager::new(registry().parse(list).unwrap())
            .run(&mut m)
            .unwrap_err();
        assert_eq!(e.kind, kiln_core::ErrorKind::Verify, "{list}: {e}");
        assert!(e.message.contains("in pass loop."), "{list}: {e}");
    }
}

#[test]
fn unroll_inner_keeps_a_remainder_loop() {
    // The gemm's k loop runs 6 times: 4 unrolled, 2 left in a remainder loop.
    let (k, changed) = run_passes(&common::gemm(), "loop.unroll-inner");
    assert!(changed);
    let text = print_kernel(&k);
    assert!(text.contains("= 0 to 4 step 4 iter("), "{text}");
    assert!(text.contains("= 4 to 6 step 1 iter("), "{text}");
    assert_eq!(count(&k.body, &|i| matches!(i.kind, InstKind::Fma(..))), 5);
    // Unroll-inner then loop-opt: everything flattens to 48 fmas.
    let (k, _) = run_passes(&common::gemm(), "loop.unroll-inner,loop-opt");
    assert_eq!(count(&k.body, &|i| matches!(i.kind, InstKind::Fma(..))), 48);
    for seed in 0..3 {
        assert!(common::same(
            &common::run(&common::gemm(), seed),
            &common::run(&k, seed)
        ));
    }
}
