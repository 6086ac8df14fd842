//! The tensor quantisation config (TQC): how one op input or one value is quantised.
//!
//! Fields follow PPQ: a policy bit set, bit width and integer range, rounding, observer,
//! scale(s) and offset(s), and a state. The dominator link is not a field: it lives in the
//! unit's union-find ([`crate::QuantGraph`]), so merging groups stays cheap.

use crate::observer::ObserverKind;
use crate::rounding::Rounding;
use kiln_core::{Result, bail, ensure};

/// PPQ's policy bitmap (same bit values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy(pub u8);

impl Policy {
    pub const PER_TENSOR: u8 = 0x1;
    pub const PER_CHANNEL: u8 = 0x2;
    pub const LINEAR: u8 = 0x4;
    pub const FLOATING: u8 = 0x8;
    pub const SYMMETRIC: u8 = 0x10;
    pub const ASYMMETRIC: u8 = 0x20;
    pub const POWER_OF_2: u8 = 0x40;

    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// Exactly one of each pair, and power-of-2 only on top of linear.
    pub fn validate(self) -> Result<()> {
        let one = |a: u8, b: u8| self.has(a) != self.has(b);
        ensure!(
            one(Self::PER_TENSOR, Self::PER_CHANNEL),
            Verify,
            "policy {:#x}: exactly one of per-tensor / per-channel",
            self.0
        );
        ensure!(
            one(Self::SYMMETRIC, Self::ASYMMETRIC),
            Verify,
            "policy {:#x}: exactly one of symmetric / asymmetric",
            self.0
        );
        ensure!(
            one(Self::LINEAR, Self::FLOATING),
            Verify,
            "policy {:#x}: exactly one of linear / floating",
            self.0
        );
        ensure!(
            !self.has(Self::POWER_OF_2) || self.has(Self::LINEAR),
            Verify,
            "policy {:#x}: power-of-2 needs linear",
            self.0
        );
        Ok(())
    }

    pub fn symmetric(self) -> bool {
        self.has(Self::SYMMETRIC)
    }
    pub fn per_channel(self) -> bool {
        self.has(Self::PER_CHANNEL)
    }
    pub fn pow2(self) -> bool {
        self.has(Self::POWER_OF_2)
    }
}

/// PPQ's twelve TQC states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Just created; not usable yet.
    Initial,
    /// A parameter already stored quantised (the constant holds `dequant(quant(w))`).
    Baked,
    /// An activation whose quantisation is done by another TQC of its group.
    Overlapped,
    /// Active, but its parameters come from its group's root.
    Slave,
    /// Switched off for good.
    Deactivated,
    /// Active with its own (root) parameters.
    Activated,
    /// Temporarily off (a system state: layer-wise analysis uses it).
    Dequantized,
    /// A shape or index input: never quantised.
    Soi,
    /// Quantised from other TQCs' parameters (bias, clip bounds), once they are known.
    Passive,
    /// Passive, waiting for its sources' parameters.
    PassiveInit,
    /// Passive and stored quantised.
    PassiveBaked,
    /// Runs in fp32 (the op has no int8 path on this platform).
    Fp32,
}

pub const ALL_STATES: [State; 12] = [
    State::Initial,
    State::Baked,
    State::Overlapped,
    State::Slave,
    State::Deactivated,
    State::Activated,
    State::Dequantized,
    State::Soi,
    State::Passive,
    State::PassiveInit,
    State::PassiveBaked,
    State::Fp32,
];

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Initial => "INITIAL",
            State::Baked => "BAKED",
            State::Overlapped => "OVERLAPPED",
            State::Slave => "SLAVE",
            State::Deactivated => "DEACTIVATED",
            State::Activated => "ACTIVATED",
            State::Dequantized => "DEQUANTIZED",
            State::Soi => "SOI",
            State::Passive => "PASSIVE",
            State::PassiveInit => "PASSIVE_INIT",
            State::PassiveBaked => "PASSIVE_BAKED",
            State::Fp32 => "FP32",
        }
    }

    pub fn from_name(s: &str) -> Option<State> {
        ALL_STATES.iter().copied().find(|st| st.name() == s)
    }

    /// Whether the simulator quantises at this TQC (the brief's rule: only ACTIVATED and
    /// SLAVE do; passive and overlapped pass through).
    pub fn quantises(self) -> bool {
        matches!(self, State::Activated | State::Slave)
    }

    /// An activation TQC that will quantise once calibrated (INITIAL, ACTIVATED or SLAVE).
    pub fn is_active(self) -> bool {
        matches!(self, State::Initial | State::Activated | State::Slave)
    }
}

/// One TQC.
#[derive(Debug, Clone, PartialEq)]
pub struct Tqc {
    pub policy: Policy,
    /// The channel axis of a per-channel policy.
    pub axis: Option<usize>,
    pub num_bits: u8,
    pub quant_min: i32,
    pub quant_max: i32,
    pub rounding: Rounding,
    pub observer: ObserverKind,
    /// Empty until parameters are known; one entry per channel when per-channel.
    pub scale: Vec<f32>,
    pub offset: Vec<i32>,
    /// The clip range the observer chose (kept so alignment can re-derive parameters).
    pub range: Option<(f32, f32)>,
    pub state: State,
}

/// PPQ's minimum scale: a constant-zero tensor still gets a usable scale.
pub const MIN_SCALE: f32 = 1e-8;

impl Tqc {
    pub fn has_params(&self) -> bool {
        !self.scale.is_empty()
    }

    /// Checks the config and, when present, the parameters.
    pub fn validate(&self) -> Result<()> {
        self.policy.validate()?;
        ensure!(
            self.policy.per_channel() == self.axis.is_some(),
            Verify,
            "a per-channel TQC needs an axis and a per-tensor one none"
        );
        ensure!(
            self.quant_min < self.quant_max,
            Verify,
            "quant range [{}, {}] is empty",
            self.quant_min,
            self.quant_max
        );
        ensure!(
            (1..=32).contains(&self.num_bits),
            Verify,
            "num_bits {} out of 1..32",
            self.num_bits
        );
        let span = self.quant_max as i64 - self.quant_min as i64;
        ensure!(
            span < (1i64 << self.num_bits),
            Verify,
            "quant range [{}, {}] does not fit {} bits",
            self.quant_min,
            self.quant_max,
            self.num_bits
        );
        ensure!(
            self.scale.len() == self.offset.len(),
            Verify,
            "{} scales but {} offsets",
            self.scale.len(),
            self.offset.len()
        );
        if !self.policy.per_channel() {
            ensure!(
                self.scale.len() <= 1,
                Verify,
                "a per-tensor TQC has {} scales",
                self.scale.len()
            );
        }
        for (&s, &o) in self.scale.iter().zip(&self.offset) {
            ensure!(
                s.is_finite() && s > 0.0,
                Verify,
                "scale {s} must be positive and finite"
            );
            ensure!(
                (self.quant_min..=self.quant_max).contains(&o),
                Verify,
                "offset {o} outside [{}, {}]",
                self.quant_min,
                self.quant_max
            );
            if self.policy.symmetric() {
                ensure!(o == 0, Verify, "a symmetric TQC has offset {o}");
            }
        }
        Ok(())
    }

    /// Scale and offset for the clip range `[lo, hi]`, by the policy:
    /// - asymmetric: the range is widened to include 0, `s = (hi − lo)/(qmax − qmin)`,
    ///   `o = clamp(qmin − round(lo/s))` (the integer that represents 0 exactly);
    /// - symmetric: `s = max(|lo|, |hi|)/qmax`, `o = 0` (an unsigned symmetric range is
    ///   `[0, qmax·s]`);
    /// - power-of-2: `s` is rounded up to the next power of two (range never shrinks);
    /// - `s` is at least [`MIN_SCALE`].
    pub fn params_for_range(&self, lo: f32, hi: f32) -> Result<(f32, i32)> {
        ensure!(
            lo.is_finite() && hi.is_finite() && lo <= hi,
            Eval,
            "cannot quantise the range [{lo}, {hi}]"
        );
        if self.policy.has(Policy::FLOATING) {
            bail!(
                Unsupported,
                "floating quantisation policies are representable but not simulated"
            );
        }
        let (qmin, qmax) = (self.quant_min as f64, self.quant_max as f64);
        let (lo, hi) = (lo.min(0.0) as f64, hi.max(0.0) as f64);
        let mut s = if self.policy.symmetric() {
            lo.abs().max(hi) / qmax
        } else {
            (hi - lo) / (qmax - qmin)
        };
        s = s.max(MIN_SCALE as f64);
        if self.policy.pow2() {
            s = 2f64.powi(s.log2().ceil() as i32);
        }
        let s = s as f32;
        let o = if self.policy.symmetric() {
            0
        } else {
            let z = qmin - self.rounding.round((lo / s as f64) as f32) as f64;
            z.clamp(qmin, qmax) as i32
        };
        Ok((s, o))
    }

    /// Sets per-tensor parameters from a range (and remembers the range).
    pub fn set_range(&mut self, lo: f32, hi: f32) -> Result<()> {
        let (s, o) = self.params_for_range(lo, hi)?;
        self.scale = vec![s];
        self.offset = vec![o];
        self.range = Some((lo, hi));
        Ok(())
    }

    /// The text spelling of the integer type: `u8`, `s8`, `s32`, with the range in
    /// brackets when it is not the full range of that type.
    pub fn dtype_text(&self) -> String {
        let signed = self.quant_min < 0;
        let b = self.num_bits as u32;
        let (fmin, fmax) = if signed {
            (-(1i64 << (b - 1)), (1i64 << (b - 1)) - 1)
        } else {
            (0, (1i64 << b) - 1)
        };
        let base = format!("{}{}", if signed { "s" } else { "u" }, b);
        if fmin == self.quant_min as i64 && fmax == self.quant_max as i64 {
            base
        } else {
            format!("{base}[{}, {}]", self.quant_min, self.quant_max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::KILN_X86;

    #[test]
    fn asymmetric_params_include_zero() {
        let t = KILN_X86.activation.make(None);
        let (s, o) = t.params_for_range(-1.0, 3.0).unwrap();
        assert!((s - 4.0 / 255.0).abs() < 1e-9);
        assert_eq!(o, 64); // round(1/(4/255)) = round(63.75)
        let (s, o) = t.params_for_range(0.5, 2.0).unwrap();
        assert!((s - 2.0 / 255.0).abs() < 1e-9, "range widened to [0, 2]");
        assert_eq!(o, 0);
    }

    #[test]
    fn symmetric_and_pow2_params() {
        let mut t = KILN_X86.weight.make(Some(0));
        let (s, o) = t.params_for_range(-2.54, 1.0).unwrap();
        assert!((s - 0.02).abs() < 1e-7);
        assert_eq!(o, 0);
        t.policy = Policy(t.policy.0 | Policy::POWER_OF_2);
        let (s, _) = t.params_for_range(-2.54, 1.0).unwrap();
        assert_eq!(s, 1.0 / 32.0, "0.02 rounds up to 2^-5");
        assert_eq!(t.params_for_range(0.0, 0.0).unwrap().0, 2f32.powi(-26));
    }

    #[test]
    fn validation_names_the_problem() {
        let mut t = KILN_X86.activation.make(None);
        t.policy = Policy(Policy::PER_TENSOR | Policy::PER_CHANNEL | Policy::LINEAR);
        assert!(t.validate().unwrap_err().message.contains("per-tensor"));
        let mut t = KILN_X86.activation.make(None);
        t.scale = vec![0.0];
        t.offset = vec![0];
        assert!(t.validate().unwrap_err().message.contains("positive"));
        assert_eq!(KILN_X86.weight.make(Some(0)).dtype_text(), "s8[-127, 127]");
        assert_eq!(KILN_X86.activation.make(None).dtype_text(), "u8");
    }

    #[test]
    fn state_names_round_trip() {
        for s in ALL_STATES {
            assert_eq!(State::from_name(s.name()), Some(s));
        }
    }
}
