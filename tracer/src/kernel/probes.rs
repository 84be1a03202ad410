//! Loading, verifying, attaching and reading the kernel programs.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    os::fd::{AsFd, AsRawFd},
    time::Instant,
};

use anyhow::{Context, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{BtfTracePoint, Program, ProgramError},
};
use serde::{Deserialize, Serialize};
use tokio::io::{Interest, unix::AsyncFd};
use tracer_common::{
    Config, EVENTS_RING_BYTES, RawEvent, TASK_COMM_LEN, filter, stat, timer_callback,
};

use super::{
    btf::KernelBtf,
    features::{self, Features},
    hooks::{self, Hook, HookState, HookStatus},
    host,
    layout::{self, Missing},
};

/// How often the reader drains the ring buffer without being woken (see `wakeup_bytes`).
pub const DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// The kernel programs, built from `tracer-ebpf` by build.rs.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-probes"));

/// What the user asked to trace; applied in the kernel.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    pub netns: Vec<u32>,
    pub ports: Vec<u16>,
    /// (address, prefix length)
    pub addrs: Vec<(IpAddr, u8)>,
    pub pids: Vec<u32>,
    pub comm: Option<String>,
    /// The owner filter (`--container`, `--pod`, `--cgroup`) is on: the kernel drops the
    /// events of cgroups userspace decided against ([`Probes::cgroup_decisions`]).
    pub cgroup_filter: bool,
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
    /// TCP timer callbacks seen, and the probes they sent.
    pub timer_brackets: u64,
    pub probes_seen: u64,
    pub probes_late: u64,
    /// Hits the kernel skipped for a program already running on that CPU
    /// (`recursion_misses`), and of those, the ones the nested-context twin handled.
    /// `skipped - rescued` hits went unhandled: events lost.
    #[serde(default)]
    pub skipped: u64,
    #[serde(default)]
    pub rescued: u64,
}

impl RingStats {
    /// Hits no program handled: the events they would have produced are lost.
    pub fn unhandled(&self) -> u64 {
        self.skipped.saturating_sub(self.rescued)
    }
}

/// One attached program's kernel-side cost so far (0 unless bpf_stats is on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// How a loaded program serves its hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The program that handles its hook's hits (its skips may be rescued by a twin).
    Primary,
    /// Handles only hits nested in the primary; its own skips lose nothing.
    Twin,
}

/// The kernel as the programs will meet it: BTF, layouts, features, filters; the object
/// loaded (maps created), no program verified yet.
struct Prepared {
    ebpf: Ebpf,
    btf: aya::Btf,
    kernel_btf: KernelBtf,
    missing_members: Vec<Missing>,
    features: Features,
    /// Whether /proc/kallsyms named TCP's timer callbacks (else the programs learn them
    /// from the first TCP socket they see).
    timer_symbols: bool,
}

impl Prepared {
    /// Start-up work runs on every core: the kernel's BTF is parsed twice (aya keeps its own
    /// copy for loading programs, and its object loader parses another), the layouts are
    /// resolved from a mapped copy, and /proc/kallsyms is read, all at once.
    fn new(options: &ProbeOptions) -> Result<Self> {
        let started = Instant::now();
        super::privileges::check_tracing()?;
        super::check_kernel_floor(&host::kernel_release())?;
        raise_memlock_limit();
        let (btf, loader, symbols, layouts) = std::thread::scope(|s| {
            // aya parses the kernel's BTF twice (its object loader always parses its own
            // copy, which the tracer does not need: no CO-RE): the loader's first, dropped at
            // once, then the one that stays for loading programs, so they never coexist.
            let btf_and_loader = s.spawn(|| {
                let mut loader = EbpfLoader::new();
                loader.btf(None);
                (aya::Btf::from_sys_fs(), loader)
            });
            let symbols = s.spawn(|| host::kallsyms(&["tcp_keepalive_timer", "tcp_write_timer"]));
            let layouts = KernelBtf::load_finding(&layout::type_names()).and_then(|kernel_btf| {
                let (config, missing) = layout::resolve(&kernel_btf)?;
                Ok((kernel_btf, config, missing))
            });
            log::debug!("layouts resolved at {:?}", started.elapsed());
            let join = |what| move |_| anyhow!("{what} panicked");
            let (btf, loader) = btf_and_loader.join().map_err(join("parsing BTF"))?;
            Ok::<_, anyhow::Error>((
                btf,
                loader,
                symbols.join().map_err(join("reading kallsyms"))?,
                layouts?,
            ))
        })?;
        let btf = btf.context("reading kernel BTF")?;
        let mut loader = loader;
        let (kernel_btf, mut config, missing_members) = layouts;
        log::debug!("BTF parsed at {:?}", started.elapsed());
        let features = features::probe(&mut loader, &btf)?;
        config.features = features.bits;
        log::debug!("features {:#x} at {:?}", features.bits, started.elapsed());
        apply_filter_flags(&mut config, options)?;
        let ring_bytes = if options.ring_buffer_bytes != 0 {
            options.ring_buffer_bytes
        } else {
            EVENTS_RING_BYTES
        };
        config.wakeup_bytes = ring_bytes / 8;
        loader.override_global("CONFIG", &config, true);
        if options.ring_buffer_bytes != 0 {
            loader.map_max_entries("EVENTS", options.ring_buffer_bytes);
        }
        let mut ebpf = loader
            .load(PROGRAMS)
            .context("loading the kernel programs")?;
        install_filters(&mut ebpf, options)?;
        let callbacks = [
            symbols.get("tcp_keepalive_timer").copied().unwrap_or(0),
            symbols.get("tcp_write_timer").copied().unwrap_or(0),
        ];
        let timer_symbols = callbacks.iter().all(|&a| a != 0);
        if timer_symbols {
            let mut map: Array<_, [u64; timer_callback::COUNT]> = ebpf
                .map_mut("TIMER_CALLBACKS")
                .context("TIMER_CALLBACKS map missing")?
                .try_into()?;
            map.set(0, callbacks, 0)?;
        }
        log::debug!("object loaded at {:?}", started.elapsed());
        Ok(Self {
            ebpf,
            btf,
            kernel_btf,
            missing_members,
            features,
            timer_symbols,
        })
    }

    /// Verifies (and, with `attach`, attaches) the program of every hook this kernel has.
    /// Verification, the long part, runs on every core; attaching goes in table order,
    /// primary before twin, so that the tracepoint calls them in that order.
    fn load_hooks(&mut self, attach: bool) -> (Vec<HookStatus>, Vec<(String, Role)>) {
        let mut statuses = Vec::new();
        let mut chosen: Vec<&'static Hook> = Vec::new();
        for tracepoint in hooks::tracepoints() {
            let Some(arity) = self.kernel_btf.tracepoint_arity(tracepoint) else {
                statuses.push(HookStatus::unavailable(
                    hooks::first_hook(tracepoint),
                    "this kernel has no such tracepoint",
                ));
                continue;
            };
            match hooks::choose_variant(tracepoint, arity) {
                Some(hook) => chosen.push(hook),
                None => statuses.push(HookStatus::unavailable(
                    hooks::first_hook(tracepoint),
                    format!(
                        "this kernel's tracepoint has {arity} arguments, fewer than any \
                         program reads"
                    ),
                )),
            }
        }
        let names: Vec<(&str, &str)> = chosen
            .iter()
            .flat_map(|h| {
                std::iter::once(h.program)
                    .chain(h.twin)
                    .map(|p| (p, h.tracepoint))
            })
            .collect();
        let mut verified = self.verify_in_parallel(&names);
        let mut loaded = Vec::new();
        for hook in chosen {
            let started = Instant::now();
            let mut outcome = |name: &str| -> Result<(), String> {
                verified
                    .remove(name)
                    .unwrap_or(Err(format!("{name} was not verified")))?;
                if attach {
                    self.attach(name)?;
                }
                Ok(())
            };
            if let Err(e) = outcome(hook.program) {
                statuses.push(HookStatus::failed(hook, e));
                continue;
            }
            loaded.push((hook.program.to_owned(), Role::Primary));
            let mut status = HookStatus {
                attached: attach,
                state: Some(HookState::Ok),
                ..HookStatus::new(hook)
            };
            if let Some(lost) = hook.without_richer_variant {
                status.degrade(lost);
            }
            if let Some(twin) = hook.twin {
                match outcome(twin) {
                    Ok(()) => {
                        status.twin = Some(twin.to_owned());
                        loaded.push((twin.to_owned(), Role::Twin));
                    }
                    Err(e) => status.degrade(&format!(
                        "rescue of hits nested in a running program (they are skipped and \
                         counted: {e})"
                    )),
                }
            }
            if hook.tracepoint == "inet_sock_set_state" {
                for (_, cost) in &self.features.missing {
                    status.degrade(cost);
                }
            }
            if hook.tracepoint == "timer_expire_entry" && !self.timer_symbols {
                status.degrade(
                    "probes of sockets older than tracing until the first TCP state change \
                     (TCP's timer callbacks are hidden in /proc/kallsyms and are learned from \
                     the first socket seen)",
                );
            }
            log::debug!(
                "{}: {:?} in {:?}",
                hook.program,
                status.state,
                started.elapsed()
            );
            statuses.push(status);
        }
        let order = hooks::tracepoints();
        statuses.sort_by_key(|s| order.iter().position(|t| *t == s.tracepoint));
        (statuses, loaded)
    }

    /// Verifies the named programs (program, tracepoint) on every core; the result per
    /// program is the verifier's refusal, if any.
    fn verify_in_parallel(
        &mut self,
        names: &[(&str, &str)],
    ) -> HashMap<String, Result<(), String>> {
        let btf = &self.btf;
        let mut work: Vec<(String, &str, &mut Program)> = self
            .ebpf
            .programs_mut()
            .filter_map(|(name, program)| {
                let (_, tracepoint) = names.iter().find(|(n, _)| *n == name)?;
                Some((name.to_owned(), *tracepoint, program))
            })
            .collect();
        work.sort_by_key(|(name, _, _)| names.iter().position(|(n, _)| n == name));
        let work_len = work.len();
        let mut results: HashMap<String, Result<(), String>> = names
            .iter()
            .map(|(n, _)| {
                (
                    (*n).to_owned(),
                    Err(format!("program {n} missing from the object")),
                )
            })
            .collect();
        // A queue the workers take from, in the hook table's order: no worker idles while
        // another has a backlog.
        let queue = std::sync::Mutex::new(work.iter_mut());
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(work_len.max(1));
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let next = queue.lock().ok().and_then(|mut q| q.next());
                            let Some((name, tracepoint, program)) = next else {
                                break;
                            };
                            let started = Instant::now();
                            let result = verify_one(program, tracepoint, btf);
                            let insns = program
                                .info()
                                .ok()
                                .and_then(|i| i.verified_instruction_count());
                            log::debug!(
                                "{name} verified in {:?} ({insns:?} instructions)",
                                started.elapsed()
                            );
                            done.push((name.clone(), result));
                        }
                        done
                    })
                })
                .collect();
            for handle in handles {
                if let Ok(batch) = handle.join() {
                    results.extend(batch);
                }
            }
        });
        results
    }

    fn attach(&mut self, name: &str) -> Result<(), String> {
        let program: &mut BtfTracePoint = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| format!("program {name} missing from the object"))?
            .try_into()
            .map_err(|e: ProgramError| e.to_string())?;
        program
            .attach()
            .map(|_| ())
            .map_err(|e| format!("attaching: {e}"))
    }
}

/// Verifies one program against `tracepoint`; the error is the verifier's reason.
fn verify_one(program: &mut Program, tracepoint: &str, btf: &aya::Btf) -> Result<(), String> {
    let program: &mut BtfTracePoint = program
        .try_into()
        .map_err(|e: ProgramError| e.to_string())?;
    program.load(tracepoint, btf).map_err(|e| {
        log::debug!("{tracepoint}: {e}");
        refusal(&e)
    })
}

/// One line saying why the kernel refused a program.
fn refusal(error: &ProgramError) -> String {
    match error {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            match hooks::verifier_reason(&log) {
                Some(reason) => format!("the verifier refused it: {reason} ({io_error})"),
                None => format!("the kernel refused it: {io_error}"),
            }
        }
        other => other.to_string(),
    }
}

/// What `tracer doctor` learns by verifying every program without attaching any.
pub struct Verification {
    pub hooks: Vec<HookStatus>,
    pub missing_members: Vec<Missing>,
}

/// Verifies every program this kernel would get, attaching none.
pub fn verify() -> Result<Verification> {
    let mut prepared = Prepared::new(&ProbeOptions::default())?;
    let (hooks, _) = prepared.load_hooks(false);
    Ok(Verification {
        hooks,
        missing_members: prepared.missing_members,
    })
}

pub struct Probes {
    ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    stats: PerCpuArray<MapData, u64>,
    /// Programs attached, for their skip counters.
    programs: Vec<(String, Role)>,
    pub hooks: Vec<HookStatus>,
    pub missing_members: Vec<Missing>,
    /// `enum sk_rst_reason` value → name, from this kernel's BTF.
    pub reset_reasons: BTreeMap<u32, String>,
    /// `enum skb_drop_reason` value → name, from this kernel's BTF.
    pub drop_reasons: BTreeMap<u32, String>,
    cgroup_filter: bool,
}

impl Probes {
    /// Loads and attaches every program this kernel supports. Must run inside a tokio
    /// runtime (the ring buffer is polled through epoll).
    pub fn load(options: &ProbeOptions) -> Result<Self> {
        let mut prepared = Prepared::new(options)?;
        let (hooks, programs) = prepared.load_hooks(true);
        if let Some(set_state) = hooks
            .iter()
            .find(|h| h.tracepoint == "inet_sock_set_state" && !h.attached)
        {
            anyhow::bail!(
                "cannot attach to sock:inet_sock_set_state, which tracing needs: {}",
                set_state.problem.as_deref().unwrap_or("unknown reason")
            );
        }
        let Prepared {
            mut ebpf,
            kernel_btf,
            missing_members,
            btf,
            ..
        } = prepared;
        // Before the ring buffer is mapped (its pages count as this process's memory).
        release_startup_memory(btf);
        let ring: RingBuf<MapData> = ebpf
            .take_map("EVENTS")
            .context("EVENTS map missing")?
            .try_into()?;
        let stats: PerCpuArray<MapData, u64> = ebpf
            .take_map("STATS")
            .context("STATS map missing")?
            .try_into()?;
        let reset_reasons = enum_names(&kernel_btf, "sk_rst_reason", "SK_RST_REASON_");
        let drop_reasons = enum_names(&kernel_btf, "skb_drop_reason", "SKB_DROP_REASON_");
        Ok(Self {
            ebpf,
            // SAFETY: the RingBuf owns its map fd and keeps it open for as long as it lives.
            ring: unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                .map_err(|e| anyhow!("registering the ring buffer with epoll: {e}"))?,
            stats,
            programs,
            hooks,
            missing_members,
            reset_reasons,
            drop_reasons,
            cgroup_filter: options.cgroup_filter,
        })
    }

    /// Waits until events are available, then appends every available one to `out`.
    pub async fn read_batch(&mut self, out: &mut Vec<RawEvent>) -> Result<()> {
        let mut guard = self.ring.readable_mut().await?;
        drain_ring(guard.get_inner_mut(), out);
        guard.clear_ready();
        Ok(())
    }

    /// Drains whatever is in the ring buffer without waiting (used at shutdown).
    pub fn drain(&mut self, out: &mut Vec<RawEvent>) {
        drain_ring(self.ring.get_mut(), out);
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
            skipped: self
                .recursion_misses()
                .iter()
                .filter(|(_, role, _)| *role == Role::Primary)
                .map(|(_, _, misses)| misses)
                .sum(),
            rescued: sum(stat::RESCUED)?,
        })
    }

    /// Each attached program's `recursion_misses` (0 where the kernel does not count them:
    /// before 5.12).
    fn recursion_misses(&self) -> Vec<(&str, Role, u64)> {
        self.programs
            .iter()
            .filter_map(|(name, role)| {
                let program = self.ebpf.program(name)?;
                let fd = program.fd().ok()?.as_fd().as_raw_fd();
                Some((name.as_str(), *role, fdinfo_field(fd, "recursion_misses")?))
            })
            .collect()
    }

    /// Programs whose hits the kernel skipped, with the counts (for diagnoses).
    pub fn skips_by_program(&self) -> Vec<(String, u64)> {
        self.recursion_misses()
            .into_iter()
            .filter(|(_, _, misses)| *misses > 0)
            .map(|(name, _, misses)| (name.to_owned(), misses))
            .collect()
    }

    /// The kernel's side of the owner filter, where userspace writes its decision per
    /// cgroup; None when the owner filter is off. Taken once.
    pub fn cgroup_decisions(&mut self) -> Result<Option<CgroupDecisionMap>> {
        if !self.cgroup_filter {
            return Ok(None);
        }
        let map = self
            .ebpf
            .take_map("FILTER_CGROUPS")
            .context("FILTER_CGROUPS map missing")?;
        Ok(Some(CgroupDecisionMap(map.try_into()?)))
    }

    /// Each attached program's runs and kernel CPU time, as /proc/self/fdinfo reports them:
    /// counted only while bpf_stats is on (kernel.bpf_stats_enabled), else 0.
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.programs
            .iter()
            .filter_map(|(name, _)| {
                let fd = self.ebpf.program(name)?.fd().ok()?.as_fd().as_raw_fd();
                let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
                let field = |f| fdinfo_value(&text, f).unwrap_or(0);
                Some(ProgramStats {
                    name: name.clone(),
                    run_time_ns: field("run_time_ns"),
                    run_count: field("run_cnt"),
                })
            })
            .collect()
    }

    /// Kernel ids of our loaded programs (for checks that they are gone after drop).
    pub fn program_ids(&self) -> Vec<u32> {
        self.ebpf
            .programs()
            .filter_map(|(_, p)| p.info().ok().map(|i| i.id()))
            .collect()
    }
}

/// The `FILTER_CGROUPS` map: owner cgroup id → 1 (trace it) or 0 (drop in the kernel).
pub struct CgroupDecisionMap(BpfHashMap<MapData, u64, u8>);

impl crate::identity::CgroupDecisions for CgroupDecisionMap {
    fn record(&mut self, cgroup_id: u64, wanted: bool) -> std::io::Result<()> {
        self.0
            .insert(cgroup_id, u8::from(wanted), 0)
            .map_err(std::io::Error::other)
    }
}

/// The names of a kernel enum's values without their common prefix, from BTF (empty when
/// this kernel lacks the enum).
fn enum_names(btf: &KernelBtf, name: &str, prefix: &str) -> BTreeMap<u32, String> {
    btf.enum_values(name)
        .map(|m| {
            m.into_iter()
                .map(|(v, n)| {
                    let short = n.strip_prefix(prefix).unwrap_or(&n);
                    (v as u32, short.to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn drain_ring(ring: &mut RingBuf<MapData>, out: &mut Vec<RawEvent>) {
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<RawEvent>() {
            // SAFETY: the kernel wrote a RawEvent here; read_unaligned copies it out.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<RawEvent>()) });
        }
    }
}

/// A numeric field of /proc/self/fdinfo/FD (BPF programs list `run_cnt`,
/// `recursion_misses`, ...); None when this kernel does not report it.
fn fdinfo_field(fd: i32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    fdinfo_value(&text, field)
}

fn fdinfo_value(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == field)
            .then(|| value.trim().parse().ok())
            .flatten()
    })
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
    if options.cgroup_filter {
        flags |= filter::CGROUP;
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

/// Start-up parsed the kernel's BTF (tens of MB, on several threads): once the programs are
/// loaded, it goes, and so does what the allocator kept of it, so that tracing runs in what
/// it needs.
fn release_startup_memory(btf: aya::Btf) {
    drop(btf);
    // SAFETY: no preconditions; glibc returns free heap pages to the kernel.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0)
    };
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid resource and pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        // Newer kernels do not need it; older ones then fail to create maps with EPERM.
        log::debug!(
            "raising RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_fdinfo() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let fd = file.as_raw_fd();
        // Every fdinfo has `pos` and `flags`.
        assert_eq!(fdinfo_field(fd, "pos"), Some(0));
        assert_eq!(fdinfo_field(fd, "no_such_field"), None);
    }

    #[test]
    fn unhandled_hits_are_skips_not_rescued() {
        let stats = RingStats {
            skipped: 7,
            rescued: 5,
            ..RingStats::default()
        };
        assert_eq!(stats.unhandled(), 2);
        assert_eq!(RingStats::default().unhandled(), 0);
    }
}
