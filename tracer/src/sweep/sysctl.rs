//! A namespace's TCP give-up settings (/proc/sys/net/ipv4 as seen from inside it).

use serde::Serialize;

/// The sysctls that decide how long a dead peer goes unnoticed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TcpSysctls {
    pub tcp_retries1: u32,
    pub tcp_retries2: u32,
    pub tcp_syn_retries: u32,
    pub tcp_synack_retries: u32,
    pub tcp_orphan_retries: u32,
    /// Seconds.
    pub tcp_keepalive_time: u32,
    pub tcp_keepalive_intvl: u32,
    pub tcp_keepalive_probes: u32,
    /// 6.5+; None on kernels without it.
    pub tcp_syn_linear_timeouts: Option<u32>,
}

fn read(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads the settings of the calling thread's network namespace.
pub fn read_current() -> anyhow::Result<TcpSysctls> {
    let must =
        |name: &str| read(name).ok_or_else(|| anyhow::anyhow!("cannot read net.ipv4.{name}"));
    Ok(TcpSysctls {
        tcp_retries1: must("tcp_retries1")?,
        tcp_retries2: must("tcp_retries2")?,
        tcp_syn_retries: must("tcp_syn_retries")?,
        tcp_synack_retries: must("tcp_synack_retries")?,
        tcp_orphan_retries: must("tcp_orphan_retries")?,
        tcp_keepalive_time: must("tcp_keepalive_time")?,
        tcp_keepalive_intvl: must("tcp_keepalive_intvl")?,
        tcp_keepalive_probes: must("tcp_keepalive_probes")?,
        tcp_syn_linear_timeouts: read("tcp_syn_linear_timeouts"),
    })
}
