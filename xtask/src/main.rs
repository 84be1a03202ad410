//! `cargo xtask`: everything beyond a plain `cargo build`, so that a fresh machine needs
//! exactly two commands (`cargo xtask run -- ...` and `cargo xtask test`).

mod bench;
mod kernels;
mod toolchain;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, run, test and benchmark the connection tracer")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building the kernel programs needs (nightly rust-src, bpf-linker).
    Setup,
    /// Build the tracer (kernel programs included).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build (release) and run the tracer with the given arguments, e.g. `-- live`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: unit, replay and real-kernel tests (needs root).
    Test {
        /// Extra arguments for the test runner (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the benchmarks (needs root) and print the figures for BENCHMARKS.md.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Boot Debian's 5.10, 6.1 and 6.12 kernels under QEMU and run the real-kernel check
    /// inside each, and on this host (needs root).
    Kernels(kernels::Args),
    /// Write shell completions and the man page into a directory.
    Dist {
        #[arg(default_value = "target/dist")]
        dir: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    std::env::set_current_dir(workspace_root())?;
    match cli.command {
        Cmd::Setup => toolchain::ensure(),
        Cmd::Build { release } => {
            toolchain::ensure()?;
            build_tracer(release)
        }
        Cmd::Run { args } => {
            toolchain::ensure()?;
            build_tracer(true)?;
            let status = Command::new(tracer_path(true)).args(&args).status()?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Cmd::Test { args } => test(&args),
        Cmd::Bench { args } => {
            require_root("the benchmarks load kernel programs and create network namespaces")?;
            toolchain::ensure()?;
            ensure_test_tools()?;
            build_tracer(true)?;
            bench::run_bench(&tracer_path(true), &args)
        }
        Cmd::Kernels(args) => kernels::kernels(args),
        Cmd::Dist { dir } => {
            toolchain::ensure()?;
            build_tracer(true)?;
            dist(&tracer_path(true), &dir)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn tracer_path(release: bool) -> PathBuf {
    let profile = if release { "release" } else { "debug" };
    workspace_root().join("target").join(profile).join("tracer")
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

pub fn cmd_output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn build_tracer(release: bool) -> Result<()> {
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--package", "tracer"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}

fn require_root(why: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("this needs root: {why}. Run it as root (e.g. `sudo -E cargo xtask ...`).");
    }
    Ok(())
}

pub fn has(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The real-kernel tests drive `ip` (iproute2) and `nft` (nftables), run `tracer top` in a
/// terminal (tmux), and the agent's tests a real Prometheus server and `promtool`
/// (prometheus); install what is missing.
fn ensure_test_tools() -> Result<()> {
    let missing: Vec<&str> = [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("tmux", "tmux"),
        ("promtool", "prometheus"),
    ]
    .into_iter()
    .filter(|(tool, _)| !has(tool))
    .map(|(_, package)| package)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {} for the tests", missing.join(", "));
    let install = |pkgs: &[&str]| {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install(&missing) {
        run(Command::new("apt-get").args(["update", "-q"]))?;
        if !install(&missing) {
            bail!("could not install {}", missing.join(", "));
        }
    }
    Ok(())
}

fn test(args: &[String]) -> Result<()> {
    require_root(
        "the real-kernel tests load eBPF programs and create network namespaces \
         (unit tests alone: `cargo test -p tracer --lib`)",
    )?;
    toolchain::ensure()?;
    ensure_test_tools()?;
    build_tracer(false)?;
    let tracer = tracer_path(false);
    let nextest = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = Command::new("cargo");
    if nextest {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    cmd.args(args).env("TRACER_BIN", &tracer);
    run(&mut cmd)
}

fn dist(tracer: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for shell in ["bash", "zsh", "fish"] {
        let out = cmd_output(Command::new(tracer).args(["completions", shell]))?;
        std::fs::write(dir.join(format!("tracer.{shell}")), out)?;
    }
    let man = Command::new(tracer).arg("man").output()?;
    std::fs::write(dir.join("tracer.1"), man.stdout)?;
    println!("wrote completions and tracer.1 to {}", dir.display());
    Ok(())
}
