//! Compiling kernels into executable memory with cranelift-jit.

use super::clif::{self, Features, Translator};
use super::helpers;
use crate::ir::{Helper, Kernel};
use cranelift_codegen::ir::UserFuncName;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, isa::OwnedTargetIsa};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};
use kiln_core::{Result, err};
use std::collections::HashMap;

/// The entry point of a compiled kernel: buffer pointers and the parallel chunk `[lo, hi)`.
pub type KernelFn = unsafe extern "C" fn(*const *mut u8, i64, i64);

/// A compiled kernel: its entry point plus what the runtime needs to call it.
#[derive(Clone, Copy)]
pub struct JitKernel {
    pub entry: KernelFn,
    /// Bytes of machine code.
    pub code_size: usize,
}

/// Which instruction-set features the generated code may use.
///
/// A `Jit` made with [`Jit::with_isa`] uses at most the features set here (and never one the
/// host lacks), which is how tests and benchmarks force the code paths of a smaller machine:
/// `HostIsa { avx_vnni: false, ..HostIsa::detect() }` compiles `dot_u8s8` without
/// `vpdpbusd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostIsa {
    pub fma: bool,
    /// AVX-VNNI, or AVX512-VNNI with AVX512VL: `vpdpbusd` on 128-bit vectors.
    pub avx_vnni: bool,
}

/// Setting this environment variable to anything but `0` or the empty string makes
/// [`HostIsa::detect`] report no VNNI, so `kiln` and scripts can run and measure the int8
/// fallback path on a VNNI machine (`KILN_NO_VNNI=1 kiln bench …`).
pub const NO_VNNI_ENV: &str = "KILN_NO_VNNI";

impl HostIsa {
    /// The features of the machine, honouring [`NO_VNNI_ENV`]. What `Jit::new` compiles for.
    pub fn detect() -> HostIsa {
        HostIsa::native().with_no_vnni_env(std::env::var_os(NO_VNNI_ENV).as_deref())
    }

    /// `self` as [`NO_VNNI_ENV`] set to `value` leaves it (`None`: unset).
    pub fn with_no_vnni_env(self, value: Option<&std::ffi::OsStr>) -> HostIsa {
        let off = value.is_some_and(|v| !v.is_empty() && v != "0");
        HostIsa {
            avx_vnni: self.avx_vnni && !off,
            ..self
        }
    }

    /// The features the CPU has, whatever the environment says.
    pub fn native() -> HostIsa {
        #[cfg(target_arch = "x86_64")]
        {
            HostIsa {
                fma: std::is_x86_feature_detected!("fma"),
                avx_vnni: std::is_x86_feature_detected!("avxvnni")
                    || (std::is_x86_feature_detected!("avx512vnni")
                        && std::is_x86_feature_detected!("avx512vl")),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            HostIsa {
                fma: true,
                avx_vnni: false,
            }
        }
    }

    /// The features both `self` and `other` have.
    pub fn intersect(self, other: HostIsa) -> HostIsa {
        HostIsa {
            fma: self.fma && other.fma,
            avx_vnni: self.avx_vnni && other.avx_vnni,
        }
    }
}

/// The host's Cranelift ISA with the features `isa` leaves out switched off, so Cranelift's
/// own pattern rules (the `vpdpbusd` fold, `vfmadd`) cannot use them either.
fn host_isa(isa: HostIsa) -> Result<OwnedTargetIsa> {
    let mut flags = settings::builder();
    // Measured: for generated kernels `none` beats `speed` (the egraph pass re-places pure ops
    // at their uses and spills register blocks); the loop dialect does the scheduling.
    let set = |f: &mut dyn Configurable, k: &str, v: &str| {
        f.set(k, v)
            .map_err(|e| err!(Unsupported, "cranelift setting {k}={v}: {e}"))
    };
    set(&mut flags, "opt_level", "none")?;
    set(&mut flags, "is_pic", "false")?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    let mut builder = cranelift_native::builder().map_err(|e| {
        err!(
            Unsupported,
            "host machine is not supported by Cranelift: {e}"
        )
    })?;
    if cfg!(target_arch = "x86_64") {
        if !isa.avx_vnni {
            set(&mut builder, "has_avx_vnni", "false")?;
            set(&mut builder, "has_avx512vnni", "false")?;
        }
        if !isa.fma {
            set(&mut builder, "has_fma", "false")?;
        }
    }
    builder
        .finish(settings::Flags::new(flags))
        .map_err(|e| err!(Unsupported, "cranelift ISA: {e}"))
}

/// A JIT code region: kernels compiled into it stay valid as long as it lives.
pub struct Jit {
    module: JITModule,
    ctx: Context,
    fctx: FunctionBuilderContext,
    helper_ids: HashMap<Helper, FuncId>,
    features: Features,
    isa: HostIsa,
    pending: Vec<(FuncId, usize)>,
    /// Keep CLIF text of each compiled kernel (for `--emit clif`).
    pub keep_clif: bool,
    pub clif: Vec<String>,
    /// Keep the disassembly of each compiled kernel (for `--emit asm`).
    pub keep_asm: bool,
    pub asm: Vec<String>,
}

impl Jit {
    /// A JIT for the features of this machine ([`HostIsa::detect`]).
    pub fn new() -> Result<Jit> {
        Jit::with_isa(HostIsa::detect())
    }

    /// A JIT that uses only the features of `isa` that this machine also has.
    pub fn with_isa(isa: HostIsa) -> Result<Jit> {
        let host = isa.intersect(HostIsa::native());
        let isa = host_isa(host)?;
        let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
        for h in Helper::ALL {
            builder.symbol(helpers::symbol(h), helpers::address(h));
        }
        let module = JITModule::new(builder);
        Ok(Jit {
            ctx: module.make_context(),
            module,
            fctx: FunctionBuilderContext::new(),
            helper_ids: HashMap::new(),
            features: Features {
                fma: host.fma,
                vnni: host.avx_vnni,
            },
            isa: host,
            pending: Vec::new(),
            keep_clif: false,
            clif: Vec::new(),
            keep_asm: false,
            asm: Vec::new(),
        })
    }

    /// The features the compiled code uses.
    pub fn isa(&self) -> HostIsa {
        self.isa
    }

    fn helper_id(&mut self, h: Helper) -> Result<FuncId> {
        if let Some(&id) = self.helper_ids.get(&h) {
            return Ok(id);
        }
        let mut sig = self.module.make_signature();
        clif::helper_signature(&mut sig, h.arity());
        let id = self
            .module
            .declare_function(&helpers::symbol(h), Linkage::Import, &sig)
            .map_err(|e| err!(Unsupported, "declaring helper {}: {e}", h.name()))?;
        self.helper_ids.insert(h, id);
        Ok(id)
    }

    /// Translates and compiles `kernel`; returns its index for [`Jit::finish`].
    pub fn add(&mut self, kernel: &Kernel) -> Result<usize> {
        let mut sig = self.module.make_signature();
        clif::kernel_signature(&mut sig);
        let id = self
            .module
            .declare_anonymous_function(&sig)
            .map_err(|e| err!(Unsupported, "declaring kernel @{}: {e}", kernel.name))?;
        // Declare every helper the kernel might call before borrowing the function builder.
        let helper_ids: Vec<(Helper, FuncId)> = Helper::ALL
            .into_iter()
            .filter(|h| uses_helper(kernel, *h))
            .map(|h| Ok((h, self.helper_id(h)?)))
            .collect::<Result<_>>()?;
        self.ctx.func.signature = sig;
        self.ctx.func.name = UserFuncName::user(0, id.as_u32());
        // aot: begin (the body moved to `translate_kernel`, shared with the object writer)
        translate_kernel(
            &mut self.module,
            &mut self.ctx,
            &mut self.fctx,
            kernel,
            &helper_ids,
            self.features,
        )?;
        // aot: end
        if self.keep_clif {
            self.clif.push(format!(
                "; kernel @{}\n{}",
                kernel.name,
                self.ctx.func.display()
            ));
        }
        self.ctx.set_disasm(self.keep_asm);
        self.module
            .define_function(id, &mut self.ctx)
            .map_err(|e| err!(Unsupported, "compiling kernel @{}: {e:?}", kernel.name))?;
        if self.keep_asm
            && let Some(text) = self.ctx.compiled_code().and_then(|c| c.vcode.clone())
        {
            self.asm.push(format!("; kernel @{}\n{text}", kernel.name));
        }
        let size = self
            .ctx
            .compiled_code()
            .map(|c| c.code_buffer().len())
            .unwrap_or(0);
        self.module.clear_context(&mut self.ctx);
        self.pending.push((id, size));
        Ok(self.pending.len() - 1)
    }

    /// Links everything added so far and returns the kernels in the order they were added.
    pub fn finish(&mut self) -> Result<Vec<JitKernel>> {
        self.module
            .finalize_definitions()
            .map_err(|e| err!(Unsupported, "linking kernels: {e}"))?;
        Ok(self
            .pending
            .iter()
            .map(|&(id, size)| {
                let ptr = self.module.get_finalized_function(id);
                // SAFETY: the function was declared with `kernel_signature`, which is the
                // C ABI of `KernelFn`.
                let entry = unsafe { std::mem::transmute::<*const u8, KernelFn>(ptr) };
                JitKernel {
                    entry,
                    code_size: size,
                }
            })
            .collect())
    }
}

// aot: begin
/// Translates `kernel` into `ctx.func` (whose signature and name the caller has set), calling
/// each math helper through its id in `helpers`, and finalizes the function. The JIT and the
/// object writer (`codegen::object`) both go through here, so a kernel becomes the same
/// Cranelift function in either; only the module (and its ISA flags) differ.
pub fn translate_kernel<M: Module>(
    module: &mut M,
    ctx: &mut Context,
    fctx: &mut FunctionBuilderContext,
    kernel: &Kernel,
    helpers: &[(Helper, FuncId)],
    features: Features,
) -> Result<()> {
    let config = module.target_config();
    let mut b = FunctionBuilder::new(&mut ctx.func, fctx);
    let refs: Vec<_> = helpers
        .iter()
        .map(|&(h, hid)| (h, module.declare_func_in_func(hid, b.func)))
        .collect();
    let lookup = move |h: Helper| {
        refs.iter()
            .find(|(k, _)| *k == h)
            .map(|(_, f)| *f)
            .expect("helpers are declared before translation")
    };
    Translator::translate(&mut b, kernel, &lookup, features)?;
    b.finalize(config);
    Ok(())
}

/// The math helpers `kernel` calls, in [`Helper::ALL`] order.
pub fn helpers_used(kernel: &Kernel) -> Vec<Helper> {
    Helper::ALL
        .into_iter()
        .filter(|h| uses_helper(kernel, *h))
        .collect()
}
// aot: end

fn uses_helper(k: &Kernel, h: Helper) -> bool {
    fn walk(r: &crate::ir::Region, h: Helper) -> bool {
        r.insts.iter().any(|i| match &i.kind {
            crate::ir::InstKind::Call(x, _) => *x == h,
            crate::ir::InstKind::Loop(l) => walk(&l.body, h),
            _ => false,
        })
    }
    walk(&k.body, h)
}
