//! A reference evaluator: runs a kernel on host buffers, one instruction at a time, vectors
//! lane by lane. It defines what each instruction means, for the tests that check passes
//! preserve results and as the oracle for generated code; `loop.fold-constants` folds with
//! these same scalar functions, so folding and execution cannot disagree.
//!
//! Semantics (what codegen must match):
//! - Integers wrap to their width. i8/i16/i32 hold sign-extended values, u8 zero-extended,
//!   so comparisons, min/max, division and `shr` are unsigned for u8 and signed otherwise.
//!   Shift amounts are taken modulo the lane width. Integer division by zero, and a signed
//!   division that overflows (`MIN / -1`), are errors (Cranelift traps); `MIN rem -1` is 0.
//! - Float `min`/`max` propagate NaN and order -0.0 below +0.0 (Cranelift's `fmin`/`fmax`).
//!   `nearest` rounds half to even. `reduce add` sums lanes left to right.
//! - Casts: int→float rounds to nearest; float→int truncates and saturates to the target's
//!   range (NaN → 0; `cast u8` of 300.5 is 255); int→int extends (sign for i8/i16/i32,
//!   zero for u8/bool) or WRAPS to the narrower width (`cast u8` of the i32 300 is 44, of -1
//!   is 255): a saturating integer narrowing is a `max`/`min` clamp before the cast, or
//!   `narrow_u8` for vectors; bool→int is 0 or 1.
//! - int8 (`eval/int8.rs`): `dot_u8s8` reads `a`'s bytes unsigned and `b`'s signed and
//!   wraps the i32 sums; `narrow_u8` saturates each i32 to `[0, 255]`; `widen_u8`
//!   zero-extends bytes.
//! - Comparisons give `bool` (0/1) for scalars and lane masks (all ones / zero) for vectors;
//!   `select` takes a lane where the mask lane is non-zero.
//! - Loops run `for (i = lo; i < hi; i += step)`; the parallel loop runs sequentially.

mod int8;
mod scalar;

pub use int8::*;
pub use scalar::*;

use crate::ir::*;
use crate::text::{Names, inst_text};
use kiln_core::{Error, ErrorKind, Result};

/// A host buffer, one variant per element type a buffer may hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I32(Vec<i32>),
    I16(Vec<i16>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    Index(Vec<i64>),
}

impl Data {
    /// A zero-filled buffer for a declaration (`None` for a non-element type).
    pub fn zeros(elem: Type, len: usize) -> Option<Data> {
        Some(match elem {
            Type::F32 => Data::F32(vec![0.0; len]),
            Type::I32 => Data::I32(vec![0; len]),
            Type::I16 => Data::I16(vec![0; len]),
            Type::I8 => Data::I8(vec![0; len]),
            Type::U8 => Data::U8(vec![0; len]),
            Type::Index => Data::Index(vec![0; len]),
            _ => return None,
        })
    }

    pub fn elem(&self) -> Type {
        match self {
            Data::F32(_) => Type::F32,
            Data::I32(_) => Type::I32,
            Data::I16(_) => Type::I16,
            Data::I8(_) => Type::I8,
            Data::U8(_) => Type::U8,
            Data::Index(_) => Type::Index,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I16(v) => v.len(),
            Data::I8(v) => v.len(),
            Data::U8(v) => v.len(),
            Data::Index(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` (in bounds).
    pub fn get(&self, i: usize) -> Scalar {
        match self {
            Data::F32(v) => Scalar::F(v[i]),
            Data::I32(v) => Scalar::I(v[i].into()),
            Data::I16(v) => Scalar::I(v[i].into()),
            Data::I8(v) => Scalar::I(v[i].into()),
            Data::U8(v) => Scalar::I(v[i].into()),
            Data::Index(v) => Scalar::I(v[i]),
        }
    }

    /// Sets element `i` (in bounds), wrapping integers to the element width.
    pub fn set(&mut self, i: usize, x: Scalar) {
        match self {
            Data::F32(v) => v[i] = x.float(),
            Data::I32(v) => v[i] = x.int() as i32,
            Data::I16(v) => v[i] = x.int() as i16,
            Data::I8(v) => v[i] = x.int() as i8,
            Data::U8(v) => v[i] = x.int() as u8,
            Data::Index(v) => v[i] = x.int(),
        }
    }
}

/// Runs `k` on `bufs` (one per buffer declaration, of its element type and length).
/// The kernel is verified first, so malformed IR is an error, not a panic.
pub fn run(k: &Kernel, bufs: &mut [Data]) -> Result<()> {
    run_chunk(k, bufs, None)
}

/// Like [`run`], but the top-level parallel loop covers only `[lo, hi)` (a thread's chunk
/// as the runtime hands it out), so a split run can be checked against a whole one.
pub fn run_chunk(k: &Kernel, bufs: &mut [Data], chunk: Option<(i64, i64)>) -> Result<()> {
    crate::verify::verify_kernel(k)?;
    if bufs.len() != k.bufs.len() {
        return Err(Error::new(
            ErrorKind::Eval,
            format!(
                "kernel @{} takes {} buffers, given {}",
                k.name,
                k.bufs.len(),
                bufs.len()
            ),
        ));
    }
    for (i, (d, b)) in bufs.iter().zip(&k.bufs).enumerate() {
        if d.elem() != b.elem || d.len() != b.len {
            return Err(Error::new(
                ErrorKind::Eval,
                format!(
                    "kernel @{}: buffer @{i} is {}[{}], given {}[{}]",
                    k.name,
                    b.elem,
                    b.len,
                    d.elem(),
                    d.len()
                ),
            ));
        }
    }
    let mut ev = Eval {
        k,
        bufs,
        chunk,
        env: vec![[Scalar::I(0); 16]; k.types.len()],
    };
    ev.region(&k.body).map(|_| ())
}

struct Eval<'a> {
    k: &'a Kernel,
    bufs: &'a mut [Data],
    chunk: Option<(i64, i64)>,
    env: Vec<Lanes>,
}

impl Eval<'_> {
    fn error(&self, inst: &Inst, e: Error) -> Error {
        let names = Names::new(self.k);
        Error::new(
            ErrorKind::Eval,
            format!(
                "kernel @{}: `{}`: {}",
                self.k.name,
                inst_text(self.k, &names, inst),
                e.message
            ),
        )
    }

    /// Runs a region; returns the values its `yield` gives.
    fn region(&mut self, r: &Region) -> Result<Vec<Lanes>> {
        for inst in &r.insts {
            if let InstKind::Yield(vs) = &inst.kind {
                return Ok(vs.iter().map(|v| self.env[v.index()]).collect());
            }
            self.inst(inst).map_err(|e| {
                if e.message.starts_with("kernel @") {
                    e
                } else {
                    self.error(inst, e)
                }
            })?;
        }
        Ok(Vec::new())
    }

    // Lane loops index several arrays at once; an index reads clearest.
    #[allow(clippy::needless_range_loop)]
    fn inst(&mut self, inst: &Inst) -> Result<()> {
        let k = self.k;
        let ty = |v: Val| k.types[v.index()];
        let get = |env: &Vec<Lanes>, v: Val| env[v.index()];
        let rt = inst.results.first().map(|&r| ty(r)).unwrap_or(Type::Bool);
        let n = rt.lanes() as usize;
        let lane_t = rt.lane();
        let mut out = [Scalar::I(0); 16];
        match &inst.kind {
            InstKind::Iconst(t, x) => out[0] = Scalar::I(wrap(*t, *x)),
            InstKind::Fconst(x) => out[0] = Scalar::F(*x),
            InstKind::Binary(op, a, b) => {
                let (xa, xb) = (get(&self.env, *a), get(&self.env, *b));
                let b_scalar = !ty(*b).is_vector();
                for j in 0..n {
                    out[j] = binary(*op, lane_t, xa[j], if b_scalar { xb[0] } else { xb[j] })?;
                }
            }
            InstKind::Unary(op, a) => {
                let xa = get(&self.env, *a);
                for j in 0..n {
                    out[j] = unary(*op, lane_t, xa[j]);
                }
            }
            InstKind::Fma(a, b, c) => {
                let (xa, xb, xc) = (get(&self.env, *a), get(&self.env, *b), get(&self.env, *c));
                for j in 0..n {
                    out[j] = fma(xa[j], xb[j], xc[j]);
                }
            }
            InstKind::Cmp(op, a, b) => {
                let t = ty(*a);
                let (xa, xb) = (get(&self.env, *a), get(&self.env, *b));
                for j in 0..t.lanes() as usize {
                    let c = compare(*op, t.lane(), xa[j], xb[j]);
                    out[j] = Scalar::I(if t.is_vector() {
                        -i64::from(c)
                    } else {
                        i64::from(c)
                    });
                }
            }
            InstKind::Select(c, a, b) => {
                let (xc, xa, xb) = (get(&self.env, *c), get(&self.env, *a), get(&self.env, *b));
                let per_lane = ty(*c).is_vector();
                for j in 0..n {
                    let m = if per_lane { xc[j] } else { xc[0] };
                    out[j] = if m.int() != 0 { xa[j] } else { xb[j] };
                }
            }
            InstKind::Splat(_, x) => {
                let s = cast(ty(*x), lane_t, get(&self.env, *x)[0]);
                out[..n].fill(s);
            }
            InstKind::Extract(v, lane) => out[0] = get(&self.env, *v)[*lane as usize],
            InstKind::Insert(v, x, lane) => {
                out = get(&self.env, *v);
                out[*lane as usize] = get(&self.env, *x)[0];
            }
            InstKind::Bitcast(t, v) => out = bitcast(ty(*v), *t, &get(&self.env, *v)),
            InstKind::Reduce(op, v) => {
                let xv = get(&self.env, *v);
                let mut acc = xv[0];
                for &x in &xv[1..ty(*v).lanes() as usize] {
                    let bop = match op {
                        RedOp::Add => BinOp::Add,
                        RedOp::Max => BinOp::Max,
                        RedOp::Min => BinOp::Min,
                    };
                    acc = binary(bop, lane_t, acc, x)?;
                }
                out[0] = acc;
            }
            InstKind::Cast(t, v) => {
                let (from, xv) = (ty(*v).lane(), get(&self.env, *v));
                for j in 0..n {
                    out[j] = cast(from, t.lane(), xv[j]);
                }
            }
            InstKind::Load(t, b, off, disp) => {
                let base = self.addr(*b, get(&self.env, *off)[0].int(), *disp, t.lanes())?;
                let data = &self.bufs[b.index()];
                let elem = data.elem();
                for j in 0..n {
                    out[j] = cast(elem, t.lane(), data.get(base + j));
                }
            }
            InstKind::Store(b, off, disp, v) => {
                let t = ty(*v);
                let base = self.addr(*b, get(&self.env, *off)[0].int(), *disp, t.lanes())?;
                let xv = get(&self.env, *v);
                let data = &mut self.bufs[b.index()];
                let elem = data.elem();
                for (j, &x) in xv.iter().enumerate().take(t.lanes() as usize) {
                    data.set(base + j, cast(t.lane(), elem, x));
                }
            }
            InstKind::Call(h, args) => {
                let a: Vec<f32> = args.iter().map(|&a| get(&self.env, a)[0].float()).collect();
                out[0] = Scalar::F(call(*h, &a));
            }
            InstKind::DotU8S8(acc, a, b) => {
                let env = &self.env;
                out = dot_u8s8(&get(env, *acc), &get(env, *a), &get(env, *b));
            }
            InstKind::NarrowU8(vs) => {
                let e = &self.env;
                out = narrow_u8(vs.map(|v| &e[v.index()]));
            }
            InstKind::WidenU8(v, part) => out = widen_u8(&get(&self.env, *v), *part),
            InstKind::Shuffle(a, b, m) => {
                out = shuffle(&get(&self.env, *a), &get(&self.env, *b), m);
            }
            InstKind::Loop(l) => return self.loop_(inst, l),
            InstKind::Yield(_) => {}
        }
        if let Some(&r) = inst.results.first() {
            self.env[r.index()] = out;
        }
        Ok(())
    }

    /// The first element index of an access of `lanes` elements, bounds-checked.
    fn addr(&self, b: Buf, off: i64, disp: i64, lanes: u32) -> Result<usize> {
        let len = self.bufs[b.index()].len();
        let base = off.checked_add(disp);
        match base {
            Some(x) if x >= 0 && (x as u64).saturating_add(u64::from(lanes)) <= len as u64 => {
                Ok(x as usize)
            }
            _ => Err(Error::new(
                ErrorKind::Eval,
                format!(
                    "access of {lanes} element(s) at {off}{disp:+} is outside @{} (length {len})",
                    b.0
                ),
            )),
        }
    }

    fn loop_(&mut self, inst: &Inst, l: &Loop) -> Result<()> {
        let mut carried: Vec<Lanes> = l.inits.iter().map(|v| self.env[v.index()]).collect();
        let (lo, hi) = match self.chunk {
            Some(c) if l.parallel => c,
            _ => (l.lo, l.hi),
        };
        let mut i = lo;
        while i < hi {
            self.env[l.var.index()] = [Scalar::I(i); 16];
            for (a, x) in l.args.iter().zip(&carried) {
                self.env[a.index()] = *x;
            }
            carried = self.region(&l.body)?;
            i = match i.checked_add(l.step.max(1)) {
                Some(n) => n,
                None => break,
            };
        }
        for (r, x) in inst.results.iter().zip(carried) {
            self.env[r.index()] = x;
        }
        Ok(())
    }
}
