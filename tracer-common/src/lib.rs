//! The ABI between the kernel programs (`tracer-ebpf`) and the loader (`tracer`).
//!
//! Everything here is `#[repr(C)]` plain data with explicit padding: the kernel writes
//! [`RawEvent`]s into a ring buffer and the loader reads the same bytes back. The `u8` codes
//! are `#[repr(u8)]` enums defined once here with their stable names ([`EventKind`],
//! [`RetransmitClass`], [`TimerKind`], [`TcpState`], [`CaState`], [`Family`]); the constant
//! modules ([`kind`], [`class`], [`timer`]) name the same codes for the kernel programs.
//! Numbering is part of the ABI: append, never renumber.
//!
//! Kernel struct layouts differ between kernels and Rust emits no CO-RE relocations, so the
//! programs never hard-code an offset: the loader resolves every member they read from the
//! running kernel's BTF and hands them over in [`Config`] (a read-only global).
#![no_std]

pub const TASK_COMM_LEN: usize = 16;

/// The `EVENTS` ring buffer's size unless the user asks for another (`--ring-buffer`).
pub const EVENTS_RING_BYTES: u32 = 4 << 20;

/// Declares a `#[repr(u8)]` enum of ABI codes and the stable name of each value (in traces,
/// JSON and text): the one place where both are written. Generates `ALL`, `name`,
/// `from_code` and `from_name`, and, for the loader (`user`), serde by name.
macro_rules! codes {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $code, )+
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value of an ABI code; None for a code this build does not know.
            pub const fn from_code(code: u8) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The value of a stable name.
            pub fn from_name(name: &str) -> Option<$name> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.pad(self.name())
            }
        }

        #[cfg(feature = "user")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        #[cfg(feature = "user")]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Name;
                impl serde::de::Visitor<'_> for Name {
                    type Value = $name;
                    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " name"))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_name(v).ok_or_else(|| E::unknown_variant(v, &[$($text),+]))
                    }
                }
                d.deserialize_str(Name)
            }
        }
    };
}

codes! {
    /// What a [`RawEvent`] reports ([`RawEvent::kind`]).
    pub enum EventKind {
        /// `sock:inet_sock_set_state`: `old_state` → `state`.
        StateChange = 1 => "state_change",
        /// `tcp:tcp_retransmit_skb` (err == 0) or `tcp:tcp_retransmit_synack`; see
        /// [`RetransmitClass`].
        Retransmit = 2 => "retransmit",
        /// `tcp:tcp_retransmit_skb` with err < 0 (kernels 6.17+ report failed attempts too).
        RetransmitFailed = 3 => "retransmit_failed",
        /// `tcp:tcp_send_reset`; cookie 0 when the segment matched no socket.
        ResetSent = 4 => "reset_sent",
        /// `tcp:tcp_receive_reset`.
        ResetReceived = 5 => "reset_received",
        /// `icsk_probes_out` rose inside `tcp_keepalive_timer`: one keepalive probe sent.
        KeepaliveProbe = 6 => "keepalive_probe",
        /// `icsk_probes_out` rose inside `tcp_write_timer` with a zero-window probe pending.
        ZeroWindowProbe = 7 => "zero_window_probe",
        /// `sock:inet_sk_error_report`.
        ErrorReport = 8 => "error_report",
        /// `tcp:tcp_destroy_sock`: the kernel releases the socket (for a socket the
        /// application still holds, that is at its close()).
        Destroy = 9 => "destroy",
        /// Never written by the kernel: the loader's sweep found this socket already open.
        Sweep = 10 => "sweep",
        /// `skb:kfree_skb`: this host dropped a TCP segment, with the kernel's
        /// `enum skb_drop_reason` in [`RawEvent::reason`]. The addresses and ports are the
        /// segment's own (source → destination); the cookie is the socket the kernel named
        /// with the drop (0: none, userspace matches the segment's tuple).
        Drop = 11 => "drop",
    }
}

codes! {
    /// Why the kernel retransmitted ([`RawEvent::class`]).
    pub enum RetransmitClass {
        Unknown = 0 => "unknown",
        /// Our SYN again (socket in SYN_SENT).
        Syn = 1 => "syn",
        /// The server's SYN-ACK again (request socket).
        SynAck = 2 => "syn_ack",
        /// Retransmission timeout: inside `tcp_write_timer` with ICSK_TIME_RETRANS pending.
        Rto = 3 => "rto",
        /// Tail loss probe: inside `tcp_write_timer` with ICSK_TIME_LOSS_PROBE pending.
        Tlp = 4 => "tlp",
        /// Fast / SACK retransmit: ACK-clocked while in Recovery or Disorder.
        Fast = 5 => "fast",
        /// ACK-clocked or deferred retransmit while recovering from an RTO (ca_state Loss).
        LossRecovery = 6 => "loss_recovery",
        /// RACK reordering timer (ICSK_TIME_REO_TIMEOUT) marked segments lost.
        RackTimeout = 7 => "rack_timeout",
    }
}

codes! {
    /// The kernel timer running on this CPU when the event fired ([`RawEvent::timer`];
    /// [`timer::NONE`] when none was).
    pub enum TimerKind {
        /// `tcp_write_timer`: RTO, TLP, RACK reorder timeout or zero-window probe; the
        /// pending event is in [`RawEvent::timer_pending`].
        Write = 1 => "write",
        /// `tcp_keepalive_timer` (on `icsk->icsk_keepalive_timer`, or `sk->sk_timer` on
        /// kernels that have not moved it there).
        Keepalive = 2 => "keepalive",
    }
}

codes! {
    /// TCP states (include/net/tcp_states.h), by the kernel's names ([`RawEvent::state`]).
    pub enum TcpState {
        Established = 1 => "ESTABLISHED",
        SynSent = 2 => "SYN_SENT",
        SynRecv = 3 => "SYN_RECV",
        FinWait1 = 4 => "FIN_WAIT1",
        FinWait2 = 5 => "FIN_WAIT2",
        TimeWait = 6 => "TIME_WAIT",
        Close = 7 => "CLOSE",
        CloseWait = 8 => "CLOSE_WAIT",
        LastAck = 9 => "LAST_ACK",
        Listen = 10 => "LISTEN",
        Closing = 11 => "CLOSING",
        NewSynRecv = 12 => "NEW_SYN_RECV",
        BoundInactive = 13 => "BOUND_INACTIVE",
    }
}

codes! {
    /// Congestion-avoidance state, `icsk_ca_state` (include/net/tcp.h, enum tcp_ca_state)
    /// ([`RawEvent::ca_state`]).
    #[derive(Default)]
    pub enum CaState {
        #[default]
        Open = 0 => "open",
        Disorder = 1 => "disorder",
        Cwr = 2 => "cwr",
        Recovery = 3 => "recovery",
        Loss = 4 => "loss",
        /// Never written by the kernel: what the loader reads any other code as.
        Unknown = 255 => "unknown",
    }
}

codes! {
    /// Address family: `AF_INET` / `AF_INET6` ([`RawEvent::family`], a `u16` there).
    pub enum Family {
        Ipv4 = 2 => "ipv4",
        Ipv6 = 10 => "ipv6",
    }
}

/// [`EventKind`] codes, for the kernel programs.
pub mod kind {
    use super::EventKind;
    pub const STATE_CHANGE: u8 = EventKind::StateChange as u8;
    pub const RETRANSMIT: u8 = EventKind::Retransmit as u8;
    pub const RETRANSMIT_FAILED: u8 = EventKind::RetransmitFailed as u8;
    pub const RESET_SENT: u8 = EventKind::ResetSent as u8;
    pub const RESET_RECEIVED: u8 = EventKind::ResetReceived as u8;
    pub const KEEPALIVE_PROBE: u8 = EventKind::KeepaliveProbe as u8;
    pub const ZERO_WINDOW_PROBE: u8 = EventKind::ZeroWindowProbe as u8;
    pub const ERROR_REPORT: u8 = EventKind::ErrorReport as u8;
    pub const DESTROY: u8 = EventKind::Destroy as u8;
    pub const DROP: u8 = EventKind::Drop as u8;
}

/// [`RetransmitClass`] codes, for the kernel programs.
pub mod class {
    use super::RetransmitClass;
    pub const UNKNOWN: u8 = RetransmitClass::Unknown as u8;
    pub const SYN: u8 = RetransmitClass::Syn as u8;
    pub const SYN_ACK: u8 = RetransmitClass::SynAck as u8;
    pub const RTO: u8 = RetransmitClass::Rto as u8;
    pub const TLP: u8 = RetransmitClass::Tlp as u8;
    pub const FAST: u8 = RetransmitClass::Fast as u8;
    pub const LOSS_RECOVERY: u8 = RetransmitClass::LossRecovery as u8;
    pub const RACK_TIMEOUT: u8 = RetransmitClass::RackTimeout as u8;
}

/// [`TimerKind`] codes, for the kernel programs.
pub mod timer {
    use super::TimerKind;
    /// No TCP timer was running.
    pub const NONE: u8 = 0;
    pub const WRITE: u8 = TimerKind::Write as u8;
    pub const KEEPALIVE: u8 = TimerKind::Keepalive as u8;
}

/// `icsk_pending` values (include/net/inet_connection_sock.h; stable since 4.x).
pub mod pending {
    pub const RETRANS: u8 = 1;
    pub const PROBE0: u8 = 3;
    pub const REO_TIMEOUT: u8 = 4;
    pub const LOSS_PROBE: u8 = 5;
}

/// Bits of [`RawEvent::flags`].
pub mod flags {
    /// SOCK_DEAD: the application has closed (or never accepted) the socket.
    pub const ORPHAN: u8 = 1;
    /// SOCK_KEEPOPEN: SO_KEEPALIVE is on.
    pub const KEEPALIVE_ON: u8 = 2;
    /// The owner fields were learned in the owner's own context.
    pub const OWNER_KNOWN: u8 = 4;
    /// The owner is the process that listens on the socket's local port (accepted
    /// connection not yet used by its process).
    pub const OWNER_FROM_LISTENER: u8 = 8;
    /// The socket counters and budgets below `flags` were read (full sockets only).
    pub const COUNTERS: u8 = 16;
    /// Drops: the cookie is the socket the kernel attached to the dropped segment
    /// (`skb->sk`, or the tracepoint's `rx_sk`).
    pub const SOCKET_NAMED: u8 = 32;
    /// Drops: the segment was leaving through that socket (its source port is the socket's
    /// local port); else it was arriving.
    pub const OUTGOING: u8 = 64;
}

/// Bits of [`Config::features`]: what this kernel allows tracing programs to do. The loader
/// probes each one before loading; the programs branch on these constants, and the verifier
/// removes the branch this kernel cannot take (so a helper it does not allow is never seen).
pub mod feature {
    /// `bpf_get_socket_cookie()` on a BTF socket pointer (5.12+). Without it the socket
    /// identity is the stored `skc_cookie` when one was generated (sock_diag, SO_COOKIE), else
    /// a synthetic id the programs assign at first sight (see [`super::SYNTHETIC_COOKIE_BIT`]).
    pub const SOCKET_COOKIE: u32 = 1;
}

/// Synthetic socket ids (kernels without `bpf_get_socket_cookie` in tracing programs) have
/// this bit set, and the CPU and a per-CPU counter below it: never equal to a kernel cookie
/// (which counts up from 1) nor to userspace's tuple-keyed ids (bit 63).
pub const SYNTHETIC_COOKIE_BIT: u64 = 1 << 62;

/// Hooks whose program has a nested-context twin ([`Config`] has no switch for it: the twin
/// always loads). BPF skips a tracing program that is hit again on a CPU where it is already
/// running (a softirq interrupting it in process context) and counts the skip in that
/// program's `recursion_misses`; the twin, a second program on the same tracepoint, handles
/// exactly those nested hits, counting them in `RESCUED[hook]`.
pub mod hook {
    pub const SET_STATE: u32 = 0;
    pub const RETRANSMIT: u32 = 1;
    pub const SYNACK: u32 = 2;
    pub const SEND_RESET: u32 = 3;
    pub const RECV_RESET: u32 = 4;
    pub const ERROR_REPORT: u32 = 5;
    pub const DESTROY: u32 = 6;
    pub const DROP: u32 = 7;
    pub const COUNT: u32 = 8;
}

/// Bits of [`Config::filters`]: which in-kernel filters are active.
pub mod filter {
    pub const NETNS: u32 = 1;
    pub const PORT: u32 = 2;
    pub const ADDR: u32 = 4;
    pub const PID: u32 = 8;
    pub const COMM: u32 = 16;
    /// The owner filter (`--container`, `--pod`, `--cgroup`): the owner's cgroup id is
    /// looked up in `FILTER_CGROUPS`, where userspace writes its decision per cgroup.
    pub const CGROUP: u32 = 32;
}

/// Entries of the `FILTER_CGROUPS` map (an LRU: cgroup id → 1 wanted, 0 not; a cgroup it
/// does not hold is undecided, and its events go to userspace, which decides).
pub const FILTER_CGROUPS_ENTRIES: u32 = 16384;

/// Indices of the per-CPU `STATS` counters.
pub mod stat {
    /// Events written to the ring buffer.
    pub const EMITTED: u32 = 0;
    /// Events lost because the ring buffer was full.
    pub const LOST: u32 = 1;
    /// Events the in-kernel filters dropped on purpose.
    pub const FILTERED: u32 = 2;
    /// TCP timer callbacks bracketed (timer_expire_entry matched one of TCP's timers).
    pub const TIMER_BRACKETS: u32 = 3;
    /// Brackets in which icsk_probes_out rose (keepalive or zero-window probes sent).
    pub const PROBES_SEEN: u32 = 4;
    /// Of those, probes found at the socket's next timer run because the run that sent them
    /// went unseen (reported late, never lost).
    pub const PROBES_LATE: u32 = 5;
    /// Events a nested-context twin handled because its primary program was already running
    /// on that CPU (see [`super::hook`]); per hook in the `RESCUED` map, summed here.
    pub const RESCUED: u32 = 6;
    pub const COUNT: u32 = 7;
}

/// One event, written by the kernel into the `EVENTS` ring buffer.
///
/// Socket counters are read at the moment of the event. Times in jiffies are raw kernel
/// values: the loader converts them with the running kernel's HZ.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawEvent {
    /// `bpf_ktime_get_boot_ns()`: CLOCK_BOOTTIME in ns.
    pub ts_ns: u64,
    /// `bpf_get_socket_cookie()`: stable for the socket's life, never reused. 0: no socket.
    pub cookie: u64,
    /// cgroup v2 id of the owner (0: unknown).
    pub cgroup_id: u64,
    /// Inode of the socket's network namespace.
    pub netns: u32,
    /// Owning process (tgid; 0: unknown). See [`flags::OWNER_KNOWN`].
    pub owner_tgid: u32,
    pub owner_comm: [u8; TASK_COMM_LEN],
    /// Local and remote address; IPv4 in the first 4 bytes.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Local and remote port, host byte order.
    pub sport: u16,
    pub dport: u16,
    /// [`Family`]: AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// An [`EventKind`] code.
    pub kind: u8,
    /// [`TcpState`] at the event (for a state change: the new state).
    pub state: u8,
    pub old_state: u8,
    /// A [`RetransmitClass`] code (retransmits only).
    pub class: u8,
    /// A [`TimerKind`] code, or [`timer::NONE`].
    pub timer: u8,
    pub timer_pending: u8,
    /// icsk_ca_state: a [`CaState`] code.
    pub ca_state: u8,
    /// icsk_retransmits: consecutive RTOs (or SYN retries) without progress.
    pub retransmits: u8,
    pub probes_out: u8,
    pub backoff: u8,
    pub flags: u8,
    /// Effective give-up budgets (socket option, else the namespace's sysctl).
    pub keepalive_probes: u8,
    pub syn_retries: u8,
    pub retries1: u8,
    pub retries2: u8,
    pub orphan_retries: u8,
    /// Probe events stand for the probes numbered `probe_first..=probes_out` (earlier
    /// probes whose own timer run went unseen are reported with the next one); 0: only
    /// `probes_out`.
    pub probe_first: u8,
    /// Drops: the dropped segment's TCP flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08,
    /// ACK 0x10).
    pub tcp_flags: u8,
    /// sk_err (positive errno), or sk_err_soft when sk_err is 0 — see `err_soft`.
    pub sk_err: i32,
    pub sk_err_soft: i32,
    /// tcp_retransmit_skb's `err`.
    pub err: i32,
    /// Resets sent: `enum sk_rst_reason` value; drops: `enum skb_drop_reason` value (names
    /// come from the kernel's BTF). u32::MAX: not provided.
    pub reason: u32,
    /// Retransmits: segments covered (tcp_skb_pcount: a GSO buffer carries several); drops:
    /// the dropped segment's TCP payload in bytes.
    pub segs: u32,
    pub rto_jiffies: u32,
    pub total_retrans: u32,
    pub packets_out: u32,
    /// Effective keepalive idle time and interval (jiffies).
    pub keepalive_time_jiffies: u32,
    pub keepalive_intvl_jiffies: u32,
    /// TCP_USER_TIMEOUT in ms (0: not set).
    pub user_timeout_ms: u32,
    /// Low 32 bits of jiffies now, and the socket's last-ACK-received and last-send stamps.
    pub jiffies: u32,
    pub rcv_tstamp: u32,
    pub lsndtime: u32,
    /// The task on the CPU when the event fired (often not the owner: softirq, timers).
    pub current_tgid: u32,
    /// ms on the kernel's give-up clock (`retrans_stamp`: set by the streak's first RTO
    /// retransmit, after its tracepoint fired); 0 outside a retransmit streak.
    pub retrans_elapsed_ms: u32,
}

/// Where a kernel struct member lives, from BTF. `size == 0`: the member is absent on this
/// kernel and the programs leave the dependent event field zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldLoc {
    /// Byte offset of the (first byte holding the) member from the start of the outer struct.
    pub offset: u32,
    /// Bytes to read: 1, 2, 4 or 8.
    pub size: u8,
    /// For bitfields: shift right and width after the read; width 0 = whole member.
    pub bit_shift: u8,
    pub bit_width: u8,
    pub _pad: u8,
}

impl FieldLoc {
    pub const ABSENT: Self = Self {
        offset: 0,
        size: 0,
        bit_shift: 0,
        bit_width: 0,
        _pad: 0,
    };
}

/// Everything the programs need to know about the running kernel and the user's filters.
/// Set once at load time (`CONFIG` in `.rodata`, frozen: the verifier sees constants).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    // struct sock_common (also the head of request_sock and inet_timewait_sock)
    pub skc_daddr: FieldLoc,
    pub skc_rcv_saddr: FieldLoc,
    pub skc_dport: FieldLoc,
    pub skc_num: FieldLoc,
    pub skc_family: FieldLoc,
    pub skc_state: FieldLoc,
    pub skc_net: FieldLoc,
    pub skc_v6_daddr: FieldLoc,
    pub skc_v6_rcv_saddr: FieldLoc,
    pub skc_cookie: FieldLoc,
    // struct inet_sock
    pub inet_sport: FieldLoc,
    // struct net
    pub net_inum: FieldLoc,
    pub net_tcp_retries1: FieldLoc,
    pub net_tcp_retries2: FieldLoc,
    pub net_tcp_syn_retries: FieldLoc,
    pub net_tcp_orphan_retries: FieldLoc,
    pub net_tcp_keepalive_time: FieldLoc,
    pub net_tcp_keepalive_intvl: FieldLoc,
    pub net_tcp_keepalive_probes: FieldLoc,
    // struct sock
    pub sk_err: FieldLoc,
    pub sk_err_soft: FieldLoc,
    pub sk_flags: FieldLoc,
    /// Read by no program: the loader leaves it absent.
    pub sk_protocol: FieldLoc,
    /// The keepalive timer: `inet_connection_sock.icsk_keepalive_timer` where the kernel
    /// has it (6.18- stable backports: Debian's 6.1.19x, 6.12.11x), else `sock.sk_timer`.
    pub keepalive_timer: FieldLoc,
    // struct inet_connection_sock
    pub icsk_retransmit_timer: FieldLoc,
    pub icsk_rto: FieldLoc,
    pub icsk_ca_state: FieldLoc,
    pub icsk_retransmits: FieldLoc,
    pub icsk_pending: FieldLoc,
    pub icsk_backoff: FieldLoc,
    pub icsk_probes_out: FieldLoc,
    pub icsk_user_timeout: FieldLoc,
    pub icsk_syn_retries: FieldLoc,
    // struct tcp_sock
    pub tp_total_retrans: FieldLoc,
    pub tp_packets_out: FieldLoc,
    pub tp_keepalive_time: FieldLoc,
    pub tp_keepalive_intvl: FieldLoc,
    pub tp_keepalive_probes: FieldLoc,
    pub tp_rcv_tstamp: FieldLoc,
    pub tp_lsndtime: FieldLoc,
    /// `retrans_stamp` and the clock it is compared with (`tcp_mstamp`, in µs; the stamp
    /// is in ms, or in µs when the `tcp_usec_ts` bit is set, 6.7+).
    pub tp_retrans_stamp: FieldLoc,
    pub tp_mstamp: FieldLoc,
    pub tp_usec_ts: FieldLoc,
    // struct sk_buff, struct net_device, struct timer_list
    pub skb_head: FieldLoc,
    pub skb_network_header: FieldLoc,
    pub skb_transport_header: FieldLoc,
    pub skb_dev: FieldLoc,
    /// `skb->sk` and `skb->protocol` (drops).
    pub skb_sk: FieldLoc,
    pub skb_protocol: FieldLoc,
    /// `skb->cb` + `struct tcp_skb_cb.tcp_gso_segs`.
    pub skb_tcp_gso_segs: FieldLoc,
    pub dev_nd_net: FieldLoc,
    pub timer_function: FieldLoc,
    /// [`feature`] bits.
    pub features: u32,
    /// Bit numbers in `sk_flags` (enum sock_flags).
    pub sock_flag_dead: u32,
    pub sock_flag_keepopen: u32,
    /// `SKB_DROP_REASON_NO_SOCKET` where a reset traced by `tcp_send_reset` answers every
    /// such drop (6.10+: resets for segments that matched no socket are traced, with their
    /// reason); else `u32::MAX`, and such drops are the only trace of the refusal.
    pub drop_no_socket_answered: u32,
    /// [`filter`] bits.
    pub filters: u32,
    /// Wake the reader only once this many bytes wait in the ring buffer (the reader also
    /// drains it on a short timer): a wakeup per event costs more than the event itself.
    pub wakeup_bytes: u32,
    pub filter_comm: [u8; TASK_COMM_LEN],
}

/// Indices of the `TIMER_CALLBACKS` map's value: kernel addresses of TCP's timer callbacks,
/// learned by the programs from the first TCP socket they see (its timers' `function`), or
/// written by the loader from /proc/kallsyms when that is readable (0: not known yet).
pub mod timer_callback {
    pub const KEEPALIVE: usize = 0;
    pub const WRITE: usize = 1;
    pub const COUNT: usize = 2;
}

/// What the kernel remembers about a socket's owner (`OWNERS` map, keyed by cookie).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Owner {
    pub tgid: u32,
    pub flags: u32,
    pub cgroup_id: u64,
    pub comm: [u8; TASK_COMM_LEN],
}

/// Key of the `LISTENERS` map: a listening port in one network namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenKey {
    pub netns: u32,
    pub port: u16,
    pub _pad: u16,
}

/// Per-CPU record of the TCP timer callback running now (timer_expire_entry → _exit).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TimerBracket {
    /// The socket whose timer runs (0: none).
    pub sk: u64,
    /// When the callback started (CLOCK_BOOTTIME ns): the time of probes found late.
    pub ts_ns: u64,
    pub timer: u8,
    pub pending: u8,
    /// icsk_probes_out when the callback started.
    pub probes_out: u8,
    /// The first of the probes sent by earlier runs of this timer that went unseen (they are
    /// reported with this run); 0: none.
    pub late_from: u8,
    pub _pad: [u8; 4],
}

// The ring-buffer record must keep its size and 8-byte alignment on both sides.
const _: () = assert!(core::mem::size_of::<RawEvent>() == 168);
const _: () = assert!(core::mem::size_of::<RawEvent>().is_multiple_of(8));
const _: () = assert!(core::mem::size_of::<FieldLoc>() == 8);

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are repr(C) plain integers and arrays with explicit padding.
    unsafe impl aya::Pod for super::RawEvent {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::Owner {}
    unsafe impl aya::Pod for super::ListenKey {}
    unsafe impl aya::Pod for super::TimerBracket {}
}
