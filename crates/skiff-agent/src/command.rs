//! Host commands the agent runs (`iptables`, `ip`, `nsenter`), each bounded by a deadline.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// Deadline of one host command.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `program args`, feeding `input` to stdin, within [`COMMAND_TIMEOUT`] (the child is
/// killed when it outlives it): stdout on success, else an error naming the command with its
/// exit status and stderr.
pub(crate) async fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let what = format!("{program} {}", args.join(" "));
    let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    let work = async {
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input.as_bytes()).await.map_err(|e| format!("{what}: writing its input: {e}"))?;
        }
        child.wait_with_output().await.map_err(|e| format!("{what}: {e}"))
    };
    let out = tokio::time::timeout(COMMAND_TIMEOUT, work).await.map_err(|_| format!("{what}: timed out"))??;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{what}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The same, blocking (for `Drop`, which may run outside a runtime): stdout on success.
pub(crate) fn run_blocking(program: &str, args: &[&str]) -> Option<String> {
    use std::io::Read;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Drained on its own thread so a large listing cannot fill the pipe and stall the child.
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    let ok = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.success(),
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    ok.then_some(out)
}

/// Makes `rule` (e.g. `["-j", "SKIFF-NP-1234abcd"]`) present in `table`'s `chain`: checked with
/// `iptables -C`, inserted first in the chain when missing.
pub(crate) async fn ensure_iptables_rule(table: &str, chain: &str, rule: &[&str]) -> Result<(), String> {
    let check: Vec<&str> = ["-w", "-t", table, "-C", chain].into_iter().chain(rule.iter().copied()).collect();
    if run("iptables", &check, None).await.is_err() {
        let insert: Vec<&str> = ["-w", "-t", table, "-I", chain, "1"].into_iter().chain(rule.iter().copied()).collect();
        run("iptables", &insert, None).await?;
    }
    Ok(())
}
