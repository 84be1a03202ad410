//! Network namespaces: finding them, and doing work inside each.

use std::{
    collections::BTreeMap,
    fs::File,
    os::{fd::AsFd, unix::fs::MetadataExt},
    path::PathBuf,
};

use anyhow::{Context, Result};
use nix::sched::{CloneFlags, setns};

/// Every network namespace this process can see: inode → a path that opens it. Found
/// through the processes (/proc/PID/ns/net) and `ip netns` (/run/netns/*).
pub fn discover() -> BTreeMap<u32, PathBuf> {
    let mut found = BTreeMap::new();
    let mut candidates: Vec<PathBuf> = vec![PathBuf::from("/proc/self/ns/net")];
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        candidates.extend(dir.flatten().map(|e| e.path()));
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        candidates.extend(
            dir.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .map(|e| e.path().join("ns/net")),
        );
    }
    for path in candidates {
        if let Ok(meta) = std::fs::metadata(&path) {
            found.entry(meta.ino() as u32).or_insert(path);
        }
    }
    found
}

/// The inode of this process's network namespace.
pub fn current() -> Option<u32> {
    std::fs::metadata("/proc/self/ns/net")
        .ok()
        .map(|m| m.ino() as u32)
}

/// Runs `work` once inside each namespace, on a thread of its own (a thread's namespace is
/// its own: the rest of the process is not moved). Failures are returned per namespace.
pub fn in_each<T: Send + 'static>(
    namespaces: &BTreeMap<u32, PathBuf>,
    work: impl Fn(u32) -> Result<T> + Send + Sync + 'static,
) -> Vec<(u32, Result<T>)> {
    let targets: Vec<(u32, PathBuf)> = namespaces.iter().map(|(i, p)| (*i, p.clone())).collect();
    let own = current();
    let handle = std::thread::Builder::new()
        .name("netns-sweep".into())
        .spawn(move || {
            targets
                .into_iter()
                .map(|(inode, path)| {
                    if Some(inode) == own {
                        // Our own namespace needs no setns (nor the privilege for it).
                        return (inode, work(inode));
                    }
                    let result = File::open(&path)
                        .with_context(|| format!("opening {}", path.display()))
                        .and_then(|f| {
                            setns(f.as_fd(), CloneFlags::CLONE_NEWNET)
                                .with_context(|| format!("entering network namespace {inode}"))
                        })
                        .and_then(|()| work(inode));
                    (inode, result)
                })
                .collect()
        });
    match handle.map(|h| h.join()) {
        Ok(Ok(results)) => results,
        _ => Vec::new(),
    }
}
