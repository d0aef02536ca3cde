//! `dropscope report INPUT -o report.html [--svg DIR]`: a stats document, or a capture file
//! replayed into one, drawn as one self-contained HTML page (engine::viz).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context as _, Result};
use clap::Args;

use engine::facts::RunFacts;
use engine::viz::model::Model;

const REPORT_EXAMPLES: &str = "\
Examples:
  dropscope capture --duration 30 -q --stats-json storm.json
  dropscope report storm.json -o storm.html          open storm.html in any browser, offline
  dropscope report drops.pcapng -o drops.html --svg plots/
                                             a capture file is replayed first (as
                                             `dropscope replay FILE --stats-json`); each
                                             plot is also written as plots/NAME.svg";

#[derive(Args, Debug)]
#[command(after_help = REPORT_EXAMPLES)]
pub struct ReportArgs {
    /// A stats document (`--stats-json` of capture or replay), or any file `dropscope
    /// replay` reads (pcap, pcapng, Cilium streams and text), which is replayed first.
    pub input: PathBuf,
    /// The HTML file to write (one file: inline SVG and CSS, no script, nothing external).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Also write each plot as its own SVG file in DIR (created if missing).
    #[arg(long, value_name = "DIR")]
    pub svg: Option<PathBuf>,
    /// What INPUT is: stats (a --stats-json document) or capture (replayed); default: told
    /// apart by the content (a stats document is pretty-printed JSON).
    #[arg(long = "input-format", value_name = "stats|capture")]
    pub input_format: Option<String>,
}

/// The facts of a run from its selectors and expression words, for the stats document.
pub fn run_facts(
    command: &str,
    input: String,
    sel: &crate::args::SelectArgs,
    words: &[String],
    extra: &[(&str, &[String])],
) -> RunFacts {
    let mut f = RunFacts::here(command, input);
    let expr = words.join(" ");
    f.expression = if !expr.trim().is_empty() {
        Some(expr)
    } else {
        sel.filter_file
            .as_ref()
            .map(|p| format!("-F {}", p.display()))
    };
    let mut push = |flag: &str, v: &str| f.selectors.push(format!("{flag} {v}"));
    for r in &sel.reason {
        push("--reason", r);
    }
    for r in &sel.not_reason {
        push("--not-reason", r);
    }
    for i in &sel.interface {
        push("-i", i);
    }
    if let Some(n) = &sel.netns {
        push("--netns", n);
    }
    for i in &sel.identity {
        push("--identity", &i.to_string());
    }
    for i in &sel.from_identity {
        push("--from-identity", &i.to_string());
    }
    for i in &sel.to_identity {
        push("--to-identity", &i.to_string());
    }
    for (flag, vals) in extra {
        for v in *vals {
            push(flag, v);
        }
    }
    f
}

/// True when the file starts as a pretty-printed JSON object (`{` then a line break): a
/// stats document, not JSON lines (`{"...` on one line) nor a capture.
fn looks_like_stats(path: &Path) -> Result<bool> {
    let mut head = [0u8; 64];
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let n = f
        .read(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut it = head.iter().take(n).skip_while(|b| b.is_ascii_whitespace());
    Ok(it.next() == Some(&b'{') && it.find(|b| !matches!(b, b' ' | b'\t')) == Some(&b'\n'))
}

/// Replays a capture file and reads its stats document through a pipe (never whole in
/// memory).
fn model_of_capture(path: &Path) -> Result<Model> {
    use engine::pipeline::{PipelineConfig, Progress};
    let names = engine::lookup::Names::load(true);
    let source = engine::sources::file(path, None, Default::default(), 0xff, 1 << 20)?;
    let sink = engine::sink::OutputSink::new(
        None,
        engine::sink::PrintMode::None,
        Box::new(std::io::sink()),
    );
    let stop = AtomicBool::new(false);
    let progress = Progress::default();
    let mut report = engine::pipeline::run(
        &PipelineConfig {
            channel_depth: 4,
            ..PipelineConfig::default()
        },
        source,
        sink,
        &names,
        &stop,
        &progress,
        |_, _| {},
    )?;
    report.facts = RunFacts::here("replay", path.display().to_string());
    report.flows.sort_top_by_packets(usize::MAX);
    let (reader, writer) = std::io::pipe().context("making a pipe")?;
    let model = std::thread::scope(|s| {
        let w = s.spawn(|| {
            let mut w = std::io::BufWriter::with_capacity(1 << 18, writer);
            engine::report::write_stats_json(&mut w, &names, &report, Default::default())
                .and_then(|()| std::io::Write::flush(&mut w))
        });
        let m = Model::read(std::io::BufReader::with_capacity(1 << 18, reader));
        let written = w.join();
        (m, written)
    });
    match model {
        (Ok(m), Ok(Ok(()))) => Ok(m),
        (Err(e), _) => bail!("reading the replay's stats: {e}"),
        (_, Ok(Err(e))) => bail!("writing the replay's stats: {e}"),
        (_, Err(_)) => bail!("the stats writer panicked"),
    }
}

pub fn report(a: ReportArgs) -> Result<i32> {
    let stats = match a.input_format.as_deref() {
        Some("stats") => true,
        Some("capture") => false,
        Some(other) => bail!("--input-format {other}: give stats or capture"),
        None => looks_like_stats(&a.input)?,
    };
    engine::atomic::check_writable(&a.output)?;
    let model = if stats {
        let f = std::fs::File::open(&a.input)
            .with_context(|| format!("cannot open {}", a.input.display()))?;
        Model::read(f).map_err(|e| anyhow::anyhow!("{}: {e}", a.input.display()))?
    } else {
        model_of_capture(&a.input)?
    };
    let plots = engine::viz::plots(&model);
    let page = engine::viz::html(&model, &plots, &a.input.display().to_string());
    if let Some(dir) = &a.svg {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        for p in &plots {
            let path = dir.join(format!("{}.svg", p.stem));
            engine::atomic::write_atomically(&path, |w| {
                std::io::Write::write_all(w, p.svg.as_bytes())
            })
            .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    engine::atomic::write_atomically(&a.output, |w| std::io::Write::write_all(w, page.as_bytes()))
        .with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!(
        "dropscope: report written to {} ({} plots, {} flow rows read{})",
        a.output.display(),
        plots.len(),
        model.flow_rows,
        a.svg
            .as_ref()
            .map(|d| format!("; SVGs in {}", d.display()))
            .unwrap_or_default()
    );
    Ok(0)
}
