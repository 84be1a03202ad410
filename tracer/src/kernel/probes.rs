//! Loading, attaching and reading the kernel programs.

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::BtfTracePoint,
};
use serde::{Deserialize, Serialize};
use tokio::io::{Interest, unix::AsyncFd};
use tracer_common::{Config, EVENTS_RING_BYTES, RawEvent, TASK_COMM_LEN, filter, stat};

use super::{
    btf::KernelBtf,
    host,
    layout::{self, Missing},
};

/// How often the reader drains the ring buffer without being woken (see `wakeup_bytes`).
pub const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// The kernel programs, built from `tracer-ebpf` by build.rs.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-probes"));

/// One kernel hook: the program, the tracepoint, and what the user loses without it.
struct Hook {
    program: &'static str,
    tracepoint: &'static str,
    /// Arguments the program reads; the variant with the most that the kernel has wins.
    reads_args: usize,
    needs_timer_symbols: bool,
    provides: &'static str,
}

/// What each tracepoint's absence costs, by verdict (for `tracer doctor`).
#[rustfmt::skip]
pub const DEGRADES_WITHOUT: &[(&str, &str)] = &[
    ("inet_sock_set_state", "everything: tracing cannot start without it"),
    ("tcp_retransmit_skb", "peer_unresponsive; retransmit counts in retries_exhausted, connect_timeout and orphan_timeout"),
    ("tcp_retransmit_synack", "server-side SYN-ACK retransmits (no verdict depends on them)"),
    ("tcp_send_reset", "local_abort, and resets sent for segments that matched no socket"),
    ("tcp_receive_reset", "peer_reset's evidence and its lost-state detection"),
    ("inet_sk_error_report", "error reports in timelines (no verdict depends on them)"),
    ("tcp_destroy_sock", "dead_socket_held, and releasing finished timelines"),
    ("timer_expire_entry", "keepalive probe counts in keepalive_exhausted; RTO and TLP classification"),
    ("timer_expire_exit", "keepalive and zero-window probe events"),
    ("sock_send_length", "owners of accepted sockets (the listener's process stands in)"),
    ("sock_recv_length", "owners of accepted sockets (the listener's process stands in)"),
];

/// Which hooks this kernel would give us, without loading anything (for `tracer doctor`).
pub fn hook_availability(btf: &KernelBtf, timer_symbols: bool) -> Vec<HookStatus> {
    let mut tracepoints: Vec<&str> = HOOKS.iter().map(|h| h.tracepoint).collect();
    tracepoints.dedup();
    tracepoints
        .into_iter()
        .map(|tracepoint| {
            let arity = btf.tracepoint_arity(tracepoint);
            let hook = arity
                .and_then(|a| choose_variant(tracepoint, a))
                .or_else(|| HOOKS.iter().find(|h| h.tracepoint == tracepoint))
                .expect("every tracepoint has a hook");
            let problem = match arity {
                None => Some("this kernel has no such tracepoint".to_owned()),
                Some(_) if hook.needs_timer_symbols && !timer_symbols => {
                    Some("timer callbacks hidden in /proc/kallsyms".to_owned())
                }
                Some(_) => None,
            };
            HookStatus {
                tracepoint: tracepoint.into(),
                program: hook.program.into(),
                attached: problem.is_none(),
                provides: hook.provides.into(),
                problem,
            }
        })
        .collect()
}

#[rustfmt::skip]
const HOOKS: &[Hook] = &[
    Hook { program: "tr_set_state", tracepoint: "inet_sock_set_state", reads_args: 3, needs_timer_symbols: false, provides: "state changes, connection deaths and their errors" },
    Hook { program: "tr_retransmit", tracepoint: "tcp_retransmit_skb", reads_args: 2, needs_timer_symbols: false, provides: "retransmits" },
    Hook { program: "tr_retransmit_e", tracepoint: "tcp_retransmit_skb", reads_args: 3, needs_timer_symbols: false, provides: "retransmits and failed retransmit attempts" },
    Hook { program: "tr_synack", tracepoint: "tcp_retransmit_synack", reads_args: 2, needs_timer_symbols: false, provides: "SYN-ACK retransmits" },
    Hook { program: "tr_send_reset", tracepoint: "tcp_send_reset", reads_args: 2, needs_timer_symbols: false, provides: "resets sent (no reason codes on this kernel)" },
    Hook { program: "tr_send_reset_r", tracepoint: "tcp_send_reset", reads_args: 3, needs_timer_symbols: false, provides: "resets sent, with the kernel's reason" },
    Hook { program: "tr_recv_reset", tracepoint: "tcp_receive_reset", reads_args: 1, needs_timer_symbols: false, provides: "resets received" },
    Hook { program: "tr_error_report", tracepoint: "inet_sk_error_report", reads_args: 1, needs_timer_symbols: false, provides: "socket error reports" },
    Hook { program: "tr_destroy", tracepoint: "tcp_destroy_sock", reads_args: 1, needs_timer_symbols: false, provides: "socket release (when the application closes a dead socket)" },
    Hook { program: "tr_timer_entry", tracepoint: "timer_expire_entry", reads_args: 1, needs_timer_symbols: true, provides: "keepalive probes, zero-window probes, RTO/TLP classification" },
    Hook { program: "tr_timer_exit", tracepoint: "timer_expire_exit", reads_args: 1, needs_timer_symbols: true, provides: "keepalive probes, zero-window probes" },
    Hook { program: "tr_send_len", tracepoint: "sock_send_length", reads_args: 1, needs_timer_symbols: false, provides: "owners of accepted sockets" },
    Hook { program: "tr_recv_len", tracepoint: "sock_recv_length", reads_args: 1, needs_timer_symbols: false, provides: "owners of accepted sockets" },
];

/// Whether a hook runs on this kernel; recorded in every trace's header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HookStatus {
    pub tracepoint: String,
    pub program: String,
    pub attached: bool,
    pub provides: String,
    /// Why it is not attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What the user asked to trace; applied in the kernel.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    pub netns: Vec<u32>,
    pub ports: Vec<u16>,
    /// (address, prefix length)
    pub addrs: Vec<(IpAddr, u8)>,
    pub pids: Vec<u32>,
    pub comm: Option<String>,
    /// Ring buffer size in bytes (a power of two, at least one page); 0: default.
    pub ring_buffer_bytes: u32,
}

/// Kernel-side counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingStats {
    pub emitted: u64,
    /// Events lost because the ring buffer was full.
    pub lost: u64,
    pub filtered: u64,
    /// TCP timer callbacks seen, and those that sent a probe.
    pub timer_brackets: u64,
    pub probes_seen: u64,
    pub probes_late: u64,
}

pub struct Probes {
    ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    stats: PerCpuArray<MapData, u64>,
    pub hooks: Vec<HookStatus>,
    pub missing_members: Vec<Missing>,
    /// `enum sk_rst_reason` value → name, from this kernel's BTF.
    pub reset_reasons: BTreeMap<u32, String>,
}

fn choose_variant<'a>(tracepoint: &str, arity: usize) -> Option<&'a Hook> {
    HOOKS
        .iter()
        .filter(|h| h.tracepoint == tracepoint && h.reads_args <= arity)
        .max_by_key(|h| h.reads_args)
}

impl Probes {
    /// Loads and attaches every program this kernel supports. Must run inside a tokio
    /// runtime (the ring buffer is polled through epoll).
    pub fn load(options: &ProbeOptions) -> Result<Self> {
        super::privileges::check_tracing()?;
        if let Err(e) = raise_memlock_limit() {
            log::warn!(
                "cannot lift RLIMIT_MEMLOCK ({e}): kernels before 5.11 may refuse to create the maps"
            );
        }
        let kernel_btf = KernelBtf::load()?;
        let (mut config, missing_members) = layout::resolve(&kernel_btf)?;
        let symbols = host::kallsyms(&["tcp_write_timer", "tcp_keepalive_timer"]);
        config.fn_tcp_write_timer = symbols.get("tcp_write_timer").copied().unwrap_or(0);
        config.fn_tcp_keepalive_timer = symbols.get("tcp_keepalive_timer").copied().unwrap_or(0);
        let timer_symbols = config.fn_tcp_write_timer != 0 && config.fn_tcp_keepalive_timer != 0;
        apply_filter_flags(&mut config, options)?;
        let ring_bytes = if options.ring_buffer_bytes != 0 {
            options.ring_buffer_bytes
        } else {
            EVENTS_RING_BYTES
        };
        config.wakeup_bytes = ring_bytes / 8;

        let mut loader = EbpfLoader::new();
        loader.override_global("CONFIG", &config, true);
        if options.ring_buffer_bytes != 0 {
            loader.map_max_entries("EVENTS", options.ring_buffer_bytes);
        }
        let mut ebpf = loader
            .load(PROGRAMS)
            .context("loading the kernel programs")?;
        install_filters(&mut ebpf, options)?;

        let aya_btf = aya::Btf::from_sys_fs().context("reading kernel BTF")?;
        let mut hooks = Vec::new();
        let mut tracepoints: Vec<&str> = HOOKS.iter().map(|h| h.tracepoint).collect();
        tracepoints.dedup();
        for tracepoint in tracepoints {
            let Some(arity) = kernel_btf.tracepoint_arity(tracepoint) else {
                let hook = HOOKS.iter().find(|h| h.tracepoint == tracepoint).unwrap();
                hooks.push(HookStatus {
                    tracepoint: tracepoint.into(),
                    program: hook.program.into(),
                    attached: false,
                    provides: hook.provides.into(),
                    problem: Some("this kernel has no such tracepoint".into()),
                });
                continue;
            };
            let Some(hook) = choose_variant(tracepoint, arity) else {
                continue;
            };
            let mut status = HookStatus {
                tracepoint: tracepoint.into(),
                program: hook.program.into(),
                attached: false,
                provides: hook.provides.into(),
                problem: None,
            };
            if hook.needs_timer_symbols && !timer_symbols {
                status.problem = Some(
                    "tcp_write_timer/tcp_keepalive_timer not in /proc/kallsyms (kptr_restrict?)"
                        .into(),
                );
                hooks.push(status);
                continue;
            }
            let result = (|| -> Result<()> {
                let program: &mut BtfTracePoint = ebpf
                    .program_mut(hook.program)
                    .ok_or_else(|| anyhow!("program {} missing from the object", hook.program))?
                    .try_into()?;
                program.load(tracepoint, &aya_btf)?;
                program.attach()?;
                Ok(())
            })();
            match result {
                Ok(()) => status.attached = true,
                Err(e) => {
                    log::debug!("{}: {e:#}", hook.program);
                    // The verifier log can be long; the header keeps its first line.
                    let text = format!("{e:#}");
                    let first = text.lines().next().unwrap_or_default();
                    status.problem = Some(first.chars().take(240).collect());
                }
            }
            hooks.push(status);
        }
        if !hooks
            .iter()
            .any(|h| h.attached && h.tracepoint == "inet_sock_set_state")
        {
            let why = hooks
                .iter()
                .find(|h| h.tracepoint == "inet_sock_set_state")
                .and_then(|h| h.problem.clone())
                .unwrap_or_default();
            anyhow::bail!("cannot attach to sock:inet_sock_set_state, which tracing needs: {why}");
        }

        let ring: RingBuf<MapData> = ebpf
            .take_map("EVENTS")
            .context("EVENTS map missing")?
            .try_into()?;
        let stats: PerCpuArray<MapData, u64> = ebpf
            .take_map("STATS")
            .context("STATS map missing")?
            .try_into()?;
        let reset_reasons = kernel_btf
            .enum_values("sk_rst_reason")
            .map(|m| {
                m.into_iter()
                    .map(|(v, n)| {
                        let short = n.strip_prefix("SK_RST_REASON_").unwrap_or(&n);
                        (v as u32, short.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            ebpf,
            // SAFETY: the RingBuf owns its map fd and keeps it open for as long as it lives.
            ring: unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                .map_err(|e| anyhow!("registering the ring buffer with epoll: {e}"))?,
            stats,
            hooks,
            missing_members,
            reset_reasons,
        })
    }

    /// Waits until events are available, then appends every available one to `out`.
    pub async fn read_batch(&mut self, out: &mut Vec<RawEvent>) -> Result<()> {
        let mut guard = self.ring.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if item.len() >= size_of::<RawEvent>() {
                // SAFETY: the kernel wrote a RawEvent here; read_unaligned copies it out.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<RawEvent>()) });
            }
        }
        guard.clear_ready();
        Ok(())
    }

    /// Drains whatever is in the ring buffer without waiting (used at shutdown).
    pub fn drain(&mut self, out: &mut Vec<RawEvent>) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            if item.len() >= size_of::<RawEvent>() {
                // SAFETY: as in read_batch.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<RawEvent>()) });
            }
        }
    }

    pub fn ring_stats(&self) -> Result<RingStats> {
        let sum = |index: u32| -> Result<u64> { Ok(self.stats.get(&index, 0)?.iter().sum()) };
        Ok(RingStats {
            emitted: sum(stat::EMITTED)?,
            lost: sum(stat::LOST)?,
            filtered: sum(stat::FILTERED)?,
            timer_brackets: sum(stat::TIMER_BRACKETS)?,
            probes_seen: sum(stat::PROBES_SEEN)?,
            probes_late: sum(stat::PROBES_LATE)?,
        })
    }

    /// Kernel ids of our loaded programs (for checks that they are gone after drop).
    pub fn program_ids(&self) -> Vec<u32> {
        self.ebpf
            .programs()
            .filter_map(|(_, p)| p.info().ok().map(|i| i.id()))
            .collect()
    }
}

fn apply_filter_flags(config: &mut Config, options: &ProbeOptions) -> Result<()> {
    let mut flags = 0;
    if !options.netns.is_empty() {
        flags |= filter::NETNS;
    }
    if !options.ports.is_empty() {
        flags |= filter::PORT;
    }
    if !options.addrs.is_empty() {
        flags |= filter::ADDR;
    }
    if !options.pids.is_empty() {
        flags |= filter::PID;
    }
    if let Some(comm) = &options.comm {
        if comm.len() >= TASK_COMM_LEN {
            anyhow::bail!(
                "--comm {comm:?} is longer than the kernel's {} characters",
                TASK_COMM_LEN - 1
            );
        }
        flags |= filter::COMM;
        config.filter_comm[..comm.len()].copy_from_slice(comm.as_bytes());
    }
    config.filters = flags;
    Ok(())
}

fn install_filters(ebpf: &mut Ebpf, options: &ProbeOptions) -> Result<()> {
    fn set<K: aya::Pod>(ebpf: &mut Ebpf, map: &str, keys: &[K]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut m: BpfHashMap<_, K, u8> = ebpf
            .map_mut(map)
            .with_context(|| format!("{map} missing"))?
            .try_into()?;
        for k in keys {
            m.insert(k, 1, 0)?;
        }
        Ok(())
    }
    set(ebpf, "FILTER_NETNS", &options.netns)?;
    set(ebpf, "FILTER_PORTS", &options.ports)?;
    set(ebpf, "FILTER_PIDS", &options.pids)?;
    for (addr, prefix) in &options.addrs {
        match addr {
            IpAddr::V4(v4) => {
                let mut trie: LpmTrie<_, [u8; 4], u8> = ebpf
                    .map_mut("FILTER_ADDR4")
                    .context("FILTER_ADDR4")?
                    .try_into()?;
                trie.insert(&Key::new(u32::from(*prefix), v4.octets()), 1, 0)?;
            }
            IpAddr::V6(v6) => {
                let mut trie: LpmTrie<_, [u8; 16], u8> = ebpf
                    .map_mut("FILTER_ADDR6")
                    .context("FILTER_ADDR6")?
                    .try_into()?;
                trie.insert(&Key::new(u32::from(*prefix), v6.octets()), 1, 0)?;
            }
        }
    }
    Ok(())
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
fn raise_memlock_limit() -> std::io::Result<()> {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid resource and pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_variant_matching_the_kernel() {
        assert_eq!(
            choose_variant("tcp_retransmit_skb", 2).unwrap().program,
            "tr_retransmit"
        );
        assert_eq!(
            choose_variant("tcp_retransmit_skb", 3).unwrap().program,
            "tr_retransmit_e"
        );
        assert_eq!(
            choose_variant("tcp_send_reset", 3).unwrap().program,
            "tr_send_reset_r"
        );
        assert_eq!(
            choose_variant("tcp_send_reset", 2).unwrap().program,
            "tr_send_reset"
        );
        assert_eq!(
            choose_variant("timer_expire_entry", 2).unwrap().program,
            "tr_timer_entry"
        );
        assert!(choose_variant("tcp_retransmit_skb", 1).is_none());
    }
}
