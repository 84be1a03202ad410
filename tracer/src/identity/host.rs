//! What the resolver reads from the host, behind a trait so the cache logic is tested
//! without a filesystem (and every read is counted: see [`super::Stats::host_calls`]).
//!
//! # Cgroup ids are cgroupfs inode numbers
//!
//! The kernel's cgroup v2 id (`bpf_get_current_cgroup_id()`, `cgroup_id()`) is the id of
//! the cgroup directory's kernfs node, and on 64-bit kernels kernfs reports that id as the
//! directory's inode number, both to `stat(2)` and as `d_ino` in `getdents(2)`. Ids are
//! 64-bit and never reused while the host runs; the root cgroup's is 1.
//!
//! Verified on Linux 6.18 (x86_64, hybrid host, cgroup2 at `/sys/fs/cgroup/unified`): a
//! `bash` moved into a new cgroup connected to a local port under `tracer live --json`;
//! every event's `process.cgroup_id` (from `bpf_get_current_cgroup_id` in the kernel
//! programs) was 25, the directory's `stat` inode and its `d_ino` in the parent's listing
//! were both 25, and the hierarchy root's inode is 1. The real-kernel test
//! `identity::kernel_cgroup_id_is_the_directory_inode` repeats this check.

use std::{
    fs, io,
    os::unix::fs::{DirEntryExt, MetadataExt},
    path::PathBuf,
    time::Instant,
};

use super::mount::Cgroup2Mount;

/// The resolver's only way to the host. Each call is at least one system call; the clock
/// is not one (`clock_gettime` is served by the vDSO).
pub trait Host {
    /// Calls `visit(id, path)` for every cgroup of the hierarchy, its root included, with
    /// `path` as `/proc/PID/cgroup` spells it (`/system.slice/nginx.service`). Cgroups
    /// removed during the walk may be missing; that is not an error.
    fn walk_cgroups(&mut self, visit: &mut dyn FnMut(u64, &str)) -> io::Result<()>;

    /// The id of the cgroup at `path` (as `/proc/PID/cgroup` spells it).
    fn cgroup_id(&mut self, path: &str) -> io::Result<u64>;

    /// The entry names of the pod log directory.
    fn pod_log_dirs(&mut self) -> io::Result<Vec<String>>;

    /// The text of `/proc/PID/cgroup`.
    fn proc_cgroup(&mut self, pid: u32) -> io::Result<String>;

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The real host: a cgroup2 mount, a pod log directory and `/proc`.
#[derive(Debug, Clone)]
pub struct SystemHost {
    pub mount: Cgroup2Mount,
    pub pod_log_dir: PathBuf,
}

impl Host for SystemHost {
    /// One `open` + `getdents64` + `close` per cgroup directory: ids come from `d_ino` and
    /// directories from `d_type`, so no cgroup is `stat`ed except the root.
    fn walk_cgroups(&mut self, visit: &mut dyn FnMut(u64, &str)) -> io::Result<()> {
        let root = &self.mount.mount_point;
        visit(fs::metadata(root)?.ino(), &self.mount.path_of(""));
        let mut stack = vec![(root.clone(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            // Removed since its parent was listed.
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let rel = if rel.is_empty() {
                    name.into_owned()
                } else {
                    format!("{rel}/{name}")
                };
                visit(entry.ino(), &self.mount.path_of(&rel));
                stack.push((entry.path(), rel));
            }
        }
        Ok(())
    }

    fn cgroup_id(&mut self, path: &str) -> io::Result<u64> {
        let dir = self.mount.dir_of(path).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{path} is outside the cgroup2 mount"),
            )
        })?;
        Ok(fs::metadata(dir)?.ino())
    }

    fn pod_log_dirs(&mut self) -> io::Result<Vec<String>> {
        Ok(fs::read_dir(&self.pod_log_dir)?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect())
    }

    fn proc_cgroup(&mut self, pid: u32) -> io::Result<String> {
        fs::read_to_string(format!("/proc/{pid}/cgroup"))
    }
}
