//! Resource arithmetic: what a pod requests (as Kubernetes computes it) and what a node offers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use skiff_api::quantity::Quantity;

use crate::SchedulerError;

/// CPU request assumed for scoring when a container requests none (Kubernetes' 100m).
pub const DEFAULT_SCORING_CPU_MILLIS: i64 = 100;
/// Memory request assumed for scoring when a container requests none (Kubernetes' 200Mi).
pub const DEFAULT_SCORING_MEMORY_BYTES: i64 = 200 * 1024 * 1024;

/// CPU in millicores and memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl Resources {
    pub fn new(cpu_millis: i64, memory_bytes: i64) -> Self {
        Resources { cpu_millis, memory_bytes }
    }

    fn max(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
        }
    }
}

impl std::ops::Add for Resources {
    type Output = Resources;
    fn add(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
        }
    }
}

impl std::ops::AddAssign for Resources {
    fn add_assign(&mut self, o: Resources) {
        *self = *self + o;
    }
}

impl std::ops::SubAssign for Resources {
    fn sub_assign(&mut self, o: Resources) {
        self.cpu_millis = self.cpu_millis.saturating_sub(o.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_sub(o.memory_bytes);
    }
}

/// What a node offers to pods: `status.allocatable`, falling back to `status.capacity` per
/// resource. A missing resource is zero, so nothing that requests it fits (as in Kubernetes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocatable {
    pub resources: Resources,
    pub pods: i64,
}

impl Allocatable {
    /// Reads a node's allocatable resources; unparseable quantities count as zero.
    pub fn of_node(node: &Node) -> Allocatable {
        let status = node.status.as_ref();
        let get = |name: &str| {
            status
                .and_then(|s| s.allocatable.as_ref().and_then(|a| a.get(name)))
                .or_else(|| status.and_then(|s| s.capacity.as_ref().and_then(|c| c.get(name))))
                .and_then(|q| Quantity::parse(&q.0).ok())
        };
        Allocatable {
            resources: Resources {
                cpu_millis: get("cpu").map_or(0, |q| clamp(q.millis())),
                memory_bytes: get("memory").map_or(0, |q| clamp(q.units())),
            },
            pods: get("pods").map_or(0, |q| clamp(q.units())),
        }
    }
}

/// A pod's requests, computed once per pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// Used for fit: what the pod reserves.
    pub requests: Resources,
    /// Used for scoring only: the same, with containers that request nothing counted as
    /// 100m CPU / 200Mi memory, so best-effort pods still spread out.
    pub scoring: Resources,
}

/// Computes a pod's effective requests as Kubernetes does: a container's request for a
/// resource defaults to its limit when only the limit is set; regular containers are summed;
/// init containers run one at a time, except restartable ones (sidecars, `restartPolicy:
/// Always`) which keep running and add up; the pod needs the larger of the two phases, plus
/// `spec.overhead`.
pub fn pod_requests(pod: &Pod) -> Result<PodRequests, SchedulerError> {
    let Some(spec) = pod.spec.as_ref() else { return Ok(PodRequests::default()) };
    let mut total = PodRequests::default();
    for (i, c) in spec.containers.iter().enumerate() {
        let r = container_requests(c, || format!("spec.containers[{i}]"))?;
        total.requests += r.requests;
        total.scoring += r.scoring;
    }
    let mut sidecars = PodRequests::default();
    let mut init_peak = PodRequests::default();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let r = container_requests(c, || format!("spec.initContainers[{i}]"))?;
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.requests += r.requests;
            sidecars.scoring += r.scoring;
            init_peak.requests = init_peak.requests.max(sidecars.requests);
            init_peak.scoring = init_peak.scoring.max(sidecars.scoring);
        } else {
            init_peak.requests = init_peak.requests.max(r.requests + sidecars.requests);
            init_peak.scoring = init_peak.scoring.max(r.scoring + sidecars.scoring);
        }
    }
    total.requests = (total.requests + sidecars.requests).max(init_peak.requests);
    total.scoring = (total.scoring + sidecars.scoring).max(init_peak.scoring);
    if let Some(overhead) = spec.overhead.as_ref() {
        let o = resources_of(overhead, || "spec.overhead".to_string())?;
        let o = Resources::new(o.0.unwrap_or(0), o.1.unwrap_or(0));
        total.requests += o;
        total.scoring += o;
    }
    Ok(total)
}

fn container_requests(c: &Container, field: impl Fn() -> String) -> Result<PodRequests, SchedulerError> {
    let empty = BTreeMap::new();
    let res = c.resources.as_ref();
    let requests = res.and_then(|r| r.requests.as_ref()).unwrap_or(&empty);
    let limits = res.and_then(|r| r.limits.as_ref()).unwrap_or(&empty);
    let (req_cpu, req_mem) = resources_of(requests, || format!("{}.resources.requests", field()))?;
    let (lim_cpu, lim_mem) = resources_of(limits, || format!("{}.resources.limits", field()))?;
    let cpu = req_cpu.or(lim_cpu);
    let mem = req_mem.or(lim_mem);
    Ok(PodRequests {
        requests: Resources::new(cpu.unwrap_or(0), mem.unwrap_or(0)),
        scoring: Resources::new(cpu.unwrap_or(DEFAULT_SCORING_CPU_MILLIS), mem.unwrap_or(DEFAULT_SCORING_MEMORY_BYTES)),
    })
}

/// The CPU (millicores) and memory (bytes) entries of a resource list, `None` when absent.
fn resources_of(
    list: &BTreeMap<String, K8sQuantity>,
    field: impl Fn() -> String,
) -> Result<(Option<i64>, Option<i64>), SchedulerError> {
    let parse = |name: &str| -> Result<Option<Quantity>, SchedulerError> {
        list.get(name)
            .map(|q| {
                Quantity::parse(&q.0).map_err(|source| SchedulerError::InvalidQuantity {
                    field: format!("{}[{name}]", field()),
                    value: q.0.clone(),
                    source,
                })
            })
            .transpose()
    };
    Ok((parse("cpu")?.map(|q| clamp(q.millis())), parse("memory")?.map(|q| clamp(q.units()))))
}

fn clamp(v: i128) -> i64 {
    v.clamp(0, i128::from(i64::MAX)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::pod;

    const MI: i64 = 1024 * 1024;

    #[test]
    fn requests_default_to_limits_and_scoring_to_best_effort_defaults() {
        let r = pod_requests(&pod("p").cpu_limit("2").memory("1Mi").build()).unwrap();
        assert_eq!(r.requests, Resources::new(2000, MI));
        assert_eq!(r.scoring, Resources::new(2000, MI));

        let r = pod_requests(&pod("p").build()).unwrap();
        assert_eq!(r.requests, Resources::default());
        assert_eq!(r.scoring, Resources::new(DEFAULT_SCORING_CPU_MILLIS, DEFAULT_SCORING_MEMORY_BYTES));

        // An explicit zero is kept, not replaced by the scoring default.
        let r = pod_requests(&pod("p").cpu("0").build()).unwrap();
        assert_eq!(r.scoring.cpu_millis, 0);
    }

    #[test]
    fn init_containers_sidecars_and_overhead() {
        // Regular init containers run alone: max(sum of containers, largest init).
        let p = pod("p").cpu("100m").container().cpu("200m").init_container("250m", "0", false);
        assert_eq!(pod_requests(&p.build()).unwrap().requests.cpu_millis, 300);
        let p = pod("p").cpu("100m").init_container("500m", "0", false);
        assert_eq!(pod_requests(&p.build()).unwrap().requests.cpu_millis, 500);
        // Sidecars add to the containers and to every later init container.
        let p = pod("p").cpu("100m").init_container("50m", "0", true).init_container("500m", "0", false);
        assert_eq!(pod_requests(&p.build()).unwrap().requests.cpu_millis, 550);
        let p = pod("p").cpu("100m").init_container("50m", "0", true);
        assert_eq!(pod_requests(&p.build()).unwrap().requests.cpu_millis, 150);
        // Overhead is added on top.
        let p = pod("p").cpu("100m").memory("1Mi").overhead("10m", "1Mi");
        assert_eq!(pod_requests(&p.build()).unwrap().requests, Resources::new(110, 2 * MI));
    }

    #[test]
    fn invalid_quantity_names_the_field() {
        let err = pod_requests(&pod("p").container().memory_limit("1Q").build()).unwrap_err();
        assert!(err.to_string().starts_with("spec.containers[1].resources.limits[memory]: invalid quantity \"1Q\""));
    }
}
