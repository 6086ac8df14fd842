//! Ahead-of-time compilation end to end: `kiln compile` writes an object and a header, the C
//! example (`examples/c/main.c`) is built against them with `cc` and run, and its output must
//! equal `kiln run --engine jit` on the same input.
//!
//! Expected agreement: bit for bit. The object's kernels are the JIT's kernels — the same
//! lowering, the same Translator, `opt_level=none`, the host's ISA features — and the math
//! helpers call the same libm functions, with one exception: `erf`, which the JIT takes from
//! the `libm` crate and the object from the C library's `erff`. Models whose program calls
//! `erf` (the transformer block's Gelu) are therefore compared within 1e-6 of the output's
//! largest magnitude; every other model must match exactly.
//!
//! Every test needs a C compiler and is skipped, with a message, when `cc` (or `$CC`) is
//! absent.

mod common;

use common::{example as model, scratch};

use kiln_core::Tensor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    kiln_env(args, &[])
}

fn kiln_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("kiln runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The C compiler, or `None` (and a printed reason) when there is none.
fn cc() -> Option<String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let ok = Command::new(&cc)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: no C compiler (`{cc}`) to build the C example with");
    }
    ok.then_some(cc)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `kiln compile MODEL -o DIR ARGS...`, which must succeed.
fn compile(model: &Path, dir: &Path, args: &[&str]) -> String {
    let mut all = vec![
        "compile",
        model.to_str().unwrap(),
        "-o",
        dir.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let o = kiln(&all);
    assert!(o.status.success(), "kiln {all:?}: {}", text(&o.stderr));
    text(&o.stdout)
}

/// Builds examples/c/main.c against the header in `include` and `link` (object or library).
/// Strict warnings: the generated header must be clean C11. The scratch is poisoned with
/// NaNs so a kernel relying on zeroed memory cannot pass.
fn build_c(cc: &str, include: &Path, link: &[&str], exe: &Path) {
    let main_c = common::repo_root().join("examples/c/main.c");
    let mut cmd = Command::new(cc);
    cmd.args([
        "-std=c11",
        "-O2",
        "-Wall",
        "-Wextra",
        "-pedantic",
        "-Werror",
    ])
    .arg("-DKILN_POISON_SCRATCH")
    .arg("-I")
    .arg(include)
    .arg(&main_c)
    .args(link)
    .args(["-lm", "-o"])
    .arg(exe);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", text(&o.stderr));
}

/// Seeded inputs (not the ones `kiln run` would pick by default) written twice: as raw
/// little-endian bytes for the C program and as .npy for `kiln run`.
fn write_inputs(model: &Path, dir: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let g = kiln::model::load(Some(model), &Default::default(), &Default::default()).unwrap();
    let (mut raw, mut args) = (Vec::new(), Vec::new());
    for (k, &v) in g.inputs().iter().enumerate() {
        let data = g.value(v);
        let t = kiln::model::seeded_input(data.ty.as_ref().unwrap(), 1000 + k as u64);
        let stem = kiln::model::file_stem(&data.name);
        let bin = dir.join(format!("{stem}.bin"));
        let bytes: Vec<u8> = t
            .to_f64_vec()
            .iter()
            .flat_map(|&x| (x as f32).to_le_bytes())
            .collect();
        assert_eq!(
            t.dtype(),
            kiln_core::DType::F32,
            "the example models take f32"
        );
        std::fs::write(&bin, bytes).unwrap();
        let npy = dir.join(format!("{stem}.npy"));
        kiln::model::write_npy(&npy, &t).unwrap();
        raw.push(bin);
        args.push(format!("{}={}", data.name, npy.display()));
    }
    (raw, args)
}

/// Runs the C program; returns stdout's values.
fn run_c(exe: &Path, inputs: &[PathBuf]) -> Vec<f32> {
    let o = Command::new(exe).args(inputs).output().unwrap();
    assert!(
        o.status.success(),
        "{} failed: {}",
        exe.display(),
        text(&o.stderr)
    );
    text(&o.stdout)
        .lines()
        .map(|l| l.parse::<f32>().unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// `kiln run --engine jit` on the same inputs; every output flattened, in order.
fn run_jit(model: &Path, input_args: &[String], out: &Path, extra: &[&str]) -> Vec<f32> {
    let mut args = vec![
        "run".to_string(),
        model.display().to_string(),
        "--engine".into(),
        "jit".into(),
        "-o".into(),
        out.display().to_string(),
    ];
    for a in input_args {
        args.extend(["--input".to_string(), a.clone()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = kiln(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let g = kiln::model::load(Some(model), &Default::default(), &Default::default()).unwrap();
    g.outputs()
        .iter()
        .flat_map(|&v| {
            let name = kiln::model::file_stem(&g.value(v).name);
            let t: Tensor = kiln::model::read_npy(&out.join(format!("{name}.npy"))).unwrap();
            t.to_f64_vec().into_iter().map(|x| x as f32)
        })
        .collect()
}

/// Whether `model`'s program calls `erf`, the one helper whose implementation differs
/// between the JIT (libm crate) and the object (C library).
fn calls_erf(model: &Path) -> bool {
    let mut g = kiln::model::load(Some(model), &Default::default(), &Default::default()).unwrap();
    kiln::cli::run_pipeline(&mut g, "graph-opt", Default::default()).unwrap();
    let p = kiln_loop::program::build(&g).unwrap();
    kiln_loop::codegen::object::helpers_called(&p).contains(&kiln_loop::Helper::Erf)
}

/// Largest |a - b| relative to the largest |b|, and the number of differing values.
fn diff(got: &[f32], want: &[f32]) -> (f64, usize) {
    assert_eq!(got.len(), want.len(), "number of output values");
    let scale = want.iter().map(|x| x.abs() as f64).fold(0.0, f64::max);
    let max = got
        .iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0.0, f64::max);
    let n = got
        .iter()
        .zip(want)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    (max / scale.max(f64::MIN_POSITIVE), n)
}

/// `extra`: options both `kiln compile` and `kiln run` take (e.g. the int8 precision).
fn aot_matches_jit(name: &str, extra: &[&str]) {
    let Some(cc) = cc() else { return };
    let dir = scratch(&format!("aot_{name}{}", extra.join("_").replace(':', "_")));
    let out = dir.join("out");
    let m = model(name);
    let report = compile(&m, &out, extra);
    assert!(report.contains("kernels"), "{report}");
    assert_eq!(
        files_in(&out),
        ["model.h", "model.o"],
        "default --emit obj,header"
    );
    let exe = dir.join("main");
    build_c(&cc, &out, &[out.join("model.o").to_str().unwrap()], &exe);
    let (raw, npy) = write_inputs(&m, &dir);
    let got = run_c(&exe, &raw);
    let want = run_jit(&m, &npy, &dir.join("jit"), extra);
    let (rel, n) = diff(&got, &want);
    println!(
        "{name}: {} values, {n} differ from the JIT, max difference {rel:.3e} of the largest output",
        got.len()
    );
    if calls_erf(&m) {
        assert!(rel <= 1e-6, "{name}: {rel:e} relative difference");
    } else {
        assert_eq!(n, 0, "{name}: expected bit-identical outputs ({rel:e})");
    }
}

#[test]
fn resnet_style_object_matches_the_jit() {
    aot_matches_jit("resnet_style", &[]);
}

/// The int8 program ahead of time: the same kernels as the int8 JIT (which equals the
/// simulator), so the outputs are bit-identical.
#[test]
fn int8_objects_match_the_int8_jit() {
    // The transformer's Softmax and LayerNormalization run as kernels too: no host step.
    for name in ["resnet_style", "mobilenet_v3_style", "transformer_block"] {
        aot_matches_jit(name, &["--precision", "int8", "--calib", "random:2"]);
    }
}

#[test]
fn mobilenet_v3_style_object_matches_the_jit() {
    aot_matches_jit("mobilenet_v3_style", &[]);
}

#[test]
fn transformer_block_object_matches_the_jit() {
    aot_matches_jit("transformer_block", &[]);
}

#[test]
fn shared_library_links_and_matches_the_object() {
    let Some(cc) = cc() else { return };
    let dir = scratch("aot_so");
    let m = model("resnet_style");
    let (lib, obj) = (dir.join("lib"), dir.join("obj"));
    compile(&m, &lib, &["--emit", "so,header"]);
    let so = format!(
        "{}model{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    assert_eq!(files_in(&lib), [so.clone(), "model.h".into()]);
    compile(&m, &obj, &[]);
    let (raw, _) = write_inputs(&m, &dir);
    let exe_so = dir.join("main_so");
    let rpath = format!("-Wl,-rpath,{}", lib.display());
    build_c(
        &cc,
        &lib,
        &[lib.join(&so).to_str().unwrap(), &rpath],
        &exe_so,
    );
    let exe_o = dir.join("main_o");
    build_c(&cc, &obj, &[obj.join("model.o").to_str().unwrap()], &exe_o);
    let (a, b) = (run_c(&exe_so, &raw), run_c(&exe_o, &raw));
    assert!(!a.is_empty());
    assert_eq!(
        a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn header_is_valid_cplusplus() {
    let Some(_) = cc() else { return };
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    if Command::new(&cxx).arg("--version").output().is_err() {
        eprintln!("skipped: no C++ compiler (`{cxx}`)");
        return;
    }
    let dir = scratch("aot_cxx");
    compile(
        &model("transformer_block"),
        &dir,
        &["--emit", "header", "--name", "blk"],
    );
    assert_eq!(files_in(&dir), ["blk.h"]);
    let src = dir.join("use.cpp");
    std::fs::write(
        &src,
        "#include \"blk.h\"\nint main() { return BLK_NUM_INPUTS == 1 && BLK_INPUT0_SHAPE[2] == 64 ? 0 : 1; }\n",
    )
    .unwrap();
    let o = Command::new(&cxx)
        .args(["-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I"])
        .arg(&dir)
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
}

/// A user error: non-zero exit, one `error:` line, and nothing written under `dir`.
fn assert_clean_failure(o: &Output, wants: &[&str], dir: &Path) {
    assert!(!o.status.success(), "should fail: {}", text(&o.stdout));
    let err = text(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line of error: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for w in wants {
        assert!(err.contains(w), "error should mention `{w}`: {err}");
    }
    assert!(files_in(dir).is_empty(), "left behind: {:?}", files_in(dir));
}

#[test]
fn unwritable_output_directory_is_one_clear_error() {
    let dir = scratch("aot_unwritable");
    // A path under a regular file cannot be created, even by root.
    let file = dir.join("not_a_dir");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("out");
    let m = model("resnet_style");
    let o = kiln(&["compile", m.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot create output directory"), "{err}");
    assert_eq!(files_in(&dir), ["not_a_dir"]);
    // A directory we may not write to (skipped when running as root, who may).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.join("read_only");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(ro.join("probe"), b"").is_err() {
            let o = kiln(&["compile", m.to_str().unwrap(), "-o", ro.to_str().unwrap()]);
            assert_clean_failure(&o, &["not writable"], &ro);
        } else {
            let _ = std::fs::remove_file(ro.join("probe"));
            eprintln!("note: running as a user who can write to read-only directories");
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn unknown_target_feature_lists_the_known_ones() {
    let dir = scratch("aot_feature");
    let out = dir.join("out");
    let m = model("resnet_style");
    let o = kiln(&[
        "compile",
        m.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--target",
        "x86_64-unknown-linux-gnu+avx2,+warp_drive",
    ]);
    assert_clean_failure(
        &o,
        &["unknown target feature 'warp_drive'", "avx_vnni"],
        &dir,
    );
    for (target, want) in [
        ("x86_64-unknown-linux-gnu+", "feature name is missing"),
        ("i686-unknown-linux-gnu", "64-bit"),
        ("no-such-triple-x", "triple"),
    ] {
        let o = kiln(&[
            "compile",
            m.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--target",
            target,
        ]);
        assert_clean_failure(&o, &[want], &dir);
    }
}

#[test]
fn explicit_target_features_compile_and_run() {
    let Some(cc) = cc() else { return };
    #[cfg(target_arch = "x86_64")]
    {
        if !std::is_x86_feature_detected!("sse4.2") {
            eprintln!("skipped: this machine lacks SSE4.2");
            return;
        }
        // Without FMA the kernels multiply and add separately: close to the JIT, not equal.
        let dir = scratch("aot_target");
        let out = dir.join("out");
        let m = model("resnet_style");
        let report = compile(
            &m,
            &out,
            &[
                "--target",
                "x86_64-unknown-linux-gnu+sse3,+ssse3,+sse41,+sse42,-fma",
            ],
        );
        assert!(
            report.contains("target x86_64-unknown-linux-gnu (sse3, ssse3, sse41, sse42)"),
            "{report}"
        );
        let exe = dir.join("main");
        build_c(&cc, &out, &[out.join("model.o").to_str().unwrap()], &exe);
        let (raw, npy) = write_inputs(&m, &dir);
        let (rel, _) = diff(
            &run_c(&exe, &raw),
            &run_jit(&m, &npy, &dir.join("jit"), &[]),
        );
        assert!(rel < 1e-4, "{rel:e}");
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = cc;
}

#[test]
fn reference_steps_cannot_be_compiled() {
    let dir = scratch("aot_reference");
    let kir = dir.join("ints.kir");
    std::fs::write(
        &kir,
        "graph @ints(%a: i64[4], %b: i64[4]) -> (i64[4]) {
  %s = graph.add(%a, %b) : i64[4]
  return %s
}
",
    )
    .unwrap();
    let out = dir.join("out");
    let o = kiln(&[
        "compile",
        kir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, &["have no kernel", "s (add)"], &out);
}

#[test]
fn failed_link_leaves_no_files() {
    let dir = scratch("aot_link");
    let m = model("resnet_style");
    let out = dir.join("out");
    let o = kiln_env(
        &[
            "compile",
            m.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--emit",
            "obj,so,header",
        ],
        &[("CC", "false")],
    );
    assert_clean_failure(&o, &["--emit so", "failed"], &out);
    let o = kiln_env(
        &[
            "compile",
            m.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--emit",
            "so",
        ],
        &[("CC", "/nonexistent/kiln-test-cc")],
    );
    assert_clean_failure(&o, &["was not found"], &out);
}

#[test]
fn bad_name_and_int8_host_steps_are_clear_errors() {
    let dir = scratch("aot_args");
    let m = model("resnet_style");
    let out = dir.join("out");
    let o = kiln(&[
        "compile",
        m.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--name",
        "my-model",
    ]);
    assert_clean_failure(&o, &["C identifier"], &dir);
    // LogSoftmax has no int8 kernel (it runs the simulator's code in the JIT), which an
    // object cannot contain.
    let t = dir.join("log_softmax.kir");
    std::fs::write(
        &t,
        "graph @m(%x: f32[2,8]) -> (?) {\n  %o = graph.log_softmax(%x) {axis=1} : ?\n  \
         return %o\n}\n",
    )
    .unwrap();
    let o = kiln(&[
        "compile",
        t.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--precision",
        "int8",
        "--calib",
        "random:2",
    ]);
    assert_clean_failure(&o, &["--precision int8", "(log_softmax)"], &out);
}
