use super::*;
use crate::text::parse;

/// Plans `src`, proves the plan with the checker, and returns it.
fn planned(src: &str) -> (crate::Graph, MemoryPlan) {
    let g = parse(src).unwrap();
    let p = plan(&g).unwrap();
    check(&g, &p).unwrap();
    (g, p)
}

fn value(g: &crate::Graph, name: &str) -> crate::Value {
    (0..g.num_values() as u32)
        .map(crate::Value)
        .find(|&v| g.value(v).name == name)
        .unwrap()
}

fn pairs(g: &crate::Graph, p: &MemoryPlan) -> Vec<(String, String)> {
    p.in_place
        .iter()
        .map(|&(a, b)| (g.value(a).name.clone(), g.value(b).name.clone()))
        .collect()
}

const KIB: usize = 1024;

#[test]
fn chain_reuses_every_other_buffer() {
    let (g, p) = planned(
        "graph @chain(%x: f32[1,256]) -> (f32[1,256]) {
          %a = graph.softmax(%x) : f32[1,256]
          %b = graph.softmax(%a) : f32[1,256]
          %c = graph.softmax(%b) : f32[1,256]
          %d = graph.softmax(%c) : f32[1,256]
          return %d
        }",
    );
    assert_eq!(p.tensors.len(), 3, "the output is external");
    assert_eq!(p.naive_bytes, 3 * KIB);
    assert_eq!(p.lower_bound_bytes, 2 * KIB);
    assert_eq!(p.arena_bytes, 2 * KIB);
    assert_eq!(p.offset(value(&g, "a")), p.offset(value(&g, "c")));
    assert_ne!(p.offset(value(&g, "a")), p.offset(value(&g, "b")));
    assert!(p.in_place.is_empty(), "softmax is never in place");
    assert_eq!(p.offset(value(&g, "d")), None);
}

#[test]
fn diamond_keeps_both_branches_apart_and_joins_in_place() {
    let (g, p) = planned(
        "graph @diamond(%x: f32[1,256]) -> (f32[1,256]) {
          %a = graph.softmax(%x) : f32[1,256]
          %b = graph.softmax(%a) : f32[1,256]
          %c = graph.softmax(%a) : f32[1,256]
          %d = graph.add(%b, %c) : f32[1,256]
          %e = graph.softmax(%d) : f32[1,256]
          return %e
        }",
    );
    // a, b and c are all live while c is computed.
    assert_eq!(p.lower_bound_bytes, 3 * KIB);
    assert_eq!(p.arena_bytes, 3 * KIB);
    assert_eq!(p.naive_bytes, 4 * KIB);
    assert_eq!(pairs(&g, &p), vec![("b".into(), "d".into())]);
    assert_eq!(p.offset(value(&g, "b")), p.offset(value(&g, "d")));
}

#[test]
fn residual_block_runs_activations_and_the_skip_add_in_place() {
    let (g, p) = planned(
        "graph @res(%x: f32[1,4,8,8]) -> (f32[1,4,8,8]) {
          %w1 = const f32[4,4,3,3] random(seed=1, min=-1.0, max=1.0)
          %w2 = const f32[4,4,3,3] random(seed=2, min=-1.0, max=1.0)
          %h = graph.relu(%x) : f32[1,4,8,8]
          %c1 = graph.conv(%h, %w1) {pads=[1,1,1,1]} : f32[1,4,8,8]
          %r = graph.relu(%c1) : f32[1,4,8,8]
          %c2 = graph.conv(%r, %w2) {pads=[1,1,1,1]} : f32[1,4,8,8]
          %s = graph.add(%c2, %h) : f32[1,4,8,8]
          %y = graph.relu(%s) : f32[1,4,8,8]
          return %y
        }",
    );
    let t = 4 * 8 * 8 * 4;
    assert_eq!(p.naive_bytes, 5 * t, "h, c1, r, c2, s");
    assert_eq!(
        pairs(&g, &p),
        vec![("c1".into(), "r".into()), ("c2".into(), "s".into())]
    );
    // The skip tensor h stays live across the block beside one working buffer... and the
    // conv reads one buffer while writing another.
    assert_eq!(p.lower_bound_bytes, 3 * t);
    assert_eq!(p.arena_bytes, 3 * t);
    assert!(p.arena_bytes * 2 <= p.naive_bytes + t);
    // Constants take schedule steps but no arena space.
    assert!(p.placement(value(&g, "w1")).is_none());
}

#[test]
fn in_place_relu_chain_is_one_buffer() {
    let (g, p) = planned(
        "graph @chain(%x: f32[1,256]) -> (f32[256]) {
          %a = graph.softmax(%x) : f32[1,256]
          %b = graph.relu(%a) : f32[1,256]
          %c = graph.sigmoid(%b) : f32[1,256]
          %shape = const i64[1] dense<[256]>
          %d = graph.reshape(%c, %shape) : f32[256]
          %e = graph.tanh(%d) : f32[256]
          %f = graph.softmax(%e) : f32[256]
          return %f
        }",
    );
    assert_eq!(p.naive_bytes, 5 * KIB);
    assert_eq!(p.arena_bytes, KIB);
    assert_eq!(p.lower_bound_bytes, KIB);
    assert_eq!(p.buffers.len(), 1);
    assert_eq!(p.buffers[0].members.len(), 5);
    assert_eq!(p.in_place.len(), 4);
    let _ = g;
}

#[test]
fn value_used_twice_by_one_op() {
    let (g, p) = planned(
        "graph @sq(%x: f32[1,256]) -> (f32[1,256]) {
          %a = graph.softmax(%x) : f32[1,256]
          %sq = graph.mul(%a, %a) : f32[1,256]
          %y = graph.softmax(%sq) : f32[1,256]
          return %y
        }",
    );
    assert_eq!(pairs(&g, &p), vec![("a".into(), "sq".into())]);
    assert_eq!(p.arena_bytes, KIB);

    // When `a` is read again later, `sq` must not overwrite it; the add may take either
    // dying operand and takes the first.
    let (g, p) = planned(
        "graph @sq2(%x: f32[1,256]) -> (f32[1,256]) {
          %a = graph.softmax(%x) : f32[1,256]
          %sq = graph.mul(%a, %a) : f32[1,256]
          %z = graph.add(%sq, %a) : f32[1,256]
          %y = graph.softmax(%z) : f32[1,256]
          return %y
        }",
    );
    assert_eq!(pairs(&g, &p), vec![("sq".into(), "z".into())]);
    assert_eq!(p.arena_bytes, 2 * KIB);
    assert_eq!(p.lower_bound_bytes, 2 * KIB);
}

#[test]
fn external_and_mismatched_tensors_are_never_overwritten() {
    let (g, p) = planned(
        "graph @ext(%x: f32[1,256]) -> (f32[1,256], f32[1,256]) {
          %a = graph.softmax(%x) : f32[1,256]
          %b = graph.relu(%a) : f32[1,256]
          %i = graph.relu(%x) : f32[1,256]
          %c = graph.add(%b, %i) : f32[1,256]
          %m = graph.reduce_mean(%c) : f32[1,1]
          %e = graph.add(%m, %c) : f32[1,256]
          %f = graph.cast(%e) {to=\"f64\"} : f64[1,256]
          %o = graph.cast(%f) {to=\"f32\"} : f32[1,256]
          return %a, %o
        }",
    );
    // a is a graph output (external) so b cannot overwrite it; i reads a graph input. The
    // broadcast add overwrites its full-size operand c, never the [1,1] mean; the widening
    // cast cannot be in place; the narrowing one reads f64 into f32 (different sizes).
    assert_eq!(
        pairs(&g, &p),
        vec![("b".into(), "c".into()), ("c".into(), "e".into())]
    );
    assert!(p.placement(value(&g, "a")).is_none());
}

#[test]
fn checker_rejects_overlaps_and_forged_in_place_pairs() {
    let src = "graph @chain(%x: f32[1,256]) -> (f32[1,256]) {
          %a = graph.softmax(%x) : f32[1,256]
          %b = graph.softmax(%a) : f32[1,256]
          %c = graph.relu(%b) : f32[1,256]
          %d = graph.softmax(%c) : f32[1,256]
          return %d
        }";
    let (g, p) = planned(src);
    let mut bad = p.clone();
    for t in &mut bad.tensors {
        t.offset = 0;
    }
    let e = check(&g, &bad).unwrap_err();
    assert!(e.to_string().contains("overlap"), "{e}");

    // Claiming that b overwrites a (softmax is not element-wise) is refused.
    let mut forged = p.clone();
    forged.in_place.push((value(&g, "a"), value(&g, "b")));
    let e = check(&g, &forged).unwrap_err();
    assert!(e.to_string().contains("in place"), "{e}");

    let mut small = p.clone();
    small.arena_bytes = KIB;
    assert!(check(&g, &small).is_err());
}

#[test]
fn untyped_values_are_an_error_not_a_panic() {
    let mut g = crate::Graph::new("g");
    let x = g.add_input("x", None);
    let (_, outs) = g.add_node(
        "n",
        crate::Op::from_attrs("softmax", kiln_core::Attrs::new()).unwrap(),
        vec![Some(x)],
        vec!["a".into()],
    );
    let (_, outs2) = g.add_node(
        "m",
        crate::Op::from_attrs("softmax", kiln_core::Attrs::new()).unwrap(),
        vec![Some(outs[0])],
        vec!["b".into()],
    );
    g.set_outputs(outs2);
    assert!(plan(&g).is_err());
}

#[test]
fn in_place_table() {
    let relu = crate::Op::from_attrs("relu", kiln_core::Attrs::new()).unwrap();
    let conv = crate::Op::from_attrs("conv", kiln_core::Attrs::new()).unwrap();
    let softmax = crate::Op::from_attrs("softmax", kiln_core::Attrs::new()).unwrap();
    assert!(can_run_in_place(&relu));
    assert!(!can_run_in_place(&softmax));
    let t = kiln_core::TensorType::new(kiln_core::DType::F32, vec![1, 4, 8, 8]);
    let half = kiln_core::TensorType::new(kiln_core::DType::F32, vec![1, 4, 8, 4]);
    let (a, b, w) = (crate::Value(0), crate::Value(1), crate::Value(2));
    // A conv may only overwrite its residual input, never its data input or weights...
    let fused = [Some(b), Some(w), None, Some(a)];
    assert!(in_place_fits(&conv, &fused, 3, &t, &t));
    assert!(!in_place_fits(&conv, &fused, 0, &t, &t));
    assert!(!in_place_fits(&conv, &fused, 2, &t, &t));
    assert!(!in_place_fits(&conv, &fused, 3, &half, &t));
    // ...and not even that when the residual is also the data input.
    let own = [Some(a), Some(w), None, Some(a)];
    assert!(!in_place_fits(&conv, &own, 3, &t, &t));
    assert!(in_place_fits(&relu, &[Some(a)], 0, &t, &t));
    assert!(!in_place_fits(&relu, &[Some(a)], 0, &half, &t));
    let mul = crate::Op::from_attrs("mul", kiln_core::Attrs::new()).unwrap();
    assert!(in_place_fits(&mul, &[Some(a), Some(a)], 1, &t, &t));
}

#[test]
fn channels_last_lrn_runs_in_place_channels_first_does_not() {
    let src = |layout: &str| {
        format!(
            "graph @lrn(%x: f32[1,8,8,16]) -> (f32[1,4,4,16]) {{
              %r = graph.relu(%x) : f32[1,8,8,16]
              %l = graph.lrn(%r) {{size=5{layout}}} : f32[1,8,8,16]
              %p = graph.max_pool(%l) {{kernel_shape=[2,2], strides=[2,2]{layout}}} : f32[1,4,4,16]
              return %p
            }}"
        )
    };
    let (g, p) = planned(&src(", layout=\"nhwc\""));
    assert_eq!(pairs(&g, &p), vec![("r".into(), "l".into())]);
    assert_eq!(p.arena_bytes, 4 * KIB);
    let (_, p) = planned(&src(""));
    assert!(
        p.in_place.is_empty(),
        "a channels-first LRN reads across planes"
    );
    assert_eq!(p.arena_bytes, 8 * KIB);
}

#[test]
fn last_reads_name_each_values_last_reader_and_keep_outputs() {
    let g = parse(
        "graph @diamond(%x: f32[1,8]) -> (f32[1,8], f32[1,8]) {
          %a = graph.softmax(%x) : f32[1,8]
          %b = graph.softmax(%a) : f32[1,8]
          %c = graph.softmax(%a) : f32[1,8]
          %d = graph.add(%b, %c) : f32[1,8]
          return %d, %b
        }",
    )
    .unwrap();
    let order = g.topo_order().unwrap();
    let last = last_reads(&g, &order);
    let step = |name: &str| {
        let n = g.producer(value(&g, name)).unwrap();
        order.iter().position(|&m| m == n).unwrap()
    };
    let at = |name: &str| last[value(&g, name).index()];
    assert_eq!(at("x"), step("a"));
    assert_eq!(
        at("a"),
        step("b").max(step("c")),
        "the later of its two readers"
    );
    assert_eq!(at("c"), step("d"));
    assert_eq!(at("b"), usize::MAX, "a graph output is read by the caller");
    assert_eq!(at("d"), usize::MAX);
}
