//! The C header that goes with an object file: counts, names, shapes and element types of the
//! inputs and outputs, the two entry points, and how to call them.
//!
//! Everything a caller needs to size its buffers is a compile-time constant (macros and
//! `static const` tables), so a C program can allocate statically and loop over the tensors
//! without parsing anything. Macros use the upper-cased model name, functions and C types the
//! name as given (`MODEL_NUM_INPUTS`, `model_run`).

use crate::program::Program;
use kiln_core::{DType, Result, TensorType, ensure};
use std::fmt::Write;

/// A named graph input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub name: String,
    pub ty: TensorType,
}

/// The C type of one element.
pub fn c_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::I8 => "int8_t",
        DType::U8 | DType::Bool => "uint8_t",
        DType::I16 => "int16_t",
        DType::U16 => "uint16_t",
        DType::I32 => "int32_t",
        DType::U32 => "uint32_t",
        DType::I64 => "int64_t",
        DType::U64 => "uint64_t",
    }
}

/// `s` as a C string literal: printable ASCII stays, everything else is an octal escape
/// (three digits, so a following digit cannot join it). `?` is escaped against trigraphs.
fn c_string(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'"' | b'\\' | b'?' => write!(out, "\\{}", b as char).unwrap(),
            0x20..=0x7e => out.push(b as char),
            _ => write!(out, "\\{b:03o}").unwrap(),
        }
    }
    out.push('"');
    out
}

/// `s` made safe inside a `/* */` comment.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect::<String>()
        .replace("*/", "*\\/")
}

fn join<T: ToString>(v: impl IntoIterator<Item = T>) -> String {
    v.into_iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One `static const` table over all inputs or all outputs. C has no empty arrays: a model
/// without inputs gets a one-entry table holding `empty`.
fn table(out: &mut String, ty: &str, name: &str, items: Vec<String>, empty: &str) {
    if items.is_empty() {
        writeln!(
            out,
            "static const {ty} {name}[1] = {{{empty}}}; /* none: placeholder */"
        )
        .unwrap();
    } else {
        writeln!(
            out,
            "static const {ty} {name}[{}] = {{{}}};",
            items.len(),
            join(items)
        )
        .unwrap();
    }
}

fn ports(out: &mut String, name: &str, up: &str, kind: &str, ports: &[Port]) {
    let upkind = kind.to_uppercase();
    for (i, p) in ports.iter().enumerate() {
        let ty = &p.ty;
        let m = format!("{up}_{upkind}{i}");
        writeln!(
            out,
            "/* {kind} {i}: \"{}\", {ty} ({}, {} elements, {} bytes) */",
            comment(&p.name),
            c_type(ty.dtype),
            ty.numel(),
            ty.size_bytes()
        )
        .unwrap();
        writeln!(out, "#define {m}_RANK {}", ty.shape.len()).unwrap();
        writeln!(out, "#define {m}_NUMEL {}", ty.numel()).unwrap();
        writeln!(out, "#define {m}_BYTES {}", ty.size_bytes()).unwrap();
        writeln!(out, "#define {m}_TYPE \"{}\"", ty.dtype).unwrap();
        writeln!(out, "typedef {} {name}_{kind}{i}_t;", c_type(ty.dtype)).unwrap();
        writeln!(out, "static const char {m}_NAME[] = {};", c_string(&p.name)).unwrap();
        if ty.shape.is_empty() {
            writeln!(
                out,
                "static const int64_t {m}_SHAPE[1] = {{1}}; /* rank 0: placeholder */"
            )
            .unwrap();
        } else {
            writeln!(
                out,
                "static const int64_t {m}_SHAPE[{}] = {{{}}};",
                ty.shape.len(),
                join(&ty.shape)
            )
            .unwrap();
        }
        out.push('\n');
    }
    let each = |f: &dyn Fn(usize, &Port) -> String| -> Vec<String> {
        ports.iter().enumerate().map(|(i, p)| f(i, p)).collect()
    };
    let m = |i: usize| format!("{up}_{upkind}{i}");
    writeln!(
        out,
        "/* the same, indexed like the {kind}s array of {name}_run */"
    )
    .unwrap();
    table(
        out,
        "char *const",
        &format!("{up}_{upkind}_NAMES"),
        each(&|i, _| format!("{}_NAME", m(i))),
        "0",
    );
    table(
        out,
        "char *const",
        &format!("{up}_{upkind}_TYPES"),
        each(&|_, p| format!("\"{}\"", p.ty.dtype)),
        "0",
    );
    table(
        out,
        "int64_t",
        &format!("{up}_{upkind}_RANKS"),
        each(&|_, p| p.ty.shape.len().to_string()),
        "0",
    );
    table(
        out,
        "int64_t *const",
        &format!("{up}_{upkind}_SHAPES"),
        each(&|i, _| format!("{}_SHAPE", m(i))),
        "0",
    );
    table(
        out,
        "size_t",
        &format!("{up}_{upkind}_SIZES"),
        each(&|_, p| p.ty.size_bytes().to_string()),
        "0",
    );
    out.push('\n');
}

/// The header `<name>.h` for `program` compiled under `name`; `inputs` and `outputs` name the
/// program's inputs and outputs in order.
pub fn header(
    program: &Program,
    name: &str,
    inputs: &[String],
    outputs: &[String],
) -> Result<String> {
    super::check_name(name)?;
    ensure!(
        inputs.len() == program.inputs.len() && outputs.len() == program.outputs.len(),
        Input,
        "header for {name}: {} input and {} output names for a program with {} inputs and {} outputs",
        inputs.len(),
        outputs.len(),
        program.inputs.len(),
        program.outputs.len()
    );
    let ins: Vec<Port> = inputs
        .iter()
        .zip(&program.inputs)
        .map(|(n, t)| Port {
            name: n.clone(),
            ty: t.clone(),
        })
        .collect();
    let outs: Vec<Port> = outputs
        .iter()
        .zip(&program.outputs)
        .map(|(n, (_, t))| Port {
            name: n.clone(),
            ty: t.clone(),
        })
        .collect();
    let up = name.to_uppercase();
    let scratch = super::scratch_size(program);
    let mut h = String::new();
    let arrays = |ps: &[Port], decl: &str| -> String {
        ps.iter()
            .map(|p| format!("{decl}{}", comment(&p.name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    write!(
        h,
        r#"/* {name}.h: C interface of the model "{name}", compiled ahead of time by kiln.
 * Generated by `kiln compile`; do not edit.
 *
 * {name}_run computes every output of the model from its inputs: all tensors are dense,
 * row-major, in the element type below, in graph order ({ins} -> {outs}).
 *
 *   size_t n = {name}_scratch_size();          (also {up}_SCRATCH_SIZE)
 *   void *scratch = aligned_alloc({up}_SCRATCH_ALIGN, n ? n : {up}_SCRATCH_ALIGN);
 *   const void *inputs[{up}_NUM_INPUTS] = {{...}};   ({up}_INPUT_SIZES[i] bytes each)
 *   void *outputs[{up}_NUM_OUTPUTS] = {{...}};       ({up}_OUTPUT_SIZES[i] bytes each)
 *   int rc = {name}_run(inputs, outputs, scratch);   (0 on success)
 *
 * Build: cc -c app.c && cc app.o {name}.o -lm   (or link lib{name}.so)
 *
 * The scratch memory must hold {name}_scratch_size() bytes, aligned to {up}_SCRATCH_ALIGN
 * (64) bytes; it needs no initialisation and its contents after a call mean nothing. Inputs
 * are only read. Outputs must not overlap inputs or scratch. Calls on different scratch
 * buffers may run concurrently (the code has no global state; the weights are read-only).
 * Return codes: 0 success; 1 a NULL inputs, outputs or scratch pointer; 2 scratch not
 * aligned to {up}_SCRATCH_ALIGN bytes.
 */
#ifndef KILN_{up}_H
#define KILN_{up}_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define {up}_NUM_INPUTS {ni}
#define {up}_NUM_OUTPUTS {no}
#define {up}_SCRATCH_SIZE {scratch}
#define {up}_SCRATCH_ALIGN 64

"#,
        ins = if ins.is_empty() {
            "no inputs".into()
        } else {
            arrays(&ins, "")
        },
        outs = arrays(&outs, ""),
        ni = ins.len(),
        no = outs.len(),
    )
    .unwrap();
    ports(&mut h, name, &up, "input", &ins);
    ports(&mut h, name, &up, "output", &outs);
    write!(
        h,
        r#"/* Bytes of scratch memory {name}_run needs ({up}_SCRATCH_SIZE). */
size_t {name}_scratch_size(void);

/* Runs the model once: reads inputs[i] ({up}_NUM_INPUTS of them), writes outputs[i]
 * ({up}_NUM_OUTPUTS), uses scratch as working memory. Returns 0 on success. */
int {name}_run(const void *const *inputs, void *const *outputs, void *scratch);

#ifdef __cplusplus
}}
#endif

#endif /* KILN_{up}_H */
"#
    )
    .unwrap();
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_comments_are_escaped() {
        assert_eq!(c_string("x"), "\"x\"");
        assert_eq!(c_string("a\"b\\c?"), "\"a\\\"b\\\\c\\?\"");
        assert_eq!(c_string("é1"), "\"\\303\\2511\"");
        assert_eq!(comment("a*/b\n"), "a*\\/b?");
    }
}
