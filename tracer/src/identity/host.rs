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
//!
//! # From an id to its path without a walk
//!
//! The same id is the cgroup directory's file handle on cgroupfs (`FILEID_KERNFS`, 8 bytes:
//! what `name_to_handle_at(2)` returns for it). `open_by_handle_at(2)` on the mount opens
//! the directory from the id alone, and `/proc/self/fd/N` names its path: three system
//! calls for a cgroup never seen, however large the tree. It needs CAP_DAC_READ_SEARCH
//! (root has it); without it, or on a filesystem that refuses, the resolver walks instead.

use std::{
    fs::{self, File},
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::fs::{DirEntryExt, MetadataExt},
    },
    path::{Path, PathBuf},
    sync::Arc,
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

    /// The path of cgroup `cgroup_id` (as `/proc/PID/cgroup` spells it), found from the id
    /// alone, without a walk. `Ok(None)`: no such cgroup under the mount (removed, or
    /// outside it). `Unsupported` or `PermissionDenied`: this host cannot, the resolver
    /// walks instead (the default).
    fn cgroup_path(&mut self, _cgroup_id: u64) -> io::Result<Option<String>> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The real host: a cgroup2 mount, a pod log directory and `/proc`.
#[derive(Debug, Clone)]
pub struct SystemHost {
    pub mount: Cgroup2Mount,
    pub pod_log_dir: PathBuf,
    /// The mount opened for `open_by_handle_at`, on the first lookup by id.
    handles: Option<Arc<Handles>>,
}

#[derive(Debug)]
struct Handles {
    mount: File,
    /// The handle type of this filesystem's directories (`FILEID_KERNFS` on cgroupfs).
    handle_type: i32,
}

/// A file handle of cgroupfs: the 64-bit cgroup id.
#[repr(C)]
struct CgroupHandle {
    handle_bytes: u32,
    handle_type: i32,
    id: [u8; 8],
}

impl SystemHost {
    pub fn new(mount: Cgroup2Mount, pod_log_dir: PathBuf) -> SystemHost {
        SystemHost {
            mount,
            pod_log_dir,
            handles: None,
        }
    }

    /// Opens the mount and learns its handle type from the handle of its root directory,
    /// which must be an 8-byte id like every cgroup's.
    fn handles(&mut self) -> io::Result<Arc<Handles>> {
        if let Some(h) = &self.handles {
            return Ok(h.clone());
        }
        let mount = File::open(&self.mount.mount_point)?;
        let mut handle = CgroupHandle {
            handle_bytes: 8,
            handle_type: 0,
            id: [0; 8],
        };
        let mut mount_id = 0;
        // SAFETY: `handle` has room for the 8 bytes it announces; the empty path with
        // AT_EMPTY_PATH names the open directory itself.
        let rc = unsafe {
            libc::name_to_handle_at(
                mount.as_raw_fd(),
                c"".as_ptr(),
                (&raw mut handle).cast(),
                &mut mount_id,
                libc::AT_EMPTY_PATH,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                // EOVERFLOW: handles longer than a cgroup id; EOPNOTSUPP: none at all.
                Some(libc::EOVERFLOW | libc::EOPNOTSUPP) => io::ErrorKind::Unsupported.into(),
                _ => e,
            });
        }
        let handles = Arc::new(Handles {
            mount,
            handle_type: handle.handle_type,
        });
        self.handles = Some(handles.clone());
        Ok(handles)
    }

    /// The cgroup path of a directory under the mount point; None outside it (a directory
    /// this mount cannot reach: another cgroup namespace's).
    fn mount_relative(&self, dir: &Path) -> Option<String> {
        let rel = dir.strip_prefix(&self.mount.mount_point).ok()?;
        Some(self.mount.path_of(rel.to_str()?))
    }
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

    /// `open_by_handle_at` + `readlink` of the descriptor + `close`.
    fn cgroup_path(&mut self, cgroup_id: u64) -> io::Result<Option<String>> {
        let handles = self.handles()?;
        let mut handle = CgroupHandle {
            handle_bytes: 8,
            handle_type: handles.handle_type,
            id: cgroup_id.to_ne_bytes(),
        };
        // SAFETY: a valid mount descriptor and a handle of the announced size.
        let fd = unsafe {
            libc::open_by_handle_at(
                handles.mount.as_raw_fd(),
                (&raw mut handle).cast(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                // No cgroup has this id (any more).
                Some(libc::ESTALE | libc::ENOENT) => Ok(None),
                Some(libc::EPERM) => Err(io::ErrorKind::PermissionDenied.into()),
                Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => {
                    Err(io::ErrorKind::Unsupported.into())
                }
                _ => Err(e),
            };
        }
        // SAFETY: a descriptor just returned to us, owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let target = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        // Removed since it was opened: its path is still the one it had.
        let target = match target.to_str().and_then(|t| t.strip_suffix(" (deleted)")) {
            Some(t) => PathBuf::from(t),
            None => target,
        };
        Ok(self.mount_relative(&target))
    }
}
