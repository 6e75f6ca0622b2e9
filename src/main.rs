//! The `skiff` binary: parses the command line and hands over to the library.

/// mimalloc: the servers allocate and free many small buffers per request (protobuf,
/// JSON, Raft entries); measured 9.1k -> 9.5-10k store writes/s against glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    skiff::cli::main()
}
