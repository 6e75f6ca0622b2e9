//! The two netfilter netlink conversations the iptables proxy needs to retry a refusing
//! endpoint: an NFQUEUE queue (packets the rules hand to the agent, and its verdicts on them)
//! and ctnetlink's conntrack-entry deletion. Both are plain `NETLINK_NETFILTER` messages,
//! written here over a blocking socket (libnetfilter_queue and libnetfilter_conntrack speak the
//! same protocol).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const NETLINK_NETFILTER: libc::c_int = 12;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NFNETLINK_V0: u8 = 0;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const NFNL_SUBSYS_QUEUE: u16 = 3;

const NFQNL_MSG_PACKET: u16 = NFNL_SUBSYS_QUEUE << 8;
const NFQNL_MSG_VERDICT: u16 = (NFNL_SUBSYS_QUEUE << 8) | 1;
const NFQNL_MSG_CONFIG: u16 = (NFNL_SUBSYS_QUEUE << 8) | 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_PAYLOAD: u16 = 10;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_PACKET: u8 = 2;
/// Packets beyond the queue's length are accepted rather than dropped.
const NFQA_CFG_F_FAIL_OPEN: u32 = 1;

const IPCTNL_MSG_CT_DELETE: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | 2;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

const IPPROTO_TCP: u8 = 6;
/// IPv4 and TCP headers with options fit in this many bytes: all a verdict needs.
const COPY_RANGE: u32 = 128;
/// Packets waiting in the kernel for a verdict (beyond: accepted, see fail-open).
const QUEUE_MAXLEN: u32 = 1024;

/// Appends a netlink attribute, padded to 4 bytes.
fn attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Appends a nested attribute whose payload `fill` writes.
fn nested(buf: &mut Vec<u8>, ty: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    fill(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    buf[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
}

/// A whole netfilter netlink message: header, `nfgenmsg` (family, version, resource id) and
/// the attributes.
fn message(ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.push(family);
    m.push(NFNETLINK_V0);
    m.extend_from_slice(&res_id.to_be_bytes());
    m.extend_from_slice(attrs);
    m
}

/// The messages in one datagram: (type, payload after the netlink header).
fn messages(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        out.push((u16::from_ne_bytes(buf[4..6].try_into().unwrap()), &buf[16..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

/// The attributes of a payload: (type without flags, data).
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes(buf[0..2].try_into().unwrap()) as usize;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((u16::from_ne_bytes(buf[2..4].try_into().unwrap()) & NLA_TYPE_MASK, &buf[4..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

/// A `NETLINK_NETFILTER` socket (blocking, with a receive timeout).
struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    fn open(recv_timeout: Duration) -> io::Result<Socket> {
        // SAFETY: plain socket(2); the descriptor is owned from here on.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_NETFILTER) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let tv = libc::timeval {
            tv_sec: recv_timeout.as_secs() as libc::time_t,
            tv_usec: recv_timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` outlives the call and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: an all-zero sockaddr_nl is valid; the kernel assigns the port id.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `addr` outlives the call and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Socket { fd, seq: 0 })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `msg` is valid for its length; the kernel (port 0) is the default peer.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One datagram; `Ok(0)` when the receive timeout passed.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }

    /// Sends a request with `NLM_F_ACK` and waits for its acknowledgement (or error), skipping
    /// anything else that arrives meanwhile (queued packets are not expected before the bind).
    fn request(&mut self, ty: u16, family: u8, res_id: u16, attrs: &[u8]) -> io::Result<()> {
        let seq = self.next_seq();
        self.send(&message(ty, NLM_F_REQUEST | NLM_F_ACK, seq, family, res_id, attrs))?;
        let mut buf = vec![0u8; 8192];
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            let n = self.recv(&mut buf)?;
            for (ty, payload) in messages(&buf[..n]) {
                if ty != NLMSG_ERROR || payload.len() < 4 + 16 {
                    continue;
                }
                let acked_seq = u32::from_ne_bytes(payload[4 + 8..4 + 12].try_into().unwrap());
                if acked_seq != seq {
                    continue;
                }
                let errno = i32::from_ne_bytes(payload[0..4].try_into().unwrap());
                return if errno == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-errno)) };
            }
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "no netlink acknowledgement within 2 s"))
    }
}

/// A TCP segment handed to the agent by an `NFQUEUE` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedSegment {
    /// The kernel's id of the packet, for the verdict.
    pub id: u32,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub rst: bool,
}

/// Parses an IPv4 TCP segment's addresses and RST flag.
fn parse_segment(id: u32, ip: &[u8]) -> Option<QueuedSegment> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != IPPROTO_TCP {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let tcp = ip.get(ihl..ihl + 14)?;
    let addr = |o: usize| Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
    let port = |o: usize| u16::from_be_bytes([tcp[o], tcp[o + 1]]);
    Some(QueuedSegment {
        id,
        src: SocketAddrV4::new(addr(12), port(0)),
        dst: SocketAddrV4::new(addr(16), port(2)),
        rst: tcp[13] & 0x04 != 0,
    })
}

/// The (packet id, payload) of every packet message in a datagram from the queue.
fn queued_packets(buf: &[u8]) -> Vec<(u32, &[u8])> {
    let mut out = Vec::new();
    for (ty, payload) in messages(buf) {
        if ty != NFQNL_MSG_PACKET || payload.len() < 4 {
            continue;
        }
        let (mut id, mut data) = (None, None);
        for (aty, a) in attrs(&payload[4..]) {
            match aty {
                NFQA_PACKET_HDR if a.len() >= 4 => id = Some(u32::from_be_bytes(a[0..4].try_into().unwrap())),
                NFQA_PAYLOAD => data = Some(a),
                _ => {}
            }
        }
        if let Some(id) = id {
            out.push((id, data.unwrap_or_default()));
        }
    }
    out
}

/// What becomes of a queued packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
}

/// A bound NFQUEUE queue. Closing it (drop) unbinds the queue; rules that send to an
/// unbound queue with `--queue-bypass` then let their packets through.
pub struct Queue {
    sock: Socket,
    num: u16,
    buf: Vec<u8>,
}

impl Queue {
    /// Binds queue `num`, copying the first bytes of each packet. `EPERM`: another socket
    /// holds it, or the agent lacks `CAP_NET_ADMIN`; `EBUSY`: this socket holds it already.
    pub fn bind(num: u16) -> io::Result<Queue> {
        let mut sock = Socket::open(Duration::from_millis(250))?;
        let mut cmd = Vec::new();
        attr(&mut cmd, NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, libc::AF_INET as u8]);
        sock.request(NFQNL_MSG_CONFIG, libc::AF_UNSPEC as u8, num, &cmd)?;
        let mut params = Vec::new();
        let mut p = COPY_RANGE.to_be_bytes().to_vec();
        p.push(NFQNL_COPY_PACKET);
        attr(&mut params, NFQA_CFG_PARAMS, &p);
        attr(&mut params, NFQA_CFG_QUEUE_MAXLEN, &QUEUE_MAXLEN.to_be_bytes());
        attr(&mut params, NFQA_CFG_MASK, &NFQA_CFG_F_FAIL_OPEN.to_be_bytes());
        attr(&mut params, NFQA_CFG_FLAGS, &NFQA_CFG_F_FAIL_OPEN.to_be_bytes());
        sock.request(NFQNL_MSG_CONFIG, libc::AF_UNSPEC as u8, num, &params)?;
        Ok(Queue { sock, num, buf: vec![0u8; 65536] })
    }

    pub fn num(&self) -> u16 {
        self.num
    }

    /// The next queued packets (empty after the receive timeout). Packets that are not IPv4
    /// TCP are accepted here and not returned.
    pub fn recv(&mut self) -> io::Result<Vec<QueuedSegment>> {
        let n = match self.sock.recv(&mut self.buf) {
            Ok(n) => n,
            // The kernel dropped messages for a full socket buffer (fail-open covers the queue).
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut segments = Vec::new();
        let mut others = Vec::new();
        for (id, payload) in queued_packets(&self.buf[..n]) {
            match parse_segment(id, payload) {
                Some(s) => segments.push(s),
                None => others.push(id),
            }
        }
        for id in others {
            self.verdict(id, Verdict::Accept)?;
        }
        Ok(segments)
    }

    pub fn verdict(&mut self, id: u32, verdict: Verdict) -> io::Result<()> {
        let v: u32 = match verdict {
            Verdict::Accept => 1,
            Verdict::Drop => 0,
        };
        let mut hdr = v.to_be_bytes().to_vec();
        hdr.extend_from_slice(&id.to_be_bytes());
        let mut a = Vec::new();
        attr(&mut a, NFQA_VERDICT_HDR, &hdr);
        let seq = self.sock.next_seq();
        self.sock.send(&message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, seq, libc::AF_UNSPEC as u8, self.num, &a))
    }
}

/// The attributes of a ctnetlink request naming a TCP connection by its reply tuple.
fn reply_tuple(src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    let mut a = Vec::new();
    nested(&mut a, CTA_TUPLE_REPLY, |t| {
        nested(t, CTA_TUPLE_IP, |ip| {
            attr(ip, CTA_IP_V4_SRC, &src.ip().octets());
            attr(ip, CTA_IP_V4_DST, &dst.ip().octets());
        });
        nested(t, CTA_TUPLE_PROTO, |p| {
            attr(p, CTA_PROTO_NUM, &[IPPROTO_TCP]);
            attr(p, CTA_PROTO_SRC_PORT, &src.port().to_be_bytes());
            attr(p, CTA_PROTO_DST_PORT, &dst.port().to_be_bytes());
        });
    });
    a
}

/// Deletes conntrack entries through ctnetlink.
pub struct Conntrack {
    sock: Socket,
}

impl Conntrack {
    pub fn open() -> io::Result<Conntrack> {
        Ok(Conntrack { sock: Socket::open(Duration::from_millis(500))? })
    }

    /// Deletes the TCP connection whose reply direction goes from `src` to `dst` (as a packet
    /// of it looks before the kernel undoes its address translation). `Ok(false)`: no such
    /// entry.
    pub fn delete_by_reply(&mut self, src: SocketAddrV4, dst: SocketAddrV4) -> io::Result<bool> {
        match self.sock.request(IPCTNL_MSG_CT_DELETE, libc::AF_INET as u8, 0, &reply_tuple(src, dst)) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn attributes_are_padded_and_nested_lengths_cover_their_children() {
        let a = reply_tuple(sa("10.222.0.5:8080"), sa("192.168.1.2:40000"));
        // reply(4) + ip(4) + src(8) + dst(8) + proto(4) + num(8, padded) + 2 ports(8 each)
        assert_eq!(a.len(), 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8);
        assert_eq!(u16::from_ne_bytes([a[0], a[1]]) as usize, a.len());
        assert_eq!(u16::from_ne_bytes([a[2], a[3]]), CTA_TUPLE_REPLY | NLA_F_NESTED);
        let top = attrs(&a);
        assert_eq!(top.len(), 1);
        let inner = attrs(top[0].1);
        assert_eq!(inner.iter().map(|(t, _)| *t).collect::<Vec<_>>(), [CTA_TUPLE_IP, CTA_TUPLE_PROTO]);
        let ip = attrs(inner[0].1);
        assert_eq!(ip, [(CTA_IP_V4_SRC, &[10, 222, 0, 5][..]), (CTA_IP_V4_DST, &[192, 168, 1, 2][..])]);
        let proto = attrs(inner[1].1);
        assert_eq!(
            proto,
            [
                (CTA_PROTO_NUM, &[6][..]),
                (CTA_PROTO_SRC_PORT, &8080u16.to_be_bytes()[..]),
                (CTA_PROTO_DST_PORT, &40000u16.to_be_bytes()[..])
            ]
        );
    }

    #[test]
    fn message_header_and_nfgenmsg() {
        let m = message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, 7, 0, 0x1234, &[1, 2, 3, 4]);
        assert_eq!(m.len(), 24);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 24);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 0x0302);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(&m[16..20], &[0, 0, 0x12, 0x34]);
        assert_eq!(messages(&m), [(0x0302, &m[16..])]);
    }

    #[test]
    fn queued_rst_is_parsed_from_a_packet_message() {
        // IPv4 (IHL 5) + TCP from 10.222.0.5:8080 to 10.0.0.1:40000 with RST|ACK.
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 222, 0, 5, 10, 0, 0, 1];
        ip.extend_from_slice(&8080u16.to_be_bytes());
        ip.extend_from_slice(&40000u16.to_be_bytes());
        ip.extend_from_slice(&[0; 8]);
        ip.extend_from_slice(&[0x50, 0x14, 0, 0, 0, 0, 0, 0]);
        let mut a = Vec::new();
        attr(&mut a, NFQA_PACKET_HDR, &[0, 0, 0, 42, 0x08, 0x00, 1]);
        attr(&mut a, NFQA_PAYLOAD, &ip);
        let mut dgram = message(NFQNL_MSG_PACKET, 0, 0, 2, 5, &a);
        dgram.extend(message(NFQNL_MSG_PACKET, 0, 0, 2, 5, &a));
        let packets = queued_packets(&dgram);
        assert_eq!(packets.len(), 2);
        let seg = parse_segment(packets[0].0, packets[0].1).unwrap();
        assert_eq!(seg, QueuedSegment { id: 42, src: sa("10.222.0.5:8080"), dst: sa("10.0.0.1:40000"), rst: true });
        // Not TCP, or truncated: not a segment.
        let mut udp = ip.clone();
        udp[9] = 17;
        assert_eq!(parse_segment(1, &udp), None);
        assert_eq!(parse_segment(1, &ip[..30]), None);
    }
}
