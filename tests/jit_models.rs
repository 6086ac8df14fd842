//! The JIT against the reference interpreter on the example models, as imported and after
//! `graph-opt`, with one and two threads.

mod common;

use kiln_core::PassManager;
use kiln_graph::{Graph, interp};
use kiln_loop::{exec::Compiled, program};

fn load(name: &str) -> Graph {
    let path = common::repo_root()
        .join("examples/models")
        .join(name)
        .join("model.onnx");
    kiln::model::load(Some(&path), &Default::default(), &Default::default()).unwrap()
}

fn check(name: &str, pipeline: &str, threads: usize) {
    let mut g = load(name);
    let mut pm = PassManager::new(kiln_graph::passes::registry().parse(pipeline).unwrap());
    pm.run(&mut g).unwrap();
    let inputs = kiln::model::inputs_for(&g, &Default::default()).unwrap();
    let want = interp::run(&g, &inputs).unwrap();
    let prog = program::build(&g).unwrap();
    let refs = prog.reference_ops.clone();
    let mut c = Compiled::new(prog, threads).unwrap();
    let got = c.run(&inputs).unwrap();
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        if let Err(e) = common::compare(a, b, 1e-4, 1e-5) {
            panic!(
                "{name} ({pipeline}, {threads} threads): output {k}: {e}; reference ops: {refs:?}"
            );
        }
    }
    // The same inputs in column-major order are not row-major slices: the runtime stages
    // them through its own buffers instead of reading them in place, to the same bits.
    let strided: Vec<_> = inputs
        .iter()
        .map(|t| match t {
            kiln_core::Tensor::F32(a) => {
                let mut f = ndarray::ArrayD::<f32>::zeros(ndarray::ShapeBuilder::f(a.raw_dim()));
                f.assign(a);
                kiln_core::Tensor::F32(f)
            }
            other => other.clone(),
        })
        .collect();
    let again = c.run(&strided).unwrap();
    for (k, (a, b)) in again.iter().zip(&got).enumerate() {
        assert_eq!(
            a, b,
            "{name} ({pipeline}, {threads} threads): output {k}, strided inputs"
        );
    }
    // Idle long enough for the workers to stop spinning and park, then run on other inputs
    // (the arena still holds the last results, so a chunk left undone would go unnoticed on
    // the same ones): the wake-up path must hand out every chunk.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let halved: Vec<_> = inputs
        .iter()
        .map(|t| match t {
            kiln_core::Tensor::F32(a) => kiln_core::Tensor::F32(a.mapv(|x| 0.5 * x - 0.25)),
            other => other.clone(),
        })
        .collect();
    let want = interp::run(&g, &halved).unwrap();
    let got = c.run(&halved).unwrap();
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        if let Err(e) = common::compare(a, b, 1e-4, 1e-5) {
            panic!(
                "{name} ({pipeline}, {threads} threads), after the pool parked: output {k}: {e}"
            );
        }
    }
}

#[test]
fn example_models_match_the_interpreter() {
    for name in ["resnet_style", "mobilenet_v3_style", "transformer_block"] {
        for pipeline in ["cleanup", "graph-opt"] {
            for threads in [1, 2] {
                check(name, pipeline, threads);
            }
        }
    }
}
