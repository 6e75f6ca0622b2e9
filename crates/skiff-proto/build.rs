fn main() {
    println!("cargo:rerun-if-changed=../../proto/skiff.proto");
    println!("cargo:rerun-if-changed=../../proto/etcd_kv.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .compile_protos(&["../../proto/skiff.proto", "../../proto/etcd_kv.proto"], &["../../proto"])
        .expect("compile proto/*.proto (needs protoc: Debian's protobuf-compiler, or set PROTOC)");
}
