//! Horizontal bar charts as SVG, written next to the results so that
//! docs/benchmarks.md shows the ratios at a glance. No dependency: a chart
//! is a few rectangles and labels.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

/// One bar: its label, its value, and whether it is netfs's (drawn dark).
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub netfs: bool,
}

const WIDTH: f64 = 720.0;
const LABEL: f64 = 330.0;
const ROW: f64 = 26.0;
const TOP: f64 = 40.0;

/// Writes `bars` as a chart titled `title`, values in `unit`.
pub fn write(path: &Path, title: &str, unit: &str, bars: &[Bar]) -> Result<()> {
    let max = bars
        .iter()
        .map(|b| b.value)
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let height = TOP + ROW * bars.len() as f64 + 16.0;
    let span = WIDTH - LABEL - 90.0;
    let mut s = String::new();
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="13">"#
    )?;
    writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#)?;
    writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    )?;
    for (i, bar) in bars.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let w = (bar.value / max * span).max(1.0);
        let fill = if bar.netfs { "#1f5f9f" } else { "#9bb7d4" };
        writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LABEL - 8.0,
            y + 15.0,
            escape(&bar.label)
        )?;
        writeln!(
            s,
            r#"<rect x="{LABEL}" y="{}" width="{w:.1}" height="{}" fill="{fill}"/>"#,
            y + 3.0,
            ROW - 8.0
        )?;
        writeln!(
            s,
            r#"<text x="{:.1}" y="{}">{} {}</text>"#,
            LABEL + w + 6.0,
            y + 15.0,
            figure(bar.value),
            escape(unit)
        )?;
    }
    s.push_str("</svg>\n");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, s)?;
    Ok(())
}

fn figure(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest() {
        let dir = std::env::temp_dir().join(format!("chart-test-{}", std::process::id()));
        let path = dir.join("c.svg");
        let bars = [
            Bar {
                label: "netfs <shared>".into(),
                value: 10.0,
                netfs: true,
            },
            Bar {
                label: "bare".into(),
                value: 40.0,
                netfs: false,
            },
        ];
        write(&path, "t", "ms", &bars).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("netfs &lt;shared&gt;"));
        assert!(svg.contains(r#"width="300.0""#), "{svg}");
        assert!(svg.contains(r#"width="75.0""#), "{svg}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
