//! Filter plugins through the harness: readiness, cordon, taints, node selector and affinity, host ports, resources.

use skiff_scheduler::harness::{node, pod, Harness};

fn one_pod_on(nodes: Vec<skiff_scheduler::harness::NodeBuilder>, p: skiff_scheduler::harness::PodBuilder) -> Harness {
    let mut h = Harness::new();
    for n in nodes {
        h.add_node(n);
    }
    h.add_pod(p);
    h
}

#[test]
fn readiness_and_cordon() {
    let h = one_pod_on(
        vec![node("a").not_ready(), node("b").unreachable(), node("c").no_ready_condition(), node("d").unschedulable()],
        pod("p"),
    );
    assert_eq!(
        h.schedule().message_of("p"),
        "0/4 nodes are available: 1 node(s) were not ready, 1 node(s) were unschedulable, 2 node(s) were unreachable."
    );

    let h = one_pod_on(vec![node("a").not_ready(), node("ok")], pod("p"));
    assert_eq!(h.schedule().node_of("p"), Some("ok"));
}

#[test]
fn readiness_and_cordon_can_be_tolerated() {
    let not_ready = pod("p").toleration("node.kubernetes.io/not-ready", "Exists", "", "NoSchedule");
    assert_eq!(one_pod_on(vec![node("a").not_ready()], not_ready.clone()).schedule().node_of("p"), Some("a"));
    // Tolerating not-ready does not tolerate unreachable.
    assert!(one_pod_on(vec![node("a").unreachable()], not_ready).schedule().node_of("p").is_none());
    let unreachable = pod("p").toleration("node.kubernetes.io/unreachable", "Exists", "", "");
    assert_eq!(one_pod_on(vec![node("a").unreachable()], unreachable).schedule().node_of("p"), Some("a"));
    let cordon = pod("p").toleration("node.kubernetes.io/unschedulable", "Exists", "", "NoSchedule");
    assert_eq!(one_pod_on(vec![node("a").unschedulable()], cordon).schedule().node_of("p"), Some("a"));
    // A DaemonSet-style "tolerate everything" toleration.
    let all = pod("p").toleration("", "Exists", "", "");
    let h = one_pod_on(vec![node("a").unreachable().unschedulable().taint("x", "y", "NoExecute")], all);
    assert_eq!(h.schedule().node_of("p"), Some("a"));
}

#[test]
fn taints_no_schedule_and_no_execute() {
    let nodes = || {
        vec![
            node("a").taint("dedicated", "gpu", "NoSchedule"),
            node("b").taint("node.kubernetes.io/not-ready", "", "NoExecute"),
            node("c").taint("soft", "x", "PreferNoSchedule"),
        ]
    };
    let out = one_pod_on(nodes(), pod("p")).schedule();
    assert_eq!(out.node_of("p"), Some("c"), "PreferNoSchedule does not filter");

    let h = one_pod_on(nodes()[..2].to_vec(), pod("p"));
    assert_eq!(
        h.schedule().message_of("p"),
        "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
         1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
    );

    let tolerant = pod("p").toleration("dedicated", "Equal", "gpu", "NoSchedule");
    assert_eq!(one_pod_on(nodes()[..2].to_vec(), tolerant).schedule().node_of("p"), Some("a"));
    let wrong_value = pod("p").toleration("dedicated", "Equal", "tpu", "NoSchedule");
    assert!(one_pod_on(nodes()[..1].to_vec(), wrong_value).schedule().node_of("p").is_none());
    let wrong_effect = pod("p").toleration("dedicated", "Exists", "", "NoExecute");
    assert!(one_pod_on(nodes()[..1].to_vec(), wrong_effect).schedule().node_of("p").is_none());
}

#[test]
fn prefer_no_schedule_lowers_the_score() {
    let mut h = Harness::new();
    h.add_node(node("a").taint("soft", "x", "PreferNoSchedule")).add_node(node("b"));
    for seed in 0..10 {
        h.add_pod(pod(&format!("p{seed}")));
    }
    let out = h.schedule();
    // Ten pods on 4-cpu nodes: the taint (weight 3) outweighs least-allocated for all of them.
    assert_eq!(out.per_node().get("b"), Some(&10), "{:?}", out.placements());
}

#[test]
fn node_selector() {
    let nodes = || vec![node("a").label("disk", "ssd"), node("b").label("disk", "hdd"), node("c")];
    assert_eq!(one_pod_on(nodes(), pod("p").node_selector("disk", "hdd")).schedule().node_of("p"), Some("b"));
    let h = one_pod_on(nodes(), pod("p").node_selector("disk", "nvme"));
    assert_eq!(
        h.schedule().message_of("p"),
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    );
    let both = pod("p").node_selector("disk", "ssd").require("disk", "In", &["hdd"]);
    assert!(one_pod_on(nodes(), both).schedule().node_of("p").is_none(), "selector and affinity must both match");
}

#[test]
fn required_node_affinity_operators() {
    let nodes = || {
        vec![
            node("small").label("cores", "2").label("zone", "a"),
            node("big").label("cores", "64").label("zone", "b"),
            node("bare"),
        ]
    };
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("In", &["a"], &["small"]),
        ("In", &["a", "b"], &["big", "small"]),
        ("NotIn", &["a"], &["bare", "big"]),
        ("Exists", &[], &["big", "small"]),
        ("DoesNotExist", &[], &["bare"]),
    ];
    for (op, values, want) in cases {
        let mut got: Vec<String> = Vec::new();
        for seed in 0..20 {
            let mut h = one_pod_on(nodes(), pod("p").require("zone", op, values));
            h.seed(seed);
            got.extend(h.schedule().node_of("p").map(String::from));
        }
        got.sort();
        got.dedup();
        assert_eq!(&got, want, "zone {op} {values:?}");
    }
    let gt = pod("p").require("cores", "Gt", &["8"]);
    assert_eq!(one_pod_on(nodes(), gt).schedule().node_of("p"), Some("big"));
    let lt = pod("p").require("cores", "Lt", &["8"]);
    assert_eq!(one_pod_on(nodes(), lt).schedule().node_of("p"), Some("small"));
    let bad = pod("p").require("cores", "Gt", &["many"]);
    assert!(one_pod_on(nodes(), bad).schedule().node_of("p").is_none());
}

#[test]
fn required_terms_are_ored_expressions_anded() {
    let nodes = || vec![node("a").label("zone", "a").label("gpu", "yes"), node("b").label("zone", "b")];
    let anded = pod("p").require("zone", "In", &["b"]).require("gpu", "Exists", &[]);
    assert!(one_pod_on(nodes(), anded).schedule().node_of("p").is_none());
    let ored = pod("p").require("zone", "In", &["c"]).or_require("zone", "In", &["b"]);
    assert_eq!(one_pod_on(nodes(), ored).schedule().node_of("p"), Some("b"));
}

#[test]
fn preferred_node_affinity_weights() {
    let mut h = Harness::new();
    h.add_node(node("a").label("zone", "a")).add_node(node("b").label("zone", "b")).add_node(node("c"));
    for i in 0..5 {
        h.add_pod(pod(&format!("p{i}")).prefer(10, "zone", "In", &["a"]).prefer(80, "zone", "In", &["b"]));
    }
    let out = h.schedule();
    assert_eq!(out.per_node().get("b"), Some(&5), "{:?}", out.placements());
}

#[test]
fn host_ports() {
    let mut h = Harness::new();
    h.add_node(node("a"))
        .add_node(node("b"))
        .add_pod(pod("running").on_node("a").host_port(8080))
        .add_pod(pod("udp").host_port_on(None, "UDP", 8080))
        .add_pod(pod("web").host_port(8080));
    let out = h.schedule();
    assert_eq!(out.node_of("web"), Some("b"));
    assert!(out.node_of("udp").is_some());

    let mut h = Harness::new();
    h.add_node(node("a"))
        .add_pod(pod("running").on_node("a").host_port_on(Some("10.0.0.1"), "TCP", 80))
        .add_pod(pod("other-ip").host_port_on(Some("10.0.0.2"), "TCP", 80))
        .add_pod(pod("any-ip").host_port(80));
    let out = h.schedule();
    assert_eq!(out.node_of("other-ip"), Some("a"));
    assert_eq!(
        out.message_of("any-ip"),
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
    );
}

#[test]
fn resources_fit() {
    let mut h = Harness::new();
    h.add_node(node("a").cpu("2").memory("4Gi"))
        .add_pod(pod("running").on_node("a").cpu("1500m").memory("1Gi"))
        .add_pod(pod("fits").cpu("500m").memory("3Gi"))
        .add_pod(pod("too-much-cpu").cpu("501m"));
    let out = h.schedule();
    assert_eq!(out.node_of("fits"), Some("a"));
    assert_eq!(out.message_of("too-much-cpu"), "0/1 nodes are available: 1 Insufficient cpu.");
}

#[test]
fn every_insufficient_resource_is_reported() {
    let mut h = Harness::new();
    h.add_node(node("a").cpu("1").memory("1Gi").max_pods(1))
        .add_pod(pod("running").on_node("a"))
        .add_pod(pod("p").cpu("2").memory("2Gi"));
    assert_eq!(
        h.schedule().message_of("p"),
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 Too many pods."
    );
}

#[test]
fn limits_stand_in_for_missing_requests() {
    let mut h = Harness::new();
    h.add_node(node("a").cpu("1")).add_pod(pod("running").on_node("a").cpu_limit("800m")).add_pod(pod("p").cpu("300m"));
    assert_eq!(h.schedule().message_of("p"), "0/1 nodes are available: 1 Insufficient cpu.");
    // An explicit request wins over the limit.
    let mut h = Harness::new();
    h.add_node(node("a").cpu("1"))
        .add_pod(pod("running").on_node("a").cpu("100m").cpu_limit("800m"))
        .add_pod(pod("p").cpu("300m"));
    assert_eq!(h.schedule().node_of("p"), Some("a"));
}

#[test]
fn containers_add_up_and_init_containers_take_the_max() {
    let mut h = Harness::new();
    h.add_node(node("a").cpu("1"))
        .add_pod(pod("two").cpu("600m").container().cpu("600m"))
        .add_pod(pod("init").cpu("100m").init_container("900m", "0", false))
        .add_pod(pod("init-big").cpu("100m").init_container("1100m", "0", false))
        .add_pod(pod("sidecar").cpu("500m").init_container("600m", "0", true));
    let out = h.schedule();
    assert!(out.node_of("two").is_none(), "1200m > 1 cpu");
    assert!(out.node_of("init-big").is_none());
    assert!(out.node_of("sidecar").is_none(), "a sidecar keeps running: 1100m");
    assert_eq!(out.node_of("init"), Some("a"), "init containers run before: max(100m, 900m)");
}

#[test]
fn terminated_pods_free_their_resources_and_deleting_ones_do_not() {
    let mut h = Harness::new();
    h.add_node(node("a").cpu("1"))
        .add_pod(pod("done").on_node("a").cpu("1").phase("Succeeded"))
        .add_pod(pod("failed").on_node("a").cpu("1").phase("Failed"))
        .add_pod(pod("p").cpu("1"));
    assert_eq!(h.schedule().node_of("p"), Some("a"));

    let mut h = Harness::new();
    h.add_node(node("a").cpu("1"))
        .add_pod(pod("terminating").on_node("a").cpu("1").deleting())
        .add_pod(pod("p").cpu("1"));
    assert!(h.schedule().node_of("p").is_none());
}

#[test]
fn missing_allocatable_pods_fits_nothing() {
    let mut h = Harness::new();
    h.add_node(node("a").without("pods")).add_pod(pod("p"));
    assert_eq!(h.schedule().message_of("p"), "0/1 nodes are available: 1 Too many pods.");
}

#[test]
fn mixed_reasons_message() {
    let mut h = Harness::new();
    h.add_node(node("small").cpu("1").label("zone", "a"))
        .add_node(node("b").label("zone", "b"))
        .add_node(node("c").label("zone", "c"))
        .add_pod(pod("p").cpu("2").require("zone", "In", &["a"]));
    let out = h.schedule();
    assert_eq!(
        out.message_of("p"),
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
    );
    let skiff_scheduler::Decision::Unschedulable(u) = out.decision("p").unwrap() else { panic!() };
    assert_eq!(u.unresolvable_nodes, 2);
    assert!(u.preemption_may_help());
}

#[test]
fn no_nodes_and_invalid_specs() {
    let mut h = Harness::new();
    h.add_pod(pod("p"));
    assert_eq!(h.schedule().message_of("p"), "no nodes available to schedule pods");

    let mut h = Harness::new();
    h.add_node(node("a")).add_pod(pod("bad").cpu("lots"));
    let out = h.schedule();
    let skiff_scheduler::Decision::Unschedulable(u) = out.decision("bad").unwrap() else { panic!() };
    assert!(u.error.is_some());
    assert!(!u.preemption_may_help());
    assert!(u.message().contains("spec.containers[0].resources.requests[cpu]"), "{}", u.message());
}
