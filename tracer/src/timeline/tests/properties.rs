//! Properties over many sockets: interleaving never changes a verdict; and the synthetic
//! trace fixture that tests/replay.rs replays stays what the engine writes.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::{
    event::{Direction, ResetReason, TcpFlags},
    testing::{header, recorded_trace},
};

/// Several sockets, one of each kind of story (deaths, near misses, a held socket).
pub(super) fn scenario_sockets() -> Vec<Sock> {
    vec![
        Sock::new(1).retries_exhausted().destroy(),
        Sock::new(2)
            .keepalive_exhausted()
            .error_report(110)
            .destroy(),
        Sock::new(3).connection_refused().destroy(),
        // Never closed by its application: dead_socket_held.
        Sock::new(4).peer_lost_state().error_report(104),
        Sock::new(5)
            .aborted(ResetReason::TcpState)
            .error_report(0)
            .destroy(),
        Sock::new(6).recovered().fin_close(),
        Sock::new(7).orphan_timeout().destroy(),
        Sock::new(8).connect_timeout().destroy(),
        Sock::new(9).zero_window_exhausted().destroy(),
    ]
}

/// The scenario sockets, and the stories of issue 16's verdicts, in groups that belong
/// together: a retry storm is one process's attempts over many sockets.
fn scenario_groups() -> Vec<Vec<Sock>> {
    let mut groups: Vec<Vec<Sock>> = scenario_sockets().into_iter().map(|s| vec![s]).collect();
    // The peer closed, the application never does: close_wait_held.
    groups.push(vec![Sock::new(10).established().after_ms(50).peer_closed()]);
    // Near miss: it closes after 20 s.
    groups.push(vec![
        Sock::new(11)
            .established()
            .peer_closed()
            .after_ms(20_000)
            .state(
                crate::event::TcpState::CLOSE_WAIT,
                crate::event::TcpState::LAST_ACK,
            ),
    ]);
    // The peer stopped reading: receiver_stalled; a short stall: nothing.
    groups.push(vec![Sock::new(12).established().window_closed(7)]);
    groups.push(vec![
        Sock::new(13)
            .established()
            .window_closed(4)
            .window_opened()
            .fin_close(),
    ]);
    // Every SYN dropped by this host's firewall: connect_timeout, saying so.
    let mut dropped = Sock::new(14).connect();
    for (n, wait) in [(0u8, 0u64), (1, 1_000), (2, 2_000)] {
        if n > 0 {
            dropped = dropped.after_ms(wait).syn_retransmit_failed(n, -1);
        }
        dropped = dropped.dropped(Direction::Out, TcpFlags::SYN, "NETFILTER_DROP");
    }
    groups.push(vec![dropped.after_ms(4_000).close_with(
        crate::event::TcpState::SYN_SENT,
        crate::event::Errno::ETIMEDOUT,
        Some(crate::event::TimerKind::Write),
    )]);
    // storm/77 refused ten times in 3 s: retry_storm; near miss: nine by storm/78.
    for (pid, count, first_id) in [(77, 10, 20), (78, 9, 40)] {
        groups.push(
            (0..count)
                .map(|i| {
                    Sock::new(first_id + i)
                        .owner("storm", pid)
                        .ports(0, 443)
                        .after_ms(300 * i)
                        .connection_refused()
                        .destroy()
                })
                .collect(),
        );
    }
    groups
}

fn by_socket(verdicts: Vec<Verdict>) -> BTreeMap<u64, Vec<Verdict>> {
    let mut m = BTreeMap::new();
    for v in verdicts {
        m.entry(v.socket.0).or_insert_with(Vec::new).push(v);
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Interleaving many sockets in any order within a reordering window smaller than the
    /// engine's gives every socket exactly the verdicts (times, facts, words) it gets alone.
    #[test]
    fn interleaving_never_changes_a_verdict(
        jitter in proptest::collection::vec(0u64..50_000, 256),
        offsets in proptest::collection::vec(0u64..3_000, 17),
    ) {
        use VerdictKind::*;
        let groups: Vec<Vec<Sock>> = scenario_groups()
            .into_iter()
            .zip(&offsets)
            .map(|(g, &ms)| g.into_iter().map(|s| s.shifted(ms)).collect())
            .collect();
        let end = 200_000 * MS;
        let mut alone = BTreeMap::new();
        for g in &groups {
            let mut events: Vec<Event> = g.iter().flat_map(|s| s.events.clone()).collect();
            events.sort_by_key(|e| e.ts_ns);
            alone.extend(by_socket(run(events, end)));
        }
        let sockets: Vec<&Sock> = groups.iter().flatten().collect();
        // Merge by timestamp, then let each event's arrival lag by up to 50 ms (the ring
        // buffer's cross-CPU disorder), less than the engine's 100 ms window.
        let mut merged: Vec<Event> = sockets.iter().flat_map(|s| s.events.clone()).collect();
        merged.sort_by_key(|e| e.ts_ns);
        let mut arrivals: Vec<(u64, usize, Event)> = merged
            .into_iter()
            .enumerate()
            .map(|(i, e)| (e.ts_ns + jitter[i % jitter.len()] * 1_000, i, e))
            .collect();
        arrivals.sort_by_key(|(arrival, i, _)| (*arrival, *i));
        let together = by_socket(run(arrivals.into_iter().map(|(_, _, e)| e).collect(), end));
        let differ: Vec<_> = alone
            .keys()
            .chain(together.keys())
            .filter(|id| alone.get(id) != together.get(id))
            .map(|id| (id, alone.get(id), together.get(id)))
            .collect();
        prop_assert!(differ.is_empty(), "alone, together: {:#?}", differ);
        // And every story got the verdicts it should.
        let kinds_of = |id: u64| alone.get(&id).map(|v| kinds(v)).unwrap_or_default();
        prop_assert_eq!(kinds_of(1), vec![PeerUnresponsive, RetriesExhausted]);
        prop_assert_eq!(kinds_of(2), vec![KeepaliveExhausted]);
        prop_assert_eq!(kinds_of(3), vec![ConnectionRefused]);
        prop_assert_eq!(kinds_of(4), vec![PeerReset, DeadSocketHeld]);
        prop_assert_eq!(kinds_of(5), vec![LocalAbort]);
        prop_assert_eq!(kinds_of(6), vec![]);
        prop_assert_eq!(kinds_of(7), vec![OrphanTimeout]);
        prop_assert_eq!(kinds_of(8), vec![ConnectTimeout]);
        prop_assert_eq!(kinds_of(9), vec![RetriesExhausted]);
        prop_assert_eq!(kinds_of(10), vec![CloseWaitHeld]);
        prop_assert_eq!(kinds_of(11), vec![]);
        prop_assert_eq!(kinds_of(12), vec![ReceiverStalled]);
        prop_assert_eq!(kinds_of(13), vec![]);
        prop_assert_eq!(kinds_of(14), vec![ConnectTimeout]);
        prop_assert!(alone[&14][0].explanation.contains("every SYN (3 over 7.0 s) was dropped"));
        // The storm: one verdict, at the tenth refusal, beside each attempt's own.
        prop_assert_eq!(kinds_of(29), vec![ConnectionRefused, RetryStorm]);
        for id in (20..29).chain(40..49) {
            prop_assert_eq!(kinds_of(id), vec![ConnectionRefused]);
        }
        let storms = alone.values().flatten().filter(|v| v.verdict == RetryStorm).count();
        prop_assert_eq!(storms, 1);
    }
}

/// The synthetic trace fixture (tests/data/synthetic.jsonl, replayed by tests/replay.rs):
/// the scenario sockets written as a recorded trace, with the engine's verdicts. Fails when
/// the rules or the record format changed; `UPDATE_FIXTURES=1 cargo test -p tracer --lib
/// synthetic_trace` rewrites it.
#[test]
fn synthetic_trace_fixture_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/synthetic.jsonl");
    let sockets: Vec<Sock> = scenario_sockets()
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.shifted(i as u64 * 700))
        .collect();
    let mut events: Vec<Event> = sockets.iter().flat_map(|s| s.events.clone()).collect();
    events.sort_by_key(|e| e.ts_ns);
    let started = events[0].ts_ns - MS;
    let end = events[events.len() - 1].ts_ns + 40_000 * MS;
    let (lines, _) = recorded_trace(
        header("synthetic", started),
        events,
        end,
        "end of input",
        false,
    );
    let text = lines.join("\n") + "\n";
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        stored == text,
        "{path} is out of date: rerun with UPDATE_FIXTURES=1 and review the diff"
    );
}
