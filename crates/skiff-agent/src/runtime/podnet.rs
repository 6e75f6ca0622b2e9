//! The docker runtime's own pod network: a Linux bridge, an address per sandbox, a veth pair into the sandbox's namespace, and the pod's `/etc/hosts` and `/etc/resolv.conf`.
//!
//! What kubelet gets from CNI's `bridge` and `host-local` plugins plus its managed hosts file.
//! Docker gives a sandbox its network with a prestart hook that re-executes the whole `dockerd`
//! binary (`libnetwork-setkey`) for every container with a network of its own: on 2 cores that
//! hook was a sixth of all the CPU Docker spent starting pods, so sandboxes are created with
//! networking disabled (a namespace holding only `lo`) and plugged in here with one `ip -batch`
//! inside the namespace and one outside.
//!
//! - **Bridge** (`skiff0` by default) holds the subnet's first address, the pods' gateway. It is
//!   shared by every agent of the machine: creating it, its address and the forwarding rules
//!   are idempotent. Pods reach each other over it, the host reaches them through it, and
//!   their traffic to anything else is masqueraded (`iptables -t nat POSTROUTING`), with
//!   `FORWARD` accepting the bridge's traffic (Docker sets the policy to `DROP`).
//! - **Addresses** are recorded as one file per address in `state_dir/<bridge>/`, created with
//!   `O_EXCL`, so agents on one machine never hand out the same address without any lock. The
//!   file names the sandbox (its container name) that holds it; removing the sandbox frees
//!   it, and [`PodNetwork::collect_garbage`] frees those whose sandbox is gone (an agent that
//!   died between reserving and creating, a container removed behind the agent's back).
//!   Successive reservations walk the subnet, so a freed address is not reused at once.
//! - **Interfaces**: `eth0` in the sandbox (the address, the default route via the gateway),
//!   its peer `veth<hash of the sandbox name>` on the bridge. Both go with the namespace when
//!   the sandbox stops.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use crate::command::{ensure_iptables_rule, run};

/// An IPv4 subnet such as `10.222.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix))
    }

    /// The `i`-th address of the subnet.
    fn nth(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + i)
    }

    /// The bridge's address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        self.nth(1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & !(self.size() - 1) == u32::from(self.network)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `A.B.C.D/N` with N from 8 to 28 and no host bits set.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| format!("pod CIDR {s:?} is not ADDRESS/PREFIX"))?;
        let network: Ipv4Addr = addr.parse().map_err(|_| format!("pod CIDR {s:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("pod CIDR {s:?}: prefix {prefix:?} is not a number"))?;
        if !(8..=28).contains(&prefix) {
            return Err(format!("pod CIDR {s:?}: the prefix must be between 8 and 28"));
        }
        let cidr = Cidr { network, prefix };
        if u32::from(network) & (cidr.size() - 1) != 0 {
            return Err(format!(
                "pod CIDR {s:?} has host bits set (did you mean {}?)",
                Cidr { network: Ipv4Addr::from(u32::from(network) & !(cidr.size() - 1)), prefix }
            ));
        }
        Ok(cidr)
    }
}

/// Where the pod network lives. Agents on one machine must agree on all of it.
#[derive(Debug, Clone)]
pub struct PodNetworkConfig {
    /// The Linux bridge (created when missing).
    pub bridge: String,
    pub cidr: Cidr,
    /// Holds `<bridge>/<address>` files, one per address in use.
    pub state_dir: PathBuf,
    /// MTU of the pods' interfaces; `None`: the MTU of the default route's interface.
    pub mtu: Option<u32>,
}

impl Default for PodNetworkConfig {
    fn default() -> Self {
        PodNetworkConfig {
            bridge: "skiff0".into(),
            cidr: Cidr { network: Ipv4Addr::new(10, 222, 0, 0), prefix: 16 },
            state_dir: PathBuf::from("/run/skiff/ipam"),
            mtu: None,
        }
    }
}

/// How long a reservation whose sandbox does not exist is kept before garbage collection
/// frees it: longer than reserving, creating and starting a sandbox takes.
const GC_MIN_AGE: Duration = Duration::from_secs(120);

/// The set-up pod network of this machine (see the module docs).
#[derive(Debug)]
pub struct PodNetwork {
    cfg: PodNetworkConfig,
    dir: PathBuf,
    mtu: u32,
    /// Offset of the next address to try.
    cursor: AtomicU32,
}

impl PodNetwork {
    /// Creates the bridge, its gateway address and the forwarding rules unless they exist.
    /// Fails (with what failed) without root, `ip`, `nsenter` or `iptables`.
    pub async fn setup(cfg: PodNetworkConfig) -> Result<PodNetwork, String> {
        let (bridge, cidr) = (cfg.bridge.as_str(), cfg.cidr);
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            return Err(format!("bridge name {bridge:?} is not a valid interface name (1-15 characters)"));
        }
        run("nsenter", &["--version"], None).await?;
        let dir = cfg.state_dir.join(bridge);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        if run("ip", &["link", "show", "dev", bridge], None).await.is_err() {
            if let Err(e) = run("ip", &["link", "add", "name", bridge, "type", "bridge"], None).await {
                // Another agent of this machine may have created it meanwhile.
                if run("ip", &["link", "show", "dev", bridge], None).await.is_err() {
                    return Err(e);
                }
            }
        }
        let gateway = format!("{}/{}", cidr.gateway(), cidr.prefix);
        run("ip", &["addr", "replace", &gateway, "dev", bridge], None).await?;
        run("ip", &["link", "set", "dev", bridge, "up"], None).await?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| format!("enable ip_forward: {e}"))?;
        // One check-then-insert at a time in this process (several agents or tests set up at once).
        static RULES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one = RULES.lock().await;
        let cidr_s = cidr.to_string();
        let comment = format!("skiff pod network {bridge}");
        let rules: [(&str, &str, Vec<&str>); 3] = [
            (
                "nat",
                "POSTROUTING",
                vec!["-s", &cidr_s, "!", "-o", bridge, "-m", "comment", "--comment", &comment, "-j", "MASQUERADE"],
            ),
            ("filter", "FORWARD", vec!["-i", bridge, "-m", "comment", "--comment", &comment, "-j", "ACCEPT"]),
            ("filter", "FORWARD", vec!["-o", bridge, "-m", "comment", "--comment", &comment, "-j", "ACCEPT"]),
        ];
        for (table, chain, rule) in rules {
            ensure_iptables_rule(table, chain, &rule).await?;
        }
        let mtu = cfg.mtu.unwrap_or_else(default_route_mtu);
        let seed = std::process::id().wrapping_mul(2_654_435_761)
            ^ SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        tracing::info!(bridge, cidr = %cidr, mtu, "pod network ready");
        Ok(PodNetwork { cursor: AtomicU32::new(seed), dir, mtu, cfg })
    }

    pub fn config(&self) -> &PodNetworkConfig {
        &self.cfg
    }

    /// Reserves a free address for the sandbox named `owner`.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr, String> {
        let cidr = self.cfg.cidr;
        // Not the network address, the gateway, nor the broadcast address.
        let hosts = cidr.size() - 3;
        for _ in 0..hosts {
            let ip = cidr.nth(2 + self.cursor.fetch_add(1, Ordering::Relaxed) % hosts);
            let path = self.dir.join(ip.to_string());
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(format!("{owner}\n").as_bytes()).map_err(|e| format!("record address {ip}: {e}"))?;
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("reserve address {ip} in {}: {e}", self.dir.display())),
            }
        }
        Err(format!("pod network {cidr} has no free address"))
    }

    /// Frees `ip` if the sandbox named `owner` holds it.
    pub fn release(&self, ip: Ipv4Addr, owner: &str) {
        let path = self.dir.join(ip.to_string());
        if std::fs::read_to_string(&path).is_ok_and(|o| o.trim() == owner) {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(%ip, owner, error = %e, "freeing a pod address failed");
            }
        }
    }

    /// Frees the reservations older than [`GC_MIN_AGE`] whose sandbox is not among `sandboxes`
    /// (the names of every sandbox container of the machine, whichever agent made it).
    /// Returns how many were freed.
    pub fn collect_garbage(&self, sandboxes: &HashSet<String>) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return 0 };
        let now = SystemTime::now();
        let mut freed = 0;
        for e in entries.flatten() {
            let path = e.path();
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= GC_MIN_AGE);
            let owner = std::fs::read_to_string(&path).unwrap_or_default();
            if old && !sandboxes.contains(owner.trim()) && std::fs::remove_file(&path).is_ok() {
                tracing::info!(address = %e.file_name().to_string_lossy(), owner = owner.trim(), "freed the address of a sandbox that is gone");
                freed += 1;
            }
        }
        freed
    }

    /// Plugs the network namespace of process `pid` (a sandbox's) into the bridge: `eth0` with
    /// `ip` and the default route, its peer on the bridge.
    pub async fn attach(&self, pid: u32, ip: Ipv4Addr, owner: &str) -> Result<(), String> {
        let veth = veth_name(owner);
        let ns = format!("--net=/proc/{pid}/ns/net");
        let inside = format!(
            "link add name eth0 mtu {mtu} type veth peer name {veth} mtu {mtu} netns {host}\n\
             addr add {ip}/{prefix} dev eth0\n\
             link set dev eth0 up\n\
             route add default via {gw}\n",
            mtu = self.mtu,
            host = std::process::id(),
            prefix = self.cfg.cidr.prefix,
            gw = self.cfg.cidr.gateway(),
        );
        if let Err(e) = run("nsenter", &[&ns, "ip", "-batch", "-"], Some(&inside)).await {
            if !e.contains("File exists") {
                return Err(e);
            }
            // A leftover host end with this name (its sandbox's earlier try): replace it.
            let _ = run("nsenter", &[&ns, "ip", "link", "del", "dev", "eth0"], None).await;
            let _ = run("ip", &["link", "del", "dev", &veth], None).await;
            run("nsenter", &[&ns, "ip", "-batch", "-"], Some(&inside)).await?;
        }
        run("ip", &["link", "set", "dev", &veth, "master", &self.cfg.bridge, "up"], None).await?;
        Ok(())
    }
}

/// `veth` and 8 hex digits of a hash (FNV-1a) of the sandbox's name: 12 characters, within
/// the kernel's 15.
fn veth_name(owner: &str) -> String {
    format!("veth{}", skiff_api::keys::short_hash(owner))
}

/// The MTU of the interface the default route goes through (1500 when unknown).
fn default_route_mtu() -> u32 {
    let dev = std::fs::read_to_string("/proc/net/route").ok().and_then(|t| {
        t.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
        })
    });
    dev.and_then(|d| std::fs::read_to_string(format!("/sys/class/net/{d}/mtu")).ok())
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(1500)
}

/// The pod's DNS settings (`spec.dnsPolicy` and `spec.dnsConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// `ClusterFirst` (the default), `Default`, `ClusterFirstWithHostNet` or `None`.
    pub policy: String,
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    /// `(name, value)` resolver options.
    pub options: Vec<(String, Option<String>)>,
}

/// The pod's `/etc/hosts`, as kubelet writes it: localhost, the pod's address and hostname,
/// then `spec.hostAliases`.
pub fn hosts_file(ip: Ipv4Addr, hostname: &str, aliases: &[(String, Vec<String>)]) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file (written by the Skiff agent).\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let _ = writeln!(out, "{ip}\t{hostname}");
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for (ip, names) in aliases.iter().filter(|(_, n)| !n.is_empty()) {
            let _ = writeln!(out, "{ip}\t{}", names.join("\t"));
        }
    }
    out
}

/// The pod's `/etc/resolv.conf`. Skiff has no cluster DNS, so `ClusterFirst` (the default)
/// resolves as `Default` does, with the host's resolver configuration (`host`, the text of the
/// host's `/etc/resolv.conf`; loopback nameservers such as systemd-resolved's 127.0.0.53 are
/// dropped: the pod cannot reach them); `None` uses `dnsConfig` alone, which the others
/// extend (nameservers appended up to 3, searches appended up to 32, options replaced by name).
pub fn resolv_conf(host: &str, dns: &DnsSettings) -> String {
    let (mut nameservers, mut searches, mut options) = (Vec::new(), Vec::new(), Vec::<(String, Option<String>)>::new());
    if dns.policy != "None" {
        for line in host.lines().map(str::trim).filter(|l| !l.starts_with(['#', ';'])) {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ns) = words.next() {
                        let loopback = ns.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback());
                        if !loopback {
                            nameservers.push(ns.to_string());
                        }
                    }
                }
                Some("search") | Some("domain") => {
                    searches = words.map(str::to_string).collect();
                }
                Some("options") => {
                    for o in words {
                        let (name, value) = match o.split_once(':') {
                            Some((n, v)) => (n.to_string(), Some(v.to_string())),
                            None => (o.to_string(), None),
                        };
                        options.retain(|(n, _)| *n != name);
                        options.push((name, value));
                    }
                }
                _ => {}
            }
        }
    }
    for ns in &dns.nameservers {
        if !nameservers.contains(ns) {
            nameservers.push(ns.clone());
        }
    }
    nameservers.truncate(3);
    for s in &dns.searches {
        if !searches.contains(s) {
            searches.push(s.clone());
        }
    }
    searches.truncate(32);
    for (name, value) in &dns.options {
        options.retain(|(n, _)| n != name);
        options.push((name.clone(), value.clone()));
    }
    let mut out = String::from("# Written by the Skiff agent.\n");
    for ns in &nameservers {
        let _ = writeln!(out, "nameserver {ns}");
    }
    if !searches.is_empty() {
        let _ = writeln!(out, "search {}", searches.join(" "));
    }
    if !options.is_empty() {
        let opts: Vec<String> =
            options.iter().map(|(n, v)| v.as_ref().map_or_else(|| n.clone(), |v| format!("{n}:{v}"))).collect();
        let _ = writeln!(out, "options {}", opts.join(" "));
    }
    out
}

/// The host resolver configuration pods start from: `/etc/resolv.conf`, or systemd-resolved's
/// upstream list when that file names only loopback nameservers.
pub fn host_resolv_conf() -> String {
    let main = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let only_loopback = main
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .all(|ns| ns.trim().parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback()));
    if only_loopback {
        if let Ok(upstream) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            return upstream;
        }
    }
    main
}

/// Where a pod's managed `/etc/hosts` and `/etc/resolv.conf` are kept (in its pod directory).
pub fn pod_files(pod_dir: &Path) -> (PathBuf, PathBuf) {
    (pod_dir.join("etc-hosts"), pod_dir.join("resolv.conf"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_name_their_errors() {
        let c: Cidr = "10.222.0.0/16".parse().unwrap();
        assert_eq!(
            (c.gateway(), c.size(), c.to_string()),
            (Ipv4Addr::new(10, 222, 0, 1), 65536, "10.222.0.0/16".into())
        );
        assert!(c.contains(Ipv4Addr::new(10, 222, 255, 254)) && !c.contains(Ipv4Addr::new(10, 223, 0, 1)));
        let e = "10.222.0.5/16".parse::<Cidr>().unwrap_err();
        assert!(e.contains("host bits set (did you mean 10.222.0.0/16?)"), "{e}");
        assert!("10.0.0.0/30".parse::<Cidr>().unwrap_err().contains("between 8 and 28"));
        assert!("10.0.0.0".parse::<Cidr>().unwrap_err().contains("ADDRESS/PREFIX"));
        assert!("ten/8".parse::<Cidr>().unwrap_err().contains("not an IPv4 address"));
    }

    fn network(dir: &Path, cidr: &str) -> PodNetwork {
        let cfg = PodNetworkConfig { cidr: cidr.parse().unwrap(), state_dir: dir.to_path_buf(), ..Default::default() };
        let dir = dir.join(&cfg.bridge);
        std::fs::create_dir_all(&dir).unwrap();
        PodNetwork { cfg, dir, mtu: 1500, cursor: AtomicU32::new(7) }
    }

    #[test]
    fn addresses_are_unique_across_allocators_and_freed_by_their_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        // Two agents of one machine (two allocators over one directory), a /28: 13 pod addresses.
        let (a, b) = (network(tmp.path(), "10.9.0.0/28"), network(tmp.path(), "10.9.0.0/28"));
        let mut seen = HashSet::new();
        for i in 0..13 {
            let net = if i % 2 == 0 { &a } else { &b };
            let ip = net.allocate(&format!("sb-{i}")).unwrap();
            assert!(
                ip != Ipv4Addr::new(10, 9, 0, 0)
                    && ip != Ipv4Addr::new(10, 9, 0, 1)
                    && ip != Ipv4Addr::new(10, 9, 0, 15),
                "{ip}"
            );
            assert!(seen.insert(ip), "{ip} handed out twice");
        }
        let e = a.allocate("sb-x").unwrap_err();
        assert_eq!(e, "pod network 10.9.0.0/28 has no free address");
        let some = *seen.iter().next().unwrap();
        let owner = std::fs::read_to_string(tmp.path().join("skiff0").join(some.to_string())).unwrap();
        a.release(some, "someone-else");
        assert!(a.allocate("sb-y").is_err(), "only the owner frees an address");
        a.release(some, owner.trim());
        assert_eq!(b.allocate("sb-y").unwrap(), some);
    }

    #[test]
    fn garbage_collection_frees_only_old_reservations_of_missing_sandboxes() {
        let tmp = tempfile::tempdir().unwrap();
        let net = network(tmp.path(), "10.9.0.0/24");
        let (kept, gone, young) =
            (net.allocate("alive").unwrap(), net.allocate("gone").unwrap(), net.allocate("young").unwrap());
        let old = SystemTime::now() - Duration::from_secs(600);
        for ip in [kept, gone] {
            std::fs::File::options().write(true).open(net.dir.join(ip.to_string())).unwrap().set_modified(old).unwrap();
        }
        let live: HashSet<String> = ["alive".to_string()].into();
        assert_eq!(net.collect_garbage(&live), 1);
        let left: HashSet<String> = std::fs::read_dir(&net.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, [kept.to_string(), young.to_string()].into());
    }

    #[test]
    fn veth_names_fit_and_differ() {
        let a = veth_name("k8s_POD_web-1_default_uid-1_0");
        assert_eq!(a.len(), 12);
        assert_ne!(a, veth_name("k8s_POD_web-1_default_uid-1_1"));
    }

    #[test]
    fn hosts_file_has_the_pod_and_its_aliases() {
        let h = hosts_file(
            Ipv4Addr::new(10, 222, 0, 7),
            "web-1",
            &[("10.1.1.1".into(), vec!["db".into(), "db.local".into()])],
        );
        assert!(h.contains("127.0.0.1\tlocalhost\n"), "{h}");
        assert!(h.contains("\n10.222.0.7\tweb-1\n"), "{h}");
        assert!(h.ends_with("# Entries added by HostAliases.\n10.1.1.1\tdb\tdb.local\n"), "{h}");
    }

    #[test]
    fn resolv_conf_follows_the_dns_policy() {
        let host =
            "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0 ndots:2\n";
        let default = resolv_conf(host, &DnsSettings { policy: "ClusterFirst".into(), ..Default::default() });
        assert_eq!(
            default,
            "# Written by the Skiff agent.\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0 ndots:2\n"
        );
        let extended = resolv_conf(
            host,
            &DnsSettings {
                policy: "Default".into(),
                nameservers: vec!["198.51.100.1".into()],
                searches: vec!["svc.example".into()],
                options: vec![("ndots".into(), Some("5".into()))],
            },
        );
        assert_eq!(
            extended,
            "# Written by the Skiff agent.\nnameserver 192.0.2.53\nnameserver 198.51.100.1\nsearch corp.example svc.example\noptions edns0 ndots:5\n"
        );
        let none = resolv_conf(
            host,
            &DnsSettings { policy: "None".into(), nameservers: vec!["198.51.100.1".into()], ..Default::default() },
        );
        assert_eq!(none, "# Written by the Skiff agent.\nnameserver 198.51.100.1\n");
    }
}
