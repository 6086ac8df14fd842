//! `Compiled::run_observed`: every node result of an fp32 program is handed over once, as
//! soon as it is complete, and equals what the reference interpreter observes (up to the
//! kernels' f32 rounding). Calibration relies on both: it reads each activation from the
//! arena before a later step reuses that memory.

use kiln_core::{PassManager, Rng, Tensor};
use kiln_graph::interp::Interpreter;
use kiln_graph::{Graph, Value};
use std::collections::HashMap;

/// A graph whose memory plan must reuse buffers: a chain of convs and element-wise ops,
/// with a value read long after it was made (the residual) and an in-place candidate.
const SRC: &str = "graph @g(%x: f32[1,4,6,6]) -> (?) {
  %w1 = const f32[8,4,3,3] random(seed=1, min=-1.0, max=1.0)
  %a = graph.conv(%x, %w1) {kernel_shape=[3,3], pads=[1,1,1,1]} : ?
  %b = graph.relu(%a) : ?
  %w2 = const f32[8,8,1,1] random(seed=2, min=-1.0, max=1.0)
  %c = graph.conv(%b, %w2) {kernel_shape=[1,1]} : ?
  %d = graph.sigmoid(%c) : ?
  %e = graph.mul(%d, %b) : ?
  %f = graph.add(%e, %a) : ?
  %p = graph.max_pool(%f) {kernel_shape=[2,2], strides=[2,2]} : ?
  %y = graph.flatten(%p) {axis=1} : ?
  return %y
}
";

fn graph() -> Graph {
    let mut g = kiln_graph::text::parse(SRC).unwrap();
    let mut pm = PassManager::new(
        kiln_graph::passes::registry()
            .parse("graph.infer-shapes")
            .unwrap(),
    );
    pm.run(&mut g).unwrap();
    g
}

#[test]
fn every_result_is_observed_once_and_equals_the_interpreter() {
    let g = graph();
    let mut rng = Rng::new(3);
    let ty = g.ty(g.inputs()[0]).unwrap().clone();
    let x = Tensor::from_f64_fn(&ty, |_| rng.next_f32() as f64 * 2.0 - 1.0);
    let mut want: HashMap<Value, Tensor> = HashMap::new();
    Interpreter::new(&g)
        .unwrap()
        .run_observed(std::slice::from_ref(&x), |v, t| {
            if !kiln_quant::ir::is_const(&g, v) {
                want.insert(v, t.clone());
            }
        })
        .unwrap();
    for threads in [1, 2] {
        let prog = kiln_loop::program::build(&g).unwrap();
        let mut c = kiln_loop::exec::Compiled::new(prog, threads).unwrap();
        let mut got: HashMap<Value, Tensor> = HashMap::new();
        c.run_observed(std::slice::from_ref(&x), &mut |v, t| {
            assert!(got.insert(v, t.clone()).is_none(), "{v:?} observed twice");
        })
        .unwrap();
        assert_eq!(
            got.keys().collect::<std::collections::BTreeSet<_>>(),
            want.keys().collect(),
            "the same values"
        );
        for (v, w) in &want {
            let (a, b) = (got[v].as_f32().unwrap(), w.as_f32().unwrap());
            assert_eq!(a.shape(), b.shape());
            for (p, q) in a.iter().zip(b.iter()) {
                assert!(
                    (p - q).abs() <= 1e-4 * (1.0 + q.abs()),
                    "{}: {p} vs {q}",
                    g.value(*v).name
                );
            }
        }
    }
}
