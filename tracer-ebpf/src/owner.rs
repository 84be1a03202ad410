//! Who owns a socket: learned only in the owner's own context (connect, listen, close,
//! send/recv), never from whatever task a timer or softirq happened to interrupt.

use aya_ebpf::{
    bindings::BPF_SK_STORAGE_GET_F_CREATE,
    btf_maps::SkStorage,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid,
        generated::bpf_get_current_comm as bpf_get_current_comm_into,
        generated::bpf_sk_storage_get,
    },
    macros::{btf_map, map},
    maps::{LruHashMap, PerCpuArray},
};
use tracer_common::{ListenKey, Owner, TASK_COMM_LEN, flags};

use core::mem::MaybeUninit;

use crate::access::{SockPtr, Typed, zero_words};

/// Socket cookie → the process that owns it.
#[map]
static OWNERS: LruHashMap<u64, Owner> = LruHashMap::with_max_entries(65536, 0);

/// Listening port → its process, so accepted sockets have an owner before first use.
#[map]
static LISTENERS: LruHashMap<ListenKey, Owner> = LruHashMap::with_max_entries(4096, 0);

/// The (socket, tgid) this CPU last recorded from socket I/O: a bulk sender calls send()
/// thousands of times per second on one socket; only the first call needs more.
#[map]
static LAST_IO_OWNER: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Per socket (socket-local storage, freed with the socket): the tgid already recorded for
/// it from I/O. A server serving many sockets in turn pays one lookup in memory the kernel
/// just touched, not the helpers and a hash map. Only the I/O programs use it, and they
/// exist only on kernels (6.4+) whose tracing programs may use socket storage (5.11+).
#[btf_map]
static IO_SEEN: SkStorage<u32> = SkStorage::new();

#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// The owner recorded for `cookie`, if any.
#[inline(always)]
pub fn owner_of(cookie: u64) -> Option<Owner> {
    if cookie == 0 {
        return None;
    }
    // SAFETY: a value of this map, copied out at once.
    unsafe { OWNERS.get(cookie) }.copied()
}

/// Records the current task as the owner of `cookie`. Call only where the kernel runs in
/// the owner's context.
#[inline(always)]
pub fn remember_owner(cookie: u64) -> Option<Owner> {
    let tgid = current_tgid();
    if tgid == 0 || cookie == 0 {
        return None;
    }
    if let Some(known) = owner_of(cookie)
        && known.tgid == tgid
        && known.flags & flags::OWNER_KNOWN as u32 != 0
    {
        return Some(known);
    }
    // Zeroed a word at a time, and the name read straight into it: `[0; 16]` and aya's
    // `bpf_get_current_comm()` (a fresh array) cost byte-by-byte `memset` loops.
    let mut owner = MaybeUninit::<Owner>::uninit();
    // SAFETY: Owner is plain integers, 32 bytes, 8-aligned; all-zero is a valid value.
    let mut owner = unsafe {
        zero_words(owner.as_mut_ptr());
        owner.assume_init()
    };
    owner.tgid = tgid;
    owner.flags = flags::OWNER_KNOWN as u32;
    // SAFETY: no preconditions.
    owner.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: `comm` is TASK_COMM_LEN writable bytes; the helper zero-fills on failure.
    unsafe { bpf_get_current_comm_into(owner.comm.as_mut_ptr().cast(), TASK_COMM_LEN as u32) };
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
    // SAFETY: a value of this map, copied out at once.
    if let Some(listener) = unsafe { LISTENERS.get(key) } {
        let mut owner = *listener;
        owner.flags = flags::OWNER_FROM_LISTENER as u32;
        let _ = OWNERS.insert(cookie, owner, 0);
    }
}

#[inline(always)]
fn io_seen(sk: SockPtr<Typed>, create: bool) -> *mut u32 {
    let flags = if create {
        u64::from(BPF_SK_STORAGE_GET_F_CREATE)
    } else {
        0
    };
    // SAFETY: the helper checks `sk` (a BTF-typed socket) and the map.
    unsafe {
        bpf_sk_storage_get(
            (&raw const IO_SEEN).cast_mut().cast(),
            sk.0.addr() as *mut _,
            core::ptr::null_mut(),
            flags,
        )
    }
    .cast::<u32>()
}

/// Owner learning from send()/recv(): `learn` computes the socket's cookie (0 if it is not
/// TCP) only when this socket and process were not seen together before.
#[inline(always)]
pub fn remember_io_owner(sk: SockPtr<Typed>, learn: impl FnOnce() -> u64) {
    let tgid = current_tgid();
    let Some(last) = LAST_IO_OWNER.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot.
    let last = unsafe { &mut *last };
    let addr = sk.0.addr();
    if last[0] == addr && last[1] == u64::from(tgid) {
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
    *last = [addr, u64::from(tgid)];
}

/// The socket is gone: its owner entry too (its address may be reused; its socket-local
/// storage goes with it).
#[inline(always)]
pub fn forget_owner(cookie: u64, sk: u64) {
    let _ = OWNERS.remove(cookie);
    if let Some(last) = LAST_IO_OWNER.get_ptr_mut(0) {
        // SAFETY: this CPU's slot.
        let last = unsafe { &mut *last };
        if last[0] == sk {
            last[0] = 0;
        }
    }
}
