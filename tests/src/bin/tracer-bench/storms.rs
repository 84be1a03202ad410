//! The side-by-side: every storm with no tool, under bpftrace (one `printf` per event on the
//! TCP tracepoints, as an on-call engineer would run it) and under `tracer record` (in each
//! trace format), in rounds that alternate the tools, so that a shared, noisy host loads
//! them alike. One table: the storm's rate and its ratio to no tool, each tool's CPU over
//! its whole run (start-up included, as `time` would say) and peak RSS, what it recorded,
//! and its fidelity against the kernel's own counters.
//!
//! | storm | rate | fidelity |
//! |---|---|---|
//! | clean bulk: one connection, 64 KiB writes | MB/s | (nothing to see) |
//! | 2% loss bulk: 4 × 192 MiB through 2% random loss | MB/s | segments ÷ RetransSegs |
//! | keepalive: idle connections probing a blackholed peer | (timers) | probes ÷ Σ icsk_probes_out |
//! | connect: one thread connecting to a closed port | connects/s | resets ÷ OutRsts |

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use socket2::SockRef;
use tracer::{event::EventKind, record::Record, timeline::VerdictKind, trace_file::TraceReader};
use tracer_tests::{
    Hosts,
    scenario::RetransSegs,
    tracer::{start_timeout, tracer_bin},
    wait_until,
};

use super::measure::{
    Usage, backlog_drops, bulk, bulk_transfers, connections_between, cpu_of, freeze_probes,
    out_dir, probe_every_second, raise_fd_limit, usage_at_exit, watch_peak_rss,
};

/// A tool under measurement.
#[derive(Debug, Clone)]
pub(crate) enum Tool {
    None,
    Bpftrace,
    /// `tracer record` with these extra arguments (a trace format).
    Tracer {
        label: &'static str,
        args: Vec<&'static str>,
    },
}

impl Tool {
    pub(crate) fn label(&self) -> String {
        match self {
            Tool::None => "no tool".into(),
            Tool::Bpftrace => "bpftrace".into(),
            Tool::Tracer { label, .. } => (*label).into(),
        }
    }
}

/// The tools each storm runs under, in the order of a round.
pub(crate) fn tools() -> Vec<Tool> {
    vec![
        Tool::None,
        Tool::Bpftrace,
        Tool::Tracer {
            label: "tracer record",
            args: vec![],
        },
        // The same records in the binary layout: what writing JSON costs, side by side.
        Tool::Tracer {
            label: "tracer record --format binary",
            args: vec!["--format", "binary"],
        },
    ]
}

/// One storm under one tool.
#[derive(Debug, Clone, Default)]
pub(crate) struct Round {
    /// The storm's rate (its unit is the storm's); None where timers set the pace.
    pub(crate) rate: Option<f64>,
    pub(crate) usage: Usage,
    /// The tool's CPU until it was attached.
    pub(crate) startup_cpu: Duration,
    /// The tool's CPU while the storm ran.
    pub(crate) storm_cpu: Duration,
    /// Records the tool wrote (trace events, or bpftrace's lines).
    pub(crate) records: u64,
    /// (seen by the tool, counted by the kernel).
    pub(crate) fidelity: Option<(u64, u64)>,
    pub(crate) lost: u64,
}

/// Every round of one storm, per tool.
pub(crate) struct Storm {
    pub(crate) name: &'static str,
    pub(crate) rate_unit: &'static str,
    /// What fidelity compares.
    pub(crate) fidelity: &'static str,
    pub(crate) rows: Vec<(Tool, Vec<Round>)>,
}

/// How many rounds of each rate-bound storm (TRACER_BENCH_ROUNDS, default 3).
fn rounds() -> usize {
    std::env::var("TRACER_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1)
}

pub(crate) fn storms() -> Vec<Storm> {
    let tools = tools();
    let mut out = Vec::new();
    let hosts = Hosts::new("bench-sbs");
    out.push(alternate(
        "clean bulk: one connection, 64 KiB writes, 3 s",
        "MB/s",
        "",
        &tools,
        rounds(),
        |tool| clean_bulk(&hosts, tool),
    ));
    // The connect storm also runs under the tracer with a filter nothing passes: every
    // program runs and reads its socket, none writes a record. Its ratio is the most any
    // cheaper record could give back.
    let mut with_floor = tools.clone();
    with_floor.push(Tool::Tracer {
        label: "tracer record, every event filtered out in the kernel",
        args: vec!["--port", "1"],
    });
    out.push(alternate(
        "connect storm: one thread connecting to a closed port, 5 s",
        "connects/s",
        "reset_sent ÷ OutRsts",
        &with_floor,
        rounds(),
        |tool| connect_storm(&hosts, tool, Duration::from_secs(5)),
    ));
    drop(hosts);
    let lossy = Hosts::new("bench-sbs-loss");
    lossy.server.nft(
        "table inet t {\n chain in {\n type filter hook input priority 0;\n numgen random mod 100 < 2 drop\n }\n}\n",
    );
    out.push(alternate(
        "2% loss bulk: 4 × 192 MiB through 2% random loss",
        "MB/s",
        "segments ÷ RetransSegs",
        &tools,
        rounds(),
        |tool| loss_bulk(&lossy, tool),
    ));
    drop(lossy);
    out.push(alternate(
        "keepalive storm: 2000 idle connections probing a blackholed peer each second, 15 s",
        "",
        "probes ÷ Σ icsk_probes_out",
        &tools[1..],
        1,
        |tool| keepalive(tool, 2000, 15),
    ));
    out
}

fn alternate(
    name: &'static str,
    rate_unit: &'static str,
    fidelity: &'static str,
    tools: &[Tool],
    rounds: usize,
    mut run: impl FnMut(&Tool) -> Round,
) -> Storm {
    let mut rows: Vec<(Tool, Vec<Round>)> = tools.iter().map(|t| (t.clone(), Vec::new())).collect();
    for round in 0..rounds {
        for (tool, results) in &mut rows {
            eprintln!("bench: {name}: round {}, {}", round + 1, tool.label());
            results.push(run(tool));
        }
    }
    Storm {
        name,
        rate_unit,
        fidelity,
        rows,
    }
}

/// A tool attached and waiting for the storm.
struct Running {
    child: Option<Child>,
    /// `perf record` attached to the tool for the storm, when profiling.
    perf: Option<Child>,
    startup_cpu: Duration,
    output: PathBuf,
    /// CPU when the storm started.
    cpu_at_storm: Duration,
}

const BPFTRACE_SCRIPT: &str = r#"
tracepoint:tcp:tcp_retransmit_skb { printf("retransmit %d %d\n", args->sport, args->dport); }
tracepoint:tcp:tcp_send_reset { printf("reset_sent\n"); }
tracepoint:tcp:tcp_receive_reset { printf("reset_received %d\n", args->sport); }
"#;

impl Running {
    fn start(tool: &Tool, hosts: &Hosts, tag: &str) -> Running {
        let output = out_dir().join(format!("sbs-{tag}"));
        let _ = std::fs::remove_file(&output);
        let child = match tool {
            Tool::None => None,
            Tool::Bpftrace => Some(start_bpftrace(&output)),
            Tool::Tracer { args, .. } => {
                let child = Command::new(tracer_bin())
                    .args(["record", "-o", output.to_str().unwrap(), "--no-sweep"])
                    .args(hosts.netns_args())
                    .args(args)
                    .stderr(File::create(output.with_extension("stderr")).unwrap())
                    .spawn()
                    .expect("spawn tracer");
                // The header is on disk once the programs are attached.
                wait_until(start_timeout(), "the recorder's header record", || {
                    TraceReader::open(&output).ok()
                });
                Some(child)
            }
        };
        let startup_cpu = child.as_ref().map_or(Duration::ZERO, |c| cpu_of(c.id()));
        Running {
            child,
            perf: None,
            startup_cpu,
            output,
            cpu_at_storm: startup_cpu,
        }
    }

    fn storm_starts(&mut self) {
        if let Some(c) = &self.child {
            self.cpu_at_storm = cpu_of(c.id());
            let profile = PROFILE.lock().unwrap().clone();
            if let Some(data) = profile {
                let perf = Command::new("perf")
                    .args(["record", "-F", "1999", "-o", data.to_str().unwrap(), "-p"])
                    .arg(c.id().to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("perf record (Debian: linux-perf)");
                // perf is attached once it has opened its output.
                wait_until(Duration::from_secs(10), "perf record", || {
                    data.metadata().ok().filter(|m| m.len() > 0)
                });
                self.perf = Some(perf);
            }
        }
    }

    /// SIGINT (the tracer drains and writes its end record), then its usage.
    fn stop(self) -> (Usage, Duration, Duration, PathBuf) {
        let Some(child) = self.child else {
            return (
                Usage::default(),
                Duration::ZERO,
                Duration::ZERO,
                self.output,
            );
        };
        let storm_cpu = cpu_of(child.id()).saturating_sub(self.cpu_at_storm);
        if let Some(mut perf) = self.perf {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(perf.id() as i32, libc::SIGINT) };
            let _ = perf.wait();
        }
        let peak = watch_peak_rss(child.id());
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        (
            usage_at_exit(child, peak),
            self.startup_cpu,
            storm_cpu,
            self.output,
        )
    }
}

fn start_bpftrace(output: &Path) -> Child {
    let mut child = Command::new("bpftrace")
        .args(["-e", BPFTRACE_SCRIPT])
        .stdout(File::create(output).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bpftrace");
    // bpftrace prints "Attaching N probes..." once it is ready.
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let _ = lines.next();
    thread::spawn(move || for _ in lines {});
    // Attaching is reported just before the probes go live.
    thread::sleep(Duration::from_millis(200));
    child
}

/// What bpftrace printed: lines by their first word, and the events it reported lost.
fn bpftrace_lines(path: &Path) -> (HashMap<String, u64>, u64) {
    let mut words = HashMap::new();
    let mut lost = 0;
    let Ok(file) = File::open(path) else {
        return (words, lost);
    };
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        // "Lost 123 events"
        if let Some(n) = line
            .strip_prefix("Lost ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
        {
            lost += n;
            continue;
        }
        let word = line.split_whitespace().next().unwrap_or("").to_owned();
        *words.entry(word).or_default() += 1;
    }
    (words, lost)
}

/// Where `perf record` writes while profiling (None: not profiling).
static PROFILE: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// One profile: where the CPU of `tracer record` went during a storm.
pub(crate) struct Profile {
    pub(crate) storm: &'static str,
    pub(crate) tool: String,
    pub(crate) round: Round,
    /// `perf report`'s top symbols.
    pub(crate) top: String,
}

/// `perf record` on the tracer while the connect storm runs (not its start-up), and over
/// its start-up and 2 s of idling: the top symbols of each.
pub(crate) fn profiles() -> Vec<Profile> {
    let mut out = Vec::new();
    for tool in tools()
        .into_iter()
        .filter(|t| matches!(t, Tool::Tracer { .. }))
    {
        let label = tool.label().replace(' ', "-");
        let mut profile = |storm: &'static str, run: &mut dyn FnMut(&Tool) -> Round| {
            let data = out_dir().join(format!("perf-{}-{label}.data", storm.replace(' ', "-")));
            let _ = std::fs::remove_file(&data);
            *PROFILE.lock().unwrap() = Some(data.clone());
            let round = run(&tool);
            *PROFILE.lock().unwrap() = None;
            out.push(Profile {
                storm,
                tool: tool.label(),
                round,
                top: top_symbols(&data),
            });
        };
        let hosts = Hosts::new("bench-prof");
        profile("connect storm", &mut |tool| {
            connect_storm(&hosts, tool, Duration::from_secs(5))
        });
        // Start-up and idling: where the CPU goes when events are few (the 2% loss bulk
        // and the keepalive storm cost the tracer next to nothing beyond this).
        let data = out_dir().join(format!("perf-startup-{label}.data"));
        let Tool::Tracer { args, .. } = &tool else {
            continue;
        };
        let status = Command::new("perf")
            .args(["record", "-F", "1999", "-o", data.to_str().unwrap(), "--"])
            .arg(tracer_bin())
            .args([
                "record",
                "-o",
                "/dev/null",
                "--no-sweep",
                "--duration",
                "2s",
            ])
            .args(hosts.netns_args())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("perf record");
        assert!(status.success(), "perf record -- tracer record: {status}");
        out.push(Profile {
            storm: "start-up and 2 s idle (`--duration 2s`)",
            tool: tool.label(),
            round: Round::default(),
            top: top_symbols(&data),
        });
    }
    out
}

/// `perf report`'s top symbols in a profile.
fn top_symbols(data: &Path) -> String {
    let report = Command::new("perf")
        .args([
            "report",
            "--no-children",
            "--sort",
            "dso,symbol",
            "--stdio",
            "-i",
        ])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let top: Vec<String> = report
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(25)
        // perf pads every line to the terminal's width.
        .map(|l| l.trim_end().trim_end_matches(['-', ' ']).to_owned())
        .collect();
    top.join("\n")
}

/// A trace, counted as it streams by (a connect storm's trace holds millions of events).
#[derive(Default)]
struct Counts {
    events: u64,
    /// (netns, kind) → events.
    by_kind: HashMap<(u32, EventKind), u64>,
    /// Retransmitted segments as RetransSegs counts them, per namespace.
    segments: HashMap<u32, u64>,
    verdicts: HashMap<VerdictKind, u64>,
    lost: u64,
}

impl Counts {
    fn read(path: &Path) -> Counts {
        let (mut reader, _) =
            TraceReader::open(path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        let mut counts = Counts::default();
        let mut retrans_segs = RetransSegs::default();
        while let Some(record) = reader.next_record().expect("a readable trace") {
            match record {
                Record::Event(e) => {
                    counts.events += 1;
                    *counts.by_kind.entry((e.conn.netns, e.kind)).or_default() += 1;
                    let counted = retrans_segs.add(&e);
                    *counts.segments.entry(e.conn.netns).or_default() += counted;
                }
                Record::Verdict(v) => *counts.verdicts.entry(v.verdict).or_default() += 1,
                Record::End(end) => counts.lost = end.lost + end.kernel_skipped,
                Record::Header(_) | Record::Lost(_) => {}
            }
        }
        counts
    }

    fn kind(&self, netns: u32, kind: EventKind) -> u64 {
        self.by_kind.get(&(netns, kind)).copied().unwrap_or(0)
    }
}

/// What a tool wrote, read back.
enum Seen {
    Nothing,
    /// bpftrace's lines by their first word.
    Lines(HashMap<String, u64>),
    Trace(Counts),
}

impl Seen {
    /// Lines of bpftrace starting with `word`.
    fn lines(&self, word: &str) -> u64 {
        match self {
            Seen::Lines(lines) => lines.get(word).copied().unwrap_or(0),
            _ => 0,
        }
    }
}

/// Stops the tool and fills in what every round reports.
fn finish(tool: &Tool, running: Running, rate: Option<f64>) -> (Round, Seen) {
    let (usage, startup_cpu, storm_cpu, output) = running.stop();
    let mut round = Round {
        rate,
        usage,
        startup_cpu,
        storm_cpu,
        ..Round::default()
    };
    let seen = match tool {
        Tool::None => Seen::Nothing,
        Tool::Bpftrace => {
            let (lines, lost) = bpftrace_lines(&output);
            round.records = lines.values().sum();
            round.lost = lost;
            Seen::Lines(lines)
        }
        Tool::Tracer { .. } => {
            let counts = Counts::read(&output);
            round.records = counts.events;
            round.lost = counts.lost;
            Seen::Trace(counts)
        }
    };
    (round, seen)
}

fn clean_bulk(hosts: &Hosts, tool: &Tool) -> Round {
    let mut running = Running::start(tool, hosts, "clean-bulk");
    running.storm_starts();
    let rate = bulk(hosts, 64 * 1024, 3.0) / 1e6;
    thread::sleep(Duration::from_millis(200));
    finish(tool, running, Some(rate)).0
}

/// Connects from one thread to a closed port for `secs`: SYN, RST back, ECONNREFUSED.
fn connect_storm(hosts: &Hosts, tool: &Tool, secs: Duration) -> Round {
    let mut running = Running::start(tool, hosts, "connect-storm");
    let before = hosts.server.snmp();
    running.storm_starts();
    let (connects, took) = hosts.client.run_in("connector", move || {
        let to = SocketAddr::new(Hosts::server_addr(false), 9);
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < secs {
            let _ = TcpStream::connect(to);
            n += 1;
        }
        (n, started.elapsed())
    });
    thread::sleep(Duration::from_millis(500));
    let out_rsts = hosts.server.snmp().delta(&before, "Tcp.OutRsts") as u64;
    let (mut round, seen) = finish(tool, running, Some(connects as f64 / took.as_secs_f64()));
    round.fidelity = match &seen {
        Seen::Trace(c) if c.events == 0 => None,
        Seen::Trace(c) => Some((c.kind(hosts.server.inode, EventKind::ResetSent), out_rsts)),
        Seen::Lines(_) => Some((seen.lines("reset_sent"), out_rsts)),
        Seen::Nothing => None,
    };
    round
}

/// Bytes each of the 4 lossy transfers sends.
const LOSSY_BYTES: usize = 192 << 20;

fn loss_bulk(hosts: &Hosts, tool: &Tool) -> Round {
    let mut running = Running::start(tool, hosts, "loss-bulk");
    let before = hosts.client.snmp();
    running.storm_starts();
    let took = bulk_transfers(hosts, 4, LOSSY_BYTES);
    thread::sleep(Duration::from_millis(500));
    let kernel = hosts.client.snmp().delta(&before, "Tcp.RetransSegs") as u64;
    let rate = (4 * LOSSY_BYTES) as f64 / took.as_secs_f64() / 1e6;
    let (mut round, seen) = finish(tool, running, Some(rate));
    round.fidelity = match &seen {
        Seen::Trace(c) => Some((
            c.segments.get(&hosts.client.inode).copied().unwrap_or(0),
            kernel,
        )),
        Seen::Lines(_) => Some((seen.lines("retransmit"), kernel)),
        Seen::Nothing => None,
    };
    round
}

fn keepalive(tool: &Tool, connections: usize, secs: u64) -> Round {
    let hosts = Hosts::new("bench-sbs-ka");
    raise_fd_limit(connections as u64 * 2 + 256);
    let (clients, servers) = connections_between(&hosts, connections, "ka-storm");
    let drops_before = backlog_drops();
    let mut running = Running::start(tool, &hosts, "keepalive");
    hosts.client.blackhole_from(Hosts::server_addr(false));
    running.storm_starts();
    probe_every_second(&clients);
    thread::sleep(Duration::from_secs(secs));
    let probes_out = freeze_probes(&hosts, &clients);
    thread::sleep(Duration::from_millis(300));
    let (mut round, seen) = finish(tool, running, None);
    if let Seen::Trace(c) = &seen {
        round.fidelity = Some((
            c.kind(hosts.client.inode, EventKind::KeepaliveProbe),
            probes_out,
        ));
    }
    if backlog_drops() > drops_before {
        eprintln!(
            "bench: keepalive storm: {} packets dropped by full backlogs",
            backlog_drops() - drops_before
        );
    }
    // Abort rather than close: a closed socket toward a blackholed peer would live on as an
    // orphan retransmitting its FIN for minutes, loading every later measurement.
    for c in clients {
        SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
    }
    drop(servers);
    round
}
