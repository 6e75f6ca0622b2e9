//! The `skiff` binary: parses the command line and hands over to the library.

/// mimalloc: the servers allocate and free many small buffers per request (protobuf,
/// JSON, Raft entries); measured 9.1k -> 9.5-10k store writes/s against glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc reads its options from the environment at its first allocation, before `main`.
/// Its default commits whole arenas eagerly, which keeps an agent's freed memory resident
/// (VmRSS 35-38 MB with 25 pods instead of 28 MB). So `skiff agent` runs itself again, once,
/// with `MIMALLOC_ARENA_EAGER_COMMIT=0` unless the variable is already set (by this step or
/// by the operator). The servers keep the default.
fn reexec_agent_with_lazy_commit() {
    const VAR: &str = "MIMALLOC_ARENA_EAGER_COMMIT";
    let mut args = std::env::args_os();
    let is_agent = args.nth(1).is_some_and(|a| a == "agent");
    if !is_agent || std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env(VAR, "0").exec();
    // exec only returns on failure: carry on with the default.
    eprintln!("skiff agent: re-running with {VAR}=0 failed ({err}); continuing");
}

/// mimalloc asks the kernel for transparent huge pages on its regions (`MADV_HUGEPAGE`), and
/// gives memory back in smaller pieces; each later touch of such a region then faults in, and
/// zeroes, a whole 2 MiB page. Under load that churn was the largest single cost of the whole
/// control plane: `clear_page_erms` under `do_huge_pmd_anonymous_page` took 10-11 % of both
/// cores in `bench schedule`, and under 1 % with huge pages off for the process. Children
/// inherit the flag; the `process` runtime clears it again for the containers it starts.
/// `SKIFF_HUGE_PAGES=1` keeps the system's setting.
fn disable_transparent_huge_pages() {
    if std::env::var_os("SKIFF_HUGE_PAGES").is_some_and(|v| v == "1") {
        return;
    }
    // SAFETY: prctl with integer arguments only changes this process's THP flag.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        // Old kernels lack the option: huge pages stay as the system configures them.
        eprintln!("skiff: could not disable transparent huge pages: {}", std::io::Error::last_os_error());
    }
}

fn main() -> std::process::ExitCode {
    // After the agent's re-execution (when there is one), so the flag is set once.
    reexec_agent_with_lazy_commit();
    disable_transparent_huge_pages();
    skiff::cli::main()
}
