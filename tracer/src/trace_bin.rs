//! The binary trace (`tracer record --format binary`): the same records as JSON Lines in
//! about a fifth of the bytes, read by `tracer report` several times faster. JSON Lines stays
//! the default (for people and `jq`); `tracer convert` turns one into the other.
//!
//! Layout, version [`BINARY_VERSION`] (documented for users in docs/trace-format.md):
//! [`MAGIC`], the layout version (u16, little-endian), then frames: a tag byte, the payload's
//! length (u32, little-endian, at most [`MAX_FRAME`]) and the payload.
//!
//! | tag | payload |
//! |---|---|
//! | `H`, `V`, `L`, `N` | a `header`, `verdict`, `lost` or `end` record: its JSON line (rare records, kept self-describing) |
//! | `C` | a `container` identity: [`WireContainer`] (id, its JSON object) |
//! | `O` | an owner (`process` object): [`WireOwner`] (id, pid, comm, cgroup id, source, container id) |
//! | `S` | a socket's settings (keepalive, user timeout, retries): [`WireSettingsDef`] |
//! | `E` | an event: [`WireEvent`], owner by id |
//!
//! Payloads other than JSON are [postcard](https://docs.rs/postcard) encodings of the wire
//! structs below (varints, fields in declaration order): changing a wire struct changes the
//! layout, and needs [`BINARY_VERSION`] bumped. Owners, identities and sockets' settings
//! repeat in every event of JSON Lines; here each is written once, before its first event,
//! and named by a number (1, 2, ...; 0: none) afterwards. A writer that met [`MAX_OWNERS`]
//! owners (or [`MAX_CONTAINERS`] identities, [`MAX_SETTINGS`] settings) starts numbering
//! again at 1: a definition replaces the one of the same number, so both sides hold a
//! bounded table.

use std::{net::IpAddr, sync::Arc};

use foldhash::{HashMap, HashMapExt};
use serde::{Deserialize, Serialize};

use crate::{
    event::{
        CaState, Comm, Connection, Direction, DropReason, Dropped, Errno, Event, EventKind, Family,
        Owner, OwnerSource, ResetReason, RetransmitClass, SocketCounters, SocketId, TcpFlags,
        TcpState, TimerKind, Tuple,
    },
    identity::Identity,
    output::event_json::{EventJson, put},
    record::{Record, write_json_line},
    timeline::Verdict,
};

/// The first bytes of a binary trace: not text (0x89), then a name, then a line ending
/// that a text-mode copy would mangle.
pub const MAGIC: &[u8; 8] = b"\x89TRACER\n";
/// Bumped whenever a reader of the previous layout would misread a file.
pub const BINARY_VERSION: u16 = 1;
/// No frame is longer (a header with every hook is a few KiB): a corrupt length cannot
/// make a reader allocate more.
pub const MAX_FRAME: usize = 1 << 20;
/// Owners and identities numbered at most, by writer and reader alike.
pub const MAX_OWNERS: u32 = 65_536;
pub const MAX_CONTAINERS: u32 = 4096;
pub const MAX_SETTINGS: u32 = 4096;

/// Frame tags.
pub mod tag {
    pub const HEADER: u8 = b'H';
    pub const EVENT: u8 = b'E';
    pub const VERDICT: u8 = b'V';
    pub const LOST: u8 = b'L';
    pub const END: u8 = b'N';
    pub const OWNER: u8 = b'O';
    pub const CONTAINER: u8 = b'C';
    pub const SETTINGS: u8 = b'S';
}

/// Bytes before a frame's payload: tag and length.
pub const FRAME_HEAD: usize = 5;

/// An event as written: codes instead of names, the owner by number.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireEvent<'a> {
    pub ts_ns: u64,
    /// [`EventKind`] code (the ABI's).
    pub kind: u8,
    pub socket: Option<u64>,
    /// [`Family`] code (`AF_INET`, `AF_INET6`).
    pub family: u8,
    /// An address's 4 or 16 bytes (borrowed: one length and a copy, where `IpAddr` reads
    /// a variant and each byte on its own).
    #[serde(borrow)]
    pub laddr: &'a [u8],
    pub lport: u16,
    #[serde(borrow)]
    pub raddr: &'a [u8],
    pub rport: u16,
    pub netns: u32,
    /// The kernel's TCP state codes.
    pub state: u8,
    pub old_state: Option<u8>,
    /// 0: no owner; else the number of an `O` frame written before.
    pub owner: u32,
    /// [`RetransmitClass`] code.
    pub class: Option<u8>,
    pub segs: Option<u32>,
    /// [`TimerKind`] code.
    pub timer: Option<u8>,
    /// The reset reason's name.
    #[serde(borrow)]
    pub reason: Option<&'a str>,
    pub err: Option<i32>,
    pub probe: Option<u8>,
    pub sock: Option<WireCounters>,
    #[serde(borrow)]
    pub flags: Vec<&'a str>,
    pub raw: Option<Tuple>,
    #[serde(borrow)]
    pub drop: Option<WireDrop<'a>>,
}

/// [`SocketCounters`], every field present; the socket's settings (the same from one
/// event to the next) by number.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireCounters {
    pub retransmits: u8,
    pub probes_out: u8,
    pub backoff: u8,
    pub rto_us: u64,
    pub total_retrans: u32,
    pub packets_out: u32,
    /// [`CaState`] code.
    pub ca_state: u8,
    /// The number of an `S` frame written before.
    pub settings: u32,
    pub idle_rx_ms: Option<u64>,
    pub idle_tx_ms: Option<u64>,
    pub retrans_elapsed_ms: Option<u64>,
    pub orphan: bool,
    pub error: Option<i32>,
    pub soft_error: Option<i32>,
}

/// The settings part of [`SocketCounters`] (`S` frame, by number in events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireSettings {
    pub keepalive: bool,
    pub keepalive_idle_ms: u64,
    pub keepalive_intvl_ms: u64,
    pub keepalive_probes: u8,
    pub user_timeout_ms: u32,
    pub retries1: u8,
    pub retries2: u8,
    pub syn_retries: u8,
    pub orphan_retries: u8,
}

/// A settings definition (`S` frame).
#[derive(Debug, Serialize, Deserialize)]
pub struct WireSettingsDef {
    pub id: u32,
    pub settings: WireSettings,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WireDrop<'a> {
    pub reason: &'a str,
    /// 0: in, 1: out.
    pub direction: u8,
    pub tcp_flags: u8,
    pub len: u32,
}

/// An owner's definition (`O` frame).
#[derive(Debug, Serialize, Deserialize)]
pub struct WireOwner<'a> {
    pub id: u32,
    pub pid: u32,
    pub comm: &'a str,
    pub cgroup_id: u64,
    /// 0: owner, 1: listener, 2: sweep.
    pub source: u8,
    /// 0: none; else the number of a `C` frame written before.
    pub container: u32,
}

/// A container identity's definition (`C` frame): its JSON object, as under `process`.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireContainer<'a> {
    pub id: u32,
    pub json: &'a str,
}

fn source_code(s: OwnerSource) -> u8 {
    match s {
        OwnerSource::Owner => 0,
        OwnerSource::Listener => 1,
        OwnerSource::Sweep => 2,
    }
}

fn direction_code(d: Direction) -> u8 {
    match d {
        Direction::In => 0,
        Direction::Out => 1,
    }
}

/// Numbers given out, up to a bound, then again from 1.
struct Numbering<K> {
    ids: HashMap<K, u32>,
    /// The last key numbered, and its number: consecutive events mostly share their owner
    /// and settings, found again with one comparison instead of a hash and a lookup.
    last: Option<(K, u32)>,
    next: u32,
    max: u32,
}

impl<K: std::hash::Hash + Eq + Clone> Numbering<K> {
    fn new(max: u32) -> Self {
        Self {
            ids: HashMap::new(),
            last: None,
            next: 1,
            max,
        }
    }

    /// The key's number, and whether it is new (its definition must be written first).
    fn number(&mut self, key: K) -> (u32, bool) {
        if let Some((last, id)) = &self.last
            && *last == key
        {
            return (*id, false);
        }
        if let Some(&id) = self.ids.get(&key) {
            self.last = Some((key, id));
            return (id, false);
        }
        if self.next > self.max {
            self.ids.clear();
            self.next = 1;
        }
        let id = self.next;
        self.next += 1;
        self.ids.insert(key.clone(), id);
        self.last = Some((key, id));
        (id, true)
    }
}

/// What tells one owner from another without hashing its identity's text: the identity by
/// address (the key keeps the `Arc`, so its address cannot be reused meanwhile).
#[derive(Clone, PartialEq, Eq, Hash)]
struct OwnerKey {
    pid: u32,
    comm: Comm,
    cgroup_id: u64,
    source: u8,
    container: usize,
}

/// Encodes records into frames; keeps the owners and identities already written.
pub struct BinaryWriter {
    owners: Numbering<OwnerKey>,
    settings: Numbering<WireSettings>,
    containers: Numbering<usize>,
    /// Keeps every numbered identity alive, so that addresses stay unique.
    held: HashMap<usize, Arc<Identity>>,
}

impl Default for BinaryWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl BinaryWriter {
    pub fn new() -> Self {
        Self {
            owners: Numbering::new(MAX_OWNERS),
            settings: Numbering::new(MAX_SETTINGS),
            containers: Numbering::new(MAX_CONTAINERS),
            held: HashMap::new(),
        }
    }

    /// The file's first bytes.
    pub fn start(out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&BINARY_VERSION.to_le_bytes());
    }

    /// Appends the frames of one record (definitions first, when an event needs them).
    pub fn record(&mut self, out: &mut Vec<u8>, record: &Record) {
        match record {
            Record::Event(e) => self.event(out, e),
            Record::Header(h) => Self::json(out, tag::HEADER, "header", h.started_ns, &**h),
            Record::Verdict(v) => Self::json(out, tag::VERDICT, "verdict", v.ts_ns, &**v),
            Record::Lost(l) => Self::json(out, tag::LOST, "lost", l.ts_ns, l),
            Record::End(e) => Self::json(out, tag::END, "end", e.ts_ns, e),
        }
    }

    /// A record other than an event: its JSON line (without `time`) in a frame.
    pub fn json<T: Serialize>(
        out: &mut Vec<u8>,
        tag: u8,
        kind: &'static str,
        ts_ns: u64,
        body: &T,
    ) {
        frame(out, tag, |out| {
            write_json_line(out, kind, ts_ns, body, None)
        });
    }

    /// A verdict: its JSON line (without `time`), written as JSON Lines write it.
    pub fn verdict(out: &mut Vec<u8>, v: &Verdict, json: &mut EventJson) {
        frame(out, tag::VERDICT, |out| json.write_verdict(out, v, None));
    }

    pub fn event(&mut self, out: &mut Vec<u8>, e: &Event) {
        // Taken apart field by field: a field added to the event does not compile here
        // until the wire struct (and the layout's version) carry it too.
        let Event {
            ts_ns,
            kind,
            socket,
            conn:
                Connection {
                    family,
                    laddr,
                    lport,
                    raddr,
                    rport,
                    netns,
                },
            state,
            old_state,
            process,
            class,
            segs,
            timer,
            reason,
            err,
            probe,
            sock,
            flags,
            raw,
            drop,
        } = e;
        let owner = process.as_ref().map_or(0, |p| self.owner(out, p));
        let sock = sock.as_ref().map(|c| self.counters(out, c));
        let (laddr, raddr) = (Octets::of(*laddr), Octets::of(*raddr));
        let wire = WireEvent {
            ts_ns: *ts_ns,
            kind: *kind as u8,
            socket: socket.map(|s| s.0),
            family: *family as u8,
            laddr: laddr.bytes(),
            lport: *lport,
            raddr: raddr.bytes(),
            rport: *rport,
            netns: *netns,
            state: state.0,
            old_state: old_state.map(|s| s.0),
            owner,
            class: class.map(|c| c as u8),
            segs: *segs,
            timer: timer.map(|t| t as u8),
            reason: reason.as_ref().map(ResetReason::name),
            err: *err,
            probe: *probe,
            sock,
            flags: flags.iter().map(String::as_str).collect(),
            raw: *raw,
            drop: drop.as_ref().map(
                |Dropped {
                     reason,
                     direction,
                     tcp_flags,
                     len,
                 }| WireDrop {
                    reason: reason.name(),
                    direction: direction_code(*direction),
                    tcp_flags: tcp_flags.0,
                    len: *len,
                },
            ),
        };
        frame(out, tag::EVENT, |out| postcard_into(out, &wire));
    }

    /// The counters, their settings by number (defined first when new).
    fn counters(&mut self, out: &mut Vec<u8>, c: &SocketCounters) -> WireCounters {
        let SocketCounters {
            retransmits,
            probes_out,
            backoff,
            rto_us,
            total_retrans,
            packets_out,
            ca_state,
            keepalive,
            keepalive_idle_ms,
            keepalive_intvl_ms,
            keepalive_probes,
            user_timeout_ms,
            retries1,
            retries2,
            syn_retries,
            orphan_retries,
            idle_rx_ms,
            idle_tx_ms,
            retrans_elapsed_ms,
            orphan,
            error,
            soft_error,
        } = *c;
        let settings = self.settings(
            out,
            WireSettings {
                keepalive,
                keepalive_idle_ms,
                keepalive_intvl_ms,
                keepalive_probes,
                user_timeout_ms,
                retries1,
                retries2,
                syn_retries,
                orphan_retries,
            },
        );
        WireCounters {
            retransmits,
            probes_out,
            backoff,
            rto_us,
            total_retrans,
            packets_out,
            ca_state: ca_state as u8,
            settings,
            idle_rx_ms,
            idle_tx_ms,
            retrans_elapsed_ms,
            orphan,
            error: error.map(|e| e.0),
            soft_error: soft_error.map(|e| e.0),
        }
    }

    /// The owner's number; its definition (and its identity's) written first when new.
    fn owner(&mut self, out: &mut Vec<u8>, p: &Owner) -> u32 {
        let container = p.container.as_ref().map_or(0, |c| self.container(out, c));
        let key = OwnerKey {
            pid: p.pid,
            comm: p.comm.clone(),
            cgroup_id: p.cgroup_id,
            source: source_code(p.source),
            container: p.container.as_ref().map_or(0, |c| Arc::as_ptr(c) as usize),
        };
        let (id, new) = self.owners.number(key);
        if new {
            let wire = WireOwner {
                id,
                pid: p.pid,
                comm: &p.comm,
                cgroup_id: p.cgroup_id,
                source: source_code(p.source),
                container,
            };
            frame(out, tag::OWNER, |out| postcard_into(out, &wire));
        }
        id
    }

    fn settings(&mut self, out: &mut Vec<u8>, settings: WireSettings) -> u32 {
        let (id, new) = self.settings.number(settings);
        if new {
            let wire = WireSettingsDef { id, settings };
            frame(out, tag::SETTINGS, |out| postcard_into(out, &wire));
        }
        id
    }

    fn container(&mut self, out: &mut Vec<u8>, identity: &Arc<Identity>) -> u32 {
        let address = Arc::as_ptr(identity) as usize;
        let (id, new) = self.containers.number(address);
        if new {
            if self.containers.ids.len() == 1 {
                // Numbering started again: the identities of the old numbers may go.
                self.held.clear();
            }
            self.held.insert(address, identity.clone());
            let json = serde_json::to_string(&**identity).expect("identities always serialise");
            let wire = WireContainer { id, json: &json };
            frame(out, tag::CONTAINER, |out| postcard_into(out, &wire));
        }
        id
    }
}

/// An address's bytes, 4 or 16.
struct Octets([u8; 16], usize);

impl Octets {
    fn of(addr: IpAddr) -> Octets {
        let mut bytes = [0; 16];
        match addr {
            IpAddr::V4(a) => {
                bytes[..4].copy_from_slice(&a.octets());
                Octets(bytes, 4)
            }
            IpAddr::V6(a) => Octets(a.octets(), 16),
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.0[..self.1]
    }
}

fn address(bytes: &[u8]) -> Result<IpAddr, String> {
    match bytes.len() {
        4 => Ok(IpAddr::from(<[u8; 4]>::try_from(bytes).expect("4 bytes"))),
        16 => Ok(IpAddr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes"))),
        n => Err(format!("bad event: an address of {n} bytes")),
    }
}

/// Appends one frame: tag, length, what `body` writes.
fn frame(out: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(tag);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

fn postcard_into<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    postcard::serialize_with_flavor(value, Append(out)).expect("wire structs always serialise");
}

/// postcard's output, appended to the output buffer itself. postcard's own `Vec` flavour
/// (`to_extend`) copies every byte and every varint through a call to `memcpy`: most of
/// what encoding an event cost. The bytes are the same (`encodes_as_postcard_to_extend`).
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline(always)]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        put(self.0, bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes frames into records; keeps the owners and identities defined so far.
#[derive(Default)]
pub struct BinaryReader {
    owners: Vec<Owner>,
    settings: Vec<WireSettings>,
    containers: Vec<Arc<Identity>>,
}

/// Stores a definition under its number: the next one, or one already given (a writer that
/// numbers again from 1).
fn define<T>(table: &mut Vec<T>, id: u32, max: u32, value: T, what: &str) -> Result<(), String> {
    let index = (id as usize).wrapping_sub(1);
    if id == 0 || id > max || index > table.len() {
        return Err(format!(
            "{what} number {id} out of order ({} defined)",
            table.len()
        ));
    }
    if index == table.len() {
        table.push(value);
    } else {
        table[index] = value;
    }
    Ok(())
}

fn lookup<'t, T>(table: &'t [T], id: u32, what: &str) -> Result<&'t T, String> {
    table
        .get((id as usize).wrapping_sub(1))
        .ok_or_else(|| format!("{what} number {id} was never defined"))
}

impl BinaryReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// The record of one frame; None for a definition (read the next frame).
    pub fn frame(&mut self, tag: u8, payload: &[u8]) -> Result<Option<Record>, String> {
        match tag {
            tag::EVENT => Ok(Some(Record::Event(self.event(payload)?))),
            tag::OWNER => {
                let w: WireOwner = decode(payload, "owner")?;
                let source = match w.source {
                    0 => OwnerSource::Owner,
                    1 => OwnerSource::Listener,
                    2 => OwnerSource::Sweep,
                    other => return Err(format!("bad owner: unknown owner source {other}")),
                };
                let container = match w.container {
                    0 => None,
                    id => Some(lookup(&self.containers, id, "container")?.clone()),
                };
                let owner = Owner {
                    pid: w.pid,
                    comm: Comm::new(w.comm),
                    cgroup_id: w.cgroup_id,
                    source,
                    container,
                };
                define(&mut self.owners, w.id, MAX_OWNERS, owner, "owner")?;
                Ok(None)
            }
            tag::SETTINGS => {
                let w: WireSettingsDef = decode(payload, "settings")?;
                define(
                    &mut self.settings,
                    w.id,
                    MAX_SETTINGS,
                    w.settings,
                    "settings",
                )?;
                Ok(None)
            }
            tag::CONTAINER => {
                let w: WireContainer = decode(payload, "container")?;
                let identity: Identity =
                    serde_json::from_str(w.json).map_err(|e| format!("bad container: {e}"))?;
                define(
                    &mut self.containers,
                    w.id,
                    MAX_CONTAINERS,
                    Arc::new(identity),
                    "container",
                )?;
                Ok(None)
            }
            tag::HEADER | tag::VERDICT | tag::LOST | tag::END => {
                let text = std::str::from_utf8(payload)
                    .map_err(|_| "bad record: not UTF-8 text".to_owned())?;
                let record = Record::parse(text)?;
                let expected = match tag {
                    tag::HEADER => "header",
                    tag::VERDICT => "verdict",
                    tag::LOST => "lost",
                    _ => "end",
                };
                if record.type_name() != expected {
                    return Err(format!(
                        "a {:?} record in a {expected:?} frame",
                        record.type_name()
                    ));
                }
                Ok(Some(record))
            }
            other => Err(format!("unknown frame tag 0x{other:02x}")),
        }
    }

    /// Built in its box: an event is large, and moved no more than needed.
    fn event(&self, payload: &[u8]) -> Result<Box<Event>, String> {
        let w: WireEvent = decode(payload, "event")?;
        let code = |what: &str, code: u8| format!("bad event: unknown {what} code {code}");
        let kind = EventKind::from_code(w.kind).ok_or_else(|| code("kind", w.kind))?;
        let family = Family::from_code(w.family).ok_or_else(|| code("family", w.family))?;
        let mut e = Box::new(Event::new(w.ts_ns, kind, TcpState(w.state)));
        e.socket = w.socket.map(SocketId);
        e.conn = Connection {
            family,
            laddr: address(w.laddr)?,
            lport: w.lport,
            raddr: address(w.raddr)?,
            rport: w.rport,
            netns: w.netns,
        };
        e.old_state = w.old_state.map(TcpState);
        if w.owner != 0 {
            e.process = Some(lookup(&self.owners, w.owner, "owner")?.clone());
        }
        e.class = match w.class {
            None => None,
            Some(c) => Some(RetransmitClass::from_code(c).ok_or_else(|| code("class", c))?),
        };
        e.segs = w.segs;
        e.timer = match w.timer {
            None => None,
            Some(t) => Some(TimerKind::from_code(t).ok_or_else(|| code("timer", t))?),
        };
        e.reason = w.reason.map(ResetReason::from_name);
        e.err = w.err;
        e.probe = w.probe;
        if let Some(c) = w.sock {
            let settings = lookup(&self.settings, c.settings, "settings")?;
            e.sock = Some(SocketCounters {
                retransmits: c.retransmits,
                probes_out: c.probes_out,
                backoff: c.backoff,
                rto_us: c.rto_us,
                total_retrans: c.total_retrans,
                packets_out: c.packets_out,
                ca_state: CaState::from_code(c.ca_state)
                    .ok_or_else(|| code("ca_state", c.ca_state))?,
                keepalive: settings.keepalive,
                keepalive_idle_ms: settings.keepalive_idle_ms,
                keepalive_intvl_ms: settings.keepalive_intvl_ms,
                keepalive_probes: settings.keepalive_probes,
                user_timeout_ms: settings.user_timeout_ms,
                retries1: settings.retries1,
                retries2: settings.retries2,
                syn_retries: settings.syn_retries,
                orphan_retries: settings.orphan_retries,
                idle_rx_ms: c.idle_rx_ms,
                idle_tx_ms: c.idle_tx_ms,
                retrans_elapsed_ms: c.retrans_elapsed_ms,
                orphan: c.orphan,
                error: c.error.map(Errno),
                soft_error: c.soft_error.map(Errno),
            });
        }
        if !w.flags.is_empty() {
            e.flags = w.flags.into_iter().map(str::to_owned).collect();
        }
        e.raw = w.raw;
        if let Some(d) = w.drop {
            e.drop = Some(Dropped {
                reason: DropReason::new(d.reason),
                direction: match d.direction {
                    0 => Direction::In,
                    1 => Direction::Out,
                    other => return Err(code("direction", other)),
                },
                tcp_flags: TcpFlags(d.tcp_flags),
                len: d.len,
            });
        }
        Ok(e)
    }
}

/// One wire struct that fills its payload exactly.
fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8], what: &str) -> Result<T, String> {
    match postcard::take_from_bytes(payload) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!(
            "bad {what}: {} bytes left over in its frame",
            rest.len()
        )),
        Err(e) => Err(format!("bad {what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::output::event_json::tests::{arb_event, everything};

    /// Every frame of `bytes` (after the file's start) through a reader: the records.
    fn read_frames(mut bytes: &[u8]) -> Vec<Record> {
        let mut reader = BinaryReader::new();
        let mut records = Vec::new();
        while !bytes.is_empty() {
            let len = u32::from_le_bytes(bytes[1..5].try_into().unwrap()) as usize;
            let (frame, rest) = bytes.split_at(FRAME_HEAD + len);
            if let Some(record) = reader.frame(frame[0], &frame[FRAME_HEAD..]).unwrap() {
                records.push(record);
            }
            bytes = rest;
        }
        records
    }

    fn round_trip(events: &[Event]) -> Vec<Event> {
        let mut writer = BinaryWriter::new();
        let mut out = Vec::new();
        for e in events {
            writer.event(&mut out, e);
        }
        read_frames(&out)
            .into_iter()
            .map(|r| match r {
                Record::Event(e) => *e,
                other => panic!("not an event: {other:?}"),
            })
            .collect()
    }

    /// The event as JSON Lines carries it (the reference).
    fn through_json(e: &Event) -> Event {
        match Record::parse(&Record::Event(Box::new(e.clone())).to_json(None)).unwrap() {
            Record::Event(e) => *e,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn every_field_and_kind_reads_back_as_json_gives_it() {
        let mut events = vec![
            everything(),
            Event::new(1, EventKind::Drop, TcpState::CLOSE),
        ];
        for &kind in EventKind::ALL {
            events.push(Event {
                kind,
                ..everything()
            });
        }
        let read = round_trip(&events);
        assert_eq!(read, events);
        for e in &read {
            assert_eq!(*e, through_json(e));
        }
    }

    #[test]
    fn owners_and_identities_are_written_once() {
        let e = everything();
        let mut writer = BinaryWriter::new();
        let (mut first, mut second) = (Vec::new(), Vec::new());
        writer.event(&mut first, &e);
        writer.event(&mut second, &e);
        assert_eq!(first[0], tag::CONTAINER);
        // The second event is its frame alone, the last of the first's.
        assert_eq!(second[0], tag::EVENT);
        let len = u32::from_le_bytes(second[1..5].try_into().unwrap()) as usize;
        assert_eq!(second.len(), FRAME_HEAD + len);
        assert!(first.len() > second.len() && first.ends_with(&second));
    }

    #[test]
    fn numbering_starts_again_past_the_bound_and_reads_right() {
        // More owners than numbers, and more identities: every event keeps its own.
        let events: Vec<Event> = (0..MAX_OWNERS + 100)
            .map(|i| {
                let mut e = everything();
                let owner = e.process.as_mut().unwrap();
                owner.pid = i;
                if i % 15 == 0 {
                    owner.container = Some(Arc::new(Identity::bare(format!("/c{i}"))));
                }
                e
            })
            .collect();
        assert_eq!(round_trip(&events), events);
    }

    #[test]
    fn other_records_are_their_json_lines() {
        let lost = Record::Lost(crate::record::Lost {
            ts_ns: 5,
            cause: crate::record::LossCause::KernelSkipped,
            lost: 2,
            total: 9,
        });
        let mut out = Vec::new();
        BinaryWriter::new().record(&mut out, &lost);
        assert_eq!(out[0], tag::LOST);
        assert_eq!(&out[FRAME_HEAD..], lost.to_json(None).as_bytes());
        assert_eq!(read_frames(&out), vec![lost]);
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let mut reader = BinaryReader::new();
        let mut out = Vec::new();
        BinaryWriter::new().event(&mut out, &everything());
        // The event alone: its owner was never defined.
        let mut at = 0;
        let mut last = None;
        while at < out.len() {
            let len = u32::from_le_bytes(out[at + 1..at + 5].try_into().unwrap()) as usize;
            last = Some(at);
            at += FRAME_HEAD + len;
        }
        let event = &out[last.unwrap()..];
        let err = reader.frame(tag::EVENT, &event[FRAME_HEAD..]).unwrap_err();
        assert_eq!(err, "owner number 1 was never defined");
        assert_eq!(
            reader.frame(b'?', b"").unwrap_err(),
            "unknown frame tag 0x3f"
        );
        let err = reader
            .frame(tag::EVENT, &event[FRAME_HEAD..20])
            .unwrap_err();
        assert!(err.starts_with("bad event: "), "{err}");
        let err = reader.frame(tag::LOST, b"{\"type\":\"end\"").unwrap_err();
        assert!(err.starts_with("bad end record"), "{err}");
        // With the definitions read, a byte too many is still refused.
        let mut defined = BinaryReader::new();
        let mut at = 0;
        while at < last.unwrap() {
            let len = u32::from_le_bytes(out[at + 1..at + 5].try_into().unwrap()) as usize;
            let frame = &out[at..at + FRAME_HEAD + len];
            assert!(
                defined
                    .frame(frame[0], &frame[FRAME_HEAD..])
                    .unwrap()
                    .is_none()
            );
            at += FRAME_HEAD + len;
        }
        assert!(defined.frame(tag::EVENT, &event[FRAME_HEAD..]).is_ok());
        let mut long = event[FRAME_HEAD..].to_vec();
        long.push(0);
        assert_eq!(
            defined.frame(tag::EVENT, &long).unwrap_err(),
            "bad event: 1 bytes left over in its frame"
        );
        assert_eq!(
            address(&[10, 0, 0]).unwrap_err(),
            "bad event: an address of 3 bytes"
        );
        // An owner numbered past the next free number.
        let err = reader
            .frame(tag::OWNER, &[7, 1, 1, b'x', 0, 0, 0])
            .unwrap_err();
        assert_eq!(err, "owner number 7 out of order (0 defined)");
    }

    /// Each frame's payload is what postcard's own `Vec` flavour writes for it: decoded
    /// and encoded again by postcard, the same bytes (varints are canonical both ways).
    fn frames_as_postcard_encodes_them(mut bytes: &[u8]) -> Result<(), TestCaseError> {
        fn again<'a, T: Serialize + Deserialize<'a>>(payload: &'a [u8]) -> Vec<u8> {
            let value: T = postcard::from_bytes(payload).unwrap();
            postcard::to_extend(&value, Vec::new()).unwrap()
        }
        while !bytes.is_empty() {
            let len = u32::from_le_bytes(bytes[1..5].try_into().unwrap()) as usize;
            let (frame, rest) = bytes.split_at(FRAME_HEAD + len);
            let payload = &frame[FRAME_HEAD..];
            let reference = match frame[0] {
                tag::EVENT => again::<WireEvent>(payload),
                tag::OWNER => again::<WireOwner>(payload),
                tag::SETTINGS => again::<WireSettingsDef>(payload),
                tag::CONTAINER => again::<WireContainer>(payload),
                other => panic!("unexpected frame {other}"),
            };
            prop_assert_eq!(payload, &reference[..]);
            bytes = rest;
        }
        Ok(())
    }

    #[test]
    fn encodes_as_postcard_to_extend() {
        let mut writer = BinaryWriter::new();
        let mut out = Vec::new();
        let mut e = everything();
        writer.event(&mut out, &e);
        e.kind = EventKind::Drop;
        e.process = None;
        e.sock = None;
        writer.event(&mut out, &e);
        frames_as_postcard_encodes_them(&out).unwrap();
    }

    proptest! {
        #[test]
        fn random_events_encode_as_postcard_to_extend(
            events in proptest::collection::vec(arb_event(), 1..4),
        ) {
            let mut writer = BinaryWriter::new();
            let mut out = Vec::new();
            for e in &events {
                writer.event(&mut out, e);
            }
            frames_as_postcard_encodes_them(&out)?;
        }

        #[test]
        fn random_events_read_back_as_json_gives_them(e in arb_event()) {
            let read = round_trip(std::slice::from_ref(&e));
            prop_assert_eq!(&read[0], &e);
            prop_assert_eq!(&read[0], &through_json(&e));
        }
    }
}
