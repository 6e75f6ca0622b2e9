//! `skiff kv`: an etcdctl-style operator and test tool over the store's gRPC API.

use std::io::Write;
use std::process::ExitCode;

use skiff_proto::error_detail::Kind;
use skiff_proto::{event, DeleteRequest, RangeRequest};

use super::Endpoints;

#[derive(clap::Subcommand, Debug)]
pub enum KvCmd {
    /// Write KEY=VALUE; prints the new revision.
    Put {
        #[command(flatten)]
        ep: Endpoints,
        key: String,
        value: String,
        /// Only if the key's current mod revision is R (0: only if the key does not exist).
        #[arg(long)]
        prev_revision: Option<u64>,
    },
    /// Read KEY; prints its value and revisions. Exits 1 when the key is absent.
    Get {
        #[command(flatten)]
        ep: Endpoints,
        key: String,
        /// Read this replica's local state (may be stale) instead of a linearizable read.
        #[arg(long)]
        serializable: bool,
    },
    /// Delete KEY (or every key under it with --prefix).
    Del {
        #[command(flatten)]
        ep: Endpoints,
        key: String,
        #[arg(long)]
        prefix: bool,
        #[arg(long)]
        prev_revision: Option<u64>,
    },
    /// List keys starting with PREFIX: `KEY<TAB>MOD_REVISION<TAB>VALUE` per line.
    Range {
        #[command(flatten)]
        ep: Endpoints,
        prefix: String,
        /// At most N keys (0 = all).
        #[arg(long, default_value_t = 0)]
        limit: u64,
        #[arg(long)]
        serializable: bool,
    },
    /// Print `PUT|DELETE KEY REVISION` for every change under PREFIX until interrupted.
    Watch {
        #[command(flatten)]
        ep: Endpoints,
        prefix: String,
        /// Start at this revision (default: changes from now on).
        #[arg(long, default_value_t = 0)]
        from_revision: u64,
    },
    /// Discard watch history older than REVISION.
    Compact {
        #[command(flatten)]
        ep: Endpoints,
        revision: u64,
    },
}

pub async fn run(cmd: KvCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KvCmd::Put { ep, key, value, prev_revision } => {
            let r = ep.client()?.put(&key, value.into_bytes(), prev_revision).await?;
            println!("{}", r.revision);
        }
        KvCmd::Get { ep, key, serializable } => match ep.client()?.get(&key, serializable).await? {
            (Some(kv), _) => {
                println!("{}", String::from_utf8_lossy(&kv.value));
                println!("revision={} create_revision={} version={}", kv.mod_revision, kv.create_revision, kv.version);
            }
            (None, rev) => {
                eprintln!("key {key:?} not found (store revision {rev})");
                return Ok(ExitCode::FAILURE);
            }
        },
        KvCmd::Del { ep, key, prefix, prev_revision } => {
            let r = ep.client()?.delete(DeleteRequest { key, prefix, prev_revision }).await?;
            println!("{} deleted={}", r.revision, r.deleted);
        }
        KvCmd::Range { ep, prefix, limit, serializable } => {
            let client = ep.client()?;
            let mut start_after = String::new();
            let mut left = limit;
            let mut out = std::io::stdout().lock();
            loop {
                let page = if left == 0 { 1000 } else { left.min(1000) };
                let r = client
                    .range(RangeRequest {
                        key: prefix.clone(),
                        prefix: true,
                        start_after: start_after.clone(),
                        limit: page,
                        serializable,
                    })
                    .await?;
                for kv in &r.kvs {
                    writeln!(out, "{}\t{}\t{}", kv.key, kv.mod_revision, String::from_utf8_lossy(&kv.value))?;
                }
                if limit > 0 {
                    left = left.saturating_sub(r.kvs.len() as u64);
                    if left == 0 {
                        break;
                    }
                }
                match (r.more, r.kvs.last()) {
                    (true, Some(last)) => start_after = last.key.clone(),
                    _ => break,
                }
            }
        }
        KvCmd::Watch { ep, prefix, from_revision } => {
            let client = ep.client()?;
            let mut w = client.watch(&prefix, from_revision);
            loop {
                let events = tokio::select! {
                    r = w.next() => r,
                    _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                };
                let events = match events {
                    Ok(e) => e,
                    Err(e) if e.kind() == Kind::Compacted => anyhow::bail!("{e}"),
                    Err(e) => return Err(e.into()),
                };
                let mut out = std::io::stdout().lock();
                for e in events {
                    let t = if e.r#type == event::Type::Delete as i32 { "DELETE" } else { "PUT" };
                    let key = e.kv.as_ref().map(|k| k.key.as_str()).unwrap_or("");
                    writeln!(out, "{t} {key} {}", e.revision)?;
                }
                out.flush()?;
            }
        }
        KvCmd::Compact { ep, revision } => {
            let r = ep.client()?.compact(revision).await?;
            println!("compacted up to {revision} (store revision {})", r.revision);
        }
    }
    Ok(ExitCode::SUCCESS)
}
