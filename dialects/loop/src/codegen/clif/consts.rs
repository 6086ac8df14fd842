//! Vector constants: loaded from the constant pool next to their uses.
//!
//! A splat of a constant becomes one 16-byte constant-pool load (`vconst`): one load uop,
//! where a splat of an immediate costs a move, a `movd` and a broadcast shuffle.
//!
//! After a loop that leaves many vectors live (a register-blocked reduction: the int8
//! GEMM's twelve accumulators), a use in the region that defined the constant, more than
//! [`REMAT_AFTER`] instructions after its latest load, loads it again. Cranelift does not
//! rematerialise, so a constant shared by the epilogue of all twelve accumulators otherwise
//! holds a register throughout, and regalloc2 then spills an accumulator across the whole
//! k loop: a store and a reload in the dependency chain of every iteration. Uses close
//! together share one load, which keeps the patterns Cranelift matches on one value
//! (`select(c < x, x, c)` is one `maxps` only when both `c` are the same value). A use
//! inside a nested loop keeps the register: the constant stays hoisted out of that loop.
//! Elsewhere constants stay in registers: reloading them in an epilogue-heavy kernel with
//! registers to spare (MobileNet's 1×1 convs) only adds load uops (about 10 % slower).

use super::{Translator, clif_type};
use crate::ir::{Type, Val};
use cranelift_codegen::ir::{ConstantData, InstBuilder, Value};

/// How many instructions one load of a constant splat serves before a use loads it again.
const REMAT_AFTER: usize = 6;

/// Vectors a loop must carry for the code after it to count as short of registers.
const PRESSURE: usize = 8;

/// One splat of a constant.
#[derive(Clone)]
struct ConstSplat {
    /// The region that defined it.
    region: u32,
    bytes: Vec<u8>,
    /// Its latest load, and the instruction count when that load was made.
    load: Value,
    at: usize,
}

/// What the translator knows about constants.
pub(super) struct Consts {
    /// Each scalar constant's bytes (little-endian, its width), for splats of it.
    scalars: Vec<Option<Vec<u8>>>,
    splats: Vec<Option<ConstSplat>>,
    /// Instructions translated so far.
    pub count: usize,
    /// The region being translated, and the number of regions entered so far.
    region: u32,
    regions: u32,
    /// Regions in which a loop carrying [`PRESSURE`] vectors has been emitted.
    pressed: Vec<u32>,
}

impl Consts {
    pub fn new(values: usize) -> Consts {
        Consts {
            scalars: vec![None; values],
            splats: vec![None; values],
            count: 0,
            region: 0,
            regions: 0,
            pressed: Vec::new(),
        }
    }

    /// Notes a loop carrying `vectors` vector values, emitted in the current region.
    pub fn after_loop(&mut self, vectors: usize) {
        if vectors >= PRESSURE && !self.pressed.contains(&self.region) {
            self.pressed.push(self.region);
        }
    }

    /// Enters a new region; returns the one to restore with [`Consts::leave`].
    pub fn enter(&mut self) -> u32 {
        let outer = self.region;
        self.regions += 1;
        self.region = self.regions;
        outer
    }

    pub fn leave(&mut self, outer: u32) {
        self.region = outer;
    }

    pub fn scalar(&mut self, v: Val, bytes: &[u8]) {
        self.scalars[v.index()] = Some(bytes.to_vec());
    }

    /// The 16 bytes of a splat of `v`, when `v` is a constant.
    pub fn splat_bytes(&self, v: Val) -> Option<Vec<u8>> {
        let lane = self.scalars.get(v.index())?.as_ref()?;
        Some(lane.repeat(16 / lane.len()))
    }
}

impl Translator<'_, '_> {
    /// The splat `r` of type `ty` of a constant whose lanes make `bytes`.
    pub(super) fn const_splat(&mut self, r: Val, ty: Type, bytes: Vec<u8>) -> Value {
        let load = self.vconst(ty, &bytes);
        self.consts.splats[r.index()] = Some(ConstSplat {
            region: self.consts.region,
            bytes,
            load,
            at: self.consts.count,
        });
        load
    }

    /// A use of `v` when it is a constant splat: its latest load if recent, in another region
    /// or in one without register pressure, else a new load.
    pub(super) fn remat(&mut self, v: Val) -> Option<Value> {
        let sp = self.consts.splats.get(v.index())?.as_ref()?;
        let c = &self.consts;
        if sp.region != c.region || c.count - sp.at <= REMAT_AFTER || !c.pressed.contains(&c.region)
        {
            return Some(sp.load);
        }
        let bytes = sp.bytes.clone();
        let load = self.vconst(self.ty(v), &bytes);
        let at = self.consts.count;
        let sp = self.consts.splats[v.index()].as_mut()?;
        (sp.load, sp.at) = (load, at);
        Some(load)
    }

    fn vconst(&mut self, ty: Type, bytes: &[u8]) -> Value {
        let c = self.b.func.dfg.constants.insert(ConstantData::from(bytes));
        self.b.ins().vconst(clif_type(ty), c)
    }
}
