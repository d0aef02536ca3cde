//! `dropscope top`: the live view of a capture (or of a file replayed at its own pace).
//!
//! The capture runs as `capture` runs it (same sources, filters, selectors, and `-w`), with
//! a [`LiveTap`] that the decode stage and the kernel table thread feed. A view thread takes
//! the tap's counts once a refresh into its [`View`] and draws it: full screen with ratatui
//! on a terminal, or one plain block per refresh when standard output is not a terminal
//! (`--plain` forces that). The terminal is restored on every way out: `q`, Ctrl-C (a key in
//! raw mode), SIGINT/SIGTERM/SIGHUP (the interrupt flag), an error, and a panic (the hook
//! restores it before the message is printed).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use engine::event::ReasonKey;
use engine::live::{Frame, FrameOptions, LiveTap, SortBy, View};
use engine::lookup::Names;
use engine::pipeline::Progress;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};

use crate::args::{CaptureArgs, ReplayArgs};

pub const TOP_EXAMPLES: &str = "\
Keys: q quit (also Esc, Ctrl-C)   s sort by packets / rate / bytes   p pause   r next reason
      a all reasons

Examples:
  dropscope top                               every kernel drop, live
  dropscope top --source kernel,cilium        kernel and Cilium drops together
  dropscope top --exemplars 0 'udp port 53'   counts only, in the kernel, of DNS drops
  dropscope top --namespace shop -w shop.pcapng
                                              one namespace's drops, written as they come
  dropscope top -r storm.pcapng               a file at the pace it was captured
  dropscope top -r storm.pcapng --speed 0 --plain
                                              as fast as it reads, plain text";

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Replay FILE (any input `dropscope replay` reads) at the pace of its timestamps instead
    /// of capturing.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub read: Option<PathBuf>,
    /// With -r: play the file this many times faster than it was captured; 0: as fast as it
    /// reads.
    #[arg(
        long,
        default_value_t = 1.0,
        value_name = "X",
        allow_hyphen_values = true
    )]
    pub speed: f64,
    /// With -r: the input format, instead of detecting it (as `replay --input-format`).
    #[arg(long = "input-format", value_name = "FORMAT", value_parser = crate::args::input_format_arg)]
    pub input_format: Option<engine::sources::InputFormat>,
    /// Lines in each table.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub rows: usize,
    /// Milliseconds between refreshes.
    #[arg(long = "interval", default_value_t = 1000, value_name = "MS")]
    pub interval_ms: u64,
    /// One plain text block per refresh, also on a terminal (the default when standard
    /// output is not a terminal).
    #[arg(long)]
    pub plain: bool,
    /// Flow rows the view keeps; when full, the lightest tenth is folded into per-reason
    /// totals (said on the loss line).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub view_rows: usize,
    #[command(flatten)]
    pub capture: CaptureArgs,
}

pub fn top(mut t: TopArgs) -> Result<i32> {
    let o = &t.capture.out;
    if o.json || o.print {
        bail!("top draws its own view on standard output: leave out --json/--print (use `dropscope capture` for lines)");
    }
    if o.stats_json.is_some() {
        bail!("top keeps no run summary: leave out --stats-json (use `dropscope capture --stats-json FILE`)");
    }
    if t.capture.remote.is_some() {
        bail!("top watches this node: leave out --remote (`dropscope serve` answers /api/v1/flows for a remote view)");
    }
    if !(t.speed.is_finite() && t.speed >= 0.0) {
        bail!(
            "--speed {} is not a factor of at least 0 (1: as captured, 0: as fast as it reads)",
            t.speed
        );
    }
    if t.rows == 0 || t.interval_ms == 0 {
        bail!("--rows and --interval take numbers of at least 1");
    }
    t.capture.out.validate()?;
    t.capture.out.quiet = true;
    let tap = LiveTap::new();
    let (p, label) = match &t.read {
        Some(file) => {
            let c = &t.capture;
            let r = ReplayArgs {
                file: file.clone(),
                input_format: t.input_format,
                synthesize: false,
                cilium_release: Some(c.cilium_release),
                types: c.types.clone(),
                out: c.out.clone(),
                select: c.select.clone(),
                expression: c.expression.clone(),
            };
            let mut p = crate::prepare_replay(&r, Some(tap.clone()))?;
            if t.speed > 0.0 {
                p.source = engine::sources::paced(p.source, t.speed);
            }
            (p, file.display().to_string())
        }
        None => {
            let (p, kinds) = crate::prepare_capture(&t.capture, Some(tap.clone()))?;
            (p, crate::sources_label(&kinds))
        }
    };
    let crate::Prepared {
        names,
        source,
        sink,
        interrupt,
        cfg,
        ..
    } = p;
    let tty = std::io::stdout().is_terminal() && !t.plain;
    let finished = AtomicBool::new(false);
    let ui = Ui {
        tap: &tap,
        names: &names,
        interrupt: &interrupt,
        finished: &finished,
        interval: Duration::from_millis(t.interval_ms),
        view_rows: t.view_rows,
        rows: t.rows,
        label,
    };
    let (run, last) = std::thread::scope(|s| {
        let view = s.spawn(|| if tty { ui.terminal() } else { ui.plain() });
        let run = engine::pipeline::run(
            &cfg,
            source,
            sink,
            &names,
            &interrupt,
            &Progress::default(),
            |_, _| {},
        );
        finished.store(true, Ordering::Release);
        let last = view
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the view thread panicked")));
        (run, last)
    });
    let report = run?;
    let last = last?;
    // The last frame stays on the terminal (in plain mode it was the last block printed).
    if tty {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(last.text().as_bytes());
        let _ = out.flush();
    }
    if let Some(f) = &report.sinks.file {
        eprintln!("dropscope: {} packets written to {}", f.packets, f.path);
    }
    Ok(0)
}

struct Ui<'a> {
    tap: &'a LiveTap,
    names: &'a Names,
    interrupt: &'a AtomicBool,
    finished: &'a AtomicBool,
    interval: Duration,
    view_rows: usize,
    rows: usize,
    label: String,
}

/// What the keys set.
struct Keys {
    sort: SortBy,
    reason: Option<ReasonKey>,
    paused: bool,
}

impl Ui<'_> {
    fn options(&self, k: &Keys, finished: bool) -> FrameOptions {
        FrameOptions {
            rows: self.rows,
            sort: k.sort,
            reason: k.reason,
            paused: k.paused,
            finished,
            kernel_table: self.tap.kernel_from_table(),
            gauges: self.tap.gauges(),
            source: self.label.clone(),
        }
    }

    /// One block per refresh on standard output; the last once the run has ended.
    fn plain(&self) -> Result<Frame> {
        let keys = Keys {
            sort: SortBy::Packets,
            reason: None,
            paused: false,
        };
        let mut view = View::new(self.view_rows);
        let mut last = Instant::now();
        let mut out = std::io::stdout();
        loop {
            let done = self.finished.load(Ordering::Acquire);
            if done || last.elapsed() >= self.interval {
                if done {
                    view.last_tick(self.tap.take(), last.elapsed());
                } else {
                    view.tick(self.tap.take(), last.elapsed());
                }
                last = Instant::now();
                let f = view.frame(self.names, &self.options(&keys, done));
                // A reader that went away (`| head`) ends the run, as capture's lines do.
                if writeln!(out, "{}", f.text())
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    self.interrupt.store(true, Ordering::Relaxed);
                }
                if done {
                    return Ok(f);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The full-screen view until `q` (or a signal, or the end of a capture that was
    /// interrupted); after the input ends it stays up, marked finished, until `q`.
    fn terminal(&self) -> Result<Frame> {
        let _guard = TerminalGuard::enter()?;
        let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
        let mut term = ratatui::Terminal::new(backend)?;
        term.clear()?;
        let mut keys = Keys {
            sort: SortBy::Packets,
            reason: None,
            paused: false,
        };
        let mut view = View::new(self.view_rows);
        let mut last = Instant::now();
        let mut frame = view.frame(self.names, &self.options(&keys, false));
        let mut seen_finish = false;
        let mut redraw = true;
        // Keys are read on a thread of their own, so this loop never waits inside the
        // terminal library: a terminal that hung up (its pty closed) must not keep it from
        // seeing the run end. The reader ends with the process.
        let (keys_tx, keys_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("dropscope-keys".into())
            .spawn(move || {
                while let Ok(ev) = event::read() {
                    if keys_tx.send(ev).is_err() {
                        break;
                    }
                }
            })?;
        loop {
            let done = self.finished.load(Ordering::Acquire);
            if done && !seen_finish {
                view.last_tick(self.tap.take(), last.elapsed());
                last = Instant::now();
                seen_finish = true;
                redraw = true;
            } else if !done && !keys.paused && last.elapsed() >= self.interval {
                view.tick(self.tap.take(), last.elapsed());
                last = Instant::now();
                redraw = true;
            }
            if done && self.interrupt.load(Ordering::Relaxed) {
                // Stopped by `q` or a signal: the last counts are in.
                frame = view.frame(self.names, &self.options(&keys, true));
                return Ok(frame);
            }
            if redraw {
                if !keys.paused || frame.total == 0 {
                    frame = view.frame(self.names, &self.options(&keys, done));
                } else {
                    frame.paused = true;
                }
                term.draw(|f| draw(f, &frame))?;
                redraw = false;
            }
            // Keys wake it at once; else the next refresh, or 100 ms to see the run end.
            let next = self.interval.saturating_sub(last.elapsed());
            let ev = match keys_rx
                .recv_timeout(next.clamp(Duration::from_millis(1), Duration::from_millis(100)))
            {
                Ok(ev) => ev,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                // The terminal is gone (hung up): the run ends as on SIGHUP.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    self.interrupt.store(true, Ordering::Relaxed);
                    if done {
                        return Ok(view.frame(self.names, &self.options(&keys, true)));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            match ev {
                TermEvent::Key(k) if k.kind != KeyEventKind::Release => match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => {
                        self.interrupt.store(true, Ordering::Relaxed)
                    }
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        self.interrupt.store(true, Ordering::Relaxed)
                    }
                    KeyCode::Char('s') => {
                        keys.sort = keys.sort.next();
                        frame = view.frame(self.names, &self.options(&keys, done));
                        redraw = true;
                    }
                    KeyCode::Char('p') => {
                        keys.paused = !keys.paused;
                        frame = view.frame(self.names, &self.options(&keys, done));
                        redraw = true;
                    }
                    KeyCode::Char('r') => {
                        let all = view.reasons_by_weight();
                        keys.reason =
                            match keys.reason.and_then(|r| all.iter().position(|x| *x == r)) {
                                Some(i) => all.get(i + 1).copied(),
                                None => all.first().copied(),
                            };
                        frame = view.frame(self.names, &self.options(&keys, done));
                        redraw = true;
                    }
                    KeyCode::Char('a') => {
                        keys.reason = None;
                        frame = view.frame(self.names, &self.options(&keys, done));
                        redraw = true;
                    }
                    _ => {}
                },
                TermEvent::Resize(..) => redraw = true,
                _ => {}
            }
            if self.interrupt.load(Ordering::Relaxed) && done {
                frame = view.frame(self.names, &self.options(&keys, true));
                return Ok(frame);
            }
        }
    }
}

/// Raw mode and the alternate screen while it lives; restored when dropped and by the panic
/// hook.
struct TerminalGuard;

fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

impl TerminalGuard {
    fn enter() -> Result<TerminalGuard> {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_terminal();
                previous(info);
            }));
        });
        terminal::enable_raw_mode()?;
        let guard = TerminalGuard;
        crossterm::execute!(
            std::io::stdout(),
            EnterAlternateScreen,
            crossterm::cursor::Hide
        )?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn draw(f: &mut ratatui::Frame<'_>, fr: &Frame) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let nr = fr.reasons.len().clamp(1, 12) as u16;
    let nf = fr.flows.len().max(1) as u16;
    let [head, reasons, flows, bottom, loss, help] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(nr + 3),
        Constraint::Min(nf.min(4) + 3),
        Constraint::Length(fr.locations.len().max(fr.places.len()).clamp(1, 10) as u16 + 3),
        Constraint::Length(2),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(
        Paragraph::new(vec![
            Line::styled(fr.header(), bold),
            Line::raw(fr.counts_line()),
        ]),
        head,
    );
    let num = |n: u64| n.to_string();
    let rate = |r: f64| format!("{r:.0}");
    let hist_w = reasons.width.saturating_sub(60).clamp(8, 60) as usize;
    let rows = fr.reasons.iter().map(|r| {
        Row::new(vec![
            r.reason.clone(),
            r.origin.to_string(),
            num(r.total),
            rate(r.per_s),
            engine::live::sparkline(&r.history, hist_w),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(24),
                Constraint::Length(7),
                Constraint::Length(12),
                Constraint::Length(10),
                Constraint::Length(hist_w as u16),
            ],
        )
        .header(Row::new(["REASON", "ORIGIN", "DROPS", "/S", "HISTORY"]).style(bold))
        .block(Block::bordered().title(" drops per reason ")),
        reasons,
    );
    let rows = fr.flows.iter().map(|x| {
        let mut place = x.place.clone();
        if let Some(i) = &x.identities {
            place.push_str(&format!("  identity {i}"));
        }
        if !x.pod.is_empty() {
            place.push_str("  ");
            place.push_str(&x.pod);
        }
        Row::new(vec![
            num(x.packets),
            rate(x.per_s),
            num(x.bytes),
            x.reason.clone(),
            x.flow.clone(),
            place,
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(12),
                Constraint::Length(9),
                Constraint::Length(12),
                Constraint::Length(22),
                Constraint::Min(30),
                Constraint::Min(20),
            ],
        )
        .header(Row::new(["DROPS", "/S", "BYTES", "REASON", "FLOW", "WHERE"]).style(bold))
        .block(Block::bordered().title(format!(" flows x reason (sort: {}) ", fr.sort.as_str()))),
        flows,
    );
    let [locs, places] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    for (area, title, items) in [
        (locs, " drop locations ", &fr.locations),
        (places, " namespaces / interfaces ", &fr.places),
    ] {
        let rows = items
            .iter()
            .map(|c| Row::new(vec![num(c.packets), rate(c.per_s), c.label.clone()]));
        f.render_widget(
            Table::new(
                rows,
                [
                    Constraint::Length(12),
                    Constraint::Length(9),
                    Constraint::Min(10),
                ],
            )
            .header(Row::new(["DROPS", "/S", "WHERE"]).style(bold))
            .block(Block::bordered().title(title)),
            area,
        );
    }
    f.render_widget(
        Paragraph::new(fr.loss_line()).wrap(ratatui::widgets::Wrap { trim: true }),
        loss,
    );
    f.render_widget(
        Paragraph::new("q quit  s sort  p pause  r next reason  a all reasons"),
        help,
    );
}
