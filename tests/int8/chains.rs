//! Chains of int8 ops, where values pass between kernels as u8 codes: MobileNet-style
//! blocks (1×1 expansion, depthwise, squeeze-and-excitation, projection with an optional
//! residual) and a classifier, through `graph-opt` so they are fused and channels-last.
//! Channel counts mix multiples of 16 (whole byte vectors), of 4 (whole i32 stores) and
//! odd ones (scalar tails), so every coded load and store path runs. Some chains move the
//! data on the way (a nearest upsampling or a depth_to_space, then a conv), sometimes also
//! returning the moved value or its source, so the move reads and writes codes, reads codes
//! for an f32 result, and reads an f32 value (on its grid) for a coded result. Some blocks
//! add an affine `x·a + b` after the depthwise conv, computed on codes.

use super::harness::{Case, one_in, pick, range};
use kiln_core::Rng;

struct Net {
    s: String,
    seed: u64,
}

impl Net {
    fn seed(&mut self) -> u64 {
        self.seed += 1;
        self.seed
    }

    /// `%{name} = conv(y, w[m, c/group, k, k]) + b`, then an activation op.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        rng: &mut Rng,
        name: &str,
        y: &str,
        c: usize,
        m: usize,
        k: usize,
        stride: usize,
        group: usize,
    ) -> String {
        let (ws, bs) = (self.seed(), self.seed());
        let p = k / 2;
        self.s += &format!(
            "  %{name}_w = const f32[{m},{},{k},{k}] random(seed={ws}, min=-0.6, max=0.6)\n  \
             %{name}_b = const f32[{m}] random(seed={bs}, min=-0.3, max=0.3)\n  \
             %{name} = graph.conv({y}, %{name}_w, %{name}_b) {{pads=[{p},{p},{p},{p}], \
             strides=[{stride},{stride}], group={group}}} : ?\n",
            c / group
        );
        self.act(rng, name)
    }

    fn act(&mut self, rng: &mut Rng, name: &str) -> String {
        let y = format!("%{name}");
        match pick(rng, &["relu", "relu", "hard_swish", "clip", "sigmoid", ""]) {
            "" => y,
            "clip" => {
                self.s += &format!(
                    "  %{name}_lo = const f32[] dense<[0.0]>\n  \
                     %{name}_hi = const f32[] dense<[6.0]>\n  \
                     %{name}_a = graph.clip({y}, %{name}_lo, %{name}_hi) : ?\n"
                );
                format!("%{name}_a")
            }
            a => {
                self.s += &format!("  %{name}_a = graph.{a}({y}) : ?\n");
                format!("%{name}_a")
            }
        }
    }
}

fn channels(rng: &mut Rng) -> usize {
    pick(rng, &[3usize, 4, 8, 12, 16, 16, 20, 32, 32, 48])
}

pub fn chain_case(rng: &mut Rng) -> Case {
    let n = range(rng, 1, 2);
    let mut c = channels(rng);
    let (h, w) = (range(rng, 2, 9), range(rng, 2, 9));
    let mut net = Net {
        s: format!("graph @chain(%x: f32[{n},{c},{h},{w}]) -> (?) {{\n"),
        seed: rng.next_u64() % 100_000,
    };
    let stem = channels(rng);
    let mut y = net.conv(rng, "stem", "%x", c, stem, 3, 1, 1);
    c = stem;
    for blk in 0..range(rng, 1, 3) {
        let input = y.clone();
        let e = channels(rng);
        let x = net.conv(rng, &format!("b{blk}_exp"), &y, c, e, 1, 1, 1);
        let stride = if one_in(rng, 4) { 2 } else { 1 };
        let mut d = net.conv(rng, &format!("b{blk}_dw"), &x, e, e, 3, stride, e);
        // A learnable affine block (PP-OCRv4's `x·a + b` after each activation), from a
        // stream of its own so the other draws stay as they were.
        let af = &mut Rng::new(net.seed.wrapping_mul(104_729).wrapping_add(blk as u64));
        if one_in(af, 3) {
            let a = (af.next_u64() % 1001) as f32 / 500.0 - 1.0;
            let k = (af.next_u64() % 1001) as f32 / 1000.0 - 0.5;
            net.s += &format!(
                "  %b{blk}_k = const f32[1] dense<[{k:?}]>\n  \
                 %b{blk}_af = graph.eltwise_sum({d}, %b{blk}_k) {{coeffs=[{a:?}, 1.0]}} : ?\n"
            );
            d = format!("%b{blk}_af");
        }
        if one_in(rng, 2) {
            // Squeeze and excitation: GAP → 1×1 → 1×1 → hard sigmoid → scale.
            let r = range(rng, 2, 8);
            net.s += &format!("  %b{blk}_gap = graph.global_average_pool({d}) : ?\n");
            let s1 = net.conv(
                rng,
                &format!("b{blk}_se1"),
                &format!("%b{blk}_gap"),
                e,
                r,
                1,
                1,
                1,
            );
            let (ws, bs) = (net.seed(), net.seed());
            net.s += &format!(
                "  %b{blk}_se2_w = const f32[{e},{r},1,1] random(seed={ws}, min=-0.6, max=0.6)\n  \
                 %b{blk}_se2_b = const f32[{e}] random(seed={bs}, min=-0.3, max=0.3)\n  \
                 %b{blk}_se2 = graph.conv({s1}, %b{blk}_se2_w, %b{blk}_se2_b) : ?\n  \
                 %b{blk}_hs = graph.hard_sigmoid(%b{blk}_se2) {{alpha=0.16666667, beta=0.5}} : ?\n  \
                 %b{blk}_se = graph.mul({d}, %b{blk}_hs) : ?\n"
            );
            d = format!("%b{blk}_se");
        }
        let out = if stride == 1 && one_in(rng, 2) {
            c
        } else {
            channels(rng)
        };
        let (ws, bs) = (net.seed(), net.seed());
        net.s += &format!(
            "  %b{blk}_pw = const f32[{out},{e},1,1] random(seed={ws}, min=-0.6, max=0.6)\n  \
             %b{blk}_pb = const f32[{out}] random(seed={bs}, min=-0.3, max=0.3)\n  \
             %b{blk}_p = graph.conv({d}, %b{blk}_pw, %b{blk}_pb) : ?\n"
        );
        y = format!("%b{blk}_p");
        if out == c && stride == 1 {
            net.s += &format!("  %b{blk}_r = graph.add({y}, {input}) : ?\n");
            y = format!("%b{blk}_r");
        }
        c = out;
    }
    // The move draws from its own stream, so the chains without one are the ones this
    // family always drew (case `i` stays case `i`).
    let mv = &mut Rng::new(net.seed.wrapping_mul(7919).wrapping_add(13));
    let mut outs = vec![];
    if one_in(mv, 2) {
        let src = y.clone();
        let (src_of_move, c_before, text_from) = (y.clone(), c, net.s.len());
        let d2s = c.is_multiple_of(4) && one_in(mv, 2);
        if d2s {
            let mode = pick(mv, &["DCR", "CRD"]);
            net.s += &format!(
                "  %mv = graph.depth_to_space({y}) {{blocksize=2, mode=\"{mode}\"}} : ?\n"
            );
            c /= 4;
        } else {
            let (sh, sw) = (range(mv, 1, 3), range(mv, 1, 3));
            let coord = pick(mv, &["half_pixel", "asymmetric", "align_corners"]);
            net.s += &format!(
                "  %mv_sc = const f32[4] dense<[1.0, 1.0, {:?}, {:?}]>\n  \
                 %mv = graph.resize({y}, _, %mv_sc) {{coordinate_transformation_mode=\"{coord}\", \
                 nearest_mode=\"floor\"}} : ?\n",
                sh as f32, sw as f32
            );
        }
        let move_text = net.s[text_from..].to_string();
        match range(mv, 0, 2) {
            0 => outs.push("%mv".to_string()),
            1 => outs.push(src),
            _ => {}
        }
        // An FPN merge on a third stream: `%mv + move(1×1 conv of the move's source)`.
        // The Add aligns its operands to one grid that neither source is on, so both
        // moves store their result on it (through a table) and the Add reads codes.
        let fpn = &mut Rng::new(net.seed.wrapping_mul(31_337).wrapping_add(5));
        let mut merged = "%mv".to_string();
        if outs.is_empty() && one_in(fpn, 2) {
            let lat = net.conv(fpn, "lat", &src_of_move, c_before, c_before, 1, 1, 1);
            net.s += &move_text
                .replace("%mv", "%lat_mv")
                .replace(&src_of_move, &lat);
            net.s += "  %fpn = graph.add(%mv, %lat_mv) : ?\n";
            merged = "%fpn".to_string();
        }
        let m = channels(mv);
        y = net.conv(mv, "after_mv", &merged, c, m, 1, 1, 1);
        c = m;
    }
    let classes = range(rng, 1, 10);
    let (ws, bs) = (net.seed(), net.seed());
    net.s += &format!(
        "  %g = graph.global_average_pool({y}) : ?\n  \
         %fl = graph.flatten(%g) {{axis=1}} : ?\n  \
         %wg = const f32[{classes},{c}] random(seed={ws}, min=-1.0, max=1.0)\n  \
         %bg = const f32[{classes}] random(seed={bs}, min=-0.5, max=0.5)\n  \
         %o = graph.gemm(%fl, %wg, %bg) {{transB=1}} : ?\n  return %o{}\n}}\n",
        outs.iter().map(|o| format!(", {o}")).collect::<String>()
    );
    if !outs.is_empty() {
        net.s = net.s.replacen("-> (?)", "-> (?, ?)", 1);
    }
    Case::network(net.s)
}
