//! The typed event: what the kernel reported, decoded from the ring-buffer ABI
//! ([`tracer_common::RawEvent`]) into names and units a person and `jq` can read.
//!
//! This type is also the `event` record of the JSON Lines trace (see docs/trace-format.md):
//! it serialises flat, omits what does not apply, and reads back losslessly.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    hash::{DefaultHasher, Hash, Hasher},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Arc, OnceLock},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tracer_common::{self as abi, RawEvent, flags};

use crate::identity::{self, Identity};

pub use tracer_common::{CaState, EventKind, Family, RetransmitClass, TimerKind};

/// A TCP state as the kernel reported it: one of [`tracer_common::TcpState`] (named as the
/// kernel names them), or a code this build does not know (`UNKNOWN_n`). Serialised by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpState(pub u8);

impl TcpState {
    pub const ESTABLISHED: Self = Self::of(abi::TcpState::Established);
    pub const SYN_SENT: Self = Self::of(abi::TcpState::SynSent);
    pub const SYN_RECV: Self = Self::of(abi::TcpState::SynRecv);
    pub const FIN_WAIT1: Self = Self::of(abi::TcpState::FinWait1);
    pub const FIN_WAIT2: Self = Self::of(abi::TcpState::FinWait2);
    pub const TIME_WAIT: Self = Self::of(abi::TcpState::TimeWait);
    pub const CLOSE: Self = Self::of(abi::TcpState::Close);
    pub const CLOSE_WAIT: Self = Self::of(abi::TcpState::CloseWait);
    pub const LAST_ACK: Self = Self::of(abi::TcpState::LastAck);
    pub const LISTEN: Self = Self::of(abi::TcpState::Listen);
    pub const CLOSING: Self = Self::of(abi::TcpState::Closing);
    pub const NEW_SYN_RECV: Self = Self::of(abi::TcpState::NewSynRecv);

    pub const fn of(state: abi::TcpState) -> Self {
        Self(state as u8)
    }

    /// The state, when this build knows its code.
    pub const fn known(self) -> Option<abi::TcpState> {
        abi::TcpState::from_code(self.0)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        if let Some(known) = abi::TcpState::from_name(name) {
            return Some(Self::of(known));
        }
        name.strip_prefix("UNKNOWN_")?.parse().ok().map(Self)
    }

    /// Past the handshake: data can flow (or did).
    pub fn is_synchronized(self) -> bool {
        !matches!(
            self,
            Self::SYN_SENT | Self::SYN_RECV | Self::LISTEN | Self::CLOSE | Self::NEW_SYN_RECV
        )
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known() {
            Some(state) => f.pad(state.name()),
            None => f.pad(&format!("UNKNOWN_{}", self.0)),
        }
    }
}

impl Serialize for TcpState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.known() {
            Some(state) => s.serialize_str(state.name()),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for TcpState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        by_name(d, "TCP state", TcpState::from_name)
    }
}

/// How the owner of a socket was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerSource {
    /// In the owner's own context (connect, listen, close, send, receive).
    Owner,
    /// The process listening on the local port (accepted, not yet used).
    Listener,
    /// Found by the socket sweep (/proc/PID/fd).
    Sweep,
}

/// A process's name as the kernel keeps it (`/proc/PID/comm`: at most 15 bytes), held
/// inline: every event carries its owner's, and copying one allocates nothing. A longer
/// name (from a trace written by someone else) is held shared. Reads as a `str`;
/// serialised as a string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Comm(CommRepr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum CommRepr {
    Inline { len: u8, bytes: [u8; Comm::INLINE] },
    Shared(Arc<str>),
}

impl Comm {
    /// Bytes held inline: a kernel comm (15 bytes) with room for a few replaced bytes.
    const INLINE: usize = 22;

    pub fn new(name: &str) -> Comm {
        if name.len() <= Self::INLINE {
            let mut bytes = [0; Self::INLINE];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            Comm(CommRepr::Inline {
                len: name.len() as u8,
                bytes,
            })
        } else {
            Comm(CommRepr::Shared(name.into()))
        }
    }

    /// The kernel's `char comm[16]`: up to its first NUL, invalid UTF-8 replaced.
    pub fn from_kernel(comm: &[u8]) -> Comm {
        let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
        match std::str::from_utf8(&comm[..end]) {
            Ok(name) => Comm::new(name),
            Err(_) => Comm::new(&String::from_utf8_lossy(&comm[..end])),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: the inline bytes are always a copy of a `str`'s first `len` bytes.
            CommRepr::Inline { len, bytes } => unsafe {
                std::str::from_utf8_unchecked(&bytes[..usize::from(*len)])
            },
            CommRepr::Shared(name) => name,
        }
    }
}

impl Default for Comm {
    fn default() -> Self {
        Comm::new("")
    }
}

impl std::ops::Deref for Comm {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Comm {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Comm {
    fn from(name: &str) -> Comm {
        Comm::new(name)
    }
}

impl From<String> for Comm {
    fn from(name: String) -> Comm {
        Comm::new(&name)
    }
}

impl PartialEq<str> for Comm {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Comm {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Comm {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Comm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Comm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        by_name(d, "process name", |name| Some(Comm::new(name)))
    }
}

/// Who owns a socket, and how that was learned: the `process` object of events, verdicts
/// and swept sockets. Shown as `comm/pid`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub comm: Comm,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub cgroup_id: u64,
    #[serde(rename = "owner")]
    pub source: OwnerSource,
    /// What the owner's cgroup names (container, pod, systemd unit), resolved in userspace
    /// from `cgroup_id` before the event reaches the timeline engine. Shared with every
    /// event of the owner, and kept with the socket after the cgroup is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Arc<Identity>>,
}

impl Owner {
    /// `comm/pid`, then the owner's container, pod or unit in brackets when known
    /// (`curl/4242 [pod payments/api-7f9c]`); `-` when the owner is unknown.
    pub fn label(owner: Option<&Owner>) -> String {
        owner.map_or_else(|| "-".to_owned(), identity::owner_label)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("{}/{}", self.comm, self.pid))
    }
}

/// One end of a connection: `10.0.0.1:80`, `[fd00::1]:80`; `10.0.0.1:*` while its port is
/// not known (a connect reports SYN_SENT before the kernel picks the local port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

impl Endpoint {
    /// Appends the endpoint as `Display` spells it. Verdicts name their peer in every
    /// sentence: an IPv4 address is written digit by digit, without the formatting
    /// machinery's calls per octet.
    pub fn write_text(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => {
                let [a, b, c, d] = a.octets();
                let mut digits = itoa::Buffer::new();
                out.write_str(digits.format(a))?;
                for octet in [b, c, d] {
                    out.write_char('.')?;
                    out.write_str(digits.format(octet))?;
                }
            }
            IpAddr::V6(a) => write!(out, "[{a}]")?,
        }
        out.write_char(':')?;
        match self.port {
            0 => out.write_char('*'),
            port => out.write_str(itoa::Buffer::new().format(port)),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // On the stack: `[ffff:...:ffff]:65535` is 47 bytes at most.
        let mut text = StackText::<64>::new();
        self.write_text(&mut text)?;
        f.pad(text.as_str())
    }
}

/// A short text built on the stack (for `Display` implementations that pad their text).
struct StackText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // SAFETY: only whole `str`s are ever appended (`write_str`).
        unsafe { std::str::from_utf8_unchecked(&self.bytes[..self.len]) }
    }
}

impl<const N: usize> fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Where a connection runs: its two ends and its network namespace. Flattened into every
/// record that names a connection (events, verdicts, report timelines, swept sockets) as
/// `family`, `laddr`, `lport`, `raddr`, `rport`, `netns`; shown as `laddr:lport → raddr:rport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Connection {
    pub family: Family,
    pub laddr: IpAddr,
    pub lport: u16,
    pub raddr: IpAddr,
    pub rport: u16,
    /// Network namespace inode.
    pub netns: u32,
}

impl Connection {
    /// Nothing known yet: IPv4, unspecified addresses, port and namespace 0.
    pub const UNKNOWN: Connection = Connection {
        family: Family::Ipv4,
        laddr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        lport: 0,
        raddr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        rport: 0,
        netns: 0,
    };

    pub fn local(&self) -> Endpoint {
        Endpoint {
            addr: self.laddr,
            port: self.lport,
        }
    }

    pub fn remote(&self) -> Endpoint {
        Endpoint {
            addr: self.raddr,
            port: self.rport,
        }
    }

    /// Keeps the most complete picture: ports and addresses get filled in after connect()
    /// starts, and are cleared again while a socket closes.
    pub fn learn(&mut self, newer: &Connection) {
        if newer.lport != 0 {
            self.lport = newer.lport;
        }
        if newer.rport != 0 {
            self.rport = newer.rport;
        }
        if !newer.laddr.is_unspecified() {
            self.laddr = newer.laddr;
        }
        if !newer.raddr.is_unspecified() {
            self.raddr = newer.raddr;
        }
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("{} → {}", self.local(), self.remote()))
    }
}

/// The two ends exactly as the kernel reported them at one event: the `raw` object of an
/// event whose socket is known by other ends (the kernel clears addresses and ports while a
/// socket closes; the event names the socket by the ends learned from its earlier events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tuple {
    pub laddr: IpAddr,
    pub lport: u16,
    pub raddr: IpAddr,
    pub rport: u16,
}

impl Tuple {
    pub fn of(conn: &Connection) -> Tuple {
        Tuple {
            laddr: conn.laddr,
            lport: conn.lport,
            raddr: conn.raddr,
            rport: conn.rport,
        }
    }
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// Zero counters are left out of the trace: lines stay short and jq sees them as null.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The socket's counters and give-up budgets at the moment of the event (full sockets only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketCounters {
    /// Consecutive retransmission timeouts (or SYN retries) without progress
    /// (icsk_retransmits).
    #[serde(default, skip_serializing_if = "is_default")]
    pub retransmits: u8,
    /// Unanswered keepalive or zero-window probes (icsk_probes_out).
    #[serde(default, skip_serializing_if = "is_default")]
    pub probes_out: u8,
    #[serde(default, skip_serializing_if = "is_default")]
    pub backoff: u8,
    #[serde(default, skip_serializing_if = "is_default")]
    pub rto_us: u64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub total_retrans: u32,
    #[serde(default, skip_serializing_if = "is_default")]
    pub packets_out: u32,
    #[serde(default, skip_serializing_if = "is_default")]
    pub ca_state: CaState,
    /// SO_KEEPALIVE is on.
    #[serde(default, skip_serializing_if = "is_default")]
    pub keepalive: bool,
    #[serde(default, skip_serializing_if = "is_default")]
    pub keepalive_idle_ms: u64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub keepalive_intvl_ms: u64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub keepalive_probes: u8,
    /// TCP_USER_TIMEOUT (0: not set).
    #[serde(default, skip_serializing_if = "is_default")]
    pub user_timeout_ms: u32,
    /// The namespace's tcp_retries1/2, and the effective SYN and orphan retries.
    #[serde(default, skip_serializing_if = "is_default")]
    pub retries1: u8,
    pub retries2: u8,
    #[serde(default, skip_serializing_if = "is_default")]
    pub syn_retries: u8,
    #[serde(default, skip_serializing_if = "is_default")]
    pub orphan_retries: u8,
    /// Time since the last ACK received / the last segment sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_rx_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_tx_ms: Option<u64>,
    /// How long the kernel's give-up clock (retrans_stamp, set at the streak's first RTO
    /// retransmit) has run; absent outside a streak and on that first RTO's own event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrans_elapsed_ms: Option<u64>,
    /// The application has closed the socket (SOCK_DEAD).
    #[serde(default, skip_serializing_if = "is_default")]
    pub orphan: bool,
    /// sk_err / sk_err_soft; absent when 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Errno>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_error: Option<Errno>,
}

/// A socket's identity: the kernel's socket cookie, or (top bit set) a hash of netns and
/// tuple for the rare event on a socket whose cookie was never generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SocketId(pub u64);

impl SocketId {
    /// Set in the ids made from a tuple (the kernel's cookies never have it).
    pub const TUPLE_KEYED: u64 = 1 << 63;
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// One thing the kernel did to one socket: the `event` record (docs/trace-format.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "EventRecord")]
pub struct Event {
    /// CLOCK_BOOTTIME in ns (monotonic, comparable across events of one trace).
    pub ts_ns: u64,
    pub kind: EventKind,
    /// Absent only for a reset sent in answer to a segment that matched no socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<SocketId>,
    /// For a socketless reset: the reset's own source and destination.
    #[serde(flatten)]
    pub conn: Connection,
    /// State at the event (for a state change: the new state).
    pub state: TcpState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_state: Option<TcpState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Owner>,
    /// Retransmits: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<RetransmitClass>,
    /// Retransmits: segments resent (a GSO buffer carries several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<TimerKind>,
    /// Resets sent: the kernel's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ResetReason>,
    /// Failed retransmits: the error; error reports: the reported errno.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<i32>,
    /// Keepalive / zero-window probes: this probe's number (1..N).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<u8>,
    /// Counters of full sockets (absent for request/timewait sockets and no-socket resets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock: Option<SocketCounters>,
    /// Sweep events: why the socket deserves a look (`half_open_risk`, `unresponsive_now`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// The ends as the kernel reported them, when they differ from `conn` (the socket's
    /// best-known ends, see [`crate::timeline::Engine::name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Tuple>,
    /// Drops: what was dropped, which way, and the kernel's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<Dropped>,
}

/// How an `event` record is read: [`Event`] with its connection's fields inline. serde's
/// `flatten` buffers every field a record has beyond the struct's own, which made reading a
/// trace (the cost of `tracer report`) more than twice as slow. Events are the bulk of every
/// trace, so they are read through this mirror; `json_round_trip_is_lossless` fails when the
/// two drift apart. Other records use `flatten` both ways.
#[derive(Deserialize)]
struct EventRecord {
    ts_ns: u64,
    kind: EventKind,
    #[serde(default)]
    socket: Option<SocketId>,
    family: Family,
    laddr: IpAddr,
    lport: u16,
    raddr: IpAddr,
    rport: u16,
    netns: u32,
    state: TcpState,
    #[serde(default)]
    old_state: Option<TcpState>,
    #[serde(default)]
    process: Option<Owner>,
    #[serde(default)]
    class: Option<RetransmitClass>,
    #[serde(default)]
    segs: Option<u32>,
    #[serde(default)]
    timer: Option<TimerKind>,
    #[serde(default)]
    reason: Option<ResetReason>,
    #[serde(default)]
    err: Option<i32>,
    #[serde(default)]
    probe: Option<u8>,
    #[serde(default)]
    sock: Option<SocketCounters>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    raw: Option<Tuple>,
    #[serde(default)]
    drop: Option<Dropped>,
}

impl From<EventRecord> for Event {
    fn from(r: EventRecord) -> Event {
        Event {
            ts_ns: r.ts_ns,
            kind: r.kind,
            socket: r.socket,
            conn: Connection {
                family: r.family,
                laddr: r.laddr,
                lport: r.lport,
                raddr: r.raddr,
                rport: r.rport,
                netns: r.netns,
            },
            state: r.state,
            old_state: r.old_state,
            process: r.process,
            class: r.class,
            segs: r.segs,
            timer: r.timer,
            reason: r.reason,
            err: r.err,
            probe: r.probe,
            sock: r.sock,
            flags: r.flags,
            raw: r.raw,
            drop: r.drop,
        }
    }
}

impl Event {
    /// An event of `kind` with no socket, addresses or details yet: the base that builders
    /// (the sweep, tests, benches) complete with struct-update syntax.
    pub fn new(ts_ns: u64, kind: EventKind, state: TcpState) -> Event {
        Event {
            ts_ns,
            kind,
            socket: None,
            conn: Connection::UNKNOWN,
            state,
            old_state: None,
            process: None,
            class: None,
            segs: None,
            timer: None,
            reason: None,
            err: None,
            probe: None,
            sock: None,
            flags: Vec::new(),
            raw: None,
            drop: None,
        }
    }

    /// The socket error (sk_err) at the event.
    pub fn errno(&self) -> Option<Errno> {
        self.sock.as_ref().and_then(|c| c.error)
    }
}

/// A socket error: a positive errno as the kernel's `sk_err` carries it, named as the
/// application sees it (`ETIMEDOUT`; `E135` for a number without a name). Serialised by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPIPE: Errno = Errno(libc::EPIPE);
    pub const ECONNABORTED: Errno = Errno(libc::ECONNABORTED);
    pub const ECONNRESET: Errno = Errno(libc::ECONNRESET);
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);
    pub const ECONNREFUSED: Errno = Errno(libc::ECONNREFUSED);
    pub const EHOSTUNREACH: Errno = Errno(libc::EHOSTUNREACH);

    /// The errno a name produced by `Display` stands for.
    pub fn from_name(name: &str) -> Option<Errno> {
        static BY_NAME: OnceLock<HashMap<String, i32>> = OnceLock::new();
        let by_name = BY_NAME.get_or_init(|| {
            (1..=255)
                .map(|code| (Errno(code).to_string(), code))
                .collect()
        });
        by_name
            .get(name)
            .copied()
            .or_else(|| name.strip_prefix('E')?.parse().ok())
            .map(Errno)
    }
}

impl Errno {
    /// The name `Display` spells, for the codes below 256 (every error a socket reports),
    /// spelt once: verdicts and trace lines name an error each.
    pub fn name(self) -> Option<&'static str> {
        static NAMES: OnceLock<Vec<String>> = OnceLock::new();
        let names = NAMES.get_or_init(|| (0..256).map(|n| Errno(n).spell()).collect());
        names.get(usize::try_from(self.0).ok()?).map(String::as_str)
    }

    fn spell(self) -> String {
        match nix::errno::Errno::from_raw(self.0) {
            nix::errno::Errno::UnknownErrno => format!("E{}", self.0),
            known => format!("{known:?}"),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => f.write_str(&self.spell()),
        }
    }
}

impl Serialize for Errno {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Errno {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        by_name(d, "errno", Errno::from_name)
    }
}

/// Declares [`ResetReason`]: the `enum sk_rst_reason` names this tracer gives a meaning to,
/// each written once.
macro_rules! reset_reasons {
    ($($(#[$meta:meta])* $variant:ident => $name:literal,)+) => {
        /// Why the kernel sent a reset: a name from `enum sk_rst_reason` (the running
        /// kernel's BTF names them). Serialised by name.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ResetReason {
            $($(#[$meta])* $variant,)+
            /// Any other name the kernel gave, or `REASON_n` for a value it did not name.
            Other(String),
        }

        impl ResetReason {
            pub fn name(&self) -> &str {
                match self {
                    $(ResetReason::$variant => $name,)+
                    ResetReason::Other(name) => name,
                }
            }

            pub fn from_name(name: &str) -> ResetReason {
                match name {
                    $($name => ResetReason::$variant,)+
                    other => ResetReason::Other(other.to_owned()),
                }
            }
        }
    };
}

reset_reasons! {
    NotSpecified => "NOT_SPECIFIED",
    /// A segment that matched no socket.
    NoSocket => "NO_SOCKET",
    TcpAbortOnData => "TCP_ABORT_ON_DATA",
    TcpAbortOnClose => "TCP_ABORT_ON_CLOSE",
    TcpAbortOnLinger => "TCP_ABORT_ON_LINGER",
    TcpAbortOnMemory => "TCP_ABORT_ON_MEMORY",
    TcpState => "TCP_STATE",
    TcpDisconnectWithData => "TCP_DISCONNECT_WITH_DATA",
    TcpKeepaliveTimeout => "TCP_KEEPALIVE_TIMEOUT",
}

impl fmt::Display for ResetReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl Serialize for ResetReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ResetReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        by_name(d, "reset reason", |name| Some(ResetReason::from_name(name)))
    }
}

/// Why the kernel dropped a segment: a name from `enum skb_drop_reason` without its
/// `SKB_DROP_REASON_` prefix (`NETFILTER_DROP`, `NO_SOCKET`, `TCP_CSUM`, ...), as the running
/// kernel's BTF names them; `REASON_n` for a value it did not name. Serialised by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DropReason(pub String);

impl DropReason {
    pub fn new(name: &str) -> DropReason {
        DropReason(name.to_owned())
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// Netfilter (nftables, iptables) decided to drop it: a rule of this host's firewall.
    pub fn is_netfilter(&self) -> bool {
        self.0.starts_with("NETFILTER") || self.0.starts_with("IPTABLES")
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Which way a dropped segment was going, seen from the socket it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Arriving from the peer.
    In,
    /// Leaving for the peer.
    Out,
}

/// A TCP segment's flags, shown as `SYN`, `SYN|ACK`, `PSH|ACK`, ... (serialised so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub(crate) const NAMES: [(u8, &'static str); 8] = [
        (0x02, "SYN"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];

    /// A connection request: SYN without ACK.
    pub fn is_syn(self) -> bool {
        self.0 & (Self::SYN | Self::ACK) == Self::SYN
    }

    /// The answer to a connection request: SYN and ACK.
    pub fn is_syn_ack(self) -> bool {
        self.0 & (Self::SYN | Self::ACK) == Self::SYN | Self::ACK
    }

    pub fn from_name(name: &str) -> Option<TcpFlags> {
        let mut bits = 0;
        for part in name.split('|').filter(|p| !p.is_empty()) {
            bits |= Self::NAMES.iter().find(|(_, n)| *n == part)?.0;
        }
        Some(TcpFlags(bits))
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        f.pad(&names.join("|"))
    }
}

impl Serialize for TcpFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TcpFlags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        by_name(d, "TCP flags", TcpFlags::from_name)
    }
}

/// A segment this host dropped (`skb:kfree_skb`): the `drop` object of `drop` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// The kernel's reason.
    pub reason: DropReason,
    pub direction: Direction,
    pub tcp_flags: TcpFlags,
    /// TCP payload bytes (0: a bare SYN, ACK, FIN or RST).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub len: u32,
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// Reads a value written as its name (a TCP state, an errno, a reset reason). A visitor, so
/// that reading a trace borrows the name instead of allocating it.
fn by_name<'de, D: Deserializer<'de>, T>(
    d: D,
    what: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, D::Error> {
    struct Name<F>(&'static str, F);
    impl<T, F: FnOnce(&str) -> Option<T>> serde::de::Visitor<'_> for Name<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a {} name", self.0)
        }
        fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<T, E> {
            (self.1)(name).ok_or_else(|| E::custom(format!("unknown {} {name:?}", self.0)))
        }
    }
    d.deserialize_str(Name(what, parse))
}

/// What decoding needs to know about the kernel that produced the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelFacts {
    pub hz: u32,
    /// `enum sk_rst_reason` value → name.
    #[serde(default)]
    pub reset_reasons: BTreeMap<u32, String>,
    /// `enum skb_drop_reason` value → name (kernels with drop reasons, 5.17+).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drop_reasons: BTreeMap<u32, String>,
}

impl KernelFacts {
    fn jiffies_to_ms(&self, jiffies: u32) -> u64 {
        u64::from(jiffies) * 1000 / u64::from(self.hz.max(1))
    }

    /// Decodes one ring-buffer record into its events: one, except for a probe record that
    /// also stands for earlier probes whose own timer runs went unseen (`probe_first`),
    /// which becomes one event per probe, in order.
    pub fn decode_into(&self, raw: &RawEvent, out: &mut impl FnMut(Event)) {
        let Some(event) = self.decode(raw) else {
            return;
        };
        if let Some(last) = event.probe
            && raw.probe_first != 0
        {
            for number in raw.probe_first..last {
                let mut earlier = event.clone();
                earlier.probe = Some(number);
                out(earlier);
            }
        }
        out(event);
    }

    /// Decodes one ring-buffer record (see [`Self::decode_into`] for probe ranges).
    pub fn decode(&self, raw: &RawEvent) -> Option<Event> {
        self.decode_as(raw, |e| e)
    }

    /// [`Self::decode`], boxed: the live path's events wait boxed in the reorder window,
    /// and one built in its box is not copied (376 bytes) on its way there.
    pub fn decode_boxed(&self, raw: &RawEvent) -> Option<Box<Event>> {
        self.decode_as(raw, Box::new)
    }

    /// The decoded event, as `make` holds it (inlined into each caller, so that the event
    /// is built where `make` puts it).
    #[inline(always)]
    fn decode_as<T>(&self, raw: &RawEvent, make: impl FnOnce(Event) -> T) -> Option<T> {
        let kind = match EventKind::from_code(raw.kind) {
            Some(EventKind::Sweep) | None => return None,
            Some(kind) => kind,
        };
        let family = u8::try_from(raw.family)
            .ok()
            .and_then(Family::from_code)
            .unwrap_or(Family::Ipv4);
        let (mut laddr, mut raddr) = match family {
            Family::Ipv6 => (
                IpAddr::V6(Ipv6Addr::from(raw.saddr)),
                IpAddr::V6(Ipv6Addr::from(raw.daddr)),
            ),
            Family::Ipv4 => {
                let v4 = |b: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
                (v4(&raw.saddr), v4(&raw.daddr))
            }
        };
        let (mut lport, mut rport) = (raw.sport, raw.dport);
        let drop = (kind == EventKind::Drop).then(|| {
            // The segment's own ends (source → destination): oriented as the socket sees
            // them, local first.
            let direction = if raw.flags & flags::OUTGOING != 0 {
                Direction::Out
            } else {
                std::mem::swap(&mut laddr, &mut raddr);
                std::mem::swap(&mut lport, &mut rport);
                Direction::In
            };
            Dropped {
                reason: match self.drop_reasons.get(&raw.reason) {
                    Some(name) => DropReason::new(name),
                    None => DropReason(format!("REASON_{}", raw.reason)),
                },
                direction,
                tcp_flags: TcpFlags(raw.tcp_flags),
                len: raw.segs,
            }
        });
        let socket = match (raw.cookie, kind) {
            (0, EventKind::ResetSent | EventKind::Drop) => None,
            (0, _) => {
                let mut h = DefaultHasher::new();
                (
                    raw.netns, raw.family, raw.saddr, raw.daddr, raw.sport, raw.dport,
                )
                    .hash(&mut h);
                Some(SocketId(h.finish() | SocketId::TUPLE_KEYED))
            }
            (cookie, _) => Some(SocketId(cookie)),
        };
        let process = (raw.owner_tgid != 0).then(|| Owner {
            pid: raw.owner_tgid,
            comm: Comm::from_kernel(&raw.owner_comm),
            cgroup_id: raw.cgroup_id,
            container: None,
            source: if raw.flags & flags::OWNER_FROM_LISTENER != 0 {
                OwnerSource::Listener
            } else {
                OwnerSource::Owner
            },
        });
        let state = TcpState(raw.state);
        let idle =
            |stamp: u32| (stamp != 0).then(|| self.jiffies_to_ms(raw.jiffies.wrapping_sub(stamp)));
        let counters = (raw.flags & flags::COUNTERS != 0).then(|| SocketCounters {
            retransmits: raw.retransmits,
            probes_out: raw.probes_out,
            backoff: raw.backoff,
            rto_us: self.jiffies_to_ms(raw.rto_jiffies) * 1000,
            total_retrans: raw.total_retrans,
            packets_out: raw.packets_out,
            ca_state: CaState::from_code(raw.ca_state).unwrap_or(CaState::Unknown),
            keepalive: raw.flags & flags::KEEPALIVE_ON != 0,
            keepalive_idle_ms: self.jiffies_to_ms(raw.keepalive_time_jiffies),
            keepalive_intvl_ms: self.jiffies_to_ms(raw.keepalive_intvl_jiffies),
            keepalive_probes: raw.keepalive_probes,
            user_timeout_ms: raw.user_timeout_ms,
            retries1: raw.retries1,
            retries2: raw.retries2,
            syn_retries: raw.syn_retries,
            orphan_retries: raw.orphan_retries,
            idle_rx_ms: idle(raw.rcv_tstamp),
            idle_tx_ms: idle(raw.lsndtime),
            retrans_elapsed_ms: (raw.retrans_elapsed_ms != 0)
                .then_some(u64::from(raw.retrans_elapsed_ms)),
            orphan: raw.flags & flags::ORPHAN != 0,
            error: (raw.sk_err > 0).then_some(Errno(raw.sk_err)),
            soft_error: (raw.sk_err_soft > 0).then_some(Errno(raw.sk_err_soft)),
        });
        let is_retransmit = matches!(kind, EventKind::Retransmit | EventKind::RetransmitFailed);
        Some(make(Event {
            ts_ns: raw.ts_ns,
            kind,
            socket,
            conn: Connection {
                family,
                laddr,
                lport,
                raddr,
                rport,
                netns: raw.netns,
            },
            state,
            old_state: (kind == EventKind::StateChange).then_some(TcpState(raw.old_state)),
            process,
            class: is_retransmit
                .then(|| RetransmitClass::from_code(raw.class).unwrap_or(RetransmitClass::Unknown)),
            segs: is_retransmit.then_some(raw.segs),
            timer: TimerKind::from_code(raw.timer),
            reason: (kind == EventKind::ResetSent && raw.reason != u32::MAX).then(|| {
                match self.reset_reasons.get(&raw.reason) {
                    Some(name) => ResetReason::from_name(name),
                    None => ResetReason::Other(format!("REASON_{}", raw.reason)),
                }
            }),
            err: match kind {
                EventKind::RetransmitFailed | EventKind::ErrorReport => Some(raw.err),
                _ => None,
            },
            probe: matches!(kind, EventKind::KeepaliveProbe | EventKind::ZeroWindowProbe)
                .then_some(raw.probes_out),
            sock: counters,
            flags: Vec::new(),
            raw: None,
            drop,
        }))
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::{class, kind};

    use super::*;

    fn raw(kind: u8) -> RawEvent {
        // SAFETY: RawEvent is plain integers and arrays.
        let mut r: RawEvent = unsafe { std::mem::zeroed() };
        r.kind = kind;
        r.ts_ns = 5_000_000_000;
        r.cookie = 42;
        r.family = Family::Ipv4 as u16;
        r.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        r.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        r.sport = 40000;
        r.dport = 80;
        r.netns = 4026531993;
        r.state = TcpState::ESTABLISHED.0;
        r.retries2 = 15;
        r.flags = flags::COUNTERS;
        r.reason = u32::MAX;
        r
    }

    fn facts() -> KernelFacts {
        KernelFacts {
            hz: 250,
            reset_reasons: [(1, "NO_SOCKET".to_owned())].into(),
            drop_reasons: [(33, "NETFILTER_DROP".to_owned())].into(),
        }
    }

    #[test]
    fn decodes_a_retransmit_with_units() {
        let mut r = raw(kind::RETRANSMIT);
        r.class = class::RTO;
        r.segs = 3;
        r.rto_jiffies = 100; // 400 ms at HZ=250
        r.retransmits = 2;
        r.owner_tgid = 77;
        r.owner_comm[..4].copy_from_slice(b"curl");
        r.flags |= flags::OWNER_KNOWN;
        let e = facts().decode(&r).unwrap();
        assert_eq!(e.kind, EventKind::Retransmit);
        assert_eq!(e.class, Some(RetransmitClass::Rto));
        assert_eq!(e.segs, Some(3));
        assert_eq!(e.conn.to_string(), "10.0.0.1:40000 → 10.0.0.2:80");
        let c = e.sock.as_ref().unwrap();
        assert_eq!(c.rto_us, 400_000);
        assert_eq!(c.retransmits, 2);
        assert_eq!(e.process.as_ref().unwrap().comm, "curl");
    }

    #[test]
    fn reset_for_no_socket_has_no_socket_id_and_a_named_reason() {
        let mut r = raw(kind::RESET_SENT);
        r.cookie = 0;
        r.flags = 0;
        r.reason = 1;
        r.state = TcpState::CLOSE.0;
        let e = facts().decode(&r).unwrap();
        assert_eq!(e.socket, None);
        assert_eq!(e.reason, Some(ResetReason::NoSocket));
    }

    #[test]
    fn drops_are_oriented_as_their_socket_sees_them() {
        let mut r = raw(kind::DROP);
        r.cookie = 0;
        r.flags = 0;
        r.reason = 33;
        r.tcp_flags = TcpFlags::SYN | TcpFlags::ACK;
        // An incoming SYN-ACK from 10.0.0.1:40000 to 10.0.0.2:80: ours is the destination.
        let e = facts().decode(&r).unwrap();
        assert_eq!(e.socket, None);
        assert_eq!(e.conn.to_string(), "10.0.0.2:80 → 10.0.0.1:40000");
        let d = e.drop.as_ref().unwrap();
        assert_eq!(d.direction, Direction::In);
        assert_eq!(d.reason.name(), "NETFILTER_DROP");
        assert_eq!(d.tcp_flags.to_string(), "SYN|ACK");
        assert!(d.tcp_flags.is_syn_ack() && !d.tcp_flags.is_syn());
        // An outgoing SYN of a socket the kernel named, with a reason BTF did not name.
        r.cookie = 42;
        r.flags = flags::SOCKET_NAMED | flags::OUTGOING;
        r.tcp_flags = TcpFlags::SYN;
        r.reason = 99;
        let e = facts().decode(&r).unwrap();
        assert_eq!(e.socket, Some(SocketId(42)));
        assert_eq!(e.conn.to_string(), "10.0.0.1:40000 → 10.0.0.2:80");
        let d = e.drop.as_ref().unwrap();
        assert_eq!(
            (d.direction, d.reason.name()),
            (Direction::Out, "REASON_99")
        );
        assert_eq!(TcpFlags::from_name("SYN"), Some(TcpFlags(TcpFlags::SYN)));
        assert_eq!(TcpFlags::from_name("BOGUS"), None);
    }

    #[test]
    fn a_probe_record_with_unseen_earlier_probes_becomes_one_event_each() {
        let mut r = raw(kind::KEEPALIVE_PROBE);
        r.flags = flags::COUNTERS;
        r.probes_out = 3;
        r.probe_first = 2;
        let mut numbers = Vec::new();
        facts().decode_into(&r, &mut |e| numbers.push(e.probe));
        assert_eq!(numbers, [Some(2), Some(3)]);
        r.probe_first = 0;
        numbers.clear();
        facts().decode_into(&r, &mut |e| numbers.push(e.probe));
        assert_eq!(numbers, [Some(3)]);
    }

    #[test]
    fn json_round_trip_is_lossless() {
        let mut r = raw(kind::STATE_CHANGE);
        r.old_state = TcpState::ESTABLISHED.0;
        r.state = TcpState::CLOSE.0;
        r.sk_err = 110;
        r.family = Family::Ipv6 as u16;
        r.saddr = Ipv6Addr::LOCALHOST.octets();
        let e = facts().decode(&r).unwrap();
        assert_eq!(e.errno(), Some(Errno::ETIMEDOUT));
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""state":"CLOSE""#), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn an_event_with_every_field_reads_back_the_same() {
        let e = Event {
            socket: Some(SocketId(7)),
            conn: Connection {
                family: Family::Ipv6,
                laddr: "fd00::1".parse().unwrap(),
                lport: 1,
                raddr: "fd00::2".parse().unwrap(),
                rport: 2,
                netns: 3,
            },
            old_state: Some(TcpState::SYN_SENT),
            process: Some(Owner {
                pid: 4,
                comm: "app".into(),
                cgroup_id: 5,
                source: OwnerSource::Listener,
                container: Some(Arc::new(Identity {
                    unit: Some("app.service".into()),
                    ..Identity::bare("/system.slice/app.service")
                })),
            }),
            class: Some(RetransmitClass::Tlp),
            segs: Some(6),
            timer: Some(TimerKind::Write),
            reason: Some(ResetReason::Other("TCP_SYN_ACK".into())),
            err: Some(-16),
            probe: Some(8),
            sock: Some(SocketCounters {
                retransmits: 1,
                ca_state: CaState::Loss,
                error: Some(Errno::ETIMEDOUT),
                soft_error: Some(Errno(250)),
                ..SocketCounters::default()
            }),
            flags: vec!["half_open_risk".into()],
            raw: Some(Tuple {
                laddr: "::".parse().unwrap(),
                lport: 1,
                raddr: "fd00::2".parse().unwrap(),
                rport: 0,
            }),
            drop: Some(Dropped {
                reason: DropReason::new("NETFILTER_DROP"),
                direction: Direction::Out,
                tcp_flags: TcpFlags(TcpFlags::SYN | TcpFlags::ACK),
                len: 10,
            }),
            ..Event::new(9, EventKind::Sweep, TcpState(200))
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""state":"UNKNOWN_200""#), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
    }

    #[test]
    fn comms_inline_and_long_read_back_the_same() {
        for name in [
            "",
            "curl",
            "fifteen_chars__",
            "é".repeat(11).as_str(),
            &"x".repeat(40),
        ] {
            let comm = Comm::new(name);
            assert_eq!(comm, name);
            assert_eq!(comm.to_string(), name);
            let json = serde_json::to_string(&comm).unwrap();
            assert_eq!(json, serde_json::to_string(name).unwrap());
            assert_eq!(serde_json::from_str::<Comm>(&json).unwrap(), comm);
        }
        assert_eq!(Comm::from_kernel(b"curl\0\0garbage"), "curl");
        assert_eq!(Comm::from_kernel(b"no_nul_at_all!!!"), "no_nul_at_all!!!");
        assert_eq!(Comm::from_kernel(b"bad\xff\xfe"), "bad\u{fffd}\u{fffd}");
        // A name cut in the middle of a UTF-8 sequence by the kernel's 15 bytes.
        assert_eq!(Comm::from_kernel(&"é".repeat(8).as_bytes()[..15]).len(), 17);
        assert_eq!(format!("{:>6}|", Comm::new("ab")), "    ab|");
    }

    #[test]
    fn an_unknown_port_reads_as_a_star() {
        let v4 = Endpoint {
            addr: IpAddr::from([10, 0, 0, 1]),
            port: 0,
        };
        assert_eq!(v4.to_string(), "10.0.0.1:*");
        let v6 = Endpoint {
            addr: Ipv6Addr::LOCALHOST.into(),
            port: 0,
        };
        assert_eq!(format!("{v6:<10}|"), "[::1]:*   |");
        assert_eq!(Endpoint { port: 80, ..v6 }.to_string(), "[::1]:80");
    }

    #[test]
    fn endpoints_read_as_socket_addresses_do() {
        use std::net::SocketAddr;
        let addrs: [IpAddr; 6] = [
            Ipv4Addr::new(0, 0, 0, 0).into(),
            Ipv4Addr::new(255, 10, 1, 100).into(),
            Ipv4Addr::new(10, 99, 0, 2).into(),
            Ipv6Addr::UNSPECIFIED.into(),
            "fd00::1:2".parse().unwrap(),
            "::ffff:10.0.0.2".parse().unwrap(),
        ];
        for addr in addrs {
            for port in [1, 80, 9999, 65535] {
                let e = Endpoint { addr, port };
                let reference = SocketAddr::new(addr, port).to_string();
                assert_eq!(e.to_string(), reference);
                let mut text = String::new();
                e.write_text(&mut text).unwrap();
                assert_eq!(text, reference);
                assert_eq!(format!("{e:>50}|"), format!("{reference:>50}|"));
            }
        }
        let widest = Endpoint {
            addr: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
            port: 65535,
        };
        assert_eq!(
            widest.to_string(),
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
        );
    }

    #[test]
    fn errno_names_round_trip() {
        assert_eq!(Errno(110).to_string(), "ETIMEDOUT");
        assert_eq!(Errno(104).to_string(), "ECONNRESET");
        assert_eq!(Errno(250).to_string(), "E250");
        assert_eq!(Errno(-5).to_string(), "E-5");
        assert_eq!(Errno(300).to_string(), "E300");
        assert_eq!(Errno(111).name(), Some("ECONNREFUSED"));
        for name in ["ECONNREFUSED", "E2BIG", "E250"] {
            assert_eq!(Errno::from_name(name).unwrap().to_string(), name);
        }
        assert_eq!(Errno::from_name("EBOGUS"), None);
    }

    #[test]
    fn reset_reasons_keep_names_they_do_not_know() {
        assert_eq!(
            ResetReason::from_name("TCP_KEEPALIVE_TIMEOUT"),
            ResetReason::TcpKeepaliveTimeout
        );
        let other = ResetReason::from_name("TCP_RFC7323_PAWS");
        assert_eq!(other.name(), "TCP_RFC7323_PAWS");
        let json = serde_json::to_string(&other).unwrap();
        assert_eq!(serde_json::from_str::<ResetReason>(&json).unwrap(), other);
    }
}
