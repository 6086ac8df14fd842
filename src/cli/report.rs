//! Writing report files: whole-or-nothing writes, and the horizontal SVG bar charts of
//! `kiln profile --svg` and `kiln quantize --svg`.
//!
//! The charts are plain SVG text (no plotting dependency): one labelled row per op, one or
//! more bars per row drawn from an origin on a linear or log2 axis.

use anyhow::Context;
use std::path::Path;

/// Writes `bytes` to `path` whole or not at all: into a temporary file beside it, then
/// renamed over it, so a failure (an unwritable directory, a full disk) leaves neither a
/// half-written report nor a stray temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("cannot write {}: not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(
        ".{}.kiln-tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let res = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.with_context(|| format!("cannot write {}", path.display()))
}

/// `s` cut to `n` characters, an ellipsis marking the cut.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

/// `s` as SVG/XML text.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The value axis: `lo..hi` in axis units (log2 of the value when `log2`), bars start at
/// `origin` (a value), gridlines at `ticks` (value, label) — `origin`'s drawn darker.
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub log2: bool,
    pub origin: f64,
    pub ticks: Vec<(f64, String)>,
}

/// One bar: `value` (not finite: drawn at the axis end it tends to, or not at all for NaN),
/// its colour and the text written after it.
pub struct Bar {
    pub value: f64,
    pub color: &'static str,
    pub text: String,
}

/// One labelled row of bars.
pub struct Row {
    pub label: String,
    pub bars: Vec<Bar>,
}

/// A horizontal bar chart: `title` on top, a row per entry of `rows`, the axis below.
pub fn hbar_chart(title: &str, axis: &Axis, rows: &[Row]) -> String {
    let per_row = rows.iter().map(|r| r.bars.len()).max().unwrap_or(1).max(1);
    let bar_h = if per_row == 1 { 12.0 } else { 9.0 };
    let (label_w, bar_w, top) = (300.0, 420.0, 40.0);
    let row_h = bar_h * per_row as f64 + 6.0;
    let width = label_w + bar_w + 80.0;
    let height = top + row_h * rows.len() as f64 + 30.0;
    let x = |v: f64| {
        let t = if axis.log2 { v.log2() } else { v };
        let t = if t.is_nan() { axis.lo } else { t };
        label_w + (t.clamp(axis.lo, axis.hi) - axis.lo) / (axis.hi - axis.lo) * bar_w
    };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">\n\
         <text x=\"10\" y=\"20\" font-size=\"13\">{}</text>\n",
        escape(title)
    );
    for (v, label) in &axis.ticks {
        let xx = x(*v);
        out += &format!(
            "<line x1=\"{xx:.1}\" y1=\"{top}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"{}\"/>\n<text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            height - 25.0,
            if *v == axis.origin { "#000" } else { "#ddd" },
            height - 10.0,
            escape(label)
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        out += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            label_w - 6.0,
            y + row_h / 2.0 + 3.0,
            escape(&r.label)
        );
        for (k, b) in r.bars.iter().enumerate() {
            let by = y + 3.0 + bar_h * k as f64;
            let (x0, x1) = (x(axis.origin), x(b.value));
            if !b.value.is_nan() {
                out += &format!(
                    "<rect x=\"{:.1}\" y=\"{by:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>\n",
                    x0.min(x1),
                    (x1 - x0).abs().max(1.0),
                    bar_h - 1.0,
                    b.color
                );
            }
            out += &format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"{}\">{}</text>\n",
                x0.max(x1) + 4.0,
                by + bar_h - 2.0,
                if per_row == 1 { 11 } else { 9 },
                escape(&b.text)
            );
        }
    }
    out += "</svg>\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_leaves_nothing_behind_on_failure() {
        let dir = std::env::temp_dir().join(format!("kiln_report_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("a.svg");
        write_atomic(&ok, b"<svg/>").unwrap();
        assert_eq!(std::fs::read(&ok).unwrap(), b"<svg/>");
        // Renaming onto a directory fails after the temporary file was written.
        let sub = dir.join("sub");
        std::fs::create_dir_all(sub.join("x")).unwrap();
        let e = write_atomic(&sub, b"x").unwrap_err();
        assert!(format!("{e:#}").starts_with("cannot write "), "{e:#}");
        let mut left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["a.svg", "sub"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn chart_places_bars_on_the_axis_and_escapes_labels() {
        let axis = Axis {
            lo: 0.0,
            hi: 10.0,
            log2: false,
            origin: 0.0,
            ticks: vec![(0.0, "0".into()), (10.0, "10".into())],
        };
        let rows = [Row {
            label: "a<b".into(),
            bars: vec![
                Bar {
                    value: 5.0,
                    color: "#123456",
                    text: "5".into(),
                },
                Bar {
                    value: f64::NAN,
                    color: "#654321",
                    text: "-".into(),
                },
            ],
        }];
        let s = hbar_chart("t & u", &axis, &rows);
        assert!(s.contains("a&lt;b") && s.contains("t &amp; u"), "{s}");
        // Half of the 420-pixel axis; the NaN bar draws no rectangle.
        assert!(s.contains("width=\"210.0\""), "{s}");
        assert_eq!(s.matches("<rect").count(), 1, "{s}");
    }
}
