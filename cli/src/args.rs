//! Command-line arguments: raw flags (clap), then a validation step.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use engine::cilium::notify::MessageKind;
use engine::cilium::tables::CiliumRelease;
use engine::pcap::FileFormat;
use engine::report::FlowRows;
use engine::sources::InputFormat;

const CAPTURE_EXAMPLES: &str = "\
Examples:
  dropscope capture                          print every kernel drop as it happens
  dropscope capture -w drops.pcapng -c 1000  save 1000 drops, reason in each packet's comment
  dropscope capture --duration 30 -q --stats-json stats.json
                                             profile a drop storm: per-flow x reason table
  dropscope capture --exemplars 2 --duration 60 -w storm.pcapng --stats-json storm.json
                                             a drop storm: every drop counted per flow in
                                             the kernel, 2 packets per flow per second saved
  dropscope capture --exemplars 0 -q         counts only (cheapest), per-flow profile at the end
  dropscope capture --source cilium          Cilium datapath drops from the agent's socket
  dropscope capture --source kernel,cilium-datapath
                                             the agent is down: Cilium's drops read from
                                             its perf event array, and the kernel's
  dropscope capture 'udp port 53 and host 10.0.1.7'
                                             only those drops: a tcpdump filter expression,
                                             decided in the kernel before anything is copied
  dropscope capture --not-reason NOT_SPECIFIED -i eth0 'tcp[tcpflags] & tcp-syn != 0'
                                             selectors and an expression together (AND)
  dropscope capture --packets -i eth0 -i lxc12ab@cni-1234 -w conv.pcapng 'host 10.0.1.7'
                                             the conversation and its drops in one file:
                                             every packet on those interfaces (both ways)
                                             and the drops on them, in time order
  tshark -r conv.pcapng -Y 'frame.packet_flags_direction == 2'   only the packets sent
  dropscope capture --source cilium --reason 'Policy denied' --to-identity 1234
  tshark -r drops.pcapng -Y 'frame.comment contains \"NO_SOCKET\"'

Needs CAP_BPF and CAP_PERFMON (or root) for the kernel source.
At the end a summary on stderr reconciles, per reason: drops the kernel counted =
filtered (selectors, expression) + not copied (storm budget) + lost in the ring +
delivered, and delivered = processed + skipped (-c).";

const REPLAY_EXAMPLES: &str = "\
Examples:
  dropscope replay drops.pcapng               print the packets and the per-flow summary
  dropscope replay any.pcap -w out.pcapng -q  convert, with the per-flow table on stderr
  dropscope replay stream.gobstream           a saved Cilium monitor socket stream
  kubectl -n kube-system exec ds/cilium -- cilium-dbg monitor -t drop -vv | dropscope replay - -w drops.pcapng
                                             the agent's own monitor, hex dumps to pcapng
  dropscope replay events.log --stats-json s.json   Hubble's exported flows: flow x reason table
  dropscope replay drops.pcapng -w dns.pcap 'udp port 53'
                                             the packets tcpdump -r drops.pcapng -w dns.pcap
                                             'udp port 53' would keep
Reads pcap and pcapng (ours or anyone's); drop reasons are recovered from our comments.
Text inputs are told apart by their content; lines that are not records (prompts, banners,
wrapped or cut lines, colour codes) are skipped and counted in the summary.";

#[derive(Parser, Debug)]
#[command(
    name = "dropscope",
    version,
    about = "Capture and analyse packet drops (kernel and Cilium) on a Linux node.",
    long_about = "dropscope captures every packet the kernel drops (skb:kfree_skb, with the drop reason and \
location) and every drop Cilium's datapath reports, writes them to pcapng (reason in each packet's comment) \
or pcap, and counts drops per flow and reason, exactly."
)]
pub struct Cli {
    /// Log debug messages on stderr.
    #[arg(long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: the size of the largest variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Capture drops live (kernel skb:kfree_skb, or Cilium's monitor socket).
    #[command(after_help = CAPTURE_EXAMPLES)]
    Capture(CaptureArgs),
    /// Read a capture file (pcap, pcapng, saved Cilium stream) and summarise it.
    #[command(after_help = REPLAY_EXAMPLES)]
    Replay(ReplayArgs),
    /// List drop reasons: the running kernel's (from BTF) and Cilium's.
    Reasons(ReasonsArgs),
    /// Check what this node offers a capture: kernel, BTF, lockdown, capabilities, tracefs,
    /// a real load and attach of the program, bpffs, Cilium's sockets, the container
    /// runtime. One line per check (OK, WARN, FAIL) with what to do; exit 0 when a kernel
    /// capture will work, 1 when it will not.
    Doctor(DoctorArgs),
    /// Show the BPF side of the datapath: programs on every interface (XDP, tc, tcx) in
    /// every network namespace, Cilium endpoint interfaces without one, cgroup programs,
    /// and the fill of Cilium's pinned maps. Reads only.
    #[command(after_help = DATAPATH_EXAMPLES)]
    Datapath(DatapathArgs),
    /// Draw a stats document (--stats-json) or a capture file as one self-contained HTML
    /// page: drops/s per reason over time, top flows, reason x drop location, interfaces,
    /// rate percentiles, the ledger and the capture's facts (--svg DIR: each plot as SVG).
    Report(crate::report_cmd::ReportArgs),
    /// Run as an agent: count every kernel drop (and Cilium's) continuously, export the
    /// counts as Prometheus metrics over HTTP, answer heavy-hitter queries and run capture
    /// sessions on request, until SIGTERM or Ctrl-C.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Watch drops live, full screen, refreshed every second: drops/s per reason with a short
    /// history, the heavy flows x reason with exact counts and rates, drop locations,
    /// namespaces and interfaces (pods once known), and what was lost. Takes capture's
    /// sources, filters, selectors and -w; -r FILE replays a file at its own pace. Not a
    /// terminal: one plain block per second.
    #[command(after_help = crate::top::TOP_EXAMPLES)]
    Top(crate::top::TopArgs),
}

const SERVE_EXAMPLES: &str = "\
Examples:
  dropscope serve                             metrics on http://127.0.0.1:9464/metrics
  dropscope serve --listen 0.0.0.0:9464 --token-file /etc/dropscope/token
                                              reachable from the network: bearer token required
  curl -s 127.0.0.1:9464/api/v1/flows?top=10  the heavy hitters, exact
  curl -s -XPOST 127.0.0.1:9464/api/v1/captures -d '{\"filter\":\"udp port 53\",\"duration\":30}'
                                              a capture session; then GET /api/v1/captures/ID
                                              and /api/v1/captures/ID/pcapng
  dropscope capture --remote http://127.0.0.1:9464 --duration 30 -w dns.pcapng 'udp port 53'
                                              the same session from another machine";

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address the HTTP server listens on. Anything but loopback needs --token-file.
    #[arg(long, default_value = "127.0.0.1:9464", value_name = "ADDR")]
    pub listen: String,
    /// File holding the bearer token every request must carry (Authorization: Bearer ...).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Bytes of each packet the kernel copies (for capture sessions; max 2048).
    #[arg(short = 's', long = "snaplen", default_value_t = engine::DEFAULT_SNAPLEN, value_name = "SNAPLEN")]
    pub snaplen: u32,
    /// Packets per flow x reason x drop site and second the kernel copies for capture
    /// sessions; every drop is counted in the kernel whatever this is.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub exemplars: u32,
    /// Hash entries of each kernel flow table generation.
    #[arg(long, default_value_t = engine::kernel::loader::DEFAULT_KERNEL_FLOWS, value_name = "N")]
    pub kernel_flows: u32,
    /// Size of each CPU's kernel ring, in MiB.
    #[arg(long = "ring-size", value_name = "MIB")]
    pub ring_size_mib: Option<u32>,
    /// Heavy-hitter flow rows kept (the lightest are folded, per reason, when full).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub max_flows: usize,
    /// Label sets (origin x reason x interface x pod) of the per-interface drop counters;
    /// the drops of any further one are counted in one `other` series.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub metrics_max_series: usize,
    /// Cilium's monitor socket, read when it exists.
    #[arg(
        long,
        default_value = engine::paths::CILIUM_MONITOR_SOCKET,
        value_name = "PATH"
    )]
    pub cilium_socket: PathBuf,
    /// Cilium release of the socket's records: main, 1.19, 1.18, 1.17, 1.16.
    #[arg(long, default_value = "main", value_name = "RELEASE", value_parser = release_arg)]
    pub cilium_release: CiliumRelease,
    /// Directory of capture sessions' files (created 0700; files 0600).
    #[arg(
        long,
        default_value = "/var/lib/dropscope/sessions",
        value_name = "DIR"
    )]
    pub session_dir: PathBuf,
    /// Capture sessions running at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub max_sessions: usize,
    /// Captured bytes a session may write (MB); it ends when it reaches them.
    #[arg(long, default_value_t = 100, value_name = "MB")]
    pub session_max_mb: u64,
    /// Longest session (seconds).
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub session_max_duration: u64,
    /// A session and its file are removed this long after it ended and was last read.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub session_lifetime: u64,
    /// Largest request body (bytes); larger ones get 413.
    #[arg(long, default_value_t = 65536, value_name = "BYTES")]
    pub max_body: usize,
    /// Do not name pods.
    #[arg(long)]
    pub no_names: bool,
}

const DATAPATH_EXAMPLES: &str = "\
Examples:
  dropscope datapath                      programs per interface, endpoints without one,
                                          fill of every map in /sys/fs/bpf/tc/globals
  dropscope datapath --json | jq '.maps[] | select(.fill > 0.9)'
                                          maps over 90% full, for a script
  dropscope datapath --watch              print each change as it happens: a program
                                          attached or detached, a map crossing 80/90/100%
  dropscope datapath --watch --json --interval 0.2 > changes.jsonl
  dropscope datapath --maps-dir /sys/fs/bpf/cilium/globals --no-count

Endpoint interfaces come from the Cilium agent's API (--cilium-api) when it answers, else
by name (lxc*). Maps are opened read-only; entries come from the kernel's own counter
(a BPF iterator calling bpf_map_sum_elem_count, Linux 6.6+) or else by walking keys
(values are never copied); the method is named per map. Needs CAP_BPF (or CAP_SYS_ADMIN) for programs and
maps, CAP_SYS_ADMIN to enter other network namespaces, CAP_NET_ADMIN for cgroup programs;
what cannot be read is one `note:` line, the rest is still reported.";

#[derive(Args, Debug)]
pub struct DatapathArgs {
    /// JSON instead of text (with --watch: one JSON object per change, a line each).
    #[arg(long)]
    pub json: bool,
    /// Keep watching and print each change (program attached or detached, map fill crossing
    /// a threshold) with its time, until Ctrl-C or --duration.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between two looks with --watch (fractions allowed).
    #[arg(long, default_value_t = 0.25, value_name = "SECS")]
    pub interval: f64,
    /// Stop watching after SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Fill thresholds in percent reported by --watch (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "80,90,100",
        value_name = "PCT"
    )]
    pub thresholds: Vec<f64>,
    /// Directory of pinned maps (Cilium's bpffs globals).
    #[arg(long, default_value = engine::datapath::DEFAULT_MAPS_DIR, value_name = "DIR")]
    pub maps_dir: PathBuf,
    /// The Cilium agent's REST API socket: its endpoints' interfaces.
    #[arg(long, default_value = engine::paths::CILIUM_API_SOCKET, value_name = "PATH")]
    pub cilium_api: PathBuf,
    /// Cgroup whose programs are listed.
    #[arg(long, default_value = engine::datapath::DEFAULT_CGROUP, value_name = "DIR")]
    pub cgroup: PathBuf,
    /// Do not count map entries (types and sizes only; cheapest).
    #[arg(long)]
    pub no_count: bool,
    /// Count entries by walking keys (BPF_MAP_GET_NEXT_KEY) even where the kernel's own
    /// counter can be read (a BPF iterator with bpf_map_sum_elem_count, Linux 6.6+).
    #[arg(long)]
    pub walk_keys: bool,
    /// Only dropscope's own network namespace.
    #[arg(long)]
    pub own_netns: bool,
    /// Also list interfaces without any program that are not endpoints.
    #[arg(long)]
    pub all_interfaces: bool,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Skip the load-and-attach check (which needs the capture's privileges).
    #[arg(long)]
    pub no_attach: bool,
    /// Cilium's pinned maps for the datapath checks.
    #[arg(long, default_value = engine::datapath::DEFAULT_MAPS_DIR, value_name = "DIR")]
    pub maps_dir: String,
    /// The Cilium agent's REST API socket.
    #[arg(long, default_value = engine::paths::CILIUM_API_SOCKET, value_name = "PATH")]
    pub cilium_api: String,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// The kernel's skb:kfree_skb tracepoint, through dropscope's own eBPF program.
    Kernel,
    /// Cilium's monitor socket (drop, trace and policy-verdict notifications).
    Cilium,
    /// Cilium's datapath notifications read straight from its perf event array
    /// (--cilium-events-map), for a node whose agent is down or crash-looping. Refused while
    /// the agent's monitor socket answers; the agent must restart afterwards to read again.
    #[value(name = "cilium-datapath")]
    CiliumDatapath,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcAttachArg {
    Auto,
    Tcx,
    Clsact,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    Pcapng,
    Pcap,
}

/// Outputs shared by `capture` and `replay`.
#[derive(Args, Clone, Debug)]
pub struct OutputArgs {
    /// Write packets to FILE (pcapng by default; pcap if FILE ends in .pcap or with --format pcap).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Format of the -w file.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<FormatArg>,
    /// Permission bits of the -w file, in octal (before the umask). Capture files hold other
    /// people's packets: owner-only by default.
    #[arg(long, value_name = "MODE", default_value = "0600", value_parser = parse_file_mode)]
    pub file_mode: u32,
    /// Rotate the -w file, as tcpdump -C: a new file once the current one holds more than
    /// MB million bytes; files after the first are FILE1, FILE2, ... (with -W: FILE0 ..
    /// FILE<N-1>, a ring). Each file is complete on its own and renamed into place when done.
    #[arg(short = 'C', value_name = "MB")]
    pub rotate_mb: Option<u64>,
    /// Rotate the -w file every SECS seconds, as tcpdump -G: the -w name goes through
    /// strftime (e.g. -w 'drops-%Y%m%d-%H%M%S.pcapng').
    #[arg(short = 'G', value_name = "SECS")]
    pub rotate_secs: Option<u64>,
    /// With -C: keep at most N files, overwriting the oldest (a ring); with -G alone: stop
    /// after N files, as tcpdump -W.
    #[arg(short = 'W', value_name = "N")]
    pub rotate_files: Option<u32>,
    /// Stop after COUNT events.
    #[arg(short = 'c', long, value_name = "COUNT")]
    pub count: Option<u64>,
    /// Stop after SECS seconds (fractions allowed).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Print one JSON object per event on stdout instead of text lines.
    #[arg(long)]
    pub json: bool,
    /// Cilium events in text as `cilium-dbg monitor -v` (debug) or `-vv` (verbose: one
    /// header line and the packet's hex dump per drop, which `dropscope replay` reads back).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub monitor_verbosity: u8,
    /// Print text lines even when writing a file with -w.
    #[arg(long)]
    pub print: bool,
    /// No per-event lines and no progress; the final summary is still printed on stderr.
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the final per-flow x reason table and the accounting as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Flow rows kept in --stats-json: the N with most packets, or all (default). The
    /// document counts the rows left out (flow_table.rows_omitted).
    #[arg(long, value_name = "N|all", value_parser = parse_stats_flows, allow_negative_numbers = true)]
    pub stats_flows: Option<FlowRows>,
    /// Flows listed in the summary on stderr.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// Distinct (flow, reason) entries kept before new ones are counted per reason only.
    #[arg(long, default_value_t = 1 << 20, value_name = "N")]
    pub max_flows: usize,
}

/// `--file-mode`: octal permission bits, `0600` or `600`.
fn parse_file_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!(
            "{s:?} is not a file mode: give octal permission bits such as 0600 or 0644"
        )),
    }
}

impl OutputArgs {
    pub fn file_format(&self, path: &Path) -> FileFormat {
        match self.format {
            Some(FormatArg::Pcap) => FileFormat::Pcap,
            Some(FormatArg::Pcapng) => FileFormat::Pcapng,
            None if path.extension().is_some_and(|e| e == "pcap") => FileFormat::Pcap,
            None => FileFormat::Pcapng,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.format.is_some() && self.write.is_none() {
            bail!("--format needs -w FILE: it sets the format of the written file");
        }
        let rotating = self.rotate_mb.is_some() || self.rotate_secs.is_some();
        if (rotating || self.rotate_files.is_some()) && self.write.is_none() {
            bail!("-C, -G and -W rotate the -w file: give -w FILE");
        }
        if self.rotate_files.is_some() && !rotating {
            bail!("-W needs -C MB or -G SECS: it limits the files they rotate through");
        }
        if self.rotate_mb == Some(0) || self.rotate_secs == Some(0) || self.rotate_files == Some(0)
        {
            bail!("-C, -G and -W take numbers of at least 1");
        }
        if let (true, Some(w)) = (rotating, &self.write) {
            if engine::pcap::output_is_special(w) {
                bail!(
                    "-C and -G rotate files: {} is not a regular file",
                    w.display()
                );
            }
        }
        if let Some(d) = self.duration {
            if !(d.is_finite() && d > 0.0) {
                bail!("--duration {d} is not a positive number of seconds");
            }
        }
        if self.count == Some(0) {
            bail!("-c 0 would capture nothing: give a count of at least 1, or leave -c out");
        }
        if self.max_flows == 0 {
            bail!("--max-flows must be at least 1");
        }
        if self.json && self.quiet {
            bail!("--json and -q contradict each other: -q prints no per-event lines");
        }
        if self.stats_flows.is_some() && self.stats_json.is_none() {
            bail!("--stats-flows needs --stats-json FILE: it sets the rows that file keeps");
        }
        Ok(())
    }
}

/// `--stats-flows`: a number of rows (digits only) or `all`.
fn parse_stats_flows(s: &str) -> std::result::Result<FlowRows, String> {
    if s == "all" {
        return Ok(FlowRows::All);
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("give a number of rows (0 or more) or `all`".into());
    }
    s.parse()
        .map(FlowRows::Top)
        .map_err(|_| "too many rows: give a smaller number, or `all`".into())
}

/// What to keep: selectors and a tcpdump filter expression, shared by `capture` and
/// `replay`. All of them combine with AND.
#[derive(Args, Clone, Debug, Default)]
pub struct SelectArgs {
    /// Only drops with this reason (repeatable): a kernel or Cilium name (case-insensitive,
    /// `dropscope reasons` lists them) or a number.
    #[arg(long = "reason", value_name = "NAME|NUMBER")]
    pub reason: Vec<String>,
    /// No drops with this reason (repeatable), e.g. --not-reason NOT_SPECIFIED.
    #[arg(long = "not-reason", value_name = "NAME|NUMBER")]
    pub not_reason: Vec<String>,
    /// Only drops on this interface: a name in dropscope's network namespace, or an ifindex.
    /// With `capture --packets`: also capture every packet on it, received and sent;
    /// repeatable, and IFACE@NETNS names an interface in another network namespace (a name
    /// under /run/netns or a path such as /proc/PID/ns/net).
    #[arg(short = 'i', long = "interface", value_name = "IFACE[@NETNS]")]
    pub interface: Vec<String>,
    /// Only drops in this network namespace: an inode number, a path such as
    /// /proc/PID/ns/net, or a name under /var/run/netns.
    #[arg(long, value_name = "NETNS")]
    pub netns: Option<String>,
    /// Only Cilium events whose source or destination security identity is ID (repeatable).
    #[arg(long, value_name = "ID")]
    pub identity: Vec<u32>,
    /// Only Cilium events from security identity ID (repeatable).
    #[arg(long, value_name = "ID")]
    pub from_identity: Vec<u32>,
    /// Only Cilium events to security identity ID (repeatable).
    #[arg(long, value_name = "ID")]
    pub to_identity: Vec<u32>,
    /// Read the filter expression from FILE (as tcpdump -F); no expression words then.
    #[arg(short = 'F', value_name = "FILE")]
    pub filter_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// Where drops come from: kernel, cilium (the agent's monitor socket), cilium-datapath
    /// (Cilium's perf event array, when the agent is down), or several (`--source
    /// kernel,cilium`: one stream, one file, one per-flow table).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "kernel")]
    pub source: Vec<SourceKind>,
    /// Bytes of each packet to keep, from its MAC header (max 2048).
    #[arg(short = 's', long = "snaplen", default_value_t = engine::DEFAULT_SNAPLEN, value_name = "SNAPLEN")]
    pub snaplen: u32,
    /// Size of each CPU's kernel ring, in MiB (rounded up to a power of two, at most 256).
    /// Default: 32 MiB shared by all CPUs (4 MiB each on up to 8 CPUs, 256 KiB on 128).
    /// A full ring loses copies (counted; per-flow counts stay exact in the kernel table).
    #[arg(long = "ring-size", value_name = "MIB", allow_hyphen_values = true)]
    pub ring_size_mib: Option<u32>,
    /// Storm mode: copy at most N packets per flow x reason x drop site per second into the
    /// ring (and the file); every drop is still counted, per flow, in the kernel. 0: counts
    /// only, no packet bytes. Default: copy every drop.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub exemplars: Option<u32>,
    /// Hash entries of the kernel flow table per second (two such tables alternate, each
    /// behind a 256-slot cache per CPU). More distinct flow x reason x site x CPU keys in
    /// one second are counted per reason only (table-full).
    #[arg(long, default_value_t = engine::kernel::loader::DEFAULT_KERNEL_FLOWS, value_name = "N", allow_hyphen_values = true)]
    pub kernel_flows: u32,
    /// Without --exemplars, a CPU whose ring is half full copies only a few packets per key
    /// per second until it drains (reported in the summary); this turns that off.
    #[arg(long)]
    pub no_auto_storm: bool,
    /// Cilium monitor socket: read with --source cilium; with --source cilium-datapath the
    /// capture is refused while it answers (the agent is up: use --source cilium).
    #[arg(
        long,
        default_value = engine::paths::CILIUM_MONITOR_SOCKET,
        value_name = "PATH"
    )]
    pub cilium_socket: PathBuf,
    /// Cilium's pinned perf event array of datapath notifications (with --source
    /// cilium-datapath). Reading it takes it from the agent: each CPU's slot is given our
    /// ring instead of the agent's, until the agent restarts.
    #[arg(long, default_value = engine::cilium_datapath::DEFAULT_EVENTS_MAP, value_name = "PATH")]
    pub cilium_events_map: PathBuf,
    /// Only drops of this pod (repeatable), NAMESPACE/NAME: dropped in its network
    /// namespace or on its host-side interface, from or to its addresses, or (Cilium events)
    /// with its identity's labels. Names come from the Cilium agent's API and /proc.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub pod: Vec<String>,
    /// Only drops of pods in this Kubernetes namespace (repeatable).
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    pub k8s_namespace: Vec<String>,
    /// Only drops of pods whose Cilium identity has this label (repeatable), KEY=VALUE
    /// (`app=web` matches `k8s:app=web`).
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Do not name pods (by default the Cilium agent's API and /proc are asked, in the
    /// background, and drops carry pod and namespace names when they can be known).
    #[arg(long)]
    pub no_names: bool,
    /// The container runtime's CRI socket (repeatable; the first that exists is asked):
    /// pods, their namespaces, labels, addresses and network namespaces. Default: containerd's,
    /// CRI-O's and k3s' usual sockets.
    #[arg(long = "cri-socket", value_name = "PATH")]
    pub cri_socket: Vec<PathBuf>,
    /// The Cilium agent's REST API socket: pods of its endpoints, identities' labels.
    #[arg(long, default_value = engine::paths::CILIUM_API_SOCKET, value_name = "PATH")]
    pub cilium_api: PathBuf,
    /// Cilium's pinned maps read at the end of the capture: each drop reason that points at
    /// a map (e.g. "CT: Map insertion failed" at the conntrack maps) is shown with the fill
    /// of those maps, drops at tc with the interface's programs, drops on an endpoint
    /// interface without a program with that fact (see `dropscope datapath`).
    #[arg(long, default_value = engine::datapath::DEFAULT_MAPS_DIR, value_name = "DIR")]
    pub datapath_maps_dir: PathBuf,
    /// Do not read the datapath at the end of the capture (no `datapath:` lines, no
    /// `datapath` member in --stats-json).
    #[arg(long)]
    pub no_datapath: bool,
    /// Also save the raw Cilium socket stream to FILE, for `dropscope replay` (with --source cilium).
    #[arg(long, value_name = "FILE")]
    pub save_stream: Option<PathBuf>,
    /// Cilium release whose source-file ids and old layouts to use: main, 1.19, 1.18, 1.17,
    /// 1.16 (--source cilium or cilium-datapath).
    #[arg(long, default_value = "main", value_name = "RELEASE", value_parser = release_arg)]
    pub cilium_release: CiliumRelease,
    /// Cilium event types to keep (repeatable), as `cilium monitor -t`: drop, trace,
    /// policy-verdict, debug, capture, trace-sock, recorder. Default: all.
    #[arg(short = 't', long = "type", value_name = "TYPE", value_parser = type_arg)]
    pub types: Vec<MessageKind>,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Besides the drops, capture every packet seen on the -i interfaces (ingress and
    /// egress, by eBPF at tc: tcx links on Linux 6.6+, else clsact filters), through the
    /// same rings, filter expression, selectors and snap length. The pcapng file then holds
    /// the conversation and its drops in time order: ordinary packets carry their direction
    /// in the packet flags (Wireshark and tshark: frame.packet_flags_direction, 1 in, 2 out),
    /// drops their reason in the comment; the drops kept are those on the same interfaces.
    /// The programs never change what happens to traffic.
    #[arg(long)]
    pub packets: bool,
    /// How --packets attaches: auto (tcx where the kernel has it, else clsact), tcx, clsact.
    #[arg(long, hide = true, value_enum, default_value = "auto")]
    pub tc_attach: TcAttachArg,
    /// Run the filter expression in user space on every copy instead of in the kernel
    /// (for comparing the two; the kernel path is always preferred).
    #[arg(long, hide = true)]
    pub user_space_filter: bool,
    /// How often pod names are refreshed, in milliseconds (tests).
    #[arg(long, hide = true, default_value_t = 5000)]
    pub names_refresh_ms: u64,
    /// Run the capture as a session of a `dropscope serve` agent at URL (e.g.
    /// http://127.0.0.1:9464, through `kubectl port-forward`): the expression, --reason,
    /// --not-reason, -i, --netns, --duration, -c, -s and --exemplars go to the agent, the
    /// pcapng comes back into the -w file.
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// Bearer token file for --remote.
    #[arg(long, value_name = "FILE", requires = "remote")]
    pub token_file: Option<PathBuf>,
    /// A tcpdump (pcap-filter) expression, e.g. `tcp port 443 and host 10.0.1.7`: only the
    /// drops it matches are copied; the others are counted per reason as filtered.
    #[arg(value_name = "EXPRESSION", trailing_var_arg = true)]
    pub expression: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The file to read (`-`: standard input): pcap, pcapng, a saved Cilium socket stream
    /// (.gobstream), raw Cilium notification records (.ciliumraw), `cilium monitor` text
    /// (any verbosity; -vv hex dumps give the packets) or `-j` JSON, Hubble flows
    /// (`hubble observe -o json|jsonpb`, the exporter's events.log), or dropscope's --json.
    pub file: PathBuf,
    /// Force the input format instead of detecting it from the content: pcap, gobstream,
    /// ciliumraw, monitor, monitor-json, hubble, json.
    #[arg(long = "input-format", value_name = "FORMAT", value_parser = input_format_arg)]
    pub input_format: Option<InputFormat>,
    /// Text inputs without packet bytes (monitor INFO lines, -j, Hubble): also write a
    /// packet built from the headers they name (its comment says it was synthesised).
    /// Without it those events go to the flow table only.
    #[arg(long)]
    pub synthesize: bool,
    /// Cilium release of a saved stream: main, 1.19, 1.18, 1.17, 1.16.
    #[arg(long, value_name = "RELEASE", value_parser = release_arg)]
    pub cilium_release: Option<CiliumRelease>,
    /// Cilium event types to keep from a saved stream (repeatable): drop, trace, ...
    #[arg(short = 't', long = "type", value_name = "TYPE", value_parser = type_arg)]
    pub types: Vec<MessageKind>,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    /// A tcpdump (pcap-filter) expression: only the packets it matches are kept, as
    /// `tcpdump -r FILE -w OUT EXPRESSION` keeps them.
    #[arg(value_name = "EXPRESSION", trailing_var_arg = true)]
    pub expression: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ReasonsArgs {
    /// Only the kernel's reasons.
    #[arg(long, conflicts_with = "cilium_only")]
    pub kernel_only: bool,
    /// Only Cilium's reasons.
    #[arg(long)]
    pub cilium_only: bool,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

// Flags parsed once into the engine's types; the error is the rest of a sentence that
// starts with the flag and its value (`--type bogus is not a Cilium event type: ...`).

/// `--cilium-release`: main, 1.19, 1.18, 1.17, 1.16 (also `v1.18`, `1.18.4`).
fn release_arg(s: &str) -> std::result::Result<CiliumRelease, String> {
    s.parse()
        .map_err(|_| "is not known: use main, 1.19, 1.18, 1.17 or 1.16".to_string())
}

/// `-t/--type`: the names `cilium monitor -t` takes.
fn type_arg(s: &str) -> std::result::Result<MessageKind, String> {
    s.parse().map_err(|_| {
        let names: Vec<&str> = MessageKind::ALL.iter().map(|k| k.monitor_name()).collect();
        format!("is not a Cilium event type: use {}", names.join(", "))
    })
}

/// `--input-format`.
pub(crate) fn input_format_arg(s: &str) -> std::result::Result<InputFormat, String> {
    s.parse()
}
