//! Builds the kernel programs (`tracer-ebpf`, target bpfel-unknown-none, nightly) and puts
//! the object in OUT_DIR, where `kernel::load` embeds it with `include_bytes_aligned!`.
//! `cargo xtask setup` installs what this needs (nightly rust-src, bpf-linker).

fn main() -> anyhow::Result<()> {
    let ebpf_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("tracer-ebpf");
    let root_dir = ebpf_dir.to_str().unwrap();
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "tracer-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
