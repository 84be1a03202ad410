//! Listing TCP sockets with netlink sock_diag (what `ss -tinoe` does), in the network
//! namespace of the calling thread.

use anyhow::{Context, Result, bail};
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::IPPROTO_TCP,
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags, Timer, nlas::Nla},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use crate::event::{Connection, Family, SocketId as SocketCookie, TcpState};

/// The timer armed on a socket, as sock_diag reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArmedTimer {
    Retransmit,
    Keepalive,
    TimeWait,
    ZeroWindowProbe,
}

/// One socket as the kernel describes it.
#[derive(Debug, Clone)]
pub struct DiagSocket {
    /// The socket cookie: the same value the kernel programs report.
    pub socket: SocketCookie,
    pub conn: Connection,
    pub state: TcpState,
    pub inode: u32,
    pub uid: u32,
    pub timer: Option<(ArmedTimer, u64)>,
    pub info: Option<TcpInfoSummary>,
    /// idiag_rqueue: for a connection, bytes received and not read yet.
    pub unread: u32,
    pub receive_memory: Option<ReceiveMemory>,
}

/// Receive memory in use and its limit (INET_DIAG_SKMEMINFO: SK_MEMINFO_RMEM_ALLOC and
/// SK_MEMINFO_RCVBUF).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReceiveMemory {
    pub allocated: u32,
    pub buffer: u32,
}

/// The parts of `struct tcp_info` the flags and verdicts use.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct TcpInfoSummary {
    /// Consecutive RTOs without progress (icsk_retransmits).
    pub retransmits: u8,
    /// Unanswered keepalive or zero-window probes.
    pub probes: u8,
    pub backoff: u8,
    pub rto_us: u32,
    pub unacked: u32,
    pub total_retrans: u32,
    pub last_data_sent_ms: u32,
    pub last_data_recv_ms: u32,
    pub last_ack_recv_ms: u32,
}

fn cookie(bytes: [u8; 8]) -> u64 {
    // idiag_cookie is two native-endian u32: low half first.
    let lo = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let hi = u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Every TCP socket of `family` in this thread's namespace (inode `netns`).
pub fn dump(family: Family, netns: u32) -> Result<Vec<DiagSocket>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).context("opening a sock_diag socket")?;
    socket.bind_auto().context("binding the sock_diag socket")?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family: family as u8,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::INFO | ExtensionFlags::SKMEMINFO,
            states: StateFlags::all(),
            socket_id: match family {
                Family::Ipv4 => SocketId::new_v4(),
                Family::Ipv6 => SocketId::new_v6(),
            },
        })
        .into(),
    );
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket
        .send(&buf, 0)
        .context("sending the sock_diag request")?;

    let mut out = Vec::new();
    // Bounded: the kernel ends every dump with NLMSG_DONE.
    loop {
        let (data, _) = socket.recv_from_full().context("reading sock_diag")?;
        if data.is_empty() {
            bail!("sock_diag: empty read before the end of the dump");
        }
        let mut offset = 0;
        while offset < data.len() {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&data[offset..])
                .map_err(|e| anyhow::anyhow!("sock_diag: malformed reply: {e}"))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return Err(e.to_io()).context("sock_diag dump refused");
                }
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    let h = &r.header;
                    let info = r.nlas.iter().find_map(|nla| match nla {
                        Nla::TcpInfo(i) => Some(TcpInfoSummary {
                            retransmits: i.retransmits,
                            probes: i.probes,
                            backoff: i.backoff,
                            rto_us: i.rto,
                            unacked: i.unacked,
                            total_retrans: i.total_retrans,
                            last_data_sent_ms: i.last_data_sent,
                            last_data_recv_ms: i.last_data_recv,
                            last_ack_recv_ms: i.last_ack_recv,
                        }),
                        _ => None,
                    });
                    let receive_memory = r.nlas.iter().find_map(|nla| match nla {
                        Nla::MemInfo(m) => Some(ReceiveMemory {
                            allocated: m.receive_queue,
                            buffer: m.receive_queue_max,
                        }),
                        _ => None,
                    });
                    out.push(DiagSocket {
                        socket: SocketCookie(cookie(h.socket_id.cookie)),
                        conn: Connection {
                            family,
                            laddr: h.socket_id.source_address,
                            lport: h.socket_id.source_port,
                            raddr: h.socket_id.destination_address,
                            rport: h.socket_id.destination_port,
                            netns,
                        },
                        state: TcpState(h.state),
                        inode: h.inode,
                        uid: h.uid,
                        timer: h.timer.as_ref().map(|t| match t {
                            Timer::Retransmit(d, _) => {
                                (ArmedTimer::Retransmit, d.as_millis() as u64)
                            }
                            Timer::KeepAlive(d) => (ArmedTimer::Keepalive, d.as_millis() as u64),
                            Timer::TimeWait => (ArmedTimer::TimeWait, 0),
                            Timer::Probe(d) => (ArmedTimer::ZeroWindowProbe, d.as_millis() as u64),
                        }),
                        info,
                        unread: h.recv_queue,
                        receive_memory,
                    });
                }
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

/// Both families.
pub fn dump_all(netns: u32) -> Result<Vec<DiagSocket>> {
    let mut all = dump(Family::Ipv4, netns)?;
    all.extend(dump(Family::Ipv6, netns)?);
    Ok(all)
}
