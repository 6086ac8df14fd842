//! The machine an object file is compiled for: `TRIPLE[+feat,-feat...]`.
//!
//! The triple is parsed by target-lexicon; features are Cranelift's ISA flags without their
//! `has_` prefix (`avx2`, `fma`, `avx_vnni`, ...). With no triple (or `host`) the ISA starts
//! from what the JIT compiles for (`cranelift_native`'s detection less what `HostIsa::detect`
//! leaves out), so the object's kernels are the JIT's kernels; features switch flags on or
//! off from there. An explicit
//! triple starts from the architecture's baseline (x86-64: SSE2), as a cross compiler does.

use crate::codegen::clif::Features;
use crate::codegen::jit::HostIsa;
use cranelift_codegen::isa::{self, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable, SetError};
use kiln_core::{Result, bail, ensure, err};
use std::str::FromStr;
use target_lexicon::{PointerWidth, Triple};

/// A parsed `--target` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub triple: Triple,
    /// Start from the host's detected features (no triple was named).
    pub host: bool,
    /// `(feature, on)` in the order given; later entries win.
    pub features: Vec<(String, bool)>,
}

impl Target {
    /// This machine, with every feature Cranelift detects on it.
    pub fn host() -> Target {
        Target {
            triple: Triple::host(),
            host: true,
            features: Vec::new(),
        }
    }

    /// Whether code for this target runs here (what the host's linker can link).
    pub fn is_host_triple(&self) -> bool {
        self.host || self.triple == Triple::host()
    }

    /// Parses `TRIPLE[+feat,-feat...]`: the feature list starts at the first `+`, or at the
    /// first `,` to only switch features off (`host,-avx_vnni`); entries are separated by
    /// `,` or by their own sign. An empty triple or `host` means this machine.
    pub fn parse(spec: &str) -> Result<Target> {
        let bad = |why: String| {
            err!(
                Input,
                "--target '{spec}': {why} (expected TRIPLE[+feature,-feature...], e.g. x86_64-unknown-linux-gnu+avx2,+fma)"
            )
        };
        let split = spec.find(['+', ',']).unwrap_or(spec.len());
        let (triple, rest) = spec.split_at(split);
        let mut target = match triple.trim() {
            "" | "host" => Target::host(),
            t => Target {
                triple: Triple::from_str(t).map_err(|e| bad(format!("triple '{t}': {e}")))?,
                host: false,
                features: Vec::new(),
            },
        };
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            let on = match c {
                '+' => true,
                '-' => false,
                ',' if chars.peek().is_some_and(|c| *c == '+' || *c == '-') => continue,
                ',' => true,
                _ => return Err(bad(format!("unexpected '{c}'"))),
            };
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            if name.is_empty() {
                return Err(bad("a feature name is missing".into()));
            }
            target.features.push((name, on));
        }
        Ok(target)
    }

    /// The Cranelift ISA for this target, with the object-file settings: position-independent
    /// code (so objects also link into shared libraries) and `opt_level=none` like the JIT
    /// (the loop dialect schedules; Cranelift's egraph pass undoes register blocking).
    pub fn isa(&self) -> Result<OwnedTargetIsa> {
        ensure!(
            self.triple.pointer_width() == Ok(PointerWidth::U64),
            Unsupported,
            "target {}: kiln's kernels take 64-bit pointers; only 64-bit targets are supported",
            self.triple
        );
        let mut builder = if self.host {
            let mut b = cranelift_native::builder().map_err(|e| {
                err!(
                    Unsupported,
                    "this machine is not supported by Cranelift: {e}"
                )
            })?;
            // What the JIT compiles for: the detected features less those `HostIsa::detect`
            // leaves out (`KILN_NO_VNNI`), so host objects hold the JIT's kernels.
            let jit = HostIsa::detect();
            if cfg!(target_arch = "x86_64") {
                let off = [
                    ("has_avx_vnni", !jit.avx_vnni),
                    ("has_avx512vnni", !jit.avx_vnni),
                    ("has_fma", !jit.fma),
                ];
                for (flag, _) in off.iter().filter(|(_, off)| *off) {
                    b.set(flag, "false")
                        .map_err(|e| err!(Unsupported, "cranelift setting {flag}: {e}"))?;
                }
            }
            b
        } else {
            isa::lookup(self.triple.clone()).map_err(|e| {
                err!(
                    Unsupported,
                    "target {}: {e} (kiln's Cranelift is built with the {} backend only)",
                    self.triple,
                    Triple::host().architecture
                )
            })?
        };
        for (name, on) in &self.features {
            let flag = if name.starts_with("has_") {
                name.clone()
            } else {
                format!("has_{name}")
            };
            if let Err(e) = builder.set(&flag, if *on { "true" } else { "false" }) {
                let known: Vec<&str> = builder
                    .iter()
                    .filter_map(|s| s.name.strip_prefix("has_"))
                    .collect();
                match e {
                    SetError::BadName(_) => bail!(
                        Input,
                        "unknown target feature '{name}' for {}; known: {}",
                        self.triple.architecture,
                        known.join(", ")
                    ),
                    e => bail!(Input, "target feature '{name}': {e}"),
                }
            }
        }
        let mut flags = settings::builder();
        for (k, v) in [
            ("opt_level", "none"),
            ("is_pic", "true"),
            ("use_colocated_libcalls", "false"),
        ] {
            flags
                .set(k, v)
                .map_err(|e| err!(Unsupported, "cranelift setting {k}={v}: {e}"))?;
        }
        builder
            .finish(settings::Flags::new(flags))
            .map_err(|e| err!(Unsupported, "target {}: {e}", self.triple))
    }
}

/// Whether `isa` has the boolean ISA flag `name` switched on.
pub fn isa_flag(isa: &dyn isa::TargetIsa, name: &str) -> bool {
    isa.isa_flags()
        .iter()
        .any(|v| v.name == name && v.as_bool() == Some(true))
}

/// The translator options for `isa`: what the JIT derives from the host, here read from the
/// flags of the chosen target.
pub fn features(isa: &dyn isa::TargetIsa) -> Features {
    Features {
        fma: isa_flag(isa, "has_fma"),
        // As `HostIsa::native`: Cranelift folds the dot-product tree into `vpdpbusd` on
        // 128-bit vectors with AVX-VNNI, or AVX512-VNNI plus AVX512VL.
        vnni: isa_flag(isa, "has_avx_vnni")
            || (isa_flag(isa, "has_avx512vnni") && isa_flag(isa, "has_avx512vl")),
    }
}

/// The ISA flags that are on, for reports (`avx2, fma, ...`).
pub fn enabled_features(isa: &dyn isa::TargetIsa) -> Vec<String> {
    isa.isa_flags()
        .iter()
        .filter(|v| v.as_bool() == Some(true))
        .filter_map(|v| v.name.strip_prefix("has_").map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_triples_and_feature_lists() {
        let t = Target::parse("x86_64-unknown-linux-gnu+avx2,-avx_vnni+fma").unwrap();
        assert!(!t.host);
        assert_eq!(t.triple.to_string(), "x86_64-unknown-linux-gnu");
        assert_eq!(
            t.features,
            vec![
                ("avx2".to_string(), true),
                ("avx_vnni".to_string(), false),
                ("fma".to_string(), true)
            ]
        );
        let h = Target::parse("host,-fma").unwrap();
        assert!(h.host);
        assert_eq!(h.features, vec![("fma".to_string(), false)]);
        assert_eq!(Target::parse("").unwrap(), Target::host());
        assert!(Target::parse("x86_64-unknown-linux-gnu+").is_err());
        assert!(Target::parse("x86_64-unknown-linux-gnu+avx2;").is_err());
        assert!(Target::parse("not-a-real-triple-at-all").is_err());
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn features_become_isa_flags() {
        let isa = Target::parse("x86_64-unknown-linux-gnu+sse3,+ssse3,+sse41,+fma")
            .unwrap()
            .isa()
            .unwrap();
        assert!(features(&*isa).fma);
        assert!(!isa_flag(&*isa, "has_avx2"));
        let isa = Target::parse("x86_64-unknown-linux-gnu+fma,-fma")
            .unwrap()
            .isa()
            .unwrap();
        assert!(!features(&*isa).fma, "the last entry wins");
        let vnni = |spec: &str| features(&*Target::parse(spec).unwrap().isa().unwrap()).vnni;
        assert!(vnni("x86_64-unknown-linux-gnu+avx,+avx2,+avx_vnni"));
        assert!(!vnni("x86_64-unknown-linux-gnu+avx512f,+avx512vnni"));
        assert!(vnni(
            "x86_64-unknown-linux-gnu+avx512f,+avx512vnni,+avx512vl"
        ));
        let Err(e) = Target::parse("x86_64-unknown-linux-gnu+avx9")
            .unwrap()
            .isa()
        else {
            panic!("an unknown feature must be an error")
        };
        assert!(
            e.to_string().contains("unknown target feature 'avx9'")
                && e.to_string().contains("avx_vnni"),
            "{e}"
        );
        let Err(e) = Target::parse("i686-unknown-linux-gnu").unwrap().isa() else {
            panic!("a 32-bit target must be an error")
        };
        assert!(e.to_string().contains("64-bit"), "{e}");
    }
}
