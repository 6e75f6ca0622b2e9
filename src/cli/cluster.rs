//! `skiff cluster`: membership status and changes.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use skiff_proto::Client;

use super::Endpoints;

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCmd {
    /// Show every member: id, address, role, term, last log index, applied index.
    Status {
        #[command(flatten)]
        ep: Endpoints,
        /// `table` (default) or `json`.
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
    },
    /// Add a member `ID=HOST:PORT` (joins as a learner, catches up, then votes).
    AddMember {
        #[command(flatten)]
        ep: Endpoints,
        member: String,
    },
    /// Remove member ID.
    RemoveMember {
        #[command(flatten)]
        ep: Endpoints,
        id: u64,
    },
}

#[derive(Serialize)]
struct MemberOut {
    id: u64,
    addr: String,
    role: String,
    term: Option<u64>,
    last_log_index: Option<u64>,
    last_applied: Option<u64>,
    revision: Option<u64>,
    error: Option<String>,
}

#[derive(Serialize)]
struct StatusOut {
    leader: Option<u64>,
    term: u64,
    members: Vec<MemberOut>,
}

async fn status(ep: &Endpoints) -> anyhow::Result<StatusOut> {
    let t = Duration::from_millis(ep.timeout_ms.min(2_000));
    // Ask the given endpoints, then every member they know of.
    let mut addrs: Vec<String> = ep.endpoints.clone();
    let mut answers: BTreeMap<String, Result<skiff_proto::StatusResponse, String>> = BTreeMap::new();
    let mut i = 0;
    while i < addrs.len() {
        let addr = addrs[i].clone();
        i += 1;
        if answers.contains_key(&addr) {
            continue;
        }
        let c = Client::new(std::slice::from_ref(&addr), t)?;
        let r = c.status_of(0, t).await.map_err(|e| e.to_string());
        if let Ok(s) = &r {
            for m in &s.members {
                if !addrs.contains(&m.addr) {
                    addrs.push(m.addr.clone());
                }
            }
        }
        answers.insert(addr, r);
    }
    let reachable: Vec<&skiff_proto::StatusResponse> = answers.values().filter_map(|r| r.as_ref().ok()).collect();
    if reachable.is_empty() {
        let errs: Vec<String> = answers.iter().map(|(a, r)| format!("{a}: {}", r.as_ref().err().unwrap())).collect();
        anyhow::bail!("no control-plane endpoint answered: {}", errs.join("; "));
    }
    let term = reachable.iter().map(|s| s.term).max().unwrap_or(0);
    let leader = reachable.iter().filter(|s| s.term == term).find_map(|s| s.leader);
    // The membership as the most up-to-date replica knows it.
    let view = reachable.iter().max_by_key(|s| (s.last_applied, s.term)).unwrap();
    let mut members = Vec::new();
    for m in &view.members {
        let out = match answers.get(&m.addr) {
            Some(Ok(s)) => MemberOut {
                id: m.id,
                addr: m.addr.clone(),
                role: s.role.clone(),
                term: Some(s.term),
                last_log_index: Some(s.last_log_index),
                last_applied: Some(s.last_applied),
                revision: Some(s.revision),
                error: None,
            },
            other => MemberOut {
                id: m.id,
                addr: m.addr.clone(),
                role: "unreachable".into(),
                term: None,
                last_log_index: None,
                last_applied: None,
                revision: None,
                error: other.and_then(|r| r.as_ref().err().cloned()),
            },
        };
        members.push(out);
    }
    Ok(StatusOut { leader, term, members })
}

pub async fn run(cmd: ClusterCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ClusterCmd::Status { ep, output } => {
            let s = status(&ep).await?;
            match output.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&s)?),
                "table" => {
                    println!(
                        "{:<4} {:<22} {:<12} {:>6} {:>10} {:>10} {:>10}",
                        "ID", "ADDRESS", "ROLE", "TERM", "LAST-LOG", "APPLIED", "REVISION"
                    );
                    let dash = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
                    for m in &s.members {
                        println!(
                            "{:<4} {:<22} {:<12} {:>6} {:>10} {:>10} {:>10}",
                            m.id,
                            m.addr,
                            m.role,
                            dash(m.term),
                            dash(m.last_log_index),
                            dash(m.last_applied),
                            dash(m.revision)
                        );
                    }
                }
                o => anyhow::bail!("unknown output format {o:?}: use table or json"),
            }
        }
        ClusterCmd::AddMember { ep, member } => {
            let (id, addr) =
                member.split_once('=').ok_or_else(|| anyhow::anyhow!("member {member:?} is not ID=HOST:PORT"))?;
            let id: u64 = id.parse().map_err(|_| anyhow::anyhow!("member id {id:?} is not a positive integer"))?;
            ep.client()?.add_member(id, addr).await?;
            println!("member {id} at {addr} added");
        }
        ClusterCmd::RemoveMember { ep, id } => {
            ep.client()?.remove_member(id).await?;
            println!("member {id} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
