//! The results table: one line per figure, a value per run for netfs and
//! for the peer, medians across runs, the ratio netfs ÷ peer, and whether
//! the target for this machine is met. Rendered as Markdown.

use std::fmt::Write as _;

use crate::stats::median;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Ms,
    Secs,
    PerSec,
    Mib,
    MibPerSec,
    Count,
}

/// A target for this machine.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// netfs ÷ peer at most this.
    RatioAtMost(f64),
    /// netfs ÷ peer at least this.
    RatioAtLeast(f64),
    /// netfs at most this, in the line's unit.
    AtMost(f64),
}

struct Line {
    part: u8,
    what: String,
    /// The server it was measured against, when a part runs against both.
    server: Option<&'static str>,
    unit: Unit,
    peer: String,
    netfs: Vec<f64>,
    peer_values: Vec<f64>,
    /// Said instead of a figure when the peer gave none.
    peer_notes: Vec<String>,
    goal: Option<(Goal, String)>,
}

impl Line {
    fn netfs(&self) -> Option<f64> {
        (!self.netfs.is_empty()).then(|| median(&self.netfs))
    }

    fn peer(&self) -> Option<f64> {
        (!self.peer_values.is_empty()).then(|| median(&self.peer_values))
    }

    fn ratio(&self) -> Option<f64> {
        Some(self.netfs()? / self.peer()?)
    }

    fn met(&self) -> Option<bool> {
        let (goal, _) = self.goal.as_ref()?;
        Some(match *goal {
            Goal::RatioAtMost(x) => self.ratio()? <= x,
            Goal::RatioAtLeast(x) => self.ratio()? >= x,
            Goal::AtMost(x) => self.netfs()? <= x,
        })
    }
}

#[derive(Default)]
pub struct Report {
    lines: Vec<Line>,
    /// Stamped on the figures added from now on (see [`Report::against`]).
    server: Option<&'static str>,
}

/// One figure of one run.
#[derive(Clone)]
pub struct Figure<'a> {
    pub part: u8,
    pub what: String,
    pub unit: Unit,
    pub netfs: Option<f64>,
    pub peer: &'a str,
    pub peer_value: Option<f64>,
    /// Why there is no peer figure, when there is none.
    pub peer_note: Option<String>,
    pub goal: Option<(Goal, &'a str)>,
}

impl Report {
    /// The figures added from now on were measured against `server`
    /// (None: the one server of the whole run). The table shows the lines
    /// of one measurement against each server next to each other.
    pub fn against(&mut self, server: Option<&'static str>) {
        self.server = server;
    }

    /// Adds a run's figure; figures with the same part, text, peer and
    /// server are one line of the table.
    pub fn add(&mut self, f: Figure<'_>) {
        let server = self.server;
        let pos = self.lines.iter().position(|l| {
            l.part == f.part && l.what == f.what && l.peer == f.peer && l.server == server
        });
        let line = match pos {
            Some(i) => &mut self.lines[i],
            None => {
                self.lines.push(Line {
                    part: f.part,
                    what: f.what,
                    server,
                    unit: f.unit,
                    peer: f.peer.to_owned(),
                    netfs: Vec::new(),
                    peer_values: Vec::new(),
                    peer_notes: Vec::new(),
                    goal: f.goal.map(|(g, t)| (g, t.to_owned())),
                });
                self.lines.last_mut().expect("just pushed")
            }
        };
        line.netfs.extend(f.netfs);
        line.peer_values.extend(f.peer_value);
        line.peer_notes.extend(f.peer_note);
    }

    /// The Markdown table; `runs` says how many values a median is over.
    pub fn table(&self, runs: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| # | measurement | netfs | peer | peer's figure | netfs ÷ peer | target | met |"
        );
        let _ = writeln!(out, "|---|---|---:|---|---:|---:|---|---|");
        for l in self.in_order() {
            let count = |v: &[f64]| {
                if runs && v.len() > 1 {
                    format!(" <sub>({} runs)</sub>", v.len())
                } else {
                    String::new()
                }
            };
            let netfs = l.netfs().map_or("—".to_owned(), |v| {
                format!("{}{}", value(v, l.unit), count(&l.netfs))
            });
            let peer = match (l.peer(), l.peer_notes.first()) {
                (Some(v), _) => format!("{}{}", value(v, l.unit), count(&l.peer_values)),
                (None, Some(note)) => note.clone(),
                (None, None) => "—".to_owned(),
            };
            let ratio = l.ratio().map_or("—".to_owned(), ratio);
            let (target, met) = match (&l.goal, l.met()) {
                (Some((_, text)), Some(true)) => (text.clone(), "yes"),
                (Some((_, text)), Some(false)) => (text.clone(), "**no**"),
                (Some((_, text)), None) => (text.clone(), "—"),
                (None, _) => (String::new(), ""),
            };
            let what = match l.server {
                Some(server) => format!("{} — *{server}*", l.what),
                None => l.what.clone(),
            };
            let _ = writeln!(
                out,
                "| {} | {what} | {netfs} | {} | {peer} | {ratio} | {target} | {met} |",
                l.part, l.peer
            );
        }
        out
    }

    /// The lines in the order first measured, those of one measurement
    /// against several servers together.
    fn in_order(&self) -> Vec<&Line> {
        let mut out: Vec<&Line> = Vec::with_capacity(self.lines.len());
        for (i, l) in self.lines.iter().enumerate() {
            if out.iter().any(|o| std::ptr::eq(*o, l)) {
                continue;
            }
            out.push(l);
            out.extend(
                self.lines[i + 1..]
                    .iter()
                    .filter(|o| o.part == l.part && o.what == l.what && o.peer == l.peer),
            );
        }
        out
    }

    /// Lines whose target is missed, for the summary.
    pub fn misses(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter(|l| l.met() == Some(false))
            .map(|l| match l.server {
                Some(server) => format!("{} {} against {server} ({})", l.part, l.what, l.peer),
                None => format!("{} {} ({})", l.part, l.what, l.peer),
            })
            .collect()
    }
}

/// A figure with three significant digits and its unit.
pub fn value(v: f64, unit: Unit) -> String {
    let n = sig3(v);
    match unit {
        Unit::Ms => format!("{n} ms"),
        Unit::Secs => format!("{n} s"),
        Unit::PerSec => format!("{:.0} /s", v),
        Unit::Mib => format!("{n} MiB"),
        Unit::MibPerSec => format!("{n} MiB/s"),
        Unit::Count => format!("{v:.0}"),
    }
}

fn ratio(r: f64) -> String {
    format!("{}×", sig3(r))
}

fn sig3(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.1 {
        format!("{v:.3}")
    } else if a >= 0.01 {
        format!("{v:.4}")
    } else {
        format!("{v:.5}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_ratio_and_target() {
        let mut r = Report::default();
        for (n, p) in [(1.0, 300.0), (2.0, 320.0), (3.0, 310.0)] {
            r.add(Figure {
                part: 1,
                what: "Create p50".into(),
                unit: Unit::Ms,
                netfs: Some(n),
                peer: "rclone",
                peer_value: Some(p),
                peer_note: None,
                goal: Some((Goal::RatioAtMost(0.01), "≥ 100× faster")),
            });
        }
        let t = r.table(true);
        assert!(
            t.contains("| 1 | Create p50 | 2.00 ms <sub>(3 runs)</sub> | rclone | 310 ms"),
            "{t}"
        );
        assert!(t.contains("0.00645×"), "{t}");
        assert!(t.contains("| yes |"), "{t}");
        assert!(r.misses().is_empty());
    }

    #[test]
    fn one_measurement_against_two_servers_side_by_side() {
        let mut r = Report::default();
        let f = |what: &str, v: f64| Figure {
            part: 6,
            what: what.into(),
            unit: Unit::Secs,
            netfs: Some(v),
            peer: "none",
            peer_value: None,
            peer_note: None,
            goal: Some((Goal::AtMost(1.5), "≤ 1.5 s")),
        };
        r.against(Some("A"));
        r.add(f("restore", 1.0));
        r.add(f("logins", 10.0));
        r.against(Some("B"));
        r.add(f("restore", 2.0));
        r.add(f("logins", 10.0));
        let t = r.table(false);
        let rows: Vec<&str> = t.lines().skip(2).collect();
        assert!(rows[0].starts_with("| 6 | restore — *A* | 1.00 s"), "{t}");
        assert!(rows[1].starts_with("| 6 | restore — *B* | 2.00 s"), "{t}");
        assert!(rows[2].contains("logins — *A*"), "{t}");
        assert_eq!(
            r.misses(),
            [
                "6 logins against A (none)",
                "6 restore against B (none)",
                "6 logins against B (none)"
            ]
        );
    }

    #[test]
    fn significant_digits() {
        assert_eq!(value(0.1234, Unit::Ms), "0.123 ms");
        assert_eq!(value(12.345, Unit::Mib), "12.3 MiB");
        assert_eq!(value(1234.7, Unit::PerSec), "1235 /s");
        assert_eq!(ratio(1.046), "1.05×");
    }
}
