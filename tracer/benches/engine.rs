//! Throughput of the timeline engine alone (no decoding): `cargo bench -p tracer --bench
//! engine`. A measurement, not a check (see BENCHMARKS.md for `cargo xtask bench`).

use std::time::Instant;

use tracer::{
    event::{Event, EventKind, RetransmitClass, TcpState},
    testing::Sock,
    timeline::{Engine, Retain, Thresholds},
};

fn main() {
    measure("live (no timelines kept)", Retain::Nothing, 0);
    measure(
        "report (timelines with verdicts kept)",
        Retain::WithVerdicts,
        0,
    );
    // Far worse disorder than a ring buffer produces: stamps off by up to 50 ms.
    measure(
        "live, events up to 50 ms out of order",
        Retain::Nothing,
        50_000_000,
    );
}

fn measure(what: &str, retain: Retain, jitter_ns: u64) {
    // 1000 sockets open at a time, each: connect, established, 6 retransmits, FIN close,
    // destroy; events interleaved 10 µs apart. Built as they are fed, as a decoder would.
    let mut engine = Engine::new(Thresholds::default());
    engine.retain(retain);
    let mut out = Vec::new();
    let mut ts = 1_000_000_000u64;
    let mut n = 0u64;
    // A fixed pseudo-random sequence (64-bit LCG): the same disorder every run.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let start = Instant::now();
    for round in 0..400u64 {
        // Each socket's first event, as the template of its later ones.
        let sockets: Vec<Event> = (0..1000u64)
            .map(|s| {
                Sock::new(round * 1000 + s + 1)
                    .without_owner()
                    .event(EventKind::StateChange, TcpState::SYN_SENT)
            })
            .collect();
        for step in 0..11 {
            for template in &sockets {
                ts += 10_000;
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let (kind, state) = match step {
                    0 => (EventKind::StateChange, TcpState::SYN_SENT),
                    1 => (EventKind::StateChange, TcpState::ESTABLISHED),
                    2..=7 => (EventKind::Retransmit, TcpState::ESTABLISHED),
                    8 => (EventKind::StateChange, TcpState::FIN_WAIT1),
                    9 => (EventKind::StateChange, TcpState::CLOSE),
                    _ => (EventKind::Destroy, TcpState::CLOSE),
                };
                let mut e = Event {
                    ts_ns: ts - (seed >> 33) % (jitter_ns + 1),
                    kind,
                    state,
                    ..template.clone()
                };
                if kind == EventKind::Retransmit {
                    e.class = Some(RetransmitClass::Fast);
                }
                engine.push(e, &mut out);
                n += 1;
            }
        }
    }
    engine.finish(ts + 1, &mut out);
    let stragglers = engine.stats().out_of_window;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{what}: {n} events in {secs:.3} s: {:.2} M events/s ({stragglers} out of window)",
        n as f64 / secs / 1e6,
    );
    drop(engine.take_finished());
}
