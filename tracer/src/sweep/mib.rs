//! A namespace's TCP MIB counters (/proc/net/netstat as seen from inside it): the kernel's
//! own count of connection deaths, against which a trace is reconciled.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::netns;

/// The value of `group.name` (e.g. `TcpExt`, `TCPAbortOnTimeout`) in a /proc/net/netstat or
/// /proc/net/snmp text: pairs of lines, names then values, each starting with `Group:`.
pub fn counter(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let position = names.split_whitespace().position(|n| n == name);
        if let Some(at) = position {
            return values.split_whitespace().nth(at)?.parse().ok();
        }
    }
    None
}

/// TcpExt.TCPAbortOnTimeout of the calling thread's namespace: every tcp_write_err(), i.e.
/// every connection the kernel gave up on because retransmits, SYNs, keepalive or
/// zero-window probes went unanswered (orphans included).
pub fn timeout_deaths_here() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat")
        .context("reading /proc/thread-self/net/netstat")?;
    counter(&text, "TcpExt", "TCPAbortOnTimeout")
        .context("no TcpExt TCPAbortOnTimeout in /proc/net/netstat")
}

/// TCPAbortOnTimeout of every visible namespace (or only those in `only`, when not empty).
/// Namespaces that cannot be entered are left out.
pub fn timeout_deaths(only: &[u32]) -> BTreeMap<u32, u64> {
    let mut namespaces = netns::discover();
    if !only.is_empty() {
        namespaces.retain(|inode, _| only.contains(inode));
    }
    netns::in_each(&namespaces, |_| timeout_deaths_here())
        .into_iter()
        .filter_map(|(inode, count)| Some((inode, count.ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_counter_from_its_group() {
        let netstat = "TcpExt: SyncookiesSent TCPAbortOnTimeout TCPKeepAlive\n\
                       TcpExt: 0 80 1200\n\
                       IpExt: InNoRoutes TCPAbortOnTimeout\n\
                       IpExt: 3 999\n";
        assert_eq!(counter(netstat, "TcpExt", "TCPAbortOnTimeout"), Some(80));
        assert_eq!(counter(netstat, "TcpExt", "TCPKeepAlive"), Some(1200));
        assert_eq!(counter(netstat, "IpExt", "TCPAbortOnTimeout"), Some(999));
        assert_eq!(counter(netstat, "TcpExt", "NoSuchCounter"), None);
        assert_eq!(counter("", "TcpExt", "TCPAbortOnTimeout"), None);
    }

    #[test]
    fn this_namespace_has_the_counter() {
        assert!(timeout_deaths_here().is_ok());
    }
}
