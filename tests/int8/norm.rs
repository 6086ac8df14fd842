//! Batch-normalisation cases of `int8_props.rs`: a BN on its own (either layout, any
//! rank, parameters from harmless to extreme), and DenseNet's pre-activation block through
//! `graph-opt`, where the BN reads a concatenation and feeds a ReLU and a 1×1 conv.

use super::cases::{act, finish, image, layout_attr, weight_seed};
use super::harness::{Case, dims, one_in, pick, range};
use kiln_core::Rng;

/// The four per-channel parameter constants `%s %b %m %v` of a BN over `c` channels:
/// scales of either sign (sometimes tiny or zero), variances down to zero.
fn params(rng: &mut Rng, c: usize) -> String {
    let (smin, smax) = pick(
        rng,
        &[(-2.0f32, 2.0f32), (0.5, 1.5), (0.0, 0.0), (-1e-3, 1e-3)],
    );
    let vmax = pick(rng, &[2.0f32, 1e-3, 0.0]);
    let mut s = String::new();
    for (name, lo, hi) in [
        ("s", smin, smax),
        ("b", -1.0, 1.0),
        ("m", -0.5, 0.5),
        ("v", 0.0, vmax),
    ] {
        s += &format!(
            "  %{name} = const f32[{c}] random(seed={}, min={lo:?}, max={hi:?})\n",
            weight_seed(rng)
        );
    }
    s
}

/// One BN whose result is `%o`.
pub fn bn_case(rng: &mut Rng) -> Case {
    let (x, nhwc) = if one_in(rng, 3) {
        let rank = range(rng, 2, 3);
        ((0..rank).map(|_| range(rng, 1, 12)).collect(), false)
    } else {
        image(rng)
    };
    let c = if nhwc { x[x.len() - 1] } else { x[1] };
    let eps = pick(rng, &[1e-5f32, 1e-3, 0.0]);
    let attrs = match layout_attr(nhwc) {
        "" => format!("epsilon={eps:?}"),
        l => format!("epsilon={eps:?}, {l}"),
    };
    let mut s = format!("graph @bn(%x: f32[{}]) -> (?) {{\n", dims(&x));
    s += &params(rng, c);
    s += &format!("  %o = graph.batch_normalization(%x, %s, %b, %m, %v) {{{attrs}}} : ?\n");
    finish(rng, &mut s);
    Case::new(s, false)
}

/// A DenseNet layer, channels first through `graph-opt` (which moves it channels last):
/// after a stem conv, a conv's growth concatenated to its input, then BN (`%o`), ReLU and
/// a 1×1 conv. The concatenation and the BN are copies and tables over codes.
pub fn dense_case(rng: &mut Rng) -> Case {
    let (cx, c) = (range(rng, 1, 4), range(rng, 1, 12));
    let growth = range(rng, 1, 12);
    let (h, w) = (range(rng, 1, 9), range(rng, 1, 9));
    let k = pick(rng, &[1usize, 3]);
    let out = range(rng, 1, 16);
    let mut s = format!("graph @dense(%x: f32[1,{cx},{h},{w}]) -> (?) {{\n");
    s += &format!(
        "  %w0 = const f32[{c},{cx},1,1] random(seed={}, min=-1.0, max=1.0)\n  \
         %a = graph.conv(%x, %w0) {{kernel_shape=[1,1]{}}} : ?\n  \
         %w1 = const f32[{growth},{c},{k},{k}] random(seed={}, min=-1.0, max=1.0)\n  \
         %g = graph.conv(%a, %w1) {{kernel_shape=[{k},{k}], pads=[{p},{p},{p},{p}]{}}} : ?\n  \
         %cat = graph.concat(%a, %g) {{axis=1}} : ?\n",
        weight_seed(rng),
        act(rng),
        weight_seed(rng),
        act(rng),
        p = k / 2,
    );
    s += &params(rng, c + growth);
    s += &format!(
        "  %o = graph.batch_normalization(%cat, %s, %b, %m, %v) : ?\n  \
         %r = graph.relu(%o) : ?\n  \
         %w2 = const f32[{out},{},1,1] random(seed={}, min=-0.5, max=0.5)\n  \
         %y = graph.conv(%r, %w2) {{kernel_shape=[1,1]{}}} : ?\n  return %y\n}}\n",
        c + growth,
        weight_seed(rng),
        act(rng),
    );
    Case::network(s)
}
