//! `event` records read back without a general JSON parser: the bulk of every trace, and
//! what `tracer report` spent most of its time on through serde (a map of field names per
//! line, and the owner's `container` object rebuilt, strings and all, for every event).
//!
//! The writer is ours ([`crate::output::event_json`]): fields come in one order, without
//! spaces, names need no escaping. [`EventReader::read`] follows exactly that layout and
//! gives up (None) at anything else: another order, a space, an escape in a string, a
//! `null`, an unknown field, a number serde would refuse. The caller then reads the line
//! through serde ([`crate::record::Record::parse`]), which stays the reference: same value
//! when it reads, its error message when it does not. Tests compare the two on the
//! recorded fixtures and on random events.
//!
//! A `container` object is parsed (by serde) once per distinct text, and shared by the
//! events that repeat it.

use std::{net::IpAddr, sync::Arc};

use foldhash::{HashMap, HashMapExt};

use crate::{
    event::{
        Connection, Direction, DropReason, Dropped, Errno, Event, EventKind, Family, Owner,
        OwnerSource, ResetReason, RetransmitClass, SocketCounters, SocketId, TcpFlags, TcpState,
        TimerKind, Tuple,
    },
    identity::Identity,
};

/// Distinct `container` objects kept at most.
const MAX_CONTAINERS: usize = 4096;

/// Reads `event` lines; keeps the `container` objects met.
#[derive(Default)]
pub struct EventReader {
    containers: HashMap<Box<[u8]>, Arc<Identity>>,
    /// The last one read: the next event's owner is most often the same.
    last: Option<(Box<[u8]>, Arc<Identity>)>,
}

impl EventReader {
    pub fn new() -> Self {
        Self {
            containers: HashMap::new(),
            last: None,
        }
    }

    /// The event of `line` when it is laid out exactly as this tracer writes events; None
    /// for anything else (read it through serde).
    pub fn read(&mut self, line: &str) -> Option<Event> {
        let mut c = Cursor { s: line, i: 0 };
        c.lit(r#"{"type":"event""#)?;
        if c.maybe(r#","time":"#) {
            c.string()?;
        }
        c.lit(r#","ts_ns":"#)?;
        let ts_ns = c.number()?;
        c.lit(r#","kind":"#)?;
        let kind = EventKind::from_name(c.string()?)?;
        let mut e = Event::new(ts_ns, kind, TcpState::CLOSE);
        if c.maybe(r#","socket":"#) {
            e.socket = Some(SocketId(c.number()?));
        }
        c.lit(r#","family":"#)?;
        let family = Family::from_name(c.string()?)?;
        c.lit(",")?;
        let Tuple {
            laddr,
            lport,
            raddr,
            rport,
        } = ends(&mut c)?;
        c.lit(r#","netns":"#)?;
        let netns = c.number()?;
        e.conn = Connection {
            family,
            laddr,
            lport,
            raddr,
            rport,
            netns,
        };
        c.lit(r#","state":"#)?;
        e.state = TcpState::from_name(c.string()?)?;
        // The optional fields, each at most once and in the writer's order.
        if c.maybe(r#","old_state":"#) {
            e.old_state = Some(TcpState::from_name(c.string()?)?);
        }
        if c.maybe(r#","process":"#) {
            e.process = Some(self.owner(&mut c)?);
        }
        if c.maybe(r#","class":"#) {
            e.class = Some(RetransmitClass::from_name(c.string()?)?);
        }
        if c.maybe(r#","segs":"#) {
            e.segs = Some(c.number()?);
        }
        if c.maybe(r#","timer":"#) {
            e.timer = Some(TimerKind::from_name(c.string()?)?);
        }
        if c.maybe(r#","reason":"#) {
            e.reason = Some(ResetReason::from_name(c.string()?));
        }
        if c.maybe(r#","err":"#) {
            e.err = Some(c.signed()?);
        }
        if c.maybe(r#","probe":"#) {
            e.probe = Some(c.number()?);
        }
        if c.maybe(r#","sock":"#) {
            e.sock = Some(counters(&mut c)?);
        }
        if c.maybe(r#","flags":"#) {
            e.flags = flags(&mut c)?;
        }
        if c.maybe(r#","raw":"#) {
            e.raw = Some(tuple(&mut c)?);
        }
        if c.maybe(r#","drop":"#) {
            e.drop = Some(dropped(&mut c)?);
        }
        c.lit("}")?;
        c.end().then_some(e)
    }

    fn owner(&mut self, c: &mut Cursor) -> Option<Owner> {
        c.lit(r#"{"pid":"#)?;
        let pid = c.number()?;
        c.lit(r#","comm":"#)?;
        let comm = c.string()?.into();
        let cgroup_id = if c.maybe(r#","cgroup_id":"#) {
            c.number()?
        } else {
            0
        };
        c.lit(r#","owner":"#)?;
        let source = match c.string()? {
            "owner" => OwnerSource::Owner,
            "listener" => OwnerSource::Listener,
            "sweep" => OwnerSource::Sweep,
            _ => return None,
        };
        let container = if c.maybe(r#","container":"#) {
            // The same text as the last one read is the same object (a complete object's
            // end does not depend on what follows it).
            match &self.last {
                Some((text, identity)) if c.rest().starts_with(text) => {
                    c.i += text.len();
                    Some(identity.clone())
                }
                _ => {
                    let text = c.object()?;
                    let identity = self.container(text)?;
                    self.last = Some((text.as_bytes().into(), identity.clone()));
                    Some(identity)
                }
            }
        } else {
            None
        };
        c.lit("}")?;
        Some(Owner {
            pid,
            comm,
            cgroup_id,
            source,
            container,
        })
    }

    fn container(&mut self, text: &str) -> Option<Arc<Identity>> {
        if let Some(known) = self.containers.get(text.as_bytes()) {
            return Some(known.clone());
        }
        let identity: Arc<Identity> = Arc::new(serde_json::from_str(text).ok()?);
        if self.containers.len() >= MAX_CONTAINERS {
            self.containers.clear();
        }
        self.containers
            .insert(text.as_bytes().into(), identity.clone());
        Some(identity)
    }
}

/// `sock`: its fields in the writer's order, each behind a comma but the first.
fn counters(c: &mut Cursor) -> Option<SocketCounters> {
    c.lit("{")?;
    let start = c.i;
    let mut s = SocketCounters::default();
    // `"key":`, with the comma of every field but the first.
    let field = |c: &mut Cursor, key: &str| -> bool {
        let bytes = key.as_bytes();
        let rest = c.rest();
        let skip = usize::from(c.i > start);
        if skip == 1 && rest.first() != Some(&b',') {
            return false;
        }
        let rest = &rest[skip..];
        let found = rest.len() > bytes.len() + 2
            && rest[0] == b'"'
            && rest[1..].starts_with(bytes)
            && rest[1 + bytes.len()] == b'"'
            && rest[2 + bytes.len()] == b':';
        if found {
            c.i += skip + bytes.len() + 3;
        }
        found
    };
    macro_rules! numbers {
        ($($name:ident),+) => {
            $(if field(c, stringify!($name)) {
                s.$name = c.number()?;
            })+
        };
    }
    numbers!(
        retransmits,
        probes_out,
        backoff,
        rto_us,
        total_retrans,
        packets_out
    );
    if field(c, "ca_state") {
        s.ca_state = crate::event::CaState::from_name(c.string()?)?;
    }
    if field(c, "keepalive") {
        s.keepalive = c.boolean()?;
    }
    numbers!(
        keepalive_idle_ms,
        keepalive_intvl_ms,
        keepalive_probes,
        user_timeout_ms,
        retries1
    );
    // The one field serde requires.
    if !field(c, "retries2") {
        return None;
    }
    s.retries2 = c.number()?;
    numbers!(syn_retries, orphan_retries);
    if field(c, "idle_rx_ms") {
        s.idle_rx_ms = Some(c.number()?);
    }
    if field(c, "idle_tx_ms") {
        s.idle_tx_ms = Some(c.number()?);
    }
    if field(c, "retrans_elapsed_ms") {
        s.retrans_elapsed_ms = Some(c.number()?);
    }
    if field(c, "orphan") {
        s.orphan = c.boolean()?;
    }
    if field(c, "error") {
        s.error = Some(Errno::from_name(c.string()?)?);
    }
    if field(c, "soft_error") {
        s.soft_error = Some(Errno::from_name(c.string()?)?);
    }
    c.lit("}")?;
    Some(s)
}

fn flags(c: &mut Cursor) -> Option<Vec<String>> {
    c.lit("[")?;
    let mut flags = Vec::new();
    if c.maybe("]") {
        return Some(flags);
    }
    loop {
        flags.push(c.string()?.to_owned());
        if c.maybe("]") {
            return Some(flags);
        }
        c.lit(",")?;
    }
}

fn tuple(c: &mut Cursor) -> Option<Tuple> {
    c.lit("{")?;
    let tuple = ends(c)?;
    c.lit("}")?;
    Some(tuple)
}

/// `"laddr":…,"lport":…,"raddr":…,"rport":…`: a connection's ends, as both an event and
/// a raw tuple spell them.
fn ends(c: &mut Cursor) -> Option<Tuple> {
    c.lit(r#""laddr":"#)?;
    let laddr = c.address()?;
    c.lit(r#","lport":"#)?;
    let lport = c.number()?;
    c.lit(r#","raddr":"#)?;
    let raddr = c.address()?;
    c.lit(r#","rport":"#)?;
    let rport = c.number()?;
    Some(Tuple {
        laddr,
        lport,
        raddr,
        rport,
    })
}

fn dropped(c: &mut Cursor) -> Option<Dropped> {
    c.lit(r#"{"reason":"#)?;
    let reason = DropReason::new(c.string()?);
    c.lit(r#","direction":"#)?;
    let direction = match c.string()? {
        "in" => Direction::In,
        "out" => Direction::Out,
        _ => return None,
    };
    c.lit(r#","tcp_flags":"#)?;
    let tcp_flags = TcpFlags::from_name(c.string()?)?;
    let len = if c.maybe(r#","len":"#) {
        c.number()?
    } else {
        0
    };
    c.lit("}")?;
    Some(Dropped {
        reason,
        direction,
        tcp_flags,
        len,
    })
}

/// A position in a line.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        &self.s.as_bytes()[self.i..]
    }

    fn lit(&mut self, text: &str) -> Option<()> {
        self.maybe(text).then_some(())
    }

    fn maybe(&mut self, text: &str) -> bool {
        let found = self.rest().starts_with(text.as_bytes());
        if found {
            self.i += text.len();
        }
        found
    }

    fn end(&self) -> bool {
        self.i == self.s.len()
    }

    /// A string with nothing escaped and no control character (anything else: None).
    fn string(&mut self) -> Option<&'a str> {
        self.lit("\"")?;
        let start = self.i;
        let len = self
            .rest()
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if self.rest()[len] != b'"' {
            return None;
        }
        self.i += len + 1;
        // Both ends are ASCII bytes: character boundaries.
        Some(&self.s[start..start + len])
    }

    /// An unsigned integer as JSON writes it (no sign, no leading zero, no fraction), that
    /// fits `T`.
    fn number<T: TryFrom<u64>>(&mut self) -> Option<T> {
        let rest = self.rest();
        let mut n: u64 = 0;
        let mut digits = 0;
        for &b in rest {
            if !b.is_ascii_digit() {
                break;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            digits += 1;
        }
        if digits == 0 || (digits > 1 && rest[0] == b'0') {
            return None;
        }
        self.i += digits;
        // A fraction or exponent: a float, which serde refuses for an integer.
        if matches!(self.rest().first(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        T::try_from(n).ok()
    }

    fn signed(&mut self) -> Option<i32> {
        if self.maybe("-") {
            let n: u64 = self.number()?;
            0i64.checked_sub_unsigned(n)
                .and_then(|v| i32::try_from(v).ok())
        } else {
            self.number()
        }
    }

    fn boolean(&mut self) -> Option<bool> {
        if self.maybe("true") {
            Some(true)
        } else if self.maybe("false") {
            Some(false)
        } else {
            None
        }
    }

    fn address(&mut self) -> Option<IpAddr> {
        self.string()?.parse().ok()
    }

    /// An object, its text as it is (strings and nesting followed, nothing checked: the
    /// caller parses it).
    fn object(&mut self) -> Option<&'a str> {
        let start = self.i;
        let bytes = self.s.as_bytes();
        if bytes.get(start) != Some(&b'{') {
            return None;
        }
        let mut depth = 0usize;
        let mut in_string = false;
        let mut i = start;
        while i < bytes.len() {
            let b = bytes[i];
            if in_string {
                match b {
                    b'\\' => i += 1,
                    b'"' => in_string = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            self.i = i + 1;
                            return self.s.get(start..i + 1);
                        }
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{
        output::event_json::{
            EventJson,
            tests::{arb_event, everything},
        },
        record::{Record, WallClock},
    };

    fn serde(line: &str) -> Event {
        match Record::parse(line).unwrap() {
            Record::Event(e) => *e,
            other => panic!("not an event: {other:?}"),
        }
    }

    fn written(e: &Event, clock: Option<&WallClock>) -> String {
        let mut out = Vec::new();
        EventJson::new().write(&mut out, e, clock);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_event_of_the_fixtures_is_read_fast_as_serde_reads_it() {
        let mut reader = EventReader::new();
        let mut events = 0;
        for trace in [
            include_str!("../tests/data/scenarios.jsonl"),
            include_str!("../tests/data/synthetic.jsonl"),
        ] {
            for line in trace
                .lines()
                .filter(|l| l.starts_with(r#"{"type":"event""#))
            {
                let fast = reader
                    .read(line)
                    .unwrap_or_else(|| panic!("not read: {line}"));
                assert_eq!(fast, serde(line));
                events += 1;
            }
        }
        assert!(events > 1000);
    }

    #[test]
    fn what_it_does_not_expect_is_left_to_serde() {
        let line = written(&everything(), None);
        let mut reader = EventReader::new();
        // `everything` has escapes in its strings.
        assert_eq!(reader.read(&line), None);
        let bare = written(&Event::new(1, EventKind::Destroy, TcpState::CLOSE), None);
        assert!(reader.read(&bare).is_some());
        for odd in [
            bare.replace(r#""ts_ns":1"#, r#""ts_ns": 1"#),
            bare.replace(r#""ts_ns":1"#, r#""ts_ns":01"#),
            bare.replace(r#""ts_ns":1"#, r#""ts_ns":1.0"#),
            bare.replace(r#""ts_ns":1"#, r#""ts_ns":-1"#),
            bare.replace(r#""ts_ns":1"#, r#""ts_ns":18446744073709551616"#),
            bare.replace('}', r#","extra":1}"#),
            bare.replace('}', r#","segs":null}"#),
            bare.replace('}', r#","segs":1,"segs":2}"#),
            bare.replace('}', r#","probe":1,"segs":2}"#),
            bare.replace('}', "} "),
            bare.replace('}', "}}"),
            bare.replace("destroy", "nothing"),
        ] {
            assert_eq!(reader.read(&odd), None, "{odd}");
        }
    }

    proptest! {
        #[test]
        fn random_events_read_fast_as_serde_reads_them(
            mut e in arb_event(),
            offset in -1_000_000_000_000_000_000i64..2_000_000_000_000_000_000,
        ) {
            e.ts_ns %= 2_000_000_000_000_000_000;
            let clock = WallClock { boot_to_wall_offset_ns: offset };
            let mut reader = EventReader::new();
            for line in [written(&e, Some(&clock)), written(&e, None)] {
                if let Some(fast) = reader.read(&line) {
                    prop_assert_eq!(fast, serde(&line));
                }
            }
        }
    }
}
