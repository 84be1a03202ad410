//! The kernel programs live in `main.rs` (built for `bpfel-unknown-none` by the loader's
//! build script). This empty library lets the loader declare a build-dependency on this
//! crate, so cargo rebuilds the programs when their sources change.
#![no_std]
