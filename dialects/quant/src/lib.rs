//! kiln-quant: the quant dialect.
//!
//! A quant-dialect unit ([`QuantGraph`]) is a graph-dialect graph plus one tensor
//! quantisation config ([`Tqc`]) per op input and per value, in the style of PPQ. Passes
//! edit TQC states and parameters (never the ops, except baking weights), so the graph still
//! runs in fp32 while the TQCs describe exactly what an int8 device does. TQCs that must
//! share parameters are kept in a union-find ([`union_find`]); a TQC's effective parameters
//! come from its root.
//!
//! Module map: [`rounding`] the seven rounding policies; [`tqc`] policies, states and the
//! config itself; [`platform`] schemes as data and the per-op dispatcher; [`ir`] the unit,
//! its construction and verifier; [`text`] printer and parser; [`passes`] one file per
//! pass; [`observer`] calibration statistics; [`calib`] the calibration driver; [`equalize`]
//! per-channel activation equalisation across conv pairs; [`gptq`] error-compensating weight rounding;
//! [`bias_correct`] empirical bias correction;
//! [`arith`] THE int8 arithmetic contract; [`plan`] which ops run in integers and with
//! which parameters; [`sim`] the simulator; [`analysis`] SNR/cosine.

pub mod act_table;
pub mod analysis;
pub mod arith;
pub mod bias_correct;
pub mod calib;
pub mod equalize;
pub mod float_run;
pub mod gptq;
pub mod ir;
mod layer;
pub mod observer;
pub mod passes;
pub mod plan;
pub mod platform;
pub mod rounding;
pub mod sim;
pub mod text;
pub mod tqc;
pub mod union_find;

pub use ir::{QuantGraph, Site, TqcId};
pub use observer::ObserverKind;
pub use platform::{Dispatch, Platform};
pub use rounding::Rounding;
pub use tqc::{Policy, State, Tqc};
