//! What verdicts say: every explanation, the variants ICMP errors and reset reasons bring,
//! and the evidence of one verdict, pinned word for word. The rule tests check the facts;
//! these check the sentences built from them.

use super::{
    connect::{unreachable_after_a_retry, unreachable_at_once},
    properties::scenario_sockets,
    *,
};
use crate::event::{Errno, ResetReason, TcpState as S, TimerKind};

fn explanations(s: &Sock) -> Vec<String> {
    run(s.events.clone(), s.now + 200_000 * MS)
        .into_iter()
        .map(|v| format!("{}: {}", v.verdict, v.explanation))
        .collect()
}

#[test]
fn every_verdict_explains_itself_with_its_numbers() {
    let said: Vec<String> = scenario_sockets().iter().flat_map(explanations).collect();
    assert_eq!(
        said,
        [
            "peer_unresponsive: peer 10.0.0.2:80 is not acknowledging: 3 retransmission \
             timeouts in a row over 1.2 s, RTO now 800 ms; the kernel will give up in about \
             17 min 23 s (tcp_retries2=15, 924.6 s) unless it answers",
            "retries_exhausted: peer 10.0.0.2:80 stopped acknowledging: 6 retransmits over \
             25.2 s (last RTO 6.4 s); the kernel gave up after tcp_retries2=15, 924.6 s with \
             ETIMEDOUT",
            "keepalive_exhausted: peer 10.0.0.2:80 declared dead by keepalive: 3 probes 1.0 s \
             apart after 1.0 s idle went unanswered; the kernel reset the connection with \
             ETIMEDOUT",
            "connection_refused: connect to 10.0.0.2:80 refused: the peer answered our SYN \
             with a reset (nothing listens on port 80)",
            "peer_reset: 10.0.0.2:80 reset the connection in ESTABLISHED, answering our \
             retransmits after 2 unanswered timeouts in a row: the peer lost the connection's \
             state (it rebooted, or a middlebox expired the flow); the application sees \
             ECONNRESET",
            "dead_socket_held: app/4242 still holds its socket to 10.0.0.2:80 30.0 s after \
             the kernel ended the connection with ECONNRESET: the application has not noticed",
            "local_abort: this host reset its connection to 10.0.0.2:80 in ESTABLISHED \
             (TCP_STATE: closed or aborted in a state that needs a reset, e.g. SO_LINGER 0); \
             the peer sees ECONNRESET",
            "orphan_timeout: a socket to 10.0.0.2:80 that the application had already closed \
             died retransmitting in FIN_WAIT1: 2 retransmits over 1.2 s, the kernel gave up \
             with ETIMEDOUT; data still unacknowledged was lost",
            "connect_timeout: connect to 10.0.0.2:80 timed out: 2 SYN retransmits over 7.0 s \
             went unanswered (tcp_syn_retries=6), the kernel gave up with ETIMEDOUT",
            "retries_exhausted: peer 10.0.0.2:80 kept its receive window closed and stopped \
             answering: 3 zero-window probes over 5.6 s; the kernel gave up after \
             tcp_retries2=15 probes with ETIMEDOUT",
        ]
    );
}

#[test]
fn icmp_errors_user_timeouts_and_reset_reasons_are_named() {
    let unreachable = unreachable_at_once(1);
    let syn_then_icmp = unreachable_after_a_retry(2);
    let data_then_icmp = Sock::new(3)
        .user_timeout(5_000)
        .established()
        .rtos(2)
        .after_ms(800)
        .close_with(S::ESTABLISHED, Errno::EHOSTUNREACH, Some(TimerKind::Write))
        .destroy();
    let linger = Sock::new(4)
        .aborted(ResetReason::TcpAbortOnLinger)
        .destroy();
    let said: Vec<String> = [unreachable, syn_then_icmp, data_then_icmp, linger]
        .iter()
        .flat_map(explanations)
        .collect();
    assert_eq!(
        said,
        [
            "connection_refused: connect to 10.0.0.2:80 refused: the network answered our SYN \
             with EHOSTUNREACH",
            "connect_timeout: connect to 10.0.0.2:80 timed out: 1 SYN retransmit over 3.0 s \
             went unanswered (tcp_syn_retries=6), the kernel gave up with EHOSTUNREACH; the \
             network last said EHOSTUNREACH",
            "retries_exhausted: peer 10.0.0.2:80 stopped acknowledging: 2 retransmits over \
             1.2 s (last RTO 400 ms); the kernel gave up after TCP_USER_TIMEOUT 5.0 s with \
             EHOSTUNREACH (the network's last ICMP error, reported instead of ETIMEDOUT)",
            "local_abort: this host reset its connection to 10.0.0.2:80 in ESTABLISHED \
             (TCP_ABORT_ON_LINGER: closed with SO_LINGER 0); the peer sees ECONNRESET",
        ]
    );
}

#[test]
fn evidence_cites_the_streak_and_the_death() {
    let s = &scenario_sockets()[0];
    let v = run(s.events.clone(), s.now + MS);
    let cited: Vec<(&str, &str)> = v[1]
        .evidence
        .iter()
        .map(|e| (e.kind.name(), e.detail.as_str()))
        .collect();
    assert_eq!(
        cited,
        [
            (
                "retransmit",
                "RTO retransmit, 1 timeout in a row, RTO 200 ms (first)"
            ),
            (
                "retransmit",
                "RTO retransmit, 6 timeouts in a row, RTO 6.4 s (latest)"
            ),
            (
                "state_change",
                "ESTABLISHED → CLOSE in the retransmit timer, ETIMEDOUT"
            ),
        ]
    );
}

/// The recorded traces' verdicts, replayed: every sentence, fact and cited moment comes out
/// byte for byte as the tracer wrote it (every verdict kind the real kernel gave, both
/// families, drops, storms and inferences).
#[test]
fn replayed_fixtures_say_what_was_recorded() {
    use crate::record::Record;
    let mut seen = 0;
    for trace in [
        include_str!("../../../tests/data/scenarios.jsonl"),
        include_str!("../../../tests/data/synthetic.jsonl"),
    ] {
        let mut engine = None;
        let (mut recorded, mut replayed) = (Vec::new(), Vec::new());
        let mut end = 0;
        for line in trace.lines() {
            let record = Record::parse(line).unwrap();
            end = end.max(record.ts_ns());
            match record {
                Record::Header(h) => {
                    let t = h.thresholds.expect("the trace records its thresholds");
                    engine = Some(Engine::new(t.thresholds()));
                }
                Record::Event(e) => engine.as_mut().unwrap().push(*e, &mut replayed),
                Record::Verdict(v) => recorded.push(*v),
                _ => {}
            }
        }
        engine.as_mut().unwrap().finish(end, &mut replayed);
        let said = |v: &Verdict| {
            let facts = serde_json::to_string(&v.facts).unwrap();
            let evidence = serde_json::to_string(&v.evidence).unwrap();
            (v.socket, v.verdict, v.explanation.clone(), facts, evidence)
        };
        let mut recorded: Vec<_> = recorded.iter().map(said).collect();
        let mut replayed: Vec<_> = replayed.iter().map(said).collect();
        recorded.sort();
        replayed.sort();
        assert_eq!(recorded, replayed);
        seen += recorded.len();
    }
    assert!(seen > 100, "{seen} verdicts in the fixtures");
}
