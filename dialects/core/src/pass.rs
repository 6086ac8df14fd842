//! The pass manager: named passes, registries, pipelines from strings, instrumentation.
//!
//! Generic over the IR so every dialect reuses one manager. Passes are looked up by name so
//! that the CLI, filetests and researchers can run any list of them on text IR.

use crate::{Error, ErrorKind, Result};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// What a dialect's IR must offer the pass manager.
pub trait Ir {
    /// Structural checks, run after every pass.
    fn verify(&self) -> Result<()>;
    /// The text form (for `--print-ir-after`).
    fn print(&self) -> String;
}

/// A transformation of one IR unit. Returns whether anything changed, so pipelines can be
/// iterated to a fixed point.
pub trait Pass<I: Ir> {
    fn name(&self) -> &'static str;
    fn run(&mut self, ir: &mut I) -> Result<bool>;
    // layout: begin
    /// Named counters the pass accumulated over its runs (MLIR's pass statistics, such as
    /// the conversions `graph.layout` inserted); most passes have none.
    fn statistics(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// `(pass, counter, value)` for this pass and any passes it runs (a fixed-point
    /// pipeline reports its inner passes').
    fn nested_statistics(&self) -> Vec<(&'static str, &'static str, u64)> {
        let name = self.name();
        self.statistics()
            .into_iter()
            .map(|(s, v)| (name, s, v))
            .collect()
    }
    // layout: end
}

// layout: begin
/// Adds `(pass, counter, value)` rows into `acc`, summing rows with the same pass and
/// counter (one pass may appear several times in a pipeline).
fn merge_statistics(
    acc: &mut Vec<(&'static str, &'static str, u64)>,
    rows: Vec<(&'static str, &'static str, u64)>,
) {
    for (p, s, v) in rows {
        match acc.iter_mut().find(|r| r.0 == p && r.1 == s) {
            Some(r) => r.2 += v,
            None => acc.push((p, s, v)),
        }
    }
}
// layout: end

type PassCtor<I> = fn() -> Box<dyn Pass<I>>;

/// A named pipeline: a comma-separated pass list, run once or repeated to a fixed point.
#[derive(Debug, Clone, Copy)]
pub struct Pipeline {
    pub name: &'static str,
    pub summary: &'static str,
    pub list: &'static str,
    pub fixed_point: bool,
}

/// Maps pass names to constructors and pipeline names to pass lists.
pub struct PassRegistry<I: Ir> {
    passes: Vec<(&'static str, &'static str, PassCtor<I>)>,
    pipelines: Vec<Pipeline>,
}

impl<I: Ir> Default for PassRegistry<I> {
    fn default() -> Self {
        PassRegistry {
            passes: Vec::new(),
            pipelines: Vec::new(),
        }
    }
}

impl<I: Ir + 'static> PassRegistry<I> {
    pub fn register(&mut self, name: &'static str, summary: &'static str, ctor: PassCtor<I>) {
        self.passes.push((name, summary, ctor));
    }

    /// A named pipeline: a comma-separated list of passes (or other pipelines).
    pub fn register_pipeline(
        &mut self,
        name: &'static str,
        summary: &'static str,
        list: &'static str,
    ) {
        self.pipelines.push(Pipeline {
            name,
            summary,
            list,
            fixed_point: false,
        });
    }

    /// A named pipeline whose passes repeat, in order, until a whole round changes
    /// nothing: rewrites enable each other (Conv+BN exposes Conv+Relu), so one sweep is
    /// not enough.
    pub fn register_fixed_point(
        &mut self,
        name: &'static str,
        summary: &'static str,
        list: &'static str,
    ) {
        self.pipelines.push(Pipeline {
            name,
            summary,
            list,
            fixed_point: true,
        });
    }

    /// `(name, summary)` of every pass, for `--help` style listings.
    pub fn passes(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.passes.iter().map(|(n, s, _)| (*n, *s))
    }

    pub fn pipelines(&self) -> impl Iterator<Item = Pipeline> + '_ {
        self.pipelines.iter().copied()
    }

    /// Resolves a comma-separated list of pass and pipeline names into passes.
    pub fn parse(&self, list: &str) -> Result<Vec<Box<dyn Pass<I>>>> {
        let mut out = Vec::new();
        self.expand(list, &mut out, 0)?;
        Ok(out)
    }

    fn expand(&self, list: &str, out: &mut Vec<Box<dyn Pass<I>>>, depth: usize) -> Result<()> {
        if depth > 8 {
            return Err(Error::new(
                ErrorKind::Pass,
                "pipelines nest too deeply (a cycle?)",
            ));
        }
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some((_, _, ctor)) = self.passes.iter().find(|(n, _, _)| *n == name) {
                out.push(ctor());
            } else if let Some(p) = self.pipelines.iter().find(|p| p.name == name) {
                if p.fixed_point {
                    let mut inner = Vec::new();
                    self.expand(p.list, &mut inner, depth + 1)?;
                    out.push(Box::new(FixedPoint {
                        name: p.name,
                        passes: inner,
                    }));
                } else {
                    self.expand(p.list, out, depth + 1)?;
                }
            } else {
                let known: Vec<_> = self.passes.iter().map(|p| p.0).collect();
                return Err(Error::new(
                    ErrorKind::Pass,
                    format!(
                        "unknown pass or pipeline '{name}' (passes: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Runs its passes in order, round after round, until a round changes nothing. The IR is
/// verified after every inner pass that changed it, so a broken rewrite is caught at the
/// pass that made it.
struct FixedPoint<I: Ir> {
    name: &'static str,
    passes: Vec<Box<dyn Pass<I>>>,
}

/// Rounds before a fixed-point pipeline is declared divergent (rewrites that undo each
/// other); real pipelines settle in a handful.
const MAX_ROUNDS: usize = 100;

impl<I: Ir> Pass<I> for FixedPoint<I> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn run(&mut self, ir: &mut I) -> Result<bool> {
        let mut any = false;
        for _ in 0..MAX_ROUNDS {
            let mut changed = false;
            for p in &mut self.passes {
                if p.run(ir).map_err(|e| with_pass(e, p.name()))? {
                    ir.verify().map_err(|e| Error {
                        message: format!("IR invalid after pass {}: {}", p.name(), e.message),
                        ..e
                    })?;
                    changed = true;
                }
            }
            if !changed {
                return Ok(any);
            }
            any = true;
        }
        Err(Error::new(
            ErrorKind::Pass,
            format!(
                "pipeline {} did not reach a fixed point in {MAX_ROUNDS} rounds",
                self.name
            ),
        ))
    }
    // layout: begin
    fn nested_statistics(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut acc = Vec::new();
        for p in &self.passes {
            merge_statistics(&mut acc, p.nested_statistics());
        }
        acc
    }
    // layout: end
}

/// Instrumentation switches, mirroring `mlir-opt`'s.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    pub print_ir_after_all: bool,
    pub print_ir_after: Vec<String>,
    pub time_passes: bool,
    /// Verify after each pass (on by default in [`PassManager::new`]).
    pub verify_each: bool,
}

/// Timing of one pass execution.
#[derive(Debug, Clone)]
pub struct PassTiming {
    pub name: &'static str,
    pub elapsed: Duration,
    pub changed: bool,
}

/// Runs a list of passes in order, verifying and printing as asked.
pub struct PassManager<I: Ir> {
    passes: Vec<Box<dyn Pass<I>>>,
    pub options: PassOptions,
    /// Everything the instrumentation printed (IR dumps), in order.
    pub log: String,
    pub timings: Vec<PassTiming>,
}

impl<I: Ir> PassManager<I> {
    pub fn new(passes: Vec<Box<dyn Pass<I>>>) -> Self {
        let options = PassOptions {
            verify_each: true,
            ..PassOptions::default()
        };
        PassManager {
            passes,
            options,
            log: String::new(),
            timings: Vec::new(),
        }
    }

    /// Runs every pass once, in order. Returns whether any pass changed the IR.
    pub fn run(&mut self, ir: &mut I) -> Result<bool> {
        let mut any = false;
        for pass in &mut self.passes {
            let name = pass.name();
            let start = Instant::now();
            let changed = pass.run(ir).map_err(|e| with_pass(e, name))?;
            self.timings.push(PassTiming {
                name,
                elapsed: start.elapsed(),
                changed,
            });
            any |= changed;
            if self.options.verify_each {
                ir.verify().map_err(|e| Error {
                    message: format!("IR invalid after pass {name}: {}", e.message),
                    ..e
                })?;
            }
            if self.options.print_ir_after_all
                || self.options.print_ir_after.iter().any(|p| p == name)
            {
                let _ = writeln!(
                    self.log,
                    "// -----// IR after {name} //----- //\n{}",
                    ir.print()
                );
            }
        }
        Ok(any)
    }

    // layout: begin
    /// Every pass's statistics, `(pass, counter, value)`, summed over repeated passes.
    pub fn statistics(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut acc = Vec::new();
        for p in &self.passes {
            merge_statistics(&mut acc, p.nested_statistics());
        }
        acc
    }
    // layout: end

    /// The `--time-passes` report: one line per pass, slowest first, then the total, then
    /// the pass statistics if any pass keeps some.
    pub fn timing_report(&self) -> String {
        let mut rows: Vec<(&str, Duration, usize)> = Vec::new();
        for t in &self.timings {
            match rows.iter_mut().find(|r| r.0 == t.name) {
                Some(r) => {
                    r.1 += t.elapsed;
                    r.2 += 1;
                }
                None => rows.push((t.name, t.elapsed, 1)),
            }
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.1));
        let total: Duration = rows.iter().map(|r| r.1).sum();
        let mut s = String::from("===- pass execution timing -===\n");
        for (name, d, n) in &rows {
            let pct = if total.is_zero() {
                0.0
            } else {
                100.0 * d.as_secs_f64() / total.as_secs_f64()
            };
            let _ = writeln!(
                s,
                "{:>10.3} ms {:>5.1}%  {name} (x{n})",
                d.as_secs_f64() * 1e3,
                pct
            );
        }
        let _ = writeln!(s, "{:>10.3} ms 100.0%  total", total.as_secs_f64() * 1e3);
        // layout: begin
        let stats = self.statistics();
        if !stats.is_empty() {
            s.push_str("===- pass statistics -===\n");
            for (p, name, v) in stats {
                let _ = writeln!(s, "{v:>10}  {p}: {name}");
            }
        }
        // layout: end
        s
    }
}

fn with_pass(e: Error, name: &str) -> Error {
    Error {
        message: format!("in pass {name}: {}", e.message),
        ..e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy IR: a counter whose verifier rejects odd values above 10.
    struct Counter(u32);
    impl Ir for Counter {
        fn verify(&self) -> Result<()> {
            if self.0 > 10 && self.0 % 2 == 1 {
                return Err(Error::new(ErrorKind::Verify, "odd and large"));
            }
            Ok(())
        }
        fn print(&self) -> String {
            format!("counter {}", self.0)
        }
    }
    struct Inc;
    impl Pass<Counter> for Inc {
        fn name(&self) -> &'static str {
            "inc"
        }
        fn run(&mut self, ir: &mut Counter) -> Result<bool> {
            ir.0 += 1;
            Ok(true)
        }
    }
    struct Nop;
    impl Pass<Counter> for Nop {
        fn name(&self) -> &'static str {
            "nop"
        }
        fn run(&mut self, _: &mut Counter) -> Result<bool> {
            Ok(false)
        }
    }

    struct Toggle;
    impl Pass<Counter> for Toggle {
        fn name(&self) -> &'static str {
            "toggle"
        }
        fn run(&mut self, ir: &mut Counter) -> Result<bool> {
            ir.0 = 1 - ir.0.min(1);
            Ok(true)
        }
    }

    struct IncToTen;
    impl Pass<Counter> for IncToTen {
        fn name(&self) -> &'static str {
            "inc-to-ten"
        }
        fn run(&mut self, ir: &mut Counter) -> Result<bool> {
            if ir.0 >= 10 {
                return Ok(false);
            }
            ir.0 += 1;
            Ok(true)
        }
    }

    fn registry() -> PassRegistry<Counter> {
        let mut r = PassRegistry::default();
        r.register("inc", "adds one", || Box::new(Inc));
        r.register("nop", "does nothing", || Box::new(Nop));
        r.register_pipeline("twice", "inc twice", "inc,inc");
        r.register_pipeline("loop", "a cycle", "loop");
        r.register("inc-to-ten", "adds one below ten", || Box::new(IncToTen));
        r.register_fixed_point("settle", "inc-to-ten until it stops", "nop,inc-to-ten");
        r.register("toggle", "flips 0 and 1", || Box::new(Toggle));
        r.register_fixed_point("forever", "never settles", "toggle");
        r
    }

    #[test]
    fn pipelines_expand_and_print() {
        let mut pm = PassManager::new(registry().parse("twice, nop,inc").unwrap());
        pm.options.print_ir_after = vec!["nop".into()];
        let mut c = Counter(0);
        assert!(pm.run(&mut c).unwrap());
        assert_eq!(c.0, 3);
        assert_eq!(pm.log.matches("IR after").count(), 1);
        assert!(pm.log.contains("counter 2"));
        assert!(pm.timing_report().contains("inc (x3)"));
    }

    #[test]
    fn unknown_names_and_cycles_are_errors() {
        let err = registry().parse("inc,frobnicate").err().unwrap();
        assert_eq!(err.kind, ErrorKind::Pass);
        assert!(err.message.contains("frobnicate"));
        assert_eq!(
            registry().parse("loop").err().unwrap().kind,
            ErrorKind::Pass
        );
    }

    #[test]
    fn verifier_runs_after_each_pass() {
        let mut pm = PassManager::new(registry().parse("inc").unwrap());
        let err = pm.run(&mut Counter(10)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Verify);
        assert!(err.message.contains("after pass inc"));
    }

    // layout: begin
    struct Counted(u64);
    impl Pass<Counter> for Counted {
        fn name(&self) -> &'static str {
            "counted"
        }
        fn run(&mut self, ir: &mut Counter) -> Result<bool> {
            if ir.0 >= 4 {
                return Ok(false);
            }
            ir.0 += 1;
            self.0 += 2;
            Ok(true)
        }
        fn statistics(&self) -> Vec<(&'static str, u64)> {
            vec![("twice the increments", self.0)]
        }
    }

    #[test]
    fn statistics_sum_over_runs_and_nested_pipelines() {
        let mut r = registry();
        r.register("counted", "counts", || Box::new(Counted(0)));
        r.register_fixed_point("count-up", "counted to a fixed point", "counted");
        let mut pm = PassManager::new(r.parse("count-up,counted,nop").unwrap());
        pm.run(&mut Counter(0)).unwrap();
        assert_eq!(
            pm.statistics(),
            vec![("counted", "twice the increments", 8)]
        );
        assert!(pm.timing_report().contains("counted: twice the increments"));
        let pm = PassManager::new(r.parse("nop").unwrap());
        assert!(!pm.timing_report().contains("statistics"));
    }
    // layout: end

    #[test]
    fn fixed_point_pipelines_repeat_until_nothing_changes() {
        let mut pm = PassManager::new(registry().parse("settle").unwrap());
        let mut c = Counter(3);
        assert!(pm.run(&mut c).unwrap());
        assert_eq!(c.0, 10);
        assert!(!pm.run(&mut c).unwrap(), "a settled IR reports no change");
        let err = PassManager::new(registry().parse("forever").unwrap()).run(&mut Counter(0));
        assert_eq!(err.unwrap_err().kind, ErrorKind::Pass);
    }
}
