//! One module per subcommand; `main.rs` only dispatches.

pub mod live;
pub mod report;
pub mod trace;
