//! The `skiff` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    skiff::cli::main()
}
