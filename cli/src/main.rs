//! `dropscope`: capture and analyse packet drops on a Linux node.
//!
//! The binary is thin: arguments are parsed (clap), validated into an engine configuration,
//! and handed to `engine`. `main` owns exit codes: 0 on success, 2 on any error (one line on
//! stderr), and a closed stdout pipe is not an error.

mod args;
mod remote;
mod report_cmd;
mod serve;
mod top;

/// mimalloc: per-thread heaps. The pipeline allocates in one thread (sources: packet
/// buffers, decoded text records) and frees in another (sink); glibc's allocator serialises
/// those on its arena locks (seen in profiles of text replays as futex waits).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off from the moment the program is loaded, before the runtime's
/// first allocation (`DROPSCOPE_THP=1` keeps them): see [`engine::memory`].
#[used]
#[link_section = ".init_array"]
static NO_HUGE_PAGES: extern "C" fn() = engine::memory::no_huge_pages_unless_asked;

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Parser as _;

use args::{Cli, Command, OutputArgs, SelectArgs};
use engine::lookup::Names;
use engine::pipeline::{PipelineConfig, Progress, RunReport, SourceFn};
use engine::select::{Reasons, Selection};
use engine::sink::{OutputSink, PrintMode};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // One line: what is wrong, and where to look. A flag's bad value reads as the
            // flag, the value and why (`--type bogus is not a Cilium event type: use ...`).
            if let Some(line) = bad_value_line(&e) {
                eprintln!("dropscope: {line}");
                std::process::exit(2);
            }
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("dropscope: {first} (see dropscope --help)");
            std::process::exit(2);
        }
    };
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(if cli.verbose { "debug" } else { "warn" }),
    )
    .format_timestamp(None)
    .init();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dropscope: {}", error_line(&e));
            2
        }
    };
    std::process::exit(code);
}

/// `--flag VALUE why` for a value a flag's parser refused, `None` for other usage errors.
fn bad_value_line(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::ValueValidation {
        return None;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
    let why = std::error::Error::source(e)?.to_string();
    let flag = arg.split(' ').next().unwrap_or(arg);
    Some(format!("{flag} {value} {why}"))
}

/// The error and its causes on one line, each thing said once: a cause whose text the line
/// already holds (an `io::Error` that a message quoted) is left out.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Capture(c) => capture(c),
        Command::Replay(r) => replay(r),
        Command::Reasons(r) => reasons(r),
        Command::Doctor(d) => doctor(d),
        Command::Datapath(d) => datapath(d),
        Command::Serve(s) => serve::serve(s),
        Command::Top(t) => top::top(t),
        Command::Report(r) => report_cmd::report(r),
    }
}

pub(crate) fn install_interrupt() -> Result<Arc<AtomicBool>> {
    // Installed once per process; a later run in the same process (`--remote` summarising
    // the file it downloaded) starts with the flag cleared.
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    if let Some(flag) = FLAG.get() {
        flag.store(false, Ordering::SeqCst);
        return Ok(flag.clone());
    }
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            // Second Ctrl-C (or SIGTERM, SIGHUP): the user really wants out.
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")?;
    Ok(FLAG.get_or_init(|| flag).clone())
}

/// Opens the capture file (as a temporary file renamed at the end; with -C/-G a rotating
/// series of them, whose ledger is returned) and the printer. `stop` ends the run when
/// `-G` with `-W` has written its last file.
fn make_sink(
    o: &OutputArgs,
    snaplen: u32,
    stop: Option<Arc<AtomicBool>>,
) -> Result<(OutputSink, Option<engine::pcap::rotate::FileLedger>)> {
    let mut files = None;
    let writer = match &o.write {
        Some(path) => {
            let format = o.file_format(path);
            let options = engine::pcap::WriterOptions {
                mode: o.file_mode,
                ..Default::default()
            };
            let w: Box<dyn engine::pcap::PacketWriter> =
                if o.rotate_mb.is_some() || o.rotate_secs.is_some() {
                    let (w, ledger) = engine::pcap::rotate::RotatingWriter::create(
                        path,
                        format,
                        snaplen,
                        options,
                        engine::pcap::rotate::Rotation {
                            size_bytes: o.rotate_mb.map(|m| m.saturating_mul(1_000_000)),
                            seconds: o.rotate_secs,
                            files: o.rotate_files,
                        },
                        stop,
                    )?;
                    files = Some(ledger);
                    Box::new(w)
                } else {
                    engine::pcap::create_with(path, format, snaplen, options)?
                };
            Some((w, path.display().to_string(), format.as_str().to_string()))
        }
        None => None,
    };
    let mode = if o.json {
        PrintMode::Json
    } else if o.quiet || (o.write.is_some() && !o.print) {
        PrintMode::None
    } else {
        PrintMode::Text
    };
    let out: Box<dyn std::io::Write + Send> = Box::new(std::io::BufWriter::with_capacity(
        1 << 16,
        std::io::stdout(),
    ));
    Ok((OutputSink::new(writer, mode, out), files))
}

fn pipeline_config(o: &OutputArgs) -> PipelineConfig {
    PipelineConfig {
        count: o.count,
        duration: o.duration.map(Duration::from_secs_f64),
        max_flows: o.max_flows,
        ..PipelineConfig::default()
    }
}

/// Progress on stderr: a line rewritten every second on a terminal, a line every 10 s
/// otherwise; nothing with -q.
fn progress_printer(quiet: bool) -> impl FnMut(&Progress, Duration) {
    let tty = std::io::stderr().is_terminal();
    let mut last_events = 0u64;
    let mut last_at = Duration::ZERO;
    let mut last_print = Duration::ZERO;
    move |p: &Progress, elapsed: Duration| {
        if quiet {
            return;
        }
        let every = if tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        if elapsed.saturating_sub(last_print) < every {
            return;
        }
        let ev = p.received.load(Ordering::Relaxed);
        let dt = (elapsed - last_at).as_secs_f64().max(1e-3);
        let rate = (ev - last_events) as f64 / dt;
        last_events = ev;
        last_at = elapsed;
        last_print = elapsed;
        let line = format!(
            "{} events, {:.0}/s, {} processed, {:.1} MB, {:.0}s",
            ev,
            rate,
            p.processed.load(Ordering::Relaxed),
            p.bytes.load(Ordering::Relaxed) as f64 / 1e6,
            elapsed.as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        if tty {
            let _ = write!(err, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(err, "progress: {line}");
        }
    }
}

fn finish(
    names: &Names,
    o: &OutputArgs,
    mut report: RunReport,
    files: Option<&engine::pcap::rotate::FileLedger>,
) -> Result<i32> {
    if std::io::stderr().is_terminal() && !o.quiet {
        eprint!("\r\x1b[K");
    }
    if let Some(p) = &o.stats_json {
        let rows = o.stats_flows.unwrap_or_default();
        // In place: a copy of a large table would double its memory.
        report.flows.sort_top_by_packets(rows.limit());
        engine::atomic::write_atomically(p, |w| {
            engine::report::write_stats_json(w, names, &report, rows)
        })
        .with_context(|| format!("writing {}", p.display()))?;
    }
    eprint!("{}", engine::report::summary_text(names, &report, o.top));
    if let Some(files) = files {
        let files = files.lock().unwrap_or_else(|e| e.into_inner());
        let kept = files.iter().filter(|f| !f.overwritten).count();
        let gone: u64 = files
            .iter()
            .filter(|f| f.overwritten)
            .map(|f| f.packets)
            .sum();
        eprintln!(
            "rotation: {} files written, {kept} kept, {} overwritten by the ring ({gone} packets)",
            files.len(),
            files.len() - kept
        );
        for f in files.iter() {
            eprintln!(
                "  {}: {} packets, {} bytes{}",
                f.path.display(),
                f.packets,
                f.bytes,
                if f.overwritten { " (overwritten)" } else { "" }
            );
        }
    }
    if let Some(f) = report.sinks.file.as_ref().filter(|f| f.disk_full.is_some()) {
        eprintln!(
            "dropscope: {} is incomplete: its file system is full; free space or write elsewhere (-w)",
            f.path
        );
        return Ok(2);
    }
    Ok(0)
}

/// Fails early when the `--stats-json` file cannot be written. A FIFO is not tried: opening
/// and closing it would end the reader's stream before the document is written (and the
/// open waits for a reader anyway).
fn check_stats_path(p: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt as _;
    if std::fs::metadata(p).is_ok_and(|m| m.file_type().is_fifo()) {
        return Ok(());
    }
    engine::atomic::check_writable(p)
}

/// `-v` count -> `cilium monitor` verbosity.
fn monitor_verbosity(v: u8) -> engine::cilium::format::Verbosity {
    use engine::cilium::format::Verbosity;
    match v {
        0 => Verbosity::Info,
        1 => Verbosity::Debug,
        _ => Verbosity::Verbose,
    }
}

/// The filter expression: the words after the flags, or the `-F` file's lines (`#` starts a
/// comment, as in tcpdump).
pub(crate) fn filter_text(a: &SelectArgs, words: &[String]) -> Result<String> {
    Ok(match &a.filter_file {
        Some(f) => {
            if !words.is_empty() {
                bail!(
                    "-F {} and expression words both given: use one",
                    f.display()
                );
            }
            let t = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the filter file {}", f.display()))?;
            // tcpdump -F: `#` starts a comment to the end of the line.
            t.lines()
                .map(|l| l.split('#').next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(" ")
        }
        None => words.join(" "),
    })
}

/// The selectors and the expression from the flags, checked (reason names resolved,
/// interface and namespace found, the expression compiled by libpcap) before anything is
/// loaded or created.
fn selection(a: &SelectArgs, words: &[String], names: &Names) -> Result<Selection> {
    let mut sel = Selection::default();
    let resolve = |items: &[String]| -> Result<Option<Reasons>> {
        if items.is_empty() {
            return Ok(None);
        }
        Reasons::resolve(items, &names.kernel_reasons)
            .map(Some)
            .map_err(|e| anyhow::anyhow!(e))
    };
    sel.only = resolve(&a.reason)?;
    sel.except = resolve(&a.not_reason)?;
    if a.interface.len() > 1 {
        bail!(
            "-i is given {} times: more than one interface needs `capture --packets`",
            a.interface.len()
        );
    }
    if let Some(i) = a.interface.first() {
        sel.ifindex = Some(match i.parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => {
                let c = std::ffi::CString::new(i.as_str())
                    .map_err(|_| anyhow::anyhow!("-i {i:?} is not an interface name"))?;
                // SAFETY: a valid NUL-terminated string.
                let n = unsafe { libc::if_nametoindex(c.as_ptr()) };
                if n == 0 {
                    bail!("-i {i}: no such interface in this network namespace (`ip link` lists them; give an ifindex for another namespace's)");
                }
                n
            }
        });
    }
    if let Some(ns) = &a.netns {
        sel.netns = Some(netns_inode(ns)?);
    }
    sel.identity = a.identity.clone();
    sel.from_identity = a.from_identity.clone();
    sel.to_identity = a.to_identity.clone();
    let text = filter_text(a, words)?;
    if !text.trim().is_empty() {
        let e =
            engine::filter::Expression::compile(text.trim()).map_err(|e| anyhow::anyhow!("{e}"))?;
        sel.expr = Some(Arc::new(e));
    }
    Ok(sel)
}

/// `--netns`: an inode number, a path (`/proc/PID/ns/net`), or a name under /var/run/netns.
fn netns_inode(ns: &str) -> Result<u32> {
    use std::os::unix::fs::MetadataExt as _;
    if let Ok(n) = ns.parse::<u32>() {
        return Ok(n);
    }
    let path = if ns.contains('/') {
        std::path::PathBuf::from(ns)
    } else {
        let run = Path::new("/run/netns").join(ns);
        if run.exists() {
            run
        } else {
            Path::new("/var/run/netns").join(ns)
        }
    };
    let m = std::fs::metadata(&path).map_err(|e| {
        anyhow::anyhow!(
            "--netns {ns}: cannot stat {} ({e}): give an inode, /proc/PID/ns/net, or a name `ip netns list` shows",
            path.display()
        )
    })?;
    u32::try_from(m.ino())
        .map_err(|_| anyhow::anyhow!("--netns {ns}: inode {} is out of range", m.ino()))
}

/// The sources of a capture as the flag names them: `kernel,cilium`.
fn sources_label(kinds: &[args::SourceKind]) -> String {
    kinds
        .iter()
        .map(|k| format!("{k:?}").to_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

/// A capture or replay set up to run: sources attached or the input opened, the file
/// created.
struct Prepared {
    names: Names,
    source: SourceFn<'static>,
    sink: OutputSink,
    files: Option<engine::pcap::rotate::FileLedger>,
    interrupt: Arc<AtomicBool>,
    cfg: PipelineConfig,
}

/// Everything `capture` does before the run: flags checked, names started, the kernel
/// program attached, the sockets opened, the file created. With `tap` (`dropscope top`) the
/// sources feed the live view and nothing is printed on standard output. Also returns the
/// sources, each once.
fn prepare_capture(
    c: &args::CaptureArgs,
    tap: Option<Arc<engine::live::LiveTap>>,
) -> Result<(Prepared, Vec<args::SourceKind>)> {
    let snaplen = c.snaplen;
    if snaplen == 0 || snaplen > engine::MAX_KERNEL_SNAPLEN {
        bail!(
            "snap length {snaplen} is out of range: use -s 1..={}",
            engine::MAX_KERNEL_SNAPLEN
        );
    }
    // Each source once, in the order given (`kernel,cilium,kernel` attaches one program).
    let mut kinds = c.source.clone();
    let mut seen = Vec::new();
    kinds.retain(|k| {
        let first = !seen.contains(k);
        seen.push(*k);
        first
    });
    use args::SourceKind;
    if kinds.contains(&SourceKind::Cilium) && kinds.contains(&SourceKind::CiliumDatapath) {
        bail!("--source cilium and cilium-datapath exclude each other: cilium reads the running agent's socket, cilium-datapath is for a node whose agent is down; give one");
    }
    if kinds.contains(&SourceKind::CiliumDatapath) {
        // Before anything is loaded: the array may be taken only from an agent that is down.
        engine::cilium_datapath::preflight(&c.cilium_events_map, &c.cilium_socket)?;
    }
    if let Some(p) = &c.out.stats_json {
        check_stats_path(p)?;
    }
    let mut names = Names::load(false);
    names.cilium = engine::cilium_glue::CiliumContext::new(c.cilium_release);
    names.cilium.formatter.verbosity = monitor_verbosity(c.out.monitor_verbosity);
    let pod_select = engine::pods::PodSelector::parse(&c.pod, &c.k8s_namespace, &c.label)
        .map_err(|e| anyhow::anyhow!(e))?;
    if c.no_names && !pod_select.is_empty() {
        bail!("--pod, --namespace and --label need pod names: leave --no-names out");
    }
    if !c.no_names {
        let pods = engine::pods::PodNames::start(
            {
                let node = engine::pods::Sources::node();
                engine::pods::Sources {
                    cilium_api: Some(c.cilium_api.clone()),
                    cri: if c.cri_socket.is_empty() {
                        node.cri.clone()
                    } else {
                        c.cri_socket.clone()
                    },
                    ..node
                }
            },
            std::time::Duration::from_millis(c.names_refresh_ms.max(100)),
        );
        names.pods = Some(pods);
    }
    // --packets: -i names the interfaces whose packets (and drops) are captured.
    let mut packet_ifaces = Vec::new();
    if c.packets {
        if c.select.interface.is_empty() {
            bail!("--packets needs -i IFACE (repeatable; IFACE@NETNS for another namespace): the interfaces whose packets to capture");
        }
        if !kinds.contains(&SourceKind::Kernel) {
            bail!("--packets captures through the kernel source: add --source kernel");
        }
        for spec in &c.select.interface {
            let i = engine::kernel::packets::resolve(spec).map_err(|e| anyhow::anyhow!(e))?;
            if !packet_ifaces
                .iter()
                .any(|p: &engine::kernel::packets::PacketIface| {
                    (p.ifindex, p.netns_ino) == (i.ifindex, i.netns_ino)
                })
            {
                packet_ifaces.push(i);
            }
        }
    }
    let mut sel = if c.packets {
        let plain = args::SelectArgs {
            interface: Vec::new(),
            ..c.select.clone()
        };
        let mut sel = selection(&plain, &c.expression, &names)?;
        sel.ifaces = Some(
            packet_ifaces
                .iter()
                .map(|i| (i.ifindex, i.netns_ino))
                .collect(),
        );
        for i in &packet_ifaces {
            names.ifnames.remember(i.ifindex, i.netns_ino, i.label());
        }
        sel
    } else {
        selection(&c.select, &c.expression, &names)?
    };
    if let (false, Some(pods)) = (pod_select.is_empty(), &names.pods) {
        sel.pods = Some((pod_select, pods.clone()));
    }
    // An interface given by name is this namespace's: its ifindex means nothing elsewhere.
    if !c.packets
        && c.select
            .interface
            .first()
            .is_some_and(|i| i.parse::<u32>().is_err())
    {
        sel.netns.get_or_insert_with(engine::names::own_netns_inode);
    }
    let has_cilium = kinds
        .iter()
        .any(|k| matches!(k, SourceKind::Cilium | SourceKind::CiliumDatapath));
    let only_cilium = !kinds.contains(&args::SourceKind::Kernel);
    if only_cilium && sel.netns.is_some() {
        bail!("--netns selects kernel drops only (Cilium notifications carry no namespace): add --source kernel,cilium or leave --netns out");
    }
    let identity = !(c.select.identity.is_empty()
        && c.select.from_identity.is_empty()
        && c.select.to_identity.is_empty());
    if identity && !has_cilium {
        bail!("--identity, --from-identity and --to-identity select Cilium events: add --source cilium (or cilium-datapath)");
    }
    let interrupt = install_interrupt()?;
    let (mut ksel, mut untranslated) = sel.kernel();
    if c.user_space_filter && sel.expr.is_some() {
        ksel.program = None;
        untranslated = Some("--user-space-filter".into());
    }
    let kernel = if kinds.contains(&args::SourceKind::Kernel) {
        let (mut o, memory) = kernel_options(c, snaplen, ksel)?;
        o.pods = sel.pods.clone();
        o.tap_from_table = untranslated.is_none() && sel.pods.is_none();
        o.tap = tap.clone();
        o.packets = packet_ifaces.clone();
        o.tc_mode = match c.tc_attach {
            args::TcAttachArg::Auto => engine::kernel::packets::TcMode::Auto,
            args::TcAttachArg::Tcx => engine::kernel::packets::TcMode::Tcx,
            args::TcAttachArg::Clsact => engine::kernel::packets::TcMode::Clsact,
        };
        Some((o, memory))
    } else {
        None
    };
    let mut kernel_expr_in_user = untranslated.clone();
    let mut sources: Vec<SourceFn<'static>> = Vec::new();
    for kind in &kinds {
        sources.push(match kind {
            args::SourceKind::Kernel => match &kernel {
                Some((o, _)) => {
                    let (src, refused, notices) = engine::sources::kernel(o)?;
                    if refused.is_some() {
                        kernel_expr_in_user = refused;
                    }
                    for n in notices {
                        eprintln!("dropscope: {n}");
                    }
                    src
                }
                None => bail!("internal: kernel options missing"),
            },
            args::SourceKind::Cilium => {
                engine::sources::cilium_socket(&engine::sources::CiliumSocketOptions {
                    path: c.cilium_socket.clone(),
                    save_stream: c.save_stream.clone(),
                    release: c.cilium_release,
                    types: engine::sources::cilium_type_bits(&c.types),
                })?
            }
            args::SourceKind::CiliumDatapath => {
                engine::cilium_datapath::source(&engine::cilium_datapath::DatapathOptions {
                    map: c.cilium_events_map.clone(),
                    agent_socket: c.cilium_socket.clone(),
                    release: c.cilium_release,
                    types: engine::sources::cilium_type_bits(&c.types),
                })?
            }
        });
    }
    if let Some(why) = &kernel_expr_in_user {
        eprintln!("dropscope: the filter expression runs in user space, after the copy: {why}");
    }
    // What the decode stage runs: the whole selection for Cilium events; for kernel drops
    // only what the kernel program could not (the expression, when it fell back).
    // Pods are decided in user space for every source too: the kernel program selects a
    // superset of the kernel drops (it leaves tunnelled packets and unreadable headers to
    // user space, which looks at inner addresses).
    let user_select = if !sel.is_all() && (has_cilium || sel.pods.is_some()) {
        Some(Arc::new(Selection {
            kernel_decided: kernel_expr_in_user.is_none() && sel.pods.is_none(),
            ..sel.clone()
        }))
    } else {
        kernel_expr_in_user
            .is_some()
            .then(|| Arc::new(sel.expression_only()))
    };
    let source: SourceFn<'_> = if sources.len() == 1 {
        sources.remove(0)
    } else if kinds.contains(&args::SourceKind::Kernel) {
        // Kernel drops at tc and Cilium's notifications of the same packets: one record each.
        let tc: Vec<u32> = ["TC_INGRESS", "TC_EGRESS"]
            .iter()
            .filter_map(|n| names.kernel_reasons.value(n))
            .collect();
        engine::sources::merge_joined(sources, tc, std::time::Duration::from_millis(500))
    } else {
        engine::sources::merge(sources)
    };
    let (mut sink, files) = make_sink(&c.out, snaplen, Some(interrupt.clone()))?;
    if !c.no_datapath {
        // The datapath as the capture starts: each drop's comment and JSON line get the facts
        // that explain it (the summary's join reads it again at the end).
        let snap = engine::datapath::snapshot(&engine::datapath::Options {
            maps_dir: c.datapath_maps_dir.clone(),
            cilium_api: c.cilium_api.clone(),
            count: engine::datapath::CountMaps::Only(engine::datapath::explain::all_table_maps()),
            ..Default::default()
        });
        sink = sink.with_datapath(Arc::new(
            engine::datapath::explain::EventFacts::from_snapshot(&snap, &names),
        ));
    }
    // Printed even with -q (as tcpdump's "listening on"): scripts wait for it.
    match &kernel {
        Some((_, memory)) => {
            eprintln!("dropscope: capturing drops (snaplen {snaplen}; {memory}); Ctrl-C to stop")
        }
        None => eprintln!("dropscope: capturing drops (snaplen {snaplen}); Ctrl-C to stop"),
    }
    // After the start line: an error before it (privileges, a bad flag) stays one line.
    if let Some(p) = &names.pods {
        for w in p.announce() {
            eprintln!("dropscope: pod names: {w}");
        }
    }
    let prepared = Prepared {
        names,
        source,
        sink,
        files,
        interrupt,
        cfg: PipelineConfig {
            select: user_select,
            tap,
            ..pipeline_config(&c.out)
        },
    };
    Ok((prepared, kinds))
}

fn capture(c: args::CaptureArgs) -> Result<i32> {
    c.out.validate()?;
    if let Some(url) = &c.remote {
        return remote::capture(url, &c);
    }
    let (
        Prepared {
            names,
            source,
            sink,
            files,
            interrupt,
            cfg,
        },
        kinds,
    ) = prepare_capture(&c, None)?;
    let progress = Progress::default();
    let report = engine::pipeline::run(
        &cfg,
        source,
        sink,
        &names,
        &interrupt,
        &progress,
        progress_printer(c.out.quiet),
    )?;
    let mut report = report;
    report.facts = report_cmd::run_facts(
        "capture",
        sources_label(&kinds),
        &c.select,
        &c.expression,
        &[
            ("--pod", &c.pod),
            ("--namespace", &c.k8s_namespace),
            ("--label", &c.label),
        ],
    );
    if !c.no_datapath && !report.flows.is_empty() {
        let base = engine::datapath::Options {
            maps_dir: c.datapath_maps_dir.clone(),
            cilium_api: c.cilium_api.clone(),
            ..Default::default()
        };
        report.datapath = Some(engine::datapath::explain::Join::live(
            &report.flows,
            &names,
            &base,
        ));
    }
    finish(&names, &c.out, report, files.as_ref())
}

/// The kernel source's options from the flags, checked against the node's memory before
/// anything is loaded; with the line saying how much kernel memory they take.
fn kernel_options(
    c: &args::CaptureArgs,
    snaplen: u32,
    select: engine::kernel::loader::KernelSelect,
) -> Result<(engine::sources::KernelOptions, String)> {
    use engine::kernel::loader as l;
    if c.kernel_flows == 0 {
        bail!(
            "--kernel-flows 0 would count nothing per flow: give at least 1 (default {})",
            l::DEFAULT_KERNEL_FLOWS
        );
    }
    if c.kernel_flows > l::MAX_KERNEL_FLOWS {
        bail!(
            "--kernel-flows {} is more than the {} entries dropscope allows: lower it",
            c.kernel_flows,
            l::MAX_KERNEL_FLOWS
        );
    }
    if let Some(n) = c.exemplars {
        if n > MAX_EXEMPLARS {
            bail!("--exemplars {n} is more than {MAX_EXEMPLARS} per flow and second: leave --exemplars out to copy every drop");
        }
    }
    if c.ring_size_mib == Some(0) {
        bail!("--ring-size 0 leaves no room for packets: give at least 1 MiB, or use --exemplars 0 for counts only");
    }
    let cpus = l::possible_cpus()?;
    let ring_bytes_per_cpu = match c.ring_size_mib {
        Some(m) => u64::from(m) << 20,
        None => l::default_ring_bytes_per_cpu(cpus),
    };
    let ring_bytes = engine::kernel::ring::ring_bytes(ring_bytes_per_cpu);
    let rings_total = ring_bytes * u64::from(cpus);
    let table_total =
        2 * u64::from(c.kernel_flows) * l::TABLE_BYTES_PER_ENTRY + l::cache_bytes(cpus);
    let total = rings_total + table_total;
    if let Some((avail, what)) = memory_available() {
        if total > avail / 2 {
            bail!(
                "the rings ({} CPUs x {}) and the kernel flow table (2 x {} entries, {}) need {}, more than half of the {} {what}: lower --ring-size or --kernel-flows",
                cpus,
                mib(ring_bytes),
                c.kernel_flows,
                mib(table_total),
                mib(total),
                mib(avail)
            );
        }
    }
    let memory = format!(
        "kernel memory {}: rings {} CPUs x {}, flow table 2 x {} entries {}",
        mib(total),
        cpus,
        mib(ring_bytes),
        c.kernel_flows,
        mib(table_total)
    );
    Ok((
        engine::sources::KernelOptions {
            snaplen,
            ring_bytes_per_cpu,
            kernel_flows: c.kernel_flows,
            exemplars: c.exemplars,
            auto_storm: !c.no_auto_storm,
            max_rows: c.out.max_flows,
            select,
            pods: None,
            packets: Vec::new(),
            tc_mode: engine::kernel::packets::TcMode::Auto,
            tap: None,
            tap_from_table: false,
        },
        memory,
    ))
}

/// Largest `--exemplars`.
const MAX_EXEMPLARS: u32 = 1_000_000;

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// The memory this process may still take (bytes) and where that limit comes from: the
/// node's MemAvailable, or less when its memory cgroup (v1 or v2, or an ancestor) has a
/// limit. BPF maps are charged to the creating process's memory cgroup (Linux 5.11+), so a
/// pod's limit is the one that counts.
fn memory_available() -> Option<(u64, &'static str)> {
    let node = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        });
    let mut best = node.map(|n| (n, "this node has available"));
    if let Some(cg) = cgroup_headroom() {
        if best.is_none_or(|(n, _)| cg < n) {
            best = Some((cg, "this memory cgroup still allows"));
        }
    }
    best
}

/// Limit minus usage of this process's memory cgroup and its ancestors (the smallest).
fn cgroup_headroom() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let read = |p: &std::path::Path| -> Option<u64> {
        let v = std::fs::read_to_string(p).ok()?;
        let v = v.trim();
        // "max" (v2) or a huge v1 value: no limit.
        v.parse::<u64>().ok().filter(|&n| n < 1 << 62)
    };
    let mut best: Option<u64> = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (roots, limit, usage, inactive): (&[&str], &str, &str, &str) = if ctrls.is_empty() {
            (
                &["/sys/fs/cgroup", "/sys/fs/cgroup/unified"],
                "memory.max",
                "memory.current",
                "inactive_file",
            )
        } else if ctrls.split(',').any(|c| c == "memory") {
            (
                &["/sys/fs/cgroup/memory"],
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "total_inactive_file",
            )
        } else {
            continue;
        };
        for root in roots {
            let mut dir = std::path::PathBuf::from(format!("{root}{path}"));
            loop {
                if let Some(lim) = read(&dir.join(limit)) {
                    let used = read(&dir.join(usage)).unwrap_or(0);
                    // The working set, as the kubelet counts it: page cache the kernel can
                    // drop (our own capture files, in a DaemonSet) is not in use.
                    let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
                    let room = lim.saturating_sub(working_set(used, &stat, inactive));
                    best = Some(best.map_or(room, |b| b.min(room)));
                }
                if dir.as_os_str().len() <= root.len() || !dir.pop() {
                    break;
                }
            }
        }
    }
    best
}

/// `usage` less the reclaimable file cache `key` (`inactive_file`, v1 `total_inactive_file`)
/// of a `memory.stat` text.
fn working_set(usage: u64, stat: &str, key: &str) -> u64 {
    let inactive = stat
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
        })
        .unwrap_or(0);
    usage.saturating_sub(inactive)
}

/// Everything `replay` does before the run (with `tap`: for `dropscope top -r`).
fn prepare_replay(
    r: &args::ReplayArgs,
    tap: Option<Arc<engine::live::LiveTap>>,
) -> Result<Prepared> {
    r.out.validate()?;
    if let Some(p) = &r.out.stats_json {
        check_stats_path(p)?;
    }
    let mut names = Names::load(true);
    let release = r.cilium_release.unwrap_or_default();
    names.cilium = engine::cilium_glue::CiliumContext::new(release);
    names.cilium.formatter.verbosity = monitor_verbosity(r.out.monitor_verbosity);
    let sel = selection(&r.select, &r.expression, &names)?;
    let interrupt = install_interrupt()?;
    let source = engine::sources::file(
        &r.file,
        r.input_format,
        release,
        engine::sources::cilium_type_bits(&r.types),
        r.out.max_flows,
    )?;
    let (sink, files) = make_sink(&r.out, engine::MAX_REPLAY_SNAPLEN, Some(interrupt.clone()))?;
    let sink = sink.with_synthesize(r.synthesize);
    // File batches are large (a read buffer each) and the file never stalls: a few in flight
    // keep every stage busy, and fewer buffers in flight means they are reused warm.
    let cfg = PipelineConfig {
        channel_depth: 4,
        select: (!sel.is_all()).then(|| Arc::new(sel)),
        tap,
        ..pipeline_config(&r.out)
    };
    Ok(Prepared {
        names,
        source,
        sink,
        files,
        interrupt,
        cfg,
    })
}

pub(crate) fn replay(r: args::ReplayArgs) -> Result<i32> {
    let Prepared {
        names,
        source,
        sink,
        files,
        interrupt,
        cfg,
    } = prepare_replay(&r, None)?;
    let progress = Progress::default();
    let report = engine::pipeline::run(
        &cfg,
        source,
        sink,
        &names,
        &interrupt,
        &progress,
        progress_printer(r.out.quiet),
    )?;
    // A file's drops happened elsewhere or earlier: the reason table only, no live state.
    let mut report = report;
    report.facts = report_cmd::run_facts(
        "replay",
        r.file.display().to_string(),
        &r.select,
        &r.expression,
        &[],
    );
    report.datapath = Some(engine::datapath::explain::Join::table_only(
        &report.flows,
        &names,
    ));
    finish(&names, &r.out, report, files.as_ref())
}

fn doctor(d: args::DoctorArgs) -> Result<i32> {
    use engine::doctor::{self, Status};
    let paths = doctor::Paths {
        maps_dir: d.maps_dir.clone(),
        cilium_api: d.cilium_api.clone(),
        ..doctor::Paths::default()
    };
    let checks = doctor::run(&paths, !d.no_attach);
    let text = if d.json {
        let mut t = serde_json::to_string_pretty(&checks)?;
        t.push('\n');
        t
    } else {
        doctor::render(&checks)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r?,
    }
    Ok(i32::from(checks.iter().any(|c| c.status == Status::Fail)))
}

/// `dropscope datapath`: one report, or (--watch) the changes as they happen.
fn datapath(d: args::DatapathArgs) -> Result<i32> {
    use engine::datapath::{self, watch, CountMaps};
    if !(d.interval.is_finite() && d.interval > 0.0) {
        bail!(
            "--interval {} is not a positive number of seconds",
            d.interval
        );
    }
    if let Some(s) = d.duration {
        if !d.watch {
            bail!("--duration needs --watch: a single report takes no time to wait for");
        }
        if !(s.is_finite() && s > 0.0) {
            bail!("--duration {s} is not a positive number of seconds");
        }
    }
    if let Some(t) = d
        .thresholds
        .iter()
        .find(|t| !(t.is_finite() && **t > 0.0 && **t <= 100.0))
    {
        bail!("--thresholds {t}: give percentages above 0 and at most 100, e.g. 80,90,100");
    }
    let opts = datapath::Options {
        maps_dir: d.maps_dir.clone(),
        cilium_api: d.cilium_api.clone(),
        cgroup: d.cgroup.clone(),
        count: if d.no_count {
            CountMaps::None
        } else {
            CountMaps::All
        },
        all_namespaces: !d.own_netns,
        walk_keys: d.walk_keys,
        ..Default::default()
    };
    let mut out = std::io::stdout().lock();
    let write = |out: &mut std::io::StdoutLock<'_>, text: &str| -> std::io::Result<()> {
        out.write_all(text.as_bytes())?;
        out.flush()
    };
    if !d.watch {
        let snap = datapath::snapshot(&opts);
        let text = if d.json {
            let mut t = serde_json::to_string_pretty(&snap)?;
            t.push('\n');
            t
        } else {
            datapath::render_text(&snap, d.all_interfaces)
        };
        return match write(&mut out, &text) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
            r => r.map(|()| 0).map_err(Into::into),
        };
    }
    let interrupt = install_interrupt()?;
    if let Some(s) = d.duration {
        let stop = interrupt.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(s));
            stop.store(true, Ordering::SeqCst);
        });
    }
    let thresholds: Vec<f64> = d.thresholds.iter().map(|t| t / 100.0).collect();
    let json = d.json;
    let r = watch::run(
        &opts,
        Duration::from_secs_f64(d.interval),
        &thresholds,
        &interrupt,
        &mut |s| {
            let with_progs = s.interfaces().filter(|i| !i.attachments.is_empty()).count();
            eprintln!(
                "dropscope: watching the datapath ({with_progs} interfaces with programs, {} endpoint interfaces without, {} maps; every {}s); Ctrl-C to stop",
                s.missing().count(),
                s.maps.len(),
                d.interval
            );
            for n in &s.notes {
                eprintln!("dropscope: note: {n}");
            }
        },
        &mut |c| {
            let mut line = if json {
                serde_json::to_string(c).map_err(std::io::Error::other)?
            } else {
                c.text()
            };
            line.push('\n');
            write(&mut out, &line)
        },
    );
    match r {
        Ok(n) => {
            eprintln!("dropscope: {n} changes seen");
            Ok(0)
        }
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e.into()),
    }
}

fn reasons(r: args::ReasonsArgs) -> Result<i32> {
    let text = engine::sources::reasons_table(r.kernel_only, r.cilium_only, r.json)?;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        r => {
            r?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn working_set_leaves_out_reclaimable_file_cache() {
        let v2 = "anon 1000\nfile 220000000\nactive_file 1000000\ninactive_file 219000000\n";
        assert_eq!(
            super::working_set(230_000_000, v2, "inactive_file"),
            11_000_000
        );
        let v1 = "cache 5\ninactive_file 7\ntotal_inactive_file 40\n";
        assert_eq!(super::working_set(100, v1, "total_inactive_file"), 60);
        assert_eq!(super::working_set(100, "", "inactive_file"), 100);
        assert_eq!(
            super::working_set(10, "inactive_file 99\n", "inactive_file"),
            0
        );
        assert_eq!(
            super::working_set(10, "inactive_file x\n", "inactive_file"),
            10
        );
    }
}
