//! `kiln info`: what a model contains — op histogram, parameters, FLOPs, inputs, outputs,
//! and (with `--memory`) the intermediate-tensor memory plan.

use super::ModelArgs;
use clap::Args;
use kiln_graph::{Graph, Op};
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Run this pipeline (or pass list) first.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Plan intermediate-tensor memory and report the naive sum, the planned arena and the
    /// live-set lower bound.
    #[arg(long)]
    pub memory: bool,
}

/// The numbers `kiln info` reports.
pub struct Stats {
    pub ops: BTreeMap<&'static str, usize>,
    pub params: u64,
    pub flops: u64,
}

pub fn stats(g: &Graph) -> Stats {
    let mut s = Stats {
        ops: BTreeMap::new(),
        params: 0,
        flops: 0,
    };
    for n in g.node_ids() {
        let node = g.node(n);
        if let Op::Const(c) = &node.op {
            s.params += c.ty.numel() as u64;
            continue;
        }
        *s.ops.entry(node.op.name()).or_default() += 1;
        let ins: Vec<_> = node
            .inputs()
            .iter()
            .map(|v| v.and_then(|v| g.value(v).ty.as_ref()))
            .collect();
        let outs: Vec<_> = node
            .outputs()
            .iter()
            .filter_map(|&v| g.value(v).ty.clone())
            .collect();
        s.flops += node.op.flops(&ins, &outs);
    }
    s
}

pub fn run(a: InfoArgs) -> anyhow::Result<()> {
    let mut g = a.model.load()?;
    // layout: begin
    // Pass statistics (e.g. the conversions graph.layout inserted) of the pipeline run.
    let mut pass_stats = Vec::new();
    if let Some(p) = &a.pipeline {
        pass_stats = super::run_pipeline(&mut g, p, Default::default())?.statistics();
    }
    // layout: end
    let s = stats(&g);
    let io = |vals: &[kiln_graph::Value]| -> Vec<serde_json::Value> {
        vals.iter()
            .map(|&v| {
                let d = g.value(v);
                json!({"name": d.name, "type": d.ty.as_ref().map(|t| t.to_string())})
            })
            .collect()
    };
    let op_count: usize = s.ops.values().sum();
    let memory = if a.memory {
        Some(kiln_graph::memory::stats(&g)?)
    } else {
        None
    };
    if a.json {
        let mut j = json!({
            "ops": s.ops, "op_count": op_count, "params": s.params, "flops": s.flops,
            "inputs": io(g.inputs()), "outputs": io(g.outputs()),
        });
        // layout: begin
        if !pass_stats.is_empty() {
            j["pass_statistics"] = pass_stats
                .iter()
                .map(|(p, name, v)| json!({"pass": p, "name": name, "value": v}))
                .collect();
        }
        // layout: end
        if let Some(m) = memory {
            j["memory"] = json!({
                "naive_bytes": m.naive_bytes,
                "arena_bytes": m.arena_bytes,
                "lower_bound_bytes": m.lower_bound_bytes,
            });
        }
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    println!("model    {}", a.model.display_name());
    println!(
        "ops      {op_count} (+ {} constants)",
        g.node_count() - op_count
    );
    println!("params   {}", s.params);
    println!("flops    {} ({:.3} G)", s.flops, s.flops as f64 / 1e9);
    for (kind, vals) in [("input ", g.inputs()), ("output", g.outputs())] {
        for &v in vals {
            let d = g.value(v);
            println!(
                "{kind}   {}: {}",
                d.name,
                d.ty.as_ref().map(|t| t.to_string()).unwrap_or("?".into())
            );
        }
    }
    let mut hist: Vec<_> = s.ops.iter().collect();
    hist.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("op histogram:");
    for (name, n) in hist {
        println!("  {n:>6}  {name}");
    }
    // layout: begin
    if !pass_stats.is_empty() {
        println!("pass statistics:");
        for (p, name, v) in &pass_stats {
            println!("  {v:>6}  {p}: {name}");
        }
    }
    // layout: end
    if let Some(m) = memory {
        let pct = |a: usize, b: usize| {
            if b == 0 {
                0.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        println!("memory (intermediate tensors):");
        println!("  naive        {:>12} B", m.naive_bytes);
        println!(
            "  arena        {:>12} B  ({:.1} % of naive)",
            m.arena_bytes,
            pct(m.arena_bytes, m.naive_bytes)
        );
        println!(
            "  lower bound  {:>12} B  (arena is {:.1} % of it)",
            m.lower_bound_bytes,
            pct(m.arena_bytes, m.lower_bound_bytes)
        );
    }
    Ok(())
}
