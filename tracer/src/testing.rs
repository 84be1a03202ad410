//! Synthetic events and traces for tests and benches: one socket's story written tersely,
//! shaped like what the kernel reports (see tests/tests/probes.rs for the real sequences),
//! and the trace `tracer record` would write of it. Used by the unit tests, the report
//! tests and the engine bench alike.

use std::{collections::BTreeMap, net::IpAddr};

use crate::{
    event::{
        Connection, Direction, DropReason, Dropped, Errno, Event, EventKind, Family, KernelFacts,
        Owner, OwnerSource, ResetReason, RetransmitClass, SocketCounters, SocketId, TcpFlags,
        TcpState, TimerKind,
    },
    record::{End, FORMAT, Header, Record, RecordedThresholds, VERSION, WallClock},
    timeline::{Engine, Thresholds, Verdict, VerdictFacts, VerdictKind},
};

pub const MS: u64 = 1_000_000;

/// CPU time of this thread, for benches (a shared host preempts it: wall time would count
/// that too).
pub fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Builds one socket's events: `Sock::new(1).established().rtos(3)`. Counters follow the
/// kernel's: icsk_retransmits and icsk_probes_out carry over to later events until
/// progress resets them. By default: `app/4242` connects from 10.0.0.1:(40000 + id) to
/// 10.0.0.2:80, starting 1 s after boot, with keepalive on (1 s idle, 1 s apart, 3 probes),
/// tcp_retries2 15.
#[derive(Clone)]
pub struct Sock {
    id: u64,
    pub now: u64,
    conn: Connection,
    owner: Option<Owner>,
    retries2: u8,
    user_timeout_ms: u32,
    orphan: bool,
    /// icsk_retransmits as the kernel would report it on the next event.
    consecutive: u8,
    probes_out: u8,
    backoff: u8,
    rto_ms: u64,
    pub events: Vec<Event>,
}

impl Sock {
    pub fn new(id: u64) -> Sock {
        Sock {
            id,
            now: 1_000 * MS,
            conn: Connection {
                family: Family::Ipv4,
                laddr: IpAddr::from([10, 0, 0, 1]),
                lport: 40_000 + id as u16,
                raddr: IpAddr::from([10, 0, 0, 2]),
                rport: 80,
                netns: 4026531840,
            },
            owner: Some(Owner {
                pid: 4242,
                comm: "app".into(),
                cgroup_id: 0,
                source: OwnerSource::Owner,
                container: None,
            }),
            retries2: 15,
            user_timeout_ms: 0,
            orphan: false,
            consecutive: 0,
            probes_out: 0,
            backoff: 0,
            rto_ms: 200,
            events: Vec::new(),
        }
    }

    /// Owned by `comm/pid`.
    pub fn owner(mut self, comm: &str, pid: u32) -> Self {
        self.owner = Some(Owner {
            pid,
            comm: comm.into(),
            cgroup_id: 0,
            source: OwnerSource::Owner,
            container: None,
        });
        self
    }

    /// No owner known (as for sockets only timers touched).
    pub fn without_owner(mut self) -> Self {
        self.owner = None;
        self
    }

    pub fn ports(mut self, lport: u16, rport: u16) -> Self {
        self.conn.lport = lport;
        self.conn.rport = rport;
        self
    }

    /// The next event comes 1 µs after `ms` since boot.
    pub fn at_ms(mut self, ms: u64) -> Self {
        self.now = ms * MS;
        self
    }

    pub fn after_ms(mut self, ms: u64) -> Self {
        self.now += ms * MS;
        self
    }

    pub fn id(&self) -> SocketId {
        SocketId(self.id)
    }

    pub fn connection(&self) -> Connection {
        self.conn
    }

    /// A new event of this socket 1 µs after the previous one (the kernel never reports
    /// two at once), with the socket's counters; not kept (see `push`).
    pub fn event(&mut self, kind: EventKind, state: TcpState) -> Event {
        self.now += 1_000;
        Event {
            socket: Some(SocketId(self.id)),
            conn: self.conn,
            process: self.owner.clone(),
            sock: Some(SocketCounters {
                retransmits: self.consecutive,
                probes_out: self.probes_out,
                backoff: self.backoff,
                rto_us: self.rto_ms * 1000,
                keepalive: true,
                keepalive_idle_ms: 1_000,
                keepalive_intvl_ms: 1_000,
                keepalive_probes: 3,
                user_timeout_ms: self.user_timeout_ms,
                retries1: 3,
                retries2: self.retries2,
                syn_retries: 6,
                orphan: self.orphan,
                ..SocketCounters::default()
            }),
            ..Event::new(self.now, kind, state)
        }
    }

    pub fn push(mut self, e: Event) -> Self {
        self.events.push(e);
        self
    }

    pub fn state(mut self, old: TcpState, new: TcpState) -> Self {
        let mut e = self.event(EventKind::StateChange, new);
        e.old_state = Some(old);
        self.push(e)
    }

    /// CLOSE → SYN_SENT, reported (as the kernel does) before the local port is chosen.
    pub fn connect(mut self) -> Self {
        let mut e = self.event(EventKind::StateChange, TcpState::SYN_SENT);
        e.old_state = Some(TcpState::CLOSE);
        e.conn.lport = 0;
        self.push(e)
    }

    pub fn established(self) -> Self {
        self.connect()
            .after_ms(1)
            .state(TcpState::SYN_SENT, TcpState::ESTABLISHED)
    }

    /// The kernel's death: → CLOSE with a socket error, inside `timer` if any.
    pub fn close_with(mut self, old: TcpState, error: Errno, timer: Option<TimerKind>) -> Self {
        let mut e = self.event(EventKind::StateChange, TcpState::CLOSE);
        e.old_state = Some(old);
        e.timer = timer;
        if let Some(s) = &mut e.sock {
            s.error = Some(error);
        }
        self.push(e)
    }

    pub fn error_report(mut self, err: i32) -> Self {
        let mut e = self.event(EventKind::ErrorReport, TcpState::CLOSE);
        e.err = Some(err);
        self.push(e)
    }

    /// FIN both ways, then the application's close().
    pub fn fin_close(self) -> Self {
        self.state(TcpState::ESTABLISHED, TcpState::FIN_WAIT1)
            .after_ms(1)
            .state(TcpState::FIN_WAIT1, TcpState::FIN_WAIT2)
            .after_ms(1)
            .state(TcpState::FIN_WAIT2, TcpState::CLOSE)
            .destroy()
    }

    pub fn retransmit(mut self, class: RetransmitClass, consecutive: u8, rto_ms: u64) -> Self {
        let state = if class == RetransmitClass::Syn {
            TcpState::SYN_SENT
        } else {
            TcpState::ESTABLISHED
        };
        self.consecutive = consecutive;
        self.rto_ms = rto_ms;
        let mut e = self.event(EventKind::Retransmit, state);
        e.class = Some(class);
        e.segs = Some(1);
        e.timer = Some(TimerKind::Write);
        self.push(e)
    }

    /// `n` RTOs from 200 ms, doubling, each after its RTO; the timer then holds twice the
    /// last one, as tcp_retransmit_timer() leaves it.
    pub fn rtos(mut self, n: u8) -> Self {
        let mut rto = 200;
        for k in 1..=n {
            self = self.after_ms(rto).retransmit(RetransmitClass::Rto, k, rto);
            rto *= 2;
        }
        self.rto_ms = rto;
        self
    }

    /// RTOs number `from` to `to`, continuing a streak: each after its RTO, doubling from
    /// 200 ms for the first.
    pub fn rtos_from(mut self, from: u8, to: u8) -> Self {
        let mut rto = 200 << (from - 1);
        for k in from..=to {
            self = self.after_ms(rto).retransmit(RetransmitClass::Rto, k, rto);
            rto *= 2;
        }
        self.rto_ms = rto;
        self
    }

    /// Progress: an ACK arrived (icsk_retransmits and icsk_probes_out back to 0), seen on
    /// the next event.
    pub fn progress(mut self) -> Self {
        self.consecutive = 0;
        self.probes_out = 0;
        self.rto_ms = 200;
        let mut e = self.event(EventKind::Retransmit, TcpState::ESTABLISHED);
        e.class = Some(RetransmitClass::Fast);
        e.segs = Some(1);
        self.push(e)
    }

    /// Keepalive probe `n`, after `n` s without an ACK.
    pub fn probe(self, n: u8) -> Self {
        self.probe_event(EventKind::KeepaliveProbe, n, TimerKind::Keepalive, |s| {
            s.idle_rx_ms = Some(1_000 * u64::from(n))
        })
    }

    pub fn zero_window_probe(self, n: u8) -> Self {
        self.probe_event(EventKind::ZeroWindowProbe, n, TimerKind::Write, |_| {})
    }

    /// Zero-window probes to a peer that answers each with its window still closed: the
    /// kernel's probe count stays at 1, its backoff rises with every probe
    /// (tcp_send_probe0()), and the probes come 200 ms × 2^backoff apart. `n` of them,
    /// the first 200 ms from now.
    pub fn window_closed(mut self, n: u8) -> Self {
        let mut wait = 200;
        for _ in 0..n {
            self.backoff += 1;
            self = self.after_ms(wait).probe_event(
                EventKind::ZeroWindowProbe,
                1,
                TimerKind::Write,
                |_| {},
            );
            wait *= 2;
            self.probes_out = 0;
        }
        self
    }

    /// The peer's window opened: the kernel clears the probe backoff.
    pub fn window_opened(mut self) -> Self {
        self.backoff = 0;
        self
    }

    /// The peer closed its side: FIN received, the socket in CLOSE_WAIT.
    pub fn peer_closed(self) -> Self {
        self.state(TcpState::ESTABLISHED, TcpState::CLOSE_WAIT)
    }

    /// This host dropped a segment of the socket (`skb:kfree_skb`), as the kernel names
    /// it: `flags` as in [`TcpFlags`], `reason` an `enum skb_drop_reason` name.
    pub fn dropped(mut self, direction: Direction, flags: u8, reason: &str) -> Self {
        let state = self.events.last().map_or(TcpState::SYN_SENT, |e| e.state);
        let mut e = self.event(EventKind::Drop, state);
        e.sock = None;
        e.drop = Some(Dropped {
            reason: DropReason::new(reason),
            direction,
            tcp_flags: TcpFlags(flags),
            len: 0,
        });
        self.push(e)
    }

    /// A failed SYN retransmit (6.17+: the SYN could not leave, e.g. this host's firewall).
    pub fn syn_retransmit_failed(mut self, consecutive: u8, err: i32) -> Self {
        self.consecutive = consecutive;
        let mut e = self.event(EventKind::RetransmitFailed, TcpState::SYN_SENT);
        e.class = Some(RetransmitClass::Syn);
        e.segs = Some(1);
        e.err = Some(err);
        e.timer = Some(TimerKind::Write);
        self.push(e)
    }

    fn probe_event(
        mut self,
        kind: EventKind,
        n: u8,
        timer: TimerKind,
        counters: impl FnOnce(&mut SocketCounters),
    ) -> Self {
        self.probes_out = n;
        let mut e = self.event(kind, TcpState::ESTABLISHED);
        e.probe = Some(n);
        e.timer = Some(timer);
        if let Some(s) = &mut e.sock {
            counters(s);
        }
        self.push(e)
    }

    pub fn reset_received(mut self, state: TcpState) -> Self {
        let e = self.event(EventKind::ResetReceived, state);
        self.push(e)
    }

    pub fn reset_sent(
        mut self,
        state: TcpState,
        reason: ResetReason,
        timer: Option<TimerKind>,
    ) -> Self {
        let mut e = self.event(EventKind::ResetSent, state);
        e.reason = Some(reason);
        e.timer = timer;
        self.push(e)
    }

    /// tcp_destroy_sock: the kernel releases the socket (the application's close()).
    pub fn destroy(mut self) -> Self {
        let e = self.event(EventKind::Destroy, TcpState::CLOSE);
        self.push(e)
    }

    /// The application has closed the socket (SOCK_DEAD) from the next event on.
    pub fn orphaned(mut self) -> Self {
        self.orphan = true;
        self
    }

    pub fn user_timeout(mut self, ms: u32) -> Self {
        self.user_timeout_ms = ms;
        self
    }

    pub fn retries2(mut self, n: u8) -> Self {
        self.retries2 = n;
        self
    }

    /// The events moved `ms` later.
    pub fn shifted(mut self, ms: u64) -> Self {
        for e in &mut self.events {
            e.ts_ns += ms * MS;
        }
        self.now += ms * MS;
        self
    }

    // Stories: how each kind of death looks in the kernel's events (6.18), up to the death
    // itself; what the application does after it is the caller's.

    /// Six unanswered RTOs from 200 ms, then tcp_retries2's give-up in the write timer.
    pub fn retries_exhausted(self) -> Self {
        self.established().rtos(6).after_ms(12_800).close_with(
            TcpState::ESTABLISHED,
            Errno::ETIMEDOUT,
            Some(TimerKind::Write),
        )
    }

    /// Three keepalive probes a second apart, then the kernel's give-up: a
    /// TCP_KEEPALIVE_TIMEOUT reset and CLOSE with ETIMEDOUT in the keepalive timer.
    pub fn keepalive_exhausted(self) -> Self {
        self.established()
            .after_ms(1_000)
            .probe(1)
            .after_ms(1_000)
            .probe(2)
            .after_ms(1_000)
            .probe(3)
            .after_ms(1_000)
            .reset_sent(
                TcpState::ESTABLISHED,
                ResetReason::TcpKeepaliveTimeout,
                Some(TimerKind::Keepalive),
            )
            .close_with(
                TcpState::ESTABLISHED,
                Errno::ETIMEDOUT,
                Some(TimerKind::Keepalive),
            )
    }

    /// Two unanswered RTOs, then an ACK: the streak is over.
    pub fn recovered(self) -> Self {
        self.established().rtos(2).after_ms(10).progress()
    }

    /// SYN_SENT (port not chosen yet), the peer's reset, CLOSE with ECONNREFUSED, two error
    /// reports (111 then 0).
    pub fn connection_refused(self) -> Self {
        self.connect()
            .after_ms(1)
            .reset_received(TcpState::SYN_SENT)
            .close_with(TcpState::SYN_SENT, Errno::ECONNREFUSED, None)
            .error_report(111)
            .error_report(0)
    }

    /// Two SYN retransmits, then tcp_syn_retries' give-up 7 s after the connect.
    pub fn connect_timeout(self) -> Self {
        self.connect()
            .after_ms(1_000)
            .retransmit(RetransmitClass::Syn, 1, 1_000)
            .after_ms(2_000)
            .retransmit(RetransmitClass::Syn, 2, 2_000)
            .after_ms(4_000)
            .close_with(TcpState::SYN_SENT, Errno::ETIMEDOUT, Some(TimerKind::Write))
    }

    /// The peer's reset on an established connection.
    pub fn peer_reset(self) -> Self {
        self.established()
            .after_ms(50)
            .reset_received(TcpState::ESTABLISHED)
            .close_with(TcpState::ESTABLISHED, Errno::ECONNRESET, None)
    }

    /// The peer's reset answering two unanswered RTOs: it lost the connection's state.
    pub fn peer_lost_state(self) -> Self {
        self.established()
            .rtos(2)
            .after_ms(300)
            .reset_received(TcpState::ESTABLISHED)
            .close_with(TcpState::ESTABLISHED, Errno::ECONNRESET, None)
    }

    /// This host's close with a reset, as 6.18 reports it: CLOSE first (no error), then the
    /// reset with `reason`.
    pub fn aborted(self, reason: ResetReason) -> Self {
        self.established()
            .after_ms(5)
            .state(TcpState::ESTABLISHED, TcpState::CLOSE)
            .reset_sent(TcpState::CLOSE, reason, None)
    }

    /// Closed by its application with data unacknowledged (FIN_WAIT1, SOCK_DEAD), then two
    /// unanswered RTOs and tcp_orphan_retries' give-up.
    pub fn orphan_timeout(self) -> Self {
        self.established()
            .after_ms(10)
            .state(TcpState::ESTABLISHED, TcpState::FIN_WAIT1)
            .orphaned()
            .rtos(2)
            .after_ms(800)
            .close_with(
                TcpState::FIN_WAIT1,
                Errno::ETIMEDOUT,
                Some(TimerKind::Write),
            )
    }

    /// Three unanswered zero-window probes, then the give-up in the write timer.
    pub fn zero_window_exhausted(mut self) -> Self {
        self = self.established();
        for n in 1..=3 {
            self = self.after_ms(200 << n).zero_window_probe(n);
        }
        self.after_ms(3_200).close_with(
            TcpState::ESTABLISHED,
            Errno::ETIMEDOUT,
            Some(TimerKind::Write),
        )
    }

    /// A verdict about this socket, without explanation, facts or evidence (for output
    /// tests).
    pub fn verdict(&self, ts_ns: u64, kind: VerdictKind) -> Verdict {
        Verdict {
            ts_ns,
            verdict: kind,
            socket: SocketId(self.id),
            conn: self.conn,
            process: self.owner.clone(),
            explanation: String::new(),
            facts: VerdictFacts::default(),
            evidence: Vec::new(),
            inferred_from: None,
        }
    }
}

/// A reset sent at `ts_ns` for a segment that matched no socket.
pub fn socketless_reset(ts_ns: u64) -> Event {
    Event {
        conn: Sock::new(0).connection(),
        reason: Some(ResetReason::NoSocket),
        ..Event::new(ts_ns, EventKind::ResetSent, TcpState::CLOSE)
    }
}

/// The header of a synthetic trace recorded on `hostname` from `started_ns`, with the
/// default thresholds.
pub fn header(hostname: &str, started_ns: u64) -> Header {
    Header {
        format: FORMAT.into(),
        version: VERSION,
        tool_version: "0.1.0".into(),
        hostname: hostname.into(),
        kernel_release: "6.18".into(),
        kernel: KernelFacts {
            hz: 250,
            reset_reasons: BTreeMap::new(),
            drop_reasons: BTreeMap::new(),
        },
        boot_to_wall_offset_ns: 1_795_336_426_879_599_346,
        started_ns,
        hooks: Vec::new(),
        missing: Vec::new(),
        command: vec![hostname.into()],
        thresholds: Some(RecordedThresholds::of(&Thresholds::default())),
    }
}

/// A trace as `tracer record` writes it: `header`, each event followed by the verdicts the
/// engine reached with it, the verdicts decided at `end_ns`, the `end` record. With
/// `wall_clock`, lines carry the human `time` field as the recorder writes them. Returns
/// the lines (without newlines) and the verdicts.
pub fn recorded_trace(
    header: Header,
    events: Vec<Event>,
    end_ns: u64,
    end_reason: &str,
    wall_clock: bool,
) -> (Vec<String>, Vec<Verdict>) {
    let clock = wall_clock.then_some(WallClock {
        boot_to_wall_offset_ns: header.boot_to_wall_offset_ns,
    });
    let clock = clock.as_ref();
    let thresholds = header
        .thresholds
        .map_or_else(Thresholds::default, |t| t.thresholds());
    let mut engine = Engine::new(thresholds);
    let mut lines = vec![Record::Header(Box::new(header)).to_json(clock)];
    let mut all = Vec::new();
    let mut reached = Vec::new();
    let count = events.len() as u64;
    for e in events {
        lines.push(Record::Event(Box::new(e.clone())).to_json(clock));
        engine.push(e, &mut reached);
        for v in reached.drain(..) {
            lines.push(Record::Verdict(Box::new(v.clone())).to_json(clock));
            all.push(v);
        }
    }
    engine.finish(end_ns, &mut reached);
    for v in reached.drain(..) {
        lines.push(Record::Verdict(Box::new(v.clone())).to_json(clock));
        all.push(v);
    }
    let end = End {
        ts_ns: end_ns,
        events: count,
        verdicts: all.len() as u64,
        reason: end_reason.into(),
        ..End::default()
    };
    lines.push(Record::End(end).to_json(clock));
    (lines, all)
}
