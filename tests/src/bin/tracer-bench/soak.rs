//! `cargo xtask bench soak`: `tracer agent` (release) for 10 minutes under a keepalive
//! storm and a connect storm at once, scraped every second like Prometheus would, exporting
//! every verdict to an OTLP receiver. Resident memory at the start, the middle and the end
//! (it must stay flat), and CPU per 100 000 events/s. Not part of `all`: it takes the
//! whole duration (TRACER_SOAK_SECS, default 600).

use std::{
    collections::VecDeque,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use socket2::{Domain, Socket, TcpKeepalive, Type};
use tracer_tests::{
    Hosts,
    agent::{Agent, OtlpReceiver, free_port, sample},
    scenario::listen,
};

use super::measure::cpu_of;

/// Keepalive connections opened per wave, and how often a wave comes.
const WAVE: usize = 400;
const WAVE_EVERY: Duration = Duration::from_secs(5);
/// Probes before the kernel gives up on a connection (1 s apart, after 1 s idle).
const PROBES: u32 = 20;
/// How long a client (and its server end) is kept: past its death, so it is held dead for a
/// while too.
const KEEP_FOR: Duration = Duration::from_secs(40);

/// Refused connects per second (about six events each).
const CONNECTS_PER_SEC: u64 = 5_000;

/// One reading of the agent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    at: Duration,
    rss_kib: u64,
    cpu: Duration,
    events: f64,
    verdicts: f64,
    lost: f64,
    timelines: f64,
}

fn sum_of(exposition: &str, prefix: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn read(agent: &Agent, started: Instant) -> Reading {
    let text = agent.scrape();
    Reading {
        at: started.elapsed(),
        rss_kib: agent.rss_kib(),
        cpu: cpu_of(agent.pid()),
        events: sum_of(&text, "tracer_events_total{"),
        verdicts: sum_of(&text, "tracer_verdicts_total{"),
        lost: sample(&text, "tracer_events_lost_total"),
        timelines: sample(&text, "tracer_timelines"),
    }
}

/// Waves of keepalive connections toward a server whose ACKs never arrive: each probes
/// `PROBES` times, dies (keepalive_exhausted) and is held dead until dropped.
fn keepalive_storm(hosts: &Hosts, stop: &Arc<AtomicBool>) -> u64 {
    let listener = listen(&hosts.server, Hosts::server_addr(false), 0);
    let to = SocketAddr::new(
        Hosts::server_addr(false),
        listener.local_addr().unwrap().port(),
    );
    // Pure ACKs from the server never arrive (handshakes, FINs and resets still do).
    hosts.client.nft(&format!(
        "table inet soak {{\n chain input {{\n type filter hook input priority 0;\n \
         ip saddr {} tcp flags & (fin | syn | rst | ack) == ack drop\n }}\n}}\n",
        Hosts::server_addr(false)
    ));
    let servers = std::sync::Mutex::new(VecDeque::new());
    listener.set_nonblocking(true).unwrap();
    let accepting = AtomicBool::new(true);
    thread::scope(|scope| {
        scope.spawn(|| accept_all(&listener, &servers, &accepting));
        let mut clients: VecDeque<(Instant, TcpStream)> = VecDeque::new();
        let mut opened = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let stopped = stop.clone();
            let wave = hosts.client.run_in("ka-soak", move || {
                (0..WAVE)
                    .take_while(|_| !stopped.load(Ordering::Relaxed))
                    .filter_map(|_| keepalive_connect(to).ok())
                    .collect::<Vec<_>>()
            });
            opened += wave.len() as u64;
            let now = Instant::now();
            clients.extend(wave.into_iter().map(|c| (now, c)));
            while clients.front().is_some_and(|(t, _)| t.elapsed() > KEEP_FOR) {
                clients.pop_front();
            }
            let mut servers = servers.lock().unwrap();
            while servers
                .front()
                .is_some_and(|(t, _): &(Instant, TcpStream)| t.elapsed() > KEEP_FOR)
            {
                servers.pop_front();
            }
            drop(servers);
            thread::sleep(WAVE_EVERY);
        }
        accepting.store(false, Ordering::Relaxed);
        opened
    })
}

fn accept_all(
    listener: &TcpListener,
    kept: &std::sync::Mutex<VecDeque<(Instant, TcpStream)>>,
    accepting: &AtomicBool,
) {
    while accepting.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => kept.lock().unwrap().push_back((Instant::now(), s)),
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn keepalive_connect(to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_keepalive(true)?;
    socket.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(Duration::from_secs(1))
            .with_interval(Duration::from_secs(1))
            .with_retries(PROBES),
    )?;
    socket.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

/// Connects to a closed port, `CONNECTS_PER_SEC`: connection_refused each time.
fn connect_storm(hosts: &Hosts, stop: &Arc<AtomicBool>) -> u64 {
    let to = SocketAddr::new(Hosts::server_addr(true), 9);
    let stop = stop.clone();
    hosts.client.run_in("refused-soak", move || {
        let started = Instant::now();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let due = started.elapsed().as_millis() as u64 * CONNECTS_PER_SEC / 1000;
            if n >= due {
                thread::sleep(Duration::from_millis(1));
                continue;
            }
            let _ = TcpStream::connect(to);
            n += 1;
        }
        n
    })
}

pub(crate) fn soak() -> String {
    let secs: u64 = std::env::var("TRACER_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let hosts = Hosts::new("soak");
    let limit = libc::rlimit {
        rlim_cur: 65_536,
        rlim_max: 65_536,
    };
    // SAFETY: valid pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    let receiver = OtlpReceiver::counting(free_port());
    let mut args = hosts.netns_args();
    args.extend(
        [
            "--no-sweep",
            "--otlp-endpoint",
            &format!("http://{}", receiver.addr),
        ]
        .map(String::from),
    );
    let agent = Agent::start(&args);
    let stop = Arc::new(AtomicBool::new(false));
    thread::scope(|scope| {
        let keepalive = scope.spawn(|| keepalive_storm(&hosts, &stop));
        let refused = scope.spawn(|| connect_storm(&hosts, &stop));
        let started = Instant::now();
        // The agent is scraped every second, as Prometheus would.
        let mut readings = Vec::new();
        // Past the first connections' whole life (opened, probing, dead, held, closed).
        let warm_up = KEEP_FOR + Duration::from_secs(20);
        let marks = [
            warm_up,
            Duration::from_secs(secs / 2),
            Duration::from_secs(secs),
        ];
        let mut peak_rss = 0;
        for mark in marks {
            while started.elapsed() < mark {
                let r = read(&agent, started);
                peak_rss = peak_rss.max(r.rss_kib);
                thread::sleep(Duration::from_secs(1));
            }
            let r = read(&agent, started);
            peak_rss = peak_rss.max(r.rss_kib);
            eprintln!("soak: {r:?}");
            readings.push(r);
        }
        stop.store(true, Ordering::Relaxed);
        let opened = keepalive.join().unwrap();
        let connects = refused.join().unwrap();
        let text = agent.scrape();
        let exported = sample(&text, "tracer_otlp_exported_records_total");
        let dropped = sum_of(&text, "tracer_otlp_dropped_records_total{");
        let probes = sum_of(&text, "tracer_keepalive_probes_total{");
        let refusals = sum_of(
            &text,
            "tracer_connection_deaths_total{verdict=\"connection_refused\"",
        );
        let keepalive_deaths = sum_of(
            &text,
            "tracer_connection_deaths_total{verdict=\"keepalive_exhausted\"",
        );
        agent.stop_with(libc::SIGTERM);
        let received = receiver.count.load(Ordering::Relaxed);
        render(&Summary {
            readings,
            peak_rss,
            opened,
            connects,
            exported,
            dropped,
            received,
            probes,
            refusals,
            keepalive_deaths,
        })
    })
}

struct Summary {
    readings: Vec<Reading>,
    peak_rss: u64,
    opened: u64,
    connects: u64,
    exported: f64,
    dropped: f64,
    received: u64,
    probes: f64,
    refusals: f64,
    keepalive_deaths: f64,
}

fn render(s: &Summary) -> String {
    let (first, last) = (s.readings[0], *s.readings.last().unwrap());
    let wall = (last.at - first.at).as_secs_f64();
    let cpu = (last.cpu - first.cpu).as_secs_f64();
    let events_per_sec = (last.events - first.events) / wall;
    let verdicts_per_sec = (last.verdicts - first.verdicts) / wall;
    let core = cpu / wall;
    let mut out = String::from(
        "## Soak: `tracer agent` under a keepalive storm and a connect storm\n\n\
         | reading | at | VmRSS | timelines held | events (total) | lost (total) |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for (name, r) in ["start", "middle", "end"].iter().zip(&s.readings) {
        out += &format!(
            "| {name} | {:.0} s | {:.1} MiB | {:.0} | {:.0} | {:.0} |\n",
            r.at.as_secs_f64(),
            r.rss_kib as f64 / 1024.0,
            r.timelines,
            r.events,
            r.lost
        );
    }
    out += &format!(
        "\nPeak VmRSS {:.1} MiB. From start to end ({wall:.0} s): {events_per_sec:.0} events/s, \
         {verdicts_per_sec:.0} verdicts/s, {:.0} lost; the agent used {:.1}% of a core, i.e. \
         **{:.1}% of a core per 100 000 events/s**.\n\n\
         Storms: {} keepalive connections in waves of {WAVE} every {}s ({PROBES} probes each, \
         then held dead), {:.0} probes, {:.0} keepalive deaths; {} refused connects \
         ({CONNECTS_PER_SEC}/s; {:.0} connection_refused verdicts). OTLP: {:.0} records exported ({} received), \
         {:.0} dropped.\n",
        s.peak_rss as f64 / 1024.0,
        last.lost - first.lost,
        core * 100.0,
        core * 100.0 * 100_000.0 / events_per_sec.max(1.0),
        s.opened,
        WAVE_EVERY.as_secs(),
        s.probes,
        s.keepalive_deaths,
        s.connects,
        s.refusals,
        s.exported,
        s.received,
        s.dropped,
    );
    out
}
