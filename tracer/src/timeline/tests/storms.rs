//! retry_storm: one process's connection attempts to one peer, across sockets; near misses
//! (backoff, answers, other processes and peers).

use std::collections::BTreeMap;

use super::*;
use crate::event::{EventKind, TcpState};

/// `n` attempts by app/4242 to 10.0.0.2:80, `every_ms` apart from 1 s, each made by
/// `attempt` from a fresh socket.
fn attempts(n: u64, every_ms: u64, attempt: impl Fn(Sock) -> Sock) -> Vec<Event> {
    let mut events: Vec<Event> = (0..n)
        .flat_map(|i| attempt(Sock::new(100 + i).at_ms(1_000 + i * every_ms)).events)
        .collect();
    events.sort_by_key(|e| e.ts_ns);
    events
}

fn storms(v: &[Verdict]) -> Vec<&Verdict> {
    v.iter()
        .filter(|v| v.verdict == VerdictKind::RetryStorm)
        .collect()
}

#[test]
fn reconnecting_every_half_second_to_a_blackholed_peer_is_one_storm() {
    // Each attempt: SYN, retransmits at +1 s and +3 s, connect_timeout at +7 s.
    let events = attempts(20, 500, |s| s.connect_timeout().destroy());
    let starts: Vec<u64> = events
        .iter()
        .filter(|e| e.kind == EventKind::StateChange && e.state == TcpState::SYN_SENT)
        .map(|e| e.ts_ns)
        .collect();
    let v = run(events, 60_000 * MS);
    let found = storms(&v);
    assert_eq!(found.len(), 1, "{v:#?}");
    let storm = found[0];
    // The tenth unanswered attempt (the one of 5.5 s, retransmitting at 6.5 s) makes the
    // storm; by then twelve attempts were made, all still in flight.
    let f = &storm.facts;
    assert_eq!(f.attempts, Some(12));
    assert_eq!(f.max_in_flight, Some(12));
    assert_eq!(f.failures, Some(BTreeMap::new()));
    assert_eq!(f.window_ms, Some(60_000));
    assert_eq!(f.first_attempt_ns, Some(starts[0]));
    assert_eq!(f.last_attempt_ns, Some(starts[11]));
    assert_eq!(storm.conn.remote().to_string(), "10.0.0.2:80");
    assert_eq!(
        storm.explanation,
        "app/4242 is retrying 10.0.0.2:80 in a storm: 12 connection attempts in 5.5 s (10 \
         or more within 60.0 s unanswered or failing, none answered); 0 failed; 10 \
         unanswered so far; up to 12 in flight at once"
    );
    // Every attempt still gets its own death.
    let timeouts = v
        .iter()
        .filter(|v| v.verdict == VerdictKind::ConnectTimeout)
        .count();
    assert_eq!(timeouts, 20);
}

#[test]
fn refusals_count_as_they_come_and_a_long_storm_repeats_once_per_window() {
    // Refused at once, every second, for 130 s.
    let events = attempts(130, 1_000, |s| s.connection_refused().destroy());
    let v = run(events, 200_000 * MS);
    let found = storms(&v);
    assert_eq!(found.len(), 3, "{found:#?}");
    let first = found[0];
    let mut failures = BTreeMap::new();
    failures.insert("connection_refused".to_owned(), 10);
    assert_eq!(first.facts.attempts, Some(10));
    assert_eq!(first.facts.failures, Some(failures));
    assert_eq!(first.facts.max_in_flight, Some(1));
    assert!(
        first
            .explanation
            .contains("10 failed: connection_refused ×10")
    );
    // Repeated a window later, with the storm's totals so far.
    assert_eq!(found[1].ts_ns - first.ts_ns, 60_000 * MS);
    assert_eq!(found[1].facts.attempts, Some(70));
    assert!(
        found[1]
            .explanation
            .starts_with("app/4242 is still retrying")
    );
    assert_eq!(
        found[1].facts.first_attempt_ns,
        first.facts.first_attempt_ns
    );
}

#[test]
fn near_misses_are_no_storm() {
    // Exponential backoff: attempts at 1, 2, 4, 8, 16, 32 s: six within a minute.
    let backoff: Vec<Event> = {
        let mut events: Vec<Event> = (0..8)
            .flat_map(|i| {
                Sock::new(200 + i)
                    .at_ms(1_000 << i)
                    .connection_refused()
                    .destroy()
                    .events
            })
            .collect();
        events.sort_by_key(|e| e.ts_ns);
        events
    };
    assert!(storms(&run(backoff, 400_000 * MS)).is_empty());
    // Nine failures, then an answer, then nine more: never ten without an answer.
    let mut events = attempts(9, 500, |s| s.connection_refused().destroy());
    events.extend(Sock::new(300).at_ms(6_000).established().events);
    events.extend(
        attempts(9, 500, |s| s.connection_refused().destroy())
            .into_iter()
            .map(|mut e| {
                e.ts_ns += 6_000 * MS;
                e.socket = e.socket.map(|s| crate::event::SocketId(s.0 + 1_000));
                e
            }),
    );
    events.sort_by_key(|e| e.ts_ns);
    assert!(storms(&run(events, 60_000 * MS)).is_empty());
    // Twenty parallel connects that are answered: a pool filling up, no storm.
    let pool = attempts(20, 0, |s| s.established());
    assert!(storms(&run(pool, 10_000 * MS)).is_empty());
    // Ten failures spread over two processes, or two peers: five each, no storm.
    let two = attempts(10, 500, |s| s.connection_refused().destroy())
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            if e.socket.unwrap().0 % 2 == 0 {
                e.process.as_mut().unwrap().pid = 4343;
                if i % 3 == 0 {
                    e.conn.rport = 81;
                }
            }
            e
        })
        .collect();
    assert!(storms(&run(two, 60_000 * MS)).is_empty());
}

#[test]
fn threshold_and_window_are_configurable() {
    let events = attempts(5, 500, |s| s.connection_refused().destroy());
    let mut engine = Engine::new(Thresholds {
        retry_storm_attempts: 5,
        retry_storm_window_ns: 10_000 * MS,
        ..Thresholds::default()
    });
    let mut out = Vec::new();
    for e in events {
        engine.push(e, &mut out);
    }
    engine.finish(20_000 * MS, &mut out);
    assert_eq!(storms(&out).len(), 1);
    assert_eq!(storms(&out)[0].facts.window_ms, Some(10_000));
}

#[test]
fn applications_abandoning_their_connects_storm_too() {
    // A client with a 2 s connect timeout of its own: it closes the socket in SYN_SENT.
    let events = attempts(12, 500, |s| {
        s.connect()
            .after_ms(1_000)
            .retransmit(crate::event::RetransmitClass::Syn, 1, 1_000)
            .after_ms(1_000)
            .state(TcpState::SYN_SENT, TcpState::CLOSE)
            .destroy()
    });
    let v = run(events, 60_000 * MS);
    let found = storms(&v);
    assert_eq!(found.len(), 1);
    let failures = found[0].facts.failures.as_ref().unwrap();
    assert!(
        failures.get("abandoned").copied().unwrap_or(0) > 0,
        "{failures:?}"
    );
}

#[test]
fn storm_bookkeeping_is_bounded() {
    use crate::timeline::storms::{MAX_ATTEMPTS, MAX_PEERS};
    let mut engine = Engine::new(Thresholds::default());
    let mut out = Vec::new();
    // One unanswered attempt each to more peers than are followed.
    for i in 0..(MAX_PEERS as u64 + 100) {
        let s = Sock::new(1_000 + i)
            .owner("app", 10 + (i / 60_000) as u32)
            .ports(0, 1 + (i % 60_000) as u16)
            .at_ms(1_000 + i)
            .connect();
        for e in s.events {
            engine.push(e, &mut out);
        }
    }
    let (pairs, sockets) = engine.storm_pairs();
    assert!(pairs <= MAX_PEERS, "{pairs}");
    assert!(sockets <= MAX_PEERS, "{sockets}");
    // Thousands of attempts in flight to one peer: at most MAX_ATTEMPTS remembered.
    let mut engine = Engine::new(Thresholds::default());
    for i in 0..(MAX_ATTEMPTS as u64 * 3) {
        for e in Sock::new(10_000 + i).at_ms(1_000 + i).connect().events {
            engine.push(e, &mut out);
        }
    }
    assert!(engine.storm_pairs().1 <= MAX_ATTEMPTS + 1);
}
