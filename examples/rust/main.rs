//! Load a model, JIT-compile it with kiln and run it, through the public API.
//!
//!     cargo run --release --example compile_and_run [-- MODEL.onnx]
//!
//! Without a model it runs the embedded ResNet-style example, on the seeded input `kiln run`
//! uses, so the printed summary matches `kiln run`'s.

use std::collections::HashMap;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).map(PathBuf::from);
    // Import (ONNX, .kir, or the embedded default), infer shapes, verify.
    let mut graph = kiln::model::load(path.as_deref(), &HashMap::new(), &HashMap::new())?;
    // The graph optimisations `kiln run` applies (fusion, folding, NHWC layout).
    let passes = kiln::graph::passes::registry().parse("graph-opt")?;
    kiln::core::PassManager::new(passes).run(&mut graph)?;
    // Lower to the loop dialect and compile every kernel with Cranelift; one thread.
    let mut model = kiln_loop::compile(&graph, 1)?;
    let inputs = kiln::model::inputs_for(&graph, &HashMap::new())?;
    let outputs = model.run(&inputs)?;
    for (&value, tensor) in graph.outputs().iter().zip(&outputs) {
        let name = &graph.value(value).name;
        println!("{name}: {}", kiln::model::summary(tensor));
    }
    println!(
        "compiled in {:.1} ms",
        model.compile_time.as_secs_f64() * 1e3
    );
    Ok(())
}
