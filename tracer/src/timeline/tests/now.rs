//! The read-only view of what a socket is going through now (`Timeline::rto_streak`,
//! `dead_held`, `state_since_ns`), as live views read it between events.

use super::*;
use crate::{
    event::{SocketId, TcpState as S},
    timeline::Timeline,
};

/// The engine after `events`, with time advanced to `now_ns`.
fn engine_at(events: Vec<Event>, now_ns: u64) -> Engine {
    let mut engine = Engine::new(Thresholds::default());
    let mut out = Vec::new();
    for e in events {
        engine.push(e, &mut out);
    }
    engine.tick(now_ns, &mut out);
    engine
}

fn timeline(engine: &Engine, id: u64) -> Option<&Timeline> {
    engine.timelines().find(|t| t.socket == SocketId(id))
}

#[test]
fn an_rto_streak_in_progress_with_the_predicted_give_up() {
    let s = Sock::new(1).established().rtos(2);
    let engine = engine_at(s.events.clone(), s.now + 200 * MS);
    let streak = timeline(&engine, 1).unwrap().rto_streak().unwrap();
    assert_eq!((streak.consecutive_rtos, streak.retransmits), (2, 2));
    assert!(!streak.warned, "below tcp_retries1");
    assert_eq!(streak.rto_ms, 400);
    assert!(streak.give_up_ns.unwrap() > streak.last_ns);

    // The third RTO warns; the prediction is the warning's own, renewed at the next RTO.
    let s = s.rtos_from(3, 3);
    let warned = verdicts_of(&s);
    let predicted = warned[0].facts.predicted_give_up_ns.unwrap();
    let engine = engine_at(s.events.clone(), s.now + 200 * MS);
    let streak = timeline(&engine, 1).unwrap().rto_streak().unwrap();
    assert!(streak.warned);
    assert_eq!(streak.consecutive_rtos, 3);
    assert_eq!(streak.give_up_ns, Some(predicted));
    assert_eq!(streak.first_ns, s.events[2].ts_ns);

    // Progress ends the streak; so does the death.
    let recovered = s.clone().after_ms(10).progress();
    let engine = engine_at(recovered.events.clone(), recovered.now + 200 * MS);
    assert_eq!(timeline(&engine, 1).unwrap().rto_streak(), None);
    let dead = Sock::new(2).retries_exhausted();
    let engine = engine_at(dead.events.clone(), dead.now + 200 * MS);
    assert_eq!(timeline(&engine, 2).unwrap().rto_streak(), None);
}

#[test]
fn with_tcp_user_timeout_the_kernel_gives_up_at_the_deadline() {
    let s = Sock::new(1).user_timeout(6_000).established().rtos(3);
    let engine = engine_at(s.events.clone(), s.now + 200 * MS);
    let streak = timeline(&engine, 1).unwrap().rto_streak().unwrap();
    assert_eq!(
        streak.give_up_ns,
        Some(streak.first_ns / MS * MS + 6_000 * MS)
    );
}

#[test]
fn a_closed_socket_dying_retransmitting_has_no_countdown_for_its_application() {
    let s = Sock::new(1)
        .established()
        .state(S::ESTABLISHED, S::FIN_WAIT1)
        .orphaned()
        .rtos(2);
    let engine = engine_at(s.events.clone(), s.now + 200 * MS);
    let streak = timeline(&engine, 1).unwrap().rto_streak().unwrap();
    assert_eq!(streak.give_up_ns, None);
}

#[test]
fn a_dead_socket_held_until_released_then_flagged() {
    let s = Sock::new(1).peer_reset().error_report(104);
    let died = s.events[s.events.len() - 2].ts_ns;
    let engine = engine_at(s.events.clone(), died + 5_000 * MS);
    let held = timeline(&engine, 1).unwrap().dead_held().unwrap();
    assert_eq!(held.since_ns, died);
    assert_eq!(held.error, crate::event::Errno::ECONNRESET);
    assert!(!held.flagged);
    let engine = engine_at(s.events.clone(), died + 31_000 * MS);
    assert!(timeline(&engine, 1).unwrap().dead_held().unwrap().flagged);
    // An orderly close is no death; a released socket is gone.
    let orderly = Sock::new(2).established().after_ms(5);
    let engine = engine_at(orderly.events.clone(), orderly.now + 200 * MS);
    assert_eq!(timeline(&engine, 2).unwrap().dead_held(), None);
    let released = s.clone().after_ms(10).destroy();
    let engine = engine_at(released.events.clone(), released.now + 200 * MS);
    assert!(timeline(&engine, 1).is_none());
}

#[test]
fn the_state_and_since_when() {
    let s = Sock::new(1)
        .established()
        .after_ms(500)
        .state(S::ESTABLISHED, S::CLOSE_WAIT);
    let since = s.events.last().unwrap().ts_ns;
    let engine = engine_at(s.events.clone(), s.now + 10_000 * MS);
    let t = timeline(&engine, 1).unwrap();
    assert_eq!((t.state, t.state_since_ns), (S::CLOSE_WAIT, since));
}
