//! The case generators of `int8_props.rs`: each draws one small graph, in the graph
//! dialect's text form, whose op under test computes `%o`.

use super::harness::{Case, dims, one_in, pick, range};
use kiln_core::Rng;
use kiln_quant::platform;

/// Fused activations of compute ops, as attribute text. The first six (the common ones)
/// are listed twice, so they are drawn twice as often.
pub fn act(rng: &mut Rng) -> String {
    let acts = [
        "",
        "relu",
        "clip",
        "hard_swish",
        "sigmoid",
        "leaky_relu",
        "",
        "relu",
        "clip",
        "hard_swish",
        "sigmoid",
        "leaky_relu",
        "tanh",
        "swish",
        "hard_sigmoid",
        "gelu",
        "gelu_tanh",
    ];
    match pick(rng, &acts) {
        "" => String::new(),
        "clip" => {
            let lo = pick(rng, &[-0.5f32, 0.0, 0.1, -3.0]);
            let hi = pick(rng, &[0.5f32, 1.0, 6.0]);
            format!(", act=\"clip\", act_min={lo:?}, act_max={hi:?}")
        }
        "leaky_relu" => format!(
            ", act=\"leaky_relu\", act_alpha={:?}",
            pick(rng, &[0.1f32, 0.01, 0.3])
        ),
        a => format!(", act=\"{a}\""),
    }
}

/// `%o` as the graph output, or fed to a `flatten` whose result is (so `%o` is requantised).
pub fn finish(rng: &mut Rng, s: &mut String) {
    if one_in(rng, 2) {
        *s += "  %f = graph.flatten(%o) {axis=0} : ?\n  return %f\n}\n";
    } else {
        *s += "  return %o\n}\n";
    }
}

pub fn weight_seed(rng: &mut Rng) -> u64 {
    rng.next_u64() % 100_000
}

/// A 2-D convolution; `grouped` draws depthwise and grouped ones instead of group 1.
pub fn conv_case(rng: &mut Rng, grouped: bool) -> Case {
    let n = range(rng, 1, 2);
    let (c, group, m) = if !grouped {
        (range(rng, 1, 40), 1, range(rng, 1, 40))
    } else if one_in(rng, 2) {
        let c = range(rng, 1, 40);
        (c, c, c * range(rng, 1, 2))
    } else {
        let g = range(rng, 2, 5);
        (g * range(rng, 1, 8), g, g * range(rng, 1, 6))
    };
    // One in five is pointwise (1×1, stride 1, no padding), half of those with channels a
    // multiple of 4: the channels-last form that skips the im2col copy.
    let pointwise = one_in(rng, 5);
    let c = if pointwise && one_in(rng, 2) && !grouped {
        c.div_ceil(4) * 4
    } else {
        c
    };
    let (kh, kw, sh, sw, dh, dw, pads) = if pointwise {
        (1, 1, 1, 1, 1, 1, vec![0; 4])
    } else {
        (
            range(rng, 1, 5),
            range(rng, 1, 5),
            range(rng, 1, 3),
            range(rng, 1, 3),
            range(rng, 1, 2),
            range(rng, 1, 2),
            (0..4).map(|_| range(rng, 0, 2)).collect(),
        )
    };
    let eff = |k: usize, d: usize| (k - 1) * d + 1;
    let lo_h = eff(kh, dh).saturating_sub(pads[0] + pads[2]).max(1);
    let lo_w = eff(kw, dw).saturating_sub(pads[1] + pads[3]).max(1);
    let (h, w) = (range(rng, lo_h, lo_h + 6), range(rng, lo_w, lo_w + 6));
    let nhwc = one_in(rng, 2);
    let x = if nhwc { [n, h, w, c] } else { [n, c, h, w] };
    let oh = (h + pads[0] + pads[2] - eff(kh, dh)) / sh + 1;
    let ow = (w + pads[1] + pads[3] - eff(kw, dw)) / sw + 1;
    let out = if nhwc { [n, oh, ow, m] } else { [n, m, oh, ow] };
    let bias = one_in(rng, 2);
    let residual = one_in(rng, 3);
    let act = act(rng);
    let mut s = format!("graph @conv(%x: f32[{}]", dims(&x));
    if residual {
        s += &format!(", %r: f32[{}]", dims(&out));
    }
    s += &format!(
        ") -> (?) {{\n  %w = const f32[{m},{},{kh},{kw}] random(seed={}, min=-1.0, max=1.0)\n",
        c / group,
        weight_seed(rng)
    );
    if bias {
        s += &format!(
            "  %b = const f32[{m}] random(seed={}, min=-1.0, max=1.0)\n",
            weight_seed(rng)
        );
    }
    let operands = format!(
        "%x, %w{}{}",
        if bias {
            ", %b"
        } else if residual {
            ", _"
        } else {
            ""
        },
        if residual { ", %r" } else { "" }
    );
    s += &format!(
        "  %o = graph.conv({operands}) {{kernel_shape=[{kh},{kw}], strides=[{sh},{sw}], \
         dilations=[{dh},{dw}], pads=[{}], group={group}{act}{}}} : ?\n",
        dims(&pads),
        if nhwc { ", layout=\"nhwc\"" } else { "" }
    );
    finish(rng, &mut s);
    Case::new(s, !grouped)
}

/// Gemm or MatMul. `strict` cases have a constant weight, alpha = beta = 1, no transA and
/// a per-channel (or no) bias: the int8 GEMM must run them.
pub fn gemm_case(rng: &mut Rng) -> Case {
    let (m, k, n) = (range(rng, 1, 40), range(rng, 1, 40), range(rng, 1, 40));
    let act = act(rng);
    let seed = weight_seed(rng);
    let strict;
    let mut s;
    match range(rng, 0, 3) {
        0 | 1 => {
            // Gemm; one case in five uses a form the integer path does not take.
            let odd = one_in(rng, 5);
            let tb = one_in(rng, 2);
            let ta = one_in(rng, if odd { 2 } else { 4 });
            let (alpha, beta) = if odd {
                (pick(rng, &[1.0f32, 0.5]), pick(rng, &[1.0f32, 0.25]))
            } else {
                (1.0, 1.0)
            };
            let bias = if odd {
                pick(rng, &["none", "n", "1", "mn", "m1"])
            } else {
                pick(rng, &["none", "n"])
            };
            // A transposed A runs as kernels when its rows need no padding.
            strict = !((ta && k % 4 != 0)
                || alpha != 1.0
                || beta != 1.0
                || matches!(bias, "mn" | "m1" | "1"));
            let a = if ta { [k, m] } else { [m, k] };
            let b = if tb { [n, k] } else { [k, n] };
            s = format!(
                "graph @gemm(%a: f32[{}]) -> (?) {{\n  \
                 %b = const f32[{}] random(seed={seed}, min=-1.0, max=1.0)\n",
                dims(&a),
                dims(&b)
            );
            let c = match bias {
                "none" => String::new(),
                shape => {
                    let shape = match shape {
                        "n" => format!("{n}"),
                        "1" => "1".into(),
                        "mn" => format!("{m},{n}"),
                        _ => format!("{m},1"),
                    };
                    s += &format!(
                        "  %c = const f32[{shape}] random(seed={}, min=-1.0, max=1.0)\n",
                        seed + 1
                    );
                    ", %c".into()
                }
            };
            s += &format!(
                "  %o = graph.gemm(%a, %b{c}) {{alpha={alpha:?}, beta={beta:?}, transA={}, \
                 transB={}{act}}} : ?\n",
                ta as i32, tb as i32
            );
        }
        2 => {
            // MatMul with a constant 2-D B (transposed or not), batched A (transposed by
            // kiln's own transA attribute in one case in four, as the layout pass makes it).
            let batch = pick(rng, &[&[][..], &[2][..], &[2, 3][..]]);
            let mut a = batch.to_vec();
            let ta = one_in(rng, 4);
            a.extend(if ta { [k, m] } else { [m, k] });
            strict = !ta || k % 4 == 0;
            let tb = one_in(rng, 2);
            let b = if tb { [n, k] } else { [k, n] };
            s = format!(
                "graph @matmul(%a: f32[{}]) -> (?) {{\n  \
                 %b = const f32[{}] random(seed={seed}, min=-1.0, max=1.0)\n",
                dims(&a),
                dims(&b)
            );
            let bias = one_in(rng, 2);
            if bias {
                s += &format!(
                    "  %c = const f32[{n}] random(seed={}, min=-1.0, max=1.0)\n",
                    seed + 1
                );
            }
            let mut attrs = vec![];
            if ta {
                attrs.push("transA=1".to_string());
            }
            if tb {
                attrs.push("transB=1".to_string());
            }
            if !act.is_empty() {
                attrs.push(act.trim_start_matches(", ").to_string());
            }
            s += &format!(
                "  %o = graph.matmul(%a, %b{}) {{{}}} : ?\n",
                if bias { ", %c" } else { "" },
                attrs.join(", ")
            );
        }
        _ => {
            // MatMul of two activations with broadcast batch dimensions.
            strict = false;
            let batch = pick(rng, &[&[][..], &[2][..], &[3, 2][..]]);
            let mut a: Vec<usize> = batch
                .iter()
                .map(|&d| if one_in(rng, 3) { 1 } else { d })
                .collect();
            let mut b: Vec<usize> = if one_in(rng, 3) {
                vec![]
            } else {
                batch.to_vec()
            };
            a.extend([m, k]);
            b.extend([k, n]);
            s = matmul_src(&a, &b, act.trim_start_matches(", "));
        }
    }
    finish(rng, &mut s);
    Case::new(s, strict)
}

/// The head of a graph whose `%o` is `matmul(%a, %b) {attrs}` of two graph inputs.
fn matmul_src(a: &[usize], b: &[usize], attrs: &str) -> String {
    format!(
        "graph @matmul(%a: f32[{}], %b: f32[{}]) -> (?) {{\n  \
         %o = graph.matmul(%a, %b) {{{attrs}}} : ?\n",
        dims(a),
        dims(b),
    )
}

/// Add, Sub or Mul of two activations with broadcasting.
pub fn binary_case(rng: &mut Rng) -> Case {
    let rank = range(rng, 1, 4);
    let out: Vec<usize> = (0..rank).map(|_| range(rng, 1, 9)).collect();
    let bcast = |rng: &mut Rng| -> Vec<usize> {
        let drop = range(rng, 0, rank - 1);
        out[drop..]
            .iter()
            .map(|&d| if one_in(rng, 3) { 1 } else { d })
            .collect()
    };
    let (a, b) = (bcast(rng), bcast(rng));
    let op = pick(rng, &["add", "sub", "mul"]);
    let mut s = format!(
        "graph @e(%a: f32[{}], %b: f32[{}]) -> (?) {{\n  %o = graph.{op}(%a, %b) : ?\n",
        dims(&a),
        dims(&b)
    );
    finish(rng, &mut s);
    Case::new(s, false)
}

/// EltwiseSum of 1–4 broadcasting operands (some of one element, as a fused `x·c + b`
/// has) with coefficients of both signs; it must run as a kernel, not a host step.
pub fn eltwise_sum_case(rng: &mut Rng) -> Case {
    let rank = range(rng, 1, 4);
    let out: Vec<usize> = (0..rank).map(|_| range(rng, 1, 9)).collect();
    let n = range(rng, 1, 4);
    let shapes: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            if i > 0 && one_in(rng, 3) {
                vec![1]
            } else {
                let drop = range(rng, 0, rank - 1);
                out[drop..]
                    .iter()
                    .map(|&d| if i > 0 && one_in(rng, 3) { 1 } else { d })
                    .collect()
            }
        })
        .collect();
    let coeffs: Vec<String> = (0..n)
        .map(|_| format!("{:?}", (rng.next_u64() % 2001) as f32 / 500.0 - 2.0))
        .collect();
    // One case in three is affine, `c₀·x + Σ cᵢ·kᵢ` with constant scalars `kᵢ` (the plan's
    // table path); drawn from a stream of its own so the other cases stay the ones drawn
    // before it existed.
    let mut own = Rng::new(
        shapes
            .iter()
            .flatten()
            .fold(n as u64, |h, &d| h * 31 + d as u64),
    );
    let affine = n > 1 && one_in(&mut own, 3);
    let mut consts = String::new();
    let mut params = Vec::new();
    let mut args = Vec::new();
    for (i, d) in shapes.iter().enumerate() {
        if affine && i > 0 {
            let k = (own.next_u64() % 2001) as f32 / 250.0 - 4.0;
            consts += &format!("  %k{i} = const f32[1] dense<[{k:?}]>\n");
            args.push(format!("%k{i}"));
        } else {
            let d = if affine { &out } else { d };
            params.push(format!("%x{i}: f32[{}]", dims(d)));
            args.push(format!("%x{i}"));
        }
    }
    let mut s = format!(
        "graph @e({}) -> (?) {{\n{consts}  %o = graph.eltwise_sum({}) {{coeffs=[{}]}} : ?\n",
        params.join(", "),
        args.join(", "),
        coeffs.join(",")
    );
    finish(rng, &mut s);
    Case::new(s, true)
}

/// A 4-D activation shape in either layout, and the layout attribute.
pub fn image(rng: &mut Rng) -> (Vec<usize>, bool) {
    let (n, c, h, w) = (
        range(rng, 1, 2),
        range(rng, 1, 20),
        range(rng, 1, 9),
        range(rng, 1, 9),
    );
    let nhwc = one_in(rng, 2);
    (
        if nhwc {
            vec![n, h, w, c]
        } else {
            vec![n, c, h, w]
        },
        nhwc,
    )
}

pub fn layout_attr(nhwc: bool) -> &'static str {
    if nhwc { "layout=\"nhwc\"" } else { "" }
}

/// Global average pool in either layout.
pub fn gap_case(rng: &mut Rng) -> Case {
    let (x, nhwc) = image(rng);
    let mut s = format!(
        "graph @gap(%x: f32[{}]) -> (?) {{\n  %o = graph.global_average_pool(%x) {{{}}} : ?\n",
        dims(&x),
        layout_attr(nhwc)
    );
    finish(rng, &mut s);
    Case::new(s, false)
}

/// Max pooling (or, one case in five, average pooling) in either layout.
pub fn pool_case(rng: &mut Rng) -> Case {
    if one_in(rng, 6) {
        return shuffle_case(rng);
    }
    let (x, nhwc) = image(rng);
    let (h, w) = if nhwc { (x[1], x[2]) } else { (x[2], x[3]) };
    let (kh, kw) = (range(rng, 1, 3.min(h)), range(rng, 1, 3.min(w)));
    let pads = [
        range(rng, 0, kh - 1),
        range(rng, 0, kw - 1),
        range(rng, 0, kh - 1),
        range(rng, 0, kw - 1),
    ];
    let (sh, sw) = (range(rng, 1, 3), range(rng, 1, 3));
    if one_in(rng, 5) {
        // Nearest upsampling (YOLO's neck), in every coordinate and rounding mode but
        // `tf_crop_and_resize`: pure data movement, so the fp32 kernel runs it.
        let (sh, sw) = (range(rng, 1, 3), range(rng, 1, 3));
        let scales = if nhwc { [1, sh, sw, 1] } else { [1, 1, sh, sw] };
        let coord = pick(
            rng,
            &[
                "half_pixel",
                "asymmetric",
                "align_corners",
                "pytorch_half_pixel",
            ],
        );
        let nearest = pick(
            rng,
            &["round_prefer_floor", "floor", "ceil", "round_prefer_ceil"],
        );
        let mut s = format!(
            "graph @resize(%x: f32[{}]) -> (?) {{\n  \
             %sc = const f32[4] dense<[{:?}, {:?}, {:?}, {:?}]>\n  \
             %o = graph.resize(%x, _, %sc) {{coordinate_transformation_mode=\"{coord}\", \
             nearest_mode=\"{nearest}\"}} : ?\n",
            dims(&x),
            scales[0] as f32,
            scales[1] as f32,
            scales[2] as f32,
            scales[3] as f32,
        );
        finish(rng, &mut s);
        return Case::new(s, true);
    }
    let avg = one_in(rng, 2);
    let op = if avg { "average_pool" } else { "max_pool" };
    let mut attrs = format!(
        "kernel_shape=[{kh},{kw}], strides=[{sh},{sw}], pads=[{}]",
        dims(&pads)
    );
    if avg {
        // The divisor with and without the padding, and partial windows past the end.
        attrs += &format!(
            ", count_include_pad={}, ceil_mode={}",
            one_in(rng, 2) as i32,
            one_in(rng, 3) as i32
        );
    }
    if nhwc {
        attrs += ", layout=\"nhwc\"";
    }
    let mut s = format!(
        "graph @pool(%x: f32[{}]) -> (?) {{\n  %o = graph.{op}(%x) {{{attrs}}} : ?\n",
        dims(&x)
    );
    finish(rng, &mut s);
    Case::new(s, true)
}

/// `depth_to_space` or `space_to_depth` in either block order and either layout (the
/// channels-last form is what `graph.layout` makes of an upsampling head): data movement,
/// so the int8 program runs the fp32 kernel, whose bits must be the interpreter's.
fn shuffle_case(rng: &mut Rng) -> Case {
    let b = range(rng, 2, 3);
    let (x, nhwc) = image(rng);
    let (ci, hi, wi) = if nhwc { (3, 1, 2) } else { (1, 2, 3) };
    let d2s = one_in(rng, 2);
    // Channels b²·c for depth_to_space, spatial sizes b·h, b·w for space_to_depth.
    let mut x = x;
    if d2s {
        x[ci] *= b * b;
    } else {
        x[hi] *= b;
        x[wi] *= b;
    }
    let mut s = format!(
        "graph @shuffle(%x: f32[{}]) -> (?) {{\n  \
         %o = graph.{}(%x) {{blocksize={b}, mode=\"{}\"{}}} : ?\n",
        dims(&x),
        if d2s {
            "depth_to_space"
        } else {
            "space_to_depth"
        },
        pick(rng, &["DCR", "CRD"]),
        if nhwc { ", layout=\"nhwc\"" } else { "" },
    );
    finish(rng, &mut s);
    Case::new(s, true)
}

/// An element-wise unary op (a lookup table on the integer path).
pub fn unary_case(rng: &mut Rng) -> Case {
    let rank = range(rng, 1, 4);
    let shape: Vec<usize> = (0..rank).map(|_| range(rng, 1, 9)).collect();
    let op = pick(
        rng,
        &[
            "relu",
            "sigmoid",
            "tanh",
            "hard_swish",
            "swish",
            "exp",
            "abs",
            "neg",
            "erf",
            "softplus",
            "softsign",
            "leaky_relu",
            "hard_sigmoid",
            "gelu",
            "clip",
        ],
    );
    let mut s = format!("graph @u(%x: f32[{}]) -> (?) {{\n", dims(&shape));
    s += &match op {
        "leaky_relu" => format!(
            "  %o = graph.leaky_relu(%x) {{alpha={:?}}} : ?\n",
            pick(rng, &[0.01f32, 0.1, 0.2])
        ),
        "hard_sigmoid" => "  %o = graph.hard_sigmoid(%x) {alpha=0.2, beta=0.5} : ?\n".into(),
        "clip" => format!(
            "  %lo = const f32[] dense<[{:?}]>\n  %hi = const f32[] dense<[{:?}]>\n  \
             %o = graph.clip(%x, %lo, %hi) : ?\n",
            pick(rng, &[-0.5f32, 0.0, 0.2]),
            pick(rng, &[0.5f32, 1.0, 6.0])
        ),
        op => format!("  %o = graph.{op}(%x) : ?\n"),
    };
    finish(rng, &mut s);
    Case::new(s, false)
}

/// A small unfused network — conv, activation op, pooling, a residual block, depthwise
/// conv, global pooling and a classifier — through `graph-opt` (fusion, NHWC layout with
/// its transposes) before quantisation: the fused forms the passes produce, and the
/// fake-quantisations kernels skip between nodes because data is already on the grid.
pub fn network_case(rng: &mut Rng) -> Case {
    let n = range(rng, 1, 2);
    let c = range(rng, 1, 12);
    let (mut h, mut w) = (range(rng, 3, 10), range(rng, 3, 10));
    let mut s = format!("graph @net(%x: f32[{n},{c},{h},{w}]) -> (?) {{\n");
    let mut seed = weight_seed(rng);
    let mut next_seed = || {
        seed += 1;
        seed
    };
    let m = range(rng, 1, 16);
    let k = pick(rng, &[1usize, 3, 5]);
    let st = range(rng, 1, 2);
    s += &format!(
        "  %w1 = const f32[{m},{c},{k},{k}] random(seed={}, min=-1.0, max=1.0)\n  \
         %b1 = const f32[{m}] random(seed={}, min=-0.5, max=0.5)\n  \
         %c1 = graph.conv(%x, %w1, %b1) {{pads=[{p},{p},{p},{p}], strides=[{st},{st}]}} : ?\n",
        next_seed(),
        next_seed(),
        p = k / 2
    );
    h = (h - 1) / st + 1;
    w = (w - 1) / st + 1;
    let mut y = "%c1".to_string();
    let act = |rng: &mut Rng, s: &mut String, y: &mut String, name: &str| {
        let a = pick(rng, &["relu", "relu", "clip", "hard_swish", "sigmoid", ""]);
        match a {
            "" => {}
            "clip" => {
                *s += &format!(
                    "  %{name}_lo = const f32[] dense<[0.0]>\n  \
                     %{name}_hi = const f32[] dense<[6.0]>\n  \
                     %{name} = graph.clip({y}, %{name}_lo, %{name}_hi) : ?\n"
                );
                *y = format!("%{name}");
            }
            a => {
                *s += &format!("  %{name} = graph.{a}({y}) : ?\n");
                *y = format!("%{name}");
            }
        }
    };
    act(rng, &mut s, &mut y, "a1");
    if h >= 2 && w >= 2 && one_in(rng, 2) {
        s += &format!("  %p = graph.max_pool({y}) {{kernel_shape=[2,2], strides=[2,2]}} : ?\n");
        y = "%p".into();
    }
    if one_in(rng, 2) {
        // Residual block: conv 3×3 (same shape) + the block's input.
        s += &format!(
            "  %w2 = const f32[{m},{m},3,3] random(seed={}, min=-0.5, max=0.5)\n  \
             %b2 = const f32[{m}] random(seed={}, min=-0.5, max=0.5)\n  \
             %c2 = graph.conv({y}, %w2, %b2) {{pads=[1,1,1,1]}} : ?\n  \
             %s2 = graph.add(%c2, {y}) : ?\n",
            next_seed(),
            next_seed()
        );
        y = "%s2".into();
        act(rng, &mut s, &mut y, "a2");
    }
    if one_in(rng, 2) {
        s += &format!(
            "  %wd = const f32[{m},1,3,3] random(seed={}, min=-1.0, max=1.0)\n  \
             %d = graph.conv({y}, %wd) {{pads=[1,1,1,1], group={m}}} : ?\n",
            next_seed()
        );
        y = "%d".into();
        act(rng, &mut s, &mut y, "a3");
    }
    if one_in(rng, 4) {
        // A convolutional head: the last conv is the output.
        s += &format!(
            "  %wo = const f32[3,{m},1,1] random(seed={}, min=-1.0, max=1.0)\n  \
             %o = graph.conv({y}, %wo) : ?\n  return %o\n}}\n",
            next_seed()
        );
    } else {
        let classes = range(rng, 1, 10);
        s += &format!(
            "  %g = graph.global_average_pool({y}) : ?\n  \
             %fl = graph.flatten(%g) {{axis=1}} : ?\n  \
             %wg = const f32[{classes},{m}] random(seed={}, min=-1.0, max=1.0)\n  \
             %bg = const f32[{classes}] random(seed={}, min=-0.5, max=0.5)\n  \
             %o = graph.gemm(%fl, %wg, %bg) {{transB=1}} : ?\n  return %o\n}}\n",
            next_seed(),
            next_seed()
        );
    }
    Case::network(s)
}

/// The other platforms' schemes (signed or asymmetric weights, ties away from zero or up,
/// power-of-two scales): most of it runs as host steps or fp32 kernels with fake
/// quantisation in other rounding modes, and must be just as exact.
pub fn other_platform_case(rng: &mut Rng) -> Case {
    let mut case = match range(rng, 0, 5) {
        0 => {
            let grouped = one_in(rng, 3);
            conv_case(rng, grouped)
        }
        1 => gemm_case(rng),
        2 => binary_case(rng),
        3 => gap_case(rng),
        4 => pool_case(rng),
        _ => unary_case(rng),
    };
    case.strict = false;
    case.platform = pick(
        rng,
        &[&platform::TRT_INT8, &platform::ACADEMIC, &platform::POW2],
    );
    case
}

/// Routes some of the case's graph inputs through an fp32 division by a new graph input
/// first, so the op under test reads data no graph-input fake quantisation has touched and
/// quantises it with its own operand TQC (another code path in the kernels). The divisors
/// calibrate in [0.5, 1] and are sometimes 0 at evaluation, so ±inf and NaN arrive too
/// (see `Case::divisions`).
pub fn through_fp32(mut case: Case, rng: &mut Rng) -> Case {
    let mut sig = case.src.lines().next().unwrap_or_default().to_string();
    let mut head = String::new();
    let mut body: Vec<String> = case.src.lines().skip(1).map(String::from).collect();
    for (name, shape) in case.inputs() {
        if !one_in(rng, 2) {
            continue;
        }
        let den = format!("{name}_d");
        let at = sig.find(") -> (").unwrap();
        sig.insert_str(at, &format!(", %{den}: f32[{}]", dims(&shape)));
        head += &format!("  %{name}_f = graph.div(%{name}, %{den}) : ?\n");
        for l in &mut body {
            *l = l
                .replace(&format!("%{name},"), &format!("%{name}_f,"))
                .replace(&format!("%{name})"), &format!("%{name}_f)"));
        }
        case.divisions.push((name, den));
    }
    case.src = format!("{sig}\n{head}{}\n", body.join("\n"));
    case
}

/// MatMul of two activations (attention's `Q·Kᵀ` and `P·V`): batch dims that broadcast
/// (either side 1 or missing), B transposed or not, odd sizes on every side, K past 16 and
/// not a multiple of 4, an optional fused activation. The integer path takes it whatever
/// the sizes, so it must run as int8 kernels.
pub fn act_matmul_case(rng: &mut Rng) -> Case {
    let (m, n) = (range(rng, 1, 13), range(rng, 1, 19));
    let k = if one_in(rng, 2) {
        range(rng, 1, 9)
    } else {
        range(rng, 10, 70)
    };
    let batch = pick(
        rng,
        &[&[][..], &[2][..], &[3, 2][..], &[2, 1, 3][..], &[4][..]],
    );
    let thin = |rng: &mut Rng| -> Vec<usize> {
        let drop = if one_in(rng, 4) {
            range(rng, 0, batch.len())
        } else {
            0
        };
        batch[drop..]
            .iter()
            .map(|&d| if one_in(rng, 4) { 1 } else { d })
            .collect()
    };
    let (mut a, mut b) = (thin(rng), thin(rng));
    let tb = one_in(rng, 2);
    a.extend([m, k]);
    b.extend(if tb { [n, k] } else { [k, n] });
    let act = if one_in(rng, 3) {
        act(rng)
    } else {
        String::new()
    };
    let mut attrs = vec![];
    if tb {
        attrs.push("transB=1".to_string());
    }
    if !act.is_empty() {
        attrs.push(act.trim_start_matches(", ").to_string());
    }
    let mut s = matmul_src(&a, &b, &attrs.join(", "));
    finish(rng, &mut s);
    Case::new(s, true)
}

/// Softmax along any axis of a rank 1–4 tensor, read straight from a graph input or after
/// an int8 op (a Mul by a scalar constant, as attention scales its logits), its result
/// requantised by the next op or left in f32 as a graph output.
pub fn softmax_case(rng: &mut Rng) -> Case {
    let rank = range(rng, 1, 4);
    let mut x: Vec<usize> = (0..rank).map(|_| range(rng, 1, 9)).collect();
    let a = range(rng, 0, rank - 1);
    if one_in(rng, 2) {
        // Long lanes: the kernel's sixteen partial sums, groups of four and scalar tail.
        x[a] = range(rng, 10, 80);
    }
    let axis = a as i64 - if one_in(rng, 2) { rank as i64 } else { 0 };
    let mut s = format!("graph @sm(%x: f32[{}]) -> (?) {{\n", dims(&x));
    let src = if one_in(rng, 3) {
        s += &format!(
            "  %c = const f32[] dense<[{:?}]>\n  %y = graph.mul(%x, %c) : ?\n",
            pick(rng, &[0.25f32, 3.0, -1.5])
        );
        "%y"
    } else {
        "%x"
    };
    s += &format!("  %o = graph.softmax({src}) {{axis={axis}}} : ?\n");
    finish(rng, &mut s);
    Case::new(s, true)
}

/// LayerNormalization over the trailing dims from any axis, with scale and optional bias
/// constants of the normalised shape (sometimes with leading ones), various epsilons.
pub fn layer_norm_case(rng: &mut Rng) -> Case {
    let rank = range(rng, 1, 4);
    let x: Vec<usize> = (0..rank).map(|_| range(rng, 1, 9)).collect();
    let axis = range(rng, 0, rank - 1);
    let mut p: Vec<usize> = x[axis..].to_vec();
    if p.len() < x.len() && one_in(rng, 3) {
        p.insert(0, 1);
    }
    let attr_axis = axis as i64 - if one_in(rng, 2) { rank as i64 } else { 0 };
    let eps = pick(rng, &[1e-5f32, 1e-6, 0.1, 1e-12]);
    let mut s = format!(
        "graph @ln(%x: f32[{}]) -> (?) {{\n  \
         %s = const f32[{}] random(seed={}, min=-2.0, max=2.0)\n",
        dims(&x),
        dims(&p),
        weight_seed(rng)
    );
    let bias = one_in(rng, 2);
    if bias {
        s += &format!(
            "  %b = const f32[{}] random(seed={}, min=-1.0, max=1.0)\n",
            dims(&p),
            weight_seed(rng)
        );
    }
    s += &format!(
        "  %o = graph.layer_normalization(%x, %s{}) {{axis={attr_axis}, epsilon={eps:?}}} : ?\n",
        if bias { ", %b" } else { "" }
    );
    finish(rng, &mut s);
    Case::new(s, false)
}

/// A YOLO-style CSP block, channels first through `graph-opt`: a 1×1 conv split in two, a
/// conv over one half (`%o`, with a random fused activation) and a concatenation of the
/// halves and `%o` (sometimes concatenated again with the block's input), read by a 1×1
/// conv. `%o`'s result is OVERLAPPED by the concatenation's group, which requantises it
/// downstream: the plan then requantises at `%o` itself, and its kernel must say so.
pub fn csp_case(rng: &mut Rng) -> Case {
    let c = range(rng, 1, 8);
    let (h, w) = (range(rng, 2, 9), range(rng, 2, 9));
    let half = range(rng, 1, 12);
    let m = range(rng, 1, 16);
    let k = pick(rng, &[1usize, 3]);
    let mut seed = weight_seed(rng);
    let mut next = || {
        seed += 1;
        seed
    };
    let mut s = format!("graph @csp(%x: f32[1,{c},{h},{w}]) -> (?) {{\n");
    s += &format!(
        "  %w1 = const f32[{},{c},1,1] random(seed={}, min=-1.0, max=1.0)\n  \
         %b1 = const f32[{}] random(seed={}, min=-0.5, max=0.5)\n  \
         %c1 = graph.conv(%x, %w1, %b1) {{kernel_shape=[1,1]{}}} : ?\n  \
         %sizes = const i64[2] dense<[{half}, {half}]>\n  \
         %s0, %s1 = graph.split(%c1, %sizes) {{axis=1}} : ?, ?\n  \
         %w2 = const f32[{m},{half},{k},{k}] random(seed={}, min=-1.0, max=1.0)\n  \
         %b2 = const f32[{m}] random(seed={}, min=-0.5, max=0.5)\n  \
         %o = graph.conv(%s1, %w2, %b2) {{kernel_shape=[{k},{k}], pads=[{p},{p},{p},{p}]{}}} : ?\n  \
         %cat = graph.concat(%s0, %s1, %o) {{axis=1}} : ?\n",
        2 * half,
        next(),
        2 * half,
        next(),
        act(rng),
        next(),
        next(),
        act(rng),
        p = k / 2,
    );
    let mut width = 2 * half + m;
    let mut y = "%cat";
    if one_in(rng, 3) {
        s += "  %cat2 = graph.concat(%cat, %x) {axis=1} : ?\n";
        width += c;
        y = "%cat2";
    }
    let out = range(rng, 1, 8);
    s += &format!(
        "  %w3 = const f32[{out},{width},1,1] random(seed={}, min=-0.5, max=0.5)\n  \
         %y = graph.conv({y}, %w3) {{kernel_shape=[1,1]{}}} : ?\n  return %y\n}}\n",
        next(),
        act(rng),
    );
    Case::network(s)
}
