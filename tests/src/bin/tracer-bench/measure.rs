//! The measurements: storms in network namespaces, the tracer (and bpftrace) under them,
//! and what the kernel and the traces say afterwards. Each returns its figures; `report.rs`
//! writes them down.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use socket2::{SockRef, TcpKeepalive};
use tracer::{
    event::{Event, EventKind, SocketId},
    record::{Record, WallClock},
    timeline::VerdictKind,
    trace_file::TraceReader,
};
use tracer_tests::{
    Hosts,
    scenario::{ClientOptions, connect, listen, retransmitted_segments},
    tracer::{start_timeout, tracer_bin},
    wait_until,
};

/// Where the traces and the report go.
pub(crate) fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// CPU time and peak memory of a finished process.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Usage {
    pub(crate) cpu: Duration,
    pub(crate) max_rss_kib: i64,
}

/// A `tracer` (or `bpftrace`) process under measurement.
struct Measured {
    child: Child,
    /// From spawning to attached.
    ready_after: Duration,
}

impl Measured {
    /// SIGINT (the tracer drains and writes its end record), then its usage.
    fn stop(self) -> Usage {
        let peak = watch_peak_rss(self.child.id());
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        usage_at_exit(self.child, peak)
    }
}

/// The child's own peak RSS (VmHWM), sampled until it exits. wait4's ru_maxrss would
/// include the parent's memory at spawn time (vfork + exec carries the old high-water mark).
pub(crate) fn watch_peak_rss(pid: u32) -> thread::JoinHandle<i64> {
    thread::spawn(move || {
        let mut peak = 0;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            else {
                break;
            };
            peak = peak.max(kib);
            thread::sleep(Duration::from_millis(20));
        }
        peak
    })
}

/// Waits for `child` to exit (wait4) and returns the CPU time it used and the peak RSS
/// `peak` saw.
pub(crate) fn usage_at_exit(child: Child, peak: thread::JoinHandle<i64>) -> Usage {
    let pid = child.id() as i32;
    let mut status = 0;
    let mut signalled = Instant::now();
    // SAFETY: rusage is plain data.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 only writes into the two out-pointers.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if rc == pid {
            break;
        }
        assert_eq!(rc, 0, "wait4({pid}): {}", std::io::Error::last_os_error());
        // bpftrace 0.17 once let a SIGINT pass and ran on until the run was killed: the
        // signal is sent again rather than waiting forever.
        if signalled.elapsed() > Duration::from_secs(10) {
            eprintln!("bench: pid {pid} still running 10 s after SIGINT: sent again");
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGINT) };
            signalled = Instant::now();
        }
        thread::sleep(Duration::from_millis(20));
    }
    Usage {
        cpu: Duration::from_secs(ru.ru_utime.tv_sec as u64 + ru.ru_stime.tv_sec as u64)
            + Duration::from_micros(ru.ru_utime.tv_usec as u64 + ru.ru_stime.tv_usec as u64),
        max_rss_kib: peak.join().unwrap_or(0),
    }
}

/// Reads the tracer's first record, which must be its header: the signal that the
/// programs are attached (as the tests wait for it).
fn read_header(first_line: &str) -> Option<WallClock> {
    match Record::parse(first_line.trim_end()) {
        Ok(Record::Header(h)) => Some(WallClock {
            boot_to_wall_offset_ns: h.boot_to_wall_offset_ns,
        }),
        _ => None,
    }
}

/// `tracer record` into `path`, returning once its header record is on disk.
fn start_recorder(path: &Path, args: &[String]) -> Measured {
    let _ = std::fs::remove_file(path);
    let started = Instant::now();
    let child = Command::new(tracer_bin())
        .args(["record", "-o", path.to_str().unwrap(), "--no-sweep"])
        .args(args)
        .stderr(File::create(path.with_extension("stderr")).unwrap())
        .spawn()
        .expect("spawn tracer");
    wait_until(start_timeout(), "the recorder's header record", || {
        let text = std::fs::read_to_string(path).ok()?;
        let (first, _) = text.split_once('\n')?;
        read_header(first)
    });
    Measured {
        child,
        ready_after: started.elapsed(),
    }
}

/// `tracer live --json`, returning once its header record is out; the rest of its output
/// is read and dropped.
fn start_live(args: &[&str]) -> Child {
    let mut child = Command::new(tracer_bin())
        .args(["live", "--json", "--no-sweep"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tracer");
    let mut out: BufReader<ChildStdout> = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).expect("the tracer's output");
    assert!(
        read_header(&first).is_some(),
        "the tracer's first record is not its header: {first}"
    );
    thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    child
}

const BPFTRACE_SCRIPT: &str = r#"
tracepoint:tcp:tcp_retransmit_skb { printf("retransmit %d %d\n", args->sport, args->dport); }
tracepoint:tcp:tcp_send_reset { printf("reset_sent\n"); }
tracepoint:tcp:tcp_receive_reset { printf("reset_received %d\n", args->sport); }
"#;

/// bpftrace printing one line per retransmit/reset, as an on-call engineer would run it.
fn start_bpftrace(output: &Path) -> Option<Measured> {
    let started = Instant::now();
    let mut child = Command::new("bpftrace")
        .args(["-e", BPFTRACE_SCRIPT])
        .stdout(File::create(output).ok()?)
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    // bpftrace prints "Attaching N probes..." once it is ready.
    let stderr = child.stderr.take()?;
    let mut lines = BufReader::new(stderr).lines();
    let ready = lines.next().is_some();
    thread::spawn(move || for _ in lines {});
    // Attaching is reported just before the probes go live.
    thread::sleep(Duration::from_millis(200));
    ready.then(|| Measured {
        child,
        ready_after: started.elapsed(),
    })
}

/// A recorded trace, typed: its events, its verdicts' kinds, and what its end record says
/// was lost.
pub(crate) struct Trace {
    pub(crate) events: Vec<Event>,
    pub(crate) verdicts: Vec<VerdictKind>,
    pub(crate) lost: u64,
}

impl Trace {
    fn read(path: &Path) -> Trace {
        let (mut reader, _) =
            TraceReader::open(path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        let mut trace = Trace {
            events: Vec::new(),
            verdicts: Vec::new(),
            lost: 0,
        };
        while let Some(record) = reader.next_record().expect("a readable trace") {
            match record {
                Record::Event(e) => trace.events.push(*e),
                Record::Verdict(v) => trace.verdicts.push(v.verdict),
                Record::End(end) => trace.lost = end.lost,
                Record::Header(_) | Record::Lost(_) => {}
            }
        }
        trace
    }

    /// Events of `kind` in namespace `netns`.
    fn count(&self, netns: u32, kind: EventKind) -> u64 {
        self.events
            .iter()
            .filter(|e| e.kind == kind && e.conn.netns == netns)
            .count() as u64
    }
}

/// Kernel cost of one program over a measurement: calls and ns per call (bpf_stats).
pub(crate) struct Cost {
    pub(crate) program: String,
    pub(crate) calls: u64,
    pub(crate) ns_per_call: f64,
}

/// Per-program run time and run count (bpf_stats) of the given programs.
fn program_stats(ids: &[u32]) -> BTreeMap<String, (u64, u64)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()))
        .map(|p| {
            (
                p.name_as_str().unwrap_or("?").to_owned(),
                (p.run_time().as_nanos() as u64, p.run_count()),
            )
        })
        .collect()
}

/// The programs of one tracer process, whose cost is measured from `start` to `costs`.
struct ProgramCosts {
    ids: Vec<u32>,
    before: BTreeMap<String, (u64, u64)>,
}

impl ProgramCosts {
    fn start(tracer: &Measured) -> ProgramCosts {
        let ids = tracer_tests::tracer::program_ids_of(tracer.child.id());
        let before = program_stats(&ids);
        ProgramCosts { ids, before }
    }

    /// The programs that ran since `start`.
    fn costs(&self) -> Vec<Cost> {
        program_stats(&self.ids)
            .into_iter()
            .filter_map(|(program, (t1, c1))| {
                let (t0, c0) = self.before.get(&program).copied().unwrap_or((0, 0));
                let calls = c1 - c0;
                (calls > 0).then(|| Cost {
                    program,
                    calls,
                    ns_per_call: (t1 - t0) as f64 / calls as f64,
                })
            })
            .collect()
    }
}

/// Bulk transfer client → server for `secs`, writes of `chunk` bytes; returns bytes/s.
pub(crate) fn bulk(hosts: &Hosts, chunk: usize, secs: f64) -> f64 {
    let listener = listen(&hosts.server, Hosts::server_addr(false), 0);
    let port = listener.local_addr().unwrap().port();
    let to = SocketAddr::new(Hosts::server_addr(false), port);
    let mut client = connect(&hosts.client, "bulk", to, ClientOptions::default()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        while let Ok(n) = server.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let data = vec![7u8; chunk];
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        client.write_all(&data).unwrap();
    }
    drop(client);
    let total = reader.join().unwrap();
    total as f64 / start.elapsed().as_secs_f64()
}

/// Clean bulk transfers with and without an unfiltered tracer, alternating.
pub(crate) struct Throughput {
    pub(crate) chunk: usize,
    /// Bytes/s of each round.
    pub(crate) without: Vec<f64>,
    pub(crate) with: Vec<f64>,
    /// Calls of the drop hook (every packet the host dropped) over the rounds with the
    /// tracer: a clean transfer drops next to nothing.
    pub(crate) drop_calls: u64,
}

pub(crate) fn throughput() -> Vec<Throughput> {
    let hosts = Hosts::new("bench-tput");
    [64 * 1024, 1024]
        .into_iter()
        .map(|chunk| {
            let (mut without, mut with) = (Vec::new(), Vec::new());
            let mut drop_calls = 0;
            for _ in 0..7 {
                without.push(bulk(&hosts, chunk, 3.0));
                let mut tracer = start_live(&[]);
                let ids = tracer_tests::tracer::program_ids_of(tracer.id());
                let drops = |stats: BTreeMap<String, (u64, u64)>| -> u64 {
                    stats
                        .iter()
                        .filter(|(name, _)| name.starts_with("tr_drop"))
                        .map(|(_, (_, calls))| calls)
                        .sum()
                };
                let before = drops(program_stats(&ids));
                with.push(bulk(&hosts, chunk, 3.0));
                drop_calls += drops(program_stats(&ids)) - before;
                // SAFETY: signalling our own child.
                unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
                let _ = tracer.wait();
            }
            Throughput {
                chunk,
                without,
                with,
                drop_calls,
            }
        })
        .collect()
}

/// Bytes each of the 4 retransmit-storm transfers sends.
pub(crate) const STORM_BYTES: usize = 192 << 20;

/// What a tracing tool cost over a storm: start-up, then CPU and memory.
pub(crate) struct ToolCost {
    pub(crate) ready_after: Duration,
    pub(crate) usage: Usage,
}

/// bpftrace beside the tracer.
pub(crate) struct Bpftrace {
    pub(crate) retransmit_lines: u64,
    pub(crate) cost: ToolCost,
}

/// What the trace shows of the retransmits the kernel counted.
pub(crate) struct Retransmits {
    /// The client namespace's RetransSegs delta.
    pub(crate) kernel_segments: u64,
    pub(crate) traced_segments: u64,
    pub(crate) events: u64,
    pub(crate) lost: u64,
}

pub(crate) struct RetransmitStorm {
    pub(crate) storm: Duration,
    pub(crate) seen: Retransmits,
    pub(crate) tracer: ToolCost,
    pub(crate) bpftrace: Option<Bpftrace>,
    pub(crate) costs: Vec<Cost>,
    /// The recorded trace (the source of the report speed test).
    pub(crate) trace: PathBuf,
}

pub(crate) fn retransmit_storm() -> RetransmitStorm {
    let hosts = Hosts::new("bench-rtx");
    let path = out_dir().join("retransmit-storm.jsonl");
    let recorder = start_recorder(&path, &hosts.netns_args());
    let programs = ProgramCosts::start(&recorder);
    let bpftrace_out = out_dir().join("bpftrace-retransmit.txt");
    let bpftrace = start_bpftrace(&bpftrace_out);
    let before = hosts.client.snmp();
    hosts.server.nft(
        "table inet t {\n chain in {\n type filter hook input priority 0;\n numgen random mod 100 < 2 drop\n }\n}\n",
    );
    let storm = bulk_transfers(&hosts, 4, STORM_BYTES);
    thread::sleep(Duration::from_millis(500));
    let after = hosts.client.snmp();
    let costs = programs.costs();
    let bpftrace = bpftrace.map(|b| {
        let ready_after = b.ready_after;
        let usage = b.stop();
        let retransmit_lines = std::fs::read_to_string(&bpftrace_out)
            .map(|t| t.lines().filter(|l| l.starts_with("retransmit")).count() as u64)
            .unwrap_or(0);
        Bpftrace {
            retransmit_lines,
            cost: ToolCost { ready_after, usage },
        }
    });
    let ready_after = recorder.ready_after;
    let usage = recorder.stop();
    let trace = Trace::read(&path);
    let netns = hosts.client.inode;
    RetransmitStorm {
        storm,
        seen: Retransmits {
            kernel_segments: after.delta(&before, "Tcp.RetransSegs") as u64,
            traced_segments: retransmitted_segments(&trace.events, netns),
            events: trace.count(netns, EventKind::Retransmit),
            lost: trace.lost,
        },
        tracer: ToolCost { ready_after, usage },
        bpftrace,
        costs,
        trace: path,
    }
}

pub(crate) struct KeepaliveStorm {
    pub(crate) connections: usize,
    pub(crate) secs: u64,
    /// Σ icsk_probes_out from sock_diag after freezing: the probes the kernel sent.
    pub(crate) probes_out: u64,
    pub(crate) traced: u64,
    pub(crate) lost: u64,
    /// The client namespace's TCPKeepAlive delta.
    pub(crate) kernel_keepalive: u64,
    pub(crate) backlog_drops: u64,
    pub(crate) usage: Usage,
    pub(crate) costs: Vec<Cost>,
}

pub(crate) fn keepalive_storm(connections: usize) -> KeepaliveStorm {
    let hosts = Hosts::new("bench-ka");
    raise_fd_limit(connections as u64 * 2 + 256);
    let (clients, servers) = connections_between(&hosts, connections, "ka-storm");
    let path = out_dir().join("keepalive-storm.jsonl");
    let drops_before = backlog_drops();
    let recorder = start_recorder(&path, &hosts.netns_args());
    let programs = ProgramCosts::start(&recorder);
    let before = hosts.client.snmp();
    hosts.client.blackhole_from(Hosts::server_addr(false));
    probe_every_second(&clients);
    let secs = 15;
    thread::sleep(Duration::from_secs(secs));
    let probes_out = freeze_probes(&hosts, &clients);
    let after = hosts.client.snmp();
    let costs = programs.costs();
    thread::sleep(Duration::from_millis(300));
    let usage = recorder.stop();
    let trace = Trace::read(&path);
    // Abort rather than close: a closed socket toward a blackholed peer would live on as an
    // orphan retransmitting its FIN for minutes, loading every later measurement.
    for c in clients {
        SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
    }
    drop(servers);
    KeepaliveStorm {
        connections,
        secs,
        probes_out,
        traced: trace.count(hosts.client.inode, EventKind::KeepaliveProbe),
        lost: trace.lost,
        kernel_keepalive: after.delta(&before, "TcpExt.TCPKeepAlive") as u64,
        backlog_drops: backlog_drops() - drops_before,
        usage,
        costs,
    }
}

/// `n` connections from the client host (opened by a thread named `comm`) to the server:
/// (client ends, server ends).
pub(crate) fn connections_between(
    hosts: &Hosts,
    n: usize,
    comm: &str,
) -> (Vec<TcpStream>, Vec<TcpStream>) {
    let listener = listen(&hosts.server, Hosts::server_addr(false), 0);
    let to = SocketAddr::new(
        Hosts::server_addr(false),
        listener.local_addr().unwrap().port(),
    );
    let accept = thread::spawn(move || {
        (0..n)
            .map(|_| listener.accept().unwrap().0)
            .collect::<Vec<TcpStream>>()
    });
    let clients = hosts.client.run_in(comm, move || {
        (0..n).map(|_| TcpStream::connect(to).unwrap()).collect()
    });
    (clients, accept.join().unwrap())
}

/// Packets dropped by full per-CPU backlogs (netdev_max_backlog), all CPUs.
pub(crate) fn backlog_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|v| u64::from_str_radix(v, 16).ok())
        .sum()
}

/// Timers that are not TCP's retransmit or keepalive timers: the hook must dismiss them
/// cheaply. Delayed-ACK timers (tcp_delack_timer) are such timers: 200 connections each
/// get one small segment every 100 ms that the receiver acknowledges only when its
/// delayed-ACK timer fires. Returns the programs' costs over 10 s.
pub(crate) fn timer_filter() -> Vec<Cost> {
    let hosts = Hosts::new("bench-timers");
    // No tail loss probes: they would run on the write timer, which is ours.
    hosts.client.sysctl("net.ipv4.tcp_early_retrans", "0");
    let connections = 200;
    raise_fd_limit(4096);
    let (mut clients, servers) = connections_between(&hosts, connections, "timers");
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 64];
        for s in &servers {
            s.set_nonblocking(true).unwrap();
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(12) {
            for mut s in &servers {
                let _ = s.read(&mut buf);
            }
            thread::sleep(Duration::from_millis(5));
        }
    });
    let path = out_dir().join("timer-filter.jsonl");
    let recorder = start_recorder(&path, &hosts.netns_args());
    let programs = ProgramCosts::start(&recorder);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        for c in clients.iter_mut() {
            let _ = c.write_all(b"x");
        }
        thread::sleep(Duration::from_millis(100));
    }
    let costs = programs.costs();
    recorder.stop();
    reader.join().unwrap();
    costs
}

/// The drop hook (skb:kfree_skb, every packet the host drops): 100 000 UDP datagrams to a
/// closed port (not TCP: the program leaves early) and 2 000 connects to a closed TCP port
/// (each SYN dropped as NO_SOCKET: parsed, then left out where the kernel traces the
/// reset that answers it, 6.10+; named and emitted on older kernels).
pub(crate) fn drop_filter() -> Vec<Cost> {
    let hosts = Hosts::new("bench-drops");
    let path = out_dir().join("drop-filter.jsonl");
    let recorder = start_recorder(&path, &hosts.netns_args());
    let programs = ProgramCosts::start(&recorder);
    let to = SocketAddr::new(Hosts::server_addr(false), 9);
    hosts.client.run_in("udp", move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.connect(to).unwrap();
        for _ in 0..100_000 {
            // ICMP port unreachable comes back as ECONNREFUSED on the next send: ignored.
            let _ = socket.send(b"x");
        }
    });
    for _ in 0..2_000 {
        let _ = connect(&hosts.client, "closed", to, ClientOptions::default());
    }
    let costs = programs.costs();
    recorder.stop();
    costs
        .into_iter()
        .filter(|c| c.program.starts_with("tr_drop"))
        .collect()
}

/// `per_thread` connects to a closed port from each of `threads` threads.
fn resets(hosts: &Hosts, threads: usize, per_thread: usize) -> Duration {
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let ns_name = hosts.client.name.clone();
            thread::spawn(move || {
                let file = File::open(format!("/run/netns/{ns_name}")).unwrap();
                nix::sched::setns(
                    std::os::fd::AsFd::as_fd(&file),
                    nix::sched::CloneFlags::CLONE_NEWNET,
                )
                .unwrap();
                let to = SocketAddr::new(Hosts::server_addr(false), 9);
                for _ in 0..per_thread {
                    let _ = TcpStream::connect(to);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    started.elapsed()
}

/// One reset storm: connects to a closed port through a ring buffer of `ring` bytes.
pub(crate) struct ResetStorm {
    pub(crate) ring: &'static str,
    pub(crate) connects: usize,
    pub(crate) threads: usize,
    pub(crate) events: u64,
    pub(crate) took: Duration,
    pub(crate) lost: u64,
    /// The server namespace's OutRsts delta.
    pub(crate) out_rsts: u64,
    pub(crate) reset_sent: u64,
    pub(crate) refused: usize,
}

pub(crate) fn reset_storms() -> Vec<ResetStorm> {
    [
        ("4M", 1, 5000),
        ("4M", 2, 5000),
        ("256K", 2, 5000),
        ("64K", 2, 5000),
    ]
    .into_iter()
    .map(|(ring, threads, per_thread)| {
        let hosts = Hosts::new("bench-rst");
        let path = out_dir().join(format!("reset-storm-{ring}-{threads}.jsonl"));
        let mut args = hosts.netns_args();
        args.extend(["--ring-buffer".to_owned(), ring.to_owned()]);
        let recorder = start_recorder(&path, &args);
        let before = hosts.server.snmp();
        let took = resets(&hosts, threads, per_thread);
        thread::sleep(Duration::from_millis(500));
        let after = hosts.server.snmp();
        recorder.stop();
        let trace = Trace::read(&path);
        ResetStorm {
            ring,
            connects: threads * per_thread,
            threads,
            events: trace.events.len() as u64,
            took,
            lost: trace.lost,
            out_rsts: after.delta(&before, "Tcp.OutRsts") as u64,
            reset_sent: trace.count(hosts.server.inode, EventKind::ResetSent),
            refused: trace
                .verdicts
                .iter()
                .filter(|v| **v == VerdictKind::ConnectionRefused)
                .count(),
        }
    })
    .collect()
}

/// Repeats a recorded trace's events (shifted in time, fresh socket ids) to `target`
/// events, written as the recorder writes records.
fn big_trace(source: &Path, target: usize) -> (PathBuf, usize) {
    let (mut reader, header) =
        TraceReader::open(source).unwrap_or_else(|e| panic!("{}: {e:#}", source.display()));
    let mut events = Vec::new();
    while let Some(record) = reader.next_record().expect("a readable trace") {
        if let Record::Event(e) = record {
            events.push(*e);
        }
    }
    let span = events.last().unwrap().ts_ns - events[0].ts_ns + 1;
    let clock = WallClock {
        boot_to_wall_offset_ns: header.boot_to_wall_offset_ns,
    };
    let path = out_dir().join("big-trace.jsonl");
    let mut out = std::io::BufWriter::new(File::create(&path).unwrap());
    writeln!(
        out,
        "{}",
        Record::Header(Box::new(header)).to_json(Some(&clock))
    )
    .unwrap();
    let mut written = 0;
    let mut round = 0u64;
    while written < target {
        for e in &events {
            let mut e = e.clone();
            e.ts_ns += round * span;
            e.socket = e.socket.map(|s| SocketId(s.0 + round * 1_000_000));
            writeln!(out, "{}", Record::Event(Box::new(e)).to_json(Some(&clock))).unwrap();
            written += 1;
        }
        round += 1;
    }
    (path, written)
}

/// `tracer report` of one big trace in one format.
pub(crate) struct ReportRun {
    /// The trace's format: `jsonl` or `binary`.
    pub(crate) trace: &'static str,
    pub(crate) format: &'static str,
    pub(crate) wall: Duration,
    pub(crate) usage: Usage,
}

pub(crate) struct ReportSpeed {
    pub(crate) events: usize,
    pub(crate) bytes: u64,
    /// The same trace converted to the binary format (`tracer convert`).
    pub(crate) binary_bytes: u64,
    pub(crate) runs: Vec<ReportRun>,
}

/// `tracer report` on the retransmit storm's trace repeated to a million events, as JSON
/// Lines and as a binary trace.
pub(crate) fn report_speed(source: &Path) -> ReportSpeed {
    let (path, events) = big_trace(source, 1_000_000);
    let binary = out_dir().join("big-trace.bin");
    let converted = Command::new(tracer_bin())
        .args([
            "convert",
            path.to_str().unwrap(),
            "-o",
            binary.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(converted.success(), "tracer convert: {converted}");
    let mut runs = Vec::new();
    for (trace, input) in [("jsonl", &path), ("binary", &binary)] {
        for format in ["text", "json"] {
            let started = Instant::now();
            let child = Command::new(tracer_bin())
                .args([
                    "report",
                    "--format",
                    format,
                    "-o",
                    "/dev/null",
                    input.to_str().unwrap(),
                ])
                .spawn()
                .unwrap();
            // No signal: the report ends by itself.
            let peak = watch_peak_rss(child.id());
            let usage = usage_at_exit(child, peak);
            runs.push(ReportRun {
                trace,
                format,
                wall: started.elapsed(),
                usage,
            });
        }
    }
    ReportSpeed {
        events,
        bytes: std::fs::metadata(&path).unwrap().len(),
        binary_bytes: std::fs::metadata(&binary).unwrap().len(),
        runs,
    }
}

pub(crate) fn raise_fd_limit(n: u64) {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n.max(4096),
    };
    // SAFETY: valid pointer.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(
        rc,
        0,
        "setrlimit(RLIMIT_NOFILE, {n}): {}",
        std::io::Error::last_os_error()
    );
}

/// `n` transfers of `bytes` each at once, from the client namespace to the server's; how
/// long they took together.
pub(crate) fn bulk_transfers(hosts: &Hosts, n: usize, bytes: usize) -> Duration {
    let started = Instant::now();
    let workers: Vec<_> = (0..n)
        .map(|_| {
            let listener = listen(&hosts.server, Hosts::server_addr(false), 0);
            let to = SocketAddr::new(
                Hosts::server_addr(false),
                listener.local_addr().unwrap().port(),
            );
            let mut client = connect(&hosts.client, "storm", to, ClientOptions::default()).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            let reader = thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            });
            thread::spawn(move || {
                let chunk = vec![1u8; 64 * 1024];
                for _ in 0..bytes / chunk.len() {
                    client.write_all(&chunk).unwrap();
                }
                drop(client);
                reader.join().unwrap();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    started.elapsed()
}

/// CPU (user + system) a live process has used so far.
pub(crate) fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 14th field.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let ticks = fields.get(11).unwrap_or(&0) + fields.get(12).unwrap_or(&0);
    Duration::from_millis(ticks * 1000 / hz.max(1))
}

/// Keepalive on every client: first probe after 1 s idle, then every second, 60 of them.
pub(crate) fn probe_every_second(clients: &[TcpStream]) {
    for c in clients {
        let s = SockRef::from(c);
        s.set_tcp_keepalive(
            &TcpKeepalive::new()
                .with_time(Duration::from_secs(1))
                .with_interval(Duration::from_secs(1))
                .with_retries(60),
        )
        .unwrap();
        s.set_keepalive(true).unwrap();
    }
}

/// Stops every client's keepalive, so that the kernel's own per-socket probe counts are
/// final, and sums them (sock_diag): the probes the kernel sent.
pub(crate) fn freeze_probes(hosts: &Hosts, clients: &[TcpStream]) -> u64 {
    for c in clients {
        SockRef::from(c).set_keepalive(false).unwrap();
    }
    let snapshot = tracer_tests::tracer::sockets_json(hosts.client.inode, "10m");
    snapshot["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "ESTABLISHED")
        .map(|s| s["info"]["probes"].as_u64().unwrap_or(0))
        .sum()
}
