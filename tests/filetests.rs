//! The filetest harness: every `tests/filetests/<dialect>/*.kir` file is text IR with
//! directives in `//` comments, run through the named passes and matched with the
//! `filecheck` crate (Cranelift's CHECK engine).
//!
//! Directives (MLIR spelling, translated to filecheck's):
//! - `// RUN: pass1,pass2` — the pipeline (a pass or pipeline list as `kiln opt --passes`);
//!   several RUN lines run in sequence; no RUN line means "parse, verify and print". The
//!   verifier runs after every pass and at the end, so IR with unknown (`?`) types needs
//!   `graph.infer-shapes` first.
//! - `// CHECK: pat`, `// CHECK-NEXT: pat`, `// CHECK-SAME: pat`, `// CHECK-NOT: pat`,
//!   `// CHECK-DAG: pat` — filecheck's `check`, `nextln`, `sameln`, `not`, `unordered`.
//! - `// ERROR: kind` — the run must fail with this error kind; CHECK lines then match the
//!   error message.
//! - `// EMIT: clif` (loop dialect) — CHECK lines match the Cranelift IR the kernels
//!   translate to (after the RUN passes), as Cranelift's own `test compile` files do.
//!
//! Every successful output is also parsed back and printed again, and must be identical:
//! printer output always parses.

use kiln_core::{Ir, PassManager};
use std::path::{Path, PathBuf};

struct FileTest {
    passes: Vec<String>,
    error: Option<String>,
    emit: Option<String>,
    checks: String,
}

fn directives(src: &str) -> FileTest {
    let mut t = FileTest {
        passes: Vec::new(),
        error: None,
        emit: None,
        checks: String::new(),
    };
    for line in src.lines() {
        let Some(c) = line.trim_start().strip_prefix("//") else {
            continue;
        };
        let c = c.trim();
        let map = [
            ("CHECK:", "check:"),
            ("CHECK-NEXT:", "nextln:"),
            ("CHECK-SAME:", "sameln:"),
            ("CHECK-NOT:", "not:"),
            ("CHECK-DAG:", "unordered:"),
        ];
        if let Some(p) = c.strip_prefix("RUN:") {
            t.passes.push(p.trim().to_string());
        } else if let Some(k) = c.strip_prefix("ERROR:") {
            t.error = Some(k.trim().to_string());
        } else if let Some(k) = c.strip_prefix("EMIT:") {
            t.emit = Some(k.trim().to_string());
        } else if let Some((from, to)) = map.iter().find(|(from, _)| c.starts_with(from)) {
            t.checks
                .push_str(&format!("{to} {}\n", c[from.len()..].trim()));
        }
    }
    t
}

// quant: begin — files under a dialect folder run on that dialect's parser and passes.
fn run_file(path: &Path) -> Result<(), String> {
    let dialect = path.parent().and_then(|p| p.file_name());
    if dialect.is_some_and(|d| d == "quant") {
        return run_with(
            path,
            kiln_quant::text::parse,
            kiln_quant::passes::registry(),
            None,
        );
    }
    // looptext: begin
    if dialect.is_some_and(|d| d == "loop") {
        let registry = kiln_loop::passes::registry();
        return run_with(
            path,
            kiln_loop::text::parse_module,
            registry,
            Some(emit_loop),
        );
    }
    // looptext: end
    run_with(
        path,
        kiln_graph::text::parse,
        kiln_graph::passes::registry(),
        None,
    )
}

/// A lower level of loop-dialect IR: `clif`, the Cranelift IR of every kernel.
fn emit_loop(m: &kiln_loop::ir::Module, what: &str) -> kiln_core::Result<String> {
    if what != "clif" {
        kiln_core::bail!(Unsupported, "EMIT: {what}: only `clif` is supported");
    }
    let mut jit = kiln_loop::codegen::Jit::new()?;
    jit.keep_clif = true;
    for k in &m.kernels {
        jit.add(k)?;
    }
    Ok(jit.clif.join("\n"))
}

/// How a dialect's IR is printed at a lower level (`EMIT:`).
type Emit<I> = fn(&I, &str) -> kiln_core::Result<String>;

fn run_with<I: Ir + 'static>(
    path: &Path,
    parse: fn(&str) -> kiln_core::Result<I>,
    registry: kiln_core::PassRegistry<I>,
    emit: Option<Emit<I>>,
) -> Result<(), String> {
    // quant: end
    let src = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let t = directives(&src);
    let result = (|| {
        let mut g = parse(&src)?;
        for list in &t.passes {
            let mut pm = PassManager::new(registry.parse(list)?);
            pm.run(&mut g)?;
        }
        g.verify()?;
        Ok::<_, kiln_core::Error>(g)
    })();
    let output = match (&result, &t.error) {
        (Ok(g), None) => {
            let text = g.print(); // quant: the dialect's printer and parser
            let again =
                parse(&text).map_err(|e| format!("printed IR does not parse: {e}\n{text}"))?;
            let text2 = again.print();
            if text != text2 {
                return Err(format!("print→parse→print differs:\n{text}\n---\n{text2}"));
            }
            match (&t.emit, emit) {
                (None, _) => text,
                (Some(what), Some(emit)) => emit(g, what).map_err(|e| e.to_string())?,
                (Some(what), None) => return Err(format!("EMIT: {what}: not for this dialect")),
            }
        }
        (Err(e), Some(kind)) if e.kind.name() == kind => e.to_string(),
        (Err(e), Some(kind)) => return Err(format!("expected a {kind} error, got: {e}")),
        (Err(e), None) => return Err(format!("unexpected error: {e}")),
        (Ok(g), Some(kind)) => {
            return Err(format!(
                "expected a {kind} error, but it succeeded:\n{}",
                g.print()
            ));
        }
    };
    if t.checks.is_empty() {
        return Err("no CHECK lines: a filetest must check something".into());
    }
    let checker = filecheck::CheckerBuilder::new()
        .text(&t.checks)
        .map_err(|e| format!("bad directives: {e}"))?
        .finish();
    let (ok, explain) = checker
        .explain(&output, filecheck::NO_VARIABLES)
        .map_err(|e| e.to_string())?;
    if ok {
        Ok(())
    } else {
        Err(format!("filecheck failed on output:\n{output}\n{explain}"))
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "kir") {
            out.push(p);
        }
    }
}

#[test]
fn filetests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "no filetests found under {}",
        root.display()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| {
            run_file(f)
                .err()
                .map(|e| format!("--- {}\n{e}", f.display()))
        })
        .collect();
    println!(
        "filetests: {} passed, {} failed",
        files.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
