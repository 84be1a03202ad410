//! Building blocks for scenarios: sockets on either host with the options a scenario needs.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use serde_json::Value;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use tracer::event::{Event, EventKind, SocketId};

use crate::{Hosts, Netns};

/// Socket options a scenario sets before connecting.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// (idle, interval, count)
    pub keepalive: Option<(Duration, Duration, u32)>,
    pub user_timeout: Option<Duration>,
    pub syn_count: Option<u32>,
    pub connect_timeout: Option<Duration>,
}

/// Listens on `addr:port` inside `ns` (port 0: any).
pub fn listen(ns: &Netns, addr: IpAddr, port: u16) -> TcpListener {
    ns.run_in("server", move || {
        let socket = Socket::new(
            Domain::for_address(SocketAddr::new(addr, port)),
            Type::STREAM,
            None,
        )
        .expect("socket");
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        socket
            .bind(&SocketAddr::new(addr, port).into())
            .expect("bind");
        socket.listen(128).expect("listen");
        socket.into()
    })
}

/// Connects from `ns` (on a thread named `comm`, which becomes the socket owner's comm).
pub fn connect(
    ns: &Netns,
    comm: &str,
    to: SocketAddr,
    options: ClientOptions,
) -> std::io::Result<TcpStream> {
    ns.run_in(comm, move || {
        let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
        apply(&socket, &options)?;
        match options.connect_timeout {
            Some(t) => socket.connect_timeout(&to.into(), t)?,
            None => socket.connect(&to.into())?,
        }
        Ok(socket.into())
    })
}

fn apply(socket: &Socket, options: &ClientOptions) -> std::io::Result<()> {
    if let Some((idle, interval, count)) = options.keepalive {
        socket.set_keepalive(true)?;
        socket.set_tcp_keepalive(
            &TcpKeepalive::new()
                .with_time(idle)
                .with_interval(interval)
                .with_retries(count),
        )?;
    }
    if let Some(t) = options.user_timeout {
        socket.set_tcp_user_timeout(Some(t))?;
    }
    if let Some(n) = options.syn_count {
        set_syn_count(socket, n)?;
    }
    Ok(())
}

fn set_syn_count(socket: &Socket, count: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = count as libc::c_int;
    // SAFETY: valid fd, option and length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_SYNCNT,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// An established connection client → server, with both ends handed back.
pub struct Connection {
    pub client: TcpStream,
    pub server: TcpStream,
    pub client_port: u16,
    pub server_port: u16,
}

/// Connects the hosts over IPv4 or IPv6 and exchanges a little data both ways (so the
/// connection has an RTT sample, as real ones do).
pub fn establish(hosts: &Hosts, v6: bool, options: ClientOptions) -> Connection {
    establish_between(
        &hosts.client,
        &hosts.server,
        Hosts::server_addr(v6),
        options,
    )
}

/// [`establish`] between any two namespaces; the server listens on `server_addr`.
pub fn establish_between(
    client_ns: &Netns,
    server_ns: &Netns,
    server_addr: IpAddr,
    options: ClientOptions,
) -> Connection {
    let listener = listen(server_ns, server_addr, 0);
    let server_port = listener.local_addr().unwrap().port();
    let mut client = connect(
        client_ns,
        "client",
        SocketAddr::new(server_addr, server_port),
        options,
    )
    .expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    let mut buf = [0u8; 5];
    for _ in 0..3 {
        client.write_all(b"hello").unwrap();
        server.read_exact(&mut buf).unwrap();
        server.write_all(b"world").unwrap();
        client.read_exact(&mut buf).unwrap();
    }
    let client_port = client.local_addr().unwrap().port();
    Connection {
        client,
        server,
        client_port,
        server_port,
    }
}

/// Closes a socket with SO_LINGER {on, 0}: the kernel sends a reset instead of a FIN.
pub fn abort(stream: TcpStream) {
    SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(stream);
}

/// Records of the given kind for the socket with local port `lport`.
pub fn of_socket<'a>(records: &'a [Value], kind: &str, lport: u16) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["type"] == "event" && r["kind"] == kind && r["lport"] == lport)
        .collect()
}

/// The `event` records among `records`, typed.
pub fn events(records: &[Value]) -> Vec<Event> {
    records
        .iter()
        .filter(|r| r["type"] == "event")
        .map(|r| serde_json::from_value(r.clone()).expect("an event record"))
        .collect()
}

/// The segments the kernel counts in RetransSegs for namespace `netns` (see
/// [`RetransSegs`]).
pub fn retransmitted_segments(events: &[Event], netns: u32) -> u64 {
    let mut counter = RetransSegs::default();
    events
        .iter()
        .filter(|e| e.conn.netns == netns)
        .map(|e| counter.add(e))
        .sum()
}

/// Counts segments as the kernel's RetransSegs does, event by event: every `retransmit`'s,
/// and a `retransmit_failed` attempt's when the kernel counted it before the transmission
/// failed (its socket's `total_retrans` grew by its `segs` since the socket's previous event
/// with counters). Attempts refused before counting (`-EBUSY`: the original still in the
/// host's queue, as an IPv6 SYN waiting for neighbour discovery is) leave it unchanged.
#[derive(Default)]
pub struct RetransSegs {
    /// Each socket's `total_retrans` as its last event with counters said.
    last_total: HashMap<Option<SocketId>, i64>,
}

impl RetransSegs {
    /// The segments `e` adds to RetransSegs. A socket seen for the first time is taken to
    /// have started at 0: true of every socket created while the tracer ran, as the tests'
    /// and the benchmarks' are.
    pub fn add(&mut self, e: &Event) -> u64 {
        let segs = i64::from(e.segs.unwrap_or(0));
        let total = e.sock.as_ref().map(|s| i64::from(s.total_retrans));
        let counted = match e.kind {
            EventKind::Retransmit => segs,
            EventKind::RetransmitFailed => {
                let before = self.last_total.get(&e.socket).copied().unwrap_or(0);
                if total.unwrap_or(before) - before >= segs {
                    segs
                } else {
                    0
                }
            }
            _ => 0,
        };
        if let Some(total) = total {
            self.last_total.insert(e.socket, total);
        }
        counted as u64
    }
}

/// Number of events of `kind` in namespace `netns`.
pub fn count(records: &[Value], netns: u32, kind: &str) -> i64 {
    records
        .iter()
        .filter(|r| r["type"] == "event" && r["kind"] == kind && r["netns"] == netns)
        .count() as i64
}
