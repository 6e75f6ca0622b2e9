//! kubeconfig files: load like kubectl (flag, `KUBECONFIG`, `~/.kube/config`), resolve the server and namespace, write one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The subset of a kubeconfig Skiff reads and writes (unknown fields are ignored on read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub clusters: Vec<NamedCluster>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context", default)]
    pub current_context: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub users: Vec<NamedUser>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub preferences: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: Cluster,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub server: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: Context,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    /// Credentials are not used by Skiff (no auth yet); kept as free-form data.
    #[serde(default)]
    pub user: serde_json::Map<String, serde_json::Value>,
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Kubeconfig {
    pub fn parse(text: &str, source: &str) -> Result<Self> {
        if text.trim().is_empty() {
            return Ok(Kubeconfig::default());
        }
        yaml_serde::from_str(text).map_err(|e| Error::Config(format!("cannot parse kubeconfig {source}: {e}")))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read kubeconfig {}: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// A config with one cluster, context and (credential-less) user, all named `name`.
    pub fn single(server_url: &str, name: &str) -> Self {
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster { name: name.into(), cluster: Cluster { server: server_url.into() } }],
            contexts: vec![NamedContext {
                name: name.into(),
                context: Context { cluster: name.into(), user: name.into(), namespace: String::new() },
            }],
            current_context: name.into(),
            users: vec![NamedUser { name: name.into(), user: serde_json::Map::new() }],
            preferences: serde_json::Map::new(),
        }
    }

    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).expect("kubeconfig serializes")
    }

    /// The server URL and default namespace of `context` (or the current context).
    pub fn resolve(&self, context: Option<&str>) -> Result<(String, Option<String>)> {
        let name = context.unwrap_or(&self.current_context);
        if name.is_empty() {
            return Err(Error::Config("the kubeconfig has no current-context; pass --context or --server".into()));
        }
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::Config(format!("context \"{name}\" does not exist in the kubeconfig")))?;
        let cluster = self.clusters.iter().find(|c| c.name == ctx.context.cluster).ok_or_else(|| {
            Error::Config(format!("cluster \"{}\" of context \"{name}\" does not exist", ctx.context.cluster))
        })?;
        let ns = Some(ctx.context.namespace.clone()).filter(|n| !n.is_empty());
        Ok((cluster.cluster.server.clone(), ns))
    }
}

/// Write a kubeconfig with one cluster/context/user named `cluster_name` pointing at
/// `server_url` (an `http://` URL), made current. The real kubectl accepts it:
/// `kubectl --kubeconfig PATH get pods`. Parent directories are created.
pub fn write_kubeconfig(path: &Path, server_url: &str, cluster_name: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Config(format!("cannot create directory {}: {e}", dir.display())))?;
    }
    std::fs::write(path, Kubeconfig::single(server_url, cluster_name).to_yaml())
        .map_err(|e| Error::Config(format!("cannot write kubeconfig {}: {e}", path.display())))
}

/// Which kubeconfig file kubectl would read: `--kubeconfig`, else the first entry of
/// `KUBECONFIG`, else `~/.kube/config` (only if it exists).
pub fn kubeconfig_path(explicit: Option<&Path>, env: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(first) = env.and_then(|v| std::env::split_paths(v).find(|p| !p.as_os_str().is_empty())) {
        return Some(first);
    }
    let default = Path::new(home?).join(".kube").join("config");
    default.exists().then_some(default)
}

/// Where to send requests and which namespace to use by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:6443`.
    pub server: String,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
}

/// Inputs of [`resolve_target`], normally from the global flags and the environment.
#[derive(Debug, Clone, Default)]
pub struct TargetOptions<'a> {
    pub kubeconfig: Option<&'a Path>,
    pub context: Option<&'a str>,
    pub server: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub kubeconfig_env: Option<&'a str>,
    pub home: Option<&'a str>,
}

/// Resolve the server and namespace the way kubectl does (`--server` overrides the context's cluster).
pub fn resolve_target(opts: &TargetOptions<'_>) -> Result<Target> {
    let path = kubeconfig_path(opts.kubeconfig, opts.kubeconfig_env, opts.home);
    let config = match &path {
        Some(p) if opts.kubeconfig.is_some() || p.exists() => Some(Kubeconfig::load(p)?),
        _ => None,
    };
    let (ctx_server, ctx_ns) = match &config {
        Some(c) if opts.context.is_some() || !c.current_context.is_empty() => {
            match c.resolve(opts.context) {
                Ok(r) => r,
                // --server makes a broken or empty context irrelevant, as in kubectl.
                Err(_) if opts.server.is_some() => (String::new(), None),
                Err(e) => return Err(e),
            }
        }
        _ => (String::new(), None),
    };
    let server = opts.server.map(str::to_string).unwrap_or(ctx_server);
    if server.is_empty() {
        return Err(Error::Config(
            "no server to talk to: pass --server http://HOST:PORT or --kubeconfig PATH, set KUBECONFIG, \
             or create ~/.kube/config (skiff up writes DIR/kubeconfig)"
                .into(),
        ));
    }
    let server = normalize_server(&server)?;
    let namespace = opts.namespace.map(str::to_string).or(ctx_ns).unwrap_or_else(|| "default".into());
    Ok(Target { server, namespace })
}

/// Check the URL is plain HTTP and strip trailing slashes; `host:port` gets `http://`.
pub fn normalize_server(server: &str) -> Result<String> {
    let s = server.trim().trim_end_matches('/');
    if let Some(rest) = s.strip_prefix("https://") {
        return Err(Error::Config(format!(
            "server {s}: https is not supported by the skiff client yet (the Skiff API server speaks plain HTTP); \
             use http://{rest}"
        )));
    }
    if s.starts_with("http://") {
        return Ok(s.to_string());
    }
    if s.contains("://") {
        return Err(Error::Config(format!("server {s}: unsupported URL scheme, use http://HOST:PORT")));
    }
    Ok(format!("http://{s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_STYLE: &str = r#"
apiVersion: v1
kind: Config
clusters:
- cluster:
    server: http://10.0.0.1:6443/
    insecure-skip-tls-verify: true
  name: a
- cluster:
    server: http://127.0.0.1:7000
  name: b
contexts:
- context:
    cluster: a
    user: admin
    namespace: team
  name: ctx-a
- context:
    cluster: b
    user: admin
  name: ctx-b
current-context: ctx-a
preferences: {}
users:
- name: admin
  user:
    token: abc
"#;

    #[test]
    fn write_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("kubeconfig");
        write_kubeconfig(&path, "http://127.0.0.1:6443", "skiff").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // The shape kubectl expects.
        assert!(text.contains("current-context: skiff"), "{text}");
        assert!(text.contains("server: http://127.0.0.1:6443"), "{text}");
        let loaded = Kubeconfig::load(&path).unwrap();
        assert_eq!(loaded, Kubeconfig::single("http://127.0.0.1:6443", "skiff"));
        let t = resolve_target(&TargetOptions { kubeconfig: Some(&path), ..Default::default() }).unwrap();
        assert_eq!(t, Target { server: "http://127.0.0.1:6443".into(), namespace: "default".into() });
    }

    /// The real kubectl reads the written file (skipped when kubectl is not installed).
    #[test]
    fn kubectl_accepts_the_written_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        write_kubeconfig(&path, "http://127.0.0.1:6443", "skiff").unwrap();
        let out = std::process::Command::new("kubectl")
            .args(["config", "view", "--kubeconfig"])
            .arg(&path)
            .args(["-o", "jsonpath={.current-context} {.clusters[0].cluster.server}"])
            .output();
        let Ok(out) = out else { return };
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "skiff http://127.0.0.1:6443");
    }

    #[test]
    fn current_context_gives_server_and_namespace() {
        let c = Kubeconfig::parse(KUBECTL_STYLE, "test").unwrap();
        assert_eq!(c.resolve(None).unwrap(), ("http://10.0.0.1:6443/".into(), Some("team".into())));
        assert_eq!(c.resolve(Some("ctx-b")).unwrap(), ("http://127.0.0.1:7000".into(), None));
        assert!(c.resolve(Some("nope")).unwrap_err().to_string().contains("context \"nope\" does not exist"));
        assert_eq!(c.users[0].user["token"], "abc");
    }

    #[test]
    fn flags_override_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, KUBECTL_STYLE).unwrap();
        let base = TargetOptions { kubeconfig: Some(&path), ..Default::default() };
        let t = resolve_target(&base).unwrap();
        assert_eq!(t, Target { server: "http://10.0.0.1:6443".into(), namespace: "team".into() });
        let t = resolve_target(&TargetOptions { server: Some("127.0.0.1:9"), namespace: Some("x"), ..base.clone() })
            .unwrap();
        assert_eq!(t, Target { server: "http://127.0.0.1:9".into(), namespace: "x".into() });
        let t = resolve_target(&TargetOptions { context: Some("ctx-b"), ..base }).unwrap();
        assert_eq!(t, Target { server: "http://127.0.0.1:7000".into(), namespace: "default".into() });
    }

    #[test]
    fn kubeconfig_env_first_file_then_home() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        assert_eq!(kubeconfig_path(None, None, Some(home)), None);
        std::fs::create_dir_all(dir.path().join(".kube")).unwrap();
        std::fs::write(dir.path().join(".kube/config"), "").unwrap();
        assert_eq!(kubeconfig_path(None, None, Some(home)), Some(dir.path().join(".kube/config")));
        assert_eq!(kubeconfig_path(None, Some("/a/one:/b/two"), Some(home)), Some(PathBuf::from("/a/one")));
        assert_eq!(kubeconfig_path(Some(Path::new("/x")), Some("/a/one"), Some(home)), Some(PathBuf::from("/x")));
        // An empty ~/.kube/config and no --server: a clear message.
        let e = resolve_target(&TargetOptions { home: Some(home), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("no server to talk to"), "{e}");
        let t = resolve_target(&TargetOptions { home: Some(home), server: Some("http://h:1"), ..Default::default() })
            .unwrap();
        assert_eq!(t.server, "http://h:1");
    }

    #[test]
    fn https_is_rejected_clearly() {
        let e = normalize_server("https://127.0.0.1:6443").unwrap_err().to_string();
        assert!(e.contains("https is not supported") && e.contains("http://127.0.0.1:6443"), "{e}");
        assert!(normalize_server("ftp://x").is_err());
        assert_eq!(normalize_server("http://h:1///").unwrap(), "http://h:1");
    }
}
