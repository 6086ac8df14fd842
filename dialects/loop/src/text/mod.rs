//! The loop dialect's text format: a printer and a parser that round-trip exactly (print →
//! parse → print gives the same text). Same syntax family as the graph dialect: `%values`,
//! `@symbols`, `//` comments, types after `:`.
//!
//! ```text
//! kernel @relu(@0 x: f32[1024] readonly, @1 y: f32[1024]) {
//!   %0 = fconst 0.0
//!   %1 = splat f32x4 %0
//!   parallel %2 = 0 to 1024 step 4 {
//!     %3 = load f32x4 @0[%2]
//!     %4 = max %3, %1 : f32x4
//!     store @1[%2], %4
//!     yield
//!   }
//! }
//! ```
//!
//! Grammar (one instruction per line by convention; the lexer ignores line breaks):
//!
//! ```text
//! module   := kernel*
//! kernel   := 'kernel' @name '(' (buf (',' buf)*)? ')' '{' inst* '}'
//! buf      := @label NAME ':' elem '[' INT ']' 'readonly'?
//! inst     := (%v (',' %v)* '=')? op
//! op       := 'iconst' TYPE INT | 'fconst' FLOAT
//!           | BINOP %a ',' %b ':' TYPE            (add sub mul div rem min max and or shl shr)
//!           | UNOP %a ':' TYPE                    (neg abs sqrt floor ceil nearest trunc)
//!           | 'fma' %a ',' %b ',' %c ':' TYPE
//!           | 'cmp' CMPOP %a ',' %b ':' TYPE      (eq ne lt le gt ge)
//!           | 'select' %c ',' %a ',' %b ':' TYPE
//!           | 'splat' TYPE %x | 'cast' TYPE %x
//!           | 'extract' %v ',' LANE ':' TYPE | 'insert' %v ',' %x ',' LANE ':' TYPE
//!           | 'bitcast' TYPE %x | 'reduce' REDOP %v ':' TYPE
//!           | 'load' TYPE addr | 'store' addr ',' %v
//!           | 'call' HELPER '(' (%a (',' %a)*)? ')' ':' TYPE
//!           | 'dot_u8s8' %acc ',' %a ',' %b          (result i32x4)
//!           | 'narrow_u8' %a ',' %b ',' %c ',' %d     (result i8x16)
//!           | 'widen_u8' %v ',' PART                  (result i32x4, PART in 0..4)
//!           | 'shuffle' %a ',' %b ',' '[' INT (',' INT)* ']'  (result i8x16, 16 indices < 32)
//!           | ('for' | 'parallel') %i '=' INT 'to' INT 'step' INT
//!                 ('iter' '(' %a '=' %init (',' %a '=' %init)* ')')? '{' inst* '}'
//!           | 'yield' (%v (',' %v)*)?
//! addr     := @buf '[' %off ('+N' | '-N')? ']'
//! ```
//!
//! The type after `:` (and after `iconst`, `splat`, `cast`, `load`) is the result's type
//! (`fconst` and the int8 instructions have a single result type and write none); the
//! parser takes it as written and the verifier checks it against the operands, so a
//! mistyped file fails with a verifier message that names the instruction, not a parse
//! error. Loop results, induction variable and carried values take their types from the
//! loop (index, and the types of the initial values).
//!
//! Names: the printer numbers values densely in textual definition order (a loop's results
//! first, then its induction variable and carried values, then its body) because builders
//! and passes allocate values out of textual order; the parser allocates in the same order,
//! so a parsed kernel prints back identically. Hand-written files may use any names
//! (`%acc`, `%i`); a name is visible from its definition to the end of the region defining
//! it, so sibling loops may reuse `%i` but a body cannot shadow an outer name. Buffers
//! print as `@<index>`; any label is accepted when parsing.
//!
//! Floats print in Rust's shortest round-trip form (`1.0`, `-0.0`, `1e-7`, `inf`, `-inf`);
//! the canonical NaN prints as `nan` and any other NaN as `nan(BITS)` with its bit pattern
//! in decimal, so every f32 survives bit for bit.

mod parse;
mod print;

pub use parse::{parse_kernel, parse_module};
pub use print::{Names, inst_text, print_kernel, print_module};

/// Shortest text that reads back to the same f32, bit for bit (NaN payloads included).
pub(crate) fn f32_text(v: f32) -> String {
    if v.is_nan() {
        if v.to_bits() == f32::NAN.to_bits() {
            "nan".into()
        } else {
            format!("nan({})", v.to_bits())
        }
    } else {
        format!("{v:?}")
    }
}

/// A buffer name as a bare word when the lexer reads it back as one, else a string.
pub(crate) fn word_text(s: &str) -> String {
    let bare = s
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && kiln_core::lexer::is_bare_name(s)
        && !matches!(s, "_" | "inf" | "nan");
    if bare {
        s.to_string()
    } else {
        kiln_core::lexer::quote_string(s)
    }
}
