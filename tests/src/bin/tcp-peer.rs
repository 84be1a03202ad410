//! A TCP peer for scenarios that need a real separate process (one that can crash).
//!
//! `tcp-peer serve ADDR:PORT`: accepts one connection, prints `accepted`, then echoes until
//! the connection ends or the process is killed. Run it inside a namespace with
//! `ip netns exec`.

use std::{
    io::{Read, Write},
    net::TcpListener,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(addr)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: tcp-peer serve ADDR:PORT");
        std::process::exit(2);
    };
    if mode != "serve" {
        eprintln!("unknown mode {mode}");
        std::process::exit(2);
    }
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| {
        eprintln!("bind {addr}: {e}");
        std::process::exit(1)
    });
    println!("listening");
    let (mut stream, _) = listener.accept().expect("accept");
    println!("accepted");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
}
