//! Turning the user's filter words (`--netns prod`, `--addr 10.0.0.0/8`) into what the
//! kernel programs match on.

use std::{net::IpAddr, os::unix::fs::MetadataExt, path::Path};

use anyhow::{Context, Result, bail};

use crate::{cli::FilterArgs, identity::OwnerFilter, kernel::ProbeOptions};

/// A network namespace given as an inode number, a path (/proc/PID/ns/net, /run/netns/X)
/// or an `ip netns` name → its inode number.
pub fn resolve_netns(spec: &str) -> Result<u32> {
    if let Ok(inode) = spec.parse::<u32>() {
        return Ok(inode);
    }
    let path = if spec.contains('/') {
        Path::new(spec).to_path_buf()
    } else {
        Path::new("/run/netns").join(spec)
    };
    let meta = std::fs::metadata(&path).with_context(|| {
        format!(
            "--netns {spec}: no such namespace ({} not found)",
            path.display()
        )
    })?;
    u32::try_from(meta.ino()).with_context(|| format!("--netns {spec}: inode out of range"))
}

pub fn probe_options(filters: &FilterArgs, ring_buffer_bytes: u32) -> Result<ProbeOptions> {
    let netns = filters
        .netns
        .iter()
        .map(|s| resolve_netns(s))
        .collect::<Result<Vec<_>>>()?;
    let addrs: Vec<(IpAddr, u8)> = filters
        .addrs
        .iter()
        .map(|net| (net.network(), net.prefix_len()))
        .collect();
    if filters.ports.contains(&0) {
        bail!("--port 0 matches nothing");
    }
    Ok(ProbeOptions {
        netns,
        ports: filters.ports.clone(),
        addrs,
        pids: filters.pids.clone(),
        comm: filters.comm.clone(),
        cgroup_filter: owner_filter(filters)?.is_some(),
        ring_buffer_bytes,
    })
}

/// The owner filter (`--container`, `--pod`, `--cgroup`); None when none is given.
pub fn owner_filter(filters: &FilterArgs) -> Result<Option<OwnerFilter>> {
    OwnerFilter::new(&filters.containers, &filters.pods, &filters.cgroups)
        .map_err(anyhow::Error::msg)
}

/// The filters as words, for the trace header.
pub fn describe(filters: &FilterArgs) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(filters.pids.iter().map(|p| format!("--pid={p}")));
    out.extend(filters.comm.iter().map(|c| format!("--comm={c}")));
    out.extend(filters.ports.iter().map(|p| format!("--port={p}")));
    out.extend(filters.addrs.iter().map(|a| format!("--addr={a}")));
    out.extend(filters.netns.iter().map(|n| format!("--netns={n}")));
    out.extend(
        filters
            .containers
            .iter()
            .map(|c| format!("--container={c}")),
    );
    out.extend(filters.pods.iter().map(|p| format!("--pod={p}")));
    out.extend(filters.cgroups.iter().map(|c| format!("--cgroup={c}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_by_inode_path_and_bad_name() {
        assert_eq!(resolve_netns("4026531840").unwrap(), 4026531840);
        let own = resolve_netns("/proc/self/ns/net").unwrap();
        assert!(own > 0);
        let err = resolve_netns("no-such-namespace-here")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no-such-namespace-here"), "{err}");
    }

    #[test]
    fn cidr_becomes_network_and_prefix() {
        let args = FilterArgs {
            addrs: vec![
                crate::cli::parse_net("10.1.2.3/8").unwrap(),
                crate::cli::parse_net("::1").unwrap(),
            ],
            ..Default::default()
        };
        let opts = probe_options(&args, 0).unwrap();
        assert_eq!(opts.addrs[0], ("10.0.0.0".parse().unwrap(), 8));
        assert_eq!(opts.addrs[1], ("::1".parse().unwrap(), 128));
        assert!(!opts.cgroup_filter);
    }

    #[test]
    fn owner_options_turn_the_kernel_cgroup_filter_on_and_bad_ones_are_named() {
        let args = FilterArgs {
            pods: vec!["payments/api-7f9c".into()],
            ..Default::default()
        };
        assert!(probe_options(&args, 0).unwrap().cgroup_filter);
        let args = FilterArgs {
            cgroups: vec!["system.slice".into()],
            ..Default::default()
        };
        let err = probe_options(&args, 0).unwrap_err().to_string();
        assert!(err.starts_with("--cgroup \"system.slice\""), "{err}");
    }
}

/// The same filters in userspace, for events that did not come through the kernel
/// programs (sockets found by the sweep).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    netns: Vec<u32>,
    ports: Vec<u16>,
    addrs: Vec<ipnet::IpNet>,
    pids: Vec<u32>,
    comm: Option<String>,
}

impl EventFilter {
    pub fn new(filters: &FilterArgs) -> Result<Self> {
        Ok(Self {
            netns: filters
                .netns
                .iter()
                .map(|s| resolve_netns(s))
                .collect::<Result<_>>()?,
            ports: filters.ports.clone(),
            addrs: filters.addrs.clone(),
            pids: filters.pids.clone(),
            comm: filters.comm.clone(),
        })
    }

    pub fn matches(&self, e: &crate::event::Event) -> bool {
        let process = e.process.as_ref();
        let c = &e.conn;
        (self.netns.is_empty() || self.netns.contains(&c.netns))
            && (self.ports.is_empty()
                || self.ports.contains(&c.lport)
                || self.ports.contains(&c.rport))
            && (self.addrs.is_empty()
                || self
                    .addrs
                    .iter()
                    .any(|n| n.contains(&c.laddr) || n.contains(&c.raddr)))
            && (self.pids.is_empty() || process.is_some_and(|p| self.pids.contains(&p.pid)))
            && self
                .comm
                .as_ref()
                .is_none_or(|c| process.is_some_and(|p| &p.comm == c))
    }
}
