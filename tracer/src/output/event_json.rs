//! The `event` record of a JSON Lines trace, written by hand into the output buffer: the
//! bulk of every trace, and what `tracer record` spent most of its time on through serde
//! (an intermediate `String` per line, grown three times, and serde_json's byte-by-byte
//! escaping of the owner's cgroup path in every line).
//!
//! The bytes are exactly those of `Record::Event(..).to_json(..)` (serde, the reference):
//! same fields in the same order, same omissions, same escaping. Tests compare the two on
//! events with every field, every kind of string and random values.
//!
//! Per event, only numbers and names are formatted: the owner's `container` object is
//! serialized once per identity (the `Arc<Identity>` every event of an owner shares) and
//! copied afterwards, and the `time` field's date and time of day once per second.

use std::{io::Write as _, net::IpAddr, sync::Arc};

use foldhash::{HashMap, HashMapExt};

use crate::{
    event::{
        Connection, Direction, Dropped, Errno, Event, Owner, OwnerSource, SocketCounters, TcpFlags,
        TcpState, Tuple,
    },
    identity::Identity,
    record::WallClock,
    timeline::Verdict,
};

/// Serialized `container` objects kept at most (an identity per cgroup the session met).
const MAX_CONTAINERS: usize = 4096;

/// Writes `event` records; keeps what repeats from one event to the next.
#[derive(Default)]
pub struct EventJson {
    /// The second (since the epoch) `time_prefix` spells, as `YYYY-MM-DDTHH:MM:SS`.
    time_second: Option<u64>,
    time_prefix: String,
    /// `container` objects by the address of their identity (each entry holds the `Arc`, so
    /// the address cannot be reused while it is here).
    containers: HashMap<usize, (Arc<Identity>, Box<[u8]>)>,
}

impl EventJson {
    pub fn new() -> Self {
        Self {
            time_second: None,
            time_prefix: String::new(),
            containers: HashMap::new(),
        }
    }

    /// Appends the record's line (without the newline) to `out`.
    pub fn write(&mut self, out: &mut Vec<u8>, e: &Event, clock: Option<&WallClock>) {
        self.head(out, br#"{"type":"event""#, e.ts_ns, clock);
        name_field(out, "kind", e.kind.name());
        if let Some(socket) = e.socket {
            put(out, br#","socket":"#);
            number(out, socket.0);
        }
        connection(out, &e.conn);
        put(out, br#","state":"#);
        state(out, e.state);
        if let Some(old) = e.old_state {
            put(out, br#","old_state":"#);
            state(out, old);
        }
        if let Some(owner) = &e.process {
            put(out, br#","process":"#);
            self.owner(out, owner);
        }
        if let Some(class) = e.class {
            name_field(out, "class", class.name());
        }
        if let Some(segs) = e.segs {
            put(out, br#","segs":"#);
            number(out, segs);
        }
        if let Some(timer) = e.timer {
            name_field(out, "timer", timer.name());
        }
        if let Some(reason) = &e.reason {
            put(out, br#","reason":"#);
            string(out, reason.name());
        }
        if let Some(err) = e.err {
            put(out, br#","err":"#);
            number(out, err);
        }
        if let Some(probe) = e.probe {
            put(out, br#","probe":"#);
            number(out, probe);
        }
        if let Some(sock) = &e.sock {
            put(out, br#","sock":"#);
            counters(out, sock);
        }
        if !e.flags.is_empty() {
            put(out, br#","flags":["#);
            for (i, flag) in e.flags.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, flag);
            }
            out.push(b']');
        }
        if let Some(raw) = &e.raw {
            put(out, br#","raw":"#);
            tuple(out, raw);
        }
        if let Some(drop) = &e.drop {
            put(out, br#","drop":"#);
            dropped(out, drop);
        }
        out.push(b'}');
    }

    /// Appends a `verdict` record's line (without the newline) to `out`: the same bytes as
    /// serde's, with the owner and the explanation written as in events (a refused connect
    /// is a verdict each: through serde, the owner's cgroup path was escaped byte by byte
    /// every time), and the evidence by hand too. The facts, small and varied, go through
    /// serde.
    pub fn write_verdict(&mut self, out: &mut Vec<u8>, v: &Verdict, clock: Option<&WallClock>) {
        self.head(out, br#"{"type":"verdict""#, v.ts_ns, clock);
        name_field(out, "verdict", v.verdict.name());
        put(out, br#","socket":"#);
        number(out, v.socket.0);
        connection(out, &v.conn);
        if let Some(owner) = &v.process {
            put(out, br#","process":"#);
            self.owner(out, owner);
        }
        put(out, br#","explanation":"#);
        string(out, &v.explanation);
        put(out, br#","facts":"#);
        serde_json::to_writer(&mut *out, &v.facts).expect("facts always serialise");
        put(out, br#","evidence":["#);
        for (i, cited) in v.evidence.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put(out, br#"{"ts_ns":"#);
            number(out, cited.ts_ns);
            name_field(out, "kind", cited.kind.name());
            put(out, br#","detail":"#);
            string(out, &cited.detail);
            out.push(b'}');
        }
        out.push(b']');
        if let Some(kind) = v.inferred_from {
            name_field(out, "inferred_from", kind.name());
        }
        out.push(b'}');
    }

    /// A record's opening: `start` (`{"type":"..."`), its `time` when there is a clock,
    /// its `ts_ns`.
    fn head(&mut self, out: &mut Vec<u8>, start: &[u8], ts_ns: u64, clock: Option<&WallClock>) {
        put(out, start);
        if let Some(clock) = clock {
            put(out, br#","time":""#);
            self.time(out, clock, ts_ns);
            out.push(b'"');
        }
        put(out, br#","ts_ns":"#);
        number(out, ts_ns);
    }

    /// RFC 3339, UTC, µs, as [`WallClock::rfc3339`] spells it.
    fn time(&mut self, out: &mut Vec<u8>, clock: &WallClock, ts_ns: u64) {
        let wall = (ts_ns as i64 + clock.boot_to_wall_offset_ns).max(0) as u64;
        let second = wall / 1_000_000_000;
        if self.time_second != Some(second) {
            let text = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(second),
            )
            .to_string();
            self.time_prefix.clear();
            // `YYYY-MM-DDTHH:MM:SS` before the `Z`.
            self.time_prefix.push_str(text.trim_end_matches('Z'));
            self.time_second = Some(second);
        }
        put(out, self.time_prefix.as_bytes());
        let micros = (wall % 1_000_000_000) / 1_000;
        let _ = write!(out, ".{micros:06}Z");
    }

    fn owner(&mut self, out: &mut Vec<u8>, owner: &Owner) {
        put(out, br#"{"pid":"#);
        number(out, owner.pid);
        put(out, br#","comm":"#);
        string(out, &owner.comm);
        if owner.cgroup_id != 0 {
            put(out, br#","cgroup_id":"#);
            number(out, owner.cgroup_id);
        }
        name_field(
            out,
            "owner",
            match owner.source {
                OwnerSource::Owner => "owner",
                OwnerSource::Listener => "listener",
                OwnerSource::Sweep => "sweep",
            },
        );
        if let Some(identity) = &owner.container {
            put(out, br#","container":"#);
            let json = self.container(identity);
            out.extend_from_slice(json);
        }
        out.push(b'}');
    }

    /// The identity's JSON, serialized (by serde) once.
    fn container(&mut self, identity: &Arc<Identity>) -> &[u8] {
        let key = Arc::as_ptr(identity) as usize;
        if !self.containers.contains_key(&key) && self.containers.len() >= MAX_CONTAINERS {
            self.containers.clear();
        }
        &self
            .containers
            .entry(key)
            .or_insert_with(|| {
                let json = serde_json::to_vec(&**identity).expect("identities always serialise");
                (identity.clone(), json.into_boxed_slice())
            })
            .1
    }
}

/// Appends `bytes`. A line is built from many short pieces of varying length (numbers,
/// names, addresses): copied here with a few fixed-size moves instead of a call to
/// `memcpy` each, which cost more than the copying.
#[inline(always)]
pub(crate) fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if n > 32 {
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(n);
    // SAFETY: `n` bytes are reserved after `len`; every copy below reads inside `bytes`
    // and writes inside those `n` bytes (two overlapping halves cover lengths between
    // one and two chunks).
    unsafe {
        let src = bytes.as_ptr();
        let dst = out.as_mut_ptr().add(out.len());
        if n >= 16 {
            std::ptr::copy_nonoverlapping(src, dst, 16);
            std::ptr::copy_nonoverlapping(src.add(n - 16), dst.add(n - 16), 16);
        } else if n >= 8 {
            std::ptr::copy_nonoverlapping(src, dst, 8);
            std::ptr::copy_nonoverlapping(src.add(n - 8), dst.add(n - 8), 8);
        } else if n >= 4 {
            std::ptr::copy_nonoverlapping(src, dst, 4);
            std::ptr::copy_nonoverlapping(src.add(n - 4), dst.add(n - 4), 4);
        } else if n >= 2 {
            std::ptr::copy_nonoverlapping(src, dst, 2);
            std::ptr::copy_nonoverlapping(src.add(n - 2), dst.add(n - 2), 2);
        } else if n == 1 {
            *dst = *src;
        }
        out.set_len(out.len() + n);
    }
}

/// `,"key":"name"` for a name that needs no escaping (kinds, states, enum values).
fn name_field(out: &mut Vec<u8>, key: &str, name: &str) {
    put(out, b",\"");
    put(out, key.as_bytes());
    put(out, b"\":\"");
    put(out, name.as_bytes());
    out.push(b'"');
}

fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    put(out, itoa::Buffer::new().format(n).as_bytes());
}

fn state(out: &mut Vec<u8>, state: TcpState) {
    match state.known() {
        Some(known) => {
            out.push(b'"');
            put(out, known.name().as_bytes());
            out.push(b'"');
        }
        None => {
            let _ = write!(out, "\"UNKNOWN_{}\"", state.0);
        }
    }
}

/// The connection's fields, inline in the record (`family` to `netns`).
fn connection(out: &mut Vec<u8>, c: &Connection) {
    name_field(out, "family", c.family.name());
    out.push(b',');
    ends(out, &Tuple::of(c));
    put(out, br#","netns":"#);
    number(out, c.netns);
}

/// `"laddr":...,"rport":...`: the tuple's fields, as a connection and a raw tuple spell them.
fn ends(out: &mut Vec<u8>, t: &Tuple) {
    put(out, br#""laddr":""#);
    address(out, t.laddr);
    put(out, br#"","lport":"#);
    number(out, t.lport);
    put(out, br#","raddr":""#);
    address(out, t.raddr);
    put(out, br#"","rport":"#);
    number(out, t.rport);
}

/// An address as its `Display` spells it (never anything to escape).
fn address(out: &mut Vec<u8>, addr: IpAddr) {
    match addr {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                number(out, octet);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn errno(out: &mut Vec<u8>, key: &str, e: Errno) {
    put(out, b",\"");
    put(out, key.as_bytes());
    put(out, b"\":\"");
    // Errno names are plain identifiers (`ETIMEDOUT`, `E250`): nothing to escape.
    match e.name() {
        Some(name) => put(out, name.as_bytes()),
        None => {
            let _ = write!(out, "{e}");
        }
    }
    out.push(b'"');
}

/// `sock`, with serde's omissions: zero counters are left out, `retries2` never is.
fn counters(out: &mut Vec<u8>, c: &SocketCounters) {
    out.push(b'{');
    // The first field written has no comma before it.
    let start = out.len();
    let field = |out: &mut Vec<u8>, key: &str| {
        if out.len() > start {
            out.push(b',');
        }
        out.push(b'"');
        put(out, key.as_bytes());
        put(out, b"\":");
    };
    macro_rules! nonzero {
        ($($name:ident),+) => {
            $(if c.$name != 0 {
                field(out, stringify!($name));
                number(out, c.$name);
            })+
        };
    }
    nonzero!(
        retransmits,
        probes_out,
        backoff,
        rto_us,
        total_retrans,
        packets_out
    );
    if c.ca_state != Default::default() {
        field(out, "ca_state");
        out.push(b'"');
        put(out, c.ca_state.name().as_bytes());
        out.push(b'"');
    }
    if c.keepalive {
        field(out, "keepalive");
        put(out, b"true");
    }
    nonzero!(
        keepalive_idle_ms,
        keepalive_intvl_ms,
        keepalive_probes,
        user_timeout_ms,
        retries1
    );
    field(out, "retries2");
    number(out, c.retries2);
    nonzero!(syn_retries, orphan_retries);
    for (key, value) in [
        ("idle_rx_ms", c.idle_rx_ms),
        ("idle_tx_ms", c.idle_tx_ms),
        ("retrans_elapsed_ms", c.retrans_elapsed_ms),
    ] {
        if let Some(v) = value {
            field(out, key);
            number(out, v);
        }
    }
    if c.orphan {
        field(out, "orphan");
        put(out, b"true");
    }
    // `errno` writes its own comma: there is always a field before it (`retries2`).
    if let Some(e) = c.error {
        errno(out, "error", e);
    }
    if let Some(e) = c.soft_error {
        errno(out, "soft_error", e);
    }
    out.push(b'}');
}

/// `drop`: `tcp_flags` as `TcpFlags` spells them (`SYN|ACK`, never anything to escape).
fn dropped(out: &mut Vec<u8>, d: &Dropped) {
    put(out, br#"{"reason":"#);
    string(out, d.reason.name());
    name_field(
        out,
        "direction",
        match d.direction {
            Direction::In => "in",
            Direction::Out => "out",
        },
    );
    put(out, br#","tcp_flags":""#);
    let mut first = true;
    for (bit, name) in TcpFlags::NAMES {
        if d.tcp_flags.0 & bit != 0 {
            if !first {
                out.push(b'|');
            }
            first = false;
            put(out, name.as_bytes());
        }
    }
    out.push(b'"');
    if d.len != 0 {
        put(out, br#","len":"#);
        number(out, d.len);
    }
    out.push(b'}');
}

fn tuple(out: &mut Vec<u8>, t: &Tuple) {
    out.push(b'{');
    ends(out, t);
    out.push(b'}');
}

/// A JSON string, escaped as serde_json escapes: `"` and `\`, the short forms of
/// backspace, tab, newline, form feed and carriage return, `\u00xx` for other control
/// characters; everything else (UTF-8 included) as it is.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        put(out, &bytes[from..i]);
        from = i + 1;
        match b {
            b'"' => put(out, b"\\\""),
            b'\\' => put(out, b"\\\\"),
            0x08 => put(out, b"\\b"),
            0x09 => put(out, b"\\t"),
            0x0a => put(out, b"\\n"),
            0x0c => put(out, b"\\f"),
            0x0d => put(out, b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                put(out, b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
    put(out, &bytes[from..]);
    out.push(b'"');
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv6Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::{
        event::{
            CaState, Connection, DropReason, EventKind, Family, ResetReason, RetransmitClass,
            SocketId, TimerKind,
        },
        identity::{Container, Pod, QosClass, Runtime},
        record::Record,
        timeline::{Evidence, VerdictFacts, VerdictKind},
    };

    fn serde_line(e: &Event, clock: Option<&WallClock>) -> String {
        Record::Event(Box::new(e.clone())).to_json(clock)
    }

    fn ours(e: &Event, clock: Option<&WallClock>) -> String {
        let mut out = Vec::new();
        EventJson::new().write(&mut out, e, clock);
        String::from_utf8(out).unwrap()
    }

    fn clock() -> WallClock {
        WallClock {
            boot_to_wall_offset_ns: 1_795_336_426_879_599_346,
        }
    }

    fn pod_identity() -> Arc<Identity> {
        Arc::new(Identity {
            container: Some(Container {
                runtime: Runtime::Containerd,
                id: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90".into(),
            }),
            pod: Some(Pod {
                namespace: Some("payments".into()),
                name: Some("api-7f9c".into()),
                uid: "0b8e5c2a-1f3d-4c6b-9a7e-2d4f6b8a0c1e".into(),
                qos: QosClass::Burstable,
            }),
            unit: Some("x\\x2d.service".into()),
            ..Identity::bare("/kubepods.slice/\"quoted\"/cri-containerd-a1b2.scope")
        })
    }

    /// Every field set, strings that need escaping.
    pub(crate) fn everything() -> Event {
        Event {
            socket: Some(SocketId(u64::MAX)),
            conn: Connection {
                family: Family::Ipv6,
                laddr: "fd00::1".parse().unwrap(),
                lport: 1,
                raddr: "::ffff:10.0.0.2".parse().unwrap(),
                rport: 65535,
                netns: u32::MAX,
            },
            old_state: Some(TcpState::SYN_SENT),
            process: Some(Owner {
                pid: 4,
                comm: "a\"b\\c\u{1}\t\n\r\u{8}\u{c}\u{1f}é".into(),
                cgroup_id: 5,
                source: OwnerSource::Listener,
                container: Some(pod_identity()),
            }),
            class: Some(RetransmitClass::Tlp),
            segs: Some(6),
            timer: Some(TimerKind::Write),
            reason: Some(ResetReason::Other("TCP_\"ODD\"".into())),
            err: Some(-16),
            probe: Some(8),
            sock: Some(SocketCounters {
                retransmits: 1,
                probes_out: 2,
                backoff: 3,
                rto_us: 4,
                total_retrans: 5,
                packets_out: 6,
                ca_state: CaState::Loss,
                keepalive: true,
                keepalive_idle_ms: 7,
                keepalive_intvl_ms: 8,
                keepalive_probes: 9,
                user_timeout_ms: 10,
                retries1: 11,
                retries2: 12,
                syn_retries: 13,
                orphan_retries: 14,
                idle_rx_ms: Some(0),
                idle_tx_ms: Some(16),
                retrans_elapsed_ms: Some(17),
                orphan: true,
                error: Some(Errno::ETIMEDOUT),
                soft_error: Some(Errno(250)),
            }),
            flags: vec!["half_open_risk".into(), "with \"quotes\"".into()],
            raw: Some(Tuple {
                laddr: "::".parse().unwrap(),
                lport: 0,
                raddr: "fd00::2".parse().unwrap(),
                rport: 7,
            }),
            drop: Some(Dropped {
                reason: DropReason::new("NETFILTER_\"DROP\""),
                direction: Direction::Out,
                tcp_flags: TcpFlags(0xff),
                len: 1448,
            }),
            ..Event::new(9, EventKind::Sweep, TcpState(200))
        }
    }

    /// Every verdict of the recorded fixtures (each kind the real kernel gave), then one with
    /// every optional part and strings that need escaping: the same bytes as serde's.
    #[test]
    fn verdicts_as_serde_writes_them() {
        let mut writer = EventJson::new();
        let mut check = |v: Verdict| {
            for clock in [None, Some(&clock())] {
                let mut out = Vec::new();
                writer.write_verdict(&mut out, &v, clock);
                let reference = Record::Verdict(Box::new(v.clone())).to_json(clock);
                assert_eq!(String::from_utf8(out).unwrap(), reference);
            }
        };
        let mut seen = 0;
        for trace in [
            include_str!("../../tests/data/scenarios.jsonl"),
            include_str!("../../tests/data/synthetic.jsonl"),
        ] {
            for line in trace
                .lines()
                .filter(|l| l.starts_with(r#"{"type":"verdict""#))
            {
                let Ok(Record::Verdict(v)) = Record::parse(line) else {
                    panic!("not a verdict: {line}");
                };
                check(*v);
                seen += 1;
            }
        }
        assert!(seen > 100, "{seen} verdicts in the fixtures");
        let e = everything();
        let v = Verdict {
            ts_ns: 7,
            verdict: VerdictKind::DeadSocketHeld,
            socket: SocketId(u64::MAX),
            conn: e.conn,
            process: e.process.clone(),
            explanation: "a \"quoted\" \\ path\n\t\u{1} → é".into(),
            facts: VerdictFacts {
                error: Some(Errno::ECONNRESET),
                held_ms: Some(3),
                give_up_budget: Some("x\"y".into()),
                ..Default::default()
            },
            evidence: vec![Evidence {
                ts_ns: 6,
                kind: EventKind::ResetReceived,
                detail: "reset \"received\"".into(),
            }],
            inferred_from: Some(EventKind::Destroy),
        };
        check(v.clone());
        // No evidence; several, with every kind of character to escape.
        check(Verdict {
            evidence: Vec::new(),
            ..v.clone()
        });
        let mut evidence = v.evidence.clone();
        evidence.push(Evidence {
            ts_ns: u64::MAX,
            kind: EventKind::Drop,
            detail: "a\"b\\c\u{1}\t\n\r\u{8}\u{c}\u{1f}é → x".into(),
        });
        evidence.push(Evidence {
            ts_ns: 0,
            kind: EventKind::StateChange,
            detail: String::new(),
        });
        check(Verdict { evidence, ..v });
    }

    #[test]
    fn every_field_as_serde_writes_it() {
        let e = everything();
        for clock in [None, Some(clock())] {
            assert_eq!(ours(&e, clock.as_ref()), serde_line(&e, clock.as_ref()));
        }
        // And it reads back.
        let line = ours(&e, Some(&clock()));
        assert_eq!(Record::parse(&line).unwrap(), Record::Event(Box::new(e)));
    }

    #[test]
    fn every_kind_as_serde_writes_it() {
        let kinds: Vec<EventKind> = (0..=u8::MAX).filter_map(EventKind::from_code).collect();
        assert!(kinds.contains(&EventKind::Drop));
        for kind in kinds {
            let mut e = everything();
            e.kind = kind;
            assert_eq!(ours(&e, Some(&clock())), serde_line(&e, Some(&clock())));
            let bare = Event::new(7, kind, TcpState::ESTABLISHED);
            assert_eq!(ours(&bare, None), serde_line(&bare, None));
        }
    }

    #[test]
    fn minimal_and_typical_events_as_serde_writes_them() {
        let bare = Event::new(0, EventKind::ResetSent, TcpState::CLOSE);
        assert_eq!(ours(&bare, None), serde_line(&bare, None));
        let mut e = everything();
        e.sock = Some(SocketCounters::default());
        e.process.as_mut().unwrap().container = Some(Arc::new(Identity::bare("/")));
        e.process.as_mut().unwrap().cgroup_id = 0;
        e.flags.clear();
        e.raw = None;
        e.drop = Some(Dropped {
            reason: DropReason::new("NO_SOCKET"),
            direction: Direction::In,
            tcp_flags: TcpFlags(0),
            len: 0,
        });
        e.conn.family = Family::Ipv4;
        e.conn.laddr = IpAddr::from([0, 0, 0, 0]);
        e.conn.raddr = IpAddr::from([255, 10, 1, 100]);
        assert_eq!(ours(&e, Some(&clock())), serde_line(&e, Some(&clock())));
    }

    #[test]
    fn escapes_as_serde_json_does() {
        let all: String = (0u8..=0x7f)
            .map(char::from)
            .chain(['é', '€', '😀'])
            .collect();
        let mut out = Vec::new();
        string(&mut out, &all);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&all).unwrap()
        );
    }

    #[test]
    fn time_of_the_first_second_and_before_the_epoch() {
        let mut e = Event::new(0, EventKind::Destroy, TcpState::CLOSE);
        for offset in [0, -5, 999_999_999, 1_000_000_000] {
            let clock = WallClock {
                boot_to_wall_offset_ns: offset,
            };
            for ts in [0, 1_000, 999_999_999, 1_000_000_000] {
                e.ts_ns = ts;
                assert_eq!(ours(&e, Some(&clock)), serde_line(&e, Some(&clock)));
            }
        }
    }

    #[test]
    fn one_writer_over_many_events_keeps_its_caches_right() {
        let mut writer = EventJson::new();
        let identities = [pod_identity(), Arc::new(Identity::bare("/user.slice"))];
        let mut e = everything();
        for i in 0..5_000u64 {
            e.ts_ns = i * 333_333_333;
            e.process.as_mut().unwrap().container = Some(identities[(i % 2) as usize].clone());
            let mut out = Vec::new();
            writer.write(&mut out, &e, Some(&clock()));
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_line(&e, Some(&clock()))
            );
        }
    }

    pub(crate) fn arb_event() -> impl Strategy<Value = Event> {
        (
            any::<u64>(),
            1u8..=11,
            proptest::option::of(any::<u64>()),
            any::<bool>(),
            any::<[u8; 16]>(),
            any::<(u16, u16, u32, u8)>(),
            proptest::option::of((any::<u32>(), ".{0,20}", any::<u64>(), 0..3u8)),
            proptest::option::of(any::<(u32, i32, u8, u8)>()),
            proptest::option::of(any::<(u8, u8, u64, u32, bool, u8, u32, i32)>()),
            proptest::collection::vec(".{0,8}", 0..3),
            proptest::option::of((".{0,12}", any::<bool>(), any::<u8>(), any::<u32>())),
        )
            .prop_map(
                |(
                    ts,
                    kind,
                    socket,
                    v6,
                    addr,
                    (lport, rport, netns, st),
                    owner,
                    x,
                    sock,
                    flags,
                    dropped,
                )| {
                    let ip = |b: [u8; 16]| match v6 {
                        true => IpAddr::V6(Ipv6Addr::from(b)),
                        false => IpAddr::from([b[0], b[1], b[2], b[3]]),
                    };
                    let mut reversed = addr;
                    reversed.reverse();
                    Event {
                        socket: socket.map(SocketId),
                        conn: Connection {
                            family: if v6 { Family::Ipv6 } else { Family::Ipv4 },
                            laddr: ip(addr),
                            lport,
                            raddr: ip(reversed),
                            rport,
                            netns,
                        },
                        old_state: (st % 2 == 0).then_some(TcpState(st / 2)),
                        process: owner.map(|(pid, comm, cgroup_id, source)| Owner {
                            pid,
                            comm: comm.into(),
                            cgroup_id,
                            source: match source {
                                0 => OwnerSource::Owner,
                                1 => OwnerSource::Listener,
                                _ => OwnerSource::Sweep,
                            },
                            container: (cgroup_id % 3 == 0).then(pod_identity),
                        }),
                        segs: x.map(|x| x.0),
                        err: x.map(|x| x.1),
                        probe: x.map(|x| x.2),
                        class: x.and_then(|x| RetransmitClass::from_code(x.3 % 9)),
                        timer: x.and_then(|x| TimerKind::from_code(x.3 % 3)),
                        reason: x.map(|x| match x.3 % 2 {
                            0 => ResetReason::NoSocket,
                            _ => ResetReason::Other(format!("REASON_{}", x.0)),
                        }),
                        sock: sock.map(|(a, b, c, d, e, f, g, h)| SocketCounters {
                            retransmits: a,
                            probes_out: b % 3,
                            rto_us: c,
                            total_retrans: d,
                            keepalive: e,
                            ca_state: CaState::from_code(f % 6).unwrap_or(CaState::Unknown),
                            user_timeout_ms: g,
                            retries2: f,
                            idle_rx_ms: (a % 2 == 0).then_some(c / 3),
                            error: (h > 0).then_some(Errno(h % 300)),
                            soft_error: (h < 0).then_some(Errno(h.unsigned_abs() as i32 % 300)),
                            ..SocketCounters::default()
                        }),
                        flags,
                        raw: (lport % 3 == 0).then_some(Tuple {
                            laddr: ip(reversed),
                            lport: rport,
                            raddr: ip(addr),
                            rport: lport,
                        }),
                        drop: dropped.map(|(reason, inward, tcp_flags, len)| Dropped {
                            reason: DropReason(reason),
                            direction: if inward {
                                Direction::In
                            } else {
                                Direction::Out
                            },
                            tcp_flags: TcpFlags(tcp_flags),
                            len,
                        }),
                        ..Event::new(
                            ts,
                            EventKind::from_code(kind).expect("a known kind"),
                            TcpState(st),
                        )
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn random_events_as_serde_writes_them(
            mut e in arb_event(),
            offset in -1_000_000_000_000_000_000i64..2_000_000_000_000_000_000,
        ) {
            // Up to year 2100 or so: the wall clock stays within what humantime spells.
            e.ts_ns %= 2_000_000_000_000_000_000;
            let clock = WallClock { boot_to_wall_offset_ns: offset };
            prop_assert_eq!(ours(&e, Some(&clock)), serde_line(&e, Some(&clock)));
            prop_assert_eq!(ours(&e, None), serde_line(&e, None));
        }
    }
}
