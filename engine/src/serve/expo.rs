//! The metrics exposition: Prometheus' text format (version 0.0.4) and OpenMetrics 1.0.
//!
//! `dropscope serve` keeps its counts where they are made (the kernel's per-reason counters,
//! the drained flow-table generations, the dispatch thread's Cilium counts) and renders a
//! snapshot of them on each scrape, collector style: the label sets come and go with the
//! data and with the series bound (`--metrics-max-series`), so there is no registry of
//! metric handles. This module writes that snapshot in either format; the two differ in
//! how a counter is named on its `# TYPE` line, in the content type, and in OpenMetrics'
//! closing `# EOF`.
//!
//! Must never: write a label value or help text unescaped (a reason or interface name is
//! data), or a counter without its `_total` suffix on the sample lines.

use std::fmt::Write as _;

/// Which exposition format a scraper asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` (with a q-value above 0), else the text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(a) = accept else {
            return Format::Text;
        };
        for part in a.split(',') {
            let mut it = part.split(';').map(str::trim);
            if it.next() != Some("application/openmetrics-text") {
                continue;
            }
            let zero = it.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if !zero {
                return Format::OpenMetrics;
            }
        }
        Format::Text
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family: its base name (a counter's without `_total`), help, kind, samples.
#[derive(Clone, Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample with these labels.
    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }

    /// Adds an integer sample.
    pub fn count(&mut self, labels: Vec<(&'static str, String)>, value: u64) {
        self.samples.push((labels, value as f64));
    }
}

fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 9.0e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Writes every family (families without samples are left out) in `format`.
pub fn render(families: &[Family], format: Format) -> String {
    let mut out = String::with_capacity(4096);
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let sample_name = match f.kind {
            Kind::Counter => format!("{}_total", f.name),
            Kind::Gauge => f.name.to_string(),
        };
        let type_name = match (format, f.kind) {
            (Format::OpenMetrics, _) => f.name,
            (Format::Text, _) => sample_name.as_str(),
        };
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = write!(out, "# HELP {type_name} ");
        escape_help(&mut out, f.help);
        let _ = writeln!(out, "\n# TYPE {type_name} {kind}");
        for (labels, v) in &f.samples {
            out.push_str(&sample_name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, val)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"");
                    escape_label(&mut out, val);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            write_value(&mut out, *v);
            out.push('\n');
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_picks_openmetrics_only_when_asked() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0, text/plain")),
            Format::Text
        );
    }

    #[test]
    fn both_formats_name_counters_and_escape_labels() {
        let mut c = Family::new("dropscope_drops", Kind::Counter, "Drops.\nAll of them.");
        c.count(vec![("reason", "a\"b\\c\nd".into())], 7);
        let mut g = Family::new("dropscope_ring_fill_ratio", Kind::Gauge, "Fill.");
        g.push(vec![("cpu", "0".into())], 0.25);
        let empty = Family::new("dropscope_nothing", Kind::Gauge, "x");
        let fams = [c, g, empty];
        let text = render(&fams, Format::Text);
        assert_eq!(
            text,
            "# HELP dropscope_drops_total Drops.\\nAll of them.\n# TYPE dropscope_drops_total counter\n\
             dropscope_drops_total{reason=\"a\\\"b\\\\c\\nd\"} 7\n\
             # HELP dropscope_ring_fill_ratio Fill.\n# TYPE dropscope_ring_fill_ratio gauge\n\
             dropscope_ring_fill_ratio{cpu=\"0\"} 0.25\n"
        );
        let om = render(&fams, Format::OpenMetrics);
        assert!(om.contains("# TYPE dropscope_drops counter\ndropscope_drops_total{"));
        assert!(om.ends_with("# EOF\n"));
    }
}
