//! Host ports: a pod cannot land on a node where another pod already holds one of its host ports.

use k8s_openapi::api::core::v1::PodSpec;

use crate::framework::{FilterPlugin, Rejection};
use crate::snapshot::{NodeInfo, PodInfo};

const ANY_IP: &str = "0.0.0.0";

/// A `hostPort` a container asks for (`hostIP` defaults to 0.0.0.0, `protocol` to TCP).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// The host ports of all containers and init containers of a pod (entries without a
    /// positive `hostPort` are not host ports).
    pub fn of_pod(spec: &PodSpec) -> Vec<HostPort> {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|&p| p > 0)?;
                Some(HostPort {
                    ip: p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| ANY_IP.to_string()),
                    protocol: p.protocol.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "TCP".to_string()),
                    port,
                })
            })
            .collect()
    }

    /// Two host ports conflict on the same protocol and port when either binds every address
    /// or both bind the same one.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == ANY_IP || other.ip == ANY_IP)
    }
}

/// Rejects nodes where a requested host port is taken (resolvable: evicting the holder frees it).
#[derive(Debug, Default, Clone, Copy)]
pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let taken = pod.host_ports.iter().any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if taken {
            Err(Rejection::unschedulable(self.name(), "node(s) didn't have free ports for the requested pod ports"))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(ip: &str, protocol: &str, port: i32) -> HostPort {
        HostPort { ip: ip.into(), protocol: protocol.into(), port }
    }

    #[test]
    fn conflict_rules() {
        assert!(hp("0.0.0.0", "TCP", 80).conflicts(&hp("10.0.0.1", "TCP", 80)));
        assert!(hp("10.0.0.1", "TCP", 80).conflicts(&hp("10.0.0.1", "TCP", 80)));
        assert!(!hp("10.0.0.1", "TCP", 80).conflicts(&hp("10.0.0.2", "TCP", 80)));
        assert!(!hp("0.0.0.0", "TCP", 80).conflicts(&hp("0.0.0.0", "UDP", 80)));
        assert!(!hp("0.0.0.0", "TCP", 80).conflicts(&hp("0.0.0.0", "TCP", 81)));
    }
}
