//! `--proxy-mode iptables`: node ports forwarded by the kernel (netfilter DNAT), as
//! kube-proxy's iptables mode does, instead of through a userspace connection per client.
//!
//! Every agent owns chains named after a tag (a hash of its node name and proxy address), so
//! several agents on one machine do not touch each other's rules:
//!
//! - `nat SKIFF-NP-<tag>` (jumped to from `PREROUTING` and `OUTPUT`): one rule per node
//!   port with ready endpoints, matching the proxy address (every local address when it is
//!   `0.0.0.0`) and the port, jumping to
//! - `nat SKIFF-S-<tag>-<port>`: marks the connection's first packet, then DNATs it to the
//!   endpoints round-robin (`statistic --mode nth`: with n endpoints the first rule takes
//!   every n-th new connection, the next every (n−1)-th of the rest, …);
//! - `nat SKIFF-MASQ-<tag>` (from `POSTROUTING`): masquerades marked packets, so replies
//!   come back through this node (and loopback clients can reach bridge addresses:
//!   `route_localnet` is switched on when the proxy address is loopback or `0.0.0.0`);
//! - `filter SKIFF-FW-<tag>` (from `FORWARD`): accepts marked packets (Docker's `FORWARD`
//!   policy is `DROP`).
//!
//! - `mangle SKIFF-RST-<tag>` (from `PREROUTING` and `OUTPUT`): hands the agent, through an
//!   NFQUEUE queue of its own, every RST an endpoint sends in reply to a connection's first
//!   SYN (the connection is not `ASSURED` yet), i.e. an endpoint refusing the connection.
//!
//! A sync renders the whole rule set and loads it with one `iptables-restore --noflush`
//! (atomic per table), only when it changed; a failed load is retried every second. Only the
//! first packet of a connection passes the nat table, so established connections keep their
//! endpoint when it leaves the Endpoints (conntrack), which is what graceful termination
//! needs.
//!
//! **Retrying a refusing endpoint.** The kernel sends a connection to one endpoint and cannot
//! try another, so the agent does it: a queued RST from an endpoint of a node port that has
//! another endpoint left is dropped, the connection's conntrack entry is deleted (ctnetlink),
//! and the endpoint is taken out of the rules. The client, which saw no RST, retransmits its
//! SYN (after its 1 s initial retransmission timeout); that SYN starts a new conntrack entry
//! and is sent to another endpoint. So a refusing endpoint costs a client one second, not a
//! failed connection, and only the first few clients: the endpoint is back in the rules once a
//! TCP connect from the agent succeeds (tried every second) or after
//! [`MAX_QUARANTINE`]. An endpoint that is the only one left is not retried: its RST passes,
//! as it does when the queue cannot be bound (no `CAP_NET_ADMIN`, no NFQUEUE support; the
//! rules use `--queue-bypass`, so a dead agent's queue blocks nothing).
//!
//! Dropping the proxy removes the chains and the jumps to them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::netlink::{Conntrack, Queue, Verdict};
use crate::command::{ensure_iptables_rule, run, run_blocking};

/// The longest an endpoint that refused a connection stays out of the rules without a
/// successful connect from the agent (it may be unreachable from the agent yet not refusing).
pub const MAX_QUARANTINE: Duration = Duration::from_secs(10);
/// How often the agent tries to connect to endpoints that refused.
const READMIT_EVERY: Duration = Duration::from_secs(1);
/// Deadline of one such connect.
const READMIT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Marks a connection proxied by Skiff (kube-proxy uses 0x4000).
const MARK: &str = "0x2000/0x2000";

/// Node port → ready endpoints.
pub(super) type Table = BTreeMap<u16, Vec<SocketAddr>>;

/// The chain-name tag of an agent: 8 hex digits of a hash (FNV-1a) of its node name and
/// proxy address, so chain names stay under iptables' 28 characters.
pub fn tag(node_name: &str, bind: IpAddr) -> String {
    skiff_api::keys::short_hash(&format!("{node_name}\0{bind}"))
}

struct Chains {
    np: String,
    masq: String,
    fw: String,
    rst: String,
    svc_prefix: String,
}

impl Chains {
    fn new(tag: &str) -> Self {
        Chains {
            np: format!("SKIFF-NP-{tag}"),
            masq: format!("SKIFF-MASQ-{tag}"),
            fw: format!("SKIFF-FW-{tag}"),
            rst: format!("SKIFF-RST-{tag}"),
            svc_prefix: format!("SKIFF-S-{tag}-"),
        }
    }

    fn svc(&self, port: u16) -> String {
        format!("{}{port}", self.svc_prefix)
    }

    /// The node ports with a chain of this agent in an `iptables -t nat -S` listing.
    fn ports_in(&self, listing: &str) -> BTreeSet<u16> {
        listing
            .lines()
            .filter_map(|l| l.strip_prefix("-N "))
            .filter_map(|c| c.strip_prefix(self.svc_prefix.as_str()))
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// (table, built-in chain, our chain) for every jump this agent adds.
    fn jumps(&self) -> [(&'static str, &'static str, &str); 6] {
        [
            ("nat", "PREROUTING", &self.np),
            ("nat", "OUTPUT", &self.np),
            ("nat", "POSTROUTING", &self.masq),
            ("filter", "FORWARD", &self.fw),
            // An endpoint's RST before any address translation is undone: as it arrives from
            // a pod (PREROUTING) or leaves a local endpoint (OUTPUT).
            ("mangle", "PREROUTING", &self.rst),
            ("mangle", "OUTPUT", &self.rst),
        ]
    }
}

/// Which forwarded connections get their source rewritten (masqueraded) to this node's
/// address, and how.
///
/// Masquerading is what lets a reply return through the node that rewrote the destination, but
/// it folds every client onto one address: many clients' connections then reuse the same
/// (node address, port) towards a pod, whose TIME_WAIT entries of earlier connections drop a
/// new SYN whose TCP timestamp is older (PAWS), and each such drop costs its client a 1 s
/// retransmission (measured: 5 % of the connections of a busy node port). So, as kube-proxy
/// does for local endpoints with `externalTrafficPolicy: Local`, a connection from another
/// machine that leaves through the agent's own pod bridge keeps its client's address: the pod's
/// reply goes to its gateway, this node, anyway. Clients on the node itself (loopback addresses
/// are unroutable from a pod; a local client's connections to a pod that had just started were
/// seen to stall unmasqueraded), pods of that bridge itself (whose replies would bypass the
/// node) and everything leaving through another interface are still masqueraded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snat {
    /// `--random-fully` (iptables 1.6.2 and later): a masqueraded source port drawn at random
    /// rather than the client's, which would follow the host's own port sequence.
    pub random_fully: bool,
    /// The agent's pod bridge and its subnet, e.g. `("skiff0", "10.222.0.0/16")`.
    pub pod_bridge: Option<(String, String)>,
}

/// Whether this iptables has `--random-fully` (1.6.2 and later), from `iptables -V`.
fn has_random_fully(version: &str) -> bool {
    let digits: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .find(|w| w.contains('.'))
        .unwrap_or("")
        .split('.')
        .filter_map(|n| n.parse().ok())
        .collect();
    digits.as_slice() >= [1, 6, 2].as_slice()
}

/// The `iptables-restore --noflush` input for `table`; `stale` are node ports whose chains
/// exist from an earlier load and are deleted; `queue` is the NFQUEUE queue that gets
/// endpoints' refusals (none: refusals pass).
fn render(
    chains: &Chains,
    bind: IpAddr,
    table: &Table,
    stale: &BTreeSet<u16>,
    snat: &Snat,
    queue: Option<u16>,
) -> String {
    let mut out = String::from("*nat\n");
    let _ = writeln!(out, ":{} - [0:0]", chains.np);
    let _ = writeln!(out, ":{} - [0:0]", chains.masq);
    let ports: Vec<(u16, &Vec<SocketAddr>)> =
        table.iter().filter(|(_, b)| !b.is_empty()).map(|(p, b)| (*p, b)).collect();
    for (port, _) in &ports {
        let _ = writeln!(out, ":{} - [0:0]", chains.svc(*port));
    }
    let live: BTreeSet<u16> = ports.iter().map(|(p, _)| *p).collect();
    let dead: Vec<u16> = stale.iter().copied().filter(|p| !live.contains(p)).collect();
    for port in &dead {
        let _ = writeln!(out, ":{} - [0:0]", chains.svc(*port));
    }
    let masq = if snat.random_fully { "MASQUERADE --random-fully" } else { "MASQUERADE" };
    let _ = writeln!(out, "-A {} -m mark --mark {MARK} -m addrtype --src-type LOCAL -j {masq}", chains.masq);
    if let Some((bridge, cidr)) = &snat.pod_bridge {
        let _ = writeln!(out, "-A {} -m mark --mark {MARK} -o {bridge} ! -s {cidr} -j RETURN", chains.masq);
    }
    let _ = writeln!(out, "-A {} -m mark --mark {MARK} -j {masq}", chains.masq);
    let dst = if bind.is_unspecified() { "-m addrtype --dst-type LOCAL".to_string() } else { format!("-d {bind}/32") };
    for (port, backends) in &ports {
        let svc = chains.svc(*port);
        let _ = writeln!(out, "-A {} {dst} -p tcp -m tcp --dport {port} -j {svc}", chains.np);
        let _ = writeln!(out, "-A {svc} -j MARK --set-xmark {MARK}");
        let n = backends.len();
        for (i, b) in backends.iter().enumerate() {
            let every = n - i;
            if every > 1 {
                let _ = writeln!(
                    out,
                    "-A {svc} -p tcp -m statistic --mode nth --every {every} --packet 0 -j DNAT --to-destination {b}"
                );
            } else {
                let _ = writeln!(out, "-A {svc} -p tcp -j DNAT --to-destination {b}");
            }
        }
    }
    for port in &dead {
        let _ = writeln!(out, "-X {}", chains.svc(*port));
    }
    out.push_str("COMMIT\n*filter\n");
    let _ = writeln!(out, ":{} - [0:0]", chains.fw);
    let _ = writeln!(out, "-A {} -m mark --mark {MARK} -j ACCEPT", chains.fw);
    out.push_str("COMMIT\n*mangle\n");
    let _ = writeln!(out, ":{} - [0:0]", chains.rst);
    if let Some(q) = queue {
        let _ = writeln!(out, "-A {} -p tcp -m tcp ! --tcp-flags RST RST -j RETURN", chains.rst);
        let orig_dst = if bind.is_unspecified() { String::new() } else { format!(" --ctorigdst {bind}/32") };
        for (port, _) in &ports {
            let _ = writeln!(
                out,
                "-A {} -p tcp -m conntrack --ctstate DNAT ! --ctstatus ASSURED --ctdir REPLY{orig_dst} --ctorigdstport {port} \
                 -j NFQUEUE --queue-num {q} --queue-bypass",
                chains.rst
            );
        }
    }
    out.push_str("COMMIT\n");
    out
}

/// The endpoints that refused a connection, and the table they are taken out of.
#[derive(Debug, Default)]
struct Refusals {
    /// Node port → ready endpoints, as last set.
    table: Table,
    /// Endpoint → when it last refused a connection.
    refusing: HashMap<SocketAddr, Instant>,
}

impl Refusals {
    /// Whether a connection `backend` refused can go to another endpoint instead: it serves a
    /// node port, and each node port it serves has an endpoint besides it that has not refused.
    fn can_retry(&self, backend: SocketAddr) -> bool {
        let mut serves = self.table.values().filter(|b| b.contains(&backend)).peekable();
        serves.peek().is_some() && serves.all(|b| b.iter().any(|o| *o != backend && !self.refusing.contains_key(o)))
    }

    /// The table without the refusing endpoints, except where that would leave a node port
    /// none (then it keeps them all: better a refused connection than none at all).
    fn effective(&self) -> Table {
        self.table
            .iter()
            .map(|(port, b)| {
                let ok: Vec<SocketAddr> = b.iter().copied().filter(|a| !self.refusing.contains_key(a)).collect();
                (*port, if ok.is_empty() { b.clone() } else { ok })
            })
            .collect()
    }

    /// Sets the table; refusals of endpoints no longer in it are forgotten.
    fn set_table(&mut self, table: Table) {
        self.refusing.retain(|a, _| table.values().any(|b| b.contains(a)));
        self.table = table;
    }
}

/// The NFQUEUE number an agent tries first: derived from its tag, so agents on one machine
/// usually differ at once (a taken number is skipped).
fn first_queue(tag: &str) -> u16 {
    0x4000 + (u32::from_str_radix(tag, 16).unwrap_or(0) % 0x4000) as u16
}

/// Binds the agent's queue (trying 16 numbers from [`first_queue`]) and opens a ctnetlink
/// socket. A number another process holds fails with `EPERM` (as does every number without
/// `CAP_NET_ADMIN`), one this process holds with `EBUSY`: both move on to the next.
fn bind_queue(tag: &str) -> std::io::Result<(Queue, Conntrack)> {
    let ct = Conntrack::open()?;
    let first = first_queue(tag);
    let mut last = None;
    for num in first..first + 16 {
        match Queue::bind(num) {
            Ok(q) => return Ok((q, ct)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EPERM)) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no queue number")))
}

/// The queue's thread: decides on each queued RST (see the module's documentation).
fn watch_refusals(
    mut queue: Queue,
    mut ct: Conntrack,
    refusals: Arc<Mutex<Refusals>>,
    changed: Arc<Notify>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let segments = match queue.recv() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("service proxy: reading queue {}: {e}", queue.num());
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        for seg in segments {
            let backend = SocketAddr::V4(seg.src);
            let retry = seg.rst && {
                let r = refusals.lock().unwrap_or_else(|e| e.into_inner());
                r.can_retry(backend)
            };
            // Without its conntrack entry gone the client's next SYN would follow the old
            // translation to the same endpoint: then the refusal had better reach it.
            let verdict = match retry.then(|| ct.delete_by_reply(seg.src, seg.dst)) {
                Some(Ok(_)) => {
                    let first = refusals
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .refusing
                        .insert(backend, Instant::now())
                        .is_none();
                    if first {
                        tracing::info!(
                            endpoint = %backend,
                            "service proxy: endpoint refused a connection; its client retries another, \
                             and it leaves the rules until it accepts one"
                        );
                    }
                    changed.notify_one();
                    Verdict::Drop
                }
                Some(Err(e)) => {
                    tracing::warn!(endpoint = %backend, "service proxy: deleting a refused connection's conntrack entry: {e}");
                    Verdict::Accept
                }
                None => Verdict::Accept,
            };
            if let Err(e) = queue.verdict(seg.id, verdict) {
                tracing::warn!("service proxy: verdict on queue {}: {e}", queue.num());
            }
        }
    }
}

/// Forgets the refusals of endpoints that accept a connection now, or that refused longer
/// than [`MAX_QUARANTINE`] ago; whether it forgot any.
async fn readmit(refusals: &Mutex<Refusals>) -> bool {
    let refusing: Vec<(SocketAddr, Instant)> =
        refusals.lock().unwrap_or_else(|e| e.into_inner()).refusing.iter().map(|(a, t)| (*a, *t)).collect();
    let checks = refusing.into_iter().map(|(addr, since)| async move {
        let accepts = since.elapsed() >= MAX_QUARANTINE
            || matches!(
                tokio::time::timeout(READMIT_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
                Ok(Ok(_))
            );
        (addr, since, accepts)
    });
    let results = futures::future::join_all(checks).await;
    let mut r = refusals.lock().unwrap_or_else(|e| e.into_inner());
    let mut any = false;
    for (addr, since, accepts) in results {
        // Unless it refused again meanwhile.
        if accepts && r.refusing.get(&addr) == Some(&since) {
            r.refusing.remove(&addr);
            any = true;
            tracing::info!(endpoint = %addr, "service proxy: endpoint back in the rules");
        }
    }
    any
}

/// The node ports whose chains exist now (left by an earlier run of this agent).
async fn existing_ports(chains: &Chains) -> BTreeSet<u16> {
    chains.ports_in(&run("iptables", &["-t", "nat", "-S"], None).await.unwrap_or_default())
}

async fn ensure_jumps(chains: &Chains) -> Result<(), String> {
    for (table, builtin, ours) in chains.jumps() {
        ensure_iptables_rule(table, builtin, &["-j", ours]).await?;
    }
    Ok(())
}

/// Loads `rules`, then adds the jumps to this agent's chains unless they are known to exist.
async fn load(rules: &str, chains: &Chains, jumps_ok: bool) -> Result<(), String> {
    run("iptables-restore", &["--noflush"], Some(rules)).await?;
    if !jumps_ok {
        ensure_jumps(chains).await?;
    }
    Ok(())
}

/// The kernel-forwarding proxy: the latest wanted table goes to a task that loads it (without
/// the endpoints that refused connections), and a thread watches for refusals.
pub(super) struct Iptables {
    wanted: watch::Sender<Table>,
    /// The table the kernel has (the last successful load).
    loaded: Arc<Mutex<Option<Table>>>,
    task: JoinHandle<()>,
    /// Tries the refusing endpoints every second, apart from the loads (a connect may take
    /// its whole timeout).
    readmitter: JoinHandle<()>,
    /// Stops the refusal thread (it notices within its queue's receive timeout).
    stop: Arc<AtomicBool>,
    tag: String,
}

impl Iptables {
    /// Must be called inside a tokio runtime.
    pub(super) fn start(bind: IpAddr, tag: String, pod_bridge: Option<(String, String)>) -> Self {
        if bind.is_loopback() || bind.is_unspecified() {
            // Loopback clients DNATed to pod addresses need routable 127/8 sources.
            if let Err(e) = std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1") {
                tracing::warn!(
                    "service proxy: cannot enable route_localnet ({e}); loopback clients may not reach pods"
                );
            }
        }
        let refusals: Arc<Mutex<Refusals>> = Arc::default();
        let changed = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let mut queue_num = match bind_queue(&tag) {
            Ok((queue, ct)) => {
                let num = queue.num();
                let (refusals, changed, stop) = (refusals.clone(), changed.clone(), stop.clone());
                let spawned = std::thread::Builder::new()
                    .name("proxy-refusals".into())
                    .spawn(move || watch_refusals(queue, ct, refusals, changed, stop));
                match spawned {
                    Ok(_) => Some(num),
                    Err(e) => {
                        tracing::warn!("service proxy: cannot start the refusal thread: {e}");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    "service proxy: cannot bind an NFQUEUE queue ({e}): a connection sent to an endpoint \
                     that refuses it fails instead of going to another endpoint"
                );
                None
            }
        };
        let (tx, mut rx) = watch::channel(Table::new());
        let chains = Chains::new(&tag);
        let loaded: Arc<Mutex<Option<Table>>> = Arc::default();
        let done = loaded.clone();
        let readmitter = {
            let (refusals, changed) = (refusals.clone(), changed.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(READMIT_EVERY).await;
                    let any = !refusals.lock().unwrap_or_else(|e| e.into_inner()).refusing.is_empty();
                    if any && readmit(&refusals).await {
                        changed.notify_one();
                    }
                }
            })
        };
        let task = tokio::spawn(async move {
            let random_fully = has_random_fully(&run("iptables", &["-V"], None).await.unwrap_or_default());
            let snat = Snat { random_fully, pod_bridge };
            let mut loaded = existing_ports(&chains).await;
            let mut loaded_effective: Option<Table> = None;
            let mut jumps_ok = false;
            // The first load happens at once (an empty table removes a crashed run's rules).
            rx.mark_changed();
            loop {
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    () = changed.notified() => {}
                }
                let table = rx.borrow_and_update().clone();
                let effective = {
                    let mut r = refusals.lock().unwrap_or_else(|e| e.into_inner());
                    r.set_table(table.clone());
                    r.effective()
                };
                if loaded_effective.as_ref() == Some(&effective) {
                    *done.lock().unwrap_or_else(|e| e.into_inner()) = Some(table);
                    continue;
                }
                let mut res =
                    load(&render(&chains, bind, &effective, &loaded, &snat, queue_num), &chains, jumps_ok).await;
                if let (Err(e), Some(_)) = (&res, queue_num) {
                    // Perhaps this iptables lacks the NFQUEUE target or the conntrack match.
                    let plain = render(&chains, bind, &effective, &loaded, &snat, None);
                    if load(&plain, &chains, jumps_ok).await.is_ok() {
                        tracing::warn!(
                            "service proxy: the refusal rules do not load ({e}); a connection sent to an \
                             endpoint that refuses it fails instead of going to another endpoint"
                        );
                        queue_num = None;
                        res = Ok(());
                    }
                }
                match res {
                    Ok(()) => {
                        jumps_ok = true;
                        loaded = effective.iter().filter(|(_, b)| !b.is_empty()).map(|(p, _)| *p).collect();
                        tracing::debug!(node_ports = loaded.len(), "service proxy: iptables rules loaded");
                        loaded_effective = Some(effective);
                        *done.lock().unwrap_or_else(|e| e.into_inner()) = Some(table);
                    }
                    Err(e) => {
                        tracing::warn!("service proxy: loading iptables rules failed (retrying in 1 s): {e}");
                        loaded_effective = None;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        rx.mark_changed();
                    }
                }
            }
        });
        Iptables { wanted: tx, loaded, task, readmitter, stop, tag }
    }

    /// Whether the kernel has the latest wanted table.
    pub(super) fn is_loaded(&self) -> bool {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).as_ref() == Some(&*self.wanted.borrow())
    }

    pub(super) fn set(&self, table: Table) {
        self.wanted.send_if_modified(|cur| {
            if *cur == table {
                return false;
            }
            *cur = table;
            true
        });
    }

    pub(super) fn table(&self) -> Table {
        self.wanted.borrow().clone()
    }
}

impl Drop for Iptables {
    /// Removes the jumps, then every chain of this agent.
    fn drop(&mut self) {
        self.task.abort();
        self.readmitter.abort();
        self.stop.store(true, Ordering::Relaxed);
        let chains = Chains::new(&self.tag);
        for (table, builtin, ours) in chains.jumps() {
            while run_blocking("iptables", &["-t", table, "-D", builtin, "-j", ours]).is_some() {}
        }
        // What exists, not what was wanted: a load may be pending or may have failed.
        let listing = run_blocking("iptables", &["-t", "nat", "-S"]).unwrap_or_default();
        let nat: Vec<String> = chains
            .ports_in(&listing)
            .into_iter()
            .map(|p| chains.svc(p))
            .chain([chains.np.clone(), chains.masq.clone()])
            .collect();
        for c in &nat {
            run_blocking("iptables", &["-t", "nat", "-F", c]);
        }
        for c in &nat {
            run_blocking("iptables", &["-t", "nat", "-X", c]);
        }
        run_blocking("iptables", &["-t", "filter", "-F", &chains.fw]);
        run_blocking("iptables", &["-t", "filter", "-X", &chains.fw]);
        run_blocking("iptables", &["-t", "mangle", "-F", &chains.rst]);
        run_blocking("iptables", &["-t", "mangle", "-X", &chains.rst]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn random_fully_from_iptables_1_6_2() {
        assert!(has_random_fully("iptables v1.8.9 (nf_tables)\n"));
        assert!(has_random_fully("iptables v1.6.2"));
        assert!(!has_random_fully("iptables v1.6.1"));
        assert!(!has_random_fully("iptables v1.4.21"));
        assert!(!has_random_fully(""));
    }

    #[test]
    fn tags_differ_per_node_and_address_and_fit_chain_names() {
        let a = tag("node-a", "127.0.0.1".parse().unwrap());
        assert_eq!(a.len(), 8);
        assert_ne!(a, tag("node-b", "127.0.0.1".parse().unwrap()));
        assert_ne!(a, tag("node-a", "127.0.0.2".parse().unwrap()));
        assert!(Chains::new(&a).svc(65535).len() <= 28);
    }

    #[test]
    fn render_round_robins_ready_endpoints_and_deletes_stale_chains() {
        let c = Chains::new("abcd0123");
        let table: Table =
            [(30080, vec![sa("10.0.0.1:8080"), sa("10.0.0.2:8080"), sa("10.0.0.3:8080")]), (30081, vec![])].into();
        let snat = Snat { random_fully: true, pod_bridge: Some(("skiff0".into(), "10.222.0.0/16".into())) };
        let rules = render(&c, "127.0.0.2".parse().unwrap(), &table, &[30081, 30099].into(), &snat, Some(17000));
        let expected = "\
*nat
:SKIFF-NP-abcd0123 - [0:0]
:SKIFF-MASQ-abcd0123 - [0:0]
:SKIFF-S-abcd0123-30080 - [0:0]
:SKIFF-S-abcd0123-30081 - [0:0]
:SKIFF-S-abcd0123-30099 - [0:0]
-A SKIFF-MASQ-abcd0123 -m mark --mark 0x2000/0x2000 -m addrtype --src-type LOCAL -j MASQUERADE --random-fully
-A SKIFF-MASQ-abcd0123 -m mark --mark 0x2000/0x2000 -o skiff0 ! -s 10.222.0.0/16 -j RETURN
-A SKIFF-MASQ-abcd0123 -m mark --mark 0x2000/0x2000 -j MASQUERADE --random-fully
-A SKIFF-NP-abcd0123 -d 127.0.0.2/32 -p tcp -m tcp --dport 30080 -j SKIFF-S-abcd0123-30080
-A SKIFF-S-abcd0123-30080 -j MARK --set-xmark 0x2000/0x2000
-A SKIFF-S-abcd0123-30080 -p tcp -m statistic --mode nth --every 3 --packet 0 -j DNAT --to-destination 10.0.0.1:8080
-A SKIFF-S-abcd0123-30080 -p tcp -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 10.0.0.2:8080
-A SKIFF-S-abcd0123-30080 -p tcp -j DNAT --to-destination 10.0.0.3:8080
-X SKIFF-S-abcd0123-30081
-X SKIFF-S-abcd0123-30099
COMMIT
*filter
:SKIFF-FW-abcd0123 - [0:0]
-A SKIFF-FW-abcd0123 -m mark --mark 0x2000/0x2000 -j ACCEPT
COMMIT
*mangle
:SKIFF-RST-abcd0123 - [0:0]
-A SKIFF-RST-abcd0123 -p tcp -m tcp ! --tcp-flags RST RST -j RETURN
-A SKIFF-RST-abcd0123 -p tcp -m conntrack --ctstate DNAT ! --ctstatus ASSURED --ctdir REPLY --ctorigdst 127.0.0.2/32 --ctorigdstport 30080 -j NFQUEUE --queue-num 17000 --queue-bypass
COMMIT
";
        assert_eq!(rules, expected);
        let any = render(&c, "0.0.0.0".parse().unwrap(), &table, &BTreeSet::new(), &Snat::default(), None);
        assert!(
            any.contains("-A SKIFF-NP-abcd0123 -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30080 "),
            "{any}"
        );
        // Without a pod bridge of its own every forwarded connection is masqueraded.
        assert!(any.contains("-A SKIFF-MASQ-abcd0123 -m mark --mark 0x2000/0x2000 -j MASQUERADE\n"), "{any}");
        assert!(!any.contains("RETURN"), "{any}");
        // Without a queue the refusal chain exists (its jumps do) but sends nothing anywhere.
        assert!(any.ends_with("*mangle\n:SKIFF-RST-abcd0123 - [0:0]\nCOMMIT\n"), "{any}");
        let any_q = render(&c, "0.0.0.0".parse().unwrap(), &table, &BTreeSet::new(), &Snat::default(), Some(1));
        assert!(any_q.contains("--ctdir REPLY --ctorigdstport 30080 -j NFQUEUE"), "{any_q}");
    }

    #[test]
    fn refusing_endpoints_leave_the_table_while_another_remains() {
        let (a, b, c) = (sa("10.0.0.1:80"), sa("10.0.0.2:80"), sa("10.0.0.3:80"));
        let mut r = Refusals::default();
        r.set_table([(30080, vec![a, b]), (30081, vec![b, c]), (30082, vec![c])].into());
        // a has b beside it; c is alone on 30082; nobody serves d.
        assert!(r.can_retry(a));
        assert!(!r.can_retry(c), "the only endpoint of a port: its refusal must reach the client");
        assert!(!r.can_retry(sa("10.0.0.4:80")));
        r.refusing.insert(a, Instant::now());
        // Now b is a's port's last endpoint that has not refused.
        assert!(!r.can_retry(b));
        let eff = r.effective();
        assert_eq!(eff[&30080], [b]);
        assert_eq!(eff[&30081], [b, c]);
        // A port whose endpoints all refused keeps them all.
        r.refusing.insert(b, Instant::now());
        assert_eq!(r.effective()[&30080], [a, b]);
        // Endpoints that leave the table are forgotten.
        r.set_table([(30081, vec![b, c])].into());
        assert_eq!(r.refusing.keys().collect::<Vec<_>>(), [&b]);
    }

    /// Needs root (CI runs as root); elsewhere there is no queue to bind.
    #[test]
    fn a_taken_queue_number_is_skipped() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: skipping the NFQUEUE bind test");
            return;
        }
        let tag = short_hash_tag("queue-test");
        let taken = Queue::bind(first_queue(&tag)).expect("binding a free queue number as root");
        let (second, _ct) = bind_queue(&tag).expect("the next queue number");
        assert_eq!(taken.num(), first_queue(&tag));
        assert_eq!(second.num(), first_queue(&tag) + 1);
    }

    /// A tag for a test, distinct per process so parallel test runs do not collide.
    fn short_hash_tag(what: &str) -> String {
        skiff_api::keys::short_hash(&format!("{what}-{}", std::process::id()))
    }

    #[test]
    fn first_queue_numbers_follow_the_tag_within_their_range() {
        assert_eq!(first_queue("00000000"), 0x4000);
        assert_eq!(first_queue("00004001"), 0x4001);
        assert_eq!(first_queue("ffffffff"), 0x7fff);
        assert_eq!(first_queue("not hex"), 0x4000);
    }
}
