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
//! A sync renders the whole rule set and loads it with one `iptables-restore --noflush`
//! (atomic per table), only when it changed; a failed load is retried every second. Only the
//! first packet of a connection passes the nat table, so established connections keep their
//! endpoint when it leaves the Endpoints (conntrack), which is what graceful termination
//! needs. What the kernel cannot do is the userspace proxy's retry of a refusing endpoint:
//! here an endpoint that refuses fails that connection, so readiness must be right.
//! Dropping the proxy removes the chains and the jumps to them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::command::{run, run_blocking};

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
    svc_prefix: String,
}

impl Chains {
    fn new(tag: &str) -> Self {
        Chains {
            np: format!("SKIFF-NP-{tag}"),
            masq: format!("SKIFF-MASQ-{tag}"),
            fw: format!("SKIFF-FW-{tag}"),
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
    fn jumps(&self) -> [(&'static str, &'static str, &str); 4] {
        [
            ("nat", "PREROUTING", &self.np),
            ("nat", "OUTPUT", &self.np),
            ("nat", "POSTROUTING", &self.masq),
            ("filter", "FORWARD", &self.fw),
        ]
    }
}

/// The `iptables-restore --noflush` input for `table`; `stale` are node ports whose chains
/// exist from an earlier load and are deleted.
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

fn render(chains: &Chains, bind: IpAddr, table: &Table, stale: &BTreeSet<u16>, snat: &Snat) -> String {
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
    out.push_str("COMMIT\n");
    out
}

/// The node ports whose chains exist now (left by an earlier run of this agent).
async fn existing_ports(chains: &Chains) -> BTreeSet<u16> {
    chains.ports_in(&run("iptables", &["-t", "nat", "-S"], None).await.unwrap_or_default())
}

async fn ensure_jumps(chains: &Chains) -> Result<(), String> {
    for (table, builtin, ours) in chains.jumps() {
        if run("iptables", &["-t", table, "-C", builtin, "-j", ours], None).await.is_err() {
            run("iptables", &["-t", table, "-I", builtin, "1", "-j", ours], None).await?;
        }
    }
    Ok(())
}

/// The kernel-forwarding proxy: the latest wanted table goes to a task that loads it.
pub(super) struct Iptables {
    wanted: watch::Sender<Table>,
    /// The table the kernel has (the last successful load).
    loaded: Arc<Mutex<Option<Table>>>,
    task: JoinHandle<()>,
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
        let (tx, mut rx) = watch::channel(Table::new());
        let chains = Chains::new(&tag);
        let loaded: Arc<Mutex<Option<Table>>> = Arc::default();
        let done = loaded.clone();
        let task = tokio::spawn(async move {
            let random_fully = has_random_fully(&run("iptables", &["-V"], None).await.unwrap_or_default());
            let snat = Snat { random_fully, pod_bridge };
            let mut loaded = existing_ports(&chains).await;
            let mut jumps_ok = false;
            // The first load happens at once (an empty table removes a crashed run's rules).
            rx.mark_changed();
            loop {
                if rx.changed().await.is_err() {
                    return;
                }
                let table = rx.borrow_and_update().clone();
                let rules = render(&chains, bind, &table, &loaded, &snat);
                let res = match run("iptables-restore", &["--noflush"], Some(&rules)).await {
                    Ok(_) if !jumps_ok => ensure_jumps(&chains).await,
                    other => other.map(|_| ()),
                };
                match res {
                    Ok(()) => {
                        jumps_ok = true;
                        loaded = table.iter().filter(|(_, b)| !b.is_empty()).map(|(p, _)| *p).collect();
                        tracing::debug!(node_ports = loaded.len(), "service proxy: iptables rules loaded");
                        *done.lock().unwrap_or_else(|e| e.into_inner()) = Some(table);
                    }
                    Err(e) => {
                        tracing::warn!("service proxy: loading iptables rules failed (retrying in 1 s): {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        rx.mark_changed();
                    }
                }
            }
        });
        Iptables { wanted: tx, loaded, task, tag }
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
        let rules = render(&c, "127.0.0.2".parse().unwrap(), &table, &[30081, 30099].into(), &snat);
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
";
        assert_eq!(rules, expected);
        let any = render(&c, "0.0.0.0".parse().unwrap(), &table, &BTreeSet::new(), &Snat::default());
        assert!(
            any.contains("-A SKIFF-NP-abcd0123 -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30080 "),
            "{any}"
        );
        // Without a pod bridge of its own every forwarded connection is masqueraded.
        assert!(any.contains("-A SKIFF-MASQ-abcd0123 -m mark --mark 0x2000/0x2000 -j MASQUERADE\n"), "{any}");
        assert!(!any.contains("RETURN"), "{any}");
    }
}
