//! Ahead-of-time compilation: a [`Program`] becomes a relocatable object file (cranelift-object)
//! plus a C header, usable from C with no Rust runtime.
//!
//! The object holds
//! - every kernel, translated by the JIT's own [`translate_kernel`] (same Translator, same
//!   `opt_level=none`; the ISA is the host's unless `--target` says otherwise) as local
//!   functions;
//! - the constants the schedule reads (packed weights, tables) as 64-byte aligned read-only
//!   data;
//! - `<name>_run(inputs, outputs, scratch)`, written directly in CLIF: the schedule unrolled
//!   into one call per kernel step — each with a stack array of its buffer pointers
//!   (graph input → `inputs[i]`, constant → its data symbol, arena → `scratch + offset`) and
//!   the kernel's whole parallel range, single-threaded — then one `memcpy` per graph output
//!   from where the program left it into `outputs[i]`;
//! - `<name>_scratch_size()`, the arena size rounded up to 64 bytes.
//!
//! The only symbols it imports are C library ones: `memcpy`, and for kernels that call math
//! helpers the libm functions of [`libm_symbol`] (link with `-lm`; on x86-64 without SSE4.1
//! Cranelift adds `floorf` & co.). They match what the JIT calls: its helpers
//! (`codegen::helpers`) are Rust's `f32::exp` & co., which call the same platform libm
//! functions, except `erf`, for which the JIT uses the `libm` crate (Rust has no stable
//! `f32::erf`) where the object calls the platform's `erff`. The two differ in the last bit
//! for about 1 % of inputs (glibc 2.36, measured on a grid over [-4, 4]), so a model with `erf`
//! agrees with the JIT to about an ulp per call, every other model bit for bit.
//!
//! Programs with reference or host steps (ops without a kernel, which the JIT runs through the
//! graph interpreter or the int8 simulator) cannot be compiled: neither is in an object file.

mod header;
mod target;

pub use header::{Port, c_type, header};
pub use target::{Target, enabled_features, isa_flag};

use super::clif;
use super::jit::{helpers_used, translate_kernel};
use crate::ir::Helper;
use crate::program::{Loc, Program, Step};
use cranelift_codegen::Context;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    AbiParam, FuncRef, GlobalValue, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind,
    UserFuncName, Value, types,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataDescription, DataId, FuncId, Linkage, Module, default_libcall_names};
use cranelift_object::{ObjectBuilder, ObjectModule};
use kiln_core::{Result, bail, ensure, err};
use std::collections::BTreeMap;

/// The alignment the caller's scratch memory must have, and that of every constant.
pub const ALIGN: usize = 64;

/// A compiled object file and what went into it.
#[derive(Debug, Clone)]
pub struct Object {
    /// The relocatable object file (ELF, Mach-O or COFF, per the target).
    pub bytes: Vec<u8>,
    /// The target triple and the ISA features that were on.
    pub triple: String,
    pub features: Vec<String>,
    pub kernels: usize,
    /// Machine code of the kernels and of the two entry points.
    pub code_bytes: usize,
    /// Read-only constant data.
    pub data_bytes: usize,
    /// libm functions the kernels call as math helpers. Link with `-lm` regardless: on
    /// targets without SSE4.1 Cranelift calls `floorf`, `ceilf`, `truncf`, `nearbyintf` itself.
    pub libm: Vec<&'static str>,
}

/// The C library function an object calls for a math helper.
pub fn libm_symbol(h: Helper) -> &'static str {
    match h {
        Helper::Exp => "expf",
        Helper::Log => "logf",
        Helper::Tanh => "tanhf",
        Helper::Erf => "erff",
        Helper::Pow => "powf",
        Helper::Sin => "sinf",
        Helper::Cos => "cosf",
        Helper::Atan => "atanf",
        Helper::Fmod => "fmodf",
    }
}

/// Every math helper a kernel of `program` calls, in [`Helper::ALL`] order.
pub fn helpers_called(program: &Program) -> Vec<Helper> {
    let mut used: Vec<Helper> = program.kernels().iter().flat_map(helpers_used).collect();
    used.sort_by_key(|h| Helper::ALL.iter().position(|x| x == h));
    used.dedup();
    used
}

/// Model names become C identifiers (`<name>_run`, `<NAME>_NUM_INPUTS`).
pub fn check_name(name: &str) -> Result<()> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ensure!(
        ok,
        Input,
        "model name '{name}' must be a C identifier (letters, digits and '_', not starting with a digit)"
    );
    Ok(())
}

/// Bytes of scratch memory `<name>_run` needs: the arena, rounded up to [`ALIGN`].
pub fn scratch_size(program: &Program) -> usize {
    program.arena_bytes.div_ceil(ALIGN) * ALIGN
}

/// The ops of `program` that have no kernel — its reference and host-code steps, which need
/// the interpreter or the simulator at run time — as `node (op)`.
pub fn reference_steps(program: &Program) -> Vec<String> {
    program
        .steps
        .iter()
        .zip(&program.info)
        .filter(|(s, _)| matches!(s, Step::Reference { .. } | Step::Host { .. }))
        .map(|(_, i)| format!("{} ({})", i.node, i.op))
        .collect()
}

fn module_error(what: &str) -> impl Fn(cranelift_module::ModuleError) -> kiln_core::Error + '_ {
    move |e| err!(Unsupported, "{what}: {e:?}")
}

/// Compiles `program` into an object file exporting `<name>_run` and `<name>_scratch_size`.
pub fn compile(program: &Program, name: &str, target: &Target) -> Result<Object> {
    check_name(name)?;
    let refs = reference_steps(program);
    if !refs.is_empty() {
        bail!(
            Unsupported,
            "{} op(s) have no kernel (the JIT runs them as host code, the reference interpreter or the int8 simulator, which an object file cannot contain): {}",
            refs.len(),
            refs.join(", ")
        );
    }
    let isa = target.isa()?;
    let features = target::features(&*isa);
    let triple = isa.triple().to_string();
    let enabled = enabled_features(&*isa);
    let builder = ObjectBuilder::new(isa, format!("{name}.o"), default_libcall_names())
        .map_err(module_error("object file"))?;
    let mut m = ObjectModule::new(builder);
    let mut ctx = m.make_context();
    let mut fctx = FunctionBuilderContext::new();

    let data = define_consts(&mut m, program, name)?;
    let data_bytes = data.keys().map(|&i| program.consts[i].bytes).sum();

    let mut helpers = Vec::new();
    for h in helpers_called(program) {
        let mut sig = m.make_signature();
        clif::helper_signature(&mut sig, h.arity());
        let id = m
            .declare_function(libm_symbol(h), Linkage::Import, &sig)
            .map_err(module_error(libm_symbol(h)))?;
        helpers.push((h, id));
    }

    let mut code_bytes = 0;
    let mut kernel_ids = Vec::with_capacity(program.kernels().len());
    for (i, k) in program.kernels().iter().enumerate() {
        let mut sig = m.make_signature();
        clif::kernel_signature(&mut sig);
        let sym: String = format!("{name}_k{i}_{}", k.name)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let id = m
            .declare_function(&sym, Linkage::Local, &sig)
            .map_err(module_error(&sym))?;
        ctx.func.signature = sig;
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        let used: Vec<(Helper, FuncId)> = helpers_used(k)
            .into_iter()
            .filter_map(|h| helpers.iter().find(|(x, _)| *x == h).copied())
            .collect();
        translate_kernel(&mut m, &mut ctx, &mut fctx, k, &used, features)?;
        code_bytes += define(&mut m, &mut ctx, id, &format!("kernel @{}", k.name))?;
        kernel_ids.push(id);
    }

    let ptr = m.target_config().pointer_type();
    let mut sig = m.make_signature();
    sig.params.extend([AbiParam::new(ptr); 3]);
    sig.returns.push(AbiParam::new(types::I32));
    let run = format!("{name}_run");
    let id = m
        .declare_function(&run, Linkage::Export, &sig)
        .map_err(module_error(&run))?;
    let mut msig = m.make_signature();
    msig.params.extend([AbiParam::new(ptr); 3]);
    msig.returns.push(AbiParam::new(ptr));
    let memcpy = m
        .declare_function("memcpy", Linkage::Import, &msig)
        .map_err(module_error("memcpy"))?;
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let entry = Entry {
            kernels: kernel_ids
                .iter()
                .map(|&k| m.declare_func_in_func(k, b.func))
                .collect(),
            data: data
                .iter()
                .map(|(&i, &d)| (i, m.declare_data_in_func(d, b.func)))
                .collect(),
            memcpy: m.declare_func_in_func(memcpy, b.func),
            ptr,
        };
        entry.build(&mut b, program)?;
        b.finalize(m.target_config());
    }
    code_bytes += define(&mut m, &mut ctx, id, &run)?;

    let mut sig = m.make_signature();
    sig.returns.push(AbiParam::new(ptr));
    let size_fn = format!("{name}_scratch_size");
    let id = m
        .declare_function(&size_fn, Linkage::Export, &sig)
        .map_err(module_error(&size_fn))?;
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let block = b.create_block();
        b.switch_to_block(block);
        let n = b.ins().iconst(ptr, scratch_size(program) as i64);
        b.ins().return_(&[n]);
        b.seal_all_blocks();
        b.finalize(m.target_config());
    }
    code_bytes += define(&mut m, &mut ctx, id, &size_fn)?;

    let bytes = m
        .finish()
        .emit()
        .map_err(|e| err!(Unsupported, "writing the object file: {e}"))?;
    Ok(Object {
        bytes,
        triple,
        features: enabled,
        kernels: kernel_ids.len(),
        code_bytes,
        data_bytes,
        libm: helpers.iter().map(|(h, _)| libm_symbol(*h)).collect(),
    })
}

/// Compiles the function in `ctx` as `id`; returns its machine-code size.
fn define(m: &mut ObjectModule, ctx: &mut Context, id: FuncId, what: &str) -> Result<usize> {
    m.define_function(id, ctx)
        .map_err(|e| err!(Unsupported, "compiling {what}: {e:?}"))?;
    let size = ctx
        .compiled_code()
        .map(|c| c.code_buffer().len())
        .unwrap_or(0);
    m.clear_context(ctx);
    Ok(size)
}

/// Defines the constants the program reads as read-only data; returns them by index. Graph
/// constants that only fed packing at lowering time are read by no step and left out.
fn define_consts(
    m: &mut ObjectModule,
    program: &Program,
    name: &str,
) -> Result<BTreeMap<usize, DataId>> {
    let mut read: Vec<usize> = program
        .steps
        .iter()
        .flat_map(|s| match s {
            Step::Kernel { args, .. } => args.clone(),
            Step::Reference { .. } | Step::Host { .. } => Vec::new(),
        })
        .chain(program.outputs.iter().map(|(l, _)| *l))
        .filter_map(|l| match l {
            Loc::Const(i) => Some(i),
            _ => None,
        })
        .collect();
    read.sort_unstable();
    read.dedup();
    let mut out = BTreeMap::new();
    for i in read {
        let c = program.consts.get(i).ok_or_else(|| {
            err!(
                InvalidModel,
                "the program reads constant {i}, which it lacks"
            )
        })?;
        // SAFETY: `ptr()` points at `bytes` initialised bytes owned by `c` (16-byte words).
        let bytes = unsafe { std::slice::from_raw_parts(c.ptr(), c.bytes) };
        let sym = format!("{name}_const{i}");
        let id = m
            .declare_data(&sym, Linkage::Local, false, false)
            .map_err(module_error(&sym))?;
        let mut d = DataDescription::new();
        d.define(bytes.to_vec().into_boxed_slice());
        d.set_align(ALIGN as u64);
        m.define_data(id, &d).map_err(module_error(&sym))?;
        out.insert(i, id);
    }
    Ok(out)
}

/// What `<name>_run` refers to, declared in its function.
struct Entry {
    kernels: Vec<FuncRef>,
    data: BTreeMap<usize, GlobalValue>,
    memcpy: FuncRef,
    ptr: types::Type,
}

impl Entry {
    /// `int run(const void* const* inputs, void* const* outputs, void* scratch)`.
    fn build(&self, b: &mut FunctionBuilder, p: &Program) -> Result<()> {
        let ptr = self.ptr;
        let flags = MemFlagsData::trusted();
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let (inputs, outputs, scratch) = (params[0], params[1], params[2]);

        // Return 1 for a NULL array the program reads, 2 for misaligned scratch.
        let fail = b.create_block();
        b.append_block_param(fail, types::I32);
        let mut checks: Vec<(Value, i64)> = Vec::new();
        if !p.inputs.is_empty() {
            checks.push((b.ins().icmp_imm_s(IntCC::Equal, inputs, 0), 1));
        }
        checks.push((b.ins().icmp_imm_s(IntCC::Equal, outputs, 0), 1));
        if p.arena_bytes > 0 {
            checks.push((b.ins().icmp_imm_s(IntCC::Equal, scratch, 0), 1));
            let low = b.ins().band_imm_u(scratch, (ALIGN - 1) as i64);
            checks.push((b.ins().icmp_imm_s(IntCC::NotEqual, low, 0), 2));
        }
        for (bad, code) in checks {
            let next = b.create_block();
            let rc = b.ins().iconst(types::I32, code);
            b.ins().brif(bad, fail, &[rc.into()], next, &[]);
            b.switch_to_block(next);
        }

        let slots = p
            .steps
            .iter()
            .map(|s| match s {
                Step::Kernel { args, .. } => args.len(),
                Step::Reference { .. } | Step::Host { .. } => 0,
            })
            .max()
            .unwrap_or(0)
            .max(1);
        let slot = b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            (slots * 8) as u32,
            3,
        ));
        let addr = |b: &mut FunctionBuilder, l: Loc| -> Result<Value> {
            Ok(match l {
                Loc::Input(i) => b.ins().load(ptr, flags, inputs, (i * 8) as i32),
                Loc::Const(i) => {
                    let gv = self
                        .data
                        .get(&i)
                        .ok_or_else(|| err!(InvalidModel, "constant {i} was not emitted"))?;
                    b.ins().symbol_value(ptr, *gv)
                }
                Loc::Arena(o) => b.ins().iadd_imm_s(scratch, o as i64),
            })
        };
        for (s, step) in p.steps.iter().enumerate() {
            let Step::Kernel { kernel, args } = step else {
                bail!(Unsupported, "step {s} has no kernel");
            };
            let array = b.ins().stack_addr(ptr, slot, 0);
            for (j, &l) in args.iter().enumerate() {
                let v = addr(b, l)?;
                b.ins().store(flags, v, array, (j * 8) as i32);
            }
            let k = p.module.kernels.get(*kernel).ok_or_else(|| {
                err!(
                    InvalidModel,
                    "step {s} calls kernel {kernel}, which the program lacks"
                )
            })?;
            // The whole parallel range on this thread; kernels without one ignore lo/hi.
            let (lo, hi) = k.parallel_extent().map_or((0, 0), |(lo, hi, _)| (lo, hi));
            let lo = b.ins().iconst(types::I64, lo);
            let hi = b.ins().iconst(types::I64, hi);
            b.ins().call(self.kernels[*kernel], &[array, lo, hi]);
        }
        for (j, (l, ty)) in p.outputs.iter().enumerate() {
            let n = ty.size_bytes();
            if n == 0 {
                continue;
            }
            let dst = b.ins().load(ptr, flags, outputs, (j * 8) as i32);
            let src = addr(b, *l)?;
            let n = b.ins().iconst(ptr, n as i64);
            b.ins().call(self.memcpy, &[dst, src, n]);
        }
        let ok = b.ins().iconst(types::I32, 0);
        b.ins().return_(&[ok]);
        b.switch_to_block(fail);
        let rc = b.block_params(fail)[0];
        b.ins().return_(&[rc]);
        b.seal_all_blocks();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
