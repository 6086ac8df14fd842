//! `kiln quantize`: calibrate a model for a platform, report the simulated int8 error, and
//! the shared `--calib` / `--platform` / `--observer` options `kiln run --precision int8`
//! also takes. `-o` writes the quantised model as QDQ ONNX (`kiln::onnx::export`); a QDQ
//! model given as MODEL (to either command) is imported with its own parameters instead
//! of being calibrated (`kiln::onnx::qdq_import`, [`load`] and [`quantize_loaded`]).

use super::report::{self, Axis, Bar, write_atomic};
use super::{ModelArgs, progress};
use crate::model;
use anyhow::{Context, bail};
use clap::Args;
use kiln_core::{PassManager, Tensor};
use kiln_graph::Graph;
use kiln_quant::{QuantGraph, analysis, calib, platform};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of the quantisation flow.
#[derive(Args, Clone)]
pub struct QuantArgs {
    /// Calibration data: a directory of .npy files (one-input models: each file is a
    /// sample; several inputs: `<sample>_<input>.npy`, `/` and `:` in input names as `_`),
    /// .npy files (repeatable), or `random:N` seeded uniform [0,1) samples. Not used for a
    /// QDQ model (QuantizeLinear/DequantizeLinear pairs), which brings its own parameters.
    #[arg(
        long = "calib",
        value_name = "DIR|FILE|random:N",
        default_value = "random:8"
    )]
    pub calib: Vec<String>,
    /// Quantisation scheme: kiln-x86, trt-int8, academic, pow2.
    #[arg(long, default_value = "kiln-x86")]
    pub platform: String,
    /// Activation observer: minmax, percentile, kl, mse.
    #[arg(long, default_value = "minmax")]
    pub observer: String,
    /// Weight rounding: `gptq` rounds each weight so as to cancel the layer's output error
    /// over the calibration inputs (pass `quant.gptq`), `nearest` rounds each weight on its
    /// own. The grid (scales, bounds) is the same either way.
    #[arg(long, value_name = "gptq|nearest", default_value = "gptq",
          value_parser = ["gptq", "nearest"])]
    pub weight_rounding: String,
    /// Keep an op in fp32 (repeatable): the op whose result NAME is, as the error report
    /// lists it, or every op fused from the model's node NAME. Its operands are
    /// dequantised where it reads them, as onnxruntime's `nodes_to_exclude` does.
    #[arg(long = "fp32", value_name = "NAME")]
    pub fp32: Vec<String>,
}

#[derive(Args)]
pub struct QuantizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub quant: QuantArgs,
    /// Graph passes before quantisation.
    #[arg(long, default_value = "graph-opt")]
    pub pipeline: String,
    /// Evaluation samples for the error report (seeded uniform [0,1), seeds 0..N, i.e.
    /// what `kiln run` feeds when no input is given, then the next ones).
    #[arg(long, default_value_t = 4)]
    pub eval: usize,
    /// Also run the layer-wise analysis (one op quantised at a time; slower).
    #[arg(long)]
    pub layer_wise: bool,
    /// Write the error report as JSON to FILE (`--json` is the same option, named as in
    /// `kiln bench` and `kiln profile`).
    #[arg(long, visible_alias = "json", value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Draw each op's SNR against fp32 as an SVG bar chart in graph order: graph-wise
    /// (whole model quantised) and, with --layer-wise, layer-wise (only that op).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Write the quantised model as a QDQ ONNX file (QuantizeLinear/DequantizeLinear
    /// pairs carrying kiln's parameters, opset 20). ONNX convolutions are channels first,
    /// so with -o the default pipeline `graph-opt` runs without `graph.layout`
    /// (`graph-opt-nchw`). Calibration runs the fp32 JIT, whose channels-first and
    /// channels-last kernels sum in different orders, so a scale can differ from
    /// `kiln run`'s in its last bit; `kiln run --pipeline graph-opt-nchw` quantises exactly
    /// as the export does.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print the quant IR after the flow.
    #[arg(long)]
    pub print_ir: bool,
    /// Rows of the error table to print (worst first).
    #[arg(long, default_value_t = 15)]
    pub top: usize,
}

/// Reads the calibration samples `spec` describes for `g`.
pub fn calib_samples(g: &Graph, spec: &[String]) -> anyhow::Result<Vec<Vec<Tensor>>> {
    if let [one] = spec
        && let Some(n) = one.strip_prefix("random:")
    {
        let n: usize = n
            .parse()
            .with_context(|| format!("--calib {one}: N must be a count"))?;
        return Ok(calib::random_samples(g, n)?);
    }
    let names: Vec<String> = g
        .inputs()
        .iter()
        .map(|&v| model::file_stem(&g.value(v).name))
        .collect();
    let mut files: Vec<PathBuf> = Vec::new();
    for s in spec {
        let p = Path::new(s);
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read --calib directory {s}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "npy"))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p.to_path_buf());
        }
    }
    if files.is_empty() {
        bail!("--calib {}: no .npy files", spec.join(","));
    }
    let samples: Vec<Vec<Tensor>> = if names.len() == 1 {
        files
            .iter()
            .map(|f| Ok(vec![model::read_npy(f)?]))
            .collect::<anyhow::Result<_>>()?
    } else {
        // `<sample>_<input>.npy`: group by sample, order inputs as the graph does.
        let mut by: BTreeMap<String, Vec<Option<Tensor>>> = BTreeMap::new();
        for f in &files {
            let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let Some((k, name)) = names
                .iter()
                .enumerate()
                .filter(|(_, n)| stem.ends_with(&format!("_{n}")))
                .max_by_key(|(_, n)| n.len())
            else {
                bail!(
                    "{}: expected <sample>_<input>.npy with input one of {}",
                    f.display(),
                    names.join(", ")
                );
            };
            let sample = stem[..stem.len() - name.len() - 1].to_string();
            by.entry(sample).or_insert_with(|| vec![None; names.len()])[k] =
                Some(model::read_npy(f)?);
        }
        by.into_iter()
            .map(|(s, v)| {
                v.into_iter()
                    .zip(&names)
                    .map(|(t, n)| t.with_context(|| format!("sample '{s}' lacks input '{n}'")))
                    .collect()
            })
            .collect::<anyhow::Result<_>>()?
    };
    for s in &samples {
        for (&v, t) in g.inputs().iter().zip(s) {
            if let Some(ty) = &g.value(v).ty
                && *ty != t.ty()
            {
                bail!(
                    "calibration input '{}' must be {ty}, a sample holds {}",
                    g.value(v).name,
                    t.ty()
                );
            }
        }
    }
    Ok(samples)
}

/// Builds the quant unit and runs the whole flow (`quant-opt`) with a progress bar.
pub fn quantize(g: Graph, a: &QuantArgs) -> anyhow::Result<QuantGraph> {
    let pf = platform::by_name(&a.platform)?;
    let samples = calib_samples(&g, &a.calib)?;
    let mut q = QuantGraph::new(g, pf)?;
    q.observer = Some(kiln_quant::ObserverKind::from_name(&a.observer)?);
    for name in &a.fp32 {
        q.keep_fp32(name)
            .with_context(|| format!("--fp32 {name}"))?;
    }
    q.calib = samples;
    on_the_jits(&mut q);
    let reg = kiln_quant::passes::registry();
    // `quant-opt` in two halves around the calibration, which gets a progress bar here.
    let (before, after) = kiln_quant::passes::QUANT_OPT
        .split_once(",quant.calibrate,")
        .expect("quant-opt calibrates");
    PassManager::new(reg.parse(before)?).run(&mut q)?;
    let bar = progress::bar(0, "calibrating", "runs");
    let calibrated = calib::calibrate(&mut q, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    calibrated?;
    let after = if a.weight_rounding == "gptq" {
        after.to_string()
    } else {
        after.replace("quant.gptq,", "")
    };
    // GPTQ and bias correction run the model again (bias correction simulates every
    // calibration sample op by op): tens of seconds on a large input.
    let passes = reg.parse(&after)?;
    progress::spin("rounding weights, correcting biases".to_string(), || {
        PassManager::new(passes).run(&mut q)
    })?;
    Ok(q)
}

/// The flow and its error analysis run the unit's models on kiln's JITs
/// (`kiln_loop::runners`): the same results as the interpreter and the simulator they
/// default to, many times sooner on a large model.
fn on_the_jits(q: &mut QuantGraph) {
    q.runner = Some(kiln_loop::runners::float_runner());
    q.int8_runner = Some(kiln_loop::runners::int8_runner());
}

/// A loaded model: its graph, and the grids of its QuantizeLinear/DequantizeLinear pairs
/// when it is a QDQ model (stripped to its float graph, see `kiln::onnx::qdq_import`).
pub struct Loaded {
    pub graph: Graph,
    pub qdq: Option<crate::onnx::qdq_import::Qdq>,
}

/// Loads `m`, recognising QDQ models.
pub fn load(
    m: &ModelArgs,
    given: &std::collections::HashMap<String, Tensor>,
) -> anyhow::Result<Loaded> {
    if let Some(path) = &m.model
        && path.extension().is_some_and(|e| e == "onnx")
    {
        let opts = crate::onnx::ImportOptions {
            shapes: m.shape_map()?,
            static_inputs: given.clone(),
            ..Default::default()
        };
        if let Some(qm) = crate::onnx::qdq_import::load(path, &opts)? {
            let mut graph = qm.graph;
            kiln_graph::infer::infer_shapes(&mut graph)?;
            kiln_graph::verify::verify(&graph)?;
            return Ok(Loaded {
                graph,
                qdq: Some(qm.qdq),
            });
        }
    }
    Ok(Loaded {
        graph: m.load_with(given)?,
        qdq: None,
    })
}

/// The quant unit of a loaded model: a QDQ model's own parameters (no calibration; the
/// platform only supplies templates for anything the model left in float), or the whole
/// calibration flow.
pub fn quantize_loaded(
    g: Graph,
    qdq: Option<&crate::onnx::qdq_import::Qdq>,
    a: &QuantArgs,
) -> anyhow::Result<QuantGraph> {
    match qdq {
        Some(_) if !a.fp32.is_empty() => bail!(
            "--fp32: a QDQ model brings its own quantisation; leave {} out of its \
             QuantizeLinear/DequantizeLinear pairs instead",
            a.fp32.join(", ")
        ),
        Some(p) => {
            let mut q =
                crate::onnx::qdq_import::quant_graph(g, platform::by_name(&a.platform)?, p)?;
            on_the_jits(&mut q);
            Ok(q)
        }
        None => quantize(g, a),
    }
}

/// Evaluation samples: what `kiln run` feeds (seed k for input k), then further seeds.
pub fn eval_samples(g: &Graph, n: usize) -> anyhow::Result<Vec<Vec<Tensor>>> {
    (0..n)
        .map(|i| {
            g.inputs()
                .iter()
                .enumerate()
                .map(|(k, &v)| {
                    let ty = g.value(v).ty.clone().context("input without a type")?;
                    Ok(model::seeded_input(&ty, (k + i * g.inputs().len()) as u64))
                })
                .collect()
        })
        .collect()
}

pub fn run(a: QuantizeArgs) -> anyhow::Result<()> {
    let Loaded { graph: mut g, qdq } = load(&a.model, &Default::default())?;
    let pipeline = match (&a.output, a.pipeline.as_str()) {
        (Some(_), "graph-opt") => crate::onnx::export::EXPORT_PIPELINE,
        (_, p) => p,
    };
    super::run_pipeline(&mut g, pipeline, Default::default())?;
    let q = quantize_loaded(g, qdq.as_ref(), &a.quant)?;
    if a.print_ir {
        print!("{}", kiln_core::Ir::print(&q));
    }
    let samples = eval_samples(&q.graph, a.eval)?;
    let (rows, outs) = progress::spin(
        format!(
            "simulating int8 error{}",
            if a.layer_wise { ", op by op" } else { "" }
        ),
        || analysis::report(&q, &samples, a.layer_wise),
    )?;
    if qdq.is_some() {
        println!(
            "{}: QDQ model, its own parameters (platform {} for anything it left in float)",
            a.model.display_name(),
            a.quant.platform,
        );
    } else {
        println!(
            "{}: platform {}, observer {}, {} calibration samples",
            a.model.display_name(),
            a.quant.platform,
            a.quant.observer,
            q.calib.len()
        );
    }
    println!(
        "outputs: SNR {:.2} dB, cosine {:.6} (simulated int8 vs fp32, {} samples)",
        outs.snr_db(),
        outs.cosine(),
        samples.len()
    );
    let shown = &rows[..rows.len().min(a.top)];
    print!("{}", analysis::table(shown));
    if let Some(path) = &a.report {
        let db = |x: f64| if x.is_finite() { json!(x) } else { json!(null) };
        let row_json: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "value": r.value,
                    "op": r.op,
                    "snr_db": db(r.graph_wise.snr_db()),
                    "noise_ratio": db(r.graph_wise.noise_ratio()),
                    "cosine": r.graph_wise.cosine(),
                    "layer_snr_db": r.layer_wise.map(|l| db(l.snr_db())),
                    "layer_cosine": r.layer_wise.map(|l| l.cosine()),
                })
            })
            .collect();
        let doc = json!({
            "model": a.model.display_name(),
            "platform": a.quant.platform,
            "observer": a.quant.observer,
            "calibration_samples": q.calib.len(),
            "eval_samples": samples.len(),
            "output": {"snr_db": db(outs.snr_db()), "cosine": outs.cosine()},
            "ops": row_json,
        });
        write_atomic(
            path,
            (serde_json::to_string_pretty(&doc)? + "\n").as_bytes(),
        )?;
        println!("report -> {}", path.display());
    }
    if let Some(path) = &a.svg {
        write_atomic(path, error_chart(&q.graph, &rows, &outs)?.as_bytes())?;
        println!("chart -> {}", path.display());
    }
    if let Some(path) = &a.output {
        crate::onnx::export::export_qdq(&q, path)
            .with_context(|| format!("cannot export {}", path.display()))?;
        println!("QDQ model -> {}", path.display());
    }
    Ok(())
}

/// The per-op SNR chart of `--svg`: rows in graph order (the report sorts them worst first),
/// a graph-wise bar and, when analysed, a layer-wise bar each. Exact results (no noise,
/// infinite SNR) reach the axis end and say so.
fn error_chart(
    g: &Graph,
    rows: &[analysis::Row],
    outs: &analysis::ErrStats,
) -> anyhow::Result<String> {
    let mut order: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for n in g.topo_order()? {
        for &v in g.node(n).outputs() {
            let k = order.len();
            order.entry(g.value(v).name.as_str()).or_insert(k);
        }
    }
    let mut rows: Vec<&analysis::Row> = rows.iter().collect();
    rows.sort_by_key(|r| order.get(r.value.as_str()).copied().unwrap_or(usize::MAX));
    let layer = rows.iter().any(|r| r.layer_wise.is_some());
    let finite = rows
        .iter()
        .flat_map(|r| [Some(r.graph_wise), r.layer_wise])
        .flatten()
        .map(|e| e.snr_db())
        .filter(|x| x.is_finite());
    let (lo, hi) = finite.fold((0.0f64, 10.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (lo, hi) = ((lo / 10.0).floor() * 10.0, (hi / 10.0).ceil() * 10.0);
    let axis = Axis {
        lo,
        hi,
        log2: false,
        origin: 0.0,
        ticks: (0..=((hi - lo) / 10.0) as i32)
            .map(|k| lo + 10.0 * k as f64)
            .map(|v| (v, format!("{v} dB")))
            .collect(),
    };
    let bar = |e: analysis::ErrStats, color| {
        let db = e.snr_db();
        Bar {
            value: db,
            color,
            text: match db {
                x if x.is_nan() => "-".into(),
                x if x.is_infinite() => "exact".into(),
                x => format!("{x:.1} dB"),
            },
        }
    };
    let chart_rows: Vec<report::Row> = rows
        .iter()
        .map(|r| {
            let mut bars = vec![bar(r.graph_wise, "#1f77b4")];
            if layer {
                bars.extend(r.layer_wise.map(|l| bar(l, "#ff7f0e")));
            }
            report::Row {
                label: report::truncate(&format!("{} ({})", r.value, r.op), 44),
                bars,
            }
        })
        .collect();
    let title = format!(
        "int8 SNR against fp32 per op (outputs {:.1} dB); blue: graph-wise{}",
        outs.snr_db(),
        if layer { ", orange: layer-wise" } else { "" }
    );
    Ok(report::hbar_chart(&title, &axis, &chart_rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> Graph {
        kiln_graph::text::parse(
            "graph @two(%\"in/a\": f32[1,2], %b: f32[1,2]) -> (f32[1,2]) {
  %s = graph.add(%\"in/a\", %b) : f32[1,2]
  return %s
}
",
        )
        .unwrap()
    }

    #[test]
    fn calib_dir_groups_samples_by_input_name() {
        let g = graph();
        let dir = std::env::temp_dir().join(format!("kiln_calib_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (sample, v) in [("s0", 1.0f32), ("s1", 2.0)] {
            for (name, k) in [("in_a", 0.0f32), ("b", 10.0)] {
                let t = Tensor::from_vec(&[1, 2], vec![v + k; 2]).unwrap();
                model::write_npy(&dir.join(format!("{sample}_{name}.npy")), &t).unwrap();
            }
        }
        let s = calib_samples(&g, &[dir.display().to_string()]).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[1][0].to_f64_vec(),
            vec![2.0, 2.0],
            "sample s1, input in/a"
        );
        assert_eq!(s[1][1].to_f64_vec(), vec![12.0, 12.0], "sample s1, input b");
        // A missing input is named.
        std::fs::remove_file(dir.join("s1_b.npy")).unwrap();
        let e = calib_samples(&g, &[dir.display().to_string()]).unwrap_err();
        assert!(e.to_string().contains("lacks input 'b'"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(calib_samples(&g, &["random:3".into()]).unwrap().len(), 3);
        assert!(calib_samples(&g, &["random:x".into()]).is_err());
    }
}
