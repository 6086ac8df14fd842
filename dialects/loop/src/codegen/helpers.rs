//! Scalar math the generated code calls: the functions x86 has no instruction for.
//!
//! Each is the platform's correctly-rounded-or-nearly f32 routine; the reference interpreter
//! evaluates in f64 and rounds, so the two agree to about an ulp.

use crate::ir::Helper;

extern "C" fn kiln_exp(x: f32) -> f32 {
    x.exp()
}
extern "C" fn kiln_log(x: f32) -> f32 {
    x.ln()
}
extern "C" fn kiln_tanh(x: f32) -> f32 {
    x.tanh()
}
extern "C" fn kiln_erf(x: f32) -> f32 {
    libm::erff(x)
}
extern "C" fn kiln_pow(x: f32, y: f32) -> f32 {
    x.powf(y)
}
extern "C" fn kiln_sin(x: f32) -> f32 {
    x.sin()
}
extern "C" fn kiln_cos(x: f32) -> f32 {
    x.cos()
}
extern "C" fn kiln_atan(x: f32) -> f32 {
    x.atan()
}
extern "C" fn kiln_fmod(x: f32, y: f32) -> f32 {
    x % y
}

/// The symbol name a helper is imported under.
pub fn symbol(h: Helper) -> String {
    format!("kiln_{}", h.name())
}

/// The host address of a helper, for the JIT's symbol table.
pub fn address(h: Helper) -> *const u8 {
    match h {
        Helper::Exp => kiln_exp as *const u8,
        Helper::Log => kiln_log as *const u8,
        Helper::Tanh => kiln_tanh as *const u8,
        Helper::Erf => kiln_erf as *const u8,
        Helper::Pow => kiln_pow as *const u8,
        Helper::Sin => kiln_sin as *const u8,
        Helper::Cos => kiln_cos as *const u8,
        Helper::Atan => kiln_atan as *const u8,
        Helper::Fmod => kiln_fmod as *const u8,
    }
}
