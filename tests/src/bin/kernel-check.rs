//! The tracer's check of one running kernel: load and attach, then the deaths users meet,
//! provoked for real in network namespaces, each asserted by its verdict. `cargo xtask
//! kernels` runs it inside each kernel of the matrix (under QEMU) and on the host.
//!
//! `kernel-check --out DIR [--tracer PATH] [--scenario NAME]...` writes DIR/result.json
//! (what the host reads), DIR/trace.jsonl (every record the tracer printed) and
//! DIR/doctor.json, and exits 0 only when every scenario passed.

use std::{
    io::Write,
    net::{SocketAddr, TcpStream},
    panic::AssertUnwindSafe,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tracer_tests::{
    Hosts, Tracer,
    scenario::{ClientOptions, abort, connect, establish, events, retransmitted_segments},
    tracer::run_json,
};

/// Deadline for each scenario's verdict: emulated kernels run everything 10-50× slower,
/// but TCP's timers keep real time, so a generous bound costs nothing when things work.
const DEADLINE: Duration = Duration::from_secs(180);

/// Tracepoints every supported kernel (5.10+) has, whose programs must attach.
const REQUIRED_HOOKS: &[&str] = &[
    "inet_sock_set_state",
    "tcp_retransmit_skb",
    "tcp_retransmit_synack",
    "tcp_send_reset",
    "tcp_receive_reset",
    "tcp_destroy_sock",
    "timer_expire_entry",
    "timer_expire_exit",
];

/// A scenario: provokes one death between two hosts and checks what the tracer said.
type Run = fn(&Hosts, &Tracer) -> Result<String, String>;

struct Scenario {
    name: &'static str,
    hosts: Hosts,
    run: Run,
}

fn main() {
    let mut out = None;
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().map(PathBuf::from),
            // The tests crate finds the binary under test through TRACER_BIN.
            // SAFETY: single-threaded here, before any thread is started.
            "--tracer" => unsafe { std::env::set_var("TRACER_BIN", args.next().unwrap()) },
            "--scenario" => only.push(args.next().unwrap_or_default()),
            other => {
                eprintln!("kernel-check: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let Some(out) = out else {
        eprintln!("usage: kernel-check --out DIR [--tracer PATH] [--scenario NAME]...");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&out).expect("create the output directory");
    // Under emulation start-up takes tens of seconds, more on a loaded host.
    // SAFETY: single-threaded here, before any thread is started.
    unsafe { std::env::set_var("TRACER_START_TIMEOUT_SECS", "600") };
    // Scenario failures are caught and reported in result.json, not as backtraces.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();

    let doctor = run_json(["doctor", "--json"]);
    write(
        &out,
        "doctor.json",
        &serde_json::to_string_pretty(&doctor).unwrap(),
    );

    let all: &[(&str, Run)] = &[
        ("refused_connect", refused_connect),
        ("syn_timeout", syn_timeout),
        ("local_drop", local_drop),
        ("rto_give_up", rto_give_up),
        ("keepalive_death", keepalive_death),
        ("peer_reset", peer_reset),
        ("local_abort", local_abort),
        ("owner_filter", owner_filter),
    ];
    let scenarios: Vec<Scenario> = all
        .iter()
        .filter(|(name, _)| only.is_empty() || only.iter().any(|o| o == name))
        .map(|&(name, run)| Scenario {
            name,
            hosts: Hosts::new(&name[..name.len().min(6)]),
            run,
        })
        .collect();
    // The early warning at the first RTO: under emulation a slow RTT makes the RTOs so long
    // that TCP_USER_TIMEOUT can expire after two, before tcp_retries1 (3) is reached.
    let mut tracer_args: Vec<String> = ["live", "--json", "--no-sweep", "--warn-after-rtos", "1"]
        .map(String::from)
        .to_vec();
    for s in &scenarios {
        tracer_args.extend(s.hosts.netns_args());
    }
    let tracer = Tracer::start(&tracer_args);
    let header = tracer
        .records()
        .into_iter()
        .find(|r| r["type"] == "header")
        .expect("the tracer started with a header");
    let hooks = header["hooks"].as_array().cloned().unwrap_or_default();
    let mut results = vec![hook_check(&hooks), doctor_check(&doctor, &hooks)];

    // Concurrently: every scenario waits mostly on TCP's timers.
    let outcomes: Vec<(String, Result<String, String>, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = scenarios
            .iter()
            .map(|scenario| {
                let tracer = &tracer;
                s.spawn(move || {
                    let begun = Instant::now();
                    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        (scenario.run)(&scenario.hosts, tracer)
                    }))
                    .unwrap_or_else(|panic| Err(panic_text(panic)));
                    (
                        scenario.name.to_owned(),
                        outcome,
                        begun.elapsed().as_secs_f64(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (name, outcome, seconds) in outcomes {
        results.push(scenario_result(&name, outcome, seconds));
    }
    let (records, stderr) = tracer.stop();
    let trace: String = records.iter().map(|r| format!("{r}\n")).collect();
    write(&out, "trace.jsonl", &trace);
    write(&out, "tracer.stderr", &stderr);

    let attached = hooks.iter().filter(|h| h["attached"] == true).count();
    let passed = results.iter().all(|r| r["passed"] == true);
    let result = json!({
        "kernel": kernel,
        "programs_attached": attached,
        "programs_total": hooks.len(),
        "hooks": hooks.iter().map(|h| json!({
            "tracepoint": h["tracepoint"],
            "program": h["program"],
            "state": h["state"],
            "attached": h["attached"],
            "problem": h["problem"],
            "degraded": h["degraded"],
        })).collect::<Vec<_>>(),
        "scenarios": results,
        "wall_seconds": started.elapsed().as_secs_f64(),
    });
    write(
        &out,
        "result.json",
        &serde_json::to_string_pretty(&result).unwrap(),
    );
    for r in &results {
        let mark = if r["passed"] == true { "ok  " } else { "FAIL" };
        println!(
            "{mark} {} ({:.1} s) {}",
            r["name"], r["seconds"], r["detail"]
        );
    }
    // `exit` runs no destructors: the scenarios' namespaces go first (inside a VM they die
    // with it; on the host they stayed, 16 of them per run).
    drop(scenarios);
    std::process::exit(if passed { 0 } else { 1 });
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    let mut file = std::fs::File::create(dir.join(name)).expect("create output file");
    file.write_all(text.as_bytes()).expect("write output file");
}

fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".into())
}

fn scenario_result(name: &str, outcome: Result<String, String>, seconds: f64) -> Value {
    let (passed, detail) = match outcome {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    json!({"name": name, "passed": passed, "detail": detail, "seconds": seconds})
}

/// Every hook this kernel has is attached (the programs passed its verifier), and every
/// hook every supported kernel has is among them.
fn hook_check(hooks: &[Value]) -> Value {
    let mut problems = Vec::new();
    for hook in hooks {
        let tracepoint = hook["tracepoint"].as_str().unwrap_or("?");
        let attached = hook["attached"] == true;
        let unavailable = hook["state"] == "unavailable";
        if REQUIRED_HOOKS.contains(&tracepoint) && !attached {
            problems.push(format!("{tracepoint}: not attached ({})", hook["problem"]));
        } else if !attached && !unavailable {
            problems.push(format!(
                "{tracepoint}: {} ({})",
                hook["state"], hook["problem"]
            ));
        }
    }
    for required in REQUIRED_HOOKS {
        if !hooks.iter().any(|h| h["tracepoint"] == *required) {
            problems.push(format!("{required}: not in the header"));
        }
    }
    let outcome = if problems.is_empty() {
        Ok(format!(
            "{} of {} hooks attached",
            hooks.iter().filter(|h| h["attached"] == true).count(),
            hooks.len()
        ))
    } else {
        Err(problems.join("; "))
    };
    scenario_result("programs_attached", outcome, 0.0)
}

/// `tracer doctor` verified every program without attaching: what it said of each hook is
/// what tracing then got (the same program, state and degradation).
fn doctor_check(doctor: &Value, hooks: &[Value]) -> Value {
    let said = |h: &Value| {
        format!(
            "{} {} {} {}",
            h["tracepoint"], h["program"], h["state"], h["degraded"]
        )
    };
    let predicted: Vec<String> = doctor["hooks"]
        .as_array()
        .map(|a| a.iter().map(said).collect())
        .unwrap_or_default();
    let got: Vec<String> = hooks.iter().map(said).collect();
    let outcome = if doctor["verified"] != true {
        Err(format!("doctor did not verify the programs: {doctor}"))
    } else if predicted != got {
        Err(format!("doctor said {predicted:?}, tracing got {got:?}"))
    } else {
        Ok(format!(
            "doctor's verification matched all {} hooks",
            got.len()
        ))
    };
    scenario_result("doctor_tells_the_truth", outcome, 0.0)
}

fn wait_verdict(tracer: &Tracer, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    tracer.wait_for(DEADLINE, what, |r| r["type"] == "verdict" && pred(r))
}

fn verdicts(tracer: &Tracer, netns: u32) -> Vec<String> {
    tracer
        .records()
        .iter()
        .filter(|r| r["type"] == "verdict" && r["netns"] == netns)
        .map(|r| r["verdict"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn check(condition: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(what()) }
}

/// A closed port answers our SYN with a reset.
fn refused_connect(hosts: &Hosts, tracer: &Tracer) -> Result<String, String> {
    let to = SocketAddr::new(Hosts::server_addr(false), 7201);
    let refused = connect(&hosts.client, "refused", to, ClientOptions::default());
    check(refused.is_err(), || "the connect succeeded".into())?;
    let verdict = wait_verdict(tracer, "connection_refused", |r| {
        r["verdict"] == "connection_refused" && r["rport"] == 7201
    });
    check(verdict["facts"]["error"] == "ECONNREFUSED", || {
        format!("error {}", verdict["facts"]["error"])
    })?;
    Ok("connection_refused, ECONNREFUSED".into())
}

/// A second tracer with the owner filter on (`--cgroup`, this process's cgroup): its
/// programs pass the verifier with the kernel's cgroup filter, and a refused connect of
/// this process comes through it, named by its cgroup.
fn owner_filter(hosts: &Hosts, _tracer: &Tracer) -> Result<String, String> {
    if let Err(e) = tracer::identity::mount::discover() {
        return Ok(format!("skipped: no cgroup2 mount ({e})"));
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let own = tracer::identity::unified_path(&own)
        .ok_or("no cgroup v2 line in /proc/self/cgroup")?
        .to_owned();
    let mut args: Vec<String> = ["live", "--json", "--no-sweep", "--cgroup", &own]
        .map(String::from)
        .to_vec();
    args.extend(hosts.netns_args());
    let filtered = Tracer::start(&args);
    let to = SocketAddr::new(Hosts::server_addr(false), 7207);
    let refused = connect(&hosts.client, "ownerfilter", to, ClientOptions::default());
    check(refused.is_err(), || "the connect succeeded".into())?;
    let verdict = wait_verdict(&filtered, "connection_refused through --cgroup", |r| {
        r["verdict"] == "connection_refused" && r["rport"] == 7207
    });
    let path = &verdict["process"]["container"]["cgroup_path"];
    check(*path == own.as_str(), || format!("owner's cgroup {path}"))?;
    filtered.stop();
    Ok(format!("connection_refused kept by --cgroup {own}"))
}

/// SYNs dropped at the peer: SYN retransmits until TCP_SYNCNT is spent.
fn syn_timeout(hosts: &Hosts, tracer: &Tracer) -> Result<String, String> {
    hosts.server.nft(
        "table inet syn {\n chain input {\n type filter hook input priority 0;\n \
         tcp dport 7202 drop\n }\n}\n",
    );
    let to = SocketAddr::new(Hosts::server_addr(false), 7202);
    let options = ClientOptions {
        syn_count: Some(1),
        ..Default::default()
    };
    let before = hosts.client.snmp();
    let timed_out = connect(&hosts.client, "syntimeout", to, options);
    check(timed_out.is_err(), || "the connect succeeded".into())?;
    let verdict = wait_verdict(tracer, "connect_timeout", |r| {
        r["verdict"] == "connect_timeout" && r["rport"] == 7202
    });
    check(verdict["facts"]["error"] == "ETIMEDOUT", || {
        format!("{verdict}")
    })?;
    // The SYN budget is a time (with 6.5+'s linear timeouts, more than TCP_SYNCNT
    // retransmits fit in it): the verdict counts what the kernel sent.
    let retransmits = verdict["facts"]["retransmits"].as_i64().unwrap_or(0);
    let kernel = hosts.client.snmp().delta(&before, "Tcp.RetransSegs");
    check(retransmits >= 1 && retransmits == kernel, || {
        format!("{retransmits} SYN retransmits in the verdict, RetransSegs {kernel}")
    })?;
    Ok(format!(
        "connect_timeout after {retransmits} SYN retransmits = RetransSegs"
    ))
}

/// This host's firewall drops our SYNs: where kfree_skb carries drop reasons (5.17+), the
/// drops are in the timeline with NETFILTER_DROP and the verdict blames this host; where it
/// does not, the hook says it is unavailable and the verdict blames nobody here.
fn local_drop(hosts: &Hosts, tracer: &Tracer) -> Result<String, String> {
    hosts.client.nft(
        "table inet localdrop {\n chain output {\n type filter hook output priority 0;\n \
         tcp dport 7203 drop\n }\n}\n",
    );
    let to = SocketAddr::new(Hosts::server_addr(false), 7203);
    let options = ClientOptions {
        syn_count: Some(1),
        ..Default::default()
    };
    let timed_out = connect(&hosts.client, "localdrop", to, options);
    check(timed_out.is_err(), || "the connect succeeded".into())?;
    let verdict = wait_verdict(tracer, "connect_timeout", |r| {
        r["verdict"] == "connect_timeout" && r["rport"] == 7203
    });
    let records = tracer.records();
    let hook = records
        .iter()
        .find(|r| r["type"] == "header")
        .and_then(|h| {
            h["hooks"]
                .as_array()?
                .iter()
                .find(|k| k["tracepoint"] == "kfree_skb")
                .cloned()
        })
        .ok_or("no kfree_skb hook in the header")?;
    let drops = records
        .iter()
        .filter(|r| r["type"] == "event" && r["kind"] == "drop" && r["socket"] == verdict["socket"])
        .count();
    if hook["attached"] != true {
        check(hook["state"] == "unavailable" && drops == 0, || {
            format!("kfree_skb not attached but {}: {hook}", hook["state"])
        })?;
        return Ok(format!(
            "connect_timeout; drops unavailable here, as stated: {}",
            hook["problem"]
        ));
    }
    let said = verdict["explanation"].as_str().unwrap_or_default();
    check(
        drops >= 1
            && verdict["facts"]["local_drops"] == drops
            && verdict["facts"]["drop_reason"] == "NETFILTER_DROP"
            && said.contains("this host's netfilter"),
        || format!("{drops} drop events; {verdict}"),
    )?;
    Ok(format!(
        "connect_timeout: {drops} SYNs dropped by this host's netfilter (NETFILTER_DROP)"
    ))
}

/// The peer vanishes while we send: RTOs, the early warning, then the give-up at
/// TCP_USER_TIMEOUT; every retransmitted segment traced, as the kernel counted them.
fn rto_give_up(hosts: &Hosts, tracer: &Tracer) -> Result<String, String> {
    let options = ClientOptions {
        user_timeout: Some(Duration::from_secs(4)),
        ..Default::default()
    };
    let before = hosts.client.snmp();
    let mut conn = establish(hosts, false, options);
    let port = conn.client_port;
    hosts.client.blackhole_from(Hosts::server_addr(false));
    conn.client
        .write_all(&[1u8; 3000])
        .map_err(|e| format!("write: {e}"))?;
    wait_verdict(tracer, "peer_unresponsive", |r| {
        r["verdict"] == "peer_unresponsive" && r["lport"] == port
    });
    let death = wait_verdict(tracer, "retries_exhausted", |r| {
        r["verdict"] == "retries_exhausted" && r["lport"] == port
    });
    check(death["facts"]["error"] == "ETIMEDOUT", || {
        format!("error {}", death["facts"]["error"])
    })?;
    drop(conn);
    let after = hosts.client.snmp();
    let kernel = after.delta(&before, "Tcp.RetransSegs");
    let traced = retransmitted_segments(&events(&tracer.records()), hosts.client.inode);
    check(u64::try_from(kernel) == Ok(traced), || {
        format!("RetransSegs {kernel}, traced retransmitted segments {traced}")
    })?;
    Ok(format!(
        "peer_unresponsive then retries_exhausted; {traced} retransmitted segments = RetransSegs"
    ))
}

/// Idle with keepalive, cable pulled: each probe, then the kernel declares the peer dead.
fn keepalive_death(hosts: &Hosts, tracer: &Tracer) -> Result<String, String> {
    let options = ClientOptions {
        keepalive: Some((Duration::from_secs(1), Duration::from_secs(1), 2)),
        ..Default::default()
    };
    let before = hosts.client.snmp();
    let conn = establish(hosts, false, options);
    let port = conn.client_port;
    hosts.client.blackhole_from(Hosts::server_addr(false));
    let verdict = wait_verdict(tracer, "keepalive_exhausted", |r| {
        r["verdict"] == "keepalive_exhausted" && r["lport"] == port
    });
    let kernel = hosts.client.snmp().delta(&before, "TcpExt.TCPKeepAlive");
    let probes: Vec<u64> = tracer
        .events()
        .iter()
        .filter(|r| r["kind"] == "keepalive_probe" && r["lport"] == port)
        .filter_map(|r| r["probe"].as_u64())
        .collect();
    // Every probe the kernel sent is an event, numbered as the kernel counted it (5.10
    // restarts its count mid-way and sends more than TCP_KEEPCNT; 6.x sends exactly 2).
    check(
        probes.len() as i64 == kernel && probes.last() == Some(&2),
        || format!("probe events {probes:?}, TCPKeepAlive {kernel}"),
    )?;
    check(verdict["facts"]["probes"] == 2, || format!("{verdict}"))?;
    drop(conn);
    Ok(format!(
        "keepalive_probe {probes:?} = TCPKeepAlive, then keepalive_exhausted"
    ))
}

/// The peer aborts an established connection: we receive its reset, close our socket,
/// and the kernel's release of it is seen (no dead socket held).
fn peer_reset(hosts: &Hosts, tracer: &Tracer) -> Result<String, String> {
    let conn = establish(hosts, false, ClientOptions::default());
    let port = conn.client_port;
    abort(conn.server);
    let verdict = wait_verdict(tracer, "peer_reset", |r| {
        r["verdict"] == "peer_reset" && r["lport"] == port
    });
    check(verdict["facts"]["error"] == "ECONNRESET", || {
        format!("error {}", verdict["facts"]["error"])
    })?;
    drop(conn.client);
    tracer.wait_for(DEADLINE, "the client socket's release", |r| {
        r["type"] == "event" && r["kind"] == "destroy" && r["lport"] == port
    });
    let seen = verdicts(tracer, hosts.client.inode);
    check(!seen.iter().any(|v| v == "dead_socket_held"), || {
        format!("verdicts {seen:?}")
    })?;
    Ok("peer_reset, ECONNRESET; release seen".into())
}

/// This host aborts (SO_LINGER 0): the reset it sends, and why.
fn local_abort(hosts: &Hosts, tracer: &Tracer) -> Result<String, String> {
    let conn = establish(hosts, false, ClientOptions::default());
    let port = conn.client_port;
    let server: TcpStream = conn.server;
    abort(conn.client);
    let verdict = wait_verdict(tracer, "local_abort", |r| {
        r["verdict"] == "local_abort" && r["lport"] == port
    });
    drop(server);
    let reason = verdict["facts"]["reset_reason"].as_str().map(str::to_owned);
    Ok(match reason {
        Some(reason) => format!("local_abort, reason {reason}"),
        None => "local_abort (this kernel gives no reset reasons)".into(),
    })
}
