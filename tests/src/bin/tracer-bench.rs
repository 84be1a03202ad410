//! `cargo xtask bench`: overhead, throughput, loss and fidelity of the tracer, measured
//! side by side in one run (these machines are shared and noisy: ratios, not absolutes).
//!
//! Everything runs in network namespaces created here. Prints a Markdown report.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use socket2::{SockRef, TcpKeepalive};
use tracer_tests::{
    Hosts, Netns,
    scenario::{ClientOptions, connect, listen},
    tracer::tracer_bin,
    wait_until,
};

/// A `tracer` (or `bpftrace`) process under measurement.
struct Measured {
    child: Child,
    started: Instant,
    ready_after: Duration,
}

/// The child's own peak RSS (VmHWM), sampled until it exits. wait4's ru_maxrss would
/// include the parent's memory at spawn time (vfork + exec carries the old high-water mark).
fn watch_peak_rss(pid: u32) -> thread::JoinHandle<i64> {
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

/// CPU time and peak memory of a finished process (wait4).
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    cpu: Duration,
    max_rss_kib: i64,
}

impl Measured {
    fn stop(self) -> (Usage, Duration) {
        let pid = self.child.id() as i32;
        let peak = watch_peak_rss(self.child.id());
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let mut usage = reap(pid);
        usage.max_rss_kib = peak.join().unwrap_or(0);
        (usage, self.started.elapsed())
    }
}

/// Waits for child `pid` to exit and returns the CPU time it used.
fn reap(pid: i32) -> Usage {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 only writes into the two out-pointers.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::wait4(pid, &mut status, 0, &mut ru);
        ru
    };
    Usage {
        cpu: Duration::from_secs(ru.ru_utime.tv_sec as u64 + ru.ru_stime.tv_sec as u64)
            + Duration::from_micros(ru.ru_utime.tv_usec as u64 + ru.ru_stime.tv_usec as u64),
        max_rss_kib: 0,
    }
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `tracer record` into `path`, returning once its header is on disk.
fn start_recorder(path: &Path, args: &[String]) -> Measured {
    let _ = std::fs::remove_file(path);
    let started = Instant::now();
    let child = Command::new(tracer_bin())
        .args(["record", "-o", path.to_str().unwrap(), "--no-sweep"])
        .args(args)
        .stderr(File::create(path.with_extension("stderr")).unwrap())
        .spawn()
        .expect("spawn tracer");
    wait_until(Duration::from_secs(60), "the recorder's header", || {
        std::fs::read_to_string(path)
            .ok()
            .filter(|t| t.contains('\n'))
    });
    Measured {
        child,
        started,
        ready_after: started.elapsed(),
    }
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
        started,
        ready_after: started.elapsed(),
    })
}

fn records(path: &Path) -> Vec<Value> {
    BufReader::new(File::open(path).unwrap())
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

fn count_kind(records: &[Value], netns: u32, kind: &str) -> u64 {
    records
        .iter()
        .filter(|r| r["type"] == "event" && r["kind"] == kind && r["netns"] == netns)
        .count() as u64
}

fn segments(records: &[Value], netns: u32) -> u64 {
    tracer_tests::scenario::retransmitted_segments(records, netns) as u64
}

fn lost(records: &[Value]) -> u64 {
    records
        .iter()
        .find(|r| r["type"] == "end")
        .and_then(|r| r["lost"].as_u64())
        .unwrap_or(0)
}

/// Per-program kernel cost, from bpf_stats (run_time_ns, run_cnt) of the given programs.
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

fn program_ids(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        ids.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|v| v.trim().parse::<u32>().ok()),
        );
    }
    ids
}

fn cost_table(
    before: &BTreeMap<String, (u64, u64)>,
    after: &BTreeMap<String, (u64, u64)>,
) -> String {
    let mut out = String::from("| program | calls | ns/call |\n|---|---:|---:|\n");
    for (name, (t1, c1)) in after {
        let (t0, c0) = before.get(name).copied().unwrap_or((0, 0));
        let calls = c1 - c0;
        if calls == 0 {
            continue;
        }
        out += &format!(
            "| {name} | {calls} | {:.0} |\n",
            (t1 - t0) as f64 / calls as f64
        );
    }
    out
}

/// Bulk transfer client → server for `secs`, writes of `chunk` bytes; returns bytes/s.
fn bulk(hosts: &Hosts, chunk: usize, secs: f64) -> f64 {
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn throughput(report: &mut String) {
    let hosts = Hosts::new("bench-tput");
    *report += "\n## Clean bulk transfer, with and without the tracer\n\n";
    *report += "Unfiltered `tracer live --json > /dev/null` (it sees every socket); rounds alternate without/with; medians.\n\n";
    *report += "| writes | without (MB/s, median [min–max]) | with (MB/s, median [min–max]) | ratio of medians |\n|---|---:|---:|---:|\n";
    for chunk in [64 * 1024, 1024] {
        let (mut without, mut with) = (Vec::new(), Vec::new());
        for _ in 0..7 {
            without.push(bulk(&hosts, chunk, 3.0));
            let mut tracer = Command::new(tracer_bin())
                .args(["live", "--json", "--no-sweep"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut err = BufReader::new(tracer.stderr.take().unwrap());
            let mut line = String::new();
            // "tracing TCP connections ..." means attached.
            while err.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("tracing TCP") {
                line.clear();
            }
            with.push(bulk(&hosts, chunk, 3.0));
            // SAFETY: signalling our own child.
            unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
            let _ = tracer.wait();
        }
        let spread = |v: &[f64]| {
            let min = v.iter().copied().fold(f64::MAX, f64::min) / 1e6;
            let max = v.iter().copied().fold(0.0, f64::max) / 1e6;
            format!("{:.0} [{min:.0}–{max:.0}]", median(v.to_vec()) / 1e6)
        };
        let (a, b) = (median(without.clone()), median(with.clone()));
        *report += &format!(
            "| {} B | {} | {} | {:.3} |\n",
            chunk,
            spread(&without),
            spread(&with),
            b / a
        );
    }
}

/// Bytes each of the 4 retransmit-storm transfers sends.
const STORM_BYTES: usize = 192 << 20;

fn retransmit_storm(report: &mut String, big_trace_source: &mut Option<PathBuf>) {
    let hosts = Hosts::new("bench-rtx");
    let path = out_dir().join("retransmit-storm.jsonl");
    let recorder = start_recorder(&path, &hosts.netns_args());
    let ids = program_ids(recorder.child.id());
    let stats_before = program_stats(&ids);
    let bpftrace_out = out_dir().join("bpftrace-retransmit.txt");
    let bpftrace = start_bpftrace(&bpftrace_out);
    let before = hosts.client.snmp();
    hosts.server.nft(
        "table inet t {\n chain in {\n type filter hook input priority 0;\n numgen random mod 100 < 2 drop\n }\n}\n",
    );
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let listener = listen(&hosts.server, Hosts::server_addr(false), 0);
            let to = SocketAddr::new(
                Hosts::server_addr(false),
                listener.local_addr().unwrap().port(),
            );
            let mut client = connect(&hosts.client, "storm", to, ClientOptions::default()).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            let reader = thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = server.read_to_end(&mut sink);
            });
            thread::spawn(move || {
                let chunk = vec![1u8; 64 * 1024];
                for _ in 0..(STORM_BYTES) / chunk.len() {
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
    let storm = started.elapsed();
    thread::sleep(Duration::from_millis(500));
    let after = hosts.client.snmp();
    let stats_after = program_stats(&ids);
    let (bpftrace_usage, bpftrace_ready) = match bpftrace {
        Some(b) => {
            let ready = b.ready_after;
            let (u, _) = b.stop();
            (Some(u), Some(ready))
        }
        None => (None, None),
    };
    let ready = recorder.ready_after;
    let (usage, _) = recorder.stop();
    let recs = records(&path);
    let kernel = after.delta(&before, "Tcp.RetransSegs") as u64;
    let traced = segments(&recs, hosts.client.inode);
    let events = count_kind(&recs, hosts.client.inode, "retransmit");
    let bpftrace_lines = std::fs::read_to_string(&bpftrace_out)
        .map(|t| t.lines().filter(|l| l.starts_with("retransmit")).count() as u64)
        .unwrap_or(0);
    *report += &format!(
        "\n## Retransmit storm: 4 bulk transfers of {} MiB through 2% random loss\n\n",
        STORM_BYTES >> 20
    );
    *report += &format!(
        "{:.1} s; kernel RetransSegs delta {kernel}; tracer: {events} retransmit events covering {traced} segments, {} lost.\n\n",
        storm.as_secs_f64(),
        lost(&recs)
    );
    *report += "| | tracer record | bpftrace (one printf per event) |\n|---|---:|---:|\n";
    *report += &format!(
        "| retransmit events seen | {events} | {} |\n",
        bpftrace_usage.map_or("n/a".into(), |_| bpftrace_lines.to_string())
    );
    *report += &format!(
        "| fidelity (segments or events ÷ RetransSegs) | {:.3} | {} |\n",
        traced as f64 / kernel.max(1) as f64,
        bpftrace_usage.map_or("n/a".into(), |_| format!(
            "{:.3}",
            bpftrace_lines as f64 / kernel.max(1) as f64
        ))
    );
    *report += &format!(
        "| CPU during the storm | {:.2} s | {} |\n",
        usage.cpu.as_secs_f64(),
        bpftrace_usage.map_or("n/a".into(), |u| format!("{:.2} s", u.cpu.as_secs_f64()))
    );
    *report += &format!(
        "| peak RSS | {} MiB | {} |\n",
        usage.max_rss_kib / 1024,
        bpftrace_usage.map_or("n/a".into(), |u| format!("{} MiB", u.max_rss_kib / 1024))
    );
    *report += &format!(
        "| start-up until attached | {:.2} s | {} |\n\n",
        ready.as_secs_f64(),
        bpftrace_ready.map_or("n/a".into(), |r| format!("{:.2} s", r.as_secs_f64()))
    );
    *report += "Kernel cost per program during the storm (bpf_stats):\n\n";
    *report += &cost_table(&stats_before, &stats_after);
    *big_trace_source = Some(path);
}

fn keepalive_storm(report: &mut String, connections: usize) {
    let hosts = Hosts::new("bench-ka");
    raise_fd_limit(connections as u64 * 2 + 256);
    let listener = listen(&hosts.server, Hosts::server_addr(false), 0);
    let to = SocketAddr::new(
        Hosts::server_addr(false),
        listener.local_addr().unwrap().port(),
    );
    let accept = thread::spawn(move || {
        (0..connections)
            .map(|_| listener.accept().unwrap().0)
            .collect::<Vec<TcpStream>>()
    });
    let clients: Vec<TcpStream> = hosts.client.run_in("ka-storm", move || {
        (0..connections)
            .map(|_| TcpStream::connect(to).unwrap())
            .collect()
    });
    let servers = accept.join().unwrap();
    let path = out_dir().join("keepalive-storm.jsonl");
    let drops_before = backlog_drops();
    let recorder = start_recorder(&path, &hosts.netns_args());
    let ids = program_ids(recorder.child.id());
    let stats_before = program_stats(&ids);
    let before = hosts.client.snmp();
    hosts.client.blackhole_from(Hosts::server_addr(false));
    for c in &clients {
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
    let secs = 15;
    thread::sleep(Duration::from_secs(secs));
    // Freeze: no more probes, so the kernel's own per-socket probe counts are final.
    for c in &clients {
        SockRef::from(c).set_keepalive(false).unwrap();
    }
    let after = hosts.client.snmp();
    let stats_after = program_stats(&ids);
    let snapshot = Command::new(tracer_bin())
        .args([
            "sockets",
            "--json",
            "--netns",
            &hosts.client.inode.to_string(),
        ])
        .output()
        .unwrap();
    let snapshot: Value = serde_json::from_slice(&snapshot.stdout).unwrap();
    let probes_out: u64 = snapshot["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "ESTABLISHED")
        .map(|s| s["info"]["probes"].as_u64().unwrap_or(0))
        .sum();
    thread::sleep(Duration::from_millis(300));
    let (usage, _) = recorder.stop();
    let recs = records(&path);
    let kernel = after.delta(&before, "TcpExt.TCPKeepAlive") as u64;
    let traced = count_kind(&recs, hosts.client.inode, "keepalive_probe");
    *report += &format!(
        "\n## Keepalive storm: {connections} idle connections probing a blackholed peer every second, {secs} s\n\n"
    );
    *report += &format!(
        "Probes the kernel counted as sent (Σ icsk_probes_out from sock_diag, after freezing): {probes_out}; \
         keepalive_probe events: {traced}; fidelity {:.3}; {} lost. Kernel TCPKeepAlive delta: {kernel} \
         (it also counts attempts that never left the host: tcp_xmit_probe_skb counts before transmitting, and \
         {} packets were dropped by full backlogs on this host during the run). Tracer CPU {:.2} s, peak RSS {} MiB.\n\n",
        traced as f64 / probes_out.max(1) as f64,
        lost(&recs),
        backlog_drops() - drops_before,
        usage.cpu.as_secs_f64(),
        usage.max_rss_kib / 1024
    );
    *report +=
        "Kernel cost per program (the timer hooks run for every kernel timer on the host):\n\n";
    *report += &cost_table(&stats_before, &stats_after);
    // Abort rather than close: a closed socket toward a blackholed peer would live on as an
    // orphan retransmitting its FIN for minutes, loading every later measurement.
    for c in clients {
        SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
    }
    drop(servers);
}

/// Packets dropped by full per-CPU backlogs (netdev_max_backlog), all CPUs.
fn backlog_drops() -> u64 {
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
/// delayed-ACK timer fires.
fn timer_filter(report: &mut String) {
    let hosts = Hosts::new("bench-timers");
    // No tail loss probes: they would run on the write timer, which is ours.
    hosts.client.sysctl("net.ipv4.tcp_early_retrans", "0");
    let connections = 200;
    raise_fd_limit(4096);
    let listener = listen(&hosts.server, Hosts::server_addr(false), 0);
    let to = SocketAddr::new(
        Hosts::server_addr(false),
        listener.local_addr().unwrap().port(),
    );
    let accept = thread::spawn(move || {
        (0..connections)
            .map(|_| listener.accept().unwrap().0)
            .collect::<Vec<TcpStream>>()
    });
    let mut clients: Vec<TcpStream> = hosts.client.run_in("timers", move || {
        (0..connections)
            .map(|_| TcpStream::connect(to).unwrap())
            .collect()
    });
    let servers = accept.join().unwrap();
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
    let ids = program_ids(recorder.child.id());
    let before = program_stats(&ids);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        for c in clients.iter_mut() {
            let _ = c.write_all(b"x");
        }
        thread::sleep(Duration::from_millis(100));
    }
    let after = program_stats(&ids);
    let _ = recorder.stop();
    reader.join().unwrap();
    *report += "
## Timer hook on timers that are not ours (200 connections' delayed-ACK timers, 10 s)

";
    *report += &cost_table(&before, &after);
}

/// `connections` connects to a closed port from `threads` threads.
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

fn reset_storm(report: &mut String) {
    *report += "\n## Reset storm: connects to a closed port (each: SYN_SENT, RST out, RST in, CLOSE, error reports, release)\n\n";
    *report += "| ring buffer | connects | threads | events delivered | events/s | lost | OutRsts Δ | reset_sent events | connection_refused verdicts |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (ring, threads, per_thread) in [
        ("4M", 1, 5000),
        ("4M", 2, 5000),
        ("256K", 2, 5000),
        ("64K", 2, 5000),
    ] {
        let hosts = Hosts::new("bench-rst");
        let path = out_dir().join(format!("reset-storm-{ring}-{threads}.jsonl"));
        let mut args = hosts.netns_args();
        args.extend(["--ring-buffer".to_owned(), ring.to_owned()]);
        let recorder = start_recorder(&path, &args);
        let before = hosts.server.snmp();
        let took = resets(&hosts, threads, per_thread);
        thread::sleep(Duration::from_millis(500));
        let after = hosts.server.snmp();
        let _ = recorder.stop();
        let recs = records(&path);
        let events = recs.iter().filter(|r| r["type"] == "event").count() as u64;
        let refused = recs
            .iter()
            .filter(|r| r["type"] == "verdict" && r["verdict"] == "connection_refused")
            .count();
        *report += &format!(
            "| {ring} | {} | {threads} | {events} | {:.0} | {} | {} | {} | {refused} |\n",
            threads * per_thread,
            events as f64 / took.as_secs_f64(),
            lost(&recs),
            after.delta(&before, "Tcp.OutRsts"),
            count_kind(&recs, hosts.server.inode, "reset_sent"),
        );
    }
}

/// Replaces the number after `"key":` in a JSON line, keeping the line as our writer laid
/// it out (`type` first: the reader's fast path).
fn replace_number(line: &str, key: &str, f: impl Fn(u64) -> u64) -> String {
    let pattern = format!("\"{key}\":");
    let Some(start) = line.find(&pattern).map(|i| i + pattern.len()) else {
        return line.to_owned();
    };
    let end = line[start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(line.len(), |i| start + i);
    let value: u64 = line[start..end].parse().unwrap_or(0);
    format!("{}{}{}", &line[..start], f(value), &line[end..])
}

/// Repeats a recorded trace's events (shifted in time, fresh socket ids) to `target` events.
fn big_trace(source: &Path, target: usize) -> (PathBuf, usize) {
    let text = std::fs::read_to_string(source).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_owned();
    let events: Vec<&str> = lines
        .filter(|l| l.starts_with(r#"{"type":"event""#))
        .collect();
    let ts = |l: &str| -> u64 {
        let v: Value = serde_json::from_str(l).unwrap();
        v["ts_ns"].as_u64().unwrap()
    };
    let span = ts(events.last().unwrap()) - ts(events[0]) + 1;
    let path = out_dir().join("big-trace.jsonl");
    let mut out = std::io::BufWriter::new(File::create(&path).unwrap());
    writeln!(out, "{header}").unwrap();
    let mut written = 0;
    let mut round = 0u64;
    while written < target {
        for e in &events {
            let line = replace_number(e, "ts_ns", |t| t + round * span);
            let line = replace_number(&line, "socket", |s| s + round * 1_000_000);
            writeln!(out, "{line}").unwrap();
            written += 1;
        }
        round += 1;
    }
    (path, written)
}

fn report_speed(report: &mut String, source: &Path) {
    let (path, events) = big_trace(source, 1_000_000);
    let size = std::fs::metadata(&path).unwrap().len();
    *report += &format!(
        "\n## `tracer report` on {events} events ({} MiB, the retransmit storm repeated)\n\n",
        size >> 20
    );
    *report += "| format | wall | events/s | CPU | peak RSS |\n|---|---:|---:|---:|---:|\n";
    for format in ["text", "json"] {
        let started = Instant::now();
        let child = Command::new(tracer_bin())
            .args([
                "report",
                "--format",
                format,
                "-o",
                "/dev/null",
                path.to_str().unwrap(),
            ])
            .spawn()
            .unwrap();
        let m = Measured {
            child,
            started,
            ready_after: Duration::ZERO,
        };
        // wait4 without a signal: the report ends by itself.
        let pid = m.child.id() as i32;
        let peak = watch_peak_rss(m.child.id());
        let mut usage = reap(pid);
        usage.max_rss_kib = peak.join().unwrap_or(0);
        let wall = m.started.elapsed();
        *report += &format!(
            "| {format} | {:.2} s | {:.0} | {:.2} s | {} MiB |\n",
            wall.as_secs_f64(),
            events as f64 / wall.as_secs_f64(),
            usage.cpu.as_secs_f64(),
            usage.max_rss_kib / 1024
        );
    }
}

fn raise_fd_limit(n: u64) {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n.max(4096),
    };
    // SAFETY: valid pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
}

fn main() {
    tracer_tests::require_root();
    let only: Vec<String> = std::env::args().skip(1).collect();
    let wants = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    // Keep bpf_stats on for the whole run (released when this fd closes).
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
    let _ = Netns::new("bench-warmup");
    let mut report = format!(
        "# Benchmark run\n\nkernel {}, {} CPUs, tracer {}\n",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        thread::available_parallelism().map_or(0, |n| n.get()),
        tracer_bin().display()
    );
    let mut source = None;
    if wants("retransmit") {
        retransmit_storm(&mut report, &mut source);
    }
    if wants("keepalive") {
        keepalive_storm(&mut report, 2000);
    }
    if wants("timers") {
        timer_filter(&mut report);
    }
    if wants("reset") {
        reset_storm(&mut report);
    }
    if wants("throughput") {
        throughput(&mut report);
    }
    if wants("report") {
        let source = source.unwrap_or_else(|| out_dir().join("retransmit-storm.jsonl"));
        if source.exists() {
            report_speed(&mut report, &source);
        }
    }
    print!("{report}");
    std::fs::write(out_dir().join("report.md"), &report).unwrap();
}
