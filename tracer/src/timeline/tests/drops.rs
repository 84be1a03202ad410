//! Drops this host made itself (`skb:kfree_skb`): attached to their socket, by the
//! kernel's naming or by tuple, and named by the verdicts they explain.

use super::*;
use crate::event::{Direction, Errno, EventKind, SocketId, TcpFlags, TcpState, TimerKind};

const SYN: u8 = TcpFlags::SYN;

/// A connect whose every SYN this host's firewall dropped, as 6.18 reports it: each
/// retransmit fails (err -EPERM) and each SYN is a drop.
fn syns_dropped_here() -> Sock {
    Sock::new(1)
        .connect()
        .dropped(Direction::Out, SYN, "NETFILTER_DROP")
        .after_ms(1_000)
        .syn_retransmit_failed(1, -1)
        .dropped(Direction::Out, SYN, "NETFILTER_DROP")
        .after_ms(2_000)
        .syn_retransmit_failed(2, -1)
        .dropped(Direction::Out, SYN, "NETFILTER_DROP")
        .after_ms(4_000)
        .close_with(TcpState::SYN_SENT, Errno::ETIMEDOUT, Some(TimerKind::Write))
}

#[test]
fn every_syn_dropped_by_this_hosts_firewall_is_said_so() {
    let v = verdicts_of(&syns_dropped_here().destroy());
    assert_eq!(kinds(&v), [VerdictKind::ConnectTimeout]);
    assert_eq!(
        v[0].explanation,
        "connect to 10.0.0.2:80 timed out: every SYN (3 over 7.0 s) was dropped by this \
         host's netfilter (NETFILTER_DROP) before it left, so the peer never saw one \
         (tcp_syn_retries=6); the \
         kernel gave up with ETIMEDOUT"
    );
    assert_eq!(v[0].facts.local_drops, Some(3));
    assert_eq!(
        v[0].facts.drop_reason.as_ref().unwrap().name(),
        "NETFILTER_DROP"
    );
    let cited: Vec<&str> = v[0].evidence.iter().map(|e| e.detail.as_str()).collect();
    assert!(
        cited.contains(&"outgoing SYN dropped by this host (NETFILTER_DROP)"),
        "{cited:?}"
    );
}

#[test]
fn kernels_without_failed_retransmit_events_count_the_drops() {
    // 6.1 / 6.12: failed SYN retransmits are not reported; the drops still are.
    let s = Sock::new(1)
        .connect()
        .dropped(Direction::Out, SYN, "NETFILTER_DROP")
        .after_ms(1_000)
        .dropped(Direction::Out, SYN, "NETFILTER_DROP")
        .after_ms(6_000)
        .close_with(TcpState::SYN_SENT, Errno::ETIMEDOUT, Some(TimerKind::Write));
    let v = verdicts_of(&s);
    assert!(
        v[0].explanation.contains("every SYN (2 over 7.0 s)"),
        "{}",
        v[0].explanation
    );
}

#[test]
fn a_timeout_without_local_drops_blames_nobody_here() {
    let v = verdicts_of(&Sock::new(1).connect_timeout());
    assert_eq!(v[0].facts.local_drops, None);
    assert!(v[0].explanation.contains("went unanswered"));
    // Answers dropped on the way in: the peer did answer.
    let s = Sock::new(1)
        .connect()
        .after_ms(5)
        .dropped(
            Direction::In,
            TcpFlags::SYN | TcpFlags::ACK,
            "NETFILTER_DROP",
        )
        .after_ms(1_000)
        .retransmit(crate::event::RetransmitClass::Syn, 1, 1_000)
        .after_ms(6_000)
        .close_with(TcpState::SYN_SENT, Errno::ETIMEDOUT, Some(TimerKind::Write));
    let v = verdicts_of(&s);
    assert!(
        v[0].explanation.contains(
            "the peer answered, but this host's netfilter dropped its 1 SYN-ACK (NETFILTER_DROP)"
        ),
        "{}",
        v[0].explanation
    );
}

#[test]
fn drops_find_their_socket_by_tuple() {
    let s = Sock::new(1).established();
    let conn = s.connection();
    let mut engine = Engine::new(Thresholds::default());
    engine.retain(crate::timeline::Retain::All);
    let mut out = Vec::new();
    for e in s.events.clone() {
        engine.push(e, &mut out);
    }
    let drop = |ts, conn, direction| Event {
        conn,
        drop: Some(crate::event::Dropped {
            reason: crate::event::DropReason::new("TCP_CSUM"),
            direction,
            tcp_flags: TcpFlags(TcpFlags::ACK),
            len: 100,
        }),
        ..Event::new(ts, EventKind::Drop, TcpState::CLOSE)
    };
    // Oriented as the kernel reported it (incoming: ours is the destination).
    let mut incoming = drop(s.now + MS, conn, Direction::In);
    engine.name(&mut incoming);
    assert_eq!(incoming.socket, Some(SocketId(1)));
    // Reported the other way round: found, and turned around.
    let reversed = crate::event::Connection {
        laddr: conn.raddr,
        lport: conn.rport,
        raddr: conn.laddr,
        rport: conn.lport,
        ..conn
    };
    let mut outgoing = drop(s.now + 2 * MS, reversed, Direction::In);
    engine.name(&mut outgoing);
    assert_eq!(outgoing.socket, Some(SocketId(1)));
    assert_eq!(outgoing.conn, conn);
    assert_eq!(outgoing.drop.as_ref().unwrap().direction, Direction::Out);
    // Another namespace, or a tuple no socket has: socketless, counted.
    let elsewhere = drop(
        s.now + 3 * MS,
        crate::event::Connection { netns: 7, ..conn },
        Direction::In,
    );
    let nobody = drop(
        s.now + 4 * MS,
        crate::event::Connection { lport: 1, ..conn },
        Direction::In,
    );
    for e in [incoming, outgoing, elsewhere, nobody] {
        engine.push(e, &mut out);
    }
    engine.finish(s.now + 10 * MS, &mut out);
    let stats = engine.stats();
    assert_eq!(stats.unmatched_drops, 2);
    assert_eq!(stats.socketless, 2);
    let timelines: Vec<_> = engine.timelines().collect();
    assert_eq!(timelines.len(), 1);
    let drops = timelines[0]
        .kept_events()
        .filter(|e| e.kind == EventKind::Drop)
        .count();
    assert_eq!(drops, 2);
}
