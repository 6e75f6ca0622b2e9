fn main() {
    println!("cargo:rerun-if-changed=../../proto/skiff.proto");
    println!("cargo:rerun-if-changed=../../proto/etcd_kv.proto");
    println!("cargo:rerun-if-changed=../../proto/agent.proto");
    tonic_prost_build::configure()
        .build_server(true)
        // No `XClient::connect(dst)` constructors (clients are built on a `Channel` with
        // `new`): `AgentGateway.Connect` would clash with it.
        .build_transport(false)
        // Replica-to-replica messages (Raft entries, forwarded writes) are decoded as a view of
        // the received buffer instead of a copy of it.
        .bytes(".skiff.v1.RaftMessage.data")
        .compile_protos(
            &["../../proto/skiff.proto", "../../proto/etcd_kv.proto", "../../proto/agent.proto"],
            &["../../proto"],
        )
        .expect("compile proto/*.proto (needs protoc: Debian's protobuf-compiler, or set PROTOC)");
}
