//! The command line, declared once: clap builds the parser, `--help`, the completions and
//! the man page from these definitions.

use std::{path::PathBuf, sync::LazyLock, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracer_common::EVENTS_RING_BYTES;

use crate::{
    commands::selection::{self, TimeSpec},
    event::SocketId,
    identity,
    record::RecordedThresholds,
    timeline::{Thresholds, VerdictKind},
};

#[derive(Parser, Debug)]
#[command(
    name = "tracer",
    version,
    about = "See how TCP connections die: retransmits, resets, keepalive probes and timeouts, \
             per socket, with verdicts",
    long_about = "See how TCP connections die.\n\n\
        Kernel probes report retransmits, resets (sent and received), keepalive probes, state \
        changes and socket teardown; tracer rebuilds each socket's timeline and says what \
        happened: dead peers, exhausted retries, connect timeouts, resets and who sent them, \
        applications holding dead sockets, with an early warning before the kernel gives up.\n\n\
        Without a command, `tracer` runs `tracer live`. Tracing needs root (or CAP_BPF and \
        CAP_PERFMON) and a kernel with BTF; `tracer report` needs neither.",
    after_help = "Examples:\n  \
        tracer                              follow every TCP connection on this host\n  \
        tracer live --port 5432 --verdicts  only verdicts, only PostgreSQL traffic\n  \
        tracer top                          what is in trouble right now, full screen\n  \
        tracer record -o trace.jsonl        record a trace for later\n  \
        tracer convert trace.bin -o t.jsonl a binary trace as JSON Lines (or back)\n  \
        tracer report trace.jsonl           timelines and verdicts, no root needed\n  \
        tracer sockets                      find idle connections that could be half-open\n  \
        tracer doctor                       how long until this host notices a dead peer"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Stream events and verdicts as they happen (the default command).
    Live(LiveArgs),
    /// Record a trace (JSON Lines, the schema of `live --json`; or binary) to a file or
    /// stdout.
    Record(RecordArgs),
    /// Full screen, refreshed live: what is in trouble now (unresponsive peers and the time
    /// left before the kernel gives up, retransmitting sockets, dead sockets held,
    /// CLOSE_WAIT, recent verdicts).
    Top(TopArgs),
    /// Run on every node: verdicts and counts as Prometheus metrics and OpenTelemetry log
    /// records, no terminal output, the agent's state as logfmt lines on stderr.
    Agent(crate::commands::agent::AgentArgs),
    /// Rebuild timelines and verdicts from a recorded trace (no privileges needed).
    Report(ReportArgs),
    /// Copy a trace into the other format: a binary trace as JSON Lines (for people and
    /// jq), or JSON Lines as a binary trace (smaller, reported faster).
    Convert(ConvertArgs),
    /// Snapshot of all TCP sockets, flagging idle ones that could be half-open.
    Sockets(SocketsArgs),
    /// This host's readiness: how long until each namespace notices a dead peer, and which
    /// kernel hooks tracing can use.
    Doctor(DoctorArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// What to trace. Applied in the kernel: filtered-out traffic costs no ring-buffer space.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Filters")]
pub struct FilterArgs {
    /// Only sockets owned by this process (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Only sockets owned by processes with this command name (as in /proc/PID/comm).
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,
    /// Only connections with this local or remote port (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Only connections with this local or remote address: an IP or a CIDR (repeatable).
    #[arg(long = "addr", value_name = "IP[/LEN]", value_parser = parse_net)]
    pub addrs: Vec<ipnet::IpNet>,
    /// Only this network namespace: a name (ip netns), an inode number or a path
    /// (/proc/PID/ns/net) (repeatable).
    #[arg(long = "netns", value_name = "NETNS")]
    pub netns: Vec<String>,
    /// Only sockets owned by processes in this container: its id or first digits, as
    /// `docker ps` or `crictl ps` show it (repeatable). --container, --pod and --cgroup
    /// select owners matching any of them; each cgroup is decided in userspace when first
    /// seen, then filtered in the kernel.
    #[arg(long = "container", value_name = "ID-PREFIX")]
    pub containers: Vec<String>,
    /// Only sockets owned by processes in this Kubernetes pod: NAMESPACE/NAME (named from
    /// the pod log directory, see --pod-log-dir), or the pod's uid or its first characters
    /// (repeatable). Containers started later in the pod are traced too.
    #[arg(long = "pod", value_name = "NAMESPACE/NAME")]
    pub pods: Vec<String>,
    /// Only sockets owned by processes in this cgroup or below it: a cgroup v2 path as
    /// /proc/PID/cgroup shows it, e.g. /system.slice/nginx.service (repeatable).
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<String>,
}

/// How owners' containers and pods are named.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Containers")]
pub struct IdentityArgs {
    /// The kubelet's pod log directory (one `NAMESPACE_NAME_UID` directory per pod): where
    /// pods get their namespace and name, for output and --pod.
    #[arg(long, value_name = "DIR", default_value = identity::pods::DEFAULT_POD_LOG_DIR)]
    pub pod_log_dir: PathBuf,
}

impl Default for IdentityArgs {
    fn default() -> Self {
        Self {
            pod_log_dir: PathBuf::from(identity::pods::DEFAULT_POD_LOG_DIR),
        }
    }
}

impl IdentityArgs {
    /// The resolver's configuration.
    pub fn config(&self) -> identity::Config {
        identity::Config {
            pod_log_dir: self.pod_log_dir.clone(),
            ..identity::Config::default()
        }
    }
}

#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Verdict thresholds")]
pub struct ThresholdArgs {
    /// Warn (peer_unresponsive) after this many consecutive RTOs without progress
    /// [default: the namespace's net.ipv4.tcp_retries1, normally 3].
    #[arg(long, value_name = "N")]
    pub warn_after_rtos: Option<u8>,
    /// Flag dead_socket_held when a process still holds a socket this long after the
    /// kernel ended it [default: 30s; `report`: what the trace was recorded with].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub dead_socket_after: Option<Duration>,
    /// Flag close_wait_held when a socket stays this long in CLOSE_WAIT: the peer closed
    /// and the process has not [default: 30s; `report`: as recorded].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub close_wait_after: Option<Duration>,
    /// Flag receiver_stalled when a peer keeps its window closed under zero-window probes
    /// this long [default: 10s; `report`: as recorded].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub receiver_stalled_after: Option<Duration>,
    /// Flag retry_storm when one process has this many unanswered or failed connection
    /// attempts to one peer within --retry-storm-window [default: 10; `report`: as
    /// recorded].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=512))]
    pub retry_storm_attempts: Option<u32>,
    /// The window of --retry-storm-attempts; a storm's verdict repeats once per window
    /// while it lasts [default: 60s; `report`: as recorded].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub retry_storm_window: Option<Duration>,
}

impl ThresholdArgs {
    /// The engine's thresholds: these arguments, else those a trace was recorded with,
    /// else the defaults.
    pub fn thresholds(&self, recorded: Option<RecordedThresholds>) -> Thresholds {
        let base = recorded.map_or_else(Thresholds::default, RecordedThresholds::thresholds);
        Thresholds {
            warn_after_rtos: self.warn_after_rtos.or(base.warn_after_rtos),
            dead_socket_after_ns: self
                .dead_socket_after
                .map_or(base.dead_socket_after_ns, |d| d.as_nanos() as u64),
            close_wait_after_ns: self
                .close_wait_after
                .map_or(base.close_wait_after_ns, |d| d.as_nanos() as u64),
            receiver_stalled_after_ns: self
                .receiver_stalled_after
                .map_or(base.receiver_stalled_after_ns, |d| d.as_nanos() as u64),
            retry_storm_attempts: self
                .retry_storm_attempts
                .unwrap_or(base.retry_storm_attempts),
            retry_storm_window_ns: self
                .retry_storm_window
                .map_or(base.retry_storm_window_ns, |d| d.as_nanos() as u64),
            ..base
        }
    }
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Kernel")]
pub struct KernelArgs {
    /// Ring buffer size (power of two), e.g. 4M, 16M.
    #[arg(long, value_name = "BYTES", default_value = RING_DEFAULT.as_str(), value_parser = parse_size)]
    pub ring_buffer: u32,
}

impl Default for KernelArgs {
    fn default() -> Self {
        Self {
            ring_buffer: EVENTS_RING_BYTES,
        }
    }
}

/// What a tracing session needs, shared by `live` and `record`.
#[derive(Args, Debug, Clone, Default)]
pub struct SessionArgs {
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Do not sweep existing sockets at start.
    #[arg(long)]
    pub no_sweep: bool,
    #[command(flatten)]
    pub filters: FilterArgs,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    #[command(flatten)]
    pub kernel: KernelArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Show {
    Events,
    Verdicts,
    #[default]
    Both,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Args, Debug, Clone, Default)]
pub struct LiveArgs {
    /// Print JSON Lines (the trace format) instead of text.
    #[arg(long)]
    pub json: bool,
    /// What to print.
    #[arg(long, value_enum, default_value_t = Show::Both)]
    pub show: Show,
    /// Shorthand for --show verdicts.
    #[arg(long, conflicts_with = "show")]
    pub verdicts: bool,
    /// Colour verdicts: auto (a terminal without NO_COLOR), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Also show events that tell little (an error report with no error left pending).
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[derive(Args, Debug, Clone, Default)]
pub struct TopArgs {
    /// Colour: auto (unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RecordArgs {
    /// Where to write the trace; `-` for stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// JSON Lines, or the binary trace (a fifth of the size, reported several times
    /// faster; `tracer convert` gives JSON Lines back).
    #[arg(long, value_enum, default_value_t = TraceFormat::Json)]
    pub format: TraceFormat,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// How a trace is written (both are read by every command that reads traces).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// JSON Lines: one record per line (docs/trace-format.md).
    Json,
    /// Binary frames, owners written once (docs/trace-format.md, "Binary traces").
    Binary,
}

#[derive(Args, Debug, Clone)]
pub struct ConvertArgs {
    /// A trace, JSON Lines or binary (gzip-compressed or not); `-` for stdin.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
    /// Where to write the copy; `-` for stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// The copy's format [default: the other one].
    #[arg(long, value_enum)]
    pub format: Option<TraceFormat>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// Per-socket timelines and a verdict summary.
    Text,
    /// Verdicts and timelines as JSON.
    Json,
    /// Chrome trace-event JSON for https://ui.perfetto.dev (one track per socket).
    Perfetto,
    /// One self-contained page (no network needed): the summary, verdicts by kind, and
    /// each socket's timeline drawn as SVG. Attach it to a ticket.
    Html,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// A trace written by `tracer record` or `tracer live --json`; `-` for stdin.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Write the report here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Timelines of every socket, not only of those with a verdict (all formats).
    #[arg(long)]
    pub all: bool,
    /// Text: also list events that tell little (an error report with no error left pending).
    #[arg(short, long)]
    pub verbose: bool,
    /// Only this socket, with or without a verdict: its number as in the trace, or sk:HEX
    /// as `ss -e` shows it (repeatable).
    #[arg(long = "socket", value_name = "ID", value_parser = selection::parse_socket, help_heading = "Selection")]
    pub sockets: Vec<SocketId>,
    /// Only sockets that got this verdict, and verdicts of this kind (repeatable).
    #[arg(long = "verdict", value_name = "KIND", value_parser = selection::parse_verdict, help_heading = "Selection")]
    pub verdicts: Vec<VerdictKind>,
    /// Only sockets with events from this time on (whole timelines), and verdicts from it:
    /// HH:MM[:SS[.mmm]] (local time, on the day the trace started), an RFC 3339 time, or
    /// +DURATION after the trace's start.
    #[arg(long, value_name = "TIME", value_parser = selection::parse_time, help_heading = "Selection")]
    pub since: Option<TimeSpec>,
    /// Only sockets with events until this time, and verdicts until it (as --since).
    #[arg(long, value_name = "TIME", value_parser = selection::parse_time, help_heading = "Selection")]
    pub until: Option<TimeSpec>,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

#[derive(Args, Debug, Clone)]
pub struct SocketsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Flag ESTABLISHED sockets without keepalive idle longer than this (half_open_risk).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub idle_threshold: Duration,
    /// Flag CLOSE_WAIT sockets idle longer than this: the peer closed and the owner has not
    /// (close_wait_held).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub close_wait_after: Duration,
    /// Only sockets in these network namespaces (name, inode or path; repeatable).
    #[arg(long = "netns", value_name = "NETNS")]
    pub netns: Vec<String>,
    /// Only flagged sockets.
    #[arg(long)]
    pub flagged: bool,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 5m, 1h)"))
}

/// An address (a /32 or /128) or a CIDR network.
pub fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(addr) = s.parse::<std::net::IpAddr>() {
        return Ok(addr.into());
    }
    s.parse::<ipnet::IpNet>()
        .map_err(|_| format!("not an IP address or CIDR: {s:?}"))
}

/// The default `--ring-buffer`, as the user would write it.
static RING_DEFAULT: LazyLock<String> = LazyLock::new(|| size_text(EVENTS_RING_BYTES));

/// A size as `parse_size` reads it: `4M`, `256K`, `4096`.
fn size_text(bytes: u32) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}K", b >> 10),
        b => b.to_string(),
    }
}

pub fn parse_size(s: &str) -> Result<u32, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let n: u64 = digits.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let bytes = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => n,
        "K" => n << 10,
        "M" => n << 20,
        "G" => n << 30,
        _ => return Err(format!("unknown unit in {s:?} (use K, M or G)")),
    };
    if !bytes.is_power_of_two() || bytes < 4096 || bytes > u64::from(u32::MAX) {
        return Err(format!(
            "{s:?}: the ring buffer must be a power of two between 4K and 2G"
        ));
    }
    Ok(bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        for bytes in [EVENTS_RING_BYTES, 4096, 256 << 10, 1 << 30] {
            assert_eq!(parse_size(&size_text(bytes)), Ok(bytes));
        }
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert!(parse_size("3M").is_err());
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("soon").is_err());
    }
}
