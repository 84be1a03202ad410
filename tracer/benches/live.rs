//! The live path in userspace, from ring-buffer records to the sinks: decoding, owners and
//! their identity, naming, the trace output (JSON Lines or binary) or text, the timeline
//! engine. What `tracer record` and `tracer live` spend per event, without the kernel and
//! the disk: `cargo bench -p tracer --bench live`. A measurement, not a check.
//!
//! Arguments: `[connect|retransmit] [json|binary|text|none] [EVENTS]`, for one
//! configuration (run it under `valgrind --tool=callgrind --toggle-collect='*Pipeline*raw*'`
//! to count the instructions per event of the pipeline alone, without generating the
//! records). `none` is the exit summary alone: what the engine and naming cost.
//!
//! - connect: the connect storm, each connect as the kernel reports it (SYN_SENT, the
//!   server's socketless reset, the reset received, CLOSE with ECONNREFUSED, the error
//!   report, the release), owned by a process in a Kubernetes pod's container;
//! - retransmit: 64 bulk connections retransmitting (fast retransmits with counters).

use std::{io, time::Duration};

use tracer::{
    event::KernelFacts,
    identity::{Config, Host, OwnerIdentities, Resolver},
    output::{BinaryTrace, JsonLines, Sink, Text},
    session::Pipeline,
    testing,
    timeline::{Engine, Thresholds},
};
use tracer_common::{RawEvent, class, flags, kind};

const POD_CGROUP: u64 = 4242;
const CGROUP_PATH: &str = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b8e5c2a_1f3d_4c6b_9a7e_2d4f6b8a0c1e.slice/cri-containerd-a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90.scope";

/// One cgroup: the pod container the storm's process runs in.
struct OneCgroup;

impl Host for OneCgroup {
    fn walk_cgroups(&mut self, visit: &mut dyn FnMut(u64, &str)) -> io::Result<()> {
        visit(POD_CGROUP, CGROUP_PATH);
        Ok(())
    }
    fn cgroup_id(&mut self, _: &str) -> io::Result<u64> {
        Err(io::ErrorKind::NotFound.into())
    }
    fn pod_log_dirs(&mut self) -> io::Result<Vec<String>> {
        Ok(vec![
            "payments_api-7f9c_0b8e5c2a-1f3d-4c6b-9a7e-2d4f6b8a0c1e".into(),
        ])
    }
    fn proc_cgroup(&mut self, _: u32) -> io::Result<String> {
        Err(io::ErrorKind::NotFound.into())
    }
}

const CLIENT_NETNS: u32 = 4026532884;
const SERVER_NETNS: u32 = 4026533364;

fn blank() -> RawEvent {
    // SAFETY: RawEvent is plain integers and arrays.
    let mut r: RawEvent = unsafe { std::mem::zeroed() };
    r.family = 2;
    r.reason = u32::MAX;
    r
}

/// A full socket's event with its owner and counters.
fn owned(ts_ns: u64, code: u8, cookie: u64, sport: u16, dport: u16, state: u8) -> RawEvent {
    let mut r = blank();
    r.ts_ns = ts_ns;
    r.kind = code;
    r.cookie = cookie;
    r.netns = CLIENT_NETNS;
    r.saddr[..4].copy_from_slice(&[10, 99, 0, 1]);
    r.daddr[..4].copy_from_slice(&[10, 99, 0, 2]);
    r.sport = sport;
    r.dport = dport;
    r.state = state;
    r.owner_tgid = 31337;
    r.owner_comm[..9].copy_from_slice(b"connector");
    r.cgroup_id = POD_CGROUP;
    r.flags = flags::OWNER_KNOWN | flags::COUNTERS;
    r.rto_jiffies = 250;
    r.keepalive_time_jiffies = 7200 * 250;
    r.keepalive_intvl_jiffies = 75 * 250;
    r.keepalive_probes = 9;
    r.retries1 = 3;
    r.retries2 = 15;
    r.syn_retries = 6;
    r
}

const SYN_SENT: u8 = 2;
const CLOSE: u8 = 7;
const ESTABLISHED: u8 = 1;

/// The seven records of one refused connect.
fn connect(n: u64, out: &mut Vec<RawEvent>) {
    let ts = 1_000_000_000 + n * 8_000;
    let cookie = 1_000 + n;
    let port = 30_000 + (n % 30_000) as u16;
    let mut syn = owned(ts, kind::STATE_CHANGE, cookie, 0, 9, SYN_SENT);
    syn.old_state = CLOSE;
    out.push(syn);
    let mut rst = blank();
    rst.ts_ns = ts + 1_000;
    rst.kind = kind::RESET_SENT;
    rst.netns = SERVER_NETNS;
    rst.saddr[..4].copy_from_slice(&[10, 99, 0, 2]);
    rst.daddr[..4].copy_from_slice(&[10, 99, 0, 1]);
    rst.sport = 9;
    rst.dport = port;
    rst.state = CLOSE;
    rst.reason = 1;
    out.push(rst);
    let mut received = owned(ts + 2_000, kind::RESET_RECEIVED, cookie, port, 9, SYN_SENT);
    received.packets_out = 1;
    out.push(received);
    let mut close = owned(ts + 3_000, kind::STATE_CHANGE, cookie, port, 9, CLOSE);
    close.old_state = SYN_SENT;
    close.sk_err = 111;
    out.push(close);
    let mut report = owned(ts + 4_000, kind::ERROR_REPORT, cookie, port, 9, CLOSE);
    report.sk_err = 111;
    report.err = 111;
    out.push(report);
    out.push(owned(ts + 5_000, kind::DESTROY, cookie, port, 9, CLOSE));
}

/// One fast retransmit of one of 64 bulk connections.
fn retransmit(n: u64, out: &mut Vec<RawEvent>) {
    let socket = n % 64;
    let mut r = owned(
        1_000_000_000 + n * 20_000,
        kind::RETRANSMIT,
        5_000 + socket,
        40_000 + socket as u16,
        5201,
        ESTABLISHED,
    );
    r.class = class::FAST;
    r.segs = 1 + (n % 40) as u32;
    r.ca_state = 3;
    r.packets_out = 180;
    r.total_retrans = (n / 64) as u32;
    r.rcv_tstamp = 1000;
    r.lsndtime = 1000;
    r.jiffies = 1001;
    out.push(r);
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let events: u64 = arg(2).and_then(|n| n.parse().ok()).unwrap_or(2_100_000);
    let storms: &[&str] = match arg(0) {
        Some(storm) => &[match storm {
            "connect" => "connect",
            _ => "retransmit",
        }],
        None => &["connect", "retransmit"],
    };
    let outputs: &[&str] = match arg(1) {
        Some("binary") => &["binary"],
        Some("text") => &["text"],
        Some("none") => &["none"],
        Some(_) => &["json"],
        None => &["json", "binary", "text", "none"],
    };
    for storm in storms {
        for output in outputs {
            measure(storm, output, events);
        }
    }
}

fn measure(storm: &str, output: &str, events: u64) {
    let facts = KernelFacts {
        hz: 250,
        reset_reasons: [(1, "NO_SOCKET".to_owned())].into(),
        drop_reasons: Default::default(),
    };
    let resolver = Resolver::with_host(OneCgroup, Config::default());
    let identities = OwnerIdentities::with_resolver(Some(resolver), None, None);
    let mut pipeline = Pipeline::new(facts, Engine::new(Thresholds::default()), identities);
    let mut json = JsonLines::new(io::sink(), "sink");
    let mut binary = BinaryTrace::new(io::sink(), "sink");
    let mut text = Text::new(io::sink(), false);
    let mut nothing = tracer::output::Summary::new();
    let sink: &mut dyn Sink = match output {
        "json" => &mut json,
        "binary" => &mut binary,
        "text" => &mut text,
        _ => &mut nothing,
    };
    let mut sinks = [sink];
    sinks
        .header(&testing::header("bench", 1_000_000_000))
        .unwrap();
    let mut raw = Vec::with_capacity(4096);
    let mut n = 0;
    let mut spent = Duration::ZERO;
    let mut generated = 0u64;
    while n < events {
        // Batches as a drain of the ring buffer finds them.
        while raw.len() < 2048 && n < events {
            let before = raw.len();
            match storm {
                "connect" => connect(generated, &mut raw),
                _ => retransmit(generated, &mut raw),
            }
            generated += 1;
            n += (raw.len() - before) as u64;
        }
        let started = testing::thread_cpu();
        pipeline.raw(&mut raw, &mut sinks).unwrap();
        spent += testing::thread_cpu() - started;
    }
    let secs = spent.as_secs_f64();
    let totals = pipeline.totals();
    println!(
        "{storm} storm, {output}: {n} events, {} verdicts in {secs:.3} s of CPU: {:.0} ns per \
         event",
        totals.verdicts,
        secs * 1e9 / n as f64
    );
}
