//! Makes a fresh machine able to build the kernel programs: nightly's `rust-src` (for
//! `-Z build-std=core`) and a `bpf-linker` linked against the very LLVM inside the nightly
//! rustc that compiles them (a system LLVM of another version cannot read its bitcode).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{cmd_output, run};

/// The toolchain aya-build uses for the eBPF crate (`aya_build::Toolchain::Nightly`).
pub const EBPF_TOOLCHAIN: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn ensure() -> Result<()> {
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()
}

fn ensure_nightly() -> Result<()> {
    let toolchains = cmd_output(Command::new("rustup").args(["toolchain", "list"]))?;
    if toolchains.lines().any(|l| l.starts_with(EBPF_TOOLCHAIN)) {
        return Ok(());
    }
    eprintln!("xtask: installing the {EBPF_TOOLCHAIN} toolchain (builds the eBPF programs)");
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        EBPF_TOOLCHAIN,
        "--profile",
        "minimal",
    ]))
}

fn ensure_rust_src() -> Result<()> {
    let installed = cmd_output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        EBPF_TOOLCHAIN,
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask: installing rust-src for {EBPF_TOOLCHAIN} (needed by -Z build-std=core)");
    run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        EBPF_TOOLCHAIN,
    ]))
}

/// The nightly sysroot's `lib/libLLVM.so.<major>...`, and that major version.
fn nightly_llvm() -> Result<(PathBuf, PathBuf, u32)> {
    let sysroot = cmd_output(Command::new("rustc").args([
        &format!("+{EBPF_TOOLCHAIN}"),
        "--print",
        "sysroot",
    ]))?;
    let sysroot = PathBuf::from(sysroot.trim());
    let lib_dir = sysroot.join("lib");
    let lib = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", lib_dir.display()))?;
    let name = lib.file_name().unwrap().to_string_lossy().into_owned();
    let major: u32 = name
        .trim_start_matches("libLLVM.so.")
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("cannot read the LLVM major version from {name}"))?;
    Ok((lib_dir, lib, major))
}

fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// A usable bpf-linker starts and is linked against the nightly sysroot's libLLVM.
fn bpf_linker_matches(linker: &Path, lib_dir: &Path) -> bool {
    let starts = Command::new(linker)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let linked = cmd_output(Command::new("ldd").arg(linker))
        .is_ok_and(|out| out.contains(&*lib_dir.to_string_lossy()));
    starts && linked
}

fn ensure_bpf_linker() -> Result<()> {
    let (lib_dir, lib, major) = nightly_llvm()?;
    let linker = cargo_bin_dir().join("bpf-linker");
    if linker.exists() && bpf_linker_matches(&linker, &lib_dir) {
        return Ok(());
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against {} (LLVM {major}); about a minute",
        lib.display()
    );
    // bpf-linker's build looks for `$LLVM_PREFIX/lib/libLLVM.so`: point it at the nightly one.
    let prefix = std::env::temp_dir().join(format!("tracer-llvm-prefix-{major}"));
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    let link = prefix_lib.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link)
        .with_context(|| format!("linking {} to {}", link.display(), lib.display()))?;
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix)
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", lib_dir.display()),
        ))?;
    if !bpf_linker_matches(&linker, &lib_dir) {
        bail!(
            "bpf-linker was installed but does not run against {}",
            lib.display()
        );
    }
    Ok(())
}
