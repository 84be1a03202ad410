//! Owner identities in a tracing session (`live`, `record`): every event's owner gets its
//! container, pod and unit before the event reaches the sinks and the timeline engine (which
//! stays pure: it only carries the `Arc` along with the owner), and the owner filter
//! (`--container`, `--pod`, `--cgroup`) is decided here and handed to the kernel.
//!
//! # The owner filter, in the kernel where it can be
//!
//! The kernel programs know each socket owner's cgroup id, not what it names. So the filter
//! is decided in userspace once per cgroup, and the decision is written to the kernel's
//! cgroup set ([`CgroupDecisions`]):
//! - at start, for every cgroup that exists: their events are dropped in the kernel from
//!   the first one on;
//! - for a cgroup created later (a container started after the tracer), its first events
//!   pass the kernel undecided; the first one that reaches userspace is resolved (a lookup
//!   by id), decided, and the decision written: its later events are dropped in the kernel,
//!   or pass, like the others. Nothing of a wanted container is lost while it is undecided.
//!
//! Events dropped in userspace are counted ([`SessionStats::dropped`]), apart from the
//! kernel's `filtered` counter.

use std::{
    collections::HashMap,
    io,
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use lru::LruCache;
use tracer_common::FILTER_CGROUPS_ENTRIES;

use super::{
    Identity, ProcessCgroup,
    filter::{Decision, OwnerFilter},
    host::{Host, SystemHost},
    resolver::{Config, Resolver, Stats},
};
use crate::{
    event::{Event, Owner, OwnerSource},
    timeline::Verdict,
};

/// The kernel's set of decided cgroups (the `FILTER_CGROUPS` map). A cgroup it does not
/// hold is undecided: its events reach userspace.
pub trait CgroupDecisions {
    fn record(&mut self, cgroup_id: u64, wanted: bool) -> io::Result<()>;
}

/// A decision the kernel may have forgotten (its set is an LRU) is written again when an
/// unwanted event still reaches userspace, at most this often per cgroup.
const RETELL_AFTER: Duration = Duration::from_secs(1);

/// Swept owners resolved by pid (`/proc/PID/cgroup`), kept for later events of their
/// sockets.
const MAX_PIDS: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Decided {
    wanted: bool,
    told: Instant,
}

/// Counts for the exit summary and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionStats {
    /// Events the owner filter dropped in userspace (cgroups the kernel had not been told
    /// about yet, owners whose cgroup could not be resolved).
    pub dropped: u64,
    /// Decisions written to the kernel's cgroup set, and writes that failed.
    pub told_kernel: u64,
    pub kernel_errors: u64,
}

pub struct OwnerIdentities<H: Host = SystemHost> {
    resolver: Option<Resolver<H>>,
    filter: Option<OwnerFilter>,
    kernel: Option<Box<dyn CgroupDecisions>>,
    decisions: LruCache<u64, Decided>,
    by_pid: HashMap<u32, Option<ProcessCgroup>>,
    stats: SessionStats,
}

impl OwnerIdentities<SystemHost> {
    /// Finds the cgroup2 hierarchy and walks it once. With a filter, every cgroup found is
    /// decided in the kernel at once; a host without cgroup v2 is then an error (without a
    /// filter, a warning: owners keep their pid and comm only).
    pub fn new(
        config: Config,
        filter: Option<OwnerFilter>,
        kernel: Option<Box<dyn CgroupDecisions>>,
    ) -> Result<OwnerIdentities> {
        let resolver = match Resolver::new(config) {
            Ok(resolver) => Some(resolver),
            Err(e) => {
                if let Some(filter) = &filter {
                    bail!(
                        "{}: the cgroup v2 hierarchy is needed, and this host does not show it \
                         ({e})",
                        filter.describe().join(" ")
                    );
                }
                eprintln!(
                    "tracer: no cgroup v2 hierarchy ({e}): owners will have no container, pod \
                     or unit"
                );
                None
            }
        };
        Ok(OwnerIdentities::with_resolver(resolver, filter, kernel))
    }
}

impl<H: Host> OwnerIdentities<H> {
    /// Over a resolver already built (None: owners stay as the kernel reported them). With
    /// a filter, every cgroup the resolver holds is decided (and the kernel told) at once.
    pub fn with_resolver(
        resolver: Option<Resolver<H>>,
        filter: Option<OwnerFilter>,
        kernel: Option<Box<dyn CgroupDecisions>>,
    ) -> OwnerIdentities<H> {
        let entries = NonZeroUsize::new(FILTER_CGROUPS_ENTRIES as usize).expect("not zero");
        let mut identities = OwnerIdentities {
            resolver,
            filter,
            kernel,
            decisions: LruCache::new(entries),
            by_pid: HashMap::new(),
            stats: SessionStats::default(),
        };
        if identities.filter.is_some()
            && let Some(resolver) = &identities.resolver
        {
            let known: Vec<(u64, Arc<Identity>)> = resolver
                .identities()
                .map(|(id, identity)| (id, identity.clone()))
                .collect();
            for (id, identity) in known {
                identities.decide(id, &identity);
            }
        }
        identities
    }

    /// Gives the event's owner its identity; false when the owner filter drops the event
    /// (then it must go no further).
    pub fn event(&mut self, event: &mut Event) -> bool {
        match event.process.as_mut() {
            Some(owner) => self.owner(owner),
            None if self.filter.is_some() => {
                self.stats.dropped += 1;
                false
            }
            None => true,
        }
    }

    /// A verdict's owner whose cgroup was not resolved when its events went by (a lookup
    /// deferred on a host that walks) gets another chance.
    pub fn verdict(&mut self, verdict: &mut Verdict) {
        if let Some(owner) = verdict.process.as_mut()
            && owner.container.is_none()
        {
            self.resolve(owner);
        }
    }

    /// From the session's periodic tick: resolves the misses a rate-limited walk deferred.
    pub fn tick(&mut self) {
        if let Some(resolver) = self.resolver.as_mut() {
            resolver.poll();
        }
    }

    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    pub fn resolver_stats(&self) -> Option<Stats> {
        self.resolver.as_ref().map(Resolver::stats)
    }

    /// Gives the owner its identity; false when the owner filter does not want it.
    pub fn owner(&mut self, owner: &mut Owner) -> bool {
        if owner.container.is_none() {
            self.resolve(owner);
        }
        if self.filter.is_none() {
            return true;
        }
        let id = owner.cgroup_id;
        if id != 0
            && let Some(decided) = self.decisions.get_mut(&id)
        {
            if !decided.wanted {
                self.stats.dropped += 1;
                // It came through the kernel: the kernel's set may have evicted it.
                if decided.told.elapsed() >= RETELL_AFTER {
                    decided.told = Instant::now();
                    tell(&mut self.kernel, &mut self.stats, id, false);
                }
            }
            return decided.wanted;
        }
        let wanted = match owner.container.clone() {
            Some(identity) => self.decide(id, &identity),
            None => false,
        };
        if !wanted {
            self.stats.dropped += 1;
        }
        wanted
    }

    fn resolve(&mut self, owner: &mut Owner) {
        let Some(resolver) = self.resolver.as_mut() else {
            return;
        };
        if owner.cgroup_id != 0 {
            owner.container = resolver.resolve(owner.cgroup_id);
        } else if owner.source == OwnerSource::Sweep {
            // Found in /proc by the sweep: the kernel never said which cgroup.
            if self.by_pid.len() >= MAX_PIDS {
                self.by_pid.clear();
            }
            let found = self
                .by_pid
                .entry(owner.pid)
                .or_insert_with(|| resolver.resolve_pid(owner.pid));
            if let Some(found) = found {
                owner.cgroup_id = found.cgroup_id;
                owner.container = Some(found.identity.clone());
            }
        }
    }

    /// The filter's decision for cgroup `id`, remembered and told to the kernel when final.
    fn decide(&mut self, id: u64, identity: &Identity) -> bool {
        let Some(filter) = &self.filter else {
            return true;
        };
        let wanted = match filter.decide(identity) {
            Decision::Wanted => true,
            Decision::NotWanted => false,
            // Its pod may be named later: ask again next time.
            Decision::Undecided => return false,
        };
        if id != 0 {
            self.decisions.put(
                id,
                Decided {
                    wanted,
                    told: Instant::now(),
                },
            );
            tell(&mut self.kernel, &mut self.stats, id, wanted);
        }
        wanted
    }
}

fn tell(
    kernel: &mut Option<Box<dyn CgroupDecisions>>,
    stats: &mut SessionStats,
    id: u64,
    wanted: bool,
) {
    let Some(kernel) = kernel.as_mut() else {
        return;
    };
    match kernel.record(id, wanted) {
        Ok(()) => stats.told_kernel += 1,
        Err(e) => {
            if stats.kernel_errors == 0 {
                log::warn!(
                    "owner filter: writing cgroup {id} to the kernel failed ({e}); its events \
                     are filtered in userspace"
                );
            }
            stats.kernel_errors += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, collections::BTreeMap, rc::Rc};

    use super::*;
    use crate::{
        event::{EventKind, TcpState},
        testing::Sock,
    };

    const UID: &str = "0b8e5c2a-1f3d-4c6b-9a7e-2d4f6b8a0c1e";

    #[derive(Clone, Default)]
    struct Cgroups(Rc<RefCell<BTreeMap<u64, String>>>);

    impl Host for Cgroups {
        fn walk_cgroups(&mut self, visit: &mut dyn FnMut(u64, &str)) -> io::Result<()> {
            for (id, path) in self.0.borrow().iter() {
                visit(*id, path);
            }
            Ok(())
        }
        fn cgroup_id(&mut self, _path: &str) -> io::Result<u64> {
            Err(io::ErrorKind::NotFound.into())
        }
        fn pod_log_dirs(&mut self) -> io::Result<Vec<String>> {
            Ok(vec![format!("payments_api-7f9c_{UID}")])
        }
        fn proc_cgroup(&mut self, _pid: u32) -> io::Result<String> {
            Err(io::ErrorKind::NotFound.into())
        }
        fn cgroup_path(&mut self, cgroup_id: u64) -> io::Result<Option<String>> {
            Ok(self.0.borrow().get(&cgroup_id).cloned())
        }
    }

    #[derive(Clone, Default)]
    struct Kernel(Rc<RefCell<Vec<(u64, bool)>>>);

    impl CgroupDecisions for Kernel {
        fn record(&mut self, cgroup_id: u64, wanted: bool) -> io::Result<()> {
            self.0.borrow_mut().push((cgroup_id, wanted));
            Ok(())
        }
    }

    fn pod_path(n: u8) -> String {
        format!(
            "/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{}.scope",
            UID.replace('-', "_"),
            format!("{n:02x}").repeat(32)
        )
    }

    fn event_of(cgroup_id: u64) -> Event {
        let mut e = Sock::new(1).event(EventKind::StateChange, TcpState::SYN_SENT);
        e.process.as_mut().unwrap().cgroup_id = cgroup_id;
        e
    }

    fn session(
        cgroups: &Cgroups,
        filter: Option<OwnerFilter>,
        kernel: &Kernel,
    ) -> OwnerIdentities<Cgroups> {
        let resolver = Resolver::with_host(cgroups.clone(), Config::default());
        OwnerIdentities::with_resolver(Some(resolver), filter, Some(Box::new(kernel.clone())))
    }

    fn pods(spec: &str) -> Option<OwnerFilter> {
        OwnerFilter::new(&[], &[spec.to_owned()], &[]).unwrap()
    }

    #[test]
    fn without_a_filter_owners_get_their_identity_and_everything_passes() {
        let cgroups = Cgroups::default();
        cgroups.0.borrow_mut().insert(5, pod_path(1));
        let kernel = Kernel::default();
        let mut session = session(&cgroups, None, &kernel);
        let mut e = event_of(5);
        assert!(session.event(&mut e));
        let identity = e.process.as_ref().unwrap().container.clone().unwrap();
        assert_eq!(identity.short().as_deref(), Some("pod payments/api-7f9c"));
        let mut unknown = event_of(77);
        assert!(session.event(&mut unknown), "unresolved, still traced");
        assert_eq!(unknown.process.unwrap().container, None);
        let mut ownerless = event_of(0);
        ownerless.process = None;
        assert!(session.event(&mut ownerless));
        assert!(kernel.0.borrow().is_empty(), "no filter, nothing told");
        // The verdict of an owner resolved late gets its identity.
        let mut verdict = Sock::new(1).verdict(1, crate::timeline::VerdictKind::PeerReset);
        verdict.process.as_mut().unwrap().cgroup_id = 5;
        session.verdict(&mut verdict);
        assert_eq!(verdict.process.unwrap().container, Some(identity));
    }

    #[test]
    fn existing_cgroups_are_decided_in_the_kernel_at_start_and_new_ones_on_first_sight() {
        let cgroups = Cgroups::default();
        cgroups.0.borrow_mut().extend([
            (1, "/".to_owned()),
            (5, pod_path(1)),
            (6, "/system.slice/nginx.service".to_owned()),
        ]);
        let kernel = Kernel::default();
        let mut session = session(&cgroups, pods("payments/api-7f9c"), &kernel);
        let mut told = kernel.0.borrow().clone();
        told.sort();
        assert_eq!(told, [(1, false), (5, true), (6, false)]);
        // A container started later, in the same pod, and another cgroup: decided on their
        // first event, which passes or not like the later ones.
        cgroups.0.borrow_mut().insert(7, pod_path(2));
        cgroups
            .0
            .borrow_mut()
            .insert(8, "/system.slice/other.service".to_owned());
        assert!(session.event(&mut event_of(7)));
        assert!(!session.event(&mut event_of(8)));
        assert!(session.event(&mut event_of(5)));
        assert!(!session.event(&mut event_of(8)), "decided: no second write");
        assert_eq!(kernel.0.borrow()[3..], [(7, true), (8, false)]);
        // Owners the filter cannot place are dropped, never told.
        assert!(!session.event(&mut event_of(99)));
        let mut ownerless = event_of(0);
        ownerless.process = None;
        assert!(!session.event(&mut ownerless));
        assert_eq!(kernel.0.borrow().len(), 5);
        assert_eq!(
            session.stats(),
            SessionStats {
                dropped: 4,
                told_kernel: 5,
                kernel_errors: 0
            }
        );
    }

    #[test]
    fn a_pod_not_named_yet_stays_undecided() {
        let cgroups = Cgroups::default();
        // A pod whose log directory names another pod.
        let other = "1c9f6d3b-2e4a-4d7c-8b8f-3e5a7c9b1d2f";
        cgroups.0.borrow_mut().insert(
            5,
            format!("/kubepods/besteffort/pod{other}/{}", "ab".repeat(32)),
        );
        let kernel = Kernel::default();
        let mut session = session(&cgroups, pods("shop/cart"), &kernel);
        assert!(kernel.0.borrow().is_empty());
        assert!(!session.event(&mut event_of(5)));
        assert!(kernel.0.borrow().is_empty(), "may be named later: not told");
        // By uid it is decided.
        let mut by_uid = self::session(&cgroups, pods("1c9f6d3b"), &kernel);
        assert!(by_uid.event(&mut event_of(5)));
        assert_eq!(kernel.0.borrow()[..], [(5, true)]);
    }
}
