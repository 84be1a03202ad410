//! A TCP peer for scenarios that need a real separate process (one that can crash, or that
//! lives in a cgroup of its own).
//!
//! - `tcp-peer serve ADDR:PORT [--keepalive IDLE_MS,INTVL_MS,COUNT]`: listens (port 0: any),
//!   prints `listening` (`listening PORT` when the port was 0), accepts one connection,
//!   prints `accepted`, then echoes until the connection ends or the process is killed;
//!   with `--keepalive`, the accepted socket probes an idle peer. Prints `closed ERROR` when
//!   the connection died with an error.
//! - `tcp-peer connect ADDR:PORT [--times N] [--user-timeout MS] [--send-every MS]`:
//!   connects N times (default 1), printing `connected PORT` (the local port) or `refused`
//!   / `error ERROR` for each; with `--send-every`, the last connection then writes a byte
//!   at that interval until writing fails (`closed ERROR`). Then waits for its standard
//!   input to close, holding its last connection unless it died.
//!
//! Run it inside a network namespace (`ip netns exec`, or `setns` before exec).

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use socket2::{SockRef, TcpKeepalive};

fn usage() -> ! {
    eprintln!(
        "usage: tcp-peer serve ADDR:PORT [--keepalive IDLE_MS,INTVL_MS,COUNT]\n       \
         tcp-peer connect ADDR:PORT [--times N] [--user-timeout MS] [--send-every MS]"
    );
    std::process::exit(2);
}

fn ms(value: Option<&String>) -> Duration {
    Duration::from_millis(
        value
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage()),
    )
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(addr)) = (args.get(1), args.get(2)) else {
        usage();
    };
    let addr: SocketAddr = addr.parse().unwrap_or_else(|_| usage());
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args.get(i + 1).unwrap_or_else(|| usage()))
    };
    match mode.as_str() {
        "serve" => serve(addr, option("--keepalive")),
        "connect" => connect(
            addr,
            option("--times").map_or(1, |n| n.parse().unwrap_or_else(|_| usage())),
            option("--user-timeout").map(|v| ms(Some(v))),
            option("--send-every").map(|v| ms(Some(v))),
        ),
        _ => usage(),
    }
}

fn serve(addr: SocketAddr, keepalive: Option<&String>) {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| {
        eprintln!("bind {addr}: {e}");
        std::process::exit(1)
    });
    if addr.port() == 0 {
        say(&format!(
            "listening {}",
            listener.local_addr().unwrap().port()
        ));
    } else {
        say("listening");
    }
    let (mut stream, _) = listener.accept().expect("accept");
    if let Some(spec) = keepalive {
        let parts: Vec<u64> = spec.split(',').filter_map(|p| p.parse().ok()).collect();
        let [idle, interval, count] = parts[..] else {
            usage();
        };
        let socket = SockRef::from(&stream);
        socket.set_keepalive(true).expect("SO_KEEPALIVE");
        socket
            .set_tcp_keepalive(
                &TcpKeepalive::new()
                    .with_time(Duration::from_millis(idle))
                    .with_interval(Duration::from_millis(interval))
                    .with_retries(count as u32),
            )
            .expect("keepalive options");
    }
    say("accepted");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Err(e) => {
                say(&format!("closed {e}"));
                break;
            }
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
}

fn connect(
    addr: SocketAddr,
    times: u32,
    user_timeout: Option<Duration>,
    send_every: Option<Duration>,
) {
    let mut last = None;
    for _ in 0..times {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .expect("socket");
        if let Some(timeout) = user_timeout {
            socket
                .set_tcp_user_timeout(Some(timeout))
                .expect("TCP_USER_TIMEOUT");
        }
        match socket.connect(&addr.into()) {
            Ok(()) => {
                let stream: TcpStream = socket.into();
                say(&format!(
                    "connected {}",
                    stream.local_addr().map_or(0, |a| a.port())
                ));
                last = Some(stream);
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => say("refused"),
            Err(e) => say(&format!("error {e}")),
        }
    }
    if let (Some(stream), Some(every)) = (last.as_mut(), send_every) {
        loop {
            if let Err(e) = stream.write_all(b"x") {
                say(&format!("closed {e}"));
                last = None;
                break;
            }
            std::thread::sleep(every);
        }
    }
    // Until the test is done with this process (its cgroup stays in use).
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(last);
}
