//! Network tails that kiln-x86 runs in f32 (`Platform::float_tail`), on kiln-x86 itself:
//!
//! - a detector head: two 1×1 convs (box and class logits) concatenated, reshaped and
//!   split, a Softmax over the box bins, a Sigmoid over the classes, concatenated again;
//!   only the convs are int8, they write f32 and everything after them is f32 kernels;
//! - a residual stream: MatMuls whose fused residual operand is a graph input or an
//!   earlier MatMul's result that a LayerNormalization also reads, so that value never
//!   leaves f32 and the epilogue adds it as it is (NaN and ±inf included, when an input
//!   brings them).

use super::cases::act;
use super::harness::{Case, dims, one_in, pick, range};
use kiln_core::Rng;
use kiln_quant::platform;

pub fn tail_case(rng: &mut Rng) -> Case {
    let s = if one_in(rng, 2) {
        head(rng)
    } else {
        residual_stream(rng)
    };
    Case {
        platform: &platform::KILN_X86,
        ..Case::new(s, false)
    }
}

fn seed(rng: &mut Rng) -> u64 {
    rng.next_u64() % 100_000
}

/// `%o` is the box conv; the class conv, the concat, reshape, split, Softmax and Sigmoid
/// follow.
fn head(rng: &mut Rng) -> String {
    let c = range(rng, 1, 24);
    let (h, w) = (range(rng, 1, 6), range(rng, 1, 6));
    let bins = pick(rng, &[4usize, 8, 16]);
    let boxes = bins * range(rng, 1, 2);
    let classes = range(rng, 1, 12);
    let m = boxes + classes;
    let mut s = format!(
        "graph @head(%x: f32[1,{c},{h},{w}]) -> (?) {{\n  \
         %w1 = const f32[{boxes},{c},1,1] random(seed={}, min=-1.0, max=1.0)\n  \
         %b1 = const f32[{boxes}] random(seed={}, min=-0.5, max=0.5)\n  \
         %o = graph.conv(%x, %w1, %b1) {{kernel_shape=[1,1]{}}} : ?\n  \
         %w2 = const f32[{classes},{c},1,1] random(seed={}, min=-1.0, max=1.0)\n  \
         %k = graph.conv(%x, %w2) {{kernel_shape=[1,1]}} : ?\n  \
         %cat = graph.concat(%o, %k) {{axis=1}} : ?\n  \
         %shape = const i64[3] dense<[1, {m}, {}]>\n  \
         %r = graph.reshape(%cat, %shape) : ?\n  \
         %sizes = const i64[2] dense<[{boxes}, {classes}]>\n  \
         %bx, %cl = graph.split(%r, %sizes) {{axis=1}} : ?, ?\n",
        seed(rng),
        seed(rng),
        act(rng),
        seed(rng),
        h * w,
    );
    // The box distribution: bins along axis 2 of [1, boxes/bins, bins, hw].
    s += &format!(
        "  %bshape = const i64[4] dense<[1, {}, {bins}, {}]>\n  \
         %b4 = graph.reshape(%bx, %bshape) : ?\n  \
         %p = graph.softmax(%b4) {{axis=2}} : ?\n  \
         %pshape = const i64[3] dense<[1, {boxes}, {}]>\n  \
         %p3 = graph.reshape(%p, %pshape) : ?\n  \
         %g = graph.sigmoid(%cl) : ?\n  \
         %y = graph.concat(%p3, %g) {{axis=1}} : ?\n  return %y\n}}\n",
        boxes / bins,
        h * w,
        h * w,
    );
    s
}

/// `%o = act(x·W1 + b1 + x)`, a LayerNorm of it, `h = act(ln·W2 + b2)`, `y = act(h·W3 + b3
/// + %o)`.
fn residual_stream(rng: &mut Rng) -> String {
    let t = range(rng, 1, 9);
    let d = range(rng, 1, 24);
    let f = range(rng, 1, 40);
    let mut attrs = || match act(rng).trim_start_matches(", ") {
        "" => String::new(),
        a => format!(" {{{a}}}"),
    };
    let (a1, a2, a3) = (attrs(), attrs(), attrs());
    format!(
        "graph @block(%x: f32[{}]) -> (?) {{\n  \
         %w1 = const f32[{d},{d}] random(seed={}, min=-0.5, max=0.5)\n  \
         %b1 = const f32[{d}] random(seed={}, min=-0.5, max=0.5)\n  \
         %o = graph.matmul(%x, %w1, %b1, %x){a1} : ?\n  \
         %gs = const f32[{d}] random(seed={}, min=0.5, max=1.5)\n  \
         %gb = const f32[{d}] random(seed={}, min=-0.5, max=0.5)\n  \
         %ln = graph.layer_normalization(%o, %gs, %gb) : ?\n  \
         %w2 = const f32[{d},{f}] random(seed={}, min=-0.5, max=0.5)\n  \
         %b2 = const f32[{f}] random(seed={}, min=-0.5, max=0.5)\n  \
         %h = graph.matmul(%ln, %w2, %b2){a2} : ?\n  \
         %w3 = const f32[{f},{d}] random(seed={}, min=-0.5, max=0.5)\n  \
         %b3 = const f32[{d}] random(seed={}, min=-0.5, max=0.5)\n  \
         %y = graph.matmul(%h, %w3, %b3, %o){a3} : ?\n  return %y\n}}\n",
        dims(&[1, t, d]),
        seed(rng),
        seed(rng),
        seed(rng),
        seed(rng),
        seed(rng),
        seed(rng),
        seed(rng),
        seed(rng),
    )
}
