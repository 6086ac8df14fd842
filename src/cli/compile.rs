//! `kiln compile`: a model compiled ahead of time into OUTDIR — a relocatable object with the
//! kernels and packed weights, a C header, and optionally a shared library linked by `cc`.
//!
//! The graph goes through the same pipeline and lowering as `kiln run`, and the kernels through
//! the same translator as the JIT (`kiln_loop::codegen::object`), so a C program linked with
//! the object computes what `kiln run --engine jit` computes. Files are written under
//! temporary names and renamed once all of them exist: a failure leaves OUTDIR as it was.

use super::ModelArgs;
use super::progress::spin;
use super::quantize::QuantArgs;
use super::run::Precision;
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use kiln_graph::Graph;
use kiln_loop::codegen::object::{self, Target};
use kiln_loop::program::{self, Program};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// An output file kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// `<NAME>.o`: relocatable object (kernels, weights, `<NAME>_run`).
    Obj,
    /// `lib<NAME>.so` (`.dylib` on macOS): the object linked by `cc -shared`.
    So,
    /// `<NAME>.h`: the C interface.
    Header,
}

#[derive(Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output directory (created if missing).
    #[arg(short = 'o', long = "out", value_name = "OUTDIR")]
    pub out: PathBuf,
    /// Name of the compiled model: file names and C symbols (`<NAME>_run`); a C identifier.
    #[arg(long, default_value = "model")]
    pub name: String,
    /// Target machine: TRIPLE[+feature,-feature...] (features are Cranelift ISA flags without
    /// `has_`, e.g. avx2, fma, avx_vnni). Default: this machine with every feature it has;
    /// an explicit triple starts from the architecture's baseline.
    #[arg(long, value_name = "TRIPLE[+FEATURES]")]
    pub target: Option<String>,
    /// Files to write, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "obj,header")]
    pub emit: Vec<Emit>,
    /// Graph passes before lowering (as `kiln run`).
    #[arg(long, default_value = "graph-opt")]
    pub pipeline: String,
    /// Precision of the kernels.
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    #[command(flatten)]
    pub quant: QuantArgs,
    /// Also write the report (kernels, code and constant sizes, target, files) as JSON to
    /// FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The lowered program for the requested precision: the only place precision matters.
fn build_program(g: Graph, a: &CompileArgs) -> anyhow::Result<(Program, Graph)> {
    match a.precision {
        Precision::Fp32 => Ok((spin("lowering to loops".into(), || program::build(&g))?, g)),
        Precision::Int8 => {
            let q = super::quantize::quantize(g, &a.quant)?;
            let p = spin("lowering to int8 loops".into(), || {
                kiln_loop::int8::build(&q)
            })?;
            if !p.host_ops.is_empty() {
                bail!(
                    "--precision int8: {} op(s) have no int8 kernel and run the simulator's code, which an object file cannot contain: {}",
                    p.host_ops.len(),
                    p.host_ops.join(", ")
                );
            }
            Ok((p, q.graph))
        }
    }
}

/// The C compiler used for `--emit so`: `$CC`, else `cc`.
fn cc() -> PathBuf {
    std::env::var_os("CC")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cc".into())
}

/// Files being written: each goes to a temporary name in OUTDIR and is renamed at the end;
/// dropping the set without `commit` removes whatever was written.
struct Staged {
    files: Vec<(PathBuf, PathBuf)>,
}

impl Staged {
    fn tmp(dir: &Path, file: &str) -> PathBuf {
        dir.join(format!(".{file}.kiln-tmp-{}", std::process::id()))
    }

    /// Writes `bytes` to a temporary file for `dir/file`.
    fn write(&mut self, dir: &Path, file: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
        let tmp = Self::tmp(dir, file);
        self.files.push((tmp.clone(), dir.join(file)));
        std::fs::write(&tmp, bytes)
            .with_context(|| format!("cannot write {}", dir.join(file).display()))?;
        Ok(tmp)
    }

    fn commit(mut self) -> anyhow::Result<Vec<PathBuf>> {
        let files = std::mem::take(&mut self.files);
        let mut done = Vec::new();
        for (i, (tmp, dst)) in files.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, dst) {
                self.files = files[i..].to_vec();
                return Err(e).with_context(|| format!("cannot write {}", dst.display()));
            }
            done.push(dst.clone());
        }
        Ok(done)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (tmp, _) in &self.files {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Links `obj` into the shared library `out` with the host's C compiler. Always with `-lm`:
/// besides the math helpers, Cranelift itself may call `floorf` & co. on targets without
/// SSE4.1.
fn link_shared(obj: &Path, out: &Path) -> anyhow::Result<()> {
    let cc = cc();
    let mut cmd = Command::new(&cc);
    cmd.arg("-shared").arg("-o").arg(out).arg(obj).arg("-lm");
    let res = cmd.output();
    let output = match res {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "--emit so links with a C compiler, and `{}` was not found (install cc, set CC, or leave `so` out of --emit)",
            cc.display()
        ),
        Err(e) => bail!("--emit so: cannot run `{}`: {e}", cc.display()),
    };
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        bail!(
            "--emit so: `{} -shared` failed ({}): {}",
            cc.display(),
            output.status,
            err.trim().replace('\n', " | ")
        );
    }
    Ok(())
}

pub fn run(a: CompileArgs) -> anyhow::Result<()> {
    // Cheap checks first: a bad name, target or directory fails before any compiling.
    object::check_name(&a.name)?;
    let target = match &a.target {
        Some(t) => Target::parse(t)?,
        None => Target::host(),
    };
    target.isa()?;
    let emit = |e: Emit| a.emit.contains(&e);
    if emit(Emit::So) && !target.is_host_triple() {
        bail!(
            "--emit so links with this machine's cc, which cannot link for {}; emit obj and link it with that target's toolchain",
            target.triple
        );
    }
    if let Some(json) = &a.json {
        let dir = json.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            bail!("cannot write {}: no such directory", json.display());
        }
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create output directory {}", a.out.display()))?;
    {
        let mut probe = Staged { files: Vec::new() };
        probe
            .write(&a.out, "probe", b"")
            .with_context(|| format!("output directory {} is not writable", a.out.display()))?;
    }

    let t0 = Instant::now();
    let mut g = a.model.load()?;
    super::run_pipeline(&mut g, &a.pipeline, Default::default())?;
    let ops = g.node_count();
    let (program, g) = build_program(g, &a)?;
    let names = |vs: &[kiln_graph::Value]| -> Vec<String> {
        vs.iter().map(|&v| g.value(v).name.clone()).collect()
    };
    let (inputs, outputs) = (names(g.inputs()), names(g.outputs()));
    let obj = spin(
        format!("compiling {} kernels to an object", program.kernels().len()),
        || object::compile(&program, &a.name, &target),
    )
    .with_context(|| format!("compiling {}", a.model.display_name()))?;
    let header = object::header(&program, &a.name, &inputs, &outputs)?;
    let compile_ms = t0.elapsed().as_secs_f64() * 1e3;

    let mut staged = Staged { files: Vec::new() };
    let obj_file = format!("{}.o", a.name);
    let so_file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        a.name,
        std::env::consts::DLL_SUFFIX
    );
    if emit(Emit::Header) {
        staged.write(&a.out, &format!("{}.h", a.name), header.as_bytes())?;
    }
    if emit(Emit::Obj) || emit(Emit::So) {
        let tmp_obj = staged.write(&a.out, &obj_file, &obj.bytes)?;
        if emit(Emit::So) {
            let tmp_so = Staged::tmp(&a.out, &so_file);
            staged.files.push((tmp_so.clone(), a.out.join(&so_file)));
            link_shared(&tmp_obj, &tmp_so)?;
        }
        if !emit(Emit::Obj) {
            // The object was only the linker's input.
            let _ = std::fs::remove_file(&tmp_obj);
            staged.files.retain(|(t, _)| *t != tmp_obj);
        }
    }
    let written = staged.commit()?;

    println!(
        "{}: {ops} ops -> {} kernels, {:.1} KB code, {:.1} KB constants, scratch {} bytes ({:.0} ms)",
        a.model.display_name(),
        obj.kernels,
        obj.code_bytes as f64 / 1024.0,
        obj.data_bytes as f64 / 1024.0,
        object::scratch_size(&program),
        compile_ms
    );
    println!("target {} ({})", obj.triple, obj.features.join(", "));
    for f in &written {
        println!("  -> {}", f.display());
    }
    if let Some(path) = &a.json {
        let doc = serde_json::json!({
            "model": a.model.display_name(),
            "name": a.name,
            "precision": format!("{:?}", a.precision).to_lowercase(),
            "target": {"triple": obj.triple, "features": obj.features},
            "ops": ops,
            "kernels": obj.kernels,
            "code_bytes": obj.code_bytes,
            "data_bytes": obj.data_bytes,
            "scratch_bytes": object::scratch_size(&program),
            "compile_ms": compile_ms,
            "files": written.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        });
        super::report::write_atomic(
            path,
            (serde_json::to_string_pretty(&doc)? + "\n").as_bytes(),
        )?;
    }
    if emit(Emit::Obj) {
        println!(
            "link: cc -I {} your_program.c {} -lm   (C API in {}.h: {}_run, {}_scratch_size)",
            a.out.display(),
            a.out.join(&obj_file).display(),
            a.name,
            a.name,
            a.name
        );
    }
    Ok(())
}
