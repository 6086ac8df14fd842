//! The command line as a user meets it: the real `kiln` binary, its outputs, its exit codes
//! and its error messages.

mod common;

use common::scratch;

use std::path::PathBuf;
use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("kiln runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn example(name: &str) -> String {
    common::example(name).display().to_string()
}

#[test]
fn run_writes_outputs_matching_onnxruntime() {
    let out = scratch("cli_run");
    let dir = common::repo_root().join("examples/models/mobilenet_v3_style");
    let input = format!("x={}", dir.join("inputs/x.npy").display());
    let o = kiln(&[
        "run",
        &example("mobilenet_v3_style"),
        "--input",
        &input,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("logits: f32[1,10]"), "{}", stdout(&o));
    let got = kiln::model::read_npy(&out.join("logits.npy")).unwrap();
    let want = kiln::model::read_npy(&dir.join("outputs/logits.npy")).unwrap();
    common::compare(&got, &want, 1e-4, 1e-6).unwrap();
    // Nothing half-written is left behind.
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("logits.npy")]);
}

#[test]
fn run_without_a_model_uses_the_embedded_one() {
    let o = kiln(&["run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("resnet_style (embedded)"));
    assert!(stdout(&o).contains("logits: f32[1,10]"));
}

#[test]
fn opt_prints_ir_that_parses_back_and_instruments_passes() {
    let o = kiln(&[
        "opt",
        &example("transformer_block"),
        "--passes",
        "graph.fold-constants,graph.dce",
        "--print-ir-after",
        "graph.dce",
        "--time-passes",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("graph @"), "{text}");
    let g = kiln_graph::text::parse(&text).unwrap();
    assert_eq!(kiln_graph::text::print(&g), text);
    let err = stderr(&o);
    assert!(err.contains("IR after graph.dce"), "{err}");
    assert!(
        err.contains("pass execution timing") && err.contains("graph.fold-constants"),
        "{err}"
    );
}

/// Loop-dialect text goes through the loop passes and then to Cranelift IR or machine code;
/// a broadcast load feeding an FMA in a loop that carries its accumulator must fold into
/// `vbroadcastss m32` (the codegen's loop latch exists for this).
#[test]
fn opt_compiles_loop_text_to_clif_and_asm() {
    let dir = scratch("opt_loop_asm");
    let path = dir.join("k.kir");
    std::fs::write(
        &path,
        "kernel @dot(@0 a: f32[64] readonly, @1 b: f32[64] readonly, @2 c: f32[4]) {
  %0 = iconst index 0
  %1 = load f32x4 @2[%0]
  %2 = for %3 = 0 to 16 step 1 iter(%4 = %1) {
    %5 = load f32 @0[%3]
    %6 = splat f32x4 %5
    %7 = load f32x4 @1[%3]
    %8 = fma %6, %7, %4 : f32x4
    yield %8
  }
  store @2[%0], %2
}
",
    )
    .unwrap();
    let p = path.display().to_string();
    let clif = kiln(&["opt", &p, "--pipeline", "loop-opt", "--emit", "clif"]);
    assert!(clif.status.success(), "{}", stderr(&clif));
    assert!(stdout(&clif).contains("fma"), "{}", stdout(&clif));
    let asm = kiln(&["opt", &p, "--emit", "asm"]);
    assert!(asm.status.success(), "{}", stderr(&asm));
    let text = stdout(&asm);
    assert!(text.contains("; kernel @dot"), "{text}");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert!(
            text.lines()
                .any(|l| l.contains("vbroadcastss") && l.contains("(%")),
            "the broadcast load should fold into vbroadcastss m32:\n{text}"
        );
    }
}

/// The int8 GEMM's widest register tile (3 rows × 16 channels) keeps its twelve
/// accumulators, three broadcasts and one weight vector in the sixteen xmm registers: its
/// k loop (unrolled by two) is 24 `vpdpbusd`, 6 broadcasts and 8 weight loads, and touches
/// no stack slot.
#[test]
fn int8_gemm_tile_fills_the_registers_without_spilling() {
    #[cfg(target_arch = "x86_64")]
    if !std::arch::is_x86_feature_detected!("avxvnni")
        && !std::arch::is_x86_feature_detected!("avx512vnni")
    {
        eprintln!("no VNNI on this host: the pmaddwd path's tile is not checked");
        return;
    }
    let dir = scratch("int8_tile_asm");
    let path = dir.join("g.kir");
    std::fs::write(
        &path,
        "graph @g(%a: f32[96,256]) -> (?) {
  %w = const f32[256,64] random(seed=1, min=-1.0, max=1.0)
  %y = graph.matmul(%a, %w) : ?
  return %y
}
",
    )
    .unwrap();
    let p = path.display().to_string();
    let out = kiln(&["opt", &p, "--emit", "asm", "--precision", "int8"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let gemm = text
        .split("; kernel @")
        .find(|k| k.starts_with("matmul_0_gemm\n"))
        .unwrap_or_else(|| panic!("no main GEMM kernel:\n{text}"));
    let lines: Vec<&str> = gemm.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.contains("vpdpbusd"))
        .expect("dots");
    let start = (0..first)
        .rev()
        .find(|&i| lines[i].ends_with(':'))
        .expect("the k loop's block");
    let end = (first..lines.len())
        .find(|&i| lines[i].trim_start().starts_with('j'))
        .expect("the k loop's end");
    let body = &lines[start..end];
    let count = |s: &str| body.iter().filter(|l| l.contains(s)).count();
    assert_eq!(count("vpdpbusd"), 24, "{}", body.join("\n"));
    assert_eq!(count("vbroadcastss"), 6, "{}", body.join("\n"));
    assert_eq!(count("vmovups"), 8, "{}", body.join("\n"));
    assert_eq!(count("rsp") + count("rbp"), 0, "{}", body.join("\n"));
}

#[test]
fn opt_writes_ir_with_a_weights_file_that_runs() {
    let dir = scratch("cli_opt");
    let kir = dir.join("resnet.kir");
    let o = kiln(&[
        "opt",
        &example("resnet_style"),
        "--pipeline",
        "cleanup",
        "-o",
        kir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.join("resnet.kir.weights").exists());
    // The written IR runs like the ONNX model.
    let a = kiln(&["run", kir.to_str().unwrap()]);
    let b = kiln(&["run", &example("resnet_style")]);
    assert!(a.status.success(), "{}", stderr(&a));
    let logits = |o: &Output| {
        stdout(o)
            .lines()
            .find(|l| l.contains("logits"))
            .unwrap()
            .to_string()
    };
    assert_eq!(logits(&a), logits(&b));
}

#[test]
fn info_reports_json() {
    let o = kiln(&["info", &example("resnet_style"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["ops"]["conv"], 6);
    assert_eq!(j["op_count"], 23);
    assert_eq!(j["inputs"][0]["name"], "x");
    assert_eq!(j["outputs"][0]["type"], "f32[1,10]");
    assert!(j["flops"].as_u64().unwrap() > 1_000_000);
    assert_eq!(j["params"], 20298);
}

#[test]
fn bench_reports_latency_and_json() {
    let dir = scratch("cli_bench");
    let json = dir.join("bench.json");
    let o = kiln(&["bench", "--runs", "3", "--json", json.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("latency"));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(j["results"][0]["median_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(j["results"][0]["precision"], "fp32");
    assert_eq!(j["results"][0]["threads"], 1);
    assert!(j["results"][0]["compile_ms"].as_f64().unwrap() > 0.0);
    assert!(j["results"][0]["peak_fraction"].as_f64().unwrap() > 0.0);
    assert!(j["machine_peak"]["fp32_gflops_per_core"].as_f64().unwrap() > 0.0);
    // The default run measures int8 too, on the same input, with its accuracy.
    let int8 = &j["results"][1];
    assert_eq!(int8["precision"], "int8");
    assert!(int8["median_ms"].as_f64().unwrap() > 0.0);
    assert!(
        int8["accuracy"]["snr_db"].as_f64().unwrap() > 25.0,
        "{int8}"
    );
    assert!(j["machine_peak"]["int8_gops_per_core"].as_f64().unwrap() > 0.0);
    assert!(stdout(&o).contains("× fp32"), "{}", stdout(&o));
    // Against a baseline: itself passes; a baseline ten thousand times faster is flagged.
    let o = kiln(&[
        "bench",
        "--runs",
        "3",
        "--baseline",
        json.to_str().unwrap(),
        "--tolerance",
        "1000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("baseline   fp32 1T"), "{}", stdout(&o));
    let mut fast = j.clone();
    for r in fast["results"].as_array_mut().unwrap() {
        r["median_ms"] = serde_json::json!(r["median_ms"].as_f64().unwrap() / 1e4);
    }
    let fast_path = dir.join("fast.json");
    std::fs::write(&fast_path, fast.to_string()).unwrap();
    let o = kiln(&[
        "bench",
        "--runs",
        "3",
        "--baseline",
        fast_path.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("REGRESSION"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("slower than the baseline"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn profile_reports_every_kernel_in_both_precisions() {
    let dir = scratch("cli_profile");
    let (json, svg) = (dir.join("p.json"), dir.join("p.svg"));
    let o = kiln(&[
        "profile",
        &example("mobilenet_v3_style"),
        "--runs",
        "2",
        "--calib",
        "random:2",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("whole model"), "{}", stdout(&o));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let kernels = j["kernels"].as_array().unwrap();
    assert!(kernels.len() > 10);
    // Every conv of this model runs int8 kernels, each with its own accuracy.
    for k in kernels.iter().filter(|k| k["op"] == "conv") {
        assert_eq!(k["simulator_fallback"], false, "{k}");
        assert!(k["int8_ms"].as_f64().unwrap() > 0.0, "{k}");
        assert!(k["snr_db"].as_f64().unwrap() > 20.0, "{k}");
    }
    assert!(j["total"]["snr_db"].as_f64().unwrap() > 25.0);
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<rect"));
}

#[test]
fn run_engines_agree_and_opt_emits_every_level() {
    let model = example("resnet_style");
    let dir = scratch("cli_engines");
    let mut outs = Vec::new();
    for engine in ["jit", "interp"] {
        let out = dir.join(engine);
        let o = kiln(&[
            "run",
            &model,
            "--engine",
            engine,
            "--threads",
            "2",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains(&format!(
            "({})",
            if engine == "jit" {
                "jit"
            } else {
                "interpreter"
            }
        )));
        let npy = std::fs::read_dir(&out)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        outs.push(kiln::model::read_npy(&npy).unwrap());
    }
    let (a, b) = (outs[0].to_f64_vec(), outs[1].to_f64_vec());
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= 1e-4 * y.abs() + 1e-6,
            "jit {x} vs interpreter {y}"
        );
    }
    for (level, marker) in [
        ("loop", "kernel @"),
        ("clif", "function"),
        ("asm", "block0:"),
    ] {
        let o = kiln(&["opt", &model, "--pipeline", "graph-opt", "--emit", level]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains(marker), "--emit {level} lacks {marker}");
    }
}

#[test]
fn user_errors_are_one_clear_line_and_a_failure() {
    let model = example("resnet_style");
    let cases: &[(&[&str], &str)] = &[
        (&["run", "no/such/model.onnx"], "no/such/model.onnx"),
        (
            &["run", &model, "--shape", "x=1,3,banana"],
            "--shape 'x=1,3,banana'",
        ),
        (
            &["run", &model, "--shape", "y=1,3,64,64"],
            "--shape names 'y'",
        ),
        (&["run", &model, "--input", "x=missing.npy"], "missing.npy"),
        (
            &["opt", &model, "--passes", "graph.frobnicate"],
            "unknown pass or pipeline 'graph.frobnicate'",
        ),
        (&["run", &model, "--shape", "x=1,3,64"], "x"),
        (
            &["quantize", &model, "--fp32", "layer9/conv"],
            "--fp32 layer9/conv: input: no op named 'layer9/conv'",
        ),
    ];
    for (args, needle) in cases {
        let o = kiln(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = stderr(&o);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: '{needle}' not in {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn info_reports_the_memory_plan() {
    let model = example("resnet_style");
    let o = kiln(&[
        "info",
        &model,
        "--pipeline",
        "cleanup",
        "--memory",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let m = &j["memory"];
    let naive = m["naive_bytes"].as_u64().unwrap();
    let arena = m["arena_bytes"].as_u64().unwrap();
    let bound = m["lower_bound_bytes"].as_u64().unwrap();
    assert!(bound > 0 && bound <= arena && arena < naive, "{m}");
    // The rest of the JSON is unchanged.
    assert_eq!(j["op_count"], 23);

    let o = kiln(&["info", &model, "--memory"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in ["naive", "arena", "lower bound", "% of naive"] {
        assert!(text.contains(needle), "'{needle}' not in {text}");
    }
    // Without --memory nothing is planned or printed.
    let o = kiln(&["info", &model, "--json"]);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(j.get("memory").is_none());
}

// layout: begin
#[test]
fn info_reports_pass_statistics() {
    let model = example("resnet_style");
    let o = kiln(&["info", &model, "--pipeline", "graph-opt", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let stats = j["pass_statistics"].as_array().expect("pass_statistics");
    let conversions = stats
        .iter()
        .find(|s| s["pass"] == "graph.layout" && s["name"] == "conversions inserted")
        .expect("graph.layout reports its conversions");
    // resnet_style converts its NCHW input once.
    assert_eq!(conversions["value"], 1);
    let o = kiln(&["info", &model, "--pipeline", "graph-opt"]);
    assert!(stdout(&o).contains("graph.layout: conversions inserted"));
    // No pipeline, no statistics.
    let o = kiln(&["info", &model, "--json"]);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(j.get("pass_statistics").is_none());
}
// layout: end

#[test]
fn cli_reference_is_current() {
    // docs/cli.md is generated from --help (scripts/gen_cli_docs.sh); a changed option
    // without regenerating it fails here.
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md"),
    )
    .unwrap();
    for c in [
        "run", "bench", "profile", "quantize", "compile", "opt", "info",
    ] {
        let o = kiln(&[c, "--help"]);
        assert!(o.status.success());
        assert!(
            doc.contains(stdout(&o).trim_end()),
            "docs/cli.md is stale for `kiln {c}`: run scripts/gen_cli_docs.sh"
        );
    }
}

#[test]
fn quantize_draws_per_op_snr_as_svg() {
    let dir = scratch("cli_quantize_svg");
    let (svg, json) = (dir.join("err.svg"), dir.join("err.json"));
    let o = kiln(&[
        "quantize",
        &example("resnet_style"),
        "--calib",
        "random:2",
        "--eval",
        "1",
        "--layer-wise",
        "--svg",
        svg.to_str().unwrap(),
        // `--json` is `--report` under the name bench and profile use.
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Stderr is a pipe here: no progress bar, no escape code.
    assert!(!stderr(&o).contains('\x1b'), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && text.ends_with("</svg>\n"),
        "{text}"
    );
    assert_eq!(text.matches("<svg").count(), 1);
    // Every op of the report is a row, in graph order, with a graph-wise and a layer-wise bar.
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let ops = j["ops"].as_array().unwrap();
    assert!(ops.len() > 10);
    let mut at = Vec::new();
    for op in ops {
        let label = format!(
            "{} ({})",
            op["value"].as_str().unwrap(),
            op["op"].as_str().unwrap()
        );
        let pos = text.find(&format!(">{label}</text>"));
        assert!(pos.is_some(), "{label} not in the chart");
        at.push((pos, label));
    }
    assert_eq!(
        text.matches("fill=\"#1f77b4\"").count(),
        ops.len(),
        "graph-wise bars"
    );
    assert!(text.contains("fill=\"#ff7f0e\""), "layer-wise bars");
    assert!(text.contains(" dB</text>"));
    // The report's order (worst first) is not the chart's (graph order).
    let chart: Vec<_> = {
        let mut v = at.clone();
        v.sort();
        v.into_iter().map(|(_, l)| l).collect()
    };
    let report: Vec<_> = at.into_iter().map(|(_, l)| l).collect();
    assert_ne!(chart, report);
    assert!(
        chart[0].ends_with("(transpose)") || chart[0].ends_with("(conv)"),
        "{chart:?}"
    );
    // Only what was asked is in the directory: no temporary files.
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["err.json", "err.svg"]);
}

#[test]
fn unwritable_report_paths_fail_cleanly() {
    let dir = scratch("cli_unwritable");
    let missing = dir.join("no/such/dir/err.svg");
    let o = kiln(&[
        "quantize",
        "--calib",
        "random:1",
        "--eval",
        "1",
        "--svg",
        missing.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(
        err,
        format!(
            "error: cannot write {}: No such file or directory (os error 2)\n",
            missing.display()
        )
    );
    // A directory where the file should go: the rename fails after the temporary file was
    // written, and the temporary file is removed.
    let taken = dir.join("taken.svg");
    std::fs::create_dir_all(taken.join("inside")).unwrap();
    let o = kiln(&[
        "quantize",
        "--calib",
        "random:1",
        "--eval",
        "1",
        "--svg",
        taken.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("error: cannot write {}: ", taken.display()))
            && err.lines().count() == 1,
        "{err}"
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["taken.svg"], "a temporary file was left behind");
    // `kiln compile --json` into a missing directory fails before anything is compiled.
    let out = dir.join("aot");
    let o = kiln(&[
        "compile",
        "-o",
        out.to_str().unwrap(),
        "--json",
        missing.with_extension("json").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("error: cannot write "),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[test]
fn compile_reports_json() {
    let dir = scratch("cli_compile_json");
    let (out, json) = (dir.join("aot"), dir.join("compile.json"));
    let o = kiln(&[
        "compile",
        &example("resnet_style"),
        "-o",
        out.to_str().unwrap(),
        "--name",
        "resnet",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["name"], "resnet");
    assert_eq!(j["precision"], "fp32");
    assert!(j["kernels"].as_u64().unwrap() > 5, "{j}");
    let code = j["code_bytes"].as_u64().unwrap();
    assert!(code > 1000, "{j}");
    // Every conv/gemm weight (19 696 of them) is in the object once, packed.
    let data = j["data_bytes"].as_u64().unwrap();
    assert!((4 * 19696..2 * 4 * 19696).contains(&data), "{j}");
    // In int8 they are bytes, and the f32 originals, which no int8 kernel reads, stay out
    // (they were stored too, until constants were stored only when a step reads them).
    let o8 = kiln(&[
        "compile",
        &example("resnet_style"),
        "--precision",
        "int8",
        "-o",
        dir.join("aot8").to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o8.status.success(), "{}", stderr(&o8));
    let j8: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let data8 = j8["data_bytes"].as_u64().unwrap();
    assert!((19696..2 * 19696).contains(&data8), "{j8}");
    assert!(j["target"]["triple"].as_str().unwrap().contains('-'), "{j}");
    let files: Vec<_> = j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| PathBuf::from(f.as_str().unwrap()))
        .collect();
    assert_eq!(files.len(), 2, "{j}");
    for f in &files {
        assert!(f.exists(), "{}", f.display());
    }
    // The printed summary and the JSON agree.
    assert!(
        stdout(&o).contains(&format!("{} kernels", j["kernels"])),
        "{}",
        stdout(&o)
    );
}
