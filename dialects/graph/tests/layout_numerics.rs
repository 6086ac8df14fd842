//! `graph.layout` must not change what a graph computes: every layout filetest, and graphs
//! covering each layout-agnostic op the pass pushes conversions through, run through the
//! interpreter before and after the pass (and after `graph-opt`, which ends with it) on
//! seeded inputs, and must agree within 1e-5 relative. The number of transposes left must
//! be the statistic the pass reports.

use kiln_core::PassManager;
use kiln_graph::{Graph, Op, passes, text};

mod common;

const TOL: f64 = 1e-5;

fn lists(list: &str) -> Vec<String> {
    vec![list.to_string()]
}

fn count(g: &Graph, name: &str) -> usize {
    g.node_ids()
        .into_iter()
        .filter(|&n| g.node(n).op.name() == name)
        .count()
}

/// Runs `graph.layout` once on `src`; returns the graph and the conversions it reported.
fn laid_out(label: &str, src: &str) -> (Graph, u64) {
    let mut g = text::parse(src).unwrap_or_else(|e| panic!("{label}: {e}"));
    let mut pm = PassManager::new(passes::registry().parse("graph.layout").unwrap());
    pm.run(&mut g).unwrap_or_else(|e| panic!("{label}: {e}"));
    let inserted = pm
        .statistics()
        .iter()
        .find(|s| s.1 == "conversions inserted")
        .map_or(0, |s| s.2);
    (g, inserted)
}

#[test]
fn layout_filetests_keep_semantics() {
    let mut ran = 0;
    for (label, src) in common::filetests(&["layout"]) {
        if src.contains("// ERROR:") {
            continue;
        }
        common::check(&label, &src, &common::run_lines(&src), TOL);
        ran += 1;
    }
    assert!(ran >= 4, "expected the layout filetests, ran {ran}");
}

/// Each graph exercises one kind of op the pass flips, between two convs so that it is
/// inside a region; `want` is the conversions that must remain.
const REGIONS: &[(&str, &str, u64)] = &[
    (
        "prelu slope and a residual",
        "graph @g(%x: f32[1,3,6,6], %y: f32[1,4,6,6]) -> (f32[1,4,6,6]) {
  %w = const f32[4,3,3,3] random(seed=1, min=-1.0, max=1.0)
  %s = const f32[4,1,1] random(seed=2, min=-1.0, max=1.0)
  %c = graph.conv(%x, %w, _, %y, %s) {pads=[1,1,1,1], act=\"prelu\"} : f32[1,4,6,6]
  return %c
}",
        3,
    ),
    (
        "batch norm, lrn, average pool, clip between convs",
        "graph @g(%x: f32[1,3,8,8]) -> (f32[1,2,3,3]) {
  %w = const f32[4,3,3,3] random(seed=1, min=-1.0, max=1.0)
  %c = graph.conv(%x, %w) : f32[1,4,6,6]
  %g = const f32[4] random(seed=2, min=0.5, max=1.5)
  %b = const f32[4] random(seed=3, min=-1.0, max=1.0)
  %m = const f32[4] random(seed=4, min=-1.0, max=1.0)
  %v = const f32[4] random(seed=5, min=0.5, max=1.5)
  %bn = graph.batch_normalization(%c, %g, %b, %m, %v) : f32[1,4,6,6]
  %l = graph.lrn(%bn) {size=3} : f32[1,4,6,6]
  %lo = const f32[] dense<[-0.5]>
  %hi = const f32[] dense<[0.5]>
  %k = graph.clip(%l, %lo, %hi) : f32[1,4,6,6]
  %a = graph.average_pool(%k) {kernel_shape=[2,2], strides=[2,2], count_include_pad=1} : f32[1,4,3,3]
  %w2 = const f32[2,4,1,1] random(seed=6, min=-1.0, max=1.0)
  %c2 = graph.conv(%a, %w2) : f32[1,2,3,3]
  return %c2
}",
        2,
    ),
    (
        "inception-style concat of branches, where and eltwise_sum",
        "graph @g(%x: f32[1,3,5,5]) -> (f32[1,4,5,5]) {
  %w1 = const f32[2,3,1,1] random(seed=1, min=-1.0, max=1.0)
  %w3 = const f32[2,3,3,3] random(seed=2, min=-1.0, max=1.0)
  %a = graph.conv(%x, %w1) {act=\"relu\"} : f32[1,2,5,5]
  %b = graph.conv(%x, %w3) {pads=[1,1,1,1]} : f32[1,2,5,5]
  %cat = graph.concat(%a, %b) {axis=1} : f32[1,4,5,5]
  %z = const f32[1,4,1,1] random(seed=3, min=-1.0, max=1.0)
  %pos = graph.greater(%cat, %z) : bool[1,4,5,5]
  %sel = graph.where(%pos, %cat, %z) : f32[1,4,5,5]
  %e = graph.eltwise_sum(%sel, %cat) {coeffs=[0.5, 2.0]} : f32[1,4,5,5]
  %w4 = const f32[4,4,1,1] random(seed=4, min=-1.0, max=1.0)
  %c = graph.conv(%e, %w4) : f32[1,4,5,5]
  return %c
}",
        2,
    ),
    (
        "split, resize (scales and spatial axes) and slice",
        "graph @g(%x: f32[1,3,4,4]) -> (f32[1,2,6,6]) {
  %w = const f32[4,3,1,1] random(seed=1, min=-1.0, max=1.0)
  %c = graph.conv(%x, %w) : f32[1,4,4,4]
  %p, %q = graph.split(%c) {axis=1, num_outputs=2} : f32[1,2,4,4], f32[1,2,4,4]
  %r = graph.relu(%p) : f32[1,2,4,4]
  %sc = const f32[4] dense<[1.0, 1.0, 2.0, 2.0]>
  %up = graph.resize(%q, _, %sc) {mode=\"linear\"} : f32[1,2,8,8]
  %st = const i64[1] dense<[0]>
  %en = const i64[1] dense<[1]>
  %ax = const i64[1] dense<[1]>
  %sl = graph.slice(%up, %st, %en, %ax) : f32[1,1,8,8]
  %sc2 = const f32[2] dense<[2.0, 2.0]>
  %rr = graph.resize(%r, _, %sc2) {axes=[2,3]} : f32[1,2,8,8]
  %cat = graph.concat(%rr, %sl) {axis=1} : f32[1,3,8,8]
  %w2 = const f32[2,3,3,3] random(seed=2, min=-1.0, max=1.0)
  %c2 = graph.conv(%cat, %w2) : f32[1,2,6,6]
  return %c2
}",
        2,
    ),
    (
        "depthwise conv1d and a global max pool result returned",
        "graph @g(%x: f32[2,4,9]) -> (f32[2,4,1]) {
  %w = const f32[4,1,3] random(seed=1, min=-1.0, max=1.0)
  %c = graph.conv(%x, %w) {group=4, strides=[2]} : f32[2,4,4]
  %t = graph.tanh(%c) : f32[2,4,4]
  %g = graph.global_max_pool(%t) : f32[2,4,1]
  return %g
}",
        1,
    ),
    (
        "a conv read twice by one mul, and by a layout-sensitive softmax",
        "graph @g(%x: f32[1,2,4,4]) -> (f32[1,3,4,4], f32[1,3,4,4]) {
  %w = const f32[3,2,1,1] random(seed=1, min=-1.0, max=1.0)
  %c = graph.conv(%x, %w) : f32[1,3,4,4]
  %sq = graph.mul(%c, %c) : f32[1,3,4,4]
  %sm = graph.softmax(%c) {axis=1} : f32[1,3,4,4]
  return %sq, %sm
}",
        2,
    ),
];

#[test]
fn regions_keep_semantics_and_report_their_conversions() {
    for &(label, src, want) in REGIONS {
        common::check(label, src, &lists("graph.layout"), TOL);
        let (g, inserted) = laid_out(label, src);
        assert_eq!(
            count(&g, "transpose") as u64,
            inserted,
            "{label}: the statistic must count the transposes left\n{}",
            text::print(&g)
        );
        assert_eq!(inserted, want, "{label}:\n{}", text::print(&g));
        assert!(
            g.node_ids().into_iter().any(|n| match &g.node(n).op {
                Op::Conv(c) => c.layout.is_nhwc(),
                _ => false,
            }),
            "{label}: no conv went channels last"
        );
    }
}

#[test]
fn graph_opt_ends_channels_last_and_keeps_semantics() {
    // Conv→BN→Relu→Add(x) fuses first, then the fused conv goes NHWC; a second graph-opt
    // run changes nothing.
    let src = "graph @g(%x: f32[1,4,6,6]) -> (f32[1,4]) {
  %w = const f32[4,4,3,3] random(seed=1, min=-1.0, max=1.0)
  %c = graph.conv(%x, %w) {pads=[1,1,1,1]} : f32[1,4,6,6]
  %g = const f32[4] random(seed=2, min=0.5, max=1.5)
  %b = const f32[4] random(seed=3, min=-1.0, max=1.0)
  %m = const f32[4] random(seed=4, min=-1.0, max=1.0)
  %v = const f32[4] random(seed=5, min=0.5, max=1.5)
  %bn = graph.batch_normalization(%c, %g, %b, %m, %v) : f32[1,4,6,6]
  %s = graph.add(%bn, %x) : f32[1,4,6,6]
  %r = graph.relu(%s) : f32[1,4,6,6]
  %p = graph.max_pool(%r) {kernel_shape=[2,2], strides=[2,2]} : f32[1,4,3,3]
  %gap = graph.global_average_pool(%p) : f32[1,4,1,1]
  %f = graph.flatten(%gap) : f32[1,4]
  return %f
}";
    let (before, after) = common::check("graph-opt", src, &lists("graph-opt"), TOL);
    assert!(
        after < before,
        "graph-opt removed nothing: {before} → {after}"
    );
    let mut g = text::parse(src).unwrap();
    common::run_lists("graph-opt", &mut g, &lists("graph-opt"));
    let printed = text::print(&g);
    assert_eq!(count(&g, "conv"), 1, "{printed}");
    assert_eq!(
        count(&g, "transpose"),
        1,
        "only the input converts:\n{printed}"
    );
    assert!(printed.contains("layout=\"nhwc\""), "{printed}");
}
