//! The ring buffer, the in-kernel filters and the one path every event leaves by.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::generated::bpf_ktime_get_boot_ns,
    macros::map,
    maps::{HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
};
use tracer_common::{FILTER_CGROUPS_ENTRIES, Owner, RawEvent, filter, stat};

use crate::{
    access::{Access, SockPtr, TcpSockPtr, config, zero_words},
    owner::{current_tgid, owner_of},
    programs::timer,
    socket::{AF_INET6, SockId, fill_counters},
};

/// Events to userspace. The loader may resize it (`--ring-buffer-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(tracer_common::EVENTS_RING_BYTES, 0);

/// Per-CPU counters indexed by [`stat`].
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

// Filter sets, filled by the loader when the matching `filter` bit is on.
#[map]
static FILTER_NETNS: HashMap<u32, u8> = HashMap::with_max_entries(64, 0);
#[map]
static FILTER_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(64, 0);
#[map]
static FILTER_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(64, 0);
#[map]
static FILTER_ADDR4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(64, 0);
#[map]
static FILTER_ADDR6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(64, 0);
/// The owner filter's decision per owner cgroup id (1 wanted, 0 not), written by userspace
/// at start and as it meets new cgroups; a cgroup it does not hold is undecided.
#[map]
static FILTER_CGROUPS: LruHashMap<u64, u8> =
    LruHashMap::with_max_entries(FILTER_CGROUPS_ENTRIES, 0);

#[inline(always)]
pub fn add(index: u32, n: u64) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot; a nested program on this CPU runs to completion before this
        // one resumes, so increments are not lost.
        unsafe { *counter += n };
    }
}

#[inline(always)]
pub fn count(index: u32) {
    add(index, 1);
}

#[inline(always)]
fn addr_matches(id: &SockId) -> bool {
    if id.family == AF_INET6 {
        FILTER_ADDR6.get(Key::new(128, id.saddr)).is_some()
            || FILTER_ADDR6.get(Key::new(128, id.daddr)).is_some()
    } else {
        let s = [id.saddr[0], id.saddr[1], id.saddr[2], id.saddr[3]];
        let d = [id.daddr[0], id.daddr[1], id.daddr[2], id.daddr[3]];
        FILTER_ADDR4.get(Key::new(32, s)).is_some() || FILTER_ADDR4.get(Key::new(32, d)).is_some()
    }
}

/// Whether `key` is in a filter set.
#[inline(always)]
fn in_set<K>(set: &HashMap<K, u8>, key: K) -> bool {
    // SAFETY: the value is only tested for presence, never read.
    unsafe { set.get(&key) }.is_some()
}

/// The user's filters, applied before any ring-buffer space is spent.
#[inline(always)]
fn passes_filters(id: &SockId, owner: Option<&Owner>) -> bool {
    let active = config!(filters);
    if active == 0 {
        return true;
    }
    if active & filter::NETNS != 0 && !in_set(&FILTER_NETNS, id.netns) {
        return false;
    }
    if active & filter::PORT != 0
        && !in_set(&FILTER_PORTS, id.sport)
        && !in_set(&FILTER_PORTS, id.dport)
    {
        return false;
    }
    if active & filter::ADDR != 0 && !addr_matches(id) {
        return false;
    }
    if active & filter::PID != 0 {
        match owner {
            Some(o) if in_set(&FILTER_PIDS, o.tgid) => {}
            _ => return false,
        }
    }
    if active & filter::COMM != 0 {
        let wanted = config!(filter_comm);
        match owner {
            Some(o) if o.comm == wanted => {}
            _ => return false,
        }
    }
    // The owner's cgroup, recorded in its own context: never the task a timer or softirq
    // interrupted. Undecided cgroups (not in the map) go to userspace, which decides.
    if active & filter::CGROUP != 0 {
        let Some(o) = owner else {
            return false;
        };
        // SAFETY: a value of this map, read at once.
        if unsafe { FILTER_CGROUPS.get(o.cgroup_id) }.is_some_and(|wanted| *wanted == 0) {
            return false;
        }
    }
    true
}

/// What an event is about: the socket (absent for a reset that matched no socket), the same
/// socket as a full `tcp_sock` when it is one (then the event carries its counters), its
/// identity and its tuple.
pub struct Subject<A: Access> {
    pub sk: Option<SockPtr<A>>,
    pub tp: Option<TcpSockPtr<A>>,
    pub cookie: u64,
    pub id: SockId,
}

/// Writes one event: identity, owner, timer context and counters, then whatever `fill`
/// adds. Dropped events are counted, never silent.
#[inline(always)]
pub fn emit<A: Access>(kind: u8, subject: &Subject<A>, fill: impl FnOnce(&mut RawEvent)) {
    let owner = owner_of(subject.cookie);
    let id = &subject.id;
    if !passes_filters(id, owner.as_ref()) {
        count(stat::FILTERED);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<RawEvent>(0) else {
        count(stat::LOST);
        return;
    };
    // SAFETY: the reservation is size_of::<RawEvent>() bytes, 8-aligned; zeroed before use.
    let ev = unsafe {
        let ptr = entry.as_mut_ptr();
        zero_words(ptr);
        &mut *ptr
    };
    // SAFETY: no preconditions.
    ev.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    ev.kind = kind;
    ev.cookie = subject.cookie;
    ev.netns = id.netns;
    ev.family = id.family;
    ev.saddr = id.saddr;
    ev.daddr = id.daddr;
    ev.sport = id.sport;
    ev.dport = id.dport;
    ev.state = id.state;
    ev.reason = u32::MAX;
    ev.current_tgid = current_tgid();
    if let Some(o) = owner {
        ev.owner_tgid = o.tgid;
        ev.owner_comm = o.comm;
        ev.cgroup_id = o.cgroup_id;
        ev.flags |= o.flags as u8;
    }
    if let Some(sk) = subject.sk
        && let Some((timer_kind, pending)) = timer::running_for(sk.0.addr())
    {
        ev.timer = timer_kind;
        ev.timer_pending = pending;
    }
    if let Some(tp) = subject.tp {
        fill_counters(ev, tp);
    }
    fill(ev);
    // Batch wakeups: the reader drains on its own every few milliseconds, and is woken
    // early only when the ring buffer starts to fill.
    let wake = if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= u64::from(config!(wakeup_bytes)) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(wake as u64);
    count(stat::EMITTED);
}
