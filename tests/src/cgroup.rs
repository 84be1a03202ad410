//! Real cgroup v2 trees for the identity tests: directories named like the ones container
//! runtimes and the kubelet create, each holding a real process.
//!
//! Every tree lives under its own `trc-<pid>-<n>-<tag>` directory of the cgroup2 mount
//! (found in /proc/self/mountinfo) and is removed when its guard drops, also when a test
//! panics: processes are moved back to the test's own cgroup and killed, then the
//! directories are removed deepest first. Trees left by a killed test run are removed by
//! the next one.

use std::{
    ffi::CString,
    fs::{self, File},
    io::{BufReader, Write},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::MetadataExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use tracer::identity::{Cgroup2Mount, mount, unified_path};

use crate::Netns;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Processes placed in the tree exit by themselves after this long, even if a test run is
/// killed before its guards drop.
const CHILD_LIFETIME_S: &str = "300";

/// A cgroup subtree, removed on drop.
pub struct CgroupTree {
    pub mount: Cgroup2Mount,
    /// The tree's root, as a cgroup path (`/trc-123-0-tag`).
    pub root: String,
    /// Directories created, parents first.
    dirs: Vec<PathBuf>,
    children: Vec<Child>,
    /// Where processes go back before their cgroup is removed.
    home: PathBuf,
}

/// A process in a cgroup of the tree.
pub struct Placed {
    pub pid: u32,
    /// The cgroup's id: its directory's inode.
    pub cgroup_id: u64,
    /// The cgroup path, as /proc/PID/cgroup shows it.
    pub path: String,
}

impl CgroupTree {
    pub fn new(tag: &str) -> CgroupTree {
        static SWEPT: std::sync::Once = std::sync::Once::new();
        let mount = mount::discover().expect("a cgroup2 mount in /proc/self/mountinfo");
        SWEPT.call_once(|| remove_abandoned(&mount));
        let own = fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let own = unified_path(&own).expect("this process's cgroup v2 path");
        let home = mount
            .dir_of(own)
            .expect("this process's cgroup under the mount");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = format!("/trc-{}-{n}-{tag}", std::process::id());
        let mut tree = CgroupTree {
            mount,
            root: root.clone(),
            dirs: Vec::new(),
            children: Vec::new(),
            home,
        };
        tree.mkdir(&root);
        tree
    }

    fn mkdir(&mut self, path: &str) {
        let dir = self.mount.dir_of(path).expect("under the mount");
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.dirs.push(dir);
    }

    /// Creates `rel` (slash-separated, relative to the tree's root) and its missing parents;
    /// returns its cgroup path.
    pub fn create(&mut self, rel: &str) -> String {
        let mut path = self.root.clone();
        for component in rel.split('/').filter(|c| !c.is_empty()) {
            path = format!("{path}/{component}");
            if !self.mount.dir_of(&path).unwrap().exists() {
                self.mkdir(&path);
            }
        }
        path
    }

    /// The directory of a cgroup path.
    pub fn dir(&self, path: &str) -> PathBuf {
        self.mount.dir_of(path).expect("under the mount")
    }

    /// The id of the cgroup at `path`: its directory's inode.
    pub fn id(&self, path: &str) -> u64 {
        fs::metadata(self.dir(path))
            .expect("cgroup directory")
            .ino()
    }

    /// Creates leaf `rel` and moves a new `sleep` into it.
    pub fn spawn_in(&mut self, rel: &str) -> Placed {
        let path = self.create(rel);
        let child = Command::new("sleep")
            .arg(CHILD_LIFETIME_S)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        self.place(child, &path)
    }

    /// Creates leaf `rel`, then runs `bash -c script` with a piped stdin, moved into the
    /// leaf before it reads its first line: write a line to let it go on.
    pub fn spawn_script_in(&mut self, rel: &str, script: &str) -> (Placed, ChildStdin) {
        let path = self.create(rel);
        let mut child = Command::new("bash")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn bash");
        let stdin = child.stdin.take().unwrap();
        (self.place(child, &path), stdin)
    }

    /// Creates leaf `rel` and runs `cmd` there from its first instruction on (it joins the
    /// cgroup, and enters network namespace `netns` if given, before it executes), with
    /// its standard input and output piped back. The process is ended with the tree.
    pub fn spawn_command_in(
        &mut self,
        rel: &str,
        mut cmd: Command,
        netns: Option<&Netns>,
    ) -> (Placed, ChildStdin, BufReader<ChildStdout>) {
        let path = self.create(rel);
        let procs = CString::new(self.dir(&path).join("cgroup.procs").as_os_str().as_bytes())
            .expect("no NUL in a cgroup path");
        let netns: Option<OwnedFd> = netns.map(|ns| {
            File::open(format!("/run/netns/{}", ns.name))
                .expect("open netns")
                .into()
        });
        let netns_fd = netns.as_ref().map(|fd| fd.as_raw_fd());
        // SAFETY: between fork and exec the closure only makes system calls (open, write,
        // close, setns) on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(ns) = netns_fd
                    && libc::setns(ns, libc::CLONE_NEWNET) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?} in {path}: {e}"));
        drop(netns);
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let pid = child.id();
        self.children.push(child);
        let seen = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        assert_eq!(
            unified_path(&seen),
            Some(path.as_str()),
            "{pid} in its cgroup"
        );
        let placed = Placed {
            pid,
            cgroup_id: self.id(&path),
            path,
        };
        (placed, stdin, stdout)
    }

    fn place(&mut self, child: Child, path: &str) -> Placed {
        let pid = child.id();
        self.children.push(child);
        move_to(&self.dir(path), pid).unwrap_or_else(|e| panic!("move {pid} into {path}: {e}"));
        let seen = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert_eq!(unified_path(&seen), Some(path), "{pid} moved");
        Placed {
            pid,
            cgroup_id: self.id(path),
            path: path.to_owned(),
        }
    }

    /// Moves `pid` back to the test's cgroup, ends it and removes cgroup `path` (a leaf).
    pub fn remove(&mut self, pid: u32, path: &str) {
        let _ = move_to(&self.home, pid);
        if let Some(i) = self.children.iter().position(|c| c.id() == pid) {
            let mut child = self.children.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
        let dir = self.dir(path);
        fs::remove_dir(&dir).unwrap_or_else(|e| panic!("rmdir {}: {e}", dir.display()));
        self.dirs.retain(|d| *d != dir);
    }
}

fn move_to(dir: &Path, pid: u32) -> std::io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))?
        .write_all(pid.to_string().as_bytes())
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = move_to(&self.home, child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in self.dirs.iter().rev() {
            if let Err(e) = fs::remove_dir(dir) {
                eprintln!("cannot remove cgroup {}: {e}", dir.display());
            }
        }
    }
}

/// Removes `trc-<pid>-...` trees whose test process is gone (deepest first; a cgroup still
/// holding a process stays until that process exits).
fn remove_abandoned(mount: &Cgroup2Mount) {
    let Ok(entries) = fs::read_dir(&mount.mount_point) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("trc-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tree(&entry.path());
        }
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// A temporary directory tree (e.g. a pod log directory), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("trc-{}-{n}-{tag}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn mkdir(&self, name: &str) {
        fs::create_dir_all(self.0.join(name)).expect("mkdir in temp dir");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
