//! The connection tracer's userspace side.
//!
//! Data flows one way: kernel hooks → ring buffer → [`event`] decoding → [`timeline`]
//! engine (pure) → verdicts → [`output`] sinks.
//!
//! | module | holds |
//! |---|---|
//! | [`kernel`] | privileges, BTF layouts, host facts, loading/attaching, the ring buffer |
//! | [`event`] | the typed event decoded from the ABI shared with the kernel programs |
//! | [`timeline`] | per-socket timelines and the verdict rules (no I/O, no kernel) |
//! | [`tcp_model`] | the kernel's give-up arithmetic (retries, backoff, keepalive) |
//! | [`record`] | the JSON Lines trace records |
//! | [`event_read`] | `event` records read back without a general JSON parser |
//! | [`trace_bin`] | the binary trace: frames, owners written once, read back |
//! | [`trace_file`] | reading recorded traces, with file:line errors |
//! | [`output`] | terminal text, JSON Lines, Perfetto, summaries |
//! | [`export`] | Prometheus metrics and OpenTelemetry log records (`tracer agent`) |
//! | [`session`] | a tracing session (`live`, `record`): load, sweep, follow the ring buffer, feed the engine and the sinks, stop cleanly |
//! | [`sweep`] | sock_diag snapshots across namespaces, owners, per-namespace sysctls |
//! | [`identity`] | cgroup id → container, pod and systemd unit of a socket's owner |
//! | [`commands`] | one module per subcommand |
//! | [`testing`] | synthetic sockets and traces for tests and benches |
//! | [`words`] | how numbers read for people (durations, counts, retransmit classes) |

pub mod cli;
pub mod commands;
pub mod event;
pub mod event_read;
pub mod export;
pub mod filter;
pub mod identity;
pub mod kernel;
pub mod output;
pub mod record;
pub mod session;
pub mod sweep;
pub mod tcp_model;
pub mod testing;
pub mod timeline;
pub mod trace_bin;
pub mod trace_file;
pub mod words;
