//! Helpers shared by Skiff's tests and benches: free loopback ports that stay free until used, this host's address.
//!
//! A port found with `bind(127.0.0.1:0)` and released comes from the kernel's ephemeral range,
//! the same range the kernel draws the source port of every outgoing connection from: another
//! test's connection can take it in the moment between its release and the bind it was meant
//! for, which then fails with "address in use". [`free_port`] hands out ports below that range
//! (and below the node-port range 30000–32767, which tests' Services use), where the kernel
//! never assigns a port by itself, and never the same port twice in one process.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// The ports handed out: below the node-port range and below Linux's default ephemeral range.
const LOW: u32 = 15_000;
const HIGH: u32 = 30_000;

/// The kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), if readable.
fn ephemeral_range() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<u32>());
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

/// Where this process's search for the next port starts: a per-process offset, so that
/// processes running at once (a test and the servers it started) rarely probe the same ports.
fn cursor() -> &'static AtomicU32 {
    static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);
    if CURSOR.load(Ordering::Relaxed) == u32::MAX {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let seed = std::process::id().wrapping_mul(7919) ^ nanos;
        let _ = CURSOR.compare_exchange(u32::MAX, seed % (HIGH - LOW), Ordering::Relaxed, Ordering::Relaxed);
    }
    &CURSOR
}

/// A loopback TCP port nothing listens on now and that no outgoing connection will take: free
/// on `127.0.0.1` and `0.0.0.0`, outside the kernel's ephemeral range, never returned twice by
/// one process. Falls back to a kernel-chosen port if no such port is found.
pub fn free_port() -> u16 {
    let ephemeral = ephemeral_range().unwrap_or((32_768, 60_999));
    let cursor = cursor();
    for _ in 0..(HIGH - LOW) {
        let port = LOW + cursor.fetch_add(1, Ordering::Relaxed) % (HIGH - LOW);
        if (ephemeral.0..=ephemeral.1).contains(&port) {
            continue;
        }
        let port = port as u16;
        let free = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
            && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
        if free {
            return port;
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// This host's IPv4 source address towards its default route, unless that is a loopback
/// address (no packet is sent): the address clients on other machines reach it at.
pub fn host_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("8.8.8.8:53").ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified() && !ip.is_loopback())
}

/// `n` distinct [`free_port`]s.
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ports = free_ports(200);
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len(), "a port was handed out twice: {ports:?}");
        let (lo, hi) = ephemeral_range().unwrap_or((32_768, 60_999));
        for p in ports {
            assert!(!(lo..=hi).contains(&u32::from(p)), "port {p} is in the ephemeral range {lo}-{hi}");
            assert!((LOW..HIGH).contains(&u32::from(p)), "port {p} outside {LOW}-{HIGH}");
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap_or_else(|e| panic!("port {p}: {e}"));
        }
    }
}
