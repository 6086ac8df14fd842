//! Ops the user keeps in fp32 (`QuantGraph::keep_fp32`): how a name finds its ops, what
//! is refused, and that the text form carries the choice.

use kiln_core::{Ir, PassManager};
use kiln_quant::platform::Dispatch;
use kiln_quant::{QuantGraph, passes, text};

/// Two convs fused from one source node (`stem`), and a third one of its own.
const SRC: &str = r#"graph @g(%x: f32[1,2,4,4]) -> (f32[1,2,4,4]) {
  %w = const f32[2,2,1,1] dense<[1.0, 0.5, -0.5, 1.0]>
  %a = graph.conv(%x, %w) : f32[1,2,4,4] loc("stem")
  %w2 = const f32[2,2,1,1] dense<[1.0, 0.0, 0.0, 1.0]>
  %b = graph.conv(%a, %w2) {act="relu"} : f32[1,2,4,4] loc("stem")
  %w3 = const f32[2,2,1,1] dense<[0.5, 0.0, 0.0, 0.5]>
  %c = graph.conv(%b, %w3) : f32[1,2,4,4] loc("head")
  return %c
}
"#;

fn unit() -> QuantGraph {
    text::parse(SRC).unwrap()
}

fn kept(q: &QuantGraph) -> Vec<String> {
    q.fp32_ops()
        .into_iter()
        .map(|n| q.graph.value(q.graph.node(n).outputs()[0]).name.clone())
        .collect()
}

#[test]
fn a_name_finds_the_op_of_a_result_or_every_op_of_a_source_node() {
    let mut q = unit();
    assert_eq!(q.keep_fp32("b").unwrap().len(), 1);
    assert_eq!(kept(&q), ["b"]);
    let mut q = unit();
    assert_eq!(q.keep_fp32("stem").unwrap().len(), 2);
    assert_eq!(kept(&q), ["a", "b"]);
    let c = q.graph.producer(q.graph.outputs()[0]).unwrap();
    assert_eq!(q.dispatch(c), Dispatch::Int8);
    q.keep_fp32("head").unwrap();
    assert_eq!(q.dispatch(c), Dispatch::Fp32);
}

#[test]
fn unknown_names_and_constants_are_refused() {
    let mut q = unit();
    let e = q.keep_fp32("nope").unwrap_err();
    assert!(e.message.contains("no op named 'nope'"), "{e}");
    let e = q.keep_fp32("w2").unwrap_err();
    assert!(e.message.contains("'w2' is a constant"), "{e}");
    assert!(q.fp32_ops().is_empty());
}

#[test]
fn the_text_form_lists_kept_ops_and_quant_opt_leaves_them_in_float() {
    let mut q = unit();
    q.keep_fp32("b").unwrap();
    PassManager::new(passes::registry().parse(passes::QUANT_OPT).unwrap())
        .run(&mut q)
        .unwrap();
    let printed = q.print();
    assert!(
        printed.contains("quant platform \"kiln-x86\" fp32(%b) {"),
        "{printed}"
    );
    // Every TQC of %b is FP32; %a and %c still quantise their operands.
    for line in printed.lines().filter(|l| l.contains("in(%b,")) {
        assert!(line.ends_with("FP32"), "{line}");
    }
    assert!(
        printed
            .lines()
            .any(|l| l.contains("in(%c, 0)") && l.contains("ACTIVATED")),
        "{printed}"
    );
    let again = text::parse(&printed).unwrap();
    assert_eq!(again.print(), printed);
    assert_eq!(kept(&again), ["b"]);
}
