//! The error analysis on the int8 JIT (`kiln_loop::runners::int8_runner`) reports what it
//! reports on the simulator, to the last bit of every statistic: the int8 program observes
//! each op result as the simulator holds it, coded values decoded from their u8 codes.

mod common;

use kiln_core::PassManager;
use kiln_quant::{QuantGraph, analysis, calib, passes, platform};

#[test]
fn the_analysis_on_the_int8_jit_equals_the_simulated_one() {
    for model in ["resnet_style", "mobilenet_v3_style", "transformer_block"] {
        let path = common::example(model);
        let mut g =
            kiln::model::load(Some(&path), &Default::default(), &Default::default()).unwrap();
        let reg = kiln_graph::passes::registry();
        PassManager::new(reg.parse("graph-opt").unwrap())
            .run(&mut g)
            .unwrap();
        let mut q = QuantGraph::new(g, &platform::KILN_X86).unwrap();
        q.calib = calib::random_samples(&q.graph, 4).unwrap();
        PassManager::new(passes::registry().parse(passes::QUANT_OPT).unwrap())
            .run(&mut q)
            .unwrap();
        let samples: Vec<_> = (0..3u64)
            .map(|s| {
                (q.graph.inputs().iter())
                    .map(|&v| kiln::model::seeded_input(q.graph.value(v).ty.as_ref().unwrap(), s))
                    .collect()
            })
            .collect();
        let (sim_rows, sim_out) = analysis::report(&q, &samples, false).unwrap();
        q.int8_runner = Some(kiln_loop::runners::int8_runner());
        let (jit_rows, jit_out) = analysis::report(&q, &samples, false).unwrap();
        let key = |r: &analysis::Row| {
            let s = r.graph_wise;
            (r.value.clone(), s.snr_db().to_bits(), s.cosine().to_bits())
        };
        assert_eq!(sim_rows.len(), jit_rows.len(), "{model}: rows");
        assert!(!sim_rows.is_empty());
        for (a, b) in sim_rows.iter().zip(&jit_rows) {
            assert_eq!(key(a), key(b), "{model}");
        }
        assert_eq!(
            sim_out.snr_db().to_bits(),
            jit_out.snr_db().to_bits(),
            "{model}"
        );
    }
}
