//! The kubectl-like user commands (`apply`, `get`, `describe`, `delete`, `scale`, `logs`, `rollout`, `cordon`, `uncordon`, `drain`) as clap types and `run`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::{json, Value};
use skiff_api::registry::{lookup_kind, DEPLOYMENTS, ENDPOINTS, EVENTS, NODES, PODS, REPLICASETS};
use skiff_api::{PatchType, ResourceInfo};

use crate::apply::{plan, ApplyAction, LAST_APPLIED};
use crate::client::{Client, DeleteParams, ListParams, LogParams};
use crate::error::{Error, Result, ServerError};
use crate::kubeconfig::{resolve_target, Target, TargetOptions};
use crate::manifest::{read_sources, Manifest};
use crate::output::{as_list, name_line, to_json, to_yaml, with_type, without_managed_fields, OutputFormat};
use crate::resource::{display_kind, display_name, parse_selections, Selection};
use crate::table::{TableOptions, TablePrinter};

/// Options every user command takes (kubectl's global flags). They are `global`, so a parent
/// parser that flattens this struct accepts them before or after the subcommand.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct GlobalOpts {
    /// Path to the kubeconfig file (else `KUBECONFIG`'s first entry, else ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its current-context.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The API server address (`http://HOST:PORT`), overriding the kubeconfig.
    #[arg(short = 's', long = "server", global = true, value_name = "URL")]
    pub server: Option<String>,
    /// The namespace for this request (else the context's, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Deadline of each request (`30s`, `2m`, `500ms`; a bare number is seconds). Watch and
    /// follow streams have it only until the server answers.
    #[arg(long = "request-timeout", global = true, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
}

impl Default for GlobalOpts {
    /// No flags given: kubeconfig discovery and the 30 s request deadline.
    fn default() -> Self {
        GlobalOpts {
            kubeconfig: None,
            context: None,
            server: None,
            namespace: None,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl GlobalOpts {
    /// Resolve the server and namespace from the flags, `KUBECONFIG` and `HOME`.
    pub fn target(&self) -> Result<Target> {
        let env = std::env::var("KUBECONFIG").ok();
        let home = std::env::var("HOME").ok();
        resolve_target(&TargetOptions {
            kubeconfig: self.kubeconfig.as_deref(),
            context: self.context.as_deref(),
            server: self.server.as_deref(),
            namespace: self.namespace.as_deref(),
            kubeconfig_env: env.as_deref(),
            home: home.as_deref(),
        })
    }
}

/// Parse `30s`, `2m`, `1h`, `500ms` or a bare number of seconds (must be positive).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}: use e.g. 30s, 2m, 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration {s:?}: unknown unit {unit:?}")),
    };
    if secs <= 0.0 || !secs.is_finite() {
        return Err(format!("invalid duration {s:?}: must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Everyday commands against the Kubernetes API, mimicking kubectl.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Create or update objects from manifests (client-side apply, like `kubectl apply`).
    Apply(ApplyArgs),
    /// List objects as a table (server-side columns), or print them as YAML, JSON or names.
    Get(GetArgs),
    /// Show a human-readable summary of objects and their events.
    Describe(DescribeArgs),
    /// Delete objects by type and name, label selector, or manifest.
    Delete(DeleteArgs),
    /// Set the replica count of a deployment or replica set.
    Scale(ScaleArgs),
    /// Print the log of a pod's container.
    Logs(LogsArgs),
    /// Manage the rollout of a deployment: status, history, undo, restart, pause, resume.
    Rollout(RolloutArgs),
    /// Mark a node unschedulable.
    Cordon(NodeArgs),
    /// Mark a node schedulable again.
    Uncordon(NodeArgs),
    /// Cordon a node, then evict its pods (the eviction API) and wait until they are gone.
    Drain(DrainArgs),
}

/// Parse a `--timeout` where `0` means "no limit".
pub fn parse_timeout(s: &str) -> std::result::Result<Duration, String> {
    if s.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic()).parse::<f64>() == Ok(0.0) {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub cmd: RolloutCommand,
}

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum RolloutCommand {
    /// Watch a deployment's rollout until it finishes (or print its state once with `-w=false`).
    Status(RolloutStatusArgs),
    /// List a deployment's revisions, or show one revision's pod template.
    History(RolloutHistoryArgs),
    /// Roll a deployment back to the previous (or a given) revision.
    Undo(RolloutUndoArgs),
    /// Restart a deployment's pods (a new rollout via a template annotation).
    Restart(RolloutTargetArgs),
    /// Pause a deployment's rollouts.
    Pause(RolloutTargetArgs),
    /// Resume a paused deployment.
    Resume(RolloutTargetArgs),
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct RolloutStatusArgs {
    /// `deployment/NAME` or `deployment NAME`.
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// Watch until the rollout is done (`-w=false`: print the current state once).
    #[arg(short = 'w', long, num_args = 0..=1, default_value = "true", default_missing_value = "true", action = clap::ArgAction::Set)]
    pub watch: bool,
    /// How long to watch before giving up (`0`: no limit).
    #[arg(long, default_value = "0s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Fail unless the deployment is at this revision (0: any).
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct RolloutHistoryArgs {
    /// `deployment/NAME...` or `deployment NAME...`.
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// Show this revision's pod template instead of the table.
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct RolloutUndoArgs {
    /// `deployment/NAME...` or `deployment NAME...`.
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// The revision to roll back to (0: the previous one).
    #[arg(long = "to-revision", default_value_t = 0, allow_negative_numbers = true)]
    pub to_revision: i64,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct RolloutTargetArgs {
    /// `deployment/NAME...` or `deployment NAME...`.
    #[arg(required = true)]
    pub resources: Vec<String>,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct NodeArgs {
    /// Node names (`NAME` or `node/NAME`).
    #[arg(required = true)]
    pub nodes: Vec<String>,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct DrainArgs {
    /// The node (`NAME` or `node/NAME`).
    pub node: String,
    /// Seconds each pod has to terminate (default: the pod's own).
    #[arg(long = "grace-period", allow_negative_numbers = true, default_value_t = -1)]
    pub grace_period: i64,
    /// How long to wait for the pods to be gone.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Also delete pods that no controller manages (they are not recreated).
    #[arg(long)]
    pub force: bool,
    /// Also delete pods with emptyDir volumes (their data is lost).
    #[arg(long = "delete-emptydir-data")]
    pub delete_emptydir_data: bool,
    /// Accepted for kubectl compatibility (Skiff has no DaemonSets).
    #[arg(long = "ignore-daemonsets")]
    pub ignore_daemonsets: bool,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ApplyArgs {
    /// Manifest file, directory (its .yaml/.yml/.json files) or `-` for stdin; repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub filenames: Vec<String>,
    /// Also read subdirectories of directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Apply on the server (server-side apply): the server merges each manifest, removes
    /// the fields this field manager applied before and no longer does, and refuses fields
    /// another manager applied with a different value.
    #[arg(long)]
    pub server_side: bool,
    /// With --server-side: take over the fields other managers applied instead of failing.
    #[arg(long, requires = "server_side")]
    pub force_conflicts: bool,
    /// With --server-side: the name the fields applied are recorded under.
    #[arg(long, default_value = "skiff", requires = "server_side")]
    pub field_manager: String,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct GetArgs {
    /// `TYPE[,TYPE...] [NAME...]` or `TYPE/NAME...`.
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// Output format: wide, yaml, json or name (default: a table).
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
    /// Label selector, e.g. `app=web,tier!=db`.
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
    /// Field selector, e.g. `status.phase=Running`.
    #[arg(long = "field-selector")]
    pub field_selector: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// After listing, print every change until interrupted.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Omit the table header.
    #[arg(long = "no-headers")]
    pub no_headers: bool,
    /// Keep `metadata.managedFields` (server-side apply's ownership records) in `-o yaml|json`
    /// output; left out by default, as kubectl does.
    #[arg(long = "show-managed-fields")]
    pub show_managed_fields: bool,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct DescribeArgs {
    /// `TYPE [NAME...]` or `TYPE/NAME...`; without names, every object of the type.
    #[arg(required = true)]
    pub resources: Vec<String>,
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct DeleteArgs {
    /// `TYPE NAME...` or `TYPE/NAME...`.
    pub resources: Vec<String>,
    /// Delete the objects named in these manifests.
    #[arg(short = 'f', long = "filename")]
    pub filenames: Vec<String>,
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Delete the objects of the type matching this label selector.
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
    /// Delete every object of the type in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Treat "not found" as success.
    #[arg(long = "ignore-not-found")]
    pub ignore_not_found: bool,
    /// Wait until the objects are gone (`--wait` or `--wait=true`).
    #[arg(long, num_args = 0..=1, default_value = "false", default_missing_value = "true", action = clap::ArgAction::Set)]
    pub wait: bool,
    /// Seconds the object has to terminate gracefully (default: the object's own).
    #[arg(long = "grace-period", allow_negative_numbers = true, default_value_t = -1)]
    pub grace_period: i64,
    /// Shorthand for `--grace-period=1`.
    #[arg(long)]
    pub now: bool,
    /// Dependents: background (default), foreground or orphan.
    #[arg(long, default_value = "background")]
    pub cascade: String,
    /// How long `--wait` waits.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ScaleArgs {
    /// `TYPE/NAME...` or `TYPE NAME...` (deployments, replicasets).
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// The new desired number of replicas.
    #[arg(long, required = true)]
    pub replicas: u32,
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct LogsArgs {
    /// The pod (`NAME` or `pod/NAME`).
    pub pod: String,
    /// The container (needed when the pod has several).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming new output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, allow_negative_numbers = true, default_value_t = -1)]
    pub tail: i64,
    /// The log of the previous (crashed) instance of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
}

/// Run a user command, writing its output to `out` and notes (`No resources found ...`,
/// warnings) to stderr. The error's `Display` is what kubectl would print; exit with 1 on it.
pub async fn run(cmd: UserCommand, global: &GlobalOpts, out: &mut (dyn Write + Send)) -> Result<()> {
    let mut err = std::io::stderr();
    let progress = err.is_terminal();
    run_inner(cmd, global, out, &mut err, progress).await
}

/// [`run`] with an explicit writer for notes.
pub async fn run_with(
    cmd: UserCommand,
    global: &GlobalOpts,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Result<()> {
    run_inner(cmd, global, out, err, false).await
}

async fn run_inner(
    cmd: UserCommand,
    global: &GlobalOpts,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
    progress: bool,
) -> Result<()> {
    let target = global.target()?;
    let client = Client::new(&target.server, global.request_timeout)?;
    let ctx = Ctx { client, ns: target.namespace, explicit_ns: global.namespace.clone(), progress };
    let res = match cmd {
        UserCommand::Apply(a) => ctx.apply(a, out, err).await,
        UserCommand::Get(a) => ctx.get(a, out, err).await,
        UserCommand::Describe(a) => ctx.describe(a, out, err).await,
        UserCommand::Delete(a) => ctx.delete(a, out, err).await,
        UserCommand::Scale(a) => ctx.scale(a, out).await,
        UserCommand::Logs(a) => ctx.logs(a, out).await,
        UserCommand::Rollout(a) => ctx.rollout(a.cmd, out, err).await,
        UserCommand::Cordon(a) => ctx.cordon_all(&a.nodes, true, out).await,
        UserCommand::Uncordon(a) => ctx.cordon_all(&a.nodes, false, out).await,
        UserCommand::Drain(a) => ctx.drain(a, out, err).await,
    };
    out.flush()?;
    res
}

struct Ctx {
    client: Client,
    ns: String,
    explicit_ns: Option<String>,
    /// stderr is a terminal: draw progress bars there.
    progress: bool,
}

/// `No resources found in default namespace.` / `No resources found`.
pub fn no_resources_message(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("No resources found in {ns} namespace."),
        None => "No resources found".into(),
    }
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

/// Prefix a server error's message with what was being done (`error when creating "f.yaml": ...`).
fn context_error(e: Error, what: &str) -> Error {
    match e {
        Error::Server(s) => Error::Server(ServerError { message: format!("{what}: {}", s.message), ..s }),
        other => other,
    }
}

/// The fieldSelector of events about one object.
pub fn events_field_selector(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("involvedObject.name={name},involvedObject.namespace={ns}"),
        None => format!("involvedObject.name={name}"),
    }
}

impl Ctx {
    fn ns_for(&self, res: &ResourceInfo, all: bool) -> Option<&str> {
        (res.namespaced && !all).then_some(self.ns.as_str())
    }

    /// Resource, namespace and name of a manifest object; sets its namespace.
    fn locate(&self, m: &mut Manifest) -> Result<(&'static ResourceInfo, Option<String>, String)> {
        let api_version = m.object["apiVersion"].as_str().unwrap_or("").to_string();
        let kind = m.object["kind"].as_str().unwrap_or("").to_string();
        let name = name_of(&m.object).to_string();
        let res = lookup_kind(&api_version, &kind).ok_or_else(|| {
            Error::Manifest(format!(
                "resource mapping not found for name: \"{name}\" namespace: \"\" from \"{}\": no matches for kind \"{kind}\" in version \"{api_version}\"",
                m.source
            ))
        })?;
        if name.is_empty() {
            return Err(Error::Manifest(format!(
                "error when retrieving current configuration of {kind} from \"{}\": resource name may not be empty",
                m.source
            )));
        }
        if !res.namespaced {
            return Ok((res, None, name));
        }
        let in_manifest = m.object.pointer("/metadata/namespace").and_then(Value::as_str).filter(|s| !s.is_empty());
        let ns = match (in_manifest, self.explicit_ns.as_deref()) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::Manifest(format!(
                    "the namespace from the provided object \"{a}\" does not match the namespace \"{b}\". You must pass '--namespace={a}' to perform this operation."
                )))
            }
            (Some(a), _) => a.to_string(),
            (None, _) => self.ns.clone(),
        };
        m.object["metadata"]["namespace"] = Value::String(ns.clone());
        Ok((res, Some(ns), name))
    }

    async fn apply(&self, a: ApplyArgs, out: &mut (dyn Write + Send), err: &mut (dyn Write + Send)) -> Result<()> {
        let manifests = read_sources(&a.filenames, a.recursive)?;
        if manifests.is_empty() {
            return Err(Error::Usage("no objects passed to apply".into()));
        }
        let mut errors = Vec::new();
        for mut m in manifests {
            let (res, ns, name) = match self.locate(&mut m) {
                Ok(x) => x,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let ns = ns.as_deref();
            let shown = display_name(res, &name);
            if a.server_side {
                match self.client.apply(res, ns, &name, &m.object, &a.field_manager, a.force_conflicts).await {
                    Ok(_) => writeln!(out, "{shown} serverside-applied")?,
                    Err(e) => errors.push(context_error(e, &format!("error when applying \"{}\"", m.source))),
                }
                continue;
            }
            let live = match self.client.get(res, ns, &name).await {
                Ok(v) => Some(v),
                Err(e) if e.is_not_found() => None,
                Err(e) => {
                    errors.push(context_error(
                        e,
                        &format!("error when retrieving current configuration of {}", display_name(res, &name)),
                    ));
                    continue;
                }
            };
            if let Some(l) = &live {
                if l.pointer("/metadata/annotations").and_then(|a| a.get(LAST_APPLIED)).is_none() {
                    writeln!(
                        err,
                        "Warning: resource {}/{name} is missing the {LAST_APPLIED} annotation which is required by skiff apply. The missing annotation will be patched automatically.",
                        res.qualified_plural()
                    )?;
                }
            }
            let result = match plan(&m.object, live.as_ref()) {
                ApplyAction::Create(body) => self
                    .client
                    .create(res, ns, &body)
                    .await
                    .map(|_| "created")
                    .map_err(|e| context_error(e, &format!("error when creating \"{}\"", m.source))),
                ApplyAction::Patch(patch) => self
                    .client
                    .patch(res, ns, &name, None, PatchType::Merge, &patch)
                    .await
                    .map(|_| "configured")
                    .map_err(|e| context_error(e, &format!("error when patching \"{}\"", m.source))),
                ApplyAction::Unchanged => Ok("unchanged"),
            };
            match result {
                Ok(verb) => writeln!(out, "{shown} {verb}")?,
                Err(e) => errors.push(e),
            }
        }
        Error::from_many(errors)
    }

    async fn get(&self, a: GetArgs, out: &mut (dyn Write + Send), err: &mut (dyn Write + Send)) -> Result<()> {
        let sels = parse_selections(&a.resources)?;
        if a.watch && (sels.len() != 1 || sels[0].names.len() > 1) {
            return Err(Error::Usage("watch is only supported on a single resource type and at most one name".into()));
        }
        let params = ListParams { label_selector: a.selector.clone(), field_selector: a.field_selector.clone() };
        match a.output {
            None | Some(OutputFormat::Wide) => self.get_tables(&a, &sels, &params, out, err).await,
            Some(fmt) => self.get_objects(&a, fmt, &sels, &params, out, err).await,
        }
    }

    async fn get_tables(
        &self,
        a: &GetArgs,
        sels: &[Selection],
        params: &ListParams,
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> Result<()> {
        let multi = sels.len() > 1;
        let mut errors = Vec::new();
        let mut printed = false;
        let mut last_printer = None;
        let mut last_rv = String::new();
        for sel in sels {
            let res = sel.resource;
            let ns = self.ns_for(res, a.all_namespaces);
            let opts = TableOptions {
                wide: a.output == Some(OutputFormat::Wide),
                with_namespace: a.all_namespaces && res.namespaced,
                kind_prefix: multi.then(|| display_kind(res)),
                no_headers: a.no_headers,
            };
            let mut printer = TablePrinter::new(opts);
            let table = if sel.names.is_empty() {
                self.client.table(res, ns, None, params).await?
            } else {
                let ns = self.ns_for(res, false);
                let mut merged: Option<Value> = None;
                for name in &sel.names {
                    match self.client.table(res, ns, Some(name), &ListParams::default()).await {
                        Ok(t) => match &mut merged {
                            None => merged = Some(t),
                            Some(m) => {
                                let rows = t.get("rows").and_then(Value::as_array).cloned().unwrap_or_default();
                                if let Some(list) = m.get_mut("rows").and_then(Value::as_array_mut) {
                                    list.extend(rows);
                                }
                            }
                        },
                        Err(e) if e.is_not_found() => errors.push(e),
                        Err(e) => return Err(e),
                    }
                }
                merged.unwrap_or_else(|| json!({"rows": []}))
            };
            last_rv = table.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("").to_string();
            let text = printer.render(&table);
            if !text.is_empty() {
                if printed {
                    writeln!(out)?;
                }
                out.write_all(text.as_bytes())?;
                printed = true;
            }
            last_printer = Some(printer);
        }
        if !printed && errors.is_empty() {
            let ns = sels.iter().any(|s| s.resource.namespaced && !a.all_namespaces).then_some(self.ns.as_str());
            writeln!(err, "{}", no_resources_message(ns))?;
        }
        if a.watch {
            out.flush()?;
            let sel = &sels[0];
            let mut printer = last_printer.expect("one selection");
            let mut stream = self.watch(a, sel, params, &last_rv, true).await?;
            while let Some(ev) = stream.next().await {
                let ev = ev?;
                if ev.object.get("kind").and_then(Value::as_str) == Some("Table") {
                    out.write_all(printer.render(&ev.object).as_bytes())?;
                }
                out.flush()?;
            }
        }
        Error::from_many(errors)
    }

    async fn watch(
        &self,
        a: &GetArgs,
        sel: &Selection,
        params: &ListParams,
        rv: &str,
        as_table: bool,
    ) -> Result<crate::client::WatchStream> {
        let mut params = params.clone();
        if let Some(name) = sel.names.first() {
            let by_name = format!("metadata.name={name}");
            params.field_selector = Some(match params.field_selector.filter(|f| !f.is_empty()) {
                Some(f) => format!("{f},{by_name}"),
                None => by_name,
            });
        }
        let ns = self.ns_for(sel.resource, a.all_namespaces && sel.names.is_empty());
        self.client.watch(sel.resource, ns, &params, Some(rv), as_table).await
    }

    async fn get_objects(
        &self,
        a: &GetArgs,
        fmt: OutputFormat,
        sels: &[Selection],
        params: &ListParams,
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> Result<()> {
        let mut errors = Vec::new();
        let mut items: Vec<(&'static ResourceInfo, Value)> = Vec::new();
        let mut single = sels.len() == 1 && sels[0].names.len() == 1;
        let mut last_rv = String::new();
        for sel in sels {
            let res = sel.resource;
            if sel.names.is_empty() {
                single = false;
                let list = self.client.list(res, self.ns_for(res, a.all_namespaces), params).await?;
                last_rv = list.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("").to_string();
                let list_items = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
                items.extend(
                    list_items
                        .into_iter()
                        .map(|i| (res, without_managed_fields(with_type(i, res), a.show_managed_fields))),
                );
            } else {
                for name in &sel.names {
                    match self.client.get(res, self.ns_for(res, false), name).await {
                        Ok(o) => {
                            last_rv = o
                                .pointer("/metadata/resourceVersion")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string();
                            items.push((res, without_managed_fields(with_type(o, res), a.show_managed_fields)));
                        }
                        Err(e) if e.is_not_found() => errors.push(e),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let print = |out: &mut (dyn Write + Send), res: &ResourceInfo, obj: &Value| -> Result<()> {
            match fmt {
                OutputFormat::Name => writeln!(out, "{}", name_line(res, obj))?,
                OutputFormat::Json => out.write_all(to_json(obj).as_bytes())?,
                _ => {
                    out.write_all(to_yaml(obj).as_bytes())?;
                }
            }
            Ok(())
        };
        if fmt == OutputFormat::Name {
            for (res, obj) in &items {
                print(out, res, obj)?;
            }
            if items.is_empty() && errors.is_empty() && !a.watch {
                let ns = sels.iter().any(|s| s.resource.namespaced && !a.all_namespaces).then_some(self.ns.as_str());
                writeln!(err, "{}", no_resources_message(ns))?;
            }
        } else if single && items.len() == 1 {
            print(out, items[0].0, &items[0].1)?;
        } else if !(single && items.is_empty()) {
            let list = as_list(items.into_iter().map(|(_, o)| o).collect());
            print(out, &PODS, &list)?;
        }
        if a.watch {
            out.flush()?;
            let sel = &sels[0];
            let mut stream = self.watch(a, sel, params, &last_rv, false).await?;
            while let Some(ev) = stream.next().await {
                let ev = ev?;
                if ev.event_type != "BOOKMARK" {
                    if fmt == OutputFormat::Yaml {
                        writeln!(out, "---")?;
                    }
                    print(
                        out,
                        sel.resource,
                        &without_managed_fields(with_type(ev.object, sel.resource), a.show_managed_fields),
                    )?;
                }
                out.flush()?;
            }
        }
        Error::from_many(errors)
    }

    async fn describe(
        &self,
        a: DescribeArgs,
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> Result<()> {
        let sels = parse_selections(&a.resources)?;
        let params = ListParams { label_selector: a.selector.clone(), field_selector: None };
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut errors = Vec::new();
        let mut first = true;
        for sel in &sels {
            let res = sel.resource;
            let mut objects = Vec::new();
            if sel.names.is_empty() {
                let list = self.client.list(res, self.ns_for(res, a.all_namespaces), &params).await?;
                objects.extend(list.get("items").and_then(Value::as_array).cloned().unwrap_or_default());
                if objects.is_empty() {
                    let ns = (res.namespaced && !a.all_namespaces).then_some(self.ns.as_str());
                    writeln!(err, "{}", no_resources_message(ns))?;
                }
            } else {
                for name in &sel.names {
                    match self.client.get(res, self.ns_for(res, false), name).await {
                        Ok(o) => objects.push(o),
                        Err(e) if e.is_not_found() => errors.push(e),
                        Err(e) => return Err(e),
                    }
                }
            }
            for obj in objects {
                let name = name_of(&obj).to_string();
                let obj_ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_string);
                let related = if res.kind == "Service" {
                    self.client.get(&ENDPOINTS, obj_ns.as_deref(), &name).await.ok()
                } else {
                    None
                };
                let ev_params = ListParams {
                    label_selector: None,
                    field_selector: Some(events_field_selector(&name, obj_ns.as_deref())),
                };
                // Events are best-effort, as in kubectl: a failure leaves the section empty.
                let events: Vec<Value> = match self.client.list(&EVENTS, obj_ns.as_deref(), &ev_params).await {
                    Ok(l) => l
                        .get("items")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter(|e| {
                            let kind = e.pointer("/involvedObject/kind").and_then(Value::as_str).unwrap_or(res.kind);
                            let n = e.pointer("/involvedObject/name").and_then(Value::as_str).unwrap_or(&name);
                            kind == res.kind && n == name
                        })
                        .cloned()
                        .collect(),
                    Err(_) => Vec::new(),
                };
                if !first {
                    writeln!(out)?;
                    writeln!(out)?;
                }
                first = false;
                let text = crate::describe::describe(res, &obj, related.as_ref(), &events, now);
                out.write_all(text.as_bytes())?;
            }
        }
        Error::from_many(errors)
    }

    async fn delete(&self, a: DeleteArgs, out: &mut (dyn Write + Send), err: &mut (dyn Write + Send)) -> Result<()> {
        let propagation = match a.cascade.as_str() {
            "background" | "true" => "Background",
            "foreground" => "Foreground",
            "orphan" | "false" => "Orphan",
            other => {
                return Err(Error::Usage(format!(
                    "invalid cascade value ({other}). Must be \"background\", \"foreground\", or \"orphan\""
                )))
            }
        };
        let grace = if a.now { Some(1) } else { (a.grace_period >= 0).then_some(a.grace_period) };
        let params = DeleteParams { propagation_policy: Some(propagation.into()), grace_period_seconds: grace };
        let mut targets: Vec<(&'static ResourceInfo, Option<String>, String)> = Vec::new();
        let mut errors = Vec::new();
        if !a.filenames.is_empty() {
            if !a.resources.is_empty() {
                return Err(Error::Usage("cannot specify both resource names and -f".into()));
            }
            for mut m in read_sources(&a.filenames, a.recursive)? {
                match self.locate(&mut m) {
                    Ok(t) => targets.push(t),
                    Err(e) => errors.push(e),
                }
            }
        } else {
            if a.resources.is_empty() {
                return Err(Error::Usage("You must provide one or more resources by argument or filename.".into()));
            }
            for sel in parse_selections(&a.resources)? {
                let res = sel.resource;
                let ns = self.ns_for(res, false).map(str::to_string);
                if sel.names.is_empty() {
                    if a.selector.is_none() && !a.all {
                        return Err(Error::Usage(
                            "resource(s) were provided, but no name was specified (use --all or -l to select several)"
                                .into(),
                        ));
                    }
                    let lp = ListParams { label_selector: a.selector.clone(), field_selector: None };
                    let list = self.client.list(res, ns.as_deref(), &lp).await?;
                    for item in list.get("items").and_then(Value::as_array).into_iter().flatten() {
                        targets.push((res, ns.clone(), name_of(item).to_string()));
                    }
                } else {
                    targets.extend(sel.names.iter().map(|n| (res, ns.clone(), n.clone())));
                }
            }
            if targets.is_empty() && errors.is_empty() {
                writeln!(err, "{}", no_resources_message(Some(&self.ns)))?;
            }
        }
        let mut deleted = Vec::new();
        for (res, ns, name) in targets {
            match self.client.delete(res, ns.as_deref(), &name, &params).await {
                Ok(_) => {
                    writeln!(out, "{} \"{name}\" deleted", display_kind(res))?;
                    deleted.push((res, ns, name));
                }
                Err(e) if e.is_not_found() && a.ignore_not_found => {}
                Err(e) => errors.push(e),
            }
        }
        if a.wait {
            out.flush()?;
            let deadline = Instant::now() + a.timeout;
            for (res, ns, name) in deleted {
                loop {
                    match self.client.get(res, ns.as_deref(), &name).await {
                        Err(e) if e.is_not_found() => break,
                        Err(e) => return Err(e),
                        Ok(_) if Instant::now() >= deadline => {
                            errors.push(Error::Usage(format!(
                                "timed out waiting for the condition on {}/{name}",
                                res.qualified_plural()
                            )));
                            break;
                        }
                        Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
        }
        Error::from_many(errors)
    }

    async fn scale(&self, a: ScaleArgs, out: &mut (dyn Write + Send)) -> Result<()> {
        let patch = scale_patch(a.replicas);
        let mut errors = Vec::new();
        for sel in parse_selections(&a.resources)? {
            let res = sel.resource;
            if !res.has_subresource("scale") {
                return Err(Error::Usage(format!(
                    "cannot scale {}: it has no scale subresource",
                    res.qualified_plural()
                )));
            }
            if sel.names.is_empty() {
                return Err(Error::Usage("resource(s) were provided, but no name was specified".into()));
            }
            for name in &sel.names {
                match self
                    .client
                    .patch(res, self.ns_for(res, false), name, Some("scale"), PatchType::Merge, &patch)
                    .await
                {
                    Ok(_) => writeln!(out, "{} scaled", display_name(res, name))?,
                    Err(e) => errors.push(e),
                }
            }
        }
        Error::from_many(errors)
    }

    async fn logs(&self, a: LogsArgs, out: &mut (dyn Write + Send)) -> Result<()> {
        let pod = match a.pod.split_once('/') {
            None => a.pod.clone(),
            Some((kind, name)) if crate::resource::resource_type(kind).is_ok_and(|r| std::ptr::eq(r, &PODS)) => {
                name.to_string()
            }
            Some((kind, _)) => return Err(Error::Usage(format!("logs are served for pods only, not {kind}"))),
        };
        let params = LogParams {
            container: a.container.clone(),
            follow: a.follow,
            tail_lines: (a.tail >= 0).then_some(a.tail),
            previous: a.previous,
        };
        let mut stream = self.client.logs(&self.ns, &pod, &params).await?;
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?)?;
            out.flush()?;
        }
        Ok(())
    }
}

/// The deployment names of `rollout` arguments (`deployment/NAME...` or `deployment NAME...`).
pub fn deployment_names(args: &[String], verb: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for sel in parse_selections(args)? {
        if !std::ptr::eq(sel.resource, &DEPLOYMENTS) {
            return Err(Error::Usage(format!(
                "rollout {verb} is implemented for deployments only, not {}",
                sel.resource.qualified_plural()
            )));
        }
        if sel.names.is_empty() {
            return Err(Error::Usage("You must provide one or more resources by argument or filename.".into()));
        }
        names.extend(sel.names);
    }
    Ok(names)
}

/// A node name given as `NAME` or `node/NAME`.
pub fn node_name(arg: &str) -> Result<String> {
    match arg.split_once('/') {
        None => Ok(arg.to_string()),
        Some((kind, name)) if crate::resource::resource_type(kind).is_ok_and(|r| std::ptr::eq(r, &NODES)) => {
            Ok(name.to_string())
        }
        Some((kind, _)) => Err(Error::Usage(format!("expected a node, not {kind}"))),
    }
}

fn resource_version(obj: &Value) -> String {
    obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("").to_string()
}

/// `deployments.apps "web" MESSAGE` as kubectl words a failed pause/resume/restart.
fn deployment_error(name: &str, msg: &str) -> Error {
    Error::Usage(format!("{} {name:?} {msg}", DEPLOYMENTS.qualified_plural()))
}

fn timed_out() -> Error {
    Error::Usage("timed out waiting for the condition".into())
}

/// Erase a progress bar line on a terminal.
const CLEAR_LINE: &str = "\r\x1b[2K";

impl Ctx {
    async fn rollout(
        &self,
        cmd: RolloutCommand,
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> Result<()> {
        match cmd {
            RolloutCommand::Status(a) => {
                let res = self.rollout_status(a, out, err).await;
                if res.is_err() && self.progress {
                    // Leave no bar before the error line.
                    write!(err, "{CLEAR_LINE}")?;
                }
                res
            }
            RolloutCommand::History(a) => {
                let mut errors = Vec::new();
                for name in deployment_names(&a.resources, "history")? {
                    if let Err(e) = self.rollout_history(&name, a.revision, out).await {
                        errors.push(e);
                    }
                }
                Error::from_many(errors)
            }
            RolloutCommand::Undo(a) => {
                let mut errors = Vec::new();
                for name in deployment_names(&a.resources, "undo")? {
                    match self.rollout_undo(&name, a.to_revision).await {
                        Ok(verb) => writeln!(out, "{} {verb}", display_name(&DEPLOYMENTS, &name))?,
                        Err(e) => errors.push(e),
                    }
                }
                Error::from_many(errors)
            }
            RolloutCommand::Restart(a) => self.rollout_patch(&a.resources, "restart", out).await,
            RolloutCommand::Pause(a) => self.rollout_patch(&a.resources, "pause", out).await,
            RolloutCommand::Resume(a) => self.rollout_patch(&a.resources, "resume", out).await,
        }
    }

    /// Print the status line when it changed (and the bar on a terminal); true when done.
    fn report_status(
        &self,
        d: &Value,
        revision: i64,
        last: &mut String,
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> Result<bool> {
        let view = match crate::rollout::deployment_status(d, revision) {
            Ok(v) => v,
            Err(e) => {
                if self.progress {
                    write!(err, "{CLEAR_LINE}")?;
                }
                return Err(e);
            }
        };
        if self.progress {
            write!(err, "{CLEAR_LINE}")?;
            err.flush()?;
        }
        if view.message != *last {
            writeln!(out, "{}", view.message)?;
            out.flush()?;
            *last = view.message.clone();
        }
        if self.progress && !view.done {
            write!(err, "{}", crate::rollout::progress_bar(d, 30))?;
            err.flush()?;
        }
        Ok(view.done)
    }

    async fn rollout_status(
        &self,
        a: RolloutStatusArgs,
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> Result<()> {
        let names = deployment_names(&a.resources, "status")?;
        if names.len() != 1 {
            return Err(Error::Usage(format!(
                "rollout status is only supported on individual resources and resource collections, but {} resources were found",
                names.len()
            )));
        }
        let name = &names[0];
        let ns = Some(self.ns.as_str());
        let deadline = (!a.timeout.is_zero()).then(|| tokio::time::Instant::now() + a.timeout);
        let mut last = String::new();
        let d = self.client.get(&DEPLOYMENTS, ns, name).await?;
        if self.report_status(&d, a.revision, &mut last, out, err)? || !a.watch {
            return Ok(());
        }
        let mut rv = resource_version(&d);
        let params = ListParams { label_selector: None, field_selector: Some(format!("metadata.name={name}")) };
        loop {
            let watch = self.client.watch(&DEPLOYMENTS, ns, &params, Some(&rv), false);
            let mut stream = match deadline {
                Some(dl) => tokio::time::timeout_at(dl, watch).await.map_err(|_| timed_out())??,
                None => watch.await?,
            };
            let mut expired = false;
            loop {
                let next = match deadline {
                    Some(dl) => tokio::time::timeout_at(dl, stream.next()).await.map_err(|_| timed_out())?,
                    None => stream.next().await,
                };
                let ev = match next {
                    None => break,
                    Some(Err(e)) if e.is_gone() => {
                        expired = true;
                        break;
                    }
                    Some(Err(e)) => return Err(e),
                    Some(Ok(ev)) => ev,
                };
                match ev.event_type.as_str() {
                    "DELETED" => return Err(Error::Usage("object has been deleted".into())),
                    "ADDED" | "MODIFIED" => {
                        rv = resource_version(&ev.object);
                        if self.report_status(&ev.object, a.revision, &mut last, out, err)? {
                            return Ok(());
                        }
                    }
                    _ => {
                        let r = resource_version(&ev.object);
                        if !r.is_empty() {
                            rv = r;
                        }
                    }
                }
            }
            // The server closed the watch: watch on from the last version seen, or read the
            // object again when that version has expired.
            if deadline.is_some_and(|dl| tokio::time::Instant::now() >= dl) {
                return Err(timed_out());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if expired {
                let d = self.client.get(&DEPLOYMENTS, ns, name).await?;
                if self.report_status(&d, a.revision, &mut last, out, err)? {
                    return Ok(());
                }
                rv = resource_version(&d);
            }
        }
    }

    /// The deployment and the ReplicaSets it controls.
    async fn deployment_and_replicasets(&self, name: &str) -> Result<(Value, Vec<Value>)> {
        let ns = Some(self.ns.as_str());
        let d = self.client.get(&DEPLOYMENTS, ns, name).await?;
        let params = ListParams { label_selector: Some(crate::rollout::selector_string(&d)), field_selector: None };
        let list = self.client.list(&REPLICASETS, ns, &params).await?;
        let rss = list
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|rs| crate::rollout::controlled_by(rs, &d))
            .cloned()
            .collect();
        Ok((d, rss))
    }

    async fn rollout_history(&self, name: &str, revision: i64, out: &mut (dyn Write + Send)) -> Result<()> {
        let (_, rss) = self.deployment_and_replicasets(name).await?;
        let text = crate::rollout::history_text(&rss, revision)?;
        let shown = display_name(&DEPLOYMENTS, name);
        if revision > 0 {
            writeln!(out, "{shown} with revision #{revision}")?;
        } else {
            writeln!(out, "{shown} ")?;
        }
        writeln!(out, "{text}")?;
        Ok(())
    }

    async fn rollout_undo(&self, name: &str, to_revision: i64) -> Result<String> {
        let (d, rss) = self.deployment_and_replicasets(name).await?;
        match crate::rollout::rollback(&d, &rss, to_revision)? {
            crate::rollout::Rollback::Skip(msg) => Ok(msg),
            crate::rollout::Rollback::Patch(patch) => {
                self.client
                    .patch(&DEPLOYMENTS, Some(&self.ns), name, None, PatchType::Json, &patch)
                    .await
                    .map_err(|e| Error::Usage(format!("failed restoring revision {to_revision}: {e}")))?;
                Ok("rolled back".into())
            }
        }
    }

    async fn rollout_patch(&self, args: &[String], verb: &str, out: &mut (dyn Write + Send)) -> Result<()> {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut errors = Vec::new();
        for name in deployment_names(args, verb)? {
            let d = match self.client.get(&DEPLOYMENTS, Some(&self.ns), &name).await {
                Ok(d) => d,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let (patch, done) = match verb {
                "restart" => (crate::rollout::restart_patch(&d, &crate::rollout::format_rfc3339(now)), "restarted"),
                "pause" => (crate::rollout::pause_patch(&d, true), "paused"),
                _ => (crate::rollout::pause_patch(&d, false), "resumed"),
            };
            let patch = match patch {
                Ok(p) => p,
                Err(msg) => {
                    errors.push(deployment_error(&name, &msg));
                    continue;
                }
            };
            match self.client.patch(&DEPLOYMENTS, Some(&self.ns), &name, None, PatchType::Merge, &patch).await {
                Ok(_) => writeln!(out, "{} {done}", display_name(&DEPLOYMENTS, &name))?,
                Err(e) => errors.push(e),
            }
        }
        Error::from_many(errors)
    }

    /// Cordon (`true`) or uncordon one node; prints `node/n1 cordoned` (or `already ...`).
    async fn cordon(&self, node: &str, desired: bool, out: &mut (dyn Write + Send)) -> Result<()> {
        let n = self.client.get(&NODES, None, node).await?;
        let already = crate::drain::is_cordoned(&n) == desired;
        if !already {
            let patch = crate::drain::cordon_patch(desired);
            self.client.patch(&NODES, None, node, None, PatchType::Merge, &patch).await?;
        }
        writeln!(out, "{} {}", display_name(&NODES, node), crate::drain::cordon_verb(desired, already))?;
        Ok(())
    }

    async fn cordon_all(&self, nodes: &[String], desired: bool, out: &mut (dyn Write + Send)) -> Result<()> {
        let mut errors = Vec::new();
        for arg in nodes {
            if let Err(e) = async { self.cordon(&node_name(arg)?, desired, out).await }.await {
                errors.push(e);
            }
        }
        Error::from_many(errors)
    }

    async fn drain(&self, a: DrainArgs, out: &mut (dyn Write + Send), err: &mut (dyn Write + Send)) -> Result<()> {
        let node = node_name(&a.node)?;
        self.cordon(&node, true, out).await?;
        let params = ListParams { label_selector: None, field_selector: Some(format!("spec.nodeName={node}")) };
        let list = self.client.list(&PODS, None, &params).await?;
        let pods: Vec<Value> = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
        let filter = crate::drain::DrainFilter { force: a.force, delete_emptydir_data: a.delete_emptydir_data };
        let unable = |msg: String| Error::Usage(format!("unable to drain node {node:?} due to error: {msg}"));
        let (victims, warnings) = crate::drain::drain_plan(&pods, filter).map_err(|e| unable(e.join(", ")))?;
        for w in warnings {
            writeln!(err, "Warning: {w}")?;
        }
        let params = DeleteParams {
            propagation_policy: None,
            grace_period_seconds: (a.grace_period >= 0).then_some(a.grace_period),
        };
        let s = |p: &Value, ptr: &str| p.pointer(ptr).and_then(Value::as_str).unwrap_or("").to_string();
        let deadline = Instant::now() + a.timeout;
        let mut pending = Vec::new();
        for p in &victims {
            let (ns, name) = (s(p, "/metadata/namespace"), s(p, "/metadata/name"));
            writeln!(err, "evicting pod {ns}/{name}")?;
            loop {
                match self.client.evict(&ns, &name, &params).await {
                    Ok(_) => pending.push((ns.clone(), name.clone(), s(p, "/metadata/uid"))),
                    Err(e) if e.is_not_found() => writeln!(out, "pod/{name} evicted")?,
                    // Too many requests (an overloaded server; a disruption budget on Kubernetes):
                    // kubectl retries every 5 s within the drain's timeout.
                    Err(e) if e.server().is_some_and(|s| s.code == 429) && Instant::now() < deadline => {
                        writeln!(err, "error when evicting pods/\"{name}\" -n \"{ns}\" (will retry after 5s): {e}")?;
                        tokio::time::sleep(
                            Duration::from_secs(5).min(deadline.saturating_duration_since(Instant::now())),
                        )
                        .await;
                        continue;
                    }
                    Err(e) => return Err(unable(e.to_string())),
                }
                break;
            }
        }
        out.flush()?;
        while !pending.is_empty() {
            let mut still = Vec::new();
            for (ns, name, uid) in pending {
                match self.client.get(&PODS, Some(&ns), &name).await {
                    Err(e) if e.is_not_found() => writeln!(out, "pod/{name} evicted")?,
                    Ok(p) if !uid.is_empty() && s(&p, "/metadata/uid") != uid => writeln!(out, "pod/{name} evicted")?,
                    Ok(_) => still.push((ns, name, uid)),
                    Err(e) => return Err(unable(e.to_string())),
                }
            }
            out.flush()?;
            pending = still;
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let left: Vec<String> = pending.iter().map(|(ns, n, _)| format!("{ns}/{n}")).collect();
                return Err(unable(format!(
                    "global timeout reached: {}s, pods still present: {}",
                    a.timeout.as_secs_f64(),
                    left.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        writeln!(out, "{} drained", display_name(&NODES, &node))?;
        Ok(())
    }
}

/// The merge patch `scale` sends to the `scale` subresource.
pub fn scale_patch(replicas: u32) -> Value {
    json!({"spec": {"replicas": replicas}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        global: GlobalOpts,
        #[command(subcommand)]
        cmd: UserCommand,
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn global_flags_anywhere() {
        let c = parse(&["get", "pods", "-n", "prod", "-o", "wide", "-s", "http://h:1"]);
        assert_eq!(c.global.namespace.as_deref(), Some("prod"));
        assert_eq!(c.global.server.as_deref(), Some("http://h:1"));
        let UserCommand::Get(g) = c.cmd else { panic!() };
        assert_eq!(g.output, Some(OutputFormat::Wide));
        let c =
            parse(&["--namespace", "x", "--request-timeout", "5s", "logs", "web", "-f", "--tail", "10", "-c", "app"]);
        assert_eq!(c.global.request_timeout, Duration::from_secs(5));
        let UserCommand::Logs(l) = c.cmd else { panic!() };
        assert!(l.follow && l.tail == 10 && l.container.as_deref() == Some("app"));
    }

    #[test]
    fn command_shapes() {
        let UserCommand::Apply(a) = parse(&["apply", "-f", "a.yaml", "-f", "-"]).cmd else { panic!() };
        assert_eq!(a.filenames, ["a.yaml", "-"]);
        assert!(!a.server_side && a.field_manager == "skiff");
        let UserCommand::Apply(a) = parse(&["apply", "-f", "a", "--server-side", "--force-conflicts"]).cmd else {
            panic!()
        };
        assert!(a.server_side && a.force_conflicts);
        assert!(
            Cli::try_parse_from(["skiff", "apply", "-f", "a", "--force-conflicts"]).is_err(),
            "needs --server-side"
        );
        let UserCommand::Delete(d) = parse(&["delete", "pod", "x", "--wait", "--grace-period", "0"]).cmd else {
            panic!()
        };
        assert!(d.wait && d.grace_period == 0);
        let UserCommand::Delete(d) = parse(&["delete", "pod/x", "--wait=false"]).cmd else { panic!() };
        assert!(!d.wait && d.grace_period == -1);
        let UserCommand::Scale(s) = parse(&["scale", "deploy/web", "--replicas", "3"]).cmd else { panic!() };
        assert_eq!(s.replicas, 3);
        assert_eq!(scale_patch(3), json!({"spec": {"replicas": 3}}));
        let UserCommand::Get(g) = parse(&["get", "pods,svc", "-A", "-w", "-l", "app=web"]).cmd else { panic!() };
        assert!(g.all_namespaces && g.watch && g.selector.as_deref() == Some("app=web"));
        assert!(Cli::try_parse_from(["skiff", "get", "pods", "-o", "table"]).is_err());
    }

    /// The shape the `skiff` binary uses: its own subcommands plus the user commands flattened
    /// in, with the global options on the top-level parser.
    #[test]
    fn flattens_into_a_binary_cli() {
        #[derive(Subcommand, Debug)]
        enum Top {
            Server {
                #[arg(long)]
                request_timeout_ms: Option<u64>,
            },
            Cluster {
                #[arg(short = 'o', long)]
                output: Option<String>,
            },
            #[command(flatten)]
            User(UserCommand),
        }
        #[derive(Parser, Debug)]
        struct Bin {
            #[command(flatten)]
            global: GlobalOpts,
            #[command(subcommand)]
            cmd: Top,
        }
        use clap::CommandFactory;
        Bin::command().debug_assert();
        let b = Bin::try_parse_from(["skiff", "scale", "deploy/web", "--replicas", "2", "-n", "x"]).unwrap();
        assert!(matches!(b.cmd, Top::User(UserCommand::Scale(_))));
        assert_eq!(b.global.namespace.as_deref(), Some("x"));
        let b =
            Bin::try_parse_from(["skiff", "rollout", "status", "deploy/web", "-n", "x", "--timeout", "1m"]).unwrap();
        assert!(matches!(b.cmd, Top::User(UserCommand::Rollout(_))));
        let b = Bin::try_parse_from(["skiff", "drain", "n1", "-s", "http://h:1"]).unwrap();
        assert!(matches!(b.cmd, Top::User(UserCommand::Drain(_))));
        assert_eq!(b.global.server.as_deref(), Some("http://h:1"));
        let b = Bin::try_parse_from(["skiff", "server", "--request-timeout-ms", "5"]).unwrap();
        assert!(matches!(b.cmd, Top::Server { request_timeout_ms: Some(5) }));
        assert!(Bin::try_parse_from(["skiff", "cluster", "-o", "json"]).is_ok());
    }

    #[test]
    fn rollout_and_node_flags() {
        let rollout = |args: &[&str]| match parse(args).cmd {
            UserCommand::Rollout(r) => r.cmd,
            other => panic!("{other:?}"),
        };
        let RolloutCommand::Status(st) = rollout(&["rollout", "status", "deployment/web"]) else { panic!() };
        assert!(st.watch && st.timeout.is_zero() && st.revision == 0);
        let RolloutCommand::Status(st) =
            rollout(&["rollout", "status", "deploy", "web", "-w=false", "--timeout", "5m"])
        else {
            panic!()
        };
        assert!(!st.watch && st.timeout == Duration::from_secs(300));
        assert_eq!(st.resources, ["deploy", "web"]);
        let RolloutCommand::Status(st) = rollout(&["rollout", "status", "deploy/web", "--watch=false"]) else {
            panic!()
        };
        assert!(!st.watch);
        let RolloutCommand::History(h) = rollout(&["rollout", "history", "deploy/web", "--revision", "3"]) else {
            panic!()
        };
        assert_eq!(h.revision, 3);
        let RolloutCommand::Undo(u) = rollout(&["rollout", "undo", "deploy/web", "--to-revision=2"]) else { panic!() };
        assert_eq!(u.to_revision, 2);
        let RolloutCommand::Undo(u) = rollout(&["rollout", "undo", "deploy/web"]) else { panic!() };
        assert_eq!(u.to_revision, 0);
        assert!(matches!(rollout(&["rollout", "restart", "deploy/web"]), RolloutCommand::Restart(_)));
        assert!(matches!(rollout(&["rollout", "pause", "deploy/web"]), RolloutCommand::Pause(_)));
        assert!(matches!(rollout(&["rollout", "resume", "deploy/a", "deploy/b"]), RolloutCommand::Resume(_)));
        assert!(Cli::try_parse_from(["skiff", "rollout", "status"]).is_err());
        assert!(Cli::try_parse_from(["skiff", "rollout", "rewind", "deploy/web"]).is_err());

        let UserCommand::Drain(d) = parse(&["drain", "n1", "--grace-period", "0", "--timeout", "10s", "--force"]).cmd
        else {
            panic!()
        };
        assert!(d.force && d.grace_period == 0 && d.timeout == Duration::from_secs(10) && !d.delete_emptydir_data);
        let UserCommand::Drain(d) = parse(&["drain", "node/n1", "--ignore-daemonsets", "--delete-emptydir-data"]).cmd
        else {
            panic!()
        };
        assert!(d.grace_period == -1 && d.timeout == Duration::from_secs(60) && d.delete_emptydir_data);
        let UserCommand::Cordon(c) = parse(&["cordon", "n1", "node/n2"]).cmd else { panic!() };
        assert_eq!(c.nodes, ["n1", "node/n2"]);
        assert!(matches!(parse(&["uncordon", "n1"]).cmd, UserCommand::Uncordon(_)));

        assert_eq!(parse_timeout("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_timeout("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_timeout("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn rollout_targets() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(deployment_names(&a(&["deploy/web", "deployments/api"]), "undo").unwrap(), ["web", "api"]);
        assert_eq!(deployment_names(&a(&["deployment", "web"]), "status").unwrap(), ["web"]);
        assert_eq!(
            deployment_names(&a(&["pod/web"]), "status").unwrap_err().to_string(),
            "error: rollout status is implemented for deployments only, not pods"
        );
        assert!(deployment_names(&a(&["deploy"]), "history").is_err());
        assert_eq!(node_name("node/n1").unwrap(), "n1");
        assert_eq!(node_name("n1").unwrap(), "n1");
        assert!(node_name("pod/n1").is_err());
        assert_eq!(
            deployment_error("web", "is already paused").to_string(),
            "error: deployments.apps \"web\" is already paused"
        );
    }

    #[test]
    fn defaults_match_the_parser() {
        let c = parse(&["get", "pods"]);
        assert_eq!(c.global, GlobalOpts::default());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("0").is_err() && parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn messages() {
        assert_eq!(no_resources_message(Some("default")), "No resources found in default namespace.");
        assert_eq!(no_resources_message(None), "No resources found");
        assert_eq!(
            events_field_selector("web", Some("default")),
            "involvedObject.name=web,involvedObject.namespace=default"
        );
        let e = context_error(
            Error::Server(ServerError { code: 422, reason: "Invalid".into(), message: "bad".into() }),
            "error when creating \"f.yaml\"",
        );
        assert_eq!(e.to_string(), "Error from server (Invalid): error when creating \"f.yaml\": bad");
    }
}
