//! Object files from small graphs: the errors, the header, and (where a C compiler exists) a
//! linked C driver that must reproduce the JIT bit for bit.

use super::*;
use crate::program;
use kiln_core::Tensor;
use std::path::{Path, PathBuf};
use std::process::Command;

fn program_of(text: &str) -> Program {
    let mut g = kiln_graph::text::parse(text).unwrap();
    kiln_graph::infer::infer_shapes(&mut g).unwrap();
    program::build(&g).unwrap()
}

/// tanh(x)·x (tanh is a libm call), the input itself and a constant as outputs; one output in the
/// arena, one at `Loc::Input`, one at `Loc::Const`.
const THREE_OUTPUTS: &str = "graph @g(%x: f32[2,5]) -> (f32[2,5], f32[2,5], f32[3]) {
  %c = const f32[3] dense<[1.5, -2.0, 3.25]>
  %e = graph.tanh(%x) : f32[2,5]
  %y = graph.mul(%e, %x) : f32[2,5]
  return %y, %x, %c
}
";

fn host() -> Target {
    Target::host()
}

#[test]
fn names_must_be_c_identifiers() {
    for ok in ["model", "_m2", "ResNet_18"] {
        check_name(ok).unwrap();
    }
    for bad in ["", "2fast", "my-model", "a.b", "é"] {
        let e = check_name(bad).unwrap_err();
        assert!(e.to_string().contains("C identifier"), "{bad}: {e}");
    }
}

#[test]
fn reference_steps_are_an_error_naming_the_ops() {
    let p = program_of(
        "graph @ints(%a: i64[4], %b: i64[4]) -> (i64[4]) {
  %s = graph.add(%a, %b) : i64[4]
  return %s
}
",
    );
    assert!(!p.reference_ops.is_empty());
    let e = compile(&p, "ints", &host()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("have no kernel") && msg.contains("s (add)"),
        "{msg}"
    );
}

#[test]
fn object_exports_the_entry_points_and_imports_libm() {
    let p = program_of(THREE_OUTPUTS);
    let locs: Vec<Loc> = p.outputs.iter().map(|(l, _)| *l).collect();
    assert!(
        matches!(locs[..], [Loc::Arena(_), Loc::Input(0), Loc::Const(_)]),
        "{locs:?}"
    );
    let o = compile(&p, "three", &host()).unwrap();
    #[cfg(target_os = "linux")]
    assert_eq!(&o.bytes[..4], b"\x7fELF");
    assert_eq!(o.libm, vec!["tanhf"]);
    assert_eq!(o.kernels, p.kernels().len());
    assert!(o.code_bytes > 0);
    // The constant output is emitted; a symbol table lists the exported names.
    assert!(o.data_bytes >= 12, "{}", o.data_bytes);
    let has = |s: &str| o.bytes.windows(s.len()).any(|w| w == s.as_bytes());
    for sym in ["three_run", "three_scratch_size", "tanhf", "memcpy"] {
        assert!(has(sym), "object lacks symbol {sym}");
    }
    let h = header(
        &p,
        "three",
        &["x".into()],
        &["y".into(), "x".into(), "c".into()],
    )
    .unwrap();
    for line in [
        "#define THREE_NUM_INPUTS 1",
        "#define THREE_NUM_OUTPUTS 3",
        "static const int64_t THREE_OUTPUT2_SHAPE[1] = {3};",
        "typedef float three_output0_t;",
        "int three_run(const void *const *inputs, void *const *outputs, void *scratch);",
        "size_t three_scratch_size(void);",
        "extern \"C\" {",
    ] {
        assert!(h.contains(line), "header lacks `{line}`:\n{h}");
    }
    let e = header(&p, "three", &["x".into()], &["y".into()]).unwrap_err();
    assert!(e.to_string().contains("output names"), "{e}");
}

fn cc() -> Option<PathBuf> {
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    Command::new(&cc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| PathBuf::from(cc))
}

/// A C driver for THREE_OUTPUTS: fills x from argv-free fixed data, checks the error codes,
/// prints every output value's bits in hex.
const DRIVER: &str = r#"#include "three.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    float x[THREE_INPUT0_NUMEL];
    for (int i = 0; i < THREE_INPUT0_NUMEL; i++) x[i] = (float)i * 0.37f - 1.5f;
    float y[THREE_OUTPUT0_NUMEL], xo[THREE_OUTPUT1_NUMEL], c[THREE_OUTPUT2_NUMEL];
    const void *in[THREE_NUM_INPUTS] = {x};
    void *out[THREE_NUM_OUTPUTS] = {y, xo, c};
    size_t n = three_scratch_size();
    if (n != THREE_SCRATCH_SIZE || n % THREE_SCRATCH_ALIGN) return 10;
    unsigned char *s = aligned_alloc(64, n + 64);
    memset(s, 0xff, n + 64);
    if (three_run(NULL, out, s) != 1 || three_run(in, NULL, s) != 1) return 11;
    if (n && three_run(in, out, s + 4) != 2) return 12;
    if (three_run(in, out, s) != 0) return 13;
    for (int k = 0; k < THREE_NUM_OUTPUTS; k++) {
        const float *v = out[k];
        for (size_t i = 0; i < THREE_OUTPUT_SIZES[k] / 4; i++) {
            unsigned u; memcpy(&u, &v[i], 4); printf("%08x\n", u);
        }
    }
    free(s);
    return 0;
}
"#;

fn run_cc(cc: &Path, dir: &Path, args: &[&str]) {
    let out = Command::new(cc)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn linked_object_matches_the_jit_bit_for_bit() {
    let Some(cc) = cc() else {
        eprintln!("skipped: no C compiler (cc) found");
        return;
    };
    let p = program_of(THREE_OUTPUTS);
    let dir = std::env::temp_dir().join(format!("kiln_object_unit_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let o = compile(&p, "three", &host()).unwrap();
    std::fs::write(dir.join("three.o"), &o.bytes).unwrap();
    let h = header(
        &p,
        "three",
        &["x".into()],
        &["y".into(), "x".into(), "c".into()],
    )
    .unwrap();
    std::fs::write(dir.join("three.h"), h).unwrap();
    std::fs::write(dir.join("main.c"), DRIVER).unwrap();
    run_cc(
        &cc,
        &dir,
        &[
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-pedantic",
            "-Werror",
            "main.c",
            "three.o",
            "-lm",
            "-o",
            "main",
        ],
    );
    let out = Command::new(dir.join("main")).output().unwrap();
    assert!(out.status.success(), "driver exited with {:?}", out.status);
    let got: Vec<u32> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| u32::from_str_radix(l, 16).unwrap())
        .collect();

    let x: Vec<f32> = (0..10).map(|i| i as f32 * 0.37 - 1.5).collect();
    let mut jit = crate::exec::Compiled::new(p, 1).unwrap();
    let want: Vec<u32> = jit
        .run(&[Tensor::from_vec(&[2, 5], x).unwrap()])
        .unwrap()
        .iter()
        .flat_map(|t| t.to_f64_vec().into_iter().map(|v| (v as f32).to_bits()))
        .collect();
    assert_eq!(got, want);
    std::fs::remove_dir_all(&dir).unwrap();
}
