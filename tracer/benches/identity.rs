//! Cost of owner identity resolution: `cargo bench -p tracer --bench identity` (as root for
//! the walks of a real cgroup tree). A measurement, not a check.
//!
//! - a cached hit: the per-event cost in the steady state, and the host calls it made (0);
//! - parsing one path (what a miss adds per new cgroup);
//! - a real walk of the cgroup2 tree (what building a resolver costs), with N extra cgroups
//!   named as kubepods pods (pod slice + two container scopes each) created for the
//!   measurement, and a new cgroup's miss (a lookup by its id: no walk, whatever N).
//!
//! `-- hits N` only builds a resolver on this host and makes N hits, for counting its
//! system calls from outside: `strace -f -c target/release/deps/identity-* hits 1000000`.

use std::{
    cell::RefCell,
    fs, io,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use tracer::identity::{Config, Host, Resolver, mount, parse_cgroup_path};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.first().map(String::as_str) == Some("hits") {
        let n: u64 = args
            .get(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000);
        real_hits(n);
        return;
    }
    hits_in_memory();
    parse_cost();
    match Walks::new() {
        Ok(mut walks) => {
            for n in [0, 300, 3000, 9000] {
                walks.measure(n);
            }
        }
        Err(e) => println!("walks of the real cgroup tree skipped (run as root): {e}"),
    }
}

fn ctr(n: u64) -> String {
    format!("{n:016x}").repeat(4)
}

fn pod_uid(n: u64) -> String {
    format!("{n:08x}_1f3d_4c6b_9a7e_2d4f6b8a0c1e")
}

/// A synthetic tree of `pods` kubepods pods, two containers each.
struct MemoryHost {
    cgroups: Vec<(u64, String)>,
    calls: Rc<RefCell<u64>>,
}

impl Host for MemoryHost {
    fn walk_cgroups(&mut self, visit: &mut dyn FnMut(u64, &str)) -> io::Result<()> {
        *self.calls.borrow_mut() += 1;
        for (id, path) in &self.cgroups {
            visit(*id, path);
        }
        Ok(())
    }
    fn cgroup_id(&mut self, _: &str) -> io::Result<u64> {
        *self.calls.borrow_mut() += 1;
        Err(io::ErrorKind::NotFound.into())
    }
    fn pod_log_dirs(&mut self) -> io::Result<Vec<String>> {
        *self.calls.borrow_mut() += 1;
        Ok(Vec::new())
    }
    fn proc_cgroup(&mut self, _: u32) -> io::Result<String> {
        *self.calls.borrow_mut() += 1;
        Err(io::ErrorKind::NotFound.into())
    }
}

fn hits_in_memory() {
    let mut cgroups = Vec::new();
    let mut id = 100;
    for pod in 0..1000u64 {
        let slice = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
            pod_uid(pod)
        );
        for c in 0..2 {
            id += 1;
            cgroups.push((
                id,
                format!("{slice}/cri-containerd-{}.scope", ctr(pod * 2 + c)),
            ));
        }
    }
    let ids: Vec<u64> = cgroups.iter().map(|(id, _)| *id).collect();
    let calls = Rc::new(RefCell::new(0));
    let mut resolver = Resolver::with_host(
        MemoryHost {
            cgroups,
            calls: calls.clone(),
        },
        Config::default(),
    );
    let before = *calls.borrow();
    let rounds = 5_000;
    let start = Instant::now();
    let mut found = 0usize;
    for _ in 0..rounds {
        for &id in &ids {
            found += usize::from(std::hint::black_box(resolver.resolve(id)).is_some());
        }
    }
    let elapsed = start.elapsed();
    let n = rounds * ids.len();
    assert_eq!(found, n);
    println!(
        "hit: {:.1} ns per resolve ({n} hits over {} cached cgroups); host calls during hits: {}",
        elapsed.as_nanos() as f64 / n as f64,
        ids.len(),
        *calls.borrow() - before
    );
}

fn parse_cost() {
    let path = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
        pod_uid(1),
        ctr(1)
    );
    let n = 200_000;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(parse_cgroup_path(std::hint::black_box(&path)));
    }
    println!(
        "parse: {:.0} ns per kubepods container path",
        start.elapsed().as_nanos() as f64 / n as f64
    );
}

/// N extra cgroups under the real cgroup2 mount, removed on drop.
struct Walks {
    root: PathBuf,
    dirs: Vec<PathBuf>,
    pods: u64,
}

impl Walks {
    fn new() -> io::Result<Walks> {
        let mount = mount::discover()?;
        let root = mount
            .mount_point
            .join(format!("trc-{}-bench-identity", std::process::id()));
        fs::create_dir(&root)?;
        Ok(Walks {
            dirs: vec![root.clone()],
            root,
            pods: 0,
        })
    }

    /// Grows the bench tree to `n` extra cgroups, then times a resolver's first walk and a
    /// new cgroup's miss.
    fn measure(&mut self, n: usize) {
        while self.dirs.len() - 1 < n {
            let pod = self.pods;
            self.pods += 1;
            let slice = self
                .root
                .join(format!("kubepods-burstable-pod{}.slice", pod_uid(pod)));
            self.mkdir(slice.clone());
            for c in 0..2 {
                self.mkdir(slice.join(format!("cri-containerd-{}.scope", ctr(pod * 2 + c))));
            }
        }
        let total = count_dirs(&mount::discover().unwrap().mount_point);
        let start = Instant::now();
        let mut resolver = Resolver::new(Config {
            refresh_interval: Duration::ZERO,
            ..Config::default()
        })
        .expect("resolver");
        let first = start.elapsed();
        // A cgroup created after the walk: looked up by its id.
        let late = self.root.join("late.scope");
        self.mkdir(late.clone());
        let id = fs::metadata(&late).unwrap().ino();
        let start = Instant::now();
        let resolved = resolver.resolve(id);
        let miss = start.elapsed();
        assert!(resolved.is_some(), "late cgroup resolved");
        fs::remove_dir(&late).unwrap();
        self.dirs.pop();
        let stats = resolver.stats();
        println!(
            "walk: {total} cgroups ({} of them the bench's): first walk {:.2} ms ({:.1} µs per cgroup); a new cgroup's miss {:.3} ms ({} lookups by id, {} walks in all, {} host calls)",
            self.dirs.len() - 1,
            first.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e6 / total as f64,
            miss.as_secs_f64() * 1e3,
            stats.lookups,
            stats.walks,
            stats.host_calls,
        );
    }

    fn mkdir(&mut self, dir: PathBuf) {
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.dirs.push(dir);
    }
}

impl Drop for Walks {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

fn count_dirs(dir: &std::path::Path) -> usize {
    1 + fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| count_dirs(&e.path()))
        .sum::<usize>()
}

/// Builds a resolver on this host and makes `n` hits on its own cgroup.
fn real_hits(n: u64) {
    let mut resolver = Resolver::new(Config::default()).expect("resolver");
    let own = resolver
        .resolve_pid(std::process::id())
        .expect("own cgroup");
    let before = resolver.stats().host_calls;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(resolver.resolve(own.cgroup_id));
    }
    println!(
        "{n} hits on {} in {:.1} ms; host calls during hits: {}",
        own.identity,
        start.elapsed().as_secs_f64() * 1e3,
        resolver.stats().host_calls - before
    );
}
