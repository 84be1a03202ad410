//! Cgroup id → [`Identity`], for every event, without a system call in the steady state.
//!
//! The resolver walks the cgroup2 tree once when built, keeping id → identity for every
//! cgroup (up to [`Config::capacity`]). A lookup that hits costs a hash lookup and an `Arc`
//! clone, and touches no file. A miss first looks the id up directly
//! ([`Host::cgroup_path`]: three system calls on a real host, see [`super::host`]), plus one
//! listing of the pod log directory the first time a pod's uid is met unnamed. Where the
//! host cannot look ids up, a miss refreshes instead: one walk of the tree (and a listing of
//! the pod log directory when a pod still lacks its name), at most once per
//! [`Config::refresh_interval`], so a flood of unknown ids cannot cause a walk per event.
//! A miss that comes too soon is remembered; [`Resolver::poll`] (from the event loop's
//! periodic tick) refreshes for it once allowed.
//!
//! Cgroup ids are never reused, so a cached identity never becomes wrong, and:
//! - a cgroup removed after it was seen keeps its last identity (for the sockets that were
//!   in it), until evicted as least recently used;
//! - an id that a walk started after its first lookup did not find never will be (the
//!   cgroup is gone, or outside this cgroup namespace): it is remembered as unknown
//!   ([`Config::unknown_capacity`] of them) and never causes another walk.

use std::{
    collections::HashSet,
    io,
    num::NonZeroUsize,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use lru::LruCache;

use super::{
    Identity,
    host::{Host, SystemHost},
    mount::{self, Cgroup2Mount, unified_path},
    naming::parse_cgroup_path,
    pods::{DEFAULT_POD_LOG_DIR, PodIndex},
};

#[derive(Debug, Clone)]
pub struct Config {
    /// Identities kept; the least recently used is evicted beyond this. About 0.5 KiB
    /// each. Default 8192.
    pub capacity: usize,
    /// Ids remembered as unresolvable, and misses remembered between refreshes. Default
    /// 4096.
    pub unknown_capacity: usize,
    /// Pods indexed from the pod log directory. Default 4096.
    pub pod_capacity: usize,
    /// The least time between two refreshes (walks of the cgroup tree, about 12 µs per
    /// cgroup). Default 1 s.
    pub refresh_interval: Duration,
    /// The kubelet's pod log directory (`--pod-log-dir`). Default `/var/log/pods`.
    pub pod_log_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            capacity: 8192,
            unknown_capacity: 4096,
            pod_capacity: 4096,
            refresh_interval: Duration::from_secs(1),
            pod_log_dir: PathBuf::from(DEFAULT_POD_LOG_DIR),
        }
    }
}

/// Counters, for the exit summary and for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    /// Walks of the cgroup tree (the first one included).
    pub walks: u64,
    /// Misses that came within `refresh_interval` of the last refresh (kept pending).
    pub deferred: u64,
    /// Listings of the pod log directory.
    pub pod_scans: u64,
    /// Calls into the [`Host`]: each is at least one system call. Hits make none.
    pub host_calls: u64,
    /// Identities evicted to stay within `capacity`.
    pub evictions: u64,
    /// Misses looked up directly by id (three system calls each on a real host).
    pub lookups: u64,
    /// Cgroups the last successful walk saw.
    pub cgroups: usize,
    /// Identities held now.
    pub cached: usize,
    /// Ids held now as unresolvable.
    pub unknown: usize,
    /// Pods named by the last listing of the pod log directory.
    pub pods: usize,
}

/// A process's cgroup, from `/proc/PID/cgroup` (for `tracer sockets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessCgroup {
    /// The cgroup's id; 0 when its directory is outside the cgroup2 mount or gone.
    pub cgroup_id: u64,
    pub identity: Arc<Identity>,
}

struct Entry {
    identity: Arc<Identity>,
    /// Seen by the last walk; false once the cgroup is gone (its last identity is kept).
    present: bool,
}

impl Entry {
    fn wants_pod_name(&self) -> bool {
        self.identity.pod.as_ref().is_some_and(|p| p.name.is_none())
    }
}

/// Counts every call into the host: the proof that hits make none.
struct Counted<H> {
    host: H,
    calls: u64,
}

impl<H: Host> Counted<H> {
    fn walk(&mut self, visit: &mut dyn FnMut(u64, &str)) -> io::Result<()> {
        self.calls += 1;
        self.host.walk_cgroups(visit)
    }

    fn cgroup_id(&mut self, path: &str) -> io::Result<u64> {
        self.calls += 1;
        self.host.cgroup_id(path)
    }

    fn pod_log_dirs(&mut self) -> io::Result<Vec<String>> {
        self.calls += 1;
        self.host.pod_log_dirs()
    }

    fn proc_cgroup(&mut self, pid: u32) -> io::Result<String> {
        self.calls += 1;
        self.host.proc_cgroup(pid)
    }

    fn cgroup_path(&mut self, cgroup_id: u64) -> io::Result<Option<String>> {
        self.calls += 1;
        self.host.cgroup_path(cgroup_id)
    }
}

/// Cgroup id → [`Identity`]. Not shared between threads: the event loop owns it.
pub struct Resolver<H: Host = SystemHost> {
    host: Counted<H>,
    config: Config,
    cache: LruCache<u64, Entry>,
    unknown: LruCache<u64, ()>,
    /// Misses since the last refresh.
    pending: HashSet<u64>,
    pods: PodIndex,
    /// Pod uids a listing of the pod log directory has already looked for.
    pods_looked_for: HashSet<String>,
    /// Whether the host can look ids up directly (until it says it cannot).
    direct: bool,
    last_refresh: Option<Instant>,
    last_pod_scan: Option<Instant>,
    stats: Stats,
}

impl Resolver<SystemHost> {
    /// The resolver for this host: finds the cgroup2 mount in `/proc/self/mountinfo` and
    /// walks its tree once.
    pub fn new(config: Config) -> io::Result<Resolver<SystemHost>> {
        let host = SystemHost::new(mount::discover()?, config.pod_log_dir.clone());
        Ok(Resolver::with_host(host, config))
    }

    pub fn mount(&self) -> &Cgroup2Mount {
        &self.host.host.mount
    }
}

impl<H: Host> Resolver<H> {
    /// A resolver over `host`, its first walk done.
    pub fn with_host(host: H, config: Config) -> Resolver<H> {
        let nonzero = |n: usize| NonZeroUsize::new(n.max(1)).expect("at least 1");
        let mut resolver = Resolver {
            host: Counted { host, calls: 0 },
            cache: LruCache::new(nonzero(config.capacity)),
            unknown: LruCache::new(nonzero(config.unknown_capacity)),
            pending: HashSet::new(),
            pods: PodIndex::new(config.pod_capacity),
            pods_looked_for: HashSet::new(),
            direct: true,
            last_refresh: None,
            last_pod_scan: None,
            stats: Stats::default(),
            config,
        };
        resolver.refresh();
        resolver
    }

    /// The identity of cgroup `cgroup_id` (0: unknown owner → None). A hit makes no system
    /// call. A miss looks the id up directly where the host can; else it refreshes if the
    /// last refresh is at least `refresh_interval` old, or returns None and leaves the id
    /// for [`Resolver::poll`].
    pub fn resolve(&mut self, cgroup_id: u64) -> Option<Arc<Identity>> {
        if cgroup_id == 0 {
            return None;
        }
        if let Some(entry) = self.cache.get(&cgroup_id) {
            self.stats.hits += 1;
            return Some(entry.identity.clone());
        }
        self.stats.misses += 1;
        if self.unknown.get(&cgroup_id).is_some() {
            return None;
        }
        if let Some(found) = self.look_up(cgroup_id) {
            return found;
        }
        if self.pending.len() < self.config.unknown_capacity {
            self.pending.insert(cgroup_id);
        }
        if !self.refresh_due() {
            self.stats.deferred += 1;
            return None;
        }
        self.refresh();
        self.cache.get(&cgroup_id).map(|e| e.identity.clone())
    }

    /// Refreshes for the misses that came too soon, once a refresh is due; call it from a
    /// periodic tick. Returns how many of those ids resolve now.
    pub fn poll(&mut self) -> usize {
        if self.pending.is_empty() || !self.refresh_due() {
            return 0;
        }
        let pending: Vec<u64> = self.pending.iter().copied().collect();
        self.refresh();
        pending.iter().filter(|id| self.cache.contains(*id)).count()
    }

    /// Every identity held, with its cgroup id (most recently used first; does not count
    /// as a use).
    pub fn identities(&self) -> impl Iterator<Item = (u64, &Arc<Identity>)> {
        self.cache.iter().map(|(id, entry)| (*id, &entry.identity))
    }

    /// True when cgroup `cgroup_id` was resolved once and a later walk no longer found it
    /// (its last identity is still returned).
    pub fn gone(&self, cgroup_id: u64) -> bool {
        self.cache.peek(&cgroup_id).is_some_and(|e| !e.present)
    }

    /// The cgroup of process `pid` from `/proc/PID/cgroup` (two system calls: the read and a
    /// `stat` of its directory for the id; the identity is cached by id). None when the
    /// process is gone or has no cgroup v2 line.
    pub fn resolve_pid(&mut self, pid: u32) -> Option<ProcessCgroup> {
        let text = self.host.proc_cgroup(pid).ok()?;
        let path = unified_path(&text)?.to_owned();
        let Ok(cgroup_id) = self.host.cgroup_id(&path) else {
            return Some(ProcessCgroup {
                cgroup_id: 0,
                identity: Arc::new(self.identify_now(&path)),
            });
        };
        if let Some(entry) = self.cache.get(&cgroup_id) {
            self.stats.hits += 1;
            return Some(ProcessCgroup {
                cgroup_id,
                identity: entry.identity.clone(),
            });
        }
        self.stats.misses += 1;
        let identity = Arc::new(self.identify_now(&path));
        self.insert(cgroup_id, identity.clone());
        self.pending.remove(&cgroup_id);
        self.unknown.pop(&cgroup_id);
        Some(ProcessCgroup {
            cgroup_id,
            identity,
        })
    }

    pub fn stats(&self) -> Stats {
        Stats {
            host_calls: self.host.calls,
            cached: self.cache.len(),
            unknown: self.unknown.len(),
            pods: self.pods.len(),
            ..self.stats
        }
    }

    pub fn host(&self) -> &H {
        &self.host.host
    }

    /// A direct lookup of a missed id: Some(the answer), or None when the host cannot look
    /// ids up (the caller falls back to a refresh).
    fn look_up(&mut self, cgroup_id: u64) -> Option<Option<Arc<Identity>>> {
        if !self.direct {
            return None;
        }
        self.stats.lookups += 1;
        match self.host.cgroup_path(cgroup_id) {
            Ok(Some(path)) => {
                let identity = Arc::new(self.identify_now(&path));
                self.insert(cgroup_id, identity.clone());
                self.pending.remove(&cgroup_id);
                Some(Some(identity))
            }
            Ok(None) => {
                // Gone, or outside the mount: a walk would not find it either.
                self.unknown.put(cgroup_id, ());
                self.pending.remove(&cgroup_id);
                Some(None)
            }
            Err(e) => {
                if matches!(
                    e.kind(),
                    io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
                ) {
                    log::debug!("cgroup identity: no lookups by id on this host ({e}): walking");
                    self.direct = false;
                }
                None
            }
        }
    }

    fn refresh_due(&self) -> bool {
        self.last_refresh
            .is_none_or(|t| self.host.host.now().duration_since(t) >= self.config.refresh_interval)
    }

    fn insert(&mut self, cgroup_id: u64, identity: Arc<Identity>) {
        let entry = Entry {
            identity,
            present: true,
        };
        if let Some((evicted, _)) = self.cache.push(cgroup_id, entry)
            && evicted != cgroup_id
        {
            self.stats.evictions += 1;
        }
    }

    /// Walks the cgroup tree: updates the cached entries (present or gone, renamed), adds
    /// the pending misses (evicting if full) and other cgroups while there is room; then
    /// names the pods that lack a name from the pod log directory. Pod log directories are
    /// created before any of the pod's containers, so a listing after the walk names every
    /// pod the walk found (if the kubelet keeps its logs there).
    fn refresh(&mut self) {
        self.last_refresh = Some(self.host.host.now());
        self.stats.walks += 1;
        let mut seen: HashSet<u64> = HashSet::new();
        let mut added: Vec<(u64, Identity)> = Vec::new();
        let Resolver {
            host,
            cache,
            pending,
            pods,
            ..
        } = self;
        let mut room = cache.cap().get().saturating_sub(cache.len());
        let walked = host.walk(&mut |id, path| {
            seen.insert(id);
            if let Some(entry) = cache.peek_mut(&id) {
                entry.present = true;
                if entry.identity.cgroup_path != path {
                    // Renamed (cgroup directories can be renamed in place).
                    entry.identity = Arc::new(identify(path, pods));
                }
            } else if pending.contains(&id) || room > 0 {
                room = room.saturating_sub(1);
                added.push((id, identify(path, pods)));
            }
        });
        if let Err(e) = walked {
            log::warn!("cgroup identity: walking the cgroup2 tree failed: {e}");
            return;
        }
        self.stats.cgroups = seen.len();
        for (id, entry) in self.cache.iter_mut() {
            entry.present = seen.contains(id);
        }
        for (id, identity) in added {
            self.insert(id, Arc::new(identity));
        }
        for id in std::mem::take(&mut self.pending) {
            if !self.cache.contains(&id) {
                self.unknown.put(id, ());
            }
        }
        if self.cache.iter().any(|(_, e)| e.wants_pod_name()) {
            self.scan_pods();
            for (_, entry) in self.cache.iter_mut() {
                if entry.wants_pod_name() {
                    let mut identity = (*entry.identity).clone();
                    if identity.pod.as_mut().is_some_and(|p| self.pods.name(p)) {
                        entry.identity = Arc::new(identity);
                    } else if let Some(pod) = &identity.pod
                        && self.pods_looked_for.len() < self.config.pod_capacity
                    {
                        self.pods_looked_for.insert(pod.uid.clone());
                    }
                }
            }
        }
    }

    fn scan_pods(&mut self) {
        self.last_pod_scan = Some(self.host.host.now());
        self.stats.pod_scans += 1;
        match self.host.pod_log_dirs() {
            Ok(dirs) => self.pods.rebuild(dirs),
            // No kubelet logs here (not a node, or not mounted): pods keep their uids.
            Err(_) => self.pods.rebuild([]),
        }
    }

    /// The identity of `path`, naming its pod from a fresh listing of the pod log directory
    /// if the index lacks it and either no listing looked for this pod yet (the kubelet
    /// creates the directory before the pod's first container: a new pod is named at once)
    /// or the last listing is at least `refresh_interval` old.
    fn identify_now(&mut self, path: &str) -> Identity {
        let mut identity = identify(path, &self.pods);
        if let Some(pod) = identity.pod.as_mut()
            && pod.name.is_none()
            && (!self.pods_looked_for.contains(&pod.uid)
                || self.last_pod_scan.is_none_or(|t| {
                    self.host.host.now().duration_since(t) >= self.config.refresh_interval
                }))
        {
            self.scan_pods();
            self.pods.name(pod);
            if self.pods_looked_for.len() >= self.config.pod_capacity {
                self.pods_looked_for.clear();
            }
            self.pods_looked_for.insert(pod.uid.clone());
        }
        identity
    }
}

/// The path's identity, its pod named if the index knows it.
fn identify(path: &str, pods: &PodIndex) -> Identity {
    let mut identity = parse_cgroup_path(path);
    if let Some(pod) = identity.pod.as_mut() {
        pods.name(pod);
    }
    identity
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, collections::BTreeMap, rc::Rc};

    use super::*;
    use crate::identity::{QosClass, Runtime};

    const ID: &str = "3f4d5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80";
    const UID: &str = "0b8e5c2a-1f3d-4c6b-9a7e-2d4f6b8a0c1e";
    const UID_: &str = "0b8e5c2a_1f3d_4c6b_9a7e_2d4f6b8a0c1e";

    /// A host in memory: what the test changes, the resolver sees at its next host call.
    #[derive(Default)]
    struct State {
        cgroups: BTreeMap<u64, String>,
        pod_dirs: Vec<String>,
        procs: BTreeMap<u32, String>,
        calls: u64,
        walks: u64,
        walk_fails: bool,
        /// Answers lookups by id (else: unsupported, as on a host without file handles).
        lookups: bool,
        elapsed: Duration,
    }

    #[derive(Clone)]
    struct FakeHost {
        state: Rc<RefCell<State>>,
        start: Instant,
    }

    impl FakeHost {
        fn new(cgroups: &[(u64, &str)]) -> FakeHost {
            let state = State {
                cgroups: cgroups.iter().map(|(i, p)| (*i, p.to_string())).collect(),
                ..State::default()
            };
            FakeHost {
                state: Rc::new(RefCell::new(state)),
                start: Instant::now(),
            }
        }
        fn add(&self, id: u64, path: &str) {
            self.state.borrow_mut().cgroups.insert(id, path.into());
        }
        fn remove(&self, id: u64) {
            self.state.borrow_mut().cgroups.remove(&id);
        }
        fn advance(&self, by: Duration) {
            self.state.borrow_mut().elapsed += by;
        }
        fn calls(&self) -> u64 {
            self.state.borrow().calls
        }
        fn walks(&self) -> u64 {
            self.state.borrow().walks
        }
    }

    impl Host for FakeHost {
        fn walk_cgroups(&mut self, visit: &mut dyn FnMut(u64, &str)) -> io::Result<()> {
            let mut state = self.state.borrow_mut();
            state.calls += 1;
            state.walks += 1;
            if state.walk_fails {
                return Err(io::Error::other("mount gone"));
            }
            for (id, path) in &state.cgroups {
                visit(*id, path);
            }
            Ok(())
        }
        fn cgroup_id(&mut self, path: &str) -> io::Result<u64> {
            let mut state = self.state.borrow_mut();
            state.calls += 1;
            state
                .cgroups
                .iter()
                .find(|(_, p)| *p == path)
                .map(|(id, _)| *id)
                .ok_or_else(|| io::ErrorKind::NotFound.into())
        }
        fn pod_log_dirs(&mut self) -> io::Result<Vec<String>> {
            let mut state = self.state.borrow_mut();
            state.calls += 1;
            Ok(state.pod_dirs.clone())
        }
        fn proc_cgroup(&mut self, pid: u32) -> io::Result<String> {
            let mut state = self.state.borrow_mut();
            state.calls += 1;
            state
                .procs
                .get(&pid)
                .cloned()
                .ok_or_else(|| io::ErrorKind::NotFound.into())
        }
        fn cgroup_path(&mut self, cgroup_id: u64) -> io::Result<Option<String>> {
            let mut state = self.state.borrow_mut();
            if !state.lookups {
                return Err(io::ErrorKind::Unsupported.into());
            }
            state.calls += 1;
            Ok(state.cgroups.get(&cgroup_id).cloned())
        }
        fn now(&self) -> Instant {
            self.start + self.state.borrow().elapsed
        }
    }

    fn config() -> Config {
        Config {
            refresh_interval: Duration::from_secs(1),
            ..Config::default()
        }
    }

    fn docker(n: u8) -> String {
        format!(
            "/system.slice/docker-{}.scope",
            format!("{n:02x}").repeat(32)
        )
    }

    #[test]
    fn resolves_what_the_first_walk_found_and_a_hit_makes_no_host_call() {
        let pod_path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        let host = FakeHost::new(&[
            (1, "/"),
            (2, "/system.slice"),
            (3, "/system.slice/nginx.service"),
            (4, &pod_path),
        ]);
        host.state.borrow_mut().pod_dirs = vec![format!("payments_api-7f9c_{UID}")];
        let mut resolver = Resolver::with_host(host.clone(), config());
        assert_eq!(host.walks(), 1, "built with one walk");
        assert_eq!(resolver.stats().pod_scans, 1, "a pod lacked its name");

        let calls = host.calls();
        let nginx = resolver.resolve(3).unwrap();
        assert_eq!(nginx.unit.as_deref(), Some("nginx.service"));
        let pod = resolver.resolve(4).unwrap();
        let p = pod.pod.as_ref().unwrap();
        assert_eq!(
            (
                p.namespace.as_deref(),
                p.name.as_deref(),
                p.uid.as_str(),
                p.qos
            ),
            (Some("payments"), Some("api-7f9c"), UID, QosClass::Burstable)
        );
        assert_eq!(pod.container.as_ref().unwrap().runtime, Runtime::Containerd);
        assert_eq!(resolver.resolve(1).unwrap().cgroup_path, "/");
        for _ in 0..10_000 {
            for id in 1..=4 {
                assert!(resolver.resolve(id).is_some());
            }
        }
        assert_eq!(host.calls(), calls, "hits touch no file");
        let stats = resolver.stats();
        assert_eq!(stats.host_calls, calls, "every host call is counted");
        assert_eq!(stats.hits, 40_003);
        assert_eq!(stats.misses, 0);
        assert_eq!(resolver.resolve(0), None, "0 is an unknown owner");
        assert_eq!(host.calls(), calls);
    }

    #[test]
    fn lookups_by_id_resolve_new_cgroups_at_once_without_walks() {
        let host = FakeHost::new(&[(1, "/")]);
        host.state.borrow_mut().lookups = true;
        let mut resolver = Resolver::with_host(host.clone(), config());
        // Within the refresh interval of the first walk: no walk, one lookup each.
        host.add(7, &docker(7));
        host.add(8, "/system.slice/nginx.service");
        let calls = host.calls();
        assert_eq!(
            resolver
                .resolve(7)
                .unwrap()
                .container
                .as_ref()
                .unwrap()
                .runtime,
            Runtime::Docker
        );
        assert_eq!(
            resolver.resolve(8).unwrap().unit.as_deref(),
            Some("nginx.service")
        );
        assert_eq!(host.calls(), calls + 2, "one lookup per new cgroup");
        assert_eq!(host.walks(), 1);
        // Cached from then on; an id no cgroup has is looked up once and remembered.
        assert!(resolver.resolve(7).is_some());
        assert_eq!(resolver.resolve(99), None);
        assert_eq!(resolver.resolve(99), None);
        host.advance(Duration::from_secs(10));
        assert_eq!(resolver.resolve(99), None);
        assert_eq!(resolver.poll(), 0);
        assert_eq!(host.calls(), calls + 3);
        let stats = resolver.stats();
        assert_eq!((stats.lookups, stats.walks, stats.deferred), (3, 1, 0));
    }

    #[test]
    fn a_new_pod_is_named_at_once_even_right_after_a_listing() {
        let host = FakeHost::new(&[
            (1, "/"),
            (5, &format!("/kubepods/besteffort/pod{UID}/{ID}")),
        ]);
        host.state.borrow_mut().lookups = true;
        let mut resolver = Resolver::with_host(host.clone(), config());
        assert_eq!(
            resolver.stats().pod_scans,
            1,
            "the walk found an unnamed pod"
        );
        // A second pod starts: its log directory first, then its container.
        let uid2 = "1c9f6d3b-2e4a-4d7c-8b8f-3e5a7c9b1d2f";
        host.state.borrow_mut().pod_dirs = vec![format!("shop_cart-1_{uid2}")];
        host.add(
            6,
            &format!("/kubepods/besteffort/pod{uid2}/{}", "ab".repeat(32)),
        );
        let named = resolver.resolve(6).unwrap();
        assert_eq!(named.to_string(), "pod shop/cart-1 ctr abababababab");
        assert_eq!(resolver.stats().pod_scans, 2);
        // A pod the directory does not name is looked for once, not per container.
        host.add(
            9,
            &format!("/kubepods/besteffort/pod{UID}/{}", "cd".repeat(32)),
        );
        assert_eq!(
            resolver.resolve(9).unwrap().pod.as_ref().unwrap().name,
            None
        );
        host.add(
            10,
            &format!("/kubepods/besteffort/pod{UID}/{}", "ef".repeat(32)),
        );
        assert!(resolver.resolve(10).is_some());
        assert_eq!(
            resolver.stats().pod_scans,
            2,
            "the first listing looked for it"
        );
    }

    #[test]
    fn no_pod_listing_on_a_host_without_pods() {
        let host = FakeHost::new(&[(1, "/"), (3, "/system.slice/nginx.service")]);
        let resolver = Resolver::with_host(host.clone(), config());
        assert_eq!(resolver.stats().pod_scans, 0);
        assert_eq!(host.calls(), 1, "one walk, nothing else");
    }

    #[test]
    fn a_cgroup_created_later_resolves_on_a_miss() {
        let host = FakeHost::new(&[(1, "/")]);
        let mut resolver = Resolver::with_host(host.clone(), config());
        host.add(7, &docker(7));
        host.advance(Duration::from_secs(1));
        let identity = resolver.resolve(7).expect("refreshed on the miss");
        assert_eq!(
            identity.container.as_ref().unwrap().runtime,
            Runtime::Docker
        );
        assert_eq!(host.walks(), 2);
        assert!(!resolver.gone(7));
    }

    #[test]
    fn misses_are_rate_limited_and_resolved_by_poll() {
        let host = FakeHost::new(&[(1, "/")]);
        let mut resolver = Resolver::with_host(host.clone(), config());
        host.add(7, &docker(7));
        host.advance(Duration::from_millis(500));
        let calls = host.calls();
        // A new cgroup and a flood of ids nobody has: no walk yet.
        assert_eq!(resolver.resolve(7), None);
        for id in 1000..11_000 {
            assert_eq!(resolver.resolve(id), None);
        }
        assert_eq!(host.calls(), calls, "no walk before the interval");
        assert_eq!(resolver.poll(), 0, "not due yet");
        assert_eq!(resolver.stats().deferred, 10_001);
        host.advance(Duration::from_millis(500));
        assert_eq!(resolver.poll(), 1, "the new cgroup, once due");
        assert_eq!(host.walks(), 2, "one walk for all of them");
        assert!(resolver.resolve(7).is_some());
        // The flood ids a walk did not find are known unknown: no more walks for them,
        // however long later.
        host.advance(Duration::from_secs(60));
        let calls = host.calls();
        // 7 and the first 4095 flood ids were remembered (unknown_capacity 4096).
        for id in 1000..(1000 + 4095) {
            assert_eq!(resolver.resolve(id), None);
        }
        assert_eq!(resolver.poll(), 0);
        assert_eq!(host.calls(), calls);
        assert_eq!(resolver.stats().unknown, 4095);
    }

    #[test]
    fn an_id_the_walk_cannot_find_costs_at_most_one_walk_per_interval() {
        let host = FakeHost::new(&[(1, "/")]);
        let mut resolver = Resolver::with_host(
            host.clone(),
            Config {
                unknown_capacity: 4,
                ..config()
            },
        );
        // Ten times as many distinct unknown ids as are remembered, one per millisecond,
        // for 10 s: one walk per second at most.
        for id in 100..10_100 {
            host.advance(Duration::from_millis(1));
            resolver.resolve(id);
            resolver.poll();
        }
        assert!(host.walks() <= 11, "{} walks", host.walks());
        assert!(resolver.stats().unknown <= 4);
    }

    #[test]
    fn a_removed_cgroup_keeps_its_last_identity() {
        let host = FakeHost::new(&[(1, "/"), (7, &docker(7))]);
        let mut resolver = Resolver::with_host(host.clone(), config());
        let before = resolver.resolve(7).unwrap();
        host.remove(7);
        host.add(8, &docker(8));
        host.advance(Duration::from_secs(1));
        assert!(resolver.resolve(8).is_some(), "a refresh happened");
        assert!(resolver.gone(7));
        assert_eq!(resolver.resolve(7), Some(before), "last identity kept");
        assert!(!resolver.gone(8));
    }

    #[test]
    fn a_failed_walk_marks_nothing_gone() {
        let host = FakeHost::new(&[(1, "/"), (7, &docker(7))]);
        let mut resolver = Resolver::with_host(host.clone(), config());
        host.state.borrow_mut().walk_fails = true;
        host.advance(Duration::from_secs(1));
        assert_eq!(resolver.resolve(9), None);
        assert!(!resolver.gone(7));
        assert!(resolver.resolve(7).is_some());
        // Still pending: the next walk that works finds it.
        host.state.borrow_mut().walk_fails = false;
        host.add(9, &docker(9));
        host.advance(Duration::from_secs(1));
        assert_eq!(resolver.poll(), 1);
    }

    #[test]
    fn bounded_by_capacity_evicting_the_least_recently_used() {
        let host = FakeHost::new(&[(1, &docker(1)), (2, &docker(2)), (3, &docker(3))]);
        let mut resolver = Resolver::with_host(
            host.clone(),
            Config {
                capacity: 2,
                ..config()
            },
        );
        assert_eq!(resolver.stats().cached, 2, "the first walk fills what fits");
        assert_eq!(resolver.stats().cgroups, 3);
        let calls = host.calls();
        assert!(resolver.resolve(1).is_some());
        assert!(resolver.resolve(2).is_some());
        assert!(
            resolver.resolve(1).is_some(),
            "1 is now the most recently used"
        );
        assert_eq!(host.calls(), calls);
        host.advance(Duration::from_secs(1));
        assert!(resolver.resolve(3).is_some(), "walked for it, evicting 2");
        let stats = resolver.stats();
        assert_eq!(stats.cached, 2);
        assert_eq!(stats.evictions, 1);
        let calls = host.calls();
        assert!(resolver.resolve(1).is_some());
        assert!(resolver.resolve(3).is_some());
        assert_eq!(host.calls(), calls, "1 and 3 are held");
        host.advance(Duration::from_secs(1));
        assert!(resolver.resolve(2).is_some(), "2 comes back with a walk");
        assert_eq!(host.calls(), calls + 1);
    }

    #[test]
    fn pods_named_later_and_names_kept_after_the_log_dir_goes() {
        let pod_path = format!("/kubepods/besteffort/pod{UID}/{ID}");
        let host = FakeHost::new(&[(1, "/"), (5, &pod_path)]);
        let mut resolver = Resolver::with_host(host.clone(), config());
        let unnamed = resolver.resolve(5).unwrap();
        assert_eq!(unnamed.pod.as_ref().unwrap().name, None);
        assert_eq!(unnamed.to_string(), format!("pod {UID} ctr 3f4d5e6a7b8c"));
        // The kubelet's log directory appears; the next refresh names the pod.
        host.state.borrow_mut().pod_dirs = vec![format!("shop_cart-5d8b6_{UID}")];
        host.add(6, &docker(6));
        host.advance(Duration::from_secs(1));
        resolver.resolve(6);
        let named = resolver.resolve(5).unwrap();
        assert_eq!(named.to_string(), "pod shop/cart-5d8b6 ctr 3f4d5e6a7b8c");
        // Pod deleted: directory and cgroup gone, the name stays.
        host.state.borrow_mut().pod_dirs.clear();
        host.remove(5);
        host.add(7, &docker(7));
        host.advance(Duration::from_secs(1));
        resolver.resolve(7);
        assert!(resolver.gone(5));
        assert_eq!(resolver.resolve(5), Some(named));
    }

    #[test]
    fn a_renamed_cgroup_gets_its_new_path() {
        let host = FakeHost::new(&[(1, "/"), (7, "/system.slice/old.service")]);
        let mut resolver = Resolver::with_host(host.clone(), config());
        host.add(7, "/system.slice/new.service");
        host.add(8, &docker(8));
        host.advance(Duration::from_secs(1));
        resolver.resolve(8);
        assert_eq!(
            resolver.resolve(7).unwrap().unit.as_deref(),
            Some("new.service")
        );
    }

    #[test]
    fn process_cgroup_from_proc() {
        let path = format!("/kubepods.slice/kubepods-pod{UID_}.slice/crio-{ID}.scope");
        let host = FakeHost::new(&[(1, "/")]);
        host.state.borrow_mut().procs = BTreeMap::from([
            (42, format!("12:memory:/x\n0::{path}\n")),
            (43, "0::/elsewhere\n".to_owned()),
            (44, "4:memory:/v1-only\n".to_owned()),
        ]);
        host.state.borrow_mut().pod_dirs = vec![format!("kube-system_coredns-1_{UID}")];
        let mut resolver = Resolver::with_host(host.clone(), config());
        host.add(9, &path);
        let found = resolver.resolve_pid(42).unwrap();
        assert_eq!(found.cgroup_id, 9);
        assert_eq!(
            found.identity.to_string(),
            "pod kube-system/coredns-1 ctr 3f4d5e6a7b8c"
        );
        assert_eq!(
            found.identity.container.as_ref().unwrap().runtime,
            Runtime::CriO
        );
        // Now cached by id: an event for cgroup 9 hits.
        let calls = host.calls();
        assert_eq!(resolver.resolve(9), Some(found.identity.clone()));
        assert_eq!(host.calls(), calls);
        // A path the mount does not show: identity from the path, no id.
        let elsewhere = resolver.resolve_pid(43).unwrap();
        assert_eq!(
            (elsewhere.cgroup_id, elsewhere.identity.cgroup_path.as_str()),
            (0, "/elsewhere")
        );
        assert_eq!(resolver.resolve_pid(44), None, "no cgroup v2 line");
        assert_eq!(resolver.resolve_pid(45), None, "no such process");
    }
}
