//! The loop dialect's data structures: a kernel is a list of buffers and one structured region of
//! instructions over SSA values, with `for`/`parallel` loops that carry values between iterations.
//!
//! Why structured loops and not a CFG: every transform kiln needs (tiling, unrolling, register
//! blocking, epilogue fusion) is a rewrite of a loop nest, and Cranelift has no loop optimiser, so
//! the schedule written here is the schedule the machine runs. Loop-carried values (`iter`) keep
//! accumulators in registers across the reduction loop; codegen turns them into block parameters.
//!
//! Why 128-bit vectors only: Cranelift lowers no wider vector type, so the dialect does not offer
//! one. Bounds are compile-time constants because shapes are static after import; the only runtime
//! bounds are the chunk limits of the top-level `parallel` loop, which the runtime hands each
//! thread.

use std::fmt;

/// Scalar and 128-bit vector types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    /// A loop index or element offset (64-bit signed).
    Index,
    /// The result of a scalar comparison.
    Bool,
    F32,
    I32,
    I16,
    I8,
    U8,
    F32X4,
    I32X4,
    I16X8,
    I8X16,
}

impl Type {
    pub const ALL: [Type; 11] = [
        Type::Index,
        Type::Bool,
        Type::F32,
        Type::I32,
        Type::I16,
        Type::I8,
        Type::U8,
        Type::F32X4,
        Type::I32X4,
        Type::I16X8,
        Type::I8X16,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Type::Index => "index",
            Type::Bool => "bool",
            Type::F32 => "f32",
            Type::I32 => "i32",
            Type::I16 => "i16",
            Type::I8 => "i8",
            Type::U8 => "u8",
            Type::F32X4 => "f32x4",
            Type::I32X4 => "i32x4",
            Type::I16X8 => "i16x8",
            Type::I8X16 => "i8x16",
        }
    }

    pub fn from_name(s: &str) -> Option<Type> {
        Type::ALL.into_iter().find(|t| t.name() == s)
    }

    pub fn is_vector(self) -> bool {
        self.lanes() > 1
    }

    pub fn lanes(self) -> u32 {
        match self {
            Type::F32X4 | Type::I32X4 => 4,
            Type::I16X8 => 8,
            Type::I8X16 => 16,
            _ => 1,
        }
    }

    /// The lane type of a vector (the type itself for a scalar).
    pub fn lane(self) -> Type {
        match self {
            Type::F32X4 => Type::F32,
            Type::I32X4 => Type::I32,
            Type::I16X8 => Type::I16,
            Type::I8X16 => Type::I8,
            t => t,
        }
    }

    /// The 128-bit vector of this lane type.
    pub fn vector(self) -> Option<Type> {
        match self {
            Type::F32 => Some(Type::F32X4),
            Type::I32 => Some(Type::I32X4),
            Type::I16 => Some(Type::I16X8),
            Type::I8 | Type::U8 => Some(Type::I8X16),
            _ => None,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self.lane(), Type::F32)
    }

    /// Bytes a value of this type occupies in memory.
    pub fn bytes(self) -> u32 {
        match self {
            Type::Index => 8,
            Type::Bool | Type::I8 | Type::U8 => 1,
            Type::I16 => 2,
            Type::F32 | Type::I32 => 4,
            _ => 16,
        }
    }

    /// Types a buffer may hold.
    pub fn is_elem(self) -> bool {
        matches!(
            self,
            Type::F32 | Type::I32 | Type::I16 | Type::I8 | Type::U8 | Type::Index
        )
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

macro_rules! entity {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);
        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

entity!(
    /// An SSA value: an instruction result or a loop's induction variable / carried value.
    Val,
    "%"
);
entity!(
    /// A buffer parameter of a kernel.
    Buf,
    "@"
);

/// A kernel parameter: a dense buffer of `len` elements.
#[derive(Debug, Clone, PartialEq)]
pub struct BufDecl {
    pub name: String,
    pub elem: Type,
    pub len: usize,
    /// Whether the kernel only reads it (weights, inputs).
    pub readonly: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    /// Float division, or signed integer division (rounding toward zero).
    Div,
    /// Signed integer remainder.
    Rem,
    Min,
    Max,
    /// Bitwise and of integer values (masks).
    And,
    /// Bitwise or of integer values (masks).
    Or,
    /// Shift left / arithmetic shift right by a scalar amount.
    Shl,
    Shr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Abs,
    Sqrt,
    Floor,
    Ceil,
    /// Round half to even.
    Nearest,
    Trunc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Horizontal reductions of a vector to a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedOp {
    Add,
    Max,
    Min,
}

/// Scalar math the runtime supplies, for functions Cranelift has no instruction for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Helper {
    Exp,
    Log,
    Tanh,
    Erf,
    Pow,
    Sin,
    Cos,
    Atan,
    Fmod,
}

impl Helper {
    pub const ALL: [Helper; 9] = [
        Helper::Exp,
        Helper::Log,
        Helper::Tanh,
        Helper::Erf,
        Helper::Pow,
        Helper::Sin,
        Helper::Cos,
        Helper::Atan,
        Helper::Fmod,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Helper::Exp => "exp",
            Helper::Log => "log",
            Helper::Tanh => "tanh",
            Helper::Erf => "erf",
            Helper::Pow => "pow",
            Helper::Sin => "sin",
            Helper::Cos => "cos",
            Helper::Atan => "atan",
            Helper::Fmod => "fmod",
        }
    }

    pub fn from_name(s: &str) -> Option<Helper> {
        Helper::ALL.into_iter().find(|h| h.name() == s)
    }

    /// Number of f32 arguments.
    pub fn arity(self) -> usize {
        match self {
            Helper::Pow | Helper::Fmod => 2,
            _ => 1,
        }
    }
}

/// A loop: `for %i = lo to hi step s iter(%a = init, ...) { ... yield ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Loop {
    pub var: Val,
    pub lo: i64,
    pub hi: i64,
    pub step: i64,
    /// Iterations may run in any order and on different threads. Only a loop at the top level
    /// of a kernel may be parallel; the runtime passes each thread its `[lo, hi)` chunk.
    pub parallel: bool,
    /// Initial values of the carried values.
    pub inits: Vec<Val>,
    /// The carried values as seen inside the body.
    pub args: Vec<Val>,
    pub body: Region,
}

/// A straight-line list of instructions; the last one of a loop body is its `yield`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Region {
    pub insts: Vec<Inst>,
}

/// The instruction set.
#[derive(Debug, Clone, PartialEq)]
pub enum InstKind {
    /// An integer constant of type index/i32/i16/i8/u8/bool.
    Iconst(Type, i64),
    Fconst(f32),
    Binary(BinOp, Val, Val),
    Unary(UnOp, Val),
    /// `a * b + c`, fused.
    Fma(Val, Val, Val),
    /// Comparison; scalars give `bool`, vectors a lane mask of the same-width integer vector.
    Cmp(CmpOp, Val, Val),
    /// `cond ? a : b`; `cond` is a bool or a lane mask.
    Select(Val, Val, Val),
    /// Broadcast a scalar to every lane of the result type.
    Splat(Type, Val),
    /// One lane of a vector.
    Extract(Val, u8),
    /// The vector with one lane replaced by a scalar.
    Insert(Val, Val, u8),
    /// Reinterpret the bits as another type of the same width (f32 ↔ i32, f32x4 ↔ i32x4):
    /// range reductions in `exp` build powers of two from their exponent bits.
    Bitcast(Type, Val),
    Reduce(RedOp, Val),
    /// Numeric conversion to the given type: float→int truncates toward zero and saturates
    /// to the target's range (NaN → 0); int→float rounds to nearest; int→int extends by the
    /// source's signedness or WRAPS to a narrower width (`cast u8` of the i32 300 is 44), so
    /// a saturating narrowing clamps first (or uses `narrow_u8` on vectors).
    Cast(Type, Val),
    /// Load a scalar or vector of the given type at element offset `off + disp` of a buffer.
    Load(Type, Buf, Val, i64),
    /// Store a value at element offset `off + disp`.
    Store(Buf, Val, i64, Val),
    Call(Helper, Vec<Val>),
    /// `dot_u8s8 %acc, %a, %b`: the int8 dot-product step of a quantized GEMM (x86's
    /// `vpdpbusd`). `acc: i32x4`, `a, b: i8x16`; the bytes of `a` are read as UNSIGNED
    /// (u8 activations), those of `b` as SIGNED (s8 weights). Lane `i` of the `i32x4`
    /// result is `acc[i] + Σ_{j<4} u8(a[4i+j]) · s8(b[4i+j])` in wrapping i32 arithmetic
    /// (the non-saturating `vpdpbusd`, not `vpdpbusds`). Each product fits in i16 and a group
    /// of four in i18, so only the accumulation can wrap.
    DotU8S8(Val, Val, Val),
    /// `narrow_u8 %a, %b, %c, %d`: sixteen `i32` lanes (those of `a`, then `b`, `c`, `d`)
    /// each saturated to `[0, 255]` and packed into the bytes of an `i8x16` — the last step
    /// of requantising to u8 (x86 `packssdw` + `packuswb`).
    NarrowU8([Val; 4]),
    /// `widen_u8 %v, PART`: bytes `4·PART .. 4·PART+3` of an `i8x16`, zero-extended to the
    /// lanes of an `i32x4` (PART in 0..4): u8 data into the integer epilogue.
    WidenU8(Val, u8),
    /// `shuffle %a, %b, [i0, …, i15]`: byte `j` of the `i8x16` result is byte `ij` of the
    /// 32 bytes of `a` then `b` (each `ij < 32`). Interleaving two byte vectors is how
    /// four taps of a depthwise filter become the four bytes `dot_u8s8` sums per lane;
    /// the interleaving masks compile to single `punpckl/h` instructions.
    Shuffle(Val, Val, [u8; 16]),
    Loop(Box<Loop>),
    /// Ends a loop body, giving the carried values of the next iteration.
    Yield(Vec<Val>),
}

/// An instruction and the values it defines.
#[derive(Debug, Clone, PartialEq)]
pub struct Inst {
    pub kind: InstKind,
    pub results: Vec<Val>,
}

/// A compiled unit: buffers in, buffers out, one body.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub bufs: Vec<BufDecl>,
    pub body: Region,
    /// The type of every value, indexed by `Val`.
    pub types: Vec<Type>,
}

impl Kernel {
    pub fn ty(&self, v: Val) -> Type {
        self.types[v.index()]
    }

    pub fn buf(&self, b: Buf) -> &BufDecl {
        &self.bufs[b.index()]
    }

    /// The top-level parallel loop, whose range the runtime splits among threads.
    pub fn parallel_extent(&self) -> Option<(i64, i64, i64)> {
        self.body.insts.iter().find_map(|i| match &i.kind {
            InstKind::Loop(l) if l.parallel => Some((l.lo, l.hi, l.step)),
            _ => None,
        })
    }

    /// Counts instructions (loops counted once plus their bodies) — a size statistic.
    pub fn inst_count(&self) -> usize {
        fn count(r: &Region) -> usize {
            r.insts
                .iter()
                .map(|i| match &i.kind {
                    InstKind::Loop(l) => 1 + count(&l.body),
                    _ => 1,
                })
                .sum()
        }
        count(&self.body)
    }
}

/// A collection of kernels, the unit the loop dialect's passes and printer work on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Module {
    pub kernels: Vec<Kernel>,
}

impl BinOp {
    pub const ALL: [BinOp; 11] = [
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Rem,
        BinOp::Min,
        BinOp::Max,
        BinOp::And,
        BinOp::Or,
        BinOp::Shl,
        BinOp::Shr,
    ];
    pub fn name(self) -> &'static str {
        match self {
            BinOp::Add => "add",
            BinOp::Sub => "sub",
            BinOp::Mul => "mul",
            BinOp::Div => "div",
            BinOp::Rem => "rem",
            BinOp::Min => "min",
            BinOp::Max => "max",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Shl => "shl",
            BinOp::Shr => "shr",
        }
    }
}

impl UnOp {
    pub const ALL: [UnOp; 7] = [
        UnOp::Neg,
        UnOp::Abs,
        UnOp::Sqrt,
        UnOp::Floor,
        UnOp::Ceil,
        UnOp::Nearest,
        UnOp::Trunc,
    ];
    pub fn name(self) -> &'static str {
        match self {
            UnOp::Neg => "neg",
            UnOp::Abs => "abs",
            UnOp::Sqrt => "sqrt",
            UnOp::Floor => "floor",
            UnOp::Ceil => "ceil",
            UnOp::Nearest => "nearest",
            UnOp::Trunc => "trunc",
        }
    }
}

impl CmpOp {
    pub const ALL: [CmpOp; 6] = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ];
    pub fn name(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
        }
    }
}

impl RedOp {
    pub const ALL: [RedOp; 3] = [RedOp::Add, RedOp::Max, RedOp::Min];
    pub fn name(self) -> &'static str {
        match self {
            RedOp::Add => "add",
            RedOp::Max => "max",
            RedOp::Min => "min",
        }
    }
}
