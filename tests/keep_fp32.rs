//! `--fp32 NAME` as a user meets it: the op runs in float on the simulator and on the
//! int8 JIT alike (bit for bit), the QDQ export leaves it in float, and importing that
//! export keeps it there.

mod common;

use common::{example, scratch};
use kiln_core::Tensor;
use std::path::Path;
use std::process::{Command, Output};

/// The residual block's output, the op the example's error report ranks among the worst.
const OP: &str = "layer2/relu2";

fn kiln(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("kiln runs");
    assert!(
        o.status.success(),
        "kiln {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `kiln run MODEL ARGS -o DIR` and its one output.
fn run(model: &str, args: &[&str], dir: &Path) -> (Tensor, String) {
    let out = dir.to_str().unwrap();
    let o = kiln(&[&["run", model, "-o", out], args].concat());
    let logits = kiln::model::read_npy(&dir.join("logits.npy")).unwrap();
    (logits, String::from_utf8_lossy(&o.stderr).into_owned())
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()
}

fn snr_db(reference: &Tensor, t: &Tensor) -> f64 {
    let (r, x) = (reference.to_f64_vec(), t.to_f64_vec());
    let signal: f64 = r.iter().map(|v| v * v).sum();
    let noise: f64 = r.iter().zip(&x).map(|(a, b)| (a - b) * (a - b)).sum();
    10.0 * (signal / noise).log10()
}

#[test]
fn a_kept_op_runs_in_float_on_every_engine_and_through_qdq() {
    let model = example("resnet_style");
    let m = model.to_str().unwrap();
    let dir = scratch("keep_fp32");
    let keep = ["--fp32", OP];

    let ir = kiln(&[&["quantize", m, "--print-ir", "--top", "1"][..], &keep].concat());
    let ir = String::from_utf8_lossy(&ir.stdout);
    assert!(
        ir.contains(&format!("quant platform \"kiln-x86\" fp32(%\"{OP}\") {{")),
        "{ir}"
    );
    let operands: Vec<&str> = ir
        .lines()
        .filter(|l| l.contains(&format!("in(%\"{OP}\",")))
        .collect();
    assert!(operands.len() >= 3, "{ir}");
    assert!(operands.iter().all(|l| l.ends_with("FP32")), "{operands:?}");

    // The JIT runs the op as the simulator does (its host step), bit for bit.
    let int8 = ["--precision", "int8"];
    let (jit, log) = run(
        m,
        &[&int8[..], &keep, &["--engine", "jit"]].concat(),
        &dir.join("j"),
    );
    let (sim, _) = run(
        m,
        &[&int8[..], &keep, &["--engine", "sim"]].concat(),
        &dir.join("s"),
    );
    assert_eq!(bits(&jit), bits(&sim));
    assert!(log.contains(&format!("{OP} (conv)")), "{log}");

    // Keeping one op changes the answer; keeping every compute op (the convs and the
    // classifier: the pooling between them then ends kiln-x86's int8 region by itself)
    // leaves nothing quantised: the float model, up to the order the kernels sum in.
    let (all, _) = run(m, &int8, &dir.join("a"));
    assert_ne!(bits(&all), bits(&sim));
    let (fp32, _) = run(m, &[], &dir.join("f"));
    let every: Vec<&str> = [
        "stem/relu",
        "layer1/relu1",
        "layer1/relu2",
        "layer2/relu1",
        "layer2/bn2",
        OP,
        "logits",
    ]
    .iter()
    .flat_map(|n| ["--fp32", n])
    .collect();
    let (float, _) = run(m, &[&int8[..], &every].concat(), &dir.join("e"));
    let (whole, none) = (snr_db(&fp32, &all), snr_db(&fp32, &float));
    assert!(
        none > 100.0,
        "every op kept: {none:.1} dB (all int8: {whole:.1} dB)"
    );

    // Exported, the op reads float weights; imported back, it is kept in fp32 again and
    // the model runs as the unit it came from (the export's channels-first pipeline).
    let qdq = dir.join("m.qdq.onnx");
    let q = qdq.to_str().unwrap();
    kiln(&[&["quantize", m, "-o", q, "--top", "1"][..], &keep].concat());
    let (imported, _) = run(
        q,
        &[&int8[..], &["--engine", "sim"]].concat(),
        &dir.join("i"),
    );
    let nchw = ["--pipeline", "graph-opt-nchw", "--engine", "sim"];
    let (unit, _) = run(m, &[&int8[..], &keep, &nchw].concat(), &dir.join("u"));
    assert_eq!(bits(&imported), bits(&unit));
}
