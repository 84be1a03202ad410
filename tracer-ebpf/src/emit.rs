//! Maps, in-kernel filters, owner tracking and the one path every event leaves by.

use aya_ebpf::{
    bindings::{
        BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_SK_STORAGE_GET_F_CREATE,
    },
    btf_maps::SkStorage,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        generated::{bpf_ktime_get_boot_ns, bpf_sk_storage_get},
    },
    macros::{btf_map, map},
    maps::{HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
};
use tracer_common::{ListenKey, Owner, RawEvent, TASK_COMM_LEN, TimerBracket, filter, flags, stat};

use crate::{
    kernel::{Access, config},
    socket::{AF_INET6, SockId, fill_counters},
};

/// Events to userspace. The loader may resize it (`--ring-buffer-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Per-CPU counters indexed by [`stat`]: emitted, lost (ring buffer full), filtered.
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Socket cookie → the process that owns it, learned in that process's own context.
#[map]
static OWNERS: LruHashMap<u64, Owner> = LruHashMap::with_max_entries(65536, 0);

/// Listening port → its process, so accepted sockets have an owner before first use.
#[map]
static LISTENERS: LruHashMap<ListenKey, Owner> = LruHashMap::with_max_entries(4096, 0);

/// Socket address → the last keepalive or zero-window probe number reported for it. A
/// probe whose timer run was not seen (the entry/exit bracket can miss one under load) is
/// reported at the socket's next timer run instead of never. Cleared at destroy.
#[map]
pub static PROBES_REPORTED: LruHashMap<u64, u8> = LruHashMap::with_max_entries(65536, 0);

/// The TCP timer callback running on this CPU, if any (see `timer_expire_entry`).
#[map]
pub static TIMER: PerCpuArray<TimerBracket> = PerCpuArray::with_max_entries(1, 0);

/// The (socket, tgid) this CPU last recorded from socket I/O: a bulk sender calls send()
/// thousands of times per second on one socket; only the first call needs more.
#[map]
static LAST_IO_OWNER: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Per socket (socket-local storage, freed with the socket): the tgid already recorded for
/// it from I/O. A server serving many sockets in turn pays one lookup in memory the kernel
/// just touched, not the helpers and a hash map.
#[btf_map]
static IO_SEEN: SkStorage<u32> = SkStorage::new();

#[inline(always)]
fn io_seen(sk: u64, create: bool) -> *mut u32 {
    let flags = if create {
        u64::from(BPF_SK_STORAGE_GET_F_CREATE)
    } else {
        0
    };
    // SAFETY: the helper checks `sk` (a BTF-typed socket) and the map.
    unsafe {
        bpf_sk_storage_get(
            (&raw const IO_SEEN).cast_mut().cast(),
            sk as *mut _,
            core::ptr::null_mut(),
            flags,
        )
    }
    .cast::<u32>()
}

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

#[inline(always)]
pub fn count(index: u32) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// Records the current task as the owner of `cookie`. Called only where the kernel runs in
/// the owner's context (connect, listen, close, send/recv): timers and softirqs run on
/// whatever task the CPU happened to interrupt.
#[inline(always)]
pub fn remember_owner(cookie: u64) -> Option<Owner> {
    let tgid = current_tgid();
    if tgid == 0 || cookie == 0 {
        return None;
    }
    if let Some(known) = unsafe { OWNERS.get(cookie) }
        && known.tgid == tgid
        && known.flags & flags::OWNER_KNOWN as u32 != 0
    {
        return Some(*known);
    }
    let owner = Owner {
        tgid,
        flags: flags::OWNER_KNOWN as u32,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]),
    };
    let _ = OWNERS.insert(cookie, owner, 0);
    Some(owner)
}

/// Remembers a listener so that its accepted sockets inherit its owner.
#[inline(always)]
pub fn remember_listener(netns: u32, port: u16, owner: &Owner) {
    let key = ListenKey {
        netns,
        port,
        _pad: 0,
    };
    let _ = LISTENERS.insert(key, owner, 0);
}

/// A connection accepted on a listening port: provisionally owned by the listener's process.
#[inline(always)]
pub fn inherit_listener_owner(cookie: u64, netns: u32, port: u16) {
    let key = ListenKey {
        netns,
        port,
        _pad: 0,
    };
    if let Some(listener) = unsafe { LISTENERS.get(key) } {
        let mut owner = *listener;
        owner.flags = flags::OWNER_FROM_LISTENER as u32;
        let _ = OWNERS.insert(cookie, owner, 0);
    }
}

/// Owner learning from send()/recv(): `sk` is the socket pointer, `learn` computes its
/// cookie (0 if it is not TCP) only when this socket and process were not seen together
/// before.
#[inline(always)]
pub fn remember_io_owner(sk: u64, learn: impl FnOnce() -> u64) {
    let tgid = current_tgid();
    let Some(last) = LAST_IO_OWNER.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot.
    let last = unsafe { &mut *last };
    if last[0] == sk && last[1] == u64::from(tgid) {
        return;
    }
    let seen = io_seen(sk, false);
    // SAFETY: a non-null storage pointer is this socket's u32.
    if seen.is_null() || unsafe { *seen } != tgid {
        let cookie = learn();
        if cookie == 0 {
            return;
        }
        remember_owner(cookie);
        let slot = io_seen(sk, true);
        if !slot.is_null() {
            // SAFETY: as above.
            unsafe { *slot = tgid };
        }
    }
    *last = [sk, u64::from(tgid)];
}

/// The socket is gone: its owner entry too (its address may be reused; its socket-local
/// storage goes with it).
pub fn forget_owner(cookie: u64, sk: u64) {
    let _ = OWNERS.remove(cookie);
    let _ = PROBES_REPORTED.remove(sk);
    if let Some(last) = LAST_IO_OWNER.get_ptr_mut(0)
        && unsafe { (*last)[0] } == sk
    {
        // SAFETY: this CPU's slot.
        unsafe { (*last)[0] = 0 };
    }
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

/// The user's filters, applied before any ring-buffer space is spent.
#[inline(always)]
fn passes_filters(id: &SockId, owner: Option<&Owner>) -> bool {
    let active = config!(filters);
    if active == 0 {
        return true;
    }
    if active & filter::NETNS != 0 && unsafe { FILTER_NETNS.get(id.netns) }.is_none() {
        return false;
    }
    if active & filter::PORT != 0
        && unsafe { FILTER_PORTS.get(id.sport) }.is_none()
        && unsafe { FILTER_PORTS.get(id.dport) }.is_none()
    {
        return false;
    }
    if active & filter::ADDR != 0 && !addr_matches(id) {
        return false;
    }
    if active & filter::PID != 0 {
        match owner {
            Some(o) if unsafe { FILTER_PIDS.get(o.tgid) }.is_some() => {}
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
    true
}

/// Writes one event: identity, owner, timer context and (for full sockets, `tp` != 0)
/// counters, then whatever `fill` adds. `sk` identifies the socket for the timer bracket.
/// Dropped events are counted, never silent.
#[inline(always)]
pub fn emit<A: Access>(
    access: A,
    kind: u8,
    sk: u64,
    tp: u64,
    cookie: u64,
    id: &SockId,
    fill: impl FnOnce(&mut RawEvent),
) {
    let owner = if cookie != 0 {
        unsafe { OWNERS.get(cookie) }.copied()
    } else {
        None
    };
    if !passes_filters(id, owner.as_ref()) {
        count(stat::FILTERED);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<RawEvent>(0) else {
        count(stat::LOST);
        return;
    };
    // SAFETY: the reservation is size_of::<RawEvent>() bytes; zero it before use.
    let ev = unsafe {
        let ptr = entry.as_mut_ptr();
        core::ptr::write_bytes(ptr, 0, 1);
        &mut *ptr
    };
    ev.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    ev.kind = kind;
    ev.cookie = cookie;
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
    if let Some(bracket) = TIMER.get(0)
        && sk != 0
        && bracket.sk == sk
    {
        ev.timer = bracket.timer;
        ev.timer_pending = bracket.pending;
    }
    if tp != 0 {
        fill_counters(access, ev, tp);
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
