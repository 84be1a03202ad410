//! Who owns a socket: the processes holding `socket:[INODE]` file descriptors (as `ss -p`).

use std::collections::HashMap;

use crate::event::{Comm, Owner, OwnerSource};

/// Socket inode → the first process found holding it (lowest pid). Processes this user may
/// not inspect are skipped.
pub fn owners_by_inode() -> HashMap<u32, Owner> {
    let mut owners = HashMap::new();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return owners;
    };
    let mut pids: Vec<u32> = proc_dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut comm: Option<Comm> = None;
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            let comm = comm
                .get_or_insert_with(|| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .map(|c| Comm::new(c.trim_end()))
                        .unwrap_or_default()
                })
                .clone();
            owners.entry(inode).or_insert(Owner {
                pid,
                comm,
                cgroup_id: 0,
                source: OwnerSource::Sweep,
                container: None,
            });
        }
    }
    owners
}
