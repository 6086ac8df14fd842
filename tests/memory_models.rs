//! Memory planning on every test model: the checker proves each plan, the numbers are
//! printed, the arena must be close to the live-set lower bound and (on CNNs) far below the
//! naive sum; on the example models the plan is also *executed* in a real byte arena and must
//! reproduce the interpreter's outputs bit for bit.

mod common;

use kiln::onnx::{ImportOptions, load_model};
use kiln_core::{DType, PassManager, Tensor, TensorType};
use kiln_graph::memory::{self, MemoryPlan};
use kiln_graph::{Graph, Value, interp};
use std::collections::HashMap;
use std::path::PathBuf;

fn cleanup(g: &mut Graph) {
    let mut pm = PassManager::new(kiln_graph::passes::registry().parse("cleanup").unwrap());
    pm.run(g).unwrap();
}

fn models() -> Vec<(String, PathBuf)> {
    let root = common::repo_root();
    let mut v: Vec<(String, PathBuf)> = ["resnet_style", "mobilenet_v3_style", "transformer_block"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                root.join("examples/models").join(n).join("model.onnx"),
            )
        })
        .collect();
    let light = common::data_dir("light");
    common::require_dir(&light);
    let mut zoo: Vec<_> = std::fs::read_dir(&light)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().to_string(), p))
        .collect();
    zoo.sort();
    assert!(zoo.len() >= 9, "expected the 9 light models");
    v.extend(zoo);
    v
}

#[test]
fn every_model_gets_a_proven_plan_near_the_lower_bound() {
    println!(
        "{:<24} {:>14} {:>14} {:>14} {:>9} {:>9}",
        "model", "naive", "arena", "lower bound", "arena/nv", "arena/lb"
    );
    for (name, path) in models() {
        let mut g =
            load_model(&path, &ImportOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        cleanup(&mut g);
        let plan = memory::plan(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
        memory::check(&g, &plan).unwrap_or_else(|e| panic!("{name}: plan is unsafe: {e}"));
        let (nv, ar, lb) = (
            plan.naive_bytes as f64,
            plan.arena_bytes as f64,
            plan.lower_bound_bytes as f64,
        );
        println!(
            "{name:<24} {:>14} {:>14} {:>14} {:>8.1}% {:>8.1}%",
            plan.naive_bytes,
            plan.arena_bytes,
            plan.lower_bound_bytes,
            100.0 * ar / nv,
            100.0 * ar / lb
        );
        assert!(
            ar <= lb * 1.10,
            "{name}: arena {ar} > 1.10 × lower bound {lb}"
        );
        if name != "transformer_block" {
            assert!(ar <= nv * 0.5, "{name}: arena {ar} > 50 % of naive {nv}");
        }
    }
}

fn to_bytes(t: &Tensor) -> Vec<u8> {
    let size = t.dtype().size_bytes();
    let mut out = Vec::with_capacity(t.len() * size);
    for v in t.to_f64_vec() {
        match t.dtype() {
            DType::F32 => out.extend((v as f32).to_le_bytes()),
            DType::F64 => out.extend(v.to_le_bytes()),
            _ => out.extend(&(v as i64).to_le_bytes()[..size]),
        }
    }
    out
}

fn from_bytes(ty: &TensorType, b: &[u8]) -> Tensor {
    let size = ty.dtype.size_bytes();
    Tensor::from_f64_fn(ty, |i| {
        let e = &b[i * size..(i + 1) * size];
        match ty.dtype {
            DType::F32 => f32::from_le_bytes(e.try_into().unwrap()) as f64,
            DType::F64 => f64::from_le_bytes(e.try_into().unwrap()),
            d => {
                let mut w = [0u8; 8];
                w[..size].copy_from_slice(e);
                let signed = matches!(d, DType::I8 | DType::I16 | DType::I32 | DType::I64);
                let shift = 64 - 8 * size as u32;
                let raw = i64::from_le_bytes(w);
                if signed {
                    ((raw << shift) >> shift) as f64
                } else {
                    raw as u64 as f64
                }
            }
        }
    })
}

/// Runs `g` with every arena tensor stored at its planned offset in one byte arena (other
/// values in a side map). A wrong plan overwrites a live tensor and changes the outputs.
fn run_in_arena(g: &Graph, plan: &MemoryPlan, inputs: &[Tensor]) -> Vec<Tensor> {
    let mut arena = vec![0u8; plan.arena_bytes];
    let mut side: HashMap<Value, Tensor> = g
        .inputs()
        .iter()
        .copied()
        .zip(inputs.iter().cloned())
        .collect();
    for &n in &plan.order {
        let node = g.node(n);
        let ops: Vec<Option<Tensor>> = node
            .inputs()
            .iter()
            .map(|v| {
                v.map(|v| match plan.placement(v) {
                    Some(p) => from_bytes(g.ty(v).unwrap(), &arena[p.offset..p.offset + p.bytes]),
                    None => side[&v].clone(),
                })
            })
            .collect();
        let refs: Vec<Option<&Tensor>> = ops.iter().map(|t| t.as_ref()).collect();
        let outs = node.op.eval(&refs, node.outputs().len()).unwrap();
        for (&v, t) in node.outputs().iter().zip(outs) {
            match plan.placement(v) {
                Some(p) => arena[p.offset..p.offset + p.bytes].copy_from_slice(&to_bytes(&t)),
                None => {
                    side.insert(v, t);
                }
            }
        }
    }
    g.outputs().iter().map(|v| side[v].clone()).collect()
}

#[test]
fn example_models_run_correctly_inside_their_planned_arena() {
    for (name, path) in models().into_iter().take(3) {
        let mut g = load_model(&path, &ImportOptions::default()).unwrap();
        cleanup(&mut g);
        let plan = memory::plan(&g).unwrap();
        let inputs: Vec<Tensor> = g
            .inputs()
            .iter()
            .enumerate()
            .map(|(i, &v)| kiln::model::seeded_input(g.ty(v).unwrap(), i as u64 + 1))
            .collect();
        let want = interp::run(&g, &inputs).unwrap();
        let got = run_in_arena(&g, &plan, &inputs);
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            common::compare(a, b, 0.0, 0.0).unwrap_or_else(|e| panic!("{name} output {k}: {e}"));
        }
        println!(
            "{name}: {} outputs identical when run in a {}-byte arena",
            got.len(),
            plan.arena_bytes
        );
    }
}

// layout: begin
/// The plans `kiln info --pipeline graph-opt --memory` reports: after fusion and the NHWC
/// layout (fewer, larger tensors; input conversions; channels-last LRN in place) every plan
/// is still proven by the checker and near its lower bound, and the example models still
/// reproduce the interpreter bit for bit inside their arena (in the plan's own schedule).
#[test]
fn graph_opt_plans_are_proven_and_executable() {
    let registry = kiln_graph::passes::registry();
    for (i, (name, path)) in models().into_iter().enumerate() {
        let mut g = load_model(&path, &ImportOptions::default()).unwrap();
        PassManager::new(registry.parse("graph-opt").unwrap())
            .run(&mut g)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let plan = memory::plan(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
        memory::check(&g, &plan).unwrap_or_else(|e| panic!("{name}: plan is unsafe: {e}"));
        let (nv, ar, lb) = (plan.naive_bytes, plan.arena_bytes, plan.lower_bound_bytes);
        println!(
            "{name:<24} graph-opt: naive {nv:>12} arena {ar:>12} ({:.1} %) lower bound {lb:>12}",
            100.0 * ar as f64 / nv as f64
        );
        assert!(
            ar as f64 <= lb as f64 * 1.10,
            "{name}: arena {ar} > 1.10 × lower bound {lb}"
        );
        if i < 3 {
            let inputs: Vec<Tensor> = g
                .inputs()
                .iter()
                .enumerate()
                .map(|(k, &v)| kiln::model::seeded_input(g.ty(v).unwrap(), k as u64 + 1))
                .collect();
            let want = interp::run(&g, &inputs).unwrap();
            let got = run_in_arena(&g, &plan, &inputs);
            for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                common::compare(a, b, 0.0, 0.0)
                    .unwrap_or_else(|e| panic!("{name} output {k}: {e}"));
            }
        }
    }
}
// layout: end
