//! One module per subcommand; `main.rs` only dispatches.

pub mod agent;
pub mod convert;
pub mod doctor;
pub mod live;
pub mod report;
pub mod selection;
pub mod sockets;
pub mod top;
