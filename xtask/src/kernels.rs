//! `cargo xtask kernels`: the real-kernel check (`kernel-check`, tests/src/bin/kernel-check.rs)
//! on the kernels users run. Debian's 5.10, 6.1 and 6.12 kernels boot under QEMU (software
//! emulation: no KVM needed) with this machine's root filesystem shared read-only by
//! virtme-ng, so the freshly built binaries run inside as they are; `host` runs the same check
//! on this machine, no VM.
//!
//! Each kernel is judged only by the files its run wrote (xtask/guest/run-check.sh documents
//! them): the VM tool's exit status means nothing (it can be 255 on success). Everything a run
//! leaves stays under target/kernels/runs/<release>/.
//!
//! A fresh Debian 12 gets what it lacks, idempotently: qemu-system-x86 (from
//! bookworm-backports), busybox-static and kmod (virtme-ng's initramfs and depmod), virtme-ng
//! (a venv under target/kernels/ unless `vng` is already on PATH), and the apt suites the
//! kernels come from (bullseye is pinned to priority 100 so nothing installs from it by
//! accident). Kernel packages are downloaded, never installed: `apt-get download` + `dpkg -x`
//! into target/kernels/cache/, reused by later runs.

use std::{
    cmp::Ordering as CmpOrdering,
    collections::{BTreeMap, VecDeque},
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::{cmd_output, has, run, workspace_root};

/// The virtme-ng release this was verified with (installed only when `vng` is not on PATH).
const VIRTME_NG_VERSION: &str = "1.42";
/// Time a VM gets to boot and shut down on top of the check's own limit. Boot to the first
/// command takes 20-30 s under emulation on an idle host, about twice that on a busy one.
const BOOT_ALLOWANCE_SECS: u64 = 120;
/// Lines of the console log and of the check's output shown for a failed kernel.
const CONSOLE_TAIL: usize = 30;
const CHECK_TAIL: usize = 40;

#[derive(clap::Args)]
pub struct Args {
    /// A kernel to run: 5.10, 6.1 or 6.12 (the newest Debian package of that series), an exact
    /// release of one of those series (e.g. 6.1.0-57-amd64), or host (this machine's kernel,
    /// no VM). Repeatable or comma-separated [default: 5.10,6.1,6.12,host]
    #[arg(long = "kernel", value_name = "KERNEL", value_delimiter = ',')]
    kernels: Vec<String>,
    /// VMs at a time [default: the number of CPUs]. `host` runs first, alone.
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Hard limit per kernel in seconds, boot included: the VM is killed when it is reached.
    #[arg(long, default_value_t = 900, value_name = "SECS")]
    timeout: u64,
    /// Memory of each VM (QEMU syntax).
    #[arg(long, default_value = "2G", value_name = "SIZE")]
    memory: String,
    /// Run this program instead of target/release/kernel-check (given the same arguments).
    #[arg(long, value_name = "PATH")]
    check: Option<PathBuf>,
    /// Extra arguments for the check, after `--`.
    #[arg(last = true, value_name = "CHECK_ARGS")]
    check_args: Vec<String>,
}

/// `OUTDIR/result.json`, written by the check.
#[derive(Debug, Deserialize)]
struct CheckResult {
    kernel: String,
    programs_attached: u32,
    programs_total: u32,
    #[serde(default)]
    hooks: Vec<Hook>,
    #[serde(default)]
    scenarios: Vec<Scenario>,
    #[serde(default)]
    wall_seconds: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Hook {
    tracepoint: String,
    #[serde(default)]
    state: Option<String>,
    attached: bool,
    #[serde(default)]
    problem: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Scenario {
    name: String,
    passed: bool,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    seconds: Option<f64>,
}

/// A Debian kernel series: its package names are `{prefix}{digits}{suffix}`.
struct Series {
    name: &'static str,
    prefix: &'static str,
    suffix: &'static str,
    /// The apt suites its packages come from.
    suites: &'static [&'static str],
}

/// Generic `-amd64` flavour only: the `-cloud-amd64` kernels have no 9p, which virtme-ng
/// needs to share the root filesystem.
const SERIES: &[Series] = &[
    Series {
        name: "5.10",
        prefix: "linux-image-5.10.0-",
        suffix: "-amd64",
        suites: &["bullseye", "bullseye-security"],
    },
    Series {
        name: "6.1",
        prefix: "linux-image-6.1.0-",
        suffix: "-amd64",
        suites: &["bookworm", "bookworm-security"],
    },
    Series {
        name: "6.12",
        prefix: "linux-image-6.12.",
        suffix: "+deb12-amd64",
        suites: &["bookworm-security", "bookworm-backports"],
    },
];
const DEFAULT_KERNELS: &[&str] = &["5.10", "6.1", "6.12", "host"];

impl Series {
    fn matches(&self, package: &str) -> bool {
        package
            .strip_prefix(self.prefix)
            .and_then(|rest| rest.strip_suffix(self.suffix))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }
}

enum Wanted {
    Host,
    Newest(&'static Series),
    Exact(&'static Series, String),
}

fn parse_wanted(arg: &str) -> Result<Wanted> {
    if arg == "host" {
        return Ok(Wanted::Host);
    }
    if let Some(series) = SERIES.iter().find(|s| s.name == arg) {
        return Ok(Wanted::Newest(series));
    }
    let package = if arg.starts_with("linux-image-") {
        arg.to_string()
    } else {
        format!("linux-image-{arg}")
    };
    match SERIES.iter().find(|s| s.matches(&package)) {
        Some(series) => Ok(Wanted::Exact(series, package)),
        None => bail!(
            "unknown kernel {arg:?}: use 5.10, 6.1, 6.12, host, or a release of those series \
             such as 6.1.0-57-amd64 or 6.12.95+deb12-amd64"
        ),
    }
}

/// One kernel to run.
struct Job {
    release: String,
    /// `None`: the host's own kernel, no VM.
    vmlinuz: Option<PathBuf>,
}

/// What the host saw of a run.
enum End {
    Exited(ExitStatus),
    TimedOut,
    Interrupted,
    SpawnFailed(String),
}

struct Outcome {
    release: String,
    run_dir: PathBuf,
    wall: Duration,
    result: Option<CheckResult>,
    problems: Vec<String>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn line(&self) -> String {
        let (programs, scenarios) = match &self.result {
            Some(r) => (
                format!("{}/{}", r.programs_attached, r.programs_total),
                format!(
                    "{}/{}",
                    r.scenarios.iter().filter(|s| s.passed).count(),
                    r.scenarios.len()
                ),
            ),
            None => ("?".to_string(), "?".to_string()),
        };
        format!(
            "{:<24} programs {:>5}   scenarios {:>5}   {:>4} s   {}",
            self.release,
            programs,
            scenarios,
            self.wall.as_secs(),
            if self.ok() { "ok" } else { "FAILED" }
        )
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn kernels(args: Args) -> Result<()> {
    crate::require_root(
        "the check loads kernel programs and creates network namespaces, and the VM tools and \
         kernels are installed with apt",
    )?;
    let wanted = if args.kernels.is_empty() {
        DEFAULT_KERNELS.iter().map(|k| parse_wanted(k)).collect()
    } else {
        args.kernels
            .iter()
            .map(|k| parse_wanted(k))
            .collect::<Result<Vec<_>>>()
    }?;
    // A VM's single emulated CPU keeps at most one host core busy, less while it boots or its
    // guest waits on timers. Measured on 2 cores shared with other work (load average 2-7),
    // with a minimal check (boot, tracer start-up, one connection) on 5.10, 6.1 and 6.12: one
    // VM at a time 128-169 s in all, two at a time 75-106 s; each VM took 1.2-1.5x longer,
    // the whole a third less, also with ~15 s more guest CPU work per VM. Hence one VM per CPU:
    // emulation already makes the guest 10-50x slower, so the check's deadlines must be
    // generous anyway, and `--jobs 1` is there for a loaded machine.
    let parallel = match args.jobs {
        Some(0) => bail!("--jobs must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let root = workspace_root();
    // The paths travel on the guest kernel's command line (virtme-ng's --rwdir): no spaces.
    if root.to_string_lossy().contains(char::is_whitespace) {
        bail!(
            "the workspace path {} contains whitespace, which the VM's command line cannot carry",
            root.display()
        );
    }

    // Build first: a compile error should not wait for downloads.
    crate::toolchain::ensure()?;
    crate::build_tracer(true)?;
    let mut build = Command::new("cargo");
    build.args(["build", "--release", "--package", "tracer-tests"]);
    if args.check.is_none() {
        build.args(["--bin", "kernel-check"]);
    }
    run(&mut build).context(
        "building the real-kernel check (tests/src/bin/kernel-check.rs); \
         `--check PATH` runs another program instead",
    )?;
    let release_dir = root.join("target/release");
    let check = match &args.check {
        Some(path) => {
            fs::canonicalize(path).with_context(|| format!("the check {}", path.display()))?
        }
        None => release_dir.join("kernel-check"),
    };
    crate::ensure_test_tools()?;

    let kernels_dir = root.join("target/kernels");
    let mut apt = Apt::default();
    // Every suite the kernels asked for at once: one `apt-get update` at most.
    let suites: Vec<&str> = wanted
        .iter()
        .flat_map(|w| match w {
            Wanted::Host => &[][..],
            Wanted::Newest(series) | Wanted::Exact(series, _) => series.suites,
        })
        .copied()
        .collect();
    apt.ensure_suites(&suites)?;
    let needs_vm = !suites.is_empty();
    let vng = if needs_vm {
        Some(ensure_vm_tools(&mut apt, &kernels_dir)?)
    } else {
        None
    };

    // Resolve and fetch every kernel before booting any, so that a missing package fails fast.
    let cache = kernels_dir.join("cache");
    let mut kernels: Vec<Job> = Vec::new();
    for w in &wanted {
        let job = prepare(w, &mut apt, &cache)?;
        if !kernels.iter().any(|j| j.release == job.release) {
            kernels.push(job);
        }
    }

    let ctx = RunCtx {
        script: root.join("xtask/guest/run-check.sh"),
        check,
        tracer: release_dir.join("tracer"),
        check_args: args.check_args.clone(),
        timeout: Duration::from_secs(args.timeout),
        memory: args.memory.clone(),
        vng,
        runs_dir: kernels_dir.join("runs"),
    };
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let vms = kernels.iter().filter(|j| j.vmlinuz.is_some()).count();
    eprintln!(
        "xtask: {} kernel(s), VMs {} at a time, at most {} s each; artefacts in {}",
        kernels.len(),
        parallel.min(vms.max(1)),
        args.timeout,
        ctx.runs_dir.display()
    );
    let outcomes = run_all(&kernels, &ctx, parallel);

    println!();
    for o in outcomes.iter().filter(|o| !o.ok()) {
        print_failure(o);
    }
    println!("kernel matrix:");
    for o in &outcomes {
        println!("  {}", o.line());
    }
    let failed = outcomes.iter().filter(|o| !o.ok()).count();
    println!(
        "{} of {} kernels ok; artefacts in {}",
        outcomes.len() - failed,
        outcomes.len(),
        ctx.runs_dir.display()
    );
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    if failed > 0 {
        bail!("{failed} of {} kernels failed", outcomes.len());
    }
    Ok(())
}

/// The kernel asked for, resolved and (for a VM) downloaded into the cache.
fn prepare(wanted: &Wanted, apt: &mut Apt, cache: &Path) -> Result<Job> {
    let (series, package) = match wanted {
        Wanted::Host => {
            return Ok(Job {
                release: cmd_output(Command::new("uname").arg("-r"))?
                    .trim()
                    .to_string(),
                vmlinuz: None,
            });
        }
        Wanted::Newest(series) => (Some(*series), newest_package(series, apt, cache)?),
        Wanted::Exact(_, package) => (None, package.clone()),
    };
    match fetch_kernel(&package, cache) {
        Ok(job) => Ok(job),
        // Superseded since the package lists were fetched, hence gone from the mirror.
        Err(e) if !apt.updated => {
            eprintln!("xtask: {e:#}; updating the package lists");
            apt.update()?;
            let package = match series {
                Some(series) => newest_package(series, apt, cache)?,
                None => package,
            };
            fetch_kernel(&package, cache)
        }
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// apt: suites, packages

#[derive(Default)]
struct Apt {
    updated: bool,
}

fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

fn host_codename() -> String {
    fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_string())
        .unwrap_or_default()
}

impl Apt {
    fn update(&mut self) -> Result<()> {
        run(apt_get().args(["update", "-q"]))?;
        self.updated = true;
        Ok(())
    }

    /// `apt-get install`, with one `apt-get update` and retry if the lists are stale.
    fn install(&mut self, packages: &[&str], target_release: Option<&str>) -> Result<()> {
        let try_install = || {
            let mut cmd = apt_get();
            cmd.args(["install", "-y", "-q", "--no-install-recommends"]);
            if let Some(t) = target_release {
                cmd.args(["-t", t]);
            }
            cmd.args(packages).status().is_ok_and(|s| s.success())
        };
        if try_install() {
            return Ok(());
        }
        if !self.updated {
            self.update()?;
            if try_install() {
                return Ok(());
            }
        }
        bail!("could not install {}", packages.join(", "))
    }

    /// The suites apt is configured with (downloaded or not), each with the base URI of an
    /// archive that serves its `main` component (if any).
    fn configured_suites() -> Result<BTreeMap<String, Option<String>>> {
        let out = cmd_output(apt_get().args(["--print-uris", "update"]))?;
        Ok(parse_print_uris(&out))
    }
}

/// Suites (and `main` archives) from `apt-get --print-uris update`.
fn parse_print_uris(out: &str) -> BTreeMap<String, Option<String>> {
    let mut suites: BTreeMap<String, Option<String>> = BTreeMap::new();
    for line in out.lines() {
        let Some(uri) = line.strip_prefix('\'').and_then(|l| l.split('\'').next()) else {
            continue;
        };
        if let Some((base, rest)) = uri.split_once("/dists/")
            && let Some((suite, path)) = rest.split_once('/')
        {
            let entry = suites.entry(suite.to_string()).or_default();
            if entry.is_none() && path.starts_with("main/") {
                *entry = Some(base.to_string());
            }
        }
    }
    suites
}

impl Apt {
    /// Adds the Debian suites apt lacks (one deb822 file each, pinned to priority 100 when they
    /// belong to another release than the host's), then updates the lists.
    fn ensure_suites(&mut self, wanted: &[&str]) -> Result<()> {
        if wanted.is_empty() {
            return Ok(());
        }
        let configured = Self::configured_suites()?;
        let mut missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|s| !configured.contains_key(*s))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let codename = host_codename();
        // The mirror the host's own Debian suites come from, else Debian's CDN.
        let base_of = |security: bool| {
            let own = if security {
                format!("{codename}-security")
            } else {
                codename.clone()
            };
            match configured.get(&own) {
                Some(Some(base)) => base.clone(),
                _ if security => "http://deb.debian.org/debian-security".to_string(),
                _ => "http://deb.debian.org/debian".to_string(),
            }
        };
        let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
        for suite in missing {
            let file = format!("/etc/apt/sources.list.d/tracer-kernels-{suite}.sources");
            eprintln!("xtask: adding the apt suite {suite} ({file}) for the kernel packages");
            let mut text = format!(
                "# Added by `cargo xtask kernels`: Debian kernel packages for the kernel matrix.\n\
                 Types: deb\nURIs: {}\nSuites: {suite}\nComponents: main\n",
                base_of(suite.ends_with("-security"))
            );
            if keyring.exists() {
                text.push_str(&format!("Signed-By: {}\n", keyring.display()));
            }
            fs::write(&file, text).with_context(|| format!("writing {file}"))?;
            // Backports are NotAutomatic (priority 100) by themselves; another release is not.
            let release = suite.split('-').next().unwrap_or(suite);
            if release != codename && !suite.ends_with("-backports") {
                let pin = format!("/etc/apt/preferences.d/tracer-kernels-{suite}");
                fs::write(
                    &pin,
                    format!(
                        "# Added by `cargo xtask kernels`: only kernel packages are downloaded \
                         from {suite}; never install from it by accident.\n\
                         Package: *\nPin: release n={suite}\nPin-Priority: 100\n"
                    ),
                )
                .with_context(|| format!("writing {pin}"))?;
            }
        }
        self.update()
    }
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"install ok installed"))
}

/// QEMU, busybox-static and kmod from apt, and virtme-ng; returns the `vng` to run.
fn ensure_vm_tools(apt: &mut Apt, kernels_dir: &Path) -> Result<PathBuf> {
    if !has("qemu-system-x86_64") {
        // On bookworm, take QEMU from backports: bookworm's own qemu-system-x86 conflicts with
        // a qemu-utils from backports, and backports' QEMU is the one verified with virtme-ng.
        eprintln!("xtask: installing qemu-system-x86 (the VMs run under its software emulation)");
        if host_codename() == "bookworm" {
            apt.ensure_suites(&["bookworm-backports"])?;
            apt.install(&["qemu-system-x86"], Some("bookworm-backports"))?;
        } else {
            apt.install(&["qemu-system-x86"], None)?;
        }
    }
    let missing: Vec<&str> = ["busybox-static", "kmod"]
        .into_iter()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "xtask: installing {} (virtme-ng's initramfs and module index)",
            missing.join(", ")
        );
        apt.install(&missing, None)?;
    }
    if has("vng") {
        return Ok(PathBuf::from("vng"));
    }
    // Debian 12's pip refuses to install into the system Python (PEP 668): use a venv.
    let venv = kernels_dir.join("virtme-ng");
    let vng = venv.join("bin/vng");
    if vng.exists() {
        return Ok(vng);
    }
    eprintln!(
        "xtask: installing virtme-ng {VIRTME_NG_VERSION} into {}",
        venv.display()
    );
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let make_venv = || {
        let _ = fs::remove_dir_all(&venv);
        Command::new(python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !make_venv() {
        apt.install(&["python3-venv"], None)?;
        if !make_venv() {
            bail!("could not create a Python venv in {}", venv.display());
        }
    }
    let installed = run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("virtme-ng=={VIRTME_NG_VERSION}"),
    ]));
    if let Err(e) = installed {
        // Leave no half-made venv behind for the next run to trust.
        let _ = fs::remove_dir_all(&venv);
        return Err(e);
    }
    Ok(vng)
}

/// Compares versions with digit runs as numbers: 6.12.9 < 6.12.10, 5.10.0-9 < 5.10.0-46.
fn version_cmp(a: &str, b: &str) -> CmpOrdering {
    fn chunks(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[i - 1].is_ascii_digit() {
                out.push(&s[start..i]);
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(n), Ok(m)) => n.cmp(&m),
            _ => x.cmp(y),
        };
        if ord != CmpOrdering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

fn has_candidate(package: &str) -> bool {
    cmd_output(Command::new("apt-cache").args(["policy", package])).is_ok_and(|out| {
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("Candidate:"))
            .any(|c| c.trim() != "(none)")
    })
}

/// The newest package of a series apt can download; without one (no network, say), the newest
/// already in the cache.
fn newest_package(series: &Series, apt: &mut Apt, cache: &Path) -> Result<String> {
    let find = || -> Result<Option<String>> {
        let names = cmd_output(Command::new("apt-cache").args(["pkgnames", "linux-image-"]))?;
        let mut names: Vec<&str> = names.lines().filter(|n| series.matches(n)).collect();
        names.sort_by(|a, b| version_cmp(b, a));
        // `pkgnames` also lists names that are only mentioned (Breaks, Provides).
        Ok(names
            .into_iter()
            .find(|n| has_candidate(n))
            .map(String::from))
    };
    if let Some(p) = find()? {
        return Ok(p);
    }
    if !apt.updated {
        apt.update()?;
        if let Some(p) = find()? {
            return Ok(p);
        }
    }
    let mut cached: Vec<String> = fs::read_dir(cache)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| series.matches(n))
        .collect();
    cached.sort_by(|a, b| version_cmp(b, a));
    match cached.into_iter().next() {
        Some(p) => {
            eprintln!(
                "xtask: apt offers no {} kernel; using the cached {p}",
                series.name
            );
            Ok(p)
        }
        None => bail!(
            "apt offers no {} kernel package ({}N{}) in {}",
            series.name,
            series.prefix,
            series.suffix,
            series.suites.join(", ")
        ),
    }
}

/// The kernel package extracted into `cache/<package>/` (boot/vmlinuz-*, lib/modules/*, with a
/// module index), downloaded only when it is not there yet.
fn fetch_kernel(package: &str, cache: &Path) -> Result<Job> {
    let release = package
        .strip_prefix("linux-image-")
        .context("a kernel package name")?
        .to_string();
    let dir = cache.join(package);
    let vmlinuz = dir.join("boot").join(format!("vmlinuz-{release}"));
    if vmlinuz.exists() {
        return Ok(Job {
            release,
            vmlinuz: Some(vmlinuz),
        });
    }
    let started = Instant::now();
    eprintln!("xtask: downloading {package}");
    let download = cache.join(".download");
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download)?;
    let downloaded = apt_get()
        // The cache is root's: do not try to hand the download to the _apt user.
        .args(["-q", "-o", "APT::Sandbox::User=root", "download", package])
        .current_dir(&download)
        .status()
        .is_ok_and(|s| s.success());
    if !downloaded {
        bail!("could not download {package}");
    }
    let deb = fs::read_dir(&download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", download.display()))?;
    let partial = cache.join(format!("{package}.partial"));
    let _ = fs::remove_dir_all(&partial);
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&partial))?;
    if !partial.join("lib/modules").join(&release).exists() {
        bail!("{} has no lib/modules/{release}", deb.display());
    }
    // Debian's packages ship no module index (their postinst makes it); virtme-ng needs one to
    // load 9p and virtio in the guest. Made once here, the cache stays read-only afterwards.
    run(Command::new("depmod")
        .args(["-a", "-b"])
        .arg(&partial)
        .arg(&release))?;
    fs::rename(&partial, &dir)?;
    let _ = fs::remove_dir_all(&download);
    eprintln!(
        "xtask: {package} ready in {} ({} s)",
        dir.display(),
        started.elapsed().as_secs()
    );
    Ok(Job {
        release,
        vmlinuz: Some(vmlinuz),
    })
}

// ---------------------------------------------------------------------------------------------
// Running and judging

struct RunCtx {
    script: PathBuf,
    check: PathBuf,
    tracer: PathBuf,
    check_args: Vec<String>,
    timeout: Duration,
    memory: String,
    vng: Option<PathBuf>,
    runs_dir: PathBuf,
}

/// The host first, alone (it is quick, and its timing-sensitive scenarios should not compete
/// with emulated CPUs), then the VMs `parallel` at a time. Outcomes in the order asked.
fn run_all(jobs: &[Job], ctx: &RunCtx, parallel: usize) -> Vec<Outcome> {
    let done: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::new());
    let run_and_report = |i: usize| {
        let outcome = run_one(&jobs[i], ctx);
        println!("{}", outcome.line());
        done.lock().unwrap().push((i, outcome));
    };
    for (i, _) in jobs.iter().enumerate().filter(|(_, j)| j.vmlinuz.is_none()) {
        if !INTERRUPTED.load(Ordering::SeqCst) {
            run_and_report(i);
        }
    }
    let queue: Mutex<VecDeque<usize>> = Mutex::new(
        (0..jobs.len())
            .filter(|&i| jobs[i].vmlinuz.is_some())
            .collect(),
    );
    let workers = parallel.min(queue.lock().unwrap().len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while !INTERRUPTED.load(Ordering::SeqCst) {
                    let Some(i) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    run_and_report(i);
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, o)| o).collect()
}

fn run_one(job: &Job, ctx: &RunCtx) -> Outcome {
    let run_dir = ctx.runs_dir.join(&job.release);
    let started = Instant::now();
    let end = start_and_wait(job, ctx, &run_dir);
    let wall = started.elapsed();
    if let End::Exited(status) = &end {
        use std::io::Write;
        let _ = fs::OpenOptions::new()
            .append(true)
            .open(run_dir.join("console.log"))
            .and_then(|mut f| {
                writeln!(f, "xtask: exited with {status} (not used to judge the run)")
            });
    }
    let (result, problems) = judge(job, ctx, &run_dir, &end);
    Outcome {
        release: job.release.clone(),
        run_dir,
        wall,
        result,
        problems,
    }
}

fn start_and_wait(job: &Job, ctx: &RunCtx, run_dir: &Path) -> End {
    // A result left by an earlier run must not pass for this one's.
    let _ = fs::remove_dir_all(run_dir);
    if let Err(e) = fs::create_dir_all(run_dir) {
        return End::SpawnFailed(format!("creating {}: {e}", run_dir.display()));
    }
    let console = match fs::File::create(run_dir.join("console.log")) {
        Ok(f) => f,
        Err(e) => return End::SpawnFailed(format!("creating console.log: {e}")),
    };
    let console_err = match console.try_clone() {
        Ok(f) => f,
        Err(e) => return End::SpawnFailed(format!("console.log: {e}")),
    };
    // The check's own limit inside, so that it is the guest that stops a hung check and
    // says so in its files; the host's hard limit is for a hung VM.
    let total = ctx.timeout.as_secs();
    let limit = match job.vmlinuz {
        Some(_) => total.saturating_sub(BOOT_ALLOWANCE_SECS),
        None => total.saturating_sub(10),
    }
    .max(total / 2);
    let mut inner: Vec<std::ffi::OsString> = vec![
        "sh".into(),
        ctx.script.clone().into(),
        run_dir.into(),
        limit.to_string().into(),
        ctx.check.clone().into(),
        "--out".into(),
        run_dir.into(),
        "--tracer".into(),
        ctx.tracer.clone().into(),
    ];
    inner.extend(ctx.check_args.iter().map(Into::into));
    let mut cmd = match (&job.vmlinuz, &ctx.vng) {
        (Some(vmlinuz), Some(vng)) => {
            let mut cmd = Command::new(vng);
            // vng runs its companions (virtme-run, ...) from PATH: those of a venv too.
            if let Some(bin) = vng.parent().filter(|b| !b.as_os_str().is_empty()) {
                let path = std::env::var_os("PATH").unwrap_or_default();
                let mut dirs = vec![bin.to_path_buf()];
                dirs.extend(std::env::split_paths(&path));
                if let Ok(joined) = std::env::join_paths(dirs) {
                    cmd.env("PATH", joined);
                }
            }
            cmd.arg("--run")
                .arg(vmlinuz)
                // No usable KVM for stock kernels here: QEMU's software emulation (TCG).
                .args(["--disable-kvm", "--user", "root", "-m", &ctx.memory])
                .args(["--cpus", "1", "--verbose", "--rwdir"])
                .arg(run_dir)
                .arg("--")
                .args(&inner);
            eprintln!(
                "xtask: booting {} (check limit {limit} s, VM limit {} s)",
                job.release,
                ctx.timeout.as_secs()
            );
            cmd
        }
        _ => {
            let mut cmd = Command::new(&inner[0]);
            cmd.args(&inner[1..]);
            eprintln!("xtask: running the check on this host ({})", job.release);
            cmd
        }
    };
    cmd.current_dir(run_dir)
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(console_err)
        // Its own process group, so that a timeout kills QEMU along with vng.
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return End::SpawnFailed(format!("starting {cmd:?}: {e}")),
    };
    let deadline = Instant::now() + ctx.timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return End::Exited(status),
            Ok(None) => {}
            Err(e) => return End::SpawnFailed(format!("waiting for the VM: {e}")),
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            kill_group(&mut child);
            return End::Interrupted;
        }
        if Instant::now() >= deadline {
            kill_group(&mut child);
            return End::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// SIGTERM to the child's process group, SIGKILL 10 s later if anything is left.
fn kill_group(child: &mut Child) {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: signals a process group we created (the child is not reaped yet, so its id
    // still names that group).
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: as above; QEMU may outlive vng, so the group is signalled whatever vng did.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
}

fn judge(job: &Job, ctx: &RunCtx, run_dir: &Path, end: &End) -> (Option<CheckResult>, Vec<String>) {
    let mut problems = Vec::new();
    let read = |name: &str| fs::read_to_string(run_dir.join(name)).ok();
    match end {
        End::SpawnFailed(e) => problems.push(e.clone()),
        End::TimedOut => problems.push(format!(
            "killed at the hard limit of {} s",
            ctx.timeout.as_secs()
        )),
        End::Interrupted => problems.push("interrupted".to_string()),
        // Only the files tell (vng exits 255 after a clean run).
        End::Exited(_) => {}
    }
    let started = run_dir.join("started").exists();
    let exit: Option<i32> = read("exit").and_then(|s| s.trim().parse().ok());
    if !started {
        problems.push(match job.vmlinuz {
            Some(_) => "the check never started: the kernel did not boot or the VM tool failed \
                        (see console.log)"
                .to_string(),
            None => "the check never started (see console.log)".to_string(),
        });
    } else {
        match read("uname").map(|s| s.trim().to_string()) {
            Some(u) if u == job.release => {}
            Some(u) => problems.push(format!("booted {u}, not {}", job.release)),
            None => problems.push("no uname file".to_string()),
        }
        match exit {
            None => problems.push(
                "the check did not finish (guest crashed or was killed; see console.log)"
                    .to_string(),
            ),
            Some(124) | Some(137) => {
                problems.push("the check hit its time limit inside the VM".to_string())
            }
            Some(0) => {}
            Some(n) => problems.push(format!("the check exited with status {n}")),
        }
    }
    let result = match read("result.json") {
        None => {
            if started {
                problems.push("no result.json".to_string());
            }
            None
        }
        Some(text) => match serde_json::from_str::<CheckResult>(&text) {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push(format!("result.json unreadable: {e}"));
                None
            }
        },
    };
    if let Some(r) = &result {
        if r.kernel != job.release {
            problems.push(format!("result.json is for kernel {}", r.kernel));
        }
        let failed: Vec<&str> = r
            .scenarios
            .iter()
            .filter(|s| !s.passed)
            .map(|s| s.name.as_str())
            .collect();
        if r.scenarios.is_empty() {
            problems.push("no scenarios ran".to_string());
        } else if !failed.is_empty() {
            problems.push(format!(
                "{} of {} scenarios failed: {}",
                failed.len(),
                r.scenarios.len(),
                failed.join(", ")
            ));
        }
    }
    (result, problems)
}

fn tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = fs::read(path) else {
        return format!("    ({} missing)\n", path.display());
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for l in &all[all.len().saturating_sub(lines)..] {
        out.push_str("    ");
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn print_failure(o: &Outcome) {
    println!("=== {} FAILED ({})", o.release, o.run_dir.display());
    for p in &o.problems {
        println!("  - {p}");
    }
    if let Some(r) = &o.result {
        for s in r.scenarios.iter().filter(|s| !s.passed) {
            println!(
                "  scenario {} failed{}: {}",
                s.name,
                s.seconds
                    .map(|t| format!(" after {t:.1} s"))
                    .unwrap_or_default(),
                s.detail.as_deref().unwrap_or("")
            );
        }
        for h in r.hooks.iter().filter(|h| !h.attached) {
            println!(
                "  hook {} not attached ({}){}",
                h.tracepoint,
                h.state.as_deref().unwrap_or("?"),
                h.problem
                    .as_deref()
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default()
            );
        }
        if let Some(w) = r.wall_seconds {
            println!("  the check's own wall time: {w:.0} s");
        }
    }
    println!("  console.log, last {CONSOLE_TAIL} lines:");
    print!("{}", tail(&o.run_dir.join("console.log"), CONSOLE_TAIL));
    println!("  check.log, last {CHECK_TAIL} lines:");
    print!("{}", tail(&o.run_dir.join("check.log"), CHECK_TAIL));
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let mut v = [
            "linux-image-6.12.9+deb12-amd64",
            "linux-image-6.12.117+deb12-amd64",
            "linux-image-6.12.95+deb12-amd64",
        ];
        v.sort_by(|a, b| version_cmp(b, a));
        assert_eq!(v[0], "linux-image-6.12.117+deb12-amd64");
        assert_eq!(v[2], "linux-image-6.12.9+deb12-amd64");
    }

    #[test]
    fn series_match_only_the_generic_flavour() {
        let s61 = &SERIES[1];
        assert!(s61.matches("linux-image-6.1.0-57-amd64"));
        assert!(!s61.matches("linux-image-6.1.0-57-cloud-amd64"));
        assert!(!s61.matches("linux-image-6.1.0-57-amd64-unsigned"));
        assert!(!s61.matches("linux-image-6.1.0-57-amd64-dbg"));
        assert!(SERIES[2].matches("linux-image-6.12.95+deb12-amd64"));
        assert!(!SERIES[2].matches("linux-image-6.12.95+deb12-cloud-amd64"));
        assert!(SERIES[0].matches("linux-image-5.10.0-46-amd64"));
        assert!(!SERIES[0].matches("linux-image-5.10.0-46-rt-amd64"));
    }

    #[test]
    fn kernels_are_named_by_series_release_or_host() {
        assert!(matches!(parse_wanted("host"), Ok(Wanted::Host)));
        assert!(matches!(parse_wanted("6.12"), Ok(Wanted::Newest(s)) if s.name == "6.12"));
        assert!(
            matches!(parse_wanted("6.1.0-57-amd64"), Ok(Wanted::Exact(s, p)) if s.name == "6.1" && p == "linux-image-6.1.0-57-amd64")
        );
        assert!(parse_wanted("6.1.0-57-cloud-amd64").is_err());
        assert!(parse_wanted("4.19").is_err());
    }

    #[test]
    fn configured_suites_and_their_mirrors() {
        let out = "'http://deb.debian.org/debian/dists/bookworm/InRelease' x 0 \n\
'http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages.xz' x 0 \n\
'http://mirror.example/debian-security/dists/bookworm-security/main/binary-amd64/Packages.xz' x 0 \n\
'https://download.docker.com/linux/debian/dists/trixie/stable/binary-amd64/Packages' x 0 \n";
        let suites = parse_print_uris(out);
        assert_eq!(
            suites["bookworm"].as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(
            suites["bookworm-security"].as_deref(),
            Some("http://mirror.example/debian-security")
        );
        assert_eq!(suites["trixie"], None);
    }

    #[test]
    fn result_json_of_the_contract_parses() {
        let r: CheckResult = serde_json::from_str(
            r#"{"kernel":"6.1.0-57-amd64","programs_attached":9,"programs_total":11,
             "hooks":[{"tracepoint":"tcp_retransmit_skb","state":"degraded","attached":true,"problem":null}],
             "scenarios":[{"name":"refused_connect","passed":true,"detail":"...","seconds":1.2}],
             "wall_seconds":42.0}"#,
        )
        .unwrap();
        assert_eq!(r.programs_attached, 9);
        assert!(r.scenarios[0].passed);
        assert!(r.hooks[0].attached);
    }
}
