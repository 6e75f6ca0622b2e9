//! Scheduling throughput: 1000 pending pods over 100 nodes (`cargo bench -p skiff-scheduler`), figures printed, no framework.

use std::time::{Duration, Instant};

use skiff_scheduler::harness::{node, pod, Harness};
use skiff_scheduler::{ClusterSnapshot, Scheduler};

/// 100 nodes of three sizes in three zones, 300 running pods, 1000 pending pods in replica
/// sets of 10 (a tenth with a node selector, a tenth with required affinity, a twentieth with
/// a host port, some with preferred affinity and a toleration).
fn cluster(nodes: usize, pending: usize) -> Harness {
    let mut h = Harness::new();
    for i in 0..nodes {
        let (cpu, mem) = [("8", "32Gi"), ("16", "64Gi"), ("32", "128Gi")][i % 3];
        let mut n = node(&format!("node-{i:03}")).cpu(cpu).memory(mem).label("zone", ["a", "b", "c"][i % 3]);
        if i % 10 == 0 {
            n = n.label("disk", "ssd");
        }
        if i % 25 == 0 {
            n = n.taint("dedicated", "batch", "NoSchedule");
        }
        h.add_node(n);
    }
    for i in 0..3 * nodes {
        h.add_pod(pod(&format!("running-{i}")).on_node(&format!("node-{:03}", i % nodes)).cpu("250m").memory("512Mi"));
    }
    for i in 0..pending {
        let mut p = pod(&format!("web-{i}")).owner(&format!("rs-{}", i / 10)).cpu("100m").memory("256Mi");
        match i % 20 {
            0 | 1 => p = p.node_selector("disk", "ssd"),
            2 | 3 => p = p.require("zone", "In", &["a", "b"]),
            4 => p = p.host_port(9000),
            5 => p = p.prefer(50, "zone", "In", &["c"]),
            6 => p = p.toleration("dedicated", "Equal", "batch", "NoSchedule"),
            _ => {}
        }
        h.add_pod(p);
    }
    h
}

fn measure(label: &str, runs: usize, mut f: impl FnMut() -> usize) {
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut result = 0;
    for _ in 0..runs {
        let start = Instant::now();
        result = std::hint::black_box(f());
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "{label:<44} min {:>9.3} ms  median {:>9.3} ms  max {:>9.3} ms  (result {result})",
        times[0].as_secs_f64() * 1e3,
        times[runs / 2].as_secs_f64() * 1e3,
        times[runs - 1].as_secs_f64() * 1e3,
    );
}

fn main() {
    for (nodes, pending) in [(100, 1000), (1000, 1000), (100, 5000)] {
        let h = cluster(nodes, pending);
        let scheduler = Scheduler::new(h.config.clone());
        let snapshot = ClusterSnapshot::new(&h.nodes, &h.pods);
        let runs = 11;
        measure(&format!("snapshot {nodes} nodes, {} pods", h.pods.len()), runs, || {
            ClusterSnapshot::new(&h.nodes, &h.pods).pending().len()
        });
        let start = Instant::now();
        let decisions = scheduler.schedule(&snapshot);
        let once = start.elapsed();
        let bound = decisions.iter().filter(|d| d.node().is_some()).count();
        measure(&format!("schedule {pending} pending over {nodes} nodes"), runs, || {
            scheduler.schedule(&snapshot).len()
        });
        println!(
            "  {bound}/{pending} bound; first run {:.3} ms = {:.1} µs per pod",
            once.as_secs_f64() * 1e3,
            once.as_secs_f64() * 1e6 / pending as f64
        );
    }
}
