//! Network namespaces as hosts.

use std::{
    collections::HashMap,
    fs::File,
    net::IpAddr,
    os::{fd::AsFd, unix::fs::MetadataExt},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use nix::sched::{CloneFlags, setns};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
    pub inode: u32,
}

impl Netns {
    /// A fresh namespace with loopback up. `tag` makes failures readable.
    pub fn new(tag: &str) -> Netns {
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(remove_abandoned);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("trc-{}-{n}-{tag}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]));
        let inode = std::fs::metadata(format!("/run/netns/{name}"))
            .expect("new namespace file")
            .ino() as u32;
        let ns = Netns { name, inode };
        ns.ip(&["link", "set", "lo", "up"]);
        // A deleted namespace lives on while sockets hold it: a socket closed toward a
        // blackholed peer would retransmit its FIN for minutes, loading later tests.
        ns.sysctl("net.ipv4.tcp_orphan_retries", "1");
        ns
    }

    /// `ip -n NAME args...`
    pub fn ip(&self, args: &[&str]) {
        run(Command::new("ip").args(["-n", &self.name]).args(args));
    }

    /// Creates a veth pair: `local` in this namespace, `remote` in `peer`. Interface names
    /// are per namespace, so the same short names serve every test.
    fn veth(&self, local: &str, peer: &Netns, remote: &str) {
        self.ip(&[
            "link", "add", local, "type", "veth", "peer", "name", remote, "netns", &peer.name,
        ]);
    }

    /// Gives `dev` an IPv4 /24 and an IPv6 /64 (without duplicate address detection, so it
    /// is usable at once) and brings it up.
    fn address(&self, dev: &str, v4: &str, v6: &str) {
        self.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev]);
        self.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{v6}/64"),
            "dev",
            dev,
            "nodad",
        ]);
        self.ip(&["link", "set", dev, "up"]);
    }

    /// Runs a command inside the namespace and returns its output (must succeed).
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args))
    }

    /// A command to spawn inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// A sysctl of this namespace (None if this kernel has no such sysctl).
    pub fn read_sysctl(&self, key: &str) -> Option<i64> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.run_in("sysctl", move || {
            std::fs::read_to_string(path).ok()?.trim().parse().ok()
        })
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")]);
    }

    /// Loads an nftables ruleset (`nft -f -` syntax) into this namespace.
    pub fn nft(&self, ruleset: &str) {
        use std::io::Write;
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nft");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft failed for\n{ruleset}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Drops every packet arriving in this namespace from `peer` (an unplugged cable, a
    /// crashed host), in an nftables table of its own so that [`Netns::heal`] undoes it.
    pub fn blackhole_from(&self, peer: IpAddr) {
        let family = if peer.is_ipv4() { "ip" } else { "ip6" };
        self.nft(&format!(
            "table inet blackhole {{\n chain input {{\n type filter hook input priority 0;\n \
             {family} saddr {peer} drop\n }}\n}}\n"
        ));
    }

    pub fn heal(&self) {
        self.exec("nft", &["delete", "table", "inet", "blackhole"]);
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it creates live here
    /// (and stay here when handed back). The thread's name becomes the kernel's comm.
    pub fn run_in<R: Send + 'static>(
        &self,
        thread_name: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> R {
        let file = File::open(format!("/run/netns/{}", self.name)).expect("open netns");
        thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || {
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .expect("spawn thread")
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// This namespace's TCP MIB counters (/proc/net/snmp and /proc/net/netstat).
    pub fn snmp(&self) -> Snmp {
        self.run_in("snmp", || {
            let mut map = HashMap::new();
            for file in [
                "/proc/thread-self/net/snmp",
                "/proc/thread-self/net/netstat",
            ] {
                let text = std::fs::read_to_string(file).expect("read MIB");
                let lines: Vec<&str> = text.lines().collect();
                for pair in lines.chunks(2) {
                    let [names, values] = pair else { continue };
                    let names: Vec<&str> = names.split_whitespace().collect();
                    let values: Vec<&str> = values.split_whitespace().collect();
                    let prefix = names[0].trim_end_matches(':');
                    for (n, v) in names.iter().zip(values.iter()).skip(1) {
                        if let Ok(v) = v.parse::<i64>() {
                            map.insert(format!("{prefix}.{n}"), v);
                        }
                    }
                }
            }
            Snmp(map)
        })
    }
}

/// Namespaces of test processes that were killed before their cleanup ran (`trc-PID-...`
/// whose PID is gone): removed, so that an interrupted run does not load the next one.
fn remove_abandoned() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
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
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            delete_netns(&name);
        }
    }
}

fn delete_netns(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_netns(&self.name);
    }
}

/// MIB counters of one namespace, e.g. `Tcp.RetransSegs`, `TcpExt.TCPKeepAlive`.
#[derive(Debug, Clone)]
pub struct Snmp(pub HashMap<String, i64>);

impl Snmp {
    pub fn get(&self, name: &str) -> i64 {
        *self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("no MIB counter {name}"))
    }

    /// `name` now minus `name` in `before`.
    pub fn delta(&self, before: &Snmp, name: &str) -> i64 {
        self.get(name) - before.get(name)
    }
}

/// Two hosts joined by a veth pair, with IPv4 and IPv6 addresses.
pub struct Hosts {
    pub client: Netns,
    pub server: Netns,
}

impl Hosts {
    pub const CLIENT_V4: &str = "10.99.0.1";
    pub const SERVER_V4: &str = "10.99.0.2";
    pub const CLIENT_V6: &str = "fd00:99::1";
    pub const SERVER_V6: &str = "fd00:99::2";

    pub fn new(tag: &str) -> Hosts {
        let client = Netns::new(&format!("{tag}-c"));
        let server = Netns::new(&format!("{tag}-s"));
        client.veth("veth0", &server, "veth1");
        client.address("veth0", Self::CLIENT_V4, Self::CLIENT_V6);
        server.address("veth1", Self::SERVER_V4, Self::SERVER_V6);
        let hosts = Hosts { client, server };
        hosts.resolve_neighbours();
        hosts
    }

    /// Each host's neighbour entry for the other, resolved before any test traffic (a UDP
    /// datagram each way per family, which no TCP counter sees): a fresh pair's first IPv6
    /// SYN now and then waited a second or more in the host queue for neighbour discovery,
    /// and the test's connection started with a refused SYN retransmit (`-EBUSY`) and the
    /// 3 s RTO the kernel keeps after one, when the scenarios are about their timing.
    fn resolve_neighbours(&self) {
        for v6 in [false, true] {
            for (from, to_addr) in [
                (&self.client, Self::server_addr(v6)),
                (&self.server, Self::client_addr(v6)),
            ] {
                let target = to_addr.to_string();
                crate::wait_until(
                    std::time::Duration::from_secs(10),
                    &format!("{} to know {target}'s link address", from.name),
                    || {
                        from.run_in("neighbours", move || {
                            let any: IpAddr = if v6 {
                                std::net::Ipv6Addr::UNSPECIFIED.into()
                            } else {
                                std::net::Ipv4Addr::UNSPECIFIED.into()
                            };
                            let socket = std::net::UdpSocket::bind((any, 0)).expect("bind");
                            let _ = socket.send_to(b"neighbours", (to_addr, 9));
                        });
                        let out = from.exec("ip", &["neigh", "show", "to", &target]);
                        String::from_utf8_lossy(&out.stdout)
                            .contains("lladdr")
                            .then_some(())
                    },
                );
            }
        }
    }

    pub fn client_addr(v6: bool) -> IpAddr {
        (if v6 { Self::CLIENT_V6 } else { Self::CLIENT_V4 })
            .parse()
            .unwrap()
    }

    pub fn server_addr(v6: bool) -> IpAddr {
        (if v6 { Self::SERVER_V6 } else { Self::SERVER_V4 })
            .parse()
            .unwrap()
    }

    /// `--netns` arguments selecting both hosts.
    pub fn netns_args(&self) -> Vec<String> {
        vec![
            "--netns".into(),
            self.client.inode.to_string(),
            "--netns".into(),
            self.server.inode.to_string(),
        ]
    }
}

/// Client and server on two subnets joined by a router namespace (a middlebox whose
/// forwarding can be broken: a stateful firewall that forgets flows).
pub struct Routed {
    pub client: Netns,
    pub router: Netns,
    pub server: Netns,
}

impl Routed {
    pub const CLIENT_V4: &str = "10.99.1.1";
    pub const SERVER_V4: &str = "10.99.2.1";
    pub const CLIENT_V6: &str = "fd00:991::1";
    pub const SERVER_V6: &str = "fd00:992::1";

    pub fn new(tag: &str) -> Routed {
        let client = Netns::new(&format!("{tag}-c"));
        let router = Netns::new(&format!("{tag}-r"));
        let server = Netns::new(&format!("{tag}-s"));
        for (host, side, v4, v6, router_v4, router_v6) in [
            (
                &client,
                "c",
                Self::CLIENT_V4,
                Self::CLIENT_V6,
                "10.99.1.254",
                "fd00:991::fe",
            ),
            (
                &server,
                "s",
                Self::SERVER_V4,
                Self::SERVER_V6,
                "10.99.2.254",
                "fd00:992::fe",
            ),
        ] {
            let peer = format!("r{side}");
            host.veth("veth0", &router, &peer);
            host.address("veth0", v4, v6);
            router.address(&peer, router_v4, router_v6);
            host.ip(&["route", "add", "default", "via", router_v4]);
            host.ip(&["-6", "route", "add", "default", "via", router_v6]);
        }
        router.sysctl("net.ipv4.ip_forward", "1");
        router.sysctl("net.ipv6.conf.all.forwarding", "1");
        Routed {
            client,
            router,
            server,
        }
    }

    pub fn server_addr(v6: bool) -> IpAddr {
        (if v6 { Self::SERVER_V6 } else { Self::SERVER_V4 })
            .parse()
            .unwrap()
    }

    /// The middlebox forgets every flow: from now on it drops TCP segments that do not
    /// open a connection (what a stateful firewall does with a flow it no longer knows).
    pub fn forget_flows(&self) {
        self.router.nft(
            "table inet middlebox {\n chain forward {\n type filter hook forward priority 0;\n \
             tcp flags & (syn | rst) == 0 drop\n }\n}\n",
        );
    }

    pub fn netns_args(&self) -> Vec<String> {
        [&self.client, &self.router, &self.server]
            .iter()
            .flat_map(|ns| ["--netns".to_owned(), ns.inode.to_string()])
            .collect()
    }
}
