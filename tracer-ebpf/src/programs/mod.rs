//! The programs, one file per hook family. Each hook that a softirq can interrupt while it
//! runs in process context has a twin (see `crate::nesting`).

pub mod drop;
pub mod owner_io;
pub mod reset;
pub mod retransmit;
pub mod state;
pub mod teardown;
pub mod timer;
