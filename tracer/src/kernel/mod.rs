//! Everything that touches the kernel: privileges, BTF layouts, host facts, loading and
//! attaching the programs, reading the ring buffer. Dropping [`Probes`] detaches every
//! program (the links are file descriptors; even a crash releases them).

pub mod btf;
pub mod host;
pub mod layout;
pub mod privileges;
mod probes;

pub use probes::{
    DEGRADES_WITHOUT, DRAIN_INTERVAL, HookStatus, ProbeOptions, Probes, RingStats,
    hook_availability,
};
