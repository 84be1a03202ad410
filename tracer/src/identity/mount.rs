//! Where the cgroup v2 hierarchy is mounted (from `/proc/self/mountinfo`, never assumed:
//! `/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on hybrid ones), and the
//! cgroup v2 line of `/proc/PID/cgroup`.

use std::{
    ffi::OsString,
    io,
    os::unix::ffi::OsStringExt,
    path::{Path, PathBuf},
};

/// One line of `/proc/PID/mountinfo` (the fields this module needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_id: u32,
    pub parent_id: u32,
    /// The mounted directory inside its filesystem (`/` for a whole hierarchy).
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
}

/// Parses mountinfo text (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS
/// [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`. Octal escapes (`\040` for a space, `\011`,
/// `\012`, `\134`) are undone. Lines that do not parse are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountInfo> {
    let mut fields = line.split(' ');
    let mount_id = fields.next()?.parse().ok()?;
    let parent_id = fields.next()?.parse().ok()?;
    let _dev = fields.next()?;
    let root = fields.next()?;
    let mount_point = fields.next()?;
    let _options = fields.next()?;
    // Optional fields (shared:N, master:N, ...) end with a lone "-".
    fields.by_ref().find(|f| *f == "-")?;
    let fs_type = fields.next()?;
    Some(MountInfo {
        mount_id,
        parent_id,
        root: String::from_utf8_lossy(&unescape(root)).into_owned(),
        mount_point: PathBuf::from(OsString::from_vec(unescape(mount_point))),
        fs_type: String::from_utf8_lossy(&unescape(fs_type)).into_owned(),
    })
}

/// Undoes the kernel's `\ooo` octal escapes (`mangle()` in fs/proc_namespace.c).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(octal) = bytes.get(i + 1..i + 4)
            && octal.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let value = octal
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// A cgroup2 mount: where it is, and which directory of the hierarchy it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Mount {
    pub mount_point: PathBuf,
    /// The hierarchy directory mounted there: `/` for the whole hierarchy (of this cgroup
    /// namespace). Cgroup paths in `/proc/PID/cgroup` are relative to the same root.
    pub root: String,
}

impl Cgroup2Mount {
    /// The directory of a cgroup given by its hierarchy path (`/system.slice/x.service`);
    /// None when the path is outside what this mount shows.
    pub fn dir_of(&self, cgroup_path: &str) -> Option<PathBuf> {
        let rest = if self.root == "/" {
            cgroup_path
        } else {
            let rest = cgroup_path.strip_prefix(self.root.trim_end_matches('/'))?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            rest
        };
        Some(self.mount_point.join(rest.trim_start_matches('/')))
    }

    /// The hierarchy path of a directory `rel` (relative to the mount point, `""` for the
    /// mount point itself).
    pub fn path_of(&self, rel: &str) -> String {
        let rel = rel.trim_matches('/');
        match (self.root.trim_end_matches('/'), rel) {
            ("", "") => "/".to_owned(),
            (root, "") => root.to_owned(),
            (root, rel) => format!("{root}/{rel}"),
        }
    }
}

/// The cgroup2 mounts, best first: those showing more of the hierarchy (root `/` first),
/// then the usual places (`/sys/fs/cgroup`, then `/sys/fs/cgroup/unified`), then mount
/// order. A mount hidden by a later mount on the same mount point is left out.
pub fn cgroup2_candidates(mounts: &[MountInfo]) -> Vec<Cgroup2Mount> {
    let mut found: Vec<(usize, &MountInfo)> = mounts
        .iter()
        .enumerate()
        .filter(|(i, m)| {
            m.fs_type == "cgroup2"
                && !mounts[i + 1..]
                    .iter()
                    .any(|later| later.mount_point == m.mount_point)
        })
        .collect();
    let place = |p: &Path| match p.to_str() {
        Some("/sys/fs/cgroup") => 0,
        Some("/sys/fs/cgroup/unified") => 1,
        _ => 2,
    };
    found.sort_by_key(|(i, m)| {
        let depth = m.root.split('/').filter(|c| !c.is_empty()).count();
        (depth, place(&m.mount_point), *i)
    });
    found
        .into_iter()
        .map(|(_, m)| Cgroup2Mount {
            mount_point: m.mount_point.clone(),
            root: m.root.clone(),
        })
        .collect()
}

/// This process's view: the best cgroup2 mount in `/proc/self/mountinfo` whose mount point
/// really is a cgroup2 filesystem now (statfs), which also rules out one hidden by a mount
/// on a parent directory.
pub fn discover() -> io::Result<Cgroup2Mount> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    cgroup2_candidates(&parse_mountinfo(&text))
        .into_iter()
        .find(|m| {
            nix::sys::statfs::statfs(&m.mount_point)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup2 filesystem in /proc/self/mountinfo",
            )
        })
}

/// The cgroup v2 path in `/proc/PID/cgroup` text: the `0::PATH` line (hybrid hosts also
/// list v1 hierarchies as `N:CONTROLLERS:PATH`). The ` (deleted)` the kernel appends for a
/// removed cgroup is dropped.
pub fn unified_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|line| {
        let path = line.strip_prefix("0::")?;
        Some(path.strip_suffix(" (deleted)").unwrap_or(path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This host: hybrid, the unified hierarchy at /sys/fs/cgroup/unified.
    const HYBRID: &str = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd unified host, with optional fields.
    const UNIFIED: &str = "\
25 22 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn hybrid_host_finds_unified() {
        let mounts = parse_mountinfo(HYBRID);
        assert_eq!(mounts.len(), 5);
        assert_eq!(
            cgroup2_candidates(&mounts),
            vec![Cgroup2Mount {
                mount_point: "/sys/fs/cgroup/unified".into(),
                root: "/".into()
            }]
        );
    }

    #[test]
    fn optional_fields_and_unified_host() {
        let mounts = parse_mountinfo(UNIFIED);
        assert_eq!(mounts[0].fs_type, "cgroup2");
        assert_eq!(mounts[0].mount_id, 25);
        assert_eq!(mounts[0].parent_id, 22);
        assert_eq!(
            cgroup2_candidates(&mounts)[0].mount_point,
            PathBuf::from("/sys/fs/cgroup")
        );
    }

    #[test]
    fn escaped_paths() {
        let text =
            "50 25 0:22 /a\\040dir /mnt/my\\040cgroups\\011tab\\134x rw - cgroup2 cgroup2 rw\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(
            mounts[0].mount_point,
            PathBuf::from("/mnt/my cgroups\ttab\\x")
        );
        assert_eq!(mounts[0].root, "/a dir");
        // A backslash not followed by three octal digits stays.
        assert_eq!(unescape("a\\9b\\04"), b"a\\9b\\04");
        // Non-UTF-8 bytes in a mount point survive.
        let mounts = parse_mountinfo("50 25 0:22 / /mnt/\\377 rw - cgroup2 cgroup2 rw\n");
        assert_eq!(
            mounts[0].mount_point.as_os_str().as_encoded_bytes(),
            b"/mnt/\xff"
        );
    }

    #[test]
    fn several_cgroup2_mounts_best_first() {
        let text = "\
60 1 0:40 /kubepods.slice /host/pods rw - cgroup2 cgroup2 rw
61 1 0:40 / /mnt/cg rw - cgroup2 cgroup2 rw
62 1 0:40 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
63 1 0:40 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
        let points: Vec<PathBuf> = cgroup2_candidates(&parse_mountinfo(text))
            .into_iter()
            .map(|m| m.mount_point)
            .collect();
        assert_eq!(
            points,
            [
                "/sys/fs/cgroup",
                "/sys/fs/cgroup/unified",
                "/mnt/cg",
                "/host/pods"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_mount_hidden_by_a_later_one_is_left_out() {
        let text = "\
25 22 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
70 25 0:50 / /sys/fs/cgroup rw - tmpfs tmpfs rw
";
        assert!(cgroup2_candidates(&parse_mountinfo(text)).is_empty());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "garbage\n1 2 3\n25 22 0:22 / /sys/fs/cgroup rw shared:9 cgroup2\n";
        assert!(parse_mountinfo(text).is_empty());
        assert!(cgroup2_candidates(&parse_mountinfo("")).is_empty());
    }

    #[test]
    fn dir_and_path_of_a_cgroup() {
        let whole = Cgroup2Mount {
            mount_point: "/sys/fs/cgroup/unified".into(),
            root: "/".into(),
        };
        assert_eq!(
            whole.dir_of("/system.slice/a.service"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/unified/system.slice/a.service"
            ))
        );
        assert_eq!(
            whole.dir_of("/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(whole.path_of(""), "/");
        assert_eq!(whole.path_of("system.slice"), "/system.slice");
        let sub = Cgroup2Mount {
            mount_point: "/host/pods".into(),
            root: "/kubepods.slice".into(),
        };
        assert_eq!(
            sub.dir_of("/kubepods.slice/x.slice"),
            Some(PathBuf::from("/host/pods/x.slice"))
        );
        assert_eq!(
            sub.dir_of("/kubepods.slice"),
            Some(PathBuf::from("/host/pods"))
        );
        assert_eq!(sub.dir_of("/kubepods.slicex"), None);
        assert_eq!(sub.dir_of("/system.slice"), None);
        assert_eq!(sub.path_of(""), "/kubepods.slice");
        assert_eq!(sub.path_of("x.slice"), "/kubepods.slice/x.slice");
    }

    #[test]
    fn proc_cgroup_v2_line() {
        // This host: hybrid.
        let hybrid = "9:name=systemd:/\n4:memory:/process_api/acf3\n1:cpu:/\n0::/\n";
        assert_eq!(unified_path(hybrid), Some("/"));
        assert_eq!(
            unified_path("0::/system.slice/nginx.service\n"),
            Some("/system.slice/nginx.service")
        );
        assert_eq!(
            unified_path("0::/kubepods/pod1/abc (deleted)\n"),
            Some("/kubepods/pod1/abc")
        );
        // Pure v1: no unified line.
        assert_eq!(unified_path("4:memory:/x\n1:cpu:/\n"), None);
        assert_eq!(unified_path(""), None);
    }
}
