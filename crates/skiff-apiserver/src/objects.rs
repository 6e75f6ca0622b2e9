//! Kubernetes object semantics over the key-value store: create, get, list, update, patch,
//! delete (graceful, with owner propagation) and watch, with resourceVersion = mod revision.
//!
//! Objects are stored as JSON under `/registry/<plural>/<namespace>/<name>` without their
//! `resourceVersion`, which is filled in from the key's mod revision on every read. Every
//! write is a compare-and-set on that revision, so two writers can never both win.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Map, Value};
use skiff_api::patch::{self, PatchType};
use skiff_api::registry::{self, ResourceInfo, NAMESPACES};
use skiff_api::status as st;
use skiff_api::{keys, FieldSelector, LabelSelector, ValidationOptions};
use skiff_store::{Compare, EventKind, KeyValue, Op, OpResult, StoreError, StoreNode, Txn, Watcher};

use crate::error::{ApiError, ApiResult};
use crate::meta::{self, labels_of, meta_mut, meta_str};

/// Namespaces that exist from the start.
pub const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-node-lease", "kube-public"];

/// How many times a write retries after losing a compare-and-set race it did not ask for.
const MAX_CAS_RETRIES: usize = 16;
/// Most events handed to a watch per wake-up.
const WATCH_BATCH: usize = 256;

/// Which part of an object a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
    Scale,
}

/// `fieldValidation`: what to do with unknown fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// The object was built by Skiff's own control plane (a controller, the agent gateway's
    /// status writes) from objects already admitted, never taken from a request body: it is
    /// well-typed by construction, so the typed decode (which finds only type errors and
    /// unknown fields) is skipped in release builds. Debug builds, the tests', still run it,
    /// so a component that builds a malformed object fails its tests. Defaulting and
    /// validation run either way.
    pub internal: bool,
    /// The `metadata.managedFields` to store (server-side apply's ownership records). `None`
    /// keeps the current object's (a create: none); a client's own are never taken.
    pub managed_fields: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    Orphan,
    #[default]
    Background,
    Foreground,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// 0 = no limit.
    pub limit: usize,
    pub continue_token: Option<String>,
    /// Serve from this replica's state without a read-index (`resourceVersion=0`).
    pub serializable: bool,
}

#[derive(Debug, Clone)]
pub struct ObjectList {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
}

/// A list whose items are one JSON array ([`ObjectStore::list_json`]).
#[derive(Debug, Clone)]
pub struct ObjectListJson {
    /// The items, serialized: `[{…},{…}]`.
    pub items: Vec<u8>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
}

/// A write's result and the warnings to send back (`Warning` headers).
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    /// Whether the write changed anything in the store.
    pub changed: bool,
}

/// What [`ObjectStore::update_status_with`] did: the object's revision after it (the one read
/// when nothing changed), and no copy of the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusWritten {
    pub revision: u64,
    pub warnings: Vec<String>,
    /// Whether the write changed anything in the store.
    pub changed: bool,
}

/// Whether a write with `opts` has its unknown fields looked for: always but for the control
/// plane's own writes (`internal`) in release builds.
fn checks_fields(opts: &WriteOptions) -> bool {
    !opts.internal || cfg!(debug_assertions)
}

/// What a DELETE did.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// The object is gone; this was its last state.
    Gone(Value),
    /// Deletion started (grace period or finalizers); this is the object now.
    Pending(Value),
}

/// One watch event in Kubernetes terms. The object is shared: every watch of this replica
/// that delivers the same stored version gets the same decoded value.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: &'static str,
    pub object: Arc<Value>,
}

/// An event of [`ObjectWatch::next_served`]: the stored version it delivers, decoded only if a
/// selector needed it.
pub struct ServedEvent {
    pub kind: &'static str,
    pub object: Option<Arc<Value>>,
    /// The stored version and the resourceVersion it is served with.
    pub stored: (Arc<KeyValue>, u64),
}

impl ServedEvent {
    /// Appends the object as the API serves it: written from the stored bytes
    /// ([`crate::served::write_served`]), else serialized from its decoded form.
    pub fn write_object(&self, res: &ResourceInfo, out: &mut Vec<u8>) -> ApiResult<()> {
        write_stored(out, res, &self.stored.0, self.stored.1, self.object.as_deref())
    }
}

/// Appends the stored version `kv` as the API serves it, with resourceVersion `rev`: written
/// from its bytes ([`crate::served::write_served`]), else serialized from `decoded` (decoded
/// now if not given).
fn write_stored(
    out: &mut Vec<u8>,
    res: &ResourceInfo,
    kv: &KeyValue,
    rev: u64,
    decoded: Option<&Value>,
) -> ApiResult<()> {
    if crate::served::write_served(out, &kv.value, rev) {
        return Ok(());
    }
    let now;
    let obj = match decoded {
        Some(o) => o,
        None => {
            now = decode(res, kv, rev)?;
            &now
        }
    };
    serde_json::to_writer(out, obj).expect("JSON values serialize");
    Ok(())
}

/// How many decoded stored versions the watches of one replica share: enough to cover how far
/// watches lag one another at thousands of changes per second, small enough that the old
/// versions it alone keeps alive stay in the tens of MB.
const DECODED_CAPACITY: usize = 2048;

/// The last [`DECODED_CAPACITY`] stored versions a watch decoded, so that the other watches
/// delivering the same version (the pod hub, the informers, `kubectl` and client watches) do
/// not parse its JSON again. A version is identified by the revision it is delivered at and
/// the identity of its stored bytes, which every watch receives as the same `Arc` from the
/// store; the entry keeps that `Arc`, so the identity cannot be reused while it is cached.
/// The slot of a version is taken before it is decoded: watches that reach it at the same time
/// (woken by the same commit on different threads) wait for the one decode instead of each
/// doing their own.
#[derive(Default)]
struct DecodedVersions {
    map: std::collections::HashMap<(u64, usize), (Arc<KeyValue>, Arc<DecodeSlot>)>,
    order: std::collections::VecDeque<(u64, usize)>,
}

/// One version's decode: `None` when its bytes do not decode (each caller then reports why).
type DecodeSlot = std::sync::OnceLock<Option<Arc<Value>>>;

impl DecodedVersions {
    /// The slot of this version, taken now if no watch has.
    fn slot(&mut self, kv: &Arc<KeyValue>, rev: u64) -> Arc<DecodeSlot> {
        let id = (rev, Arc::as_ptr(kv) as usize);
        let slot = match self.map.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => return e.get().1.clone(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert((kv.clone(), Arc::default())).1.clone(),
        };
        self.order.push_back(id);
        while self.order.len() > DECODED_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        slot
    }
}

/// [`decode`] through the replica's shared cache of decoded versions.
fn decode_shared(
    cache: &std::sync::Mutex<DecodedVersions>,
    res: &ResourceInfo,
    kv: &Arc<KeyValue>,
    rev: u64,
) -> ApiResult<Arc<Value>> {
    decode_once(cache, kv, rev, || decode(res, kv, rev))
}

/// The cache's value of a version, made with `decode` by whichever watch takes its slot first.
fn decode_once(
    cache: &std::sync::Mutex<DecodedVersions>,
    kv: &Arc<KeyValue>,
    rev: u64,
    decode: impl Fn() -> ApiResult<Value>,
) -> ApiResult<Arc<Value>> {
    let slot = cache.lock().unwrap_or_else(|e| e.into_inner()).slot(kv, rev);
    match slot.get_or_init(|| decode().ok().map(Arc::new)) {
        Some(v) => Ok(v.clone()),
        None => decode().map(Arc::new),
    }
}

/// The object layer of one replica.
pub struct ObjectStore {
    node: Arc<StoreNode>,
    validation: ValidationOptions,
    /// Fencing token `(key, mod revision)`: when set, every write also requires the key to be
    /// at that revision, so a deposed leader's controllers cannot make a decision stick once
    /// the next leader has rewritten the key.
    fence: Option<(String, u64)>,
    /// Namespaces this replica is emptying now (one background task per namespace).
    finalizing: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Versions decoded by watches, shared between them.
    decoded: Arc<std::sync::Mutex<DecodedVersions>>,
}

fn decode(res: &ResourceInfo, kv: &KeyValue, rev: u64) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored {} {} is not JSON: {e}", res.plural, kv.key)))?;
    if !v.is_object() {
        return Err(ApiError::internal(format!("stored {} {} is not an object", res.plural, kv.key)));
    }
    meta_mut(&mut v).insert("resourceVersion".into(), Value::String(rev.to_string()));
    Ok(v)
}

/// Whether a stored Namespace has `metadata.deletionTimestamp`. Every namespaced create asks
/// this; a Namespace whose bytes do not even contain the field name is not read further, and
/// one that does is parsed for that field alone (no `Value` tree is built).
fn namespace_terminating(kv: &KeyValue) -> ApiResult<bool> {
    #[derive(serde::Deserialize)]
    struct Ns {
        #[serde(default)]
        metadata: NsMeta,
    }
    #[derive(serde::Deserialize, Default)]
    struct NsMeta {
        #[serde(default, rename = "deletionTimestamp")]
        deletion_timestamp: Option<serde::de::IgnoredAny>,
    }
    const FIELD: &[u8] = b"\"deletionTimestamp\"";
    if !kv.value.windows(FIELD.len()).any(|w| w == FIELD) {
        return Ok(false);
    }
    let ns: Ns = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored namespaces {} is not a Namespace: {e}", kv.key)))?;
    Ok(ns.metadata.deletion_timestamp.is_some())
}

fn encode(obj: &Value) -> Vec<u8> {
    serde_json::to_vec(&stored_view(obj, Vec::new(), &[])).expect("JSON values serialize")
}

/// [`encode`] of `obj` with `status` as its status.
fn encode_with_status(obj: &Value, status: &Value) -> Vec<u8> {
    serde_json::to_vec(&stored_view(obj, vec![("status", Part::Json(status))], &[])).expect("JSON values serialize")
}

/// An object as the store keeps it: without `metadata.resourceVersion` (the key's revision,
/// set on every read), with the top-level entries `set` (in key order, none of them
/// `metadata`) in place of its own and its entries `drop` left out. A view of the object,
/// which is never copied: a decoded version shared with the watches, or a caller's object,
/// stays as it is.
fn stored_view<'a>(obj: &'a Value, mut set: Vec<(&'a str, Part<'a>)>, drop: &'static [&'static str]) -> Part<'a> {
    let Value::Object(map) = obj else { return Part::Json(obj) };
    match map.get("metadata") {
        Some(Value::Object(m)) => set
            .insert(0, ("metadata", Part::Map(Overlay { base: Some(m), set: Vec::new(), drop: &["resourceVersion"] }))),
        Some(v) => set.insert(0, ("metadata", Part::Json(v))),
        None => {}
    }
    Part::Map(Overlay { base: Some(map), set, drop })
}

/// A part of an object written through a view ([`stored_view`]).
enum Part<'a> {
    Str(&'a str),
    Json(&'a Value),
    Map(Overlay<'a>),
    /// `list` (if an array) with the first entry of `cond`'s type replaced by `cond`, or
    /// `cond` appended: as [`set_pod_condition`] sets it.
    Conditions {
        list: Option<&'a Vec<Value>>,
        cond: &'a Value,
    },
}

/// An object's map `base` (or none) with the entries `set` (which must be in key order) put
/// in its key order, replacing entries of the same key, and the entries `drop` left out.
struct Overlay<'a> {
    base: Option<&'a Map<String, Value>>,
    set: Vec<(&'a str, Part<'a>)>,
    drop: &'static [&'static str],
}

impl serde::Serialize for Part<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self {
            Part::Str(v) => s.serialize_str(v),
            Part::Json(v) => v.serialize(s),
            Part::Map(o) => o.serialize(s),
            Part::Conditions { list, cond } => {
                let list = list.map(Vec::as_slice).unwrap_or_default();
                let at = list.iter().position(|c| c["type"] == cond["type"]);
                let mut seq = s.serialize_seq(None)?;
                for (i, c) in list.iter().enumerate() {
                    seq.serialize_element(if Some(i) == at { *cond } else { c })?;
                }
                if at.is_none() {
                    seq.serialize_element(cond)?;
                }
                seq.end()
            }
        }
    }
}

impl serde::Serialize for Overlay<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        let mut set = self.set.iter().peekable();
        for (k, v) in self.base.into_iter().flatten() {
            while let Some((sk, sv)) = set.next_if(|(sk, _)| *sk < k.as_str()) {
                m.serialize_entry(sk, sv)?;
            }
            if let Some((sk, sv)) = set.next_if(|(sk, _)| *sk == k.as_str()) {
                m.serialize_entry(sk, sv)?;
            } else if !self.drop.contains(&k.as_str()) {
                m.serialize_entry(k, v)?;
            }
        }
        for (sk, sv) in set {
            m.serialize_entry(sk, sv)?;
        }
        m.end()
    }
}

/// [`encode`] of `pod` bound to `node` with `cond` set among its status conditions: what
/// setting `spec.nodeName`, [`set_pod_condition`] and [`encode`] give, written through a
/// view (the pod, shared with the caches, is not copied).
fn encode_bound(pod: &Value, node: &str, cond: &Value) -> Vec<u8> {
    fn object(v: Option<&Value>) -> Option<&Map<String, Value>> {
        v.and_then(Value::as_object)
    }
    let status = object(pod.get("status"));
    let conditions = status.and_then(|st| st.get("conditions")).and_then(Value::as_array);
    let set = vec![
        (
            "spec",
            Part::Map(Overlay { base: object(pod.get("spec")), set: vec![("nodeName", Part::Str(node))], drop: &[] }),
        ),
        (
            "status",
            Part::Map(Overlay {
                base: status,
                set: vec![("conditions", Part::Conditions { list: conditions, cond })],
                drop: &[],
            }),
        ),
    ];
    serde_json::to_vec(&stored_view(pod, set, &[])).expect("JSON values serialize")
}

/// `obj` as stored but without its `status`: what an agent gets of a pod (the status is the
/// agent's to write, and a change of it alone changes nothing here).
pub fn json_without_status(obj: &Value) -> String {
    serde_json::to_string(&stored_view(obj, Vec::new(), &["status"])).expect("JSON values serialize")
}

/// `a == b` but for `metadata.resourceVersion` (nothing is copied).
fn same_but_rv(a: &Value, b: &Value) -> bool {
    same_but_rv_and(a, b, None)
}

/// `a == b` but for `metadata.resourceVersion` and the top-level field `skip`, if any (nothing
/// is copied): with `Some("status")`, whether [`json_without_status`] of both is the same.
pub fn same_but_rv_and(a: &Value, b: &Value, skip: Option<&str>) -> bool {
    /// Whether `a` and `b` are equal but for the entries `skip` names.
    fn same_without(a: &Map<String, Value>, b: &Map<String, Value>, skip: &[&str]) -> bool {
        let others = |m: &'_ Map<String, Value>| m.iter().filter(|(k, _)| !skip.contains(&k.as_str())).count();
        others(a) == others(b)
            && a.iter().filter(|(k, _)| !skip.contains(&k.as_str())).all(|(k, v)| b.get(k) == Some(v))
    }
    // `metadata` is compared below, without its resourceVersion.
    let top = ["metadata", skip.unwrap_or("metadata")];
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            same_without(a, b, &top)
                && match (a.get("metadata"), b.get("metadata")) {
                    (Some(Value::Object(ma)), Some(Value::Object(mb))) => same_without(ma, mb, &["resourceVersion"]),
                    (ma, mb) => ma == mb,
                }
        }
        _ => a == b,
    }
}

fn set_rv(obj: &mut Value, rev: u64) {
    meta_mut(obj).insert("resourceVersion".into(), Value::String(rev.to_string()));
}

fn ns_for<'a>(res: &ResourceInfo, ns: Option<&'a str>) -> Option<&'a str> {
    if res.namespaced {
        ns
    } else {
        None
    }
}

/// `true` when the object matches both selectors.
pub fn selected(obj: &Value, labels: &LabelSelector, fields: &FieldSelector) -> bool {
    (labels.is_empty() || labels.matches(&labels_of(obj))) && (fields.is_empty() || fields.matches(obj))
}

/// The `autoscaling/v1` Scale view of a Deployment or ReplicaSet.
pub fn scale_of(res: &ResourceInfo, obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| LabelSelector::from_json(s).ok())
        .map(|s| selector_string(&s))
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta_str(obj, "name"),
            "namespace": meta_str(obj, "namespace"),
            "uid": meta_str(obj, "uid"),
            "resourceVersion": meta_str(obj, "resourceVersion"),
            "creationTimestamp": meta_str(obj, "creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
        "_resource": res.plural,
    })
    .as_object()
    .map(|m| {
        let mut m = m.clone();
        m.remove("_resource");
        Value::Object(m)
    })
    .unwrap_or(Value::Null)
}

fn selector_string(sel: &LabelSelector) -> String {
    use skiff_api::labels::Requirement;
    sel.requirements()
        .iter()
        .map(|r| match r {
            Requirement::Equals(k, v) => format!("{k}={v}"),
            Requirement::NotEquals(k, v) => format!("{k}!={v}"),
            Requirement::In(k, vs) => format!("{k} in ({})", vs.iter().cloned().collect::<Vec<_>>().join(",")),
            Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.iter().cloned().collect::<Vec<_>>().join(",")),
            Requirement::Exists(k) => k.clone(),
            Requirement::DoesNotExist(k) => format!("!{k}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl ObjectStore {
    /// The node-port range Services allocate from (default 30000-32767).
    pub fn with_node_port_range(mut self, range: std::ops::RangeInclusive<i64>) -> Self {
        self.validation.node_port_range = range;
        self
    }

    pub fn new(node: Arc<StoreNode>) -> Self {
        ObjectStore {
            node,
            validation: ValidationOptions::default(),
            fence: None,
            finalizing: Default::default(),
            decoded: Default::default(),
        }
    }

    /// The same store with every write fenced on `key` being at `revision`.
    pub fn fenced(&self, key: impl Into<String>, revision: u64) -> ObjectStore {
        ObjectStore {
            node: self.node.clone(),
            validation: self.validation.clone(),
            fence: Some((key.into(), revision)),
            finalizing: self.finalizing.clone(),
            decoded: self.decoded.clone(),
        }
    }

    /// Runs a write transaction, adding the fence compare when fenced. A transaction that
    /// failed because the fence moved is an error (`503`), not a lost race to retry.
    async fn txn(&self, mut txn: Txn) -> ApiResult<skiff_store::Response> {
        if let Some((key, rev)) = &self.fence {
            txn.compare.push(Compare::mod_revision(key, *rev));
        }
        let r = self.node.txn(txn).await?;
        if !r.succeeded {
            self.check_fence().await?;
        }
        Ok(r)
    }

    /// After a failed compare: 503 if the fence moved (this writer no longer leads), else Ok
    /// (the failure was an ordinary lost race).
    async fn check_fence(&self) -> ApiResult<()> {
        if let Some((key, rev)) = &self.fence {
            let (kv, _) = self.read(key, false).await?;
            let now = kv.map_or(0, |kv| kv.mod_revision);
            if now != *rev {
                return Err(st::service_unavailable(format!(
                    "leadership lost: fence {key} is at revision {now}, this writer holds {rev}"
                ))
                .into());
            }
        }
        Ok(())
    }

    pub fn node(&self) -> &Arc<StoreNode> {
        &self.node
    }

    /// Creates the initial namespaces that do not exist yet (idempotent, safe on every replica).
    pub async fn ensure_initial_namespaces(&self) -> ApiResult<()> {
        for ns in INITIAL_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.create(&NAMESPACES, None, obj, &WriteOptions::default()).await {
                Ok(_) => {}
                Err(e) if e.status().reason == skiff_api::StatusReason::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads one key: the state's own entry, shared (no copy of its value), the identity the
    /// watches' decode cache keys versions on.
    async fn read(&self, key: &str, serializable: bool) -> ApiResult<(Option<Arc<KeyValue>>, u64)> {
        Ok(self.node.get_shared(key, serializable).await?)
    }

    /// A local (serializable) read, confirmed by a linearizable one when it finds nothing:
    /// this replica may not have applied yet a create that was already acknowledged, and
    /// "not found" must not be answered from such a stale copy.
    async fn read_confirming_miss(&self, key: &str) -> ApiResult<(Option<Arc<KeyValue>>, u64)> {
        match self.read(key, true).await? {
            (None, _) => self.read(key, false).await,
            hit => Ok(hit),
        }
    }

    // ---- reads ----------------------------------------------------------------------

    /// Reads one object (linearizable unless `serializable`).
    pub async fn get(&self, res: &ResourceInfo, ns: Option<&str>, name: &str, serializable: bool) -> ApiResult<Value> {
        let key = keys::object_key(res, ns_for(res, ns), name);
        match self.read(&key, serializable).await? {
            (Some(kv), _) => decode(res, &kv, kv.mod_revision),
            (None, _) => Err(st::not_found(res, name).into()),
        }
    }

    /// [`ObjectStore::get`] serialized, written from the stored bytes
    /// ([`crate::served::write_served`]): the same JSON, without a `Value` tree.
    pub async fn get_json(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        serializable: bool,
    ) -> ApiResult<Vec<u8>> {
        let key = keys::object_key(res, ns_for(res, ns), name);
        let Some(kv) = self.read(&key, serializable).await?.0 else { return Err(st::not_found(res, name).into()) };
        let mut out = Vec::with_capacity(kv.value.len() + 48);
        write_stored(&mut out, res, &kv, kv.mod_revision, None)?;
        Ok(out)
    }

    /// Lists objects of `res` (in `ns`, or everywhere when `None`) matching the selectors.
    pub async fn list(&self, res: &ResourceInfo, ns: Option<&str>, opts: &ListOptions) -> ApiResult<ObjectList> {
        let mut items = Vec::new();
        let (resource_version, continue_token) = self
            .list_each(res, ns, opts, |kv| {
                let obj = decode(res, kv, kv.mod_revision)?;
                let keep = selected(&obj, &opts.labels, &opts.fields);
                if keep {
                    items.push(obj);
                }
                Ok(keep)
            })
            .await?;
        Ok(ObjectList { items, resource_version, continue_token })
    }

    /// [`ObjectStore::list`] with its items as one JSON array, written from their stored bytes
    /// ([`crate::served::write_served`]): an object is decoded only for the selectors, if
    /// any. The same items, serialized the same way, at a fraction of the cost (no `Value`
    /// tree per object).
    pub async fn list_json(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ObjectListJson> {
        let select_all = opts.labels.is_empty() && opts.fields.is_empty();
        let mut items = vec![b'['];
        let (resource_version, continue_token) = self
            .list_each(res, ns, opts, |kv| {
                let obj = if select_all {
                    None
                } else {
                    let obj = decode(res, kv, kv.mod_revision)?;
                    if !selected(&obj, &opts.labels, &opts.fields) {
                        return Ok(false);
                    }
                    Some(obj)
                };
                if items.len() > 1 {
                    items.push(b',');
                }
                write_stored(&mut items, res, kv, kv.mod_revision, obj.as_ref())?;
                Ok(true)
            })
            .await?;
        items.push(b']');
        Ok(ObjectListJson { items, resource_version, continue_token })
    }

    /// Visits the stored objects a list reads, in key order, at one revision, page by page:
    /// `take` says whether an object is in the list (counted against `opts.limit`). Returns
    /// the list's revision and its continue token.
    async fn list_each(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
        mut take: impl FnMut(&Arc<KeyValue>) -> ApiResult<bool>,
    ) -> ApiResult<(u64, Option<String>)> {
        let prefix = keys::list_prefix(res, ns_for(res, ns));
        let mut start_after: Option<String> = None;
        // Every page of a paginated list is read at the first page's revision.
        let mut revision = 0;
        if let Some(tok) = opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
            let (key, rv) = decode_continue(tok)?;
            if !key.starts_with(&prefix) {
                return Err(ApiError::bad_request("continue token does not belong to this list"));
            }
            start_after = Some(key);
            revision = rv;
        }
        let mut taken = 0;
        let mut serializable = opts.serializable;
        let mut last_key: Option<String> = None;
        let chunk = if opts.limit == 0 { 0 } else { opts.limit.max(64) };
        loop {
            let (kvs, rev, more) =
                match self.node.range_at(&prefix, start_after.as_deref(), chunk, revision, serializable).await {
                    Err(StoreError::Compacted { .. }) => return Err(st::continue_expired().into()),
                    r => r?,
                };
            // Later chunks of one page come from the same (already read-indexed) replica.
            serializable = true;
            revision = rev;
            for kv in &kvs {
                if take(kv)? {
                    taken += 1;
                    if opts.limit > 0 && taken == opts.limit {
                        last_key = Some(kv.key.clone());
                        break;
                    }
                }
            }
            if last_key.is_some() {
                // Only hand out a continue token when something may follow.
                let more_after = more || kvs.last().map(|l| Some(&l.key) != last_key.as_ref()).unwrap_or(false);
                if !more_after {
                    last_key = None;
                }
                break;
            }
            if !more {
                break;
            }
            start_after = kvs.last().map(|kv| kv.key.clone());
        }
        Ok((revision, last_key.map(|k| encode_continue(&k, revision))))
    }

    // ---- writes ---------------------------------------------------------------------

    /// Checks `apiVersion`/`kind`, fills them when absent, and reconciles the namespace and
    /// name in the body with the URL.
    fn check_body(
        &self,
        res: &ResourceInfo,
        sub: Subresource,
        ns: Option<&str>,
        name: Option<&str>,
        obj: &mut Value,
    ) -> ApiResult<()> {
        let Some(root) = obj.as_object_mut() else {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        };
        let (want_av, want_kind) = match sub {
            Subresource::Scale => ("autoscaling/v1".to_string(), "Scale"),
            _ => (res.api_version(), res.kind),
        };
        match root.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => {
                root.insert("apiVersion".into(), Value::String(want_av.clone()));
            }
            Some(av) if av != want_av => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )))
            }
            _ => {}
        }
        match root.get("kind").and_then(Value::as_str) {
            None | Some("") => {
                root.insert("kind".into(), Value::String(want_kind.to_string()));
            }
            Some(k) if k != want_kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({want_kind})"
                )))
            }
            _ => {}
        }
        let m = meta_mut(obj);
        if res.namespaced {
            let url_ns = ns.unwrap_or(skiff_api::defaults::DEFAULT_NAMESPACE);
            match m.get("namespace").and_then(Value::as_str) {
                None | Some("") => {
                    m.insert("namespace".into(), Value::String(url_ns.to_string()));
                }
                Some(n) if n != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {}
            }
        } else {
            m.remove("namespace");
        }
        if let Some(url_name) = name {
            match m.get("name").and_then(Value::as_str) {
                None | Some("") => {
                    m.insert("name".into(), Value::String(url_name.to_string()));
                }
                Some(n) if n != url_name => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({url_name})"
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Type check (except for [`WriteOptions::internal`] writes in release builds), unknown
    /// fields (per `fieldValidation`), defaulting and validation.
    fn admit(&self, res: &ResourceInfo, obj: &mut Value, opts: &WriteOptions) -> ApiResult<Vec<String>> {
        let warnings = self.check_fields(res, obj, opts)?;
        skiff_api::default_object(res, obj);
        // The size is checked on the bytes written ([`ObjectStore::encode_checked`]).
        skiff_api::validation::validate_fields(res, obj, &self.validation)
            .map_err(|e| ApiError::from(e.to_status()))?;
        Ok(warnings)
    }

    /// The type check and unknown fields of [`ObjectStore::admit`]: refused under `Strict`
    /// validation, warnings under `Warn`.
    fn check_fields(&self, res: &ResourceInfo, obj: &Value, opts: &WriteOptions) -> ApiResult<Vec<String>> {
        let unknown = if !checks_fields(opts) {
            Vec::new()
        } else {
            skiff_api::strict::unknown_fields(res, obj).map_err(ApiError::bad_request)?
        };
        let mut warnings = Vec::new();
        if !unknown.is_empty() {
            let msgs: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
            match opts.field_validation {
                FieldValidation::Strict => {
                    return Err(ApiError::bad_request(format!(
                        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                        res.kind,
                        res.version,
                        res.kind,
                        msgs.join(", ")
                    )))
                }
                FieldValidation::Warn => warnings = msgs,
                FieldValidation::Ignore => {}
            }
        }
        Ok(warnings)
    }

    /// The stored form of an admitted object, refused (413) when larger than the limit.
    fn encode_checked(&self, obj: &Value) -> ApiResult<Vec<u8>> {
        self.size_checked(encode(obj))
    }

    /// `bytes` if an encoded object that big may be stored.
    fn size_checked(&self, bytes: Vec<u8>) -> ApiResult<Vec<u8>> {
        skiff_api::validation::check_size(bytes.len(), &self.validation).map_err(|e| ApiError::from(e.to_status()))?;
        Ok(bytes)
    }

    async fn check_namespace(&self, res: &ResourceInfo, obj: &Value) -> ApiResult<()> {
        self.check_namespace_of(res, meta_str(obj, "namespace"), meta::name_of(obj)).await
    }

    /// That `ns` (the default namespace when `None`) exists and is not being terminated, for a
    /// new object `name` of `res`.
    async fn check_namespace_of(&self, res: &ResourceInfo, ns: Option<&str>, name: &str) -> ApiResult<()> {
        if !res.namespaced {
            return Ok(());
        }
        let ns = ns.unwrap_or(skiff_api::defaults::DEFAULT_NAMESPACE);
        let key = keys::object_key(&NAMESPACES, None, ns);
        // (kube-apiserver's lifecycle admission, too, looks a namespace its cache lacks up live.)
        match self.read_confirming_miss(&key).await? {
            (None, _) => Err(st::not_found(&NAMESPACES, ns).into()),
            (Some(kv), _) => {
                if namespace_terminating(&kv)? {
                    Err(st::forbidden(format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        res.qualified_plural(),
                        name
                    ))
                    .into())
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Creates `name` in `ns` from `json`, an object this server's own components built and
    /// encoded (the event sink's Events, with `uid` and `creationTimestamp` in place): only its
    /// name, namespace and size are checked, with no defaulting or admission, and no decoding
    /// (debug builds decode and validate it in full, so tests catch a builder gone wrong). The
    /// namespace must exist and the name be free (AlreadyExists). Returns the revision written.
    pub async fn create_built(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        json: Vec<u8>,
    ) -> ApiResult<u64> {
        let mut written = self.create_many_built(res, vec![(ns.map(str::to_string), name.to_string(), json)]).await?;
        written.pop().expect("one result per object")
    }

    /// Creates many objects this server built, each checked as [`ObjectStore::create_built`]
    /// checks one, written together as one batch of transactions (one Raft entry): one result
    /// per object, in order (the revision written, or why that object was refused; the others
    /// are written all the same). Fails as a whole only when the store does, or when a fenced
    /// writer finds it has lost its fence. `objects` are `(namespace, name, JSON)`, at most
    /// [`skiff_store::MAX_BATCH_TXNS`] and [`skiff_store::MAX_BATCH_BYTES`] together.
    pub async fn create_many_built(
        &self,
        res: &ResourceInfo,
        objects: Vec<(Option<String>, String, Vec<u8>)>,
    ) -> ApiResult<Vec<ApiResult<u64>>> {
        let mut out: Vec<Option<ApiResult<u64>>> = Vec::with_capacity(objects.len());
        let mut txns = Vec::with_capacity(objects.len());
        let mut pending: Vec<(usize, String)> = Vec::with_capacity(objects.len());
        // Namespaces found usable (a refusal names the object, so it is not shared).
        let mut usable: Vec<Option<String>> = Vec::new();
        for (ns, name, json) in objects {
            let mut checked = self.check_built(res, ns.as_deref(), &name, &json);
            if checked.is_ok() && !usable.contains(&ns) {
                checked = self.check_namespace_of(res, ns.as_deref(), &name).await;
                if checked.is_ok() {
                    usable.push(ns.clone());
                }
            }
            if let Err(e) = checked {
                out.push(Some(Err(e)));
                continue;
            }
            let key = keys::object_key(res, ns_for(res, ns.as_deref()), &name);
            let mut compare = vec![Compare::missing(&key)];
            if let Some((fkey, frev)) = &self.fence {
                compare.push(Compare::mod_revision(fkey, *frev));
            }
            txns.push(Txn { compare, success: vec![Op::put(&key, json)], failure: vec![] });
            pending.push((out.len(), name));
            out.push(None);
        }
        if !txns.is_empty() {
            let resps = self.node.batch(txns).await?;
            let mut fence_checked = false;
            for ((i, name), r) in pending.into_iter().zip(resps) {
                if r.succeeded {
                    out[i] = Some(Ok(r.revision));
                    continue;
                }
                if !fence_checked {
                    fence_checked = true;
                    self.check_fence().await?;
                }
                out[i] = Some(Err(st::already_exists(res, &name).into()));
            }
        }
        Ok(out.into_iter().map(|r| r.expect("every object answered")).collect())
    }

    /// What [`ObjectStore::create_built`] checks of a built object before its namespace.
    fn check_built(&self, res: &ResourceInfo, ns: Option<&str>, name: &str, json: &[u8]) -> ApiResult<()> {
        let invalid = |e: skiff_api::ValidationError| ApiError::from(e.to_status());
        skiff_api::validation::validate_name(res, name, ns).map_err(invalid)?;
        skiff_api::validation::check_size(json.len(), &self.validation).map_err(invalid)?;
        if cfg!(debug_assertions) {
            let obj: Value = serde_json::from_slice(json)
                .map_err(|e| ApiError::internal(format!("a built {} is not JSON: {e}", res.kind)))?;
            let unknown = skiff_api::strict::unknown_fields(res, &obj).map_err(ApiError::internal)?;
            if meta::name_of(&obj) != name || !unknown.is_empty() {
                return Err(ApiError::internal(format!(
                    "a built {} named {name} is named {} with unknown fields {unknown:?}",
                    res.kind,
                    meta::name_of(&obj)
                )));
            }
            skiff_api::validation::validate_fields(res, &obj, &self.validation).map_err(invalid)?;
        }
        Ok(())
    }

    /// Creates an object (POST). Fails with AlreadyExists when the name is taken.
    pub async fn create(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        self.check_body(res, Subresource::Main, ns, None, &mut obj)?;
        {
            let m = meta_mut(&mut obj);
            let has_name = m.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
            if !has_name {
                if let Some(g) = m.get("generateName").and_then(Value::as_str).filter(|g| !g.is_empty()) {
                    let n = format!("{g}{}", meta::name_suffix());
                    m.insert("name".into(), Value::String(n));
                }
            }
            for f in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"]
            {
                m.remove(f);
            }
            if let Some(mf) = &opts.managed_fields {
                m.insert("managedFields".into(), mf.clone());
            }
            m.insert("uid".into(), Value::String(meta::new_uid()));
            m.insert("creationTimestamp".into(), Value::String(meta::now_rfc3339()));
        }
        if meta_str(&obj, "name").is_none() {
            return Err(ApiError::from(
                skiff_api::ValidationErrors {
                    kind: res.kind.to_string(),
                    group: res.group.to_string(),
                    name: String::new(),
                    errors: vec![skiff_api::FieldError::required("metadata.name", "name or generateName is required")],
                }
                .to_status(),
            ));
        }
        let warnings = self.admit(res, &mut obj, opts)?;
        if obj.get("spec").is_some() && res.kind != "Pod" {
            meta_mut(&mut obj).insert("generation".into(), json!(1));
        }
        init_status(res, &mut obj);
        self.check_namespace(res, &obj).await?;
        let name = meta::name_of(&obj).to_string();
        let key = keys::object_key(res, ns_for(res, meta_str(&obj, "namespace")), &name);
        if opts.dry_run {
            self.encode_checked(&obj)?;
            return Ok(Written { object: obj, warnings, changed: false });
        }
        for _ in 0..MAX_CAS_RETRIES {
            let mut txn = Txn { compare: vec![Compare::missing(&key)], success: vec![], failure: vec![] };
            // Only a Service changes per attempt (its node ports); anything else is written
            // as it is, without a copy.
            let mut with_ports = None;
            if res.kind == "Service" {
                let mut attempt = obj.clone();
                self.reserve_node_ports(&mut attempt, None, &mut txn).await?;
                with_ports = Some(attempt);
            }
            txn.success.insert(0, Op::put(&key, self.encode_checked(with_ports.as_ref().unwrap_or(&obj))?));
            let resp = self.txn(txn).await?;
            if resp.succeeded {
                let mut written = with_ports.unwrap_or(obj);
                set_rv(&mut written, resp.revision);
                return Ok(Written { object: written, warnings, changed: true });
            }
            if self.read(&key, false).await?.0.is_some() {
                return Err(st::already_exists(res, &name).into());
            }
            // Lost a race for a node port: pick again.
        }
        Err(st::conflict_modified(res, &name).into())
    }

    /// Replaces an object (PUT), or its status or scale.
    pub async fn update(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        mut body: Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        self.check_body(res, sub, ns, Some(name), &mut body)?;
        let precondition = meta_str(&body, "resourceVersion").map(str::to_string);
        let key = keys::object_key(res, ns_for(res, ns), name);
        for _ in 0..MAX_CAS_RETRIES {
            let (cur, _) = self.read_confirming_miss(&key).await?;
            let Some(cur) = cur else {
                if sub == Subresource::Main && matches!(res.kind, "Lease" | "Endpoints" | "Event") {
                    // Kubernetes allows create-on-update for these.
                    return self.create(res, ns, body, opts).await;
                }
                return Err(st::not_found(res, name).into());
            };
            if self.stale_against(res, name, &key, &cur, precondition.as_deref()).await? {
                continue;
            }
            match self.write_over(res, &key, &cur, body.clone(), sub, opts).await? {
                Some(w) => return Ok(w),
                None if precondition.is_some() => return Err(st::conflict_modified(res, name).into()),
                None => continue,
            }
        }
        Err(st::conflict_modified(res, name).into())
    }

    /// Checks a write's `resourceVersion` precondition against `cur`, the local copy: true when
    /// that copy is behind the version asked for (read again and retry); 409 when the object
    /// really is at another version (confirmed with a linearizable read).
    async fn stale_against(
        &self,
        res: &ResourceInfo,
        name: &str,
        key: &str,
        cur: &KeyValue,
        precondition: Option<&str>,
    ) -> ApiResult<bool> {
        let Some(rv) = precondition else { return Ok(false) };
        if rv == cur.mod_revision.to_string() {
            return Ok(false);
        }
        let (fresh, _) = self.read(key, false).await?;
        if fresh.as_ref().map(|f| f.mod_revision.to_string()).as_deref() != Some(rv) {
            return Err(st::conflict_modified(res, name).into());
        }
        Ok(true)
    }

    /// Sets an object's status (the status subresource) to what `f` makes of the current
    /// object, read once per attempt and decoded through the watches' shared cache: the write
    /// path of the statuses agents report, where a read-modify-[`ObjectStore::update`] would
    /// decode it twice and copy it. `f` returns `None` to leave the object alone (e.g. it is no
    /// longer the one meant) and is called again after a lost race. The new status is checked
    /// for unknown fields (per `fieldValidation`); the rest of the object is as stored, so it
    /// is neither defaulted nor validated again. `Ok(None)` when the object does not exist or
    /// `f` declined.
    pub async fn update_status_with(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &WriteOptions,
        mut f: impl FnMut(&Value) -> Option<Value>,
    ) -> ApiResult<Option<StatusWritten>> {
        if !res.has_subresource("status") || res.kind == "Service" {
            return Err(ApiError::internal(format!("{} has no plain status subresource", res.plural)));
        }
        let key = keys::object_key(res, ns_for(res, ns), name);
        for _ in 0..MAX_CAS_RETRIES {
            let (cur, _) = self.read_confirming_miss(&key).await?;
            let Some(cur) = cur else { return Ok(None) };
            // The version the watches delivered (the pod hub sent it to the node whose agent
            // now reports on it) is decoded already: not parsed again, nor copied (the new
            // version is serialized from it with the new status in place).
            let obj = decode_shared(&self.decoded, res, &cur, cur.mod_revision)?;
            let Some(status) = f(&obj) else { return Ok(None) };
            if !status.is_object() {
                return Err(ApiError::bad_request(format!("the status of {} {name} must be an object", res.kind)));
            }
            if obj.get("status") == Some(&status) {
                return Ok(Some(StatusWritten { revision: cur.mod_revision, warnings: Vec::new(), changed: false }));
            }
            // Only the status changed: the rest was defaulted and validated when it was written
            // (Skiff validates no status field), and is not again, as Kubernetes' status
            // updates do not validate the spec. Unknown fields are still refused or warned of
            // (in the whole object, as for any write; a copy is made for that only).
            let warnings = if checks_fields(opts) {
                let mut full = Value::clone(&obj);
                full.as_object_mut().expect("decoded objects are objects").insert("status".into(), status.clone());
                self.check_fields(res, &full, opts)?
            } else {
                Vec::new()
            };
            let bytes = self.size_checked(encode_with_status(&obj, &status))?;
            if opts.dry_run {
                return Ok(Some(StatusWritten { revision: cur.mod_revision, warnings, changed: false }));
            }
            let r = self
                .txn(Txn {
                    compare: vec![Compare::mod_revision(&key, cur.mod_revision)],
                    success: vec![Op::put(&key, bytes)],
                    failure: vec![],
                })
                .await?;
            if r.succeeded {
                return Ok(Some(StatusWritten { revision: r.revision, warnings, changed: true }));
            }
        }
        Err(st::conflict_modified(res, name).into())
    }

    /// Applies a patch (read, patch, compare-and-set, retrying on races).
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        ptype: PatchType,
        patch_doc: &Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let key = keys::object_key(res, ns_for(res, ns), name);
        let mut linearizable_retry = false;
        for _ in 0..MAX_CAS_RETRIES {
            let (cur, _) = self.read(&key, !linearizable_retry).await?;
            let Some(cur) = cur else { return Err(st::not_found(res, name).into()) };
            let cur_obj = decode(res, &cur, cur.mod_revision)?;
            let view = if sub == Subresource::Scale { scale_of(res, &cur_obj) } else { cur_obj };
            let mut patched = patch::apply(ptype, &view, patch_doc).map_err(patch_error)?;
            if !patched.is_object() {
                return Err(ApiError::bad_request("the patch produced a non-object"));
            }
            let rv = meta_str(&patched, "resourceVersion").map(str::to_string);
            if let Some(rv) = rv {
                if rv != cur.mod_revision.to_string() {
                    if !linearizable_retry {
                        linearizable_retry = true;
                        continue;
                    }
                    return Err(st::conflict_modified(res, name).into());
                }
            }
            self.check_body(res, sub, ns, Some(name), &mut patched)?;
            match self.write_over(res, &key, &cur, patched, sub, opts).await? {
                Some(w) => return Ok(w),
                None => continue,
            }
        }
        Err(st::conflict_modified(res, name).into())
    }

    /// Server-side apply (PATCH with `application/apply-patch+yaml`): creates the object from
    /// `applied` when there is none, else merges `applied` into it (lists by their merge keys,
    /// as a strategic merge patch does) after removing the fields `manager` applied before and
    /// no longer does (unless another manager applied them too). A field another manager
    /// applied, set here to a different value, is a 409 `Apply failed with 1 conflict: ...`
    /// unless `force`, which takes it over. Ownership is kept in `metadata.managedFields`
    /// ([`skiff_api::patch::apply`]). An apply that changes nothing writes nothing. Returns
    /// the result and whether the object was created.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        mut applied: Value,
        manager: &str,
        force: bool,
        opts: &WriteOptions,
    ) -> ApiResult<(Written, bool)> {
        use skiff_api::patch::apply as ssa;
        self.check_body(res, Subresource::Main, ns, Some(name), &mut applied)?;
        if let Some(m) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
        let precondition = meta_str(&applied, "resourceVersion").map(str::to_string);
        let api_version = res.api_version();
        let key = keys::object_key(res, ns_for(res, ns), name);
        let entries_json = |p: &ssa::Plan| Value::Array(p.entries.iter().map(ssa::ManagedEntry::to_json).collect());
        for _ in 0..MAX_CAS_RETRIES {
            let (cur, _) = self.read_confirming_miss(&key).await?;
            let Some(cur) = cur else {
                if precondition.is_some() {
                    return Err(st::not_found(res, name).into());
                }
                let p = ssa::plan(&json!({}), &applied, manager, &api_version, force, &meta::now_rfc3339());
                let o = WriteOptions { managed_fields: Some(entries_json(&p)), ..opts.clone() };
                match self.create(res, ns, applied.clone(), &o).await {
                    Ok(w) => return Ok((w, true)),
                    // Created meanwhile: applied over it on the next round.
                    Err(e) if e.code() == 409 => continue,
                    Err(e) => return Err(e),
                }
            };
            if self.stale_against(res, name, &key, &cur, precondition.as_deref()).await? {
                continue;
            }
            let live = decode(res, &cur, cur.mod_revision)?;
            let p = ssa::plan(&live, &applied, manager, &api_version, force, &meta::now_rfc3339());
            if !p.conflicts.is_empty() {
                let causes = p
                    .conflicts
                    .iter()
                    .map(|c| skiff_api::status::StatusCause {
                        reason: "FieldManagerConflict".into(),
                        message: format!("conflict with \"{}\"", c.manager),
                        field: ssa::display(&c.path),
                    })
                    .collect();
                let mut status = st::conflict(res, name, "");
                status.message = ssa::conflict_message(&p.conflicts);
                status.details.get_or_insert_with(Default::default).causes = causes;
                return Err(ApiError::from(status));
            }
            let mut base = live.clone();
            ssa::remove_all(&mut base, &p.removed);
            let mut merged = patch::apply(PatchType::Strategic, &base, &applied).map_err(patch_error)?;
            if let Some(m) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("resourceVersion".into(), Value::String(cur.mod_revision.to_string()));
            }
            if merged == live && !p.entries_changed {
                return Ok((Written { object: live, warnings: Vec::new(), changed: false }, false));
            }
            self.check_body(res, Subresource::Main, ns, Some(name), &mut merged)?;
            let o = WriteOptions { managed_fields: Some(entries_json(&p)), ..opts.clone() };
            if let Some(w) = self.write_over(res, &key, &cur, merged, Subresource::Main, &o).await? {
                return Ok((w, false));
            }
        }
        Err(st::conflict_modified(res, name).into())
    }

    /// Writes `body` over the current `cur` (compare-and-set on its mod revision). `None`
    /// when another write won the race.
    async fn write_over(
        &self,
        res: &ResourceInfo,
        key: &str,
        cur: &KeyValue,
        body: Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> ApiResult<Option<Written>> {
        let cur_obj = decode(res, cur, cur.mod_revision)?;
        let mut new = match sub {
            Subresource::Main => {
                let mut new = body;
                if res.has_subresource("status") {
                    match cur_obj.get("status") {
                        Some(s) => new.as_object_mut().expect("checked").insert("status".into(), s.clone()),
                        None => new.as_object_mut().expect("checked").remove("status"),
                    };
                }
                new
            }
            Subresource::Status => {
                let mut new = cur_obj.clone();
                match body.get("status") {
                    Some(s) => new.as_object_mut().expect("object").insert("status".into(), s.clone()),
                    None => new.as_object_mut().expect("object").remove("status"),
                };
                new
            }
            Subresource::Scale => {
                let replicas = body.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
                if !replicas.as_i64().is_some_and(|r| (0..=i32::MAX as i64).contains(&r)) {
                    return Err(ApiError::from(
                        skiff_api::ValidationErrors {
                            kind: "Scale".into(),
                            group: "autoscaling".into(),
                            name: meta::name_of(&cur_obj).to_string(),
                            errors: vec![skiff_api::FieldError::invalid(
                                "spec.replicas",
                                replicas,
                                "must be greater than or equal to 0",
                            )],
                        }
                        .to_status(),
                    ));
                }
                let mut new = cur_obj.clone();
                new.as_object_mut()
                    .expect("object")
                    .entry("spec")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .ok_or_else(|| ApiError::internal("spec is not an object"))?
                    .insert("replicas".into(), replicas);
                new
            }
        };
        // Metadata the server owns.
        {
            let cm = cur_obj.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
            let m = meta_mut(&mut new);
            for f in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
                match cm.get(f) {
                    Some(v) => m.insert(f.into(), v.clone()),
                    None => m.remove(f),
                };
            }
            // Apply's ownership records: the apply's own, else kept as they are.
            match opts.managed_fields.as_ref().or_else(|| cm.get("managedFields")) {
                Some(mf) => m.insert("managedFields".into(), mf.clone()),
                None => m.remove("managedFields"),
            };
            m.remove("selfLink");
            m.remove("resourceVersion");
            if res.namespaced {
                if let Some(n) = cm.get("namespace") {
                    m.insert("namespace".into(), n.clone());
                }
            }
        }
        let warnings = self.admit(res, &mut new, opts)?;
        if let Some(err) = immutable_changes(res, &cur_obj, &new) {
            return Err(err);
        }
        if new.get("spec") != cur_obj.get("spec") && res.kind != "Pod" {
            let g = cur_obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            meta_mut(&mut new).insert("generation".into(), json!(g));
        }
        // An object being deleted whose last finalizer was removed goes away now.
        let finalizers_empty =
            new.pointer("/metadata/finalizers").and_then(Value::as_array).is_none_or(|f| f.is_empty());
        let deleting = meta_str(&new, "deletionTimestamp").is_some();
        if deleting && finalizers_empty && res.kind != "Pod" && res.kind != "Namespace" {
            if opts.dry_run {
                return Ok(Some(Written { object: new, warnings, changed: false }));
            }
            let r = self
                .txn(Txn {
                    compare: vec![Compare::mod_revision(key, cur.mod_revision)],
                    success: vec![Op::delete(key)],
                    failure: vec![],
                })
                .await?;
            if !r.succeeded {
                return Ok(None);
            }
            set_rv(&mut new, r.revision);
            return Ok(Some(Written { object: new, warnings, changed: true }));
        }
        if same_but_rv(&new, &cur_obj) {
            // A no-op write does not bump the resourceVersion, as in Kubernetes.
            return Ok(Some(Written { object: cur_obj, warnings, changed: false }));
        }
        if opts.dry_run {
            self.encode_checked(&new)?;
            set_rv(&mut new, cur.mod_revision);
            return Ok(Some(Written { object: new, warnings, changed: false }));
        }
        let mut txn =
            Txn { compare: vec![Compare::mod_revision(key, cur.mod_revision)], success: vec![], failure: vec![] };
        if res.kind == "Service" {
            self.reserve_node_ports(&mut new, Some(&cur_obj), &mut txn).await?;
        }
        txn.success.insert(0, Op::put(key, self.encode_checked(&new)?));
        let r = self.txn(txn).await?;
        if !r.succeeded {
            return Ok(None);
        }
        set_rv(&mut new, r.revision);
        let out = if sub == Subresource::Scale { scale_of(res, &new) } else { new };
        Ok(Some(Written { object: out, warnings, changed: true }))
    }

    /// Deletes an object: pods bound to a node get a grace period (the agent finishes the
    /// deletion), objects with finalizers wait for them, the rest go at once; dependents are
    /// deleted (Background/Foreground) or released (Orphan) afterwards.
    pub async fn delete(
        self: &Arc<Self>,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        let key = keys::object_key(res, ns_for(res, ns), name);
        for _ in 0..MAX_CAS_RETRIES {
            let (cur, _) = self.read(&key, false).await?;
            let Some(cur) = cur else { return Err(st::not_found(res, name).into()) };
            let mut obj = decode(res, &cur, cur.mod_revision)?;
            if let Some(uid) = &opts.precondition_uid {
                if uid != meta::uid_of(&obj) {
                    return Err(st::conflict(
                        res,
                        name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            meta::uid_of(&obj)
                        ),
                    )
                    .into());
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                if rv != &cur.mod_revision.to_string() {
                    return Err(st::conflict(
                        res,
                        name,
                        &format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            cur.mod_revision
                        ),
                    )
                    .into());
                }
            }
            let already_deleting = meta_str(&obj, "deletionTimestamp").is_some();
            let finalizers: Vec<String> = obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .map(|f| f.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let propagation = opts.propagation.unwrap_or_default();

            // Namespaces: mark Terminating, then empty them in the background.
            if res.kind == "Namespace" {
                if INITIAL_NAMESPACES.contains(&name) && name != "kube-public" {
                    return Err(st::forbidden(format!(
                        "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
                    ))
                    .into());
                }
                if !already_deleting {
                    let m = meta_mut(&mut obj);
                    m.insert("deletionTimestamp".into(), Value::String(meta::now_rfc3339()));
                    obj.as_object_mut().expect("object").insert("status".into(), json!({"phase": "Terminating"}));
                    if opts.dry_run {
                        return Ok(Deleted::Pending(obj));
                    }
                    match self.cas_put(&key, cur.mod_revision, &obj).await? {
                        Some(rev) => set_rv(&mut obj, rev),
                        None => continue,
                    }
                }
                // Deleting a Terminating namespace again (what the leader's garbage collector
                // does for the ones it finds) resumes emptying it, on this replica.
                self.spawn_finalize(name);
                return Ok(Deleted::Pending(obj));
            }

            // Pods bound to a node: graceful deletion finished by the node agent.
            if res.kind == "Pod" {
                let bound = obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
                let terminal =
                    matches!(obj.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded") | Some("Failed"));
                let grace = opts.grace_period_seconds.unwrap_or_else(|| {
                    obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30)
                });
                if bound && !terminal && grace > 0 {
                    let current_grace =
                        obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(i64::MAX);
                    if already_deleting && current_grace <= grace {
                        return Ok(Deleted::Pending(obj));
                    }
                    let m = meta_mut(&mut obj);
                    m.insert("deletionTimestamp".into(), Value::String(meta::rfc3339_in(grace)));
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    if opts.dry_run {
                        return Ok(Deleted::Pending(obj));
                    }
                    match self.cas_put(&key, cur.mod_revision, &obj).await? {
                        Some(rev) => {
                            set_rv(&mut obj, rev);
                            return Ok(Deleted::Pending(obj));
                        }
                        None => continue,
                    }
                }
            }

            // Finalizers (including foreground deletion) hold the object until removed.
            if !finalizers.is_empty() || propagation == Propagation::Foreground {
                if propagation == Propagation::Foreground && !finalizers.iter().any(|f| f == "foregroundDeletion") {
                    let m = meta_mut(&mut obj);
                    let f = m.entry("finalizers").or_insert_with(|| json!([]));
                    if let Some(a) = f.as_array_mut() {
                        a.push(json!("foregroundDeletion"));
                    }
                }
                if !already_deleting {
                    meta_mut(&mut obj).insert("deletionTimestamp".into(), Value::String(meta::now_rfc3339()));
                    meta_mut(&mut obj).insert("deletionGracePeriodSeconds".into(), json!(0));
                }
                if opts.dry_run {
                    return Ok(Deleted::Pending(obj));
                }
                let rev = match self.cas_put(&key, cur.mod_revision, &obj).await? {
                    Some(rev) => rev,
                    None => continue,
                };
                set_rv(&mut obj, rev);
                if propagation == Propagation::Foreground {
                    let this = self.clone();
                    let (o, ns) = (obj.clone(), ns.map(str::to_string));
                    tokio::spawn(async move {
                        if let Err(e) = this.foreground_finish(res, ns.as_deref(), &o).await {
                            tracing::warn!("foreground deletion of {}: {e}", meta::name_of(&o));
                        }
                    });
                }
                return Ok(Deleted::Pending(obj));
            }

            if opts.dry_run {
                return Ok(Deleted::Gone(obj));
            }
            let mut success = vec![Op::delete(&key)];
            if res.kind == "Service" {
                success.extend(node_ports(&obj).into_iter().map(|p| Op::delete(node_port_key(p))));
            }
            let r = self
                .txn(Txn { compare: vec![Compare::mod_revision(&key, cur.mod_revision)], success, failure: vec![] })
                .await?;
            if !r.succeeded {
                continue;
            }
            let deleted = matches!(r.results.first(), Some(OpResult::Delete { deleted }) if !deleted.is_empty());
            if deleted && res.namespaced {
                let uid = meta::uid_of(&obj).to_string();
                let this = self.clone();
                let ns = meta_str(&obj, "namespace").unwrap_or("default").to_string();
                tokio::spawn(async move {
                    let r = match propagation {
                        Propagation::Orphan => this.orphan_dependents(&ns, &uid).await,
                        _ => this.delete_dependents(&ns, &uid).await,
                    };
                    if let Err(e) = r {
                        tracing::warn!("dependents of {uid}: {e}");
                    }
                });
            }
            return Ok(Deleted::Gone(obj));
        }
        Err(st::conflict_modified(res, name).into())
    }

    /// Binds a pod to a node in one write: `spec.nodeName` and the `PodScheduled=True`
    /// condition (what the scheduler and `pods/<name>/binding` do). `resource_version`, when
    /// given, is a precondition; a pod already bound or being deleted is a conflict.
    pub async fn bind(
        &self,
        ns: &str,
        name: &str,
        uid: Option<&str>,
        resource_version: Option<&str>,
        node: &str,
    ) -> ApiResult<Value> {
        let res = &registry::PODS;
        let key = keys::object_key(res, Some(ns), name);
        for _ in 0..MAX_CAS_RETRIES {
            let (cur, _) = self.read_confirming_miss(&key).await?;
            let Some(cur) = cur else { return Err(st::not_found(res, name).into()) };
            let mut obj = decode(res, &cur, cur.mod_revision)?;
            if let Some(rv) = resource_version.filter(|rv| *rv != cur.mod_revision.to_string()) {
                // Our local copy may be behind: confirm with a linearizable read.
                let (fresh, _) = self.read(&key, false).await?;
                if fresh.map(|f| f.mod_revision.to_string()).as_deref() != Some(rv) {
                    return Err(st::conflict_modified(res, name).into());
                }
                continue;
            }
            if uid.is_some_and(|u| u != meta::uid_of(&obj)) {
                return Err(st::conflict(res, name, "the pod's UID has changed").into());
            }
            if let Some(n) = obj.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                return Err(st::conflict(res, name, &format!("pod {name} is already assigned to node \"{n}\"")).into());
            }
            if meta_str(&obj, "deletionTimestamp").is_some() {
                return Err(st::conflict(res, name, "the pod is being deleted").into());
            }
            obj["spec"]["nodeName"] = json!(node);
            set_pod_condition(
                &mut obj,
                json!({"type": "PodScheduled", "status": "True",
                "lastTransitionTime": meta::now_rfc3339()}),
            );
            match self.cas_put(&key, cur.mod_revision, &obj).await? {
                Some(rev) => {
                    set_rv(&mut obj, rev);
                    return Ok(obj);
                }
                None if resource_version.is_some() => return Err(st::conflict_modified(res, name).into()),
                None => continue,
            }
        }
        Err(st::conflict_modified(res, name).into())
    }

    /// Binds many pods in one Raft entry (the scheduler's batch): each pod is given as last
    /// read (its `resourceVersion` is the precondition) with the node to bind it to, and
    /// answers the revision its binding was written at. Each binding succeeds or fails on its
    /// own: 409 when the pod changed since it was read, is already assigned or is being
    /// deleted. Fenced like every other write. The pods are not copied: each bound version is
    /// serialized from the one given, through a view ([`encode_bound`]).
    pub async fn bind_many(&self, pods: &[(Arc<Value>, String)]) -> ApiResult<Vec<ApiResult<u64>>> {
        let res = &registry::PODS;
        let mut out: Vec<Option<ApiResult<u64>>> = Vec::with_capacity(pods.len());
        let mut txns = Vec::new();
        let mut pending: Vec<(usize, &str)> = Vec::new();
        let scheduled_at = meta::now_rfc3339();
        let cond = json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled_at});
        for (obj, node) in pods {
            let name = meta::name_of(obj);
            let ns = meta_str(obj, "namespace").unwrap_or("default");
            let rv = meta_str(obj, "resourceVersion").and_then(|rv| rv.parse::<u64>().ok());
            let refused = if rv.is_none() {
                Some(st::bad_request("a pod to bind needs its resourceVersion"))
            } else if let Some(n) = obj.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                Some(st::conflict(res, name, &format!("pod {name} is already assigned to node \"{n}\"")))
            } else if meta_str(obj, "deletionTimestamp").is_some() {
                Some(st::conflict(res, name, "the pod is being deleted"))
            } else {
                None
            };
            if let Some(e) = refused {
                out.push(Some(Err(e.into())));
                continue;
            }
            let key = keys::object_key(res, Some(ns), name);
            let mut compare = vec![Compare::mod_revision(&key, rv.expect("checked above"))];
            if let Some((fkey, frev)) = &self.fence {
                compare.push(Compare::mod_revision(fkey, *frev));
            }
            txns.push(Txn { compare, success: vec![Op::put(&key, encode_bound(obj, node, &cond))], failure: vec![] });
            pending.push((out.len(), name));
            out.push(None);
        }
        if !txns.is_empty() {
            let resps = self.node.batch(txns).await?;
            let mut fence_checked = false;
            for ((i, name), r) in pending.into_iter().zip(resps) {
                if r.succeeded {
                    out[i] = Some(Ok(r.revision));
                    continue;
                }
                if !fence_checked {
                    fence_checked = true;
                    self.check_fence().await?;
                }
                out[i] = Some(Err(st::conflict_modified(res, name).into()));
            }
        }
        Ok(out.into_iter().map(|r| r.expect("every binding answered")).collect())
    }

    /// Gives a NodePort/LoadBalancer Service a node port for every port that lacks one
    /// (keeping the ports `old` had), and adds to `txn` the reservations of ports that are new
    /// (`/registry/_nodeports/<port>` must be absent) and the release of ports no longer used.
    /// A port the user asks for that is already taken is refused with 422.
    async fn reserve_node_ports(&self, svc: &mut Value, old: Option<&Value>, txn: &mut Txn) -> ApiResult<()> {
        let wants =
            matches!(svc.pointer("/spec/type").and_then(Value::as_str), Some("NodePort") | Some("LoadBalancer"));
        let old_ports = old.map(node_ports).unwrap_or_default();
        let name = meta::name_of(svc).to_string();
        let owner = format!("{}/{}", meta_str(svc, "namespace").unwrap_or("default"), name);
        if wants {
            let (taken, _, _) = self.node.range(NODE_PORT_PREFIX, None, 0, false).await?;
            let mut used: std::collections::BTreeSet<i64> =
                taken.iter().filter_map(|kv| kv.key[NODE_PORT_PREFIX.len()..].parse().ok()).collect();
            for p in &old_ports {
                used.remove(p);
            }
            let old_by_port: BTreeMap<(String, i64), i64> = old
                .and_then(|o| o.pointer("/spec/ports").and_then(Value::as_array).cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|p| {
                    let np = p.get("nodePort")?.as_i64()?;
                    Some((
                        (p.get("name").and_then(Value::as_str).unwrap_or("").to_string(), p.get("port")?.as_i64()?),
                        np,
                    ))
                })
                .collect();
            let range = self.validation.node_port_range.clone();
            let span = (range.end() - range.start() + 1).max(1);
            let mut next = range.start() + (rand::random::<u64>() % span as u64) as i64;
            if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for (i, p) in ports.iter_mut().enumerate() {
                    let given = p.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0);
                    let port = match given {
                        Some(n) => {
                            if used.contains(&n) {
                                return Err(ApiError::from(
                                    skiff_api::ValidationErrors {
                                        kind: "Service".into(),
                                        group: String::new(),
                                        name: name.clone(),
                                        errors: vec![skiff_api::FieldError::invalid(
                                            format!("spec.ports[{i}].nodePort"),
                                            n,
                                            "provided port is already allocated",
                                        )],
                                    }
                                    .to_status(),
                                ));
                            }
                            n
                        }
                        None => {
                            let k = (
                                p.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                                p.get("port").and_then(Value::as_i64).unwrap_or(0),
                            );
                            match old_by_port.get(&k).filter(|np| !used.contains(np)) {
                                Some(np) => *np,
                                None => {
                                    let mut tries = 0;
                                    while used.contains(&next) {
                                        next = if next >= *range.end() { *range.start() } else { next + 1 };
                                        tries += 1;
                                        if tries > span {
                                            return Err(st::internal_error(format!(
                                                "no node port is free in {}-{}",
                                                range.start(),
                                                range.end()
                                            ))
                                            .into());
                                        }
                                    }
                                    next
                                }
                            }
                        }
                    };
                    used.insert(port);
                    p["nodePort"] = json!(port);
                }
            }
        }
        let new_ports = if wants { node_ports(svc) } else { Vec::new() };
        for p in &new_ports {
            if !old_ports.contains(p) {
                txn.compare.push(Compare::missing(node_port_key(*p)));
                txn.success.push(Op::put(node_port_key(*p), owner.clone().into_bytes()));
            }
        }
        for p in &old_ports {
            if !new_ports.contains(p) {
                txn.success.push(Op::delete(node_port_key(*p)));
            }
        }
        Ok(())
    }

    /// `delete` as a boxed `Send` future: the background tasks that delete dependents and
    /// namespace contents call back into `delete`, and the box breaks that type cycle.
    fn delete_owned(
        self: Arc<Self>,
        res: &'static ResourceInfo,
        ns: String,
        name: String,
        opts: DeleteOptions,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ApiResult<Deleted>> + Send>> {
        Box::pin(async move { self.delete(res, Some(&ns), &name, &opts).await })
    }

    async fn cas_put(&self, key: &str, rev: u64, obj: &Value) -> ApiResult<Option<u64>> {
        let r = self
            .txn(Txn {
                compare: vec![Compare::mod_revision(key, rev)],
                success: vec![Op::put(key, encode(obj))],
                failure: vec![],
            })
            .await?;
        Ok(r.succeeded.then_some(r.revision))
    }

    /// Objects in `ns` that name `owner_uid` among their owner references.
    async fn dependents(&self, ns: &str, owner_uid: &str) -> ApiResult<Vec<(&'static ResourceInfo, Value)>> {
        let mut out = Vec::new();
        for res in registry::RESOURCES.iter().copied().filter(|r| r.namespaced && r.kind != "Event") {
            let list = self.list(res, Some(ns), &ListOptions { serializable: false, ..Default::default() }).await?;
            out.extend(list.items.into_iter().filter(|o| meta::owned_by(o, owner_uid)).map(|o| (res, o)));
        }
        Ok(out)
    }

    /// Background propagation: deletes every dependent (recursively, through their own deletes).
    pub async fn delete_dependents(self: &Arc<Self>, ns: &str, owner_uid: &str) -> ApiResult<()> {
        for (res, o) in self.dependents(ns, owner_uid).await? {
            let opts = DeleteOptions {
                precondition_uid: Some(meta::uid_of(&o).to_string()),
                propagation: Some(Propagation::Background),
                ..Default::default()
            };
            match self.clone().delete_owned(res, ns.to_string(), meta::name_of(&o).to_string(), opts).await {
                Ok(_) => {}
                Err(e) if matches!(e.code(), 404 | 409) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Orphan propagation: removes the owner reference from every dependent.
    pub async fn orphan_dependents(&self, ns: &str, owner_uid: &str) -> ApiResult<()> {
        for (res, o) in self.dependents(ns, owner_uid).await? {
            let refs: Vec<Value> = o
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter().filter(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid)).cloned().collect()
                })
                .unwrap_or_default();
            let p = json!({"metadata": {"ownerReferences": refs}});
            let _ = self
                .patch(
                    res,
                    Some(ns),
                    meta::name_of(&o),
                    PatchType::Merge,
                    &p,
                    Subresource::Main,
                    &WriteOptions::default(),
                )
                .await;
        }
        Ok(())
    }

    /// Foreground propagation: delete dependents, wait for them to go, then drop the finalizer.
    async fn foreground_finish(
        self: &Arc<Self>,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        obj: &Value,
    ) -> ApiResult<()> {
        let uid = meta::uid_of(obj).to_string();
        let ns_name = meta_str(obj, "namespace").unwrap_or("default").to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            for (dres, o) in self.dependents(&ns_name, &uid).await? {
                let opts = DeleteOptions {
                    precondition_uid: Some(meta::uid_of(&o).to_string()),
                    propagation: Some(Propagation::Foreground),
                    ..Default::default()
                };
                let _ = self.clone().delete_owned(dres, ns_name.clone(), meta::name_of(&o).to_string(), opts).await;
            }
            if self.dependents(&ns_name, &uid).await?.is_empty() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ApiError::from(st::timeout("dependents were not deleted within 10 minutes")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let name = meta::name_of(obj).to_string();
        for _ in 0..MAX_CAS_RETRIES {
            let cur = self.get(res, ns, &name, false).await?;
            if meta::uid_of(&cur) != uid {
                return Ok(());
            }
            let fin: Vec<Value> = cur
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter(|f| f.as_str() != Some("foregroundDeletion")).cloned().collect())
                .unwrap_or_default();
            let p = json!({"metadata": {"finalizers": fin, "resourceVersion": meta_str(&cur, "resourceVersion")}});
            match self.patch(res, ns, &name, PatchType::Merge, &p, Subresource::Main, &WriteOptions::default()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == 409 => continue,
                Err(e) if e.code() == 404 => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Empties Terminating namespace `ns` in the background, unless this replica already is.
    fn spawn_finalize(self: &Arc<Self>, ns: &str) {
        if !self.finalizing.lock().unwrap_or_else(|e| e.into_inner()).insert(ns.to_string()) {
            return;
        }
        let this = self.clone();
        let n = ns.to_string();
        tokio::spawn(async move {
            if let Err(e) = this.finalize_namespace(&n).await {
                tracing::warn!(namespace = %n, "emptying namespace: {e}");
            }
            this.finalizing.lock().unwrap_or_else(|e| e.into_inner()).remove(&n);
        });
    }

    /// Deletes everything in a Terminating namespace, then the namespace itself. Safe to run
    /// again (it is what a replica does for namespaces it finds Terminating).
    pub async fn finalize_namespace(self: &Arc<Self>, ns: &str) -> ApiResult<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            let mut remaining = 0;
            for res in registry::RESOURCES.iter().copied().filter(|r| r.namespaced) {
                let list = self.list(res, Some(ns), &ListOptions::default()).await?;
                for o in list.items {
                    remaining += 1;
                    if meta_str(&o, "deletionTimestamp").is_some() {
                        continue;
                    }
                    let opts = DeleteOptions {
                        precondition_uid: Some(meta::uid_of(&o).to_string()),
                        propagation: Some(Propagation::Background),
                        ..Default::default()
                    };
                    let _ = self.clone().delete_owned(res, ns.to_string(), meta::name_of(&o).to_string(), opts).await;
                }
            }
            if remaining == 0 {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ApiError::from(st::timeout(format!("namespace {ns} still has {remaining} objects"))));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let key = keys::object_key(&NAMESPACES, None, ns);
        if let (Some(kv), _) = self.read(&key, false).await? {
            self.txn(Txn {
                compare: vec![Compare::mod_revision(&key, kv.mod_revision)],
                success: vec![Op::delete(&key)],
                failure: vec![],
            })
            .await?;
        }
        Ok(())
    }

    // ---- watch ----------------------------------------------------------------------

    /// Starts a watch. `resource_version` `None`/`"0"` first delivers the current objects as
    /// ADDED; otherwise events after that revision (410 Gone if compacted).
    pub async fn watch(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        resource_version: Option<&str>,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> ApiResult<ObjectWatch> {
        let prefix = keys::list_prefix(res, ns_for(res, ns));
        let mut initial = Vec::new();
        let from = match resource_version.filter(|rv| !rv.is_empty()) {
            Some(rv) if rv != "0" => {
                rv.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?
            }
            other => {
                let opts = ListOptions {
                    labels: labels.clone(),
                    fields: fields.clone(),
                    serializable: other.is_some(),
                    ..Default::default()
                };
                let (revision, _) = self
                    .list_each(res, ns, &opts, |kv| {
                        let obj = decode(res, kv, kv.mod_revision)?;
                        let keep = selected(&obj, &opts.labels, &opts.fields);
                        if keep {
                            let stored = (kv.clone(), kv.mod_revision);
                            initial.push(ServedEvent { kind: "ADDED", object: Some(Arc::new(obj)), stored });
                        }
                        Ok(keep)
                    })
                    .await?;
                revision
            }
        };
        let watcher = self.node.watch(&prefix, from + 1)?;
        Ok(ObjectWatch { res, watcher, labels, fields, initial, decoded: self.decoded.clone() })
    }
}

/// A running watch over one resource.
pub struct ObjectWatch {
    res: &'static ResourceInfo,
    watcher: Watcher,
    labels: LabelSelector,
    fields: FieldSelector,
    /// The initial list's objects (decoded: they were selected), until delivered.
    initial: Vec<ServedEvent>,
    decoded: Arc<std::sync::Mutex<DecodedVersions>>,
}

impl ObjectWatch {
    /// The next events (waits until there is at least one). Errors with 410 when the watch
    /// fell behind compaction.
    pub async fn next(&mut self) -> ApiResult<Vec<WatchEvent>> {
        let events = match std::mem::take(&mut self.initial) {
            initial if !initial.is_empty() => initial,
            _ => self.next_events(true).await?,
        };
        events
            .into_iter()
            .map(|e| {
                let object = match e.object {
                    Some(o) => o,
                    None => decode_shared(&self.decoded, self.res, &e.stored.0, e.stored.1)?,
                };
                Ok(WatchEvent { kind: e.kind, object })
            })
            .collect()
    }

    /// [`ObjectWatch::next`] for a client that is sent the stored bytes
    /// ([`ServedEvent::write_object`]): without selectors no version is decoded at all.
    pub async fn next_served(&mut self) -> ApiResult<Vec<ServedEvent>> {
        if !self.initial.is_empty() {
            return Ok(std::mem::take(&mut self.initial));
        }
        self.next_events(false).await
    }

    /// The next store events turned into watch events: versions decoded where a selector
    /// needs them, and all of them when `decode` (the others' `object` is `None`).
    async fn next_events(&mut self, decode: bool) -> ApiResult<Vec<ServedEvent>> {
        loop {
            let batch = self.watcher.next_batch(WATCH_BATCH).await?;
            let mut out = Vec::with_capacity(batch.len());
            // Without selectors the previous version matched exactly when there was one: it is
            // decoded only for a delete (the object sent) or to evaluate a selector.
            let select_all = self.labels.is_empty() && self.fields.is_empty();
            for e in batch {
                let old = match &e.prev {
                    Some(p) if !select_all || (decode && e.kind == EventKind::Delete) => {
                        Some(decode_shared(&self.decoded, self.res, p, e.revision)?)
                    }
                    _ => None,
                };
                let old_match = if select_all {
                    e.prev.is_some()
                } else {
                    old.as_ref().is_some_and(|o| selected(o, &self.labels, &self.fields))
                };
                match e.kind {
                    EventKind::Put => {
                        let new = if decode || !select_all {
                            Some(decode_shared(&self.decoded, self.res, &e.kv, e.revision)?)
                        } else {
                            None
                        };
                        let new_match = new.as_ref().is_none_or(|n| selected(n, &self.labels, &self.fields));
                        let kind = match (old_match, new_match) {
                            (true, true) => "MODIFIED",
                            (false, true) => "ADDED",
                            (true, false) => "DELETED",
                            (false, false) => continue,
                        };
                        out.push(ServedEvent { kind, object: new, stored: (e.kv.clone(), e.revision) });
                    }
                    EventKind::Delete => {
                        if let (true, Some(p)) = (old_match, &e.prev) {
                            out.push(ServedEvent { kind: "DELETED", object: old, stored: (p.clone(), e.revision) });
                        }
                    }
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }

    /// A revision every event up to which has been delivered (for bookmarks).
    pub fn bookmark_revision(&self) -> u64 {
        self.watcher.next_revision().saturating_sub(1)
    }
}

/// Sets (replacing one of the same type) a condition in `status.conditions`.
fn set_pod_condition(obj: &mut Value, cond: Value) {
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    let st = obj["status"].as_object_mut().expect("status is an object");
    let list = st.entry("conditions").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let list = list.as_array_mut().expect("array");
    match list.iter_mut().find(|c| c["type"] == cond["type"]) {
        Some(c) => *c = cond,
        None => list.push(cond),
    }
}

/// Fills the status a freshly created object starts with.
fn init_status(res: &ResourceInfo, obj: &mut Value) {
    let root = obj.as_object_mut().expect("object");
    match res.kind {
        "Pod" => {
            let status = root.entry("status").or_insert_with(|| json!({}));
            if let Some(s) = status.as_object_mut() {
                s.entry("phase").or_insert_with(|| json!("Pending"));
            }
            let qos = qos_class(root.get("spec").unwrap_or(&Value::Null));
            if let Some(s) = root.get_mut("status").and_then(Value::as_object_mut) {
                s.entry("qosClass").or_insert_with(|| json!(qos));
            }
        }
        "Namespace" => {
            root.insert("status".into(), json!({"phase": "Active"}));
        }
        _ => {}
    }
}

/// Kubernetes' QoS class of a pod spec.
fn qos_class(spec: &Value) -> &'static str {
    let containers = spec.get("containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(r));
            let q = req.and_then(|q| q.get(r)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Fields Kubernetes refuses to change after creation.
fn immutable_changes(res: &ResourceInfo, old: &Value, new: &Value) -> Option<ApiError> {
    let fields: &[&str] = match res.kind {
        "Deployment" | "ReplicaSet" => &["/spec/selector"],
        "Service" => &["/spec/clusterIP"],
        "Pod" => &["/spec/containers/0/name", "/spec/restartPolicy"],
        _ => &[],
    };
    for f in fields {
        let (o, n) = (old.pointer(f), new.pointer(f));
        if o.is_some() && o != n && !(res.kind == "Service" && (n.is_none() || n == Some(&json!("")))) {
            let path = f.trim_start_matches('/').replace('/', ".");
            return Some(ApiError::from(
                skiff_api::ValidationErrors {
                    kind: res.kind.to_string(),
                    group: res.group.to_string(),
                    name: meta::name_of(old).to_string(),
                    errors: vec![skiff_api::FieldError::invalid(
                        path,
                        n.cloned().unwrap_or(Value::Null),
                        "field is immutable",
                    )],
                }
                .to_status(),
            ));
        }
    }
    if res.kind == "Pod" {
        let bound_old = old.pointer("/spec/nodeName");
        let bound_new = new.pointer("/spec/nodeName");
        if bound_old.is_some_and(|b| b.as_str().is_some_and(|s| !s.is_empty())) && bound_old != bound_new {
            return Some(ApiError::from(
                skiff_api::ValidationErrors {
                    kind: "Pod".into(),
                    group: String::new(),
                    name: meta::name_of(old).to_string(),
                    errors: vec![skiff_api::FieldError::forbidden("spec.nodeName", "a bound pod cannot be moved")],
                }
                .to_status(),
            ));
        }
    }
    None
}

fn patch_error(e: skiff_api::PatchError) -> ApiError {
    let msg = e.to_string();
    if msg.contains("test") && msg.contains("failed") {
        ApiError::from(skiff_api::Status::failure(skiff_api::StatusReason::Invalid, msg, None))
    } else {
        ApiError::bad_request(msg)
    }
}

/// Where node-port reservations live (one key per allocated port).
const NODE_PORT_PREFIX: &str = "/registry/_nodeports/";

fn node_port_key(port: i64) -> String {
    format!("{NODE_PORT_PREFIX}{port}")
}

/// The node ports a Service holds.
fn node_ports(svc: &Value) -> Vec<i64> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().filter_map(|p| p.get("nodePort").and_then(Value::as_i64)).filter(|n| *n != 0).collect())
        .unwrap_or_default()
}

/// A continue token: the last key served and the revision the list is read at.
fn encode_continue(key: &str, revision: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&json!({"k": key, "rv": revision})).unwrap_or_default())
}

fn decode_continue(tok: &str) -> ApiResult<(String, u64)> {
    let bad = || ApiError::bad_request(format!("invalid continue token {tok:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(tok).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let key = v.get("k").and_then(Value::as_str).map(str::to_string).ok_or_else(bad)?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    Ok((key, rv))
}

/// An owner reference to `obj` (controller, block owner deletion), as controllers set it.
pub fn controller_ref(res: &ResourceInfo, obj: &Value) -> Value {
    json!({
        "apiVersion": res.api_version(),
        "kind": res.kind,
        "name": meta::name_of(obj),
        "uid": meta::uid_of(obj),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Labels as a map, for callers outside the crate.
pub fn label_map(obj: &Value) -> BTreeMap<String, String> {
    labels_of(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding is encoded through a view: the same bytes as the pod copied, bound
    /// (`spec.nodeName`, the PodScheduled condition set) and encoded, whatever the pod's status
    /// and conditions hold, and with members sorting before and after those the view sets.
    #[test]
    fn bindings_are_encoded_as_the_bound_copy_would_be() {
        let cond = json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-07T11:00:00Z"});
        let pods = [
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "default", "resourceVersion": "12", "uid": "u"},
                "spec": {"containers": [{"image": "i", "name": "c"}], "schedulerName": "default-scheduler"},
                "status": {"phase": "Pending", "qosClass": "BestEffort"}}),
            // An unschedulable pod's False condition is replaced in place, others kept in order.
            json!({"metadata": {"name": "p"}, "spec": {"affinity": {}, "nodeName": "", "priority": 0},
                "status": {"conditions": [{"type": "Other", "status": "True"},
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
                    {"type": "Zeta", "status": "False"}], "phase": "Pending", "zz": 1}}),
            // No status, a status that is not an object, conditions that are not a list.
            json!({"metadata": {"name": "p"}, "spec": {}}),
            json!({"metadata": {"name": "p"}, "spec": {"a": 1}, "status": "odd"}),
            json!({"metadata": "odd", "spec": {"z": 1}, "status": {"conditions": 5, "a": true}}),
            json!({"aaa": 1, "spec": {}, "zzz": [null]}),
            json!({"spec": null}),
        ];
        for pod in pods {
            let mut bound = pod.clone();
            bound["spec"]["nodeName"] = json!("node-1");
            set_pod_condition(&mut bound, cond.clone());
            assert_eq!(
                String::from_utf8(encode_bound(&pod, "node-1", &cond)).unwrap(),
                String::from_utf8(encode(&bound)).unwrap(),
                "{pod}"
            );
        }
    }

    /// The store's encoding is a view: the same bytes as the object with its resourceVersion
    /// removed (and its status replaced), whatever keys sort around `status`.
    #[test]
    fn objects_are_encoded_as_stored_without_being_copied() {
        let slow = |obj: &Value, status: Option<&Value>| {
            let mut o = obj.clone();
            if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            if let Some(st) = status {
                o["status"] = st.clone();
            }
            serde_json::to_vec(&o).unwrap()
        };
        let st = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        let objects = [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "resourceVersion": "7", "uid": "u"},
                   "spec": {"containers": []}, "status": {"phase": "Pending"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"nodeName": "n"}}),
            json!({"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "t", "resourceVersion": "1"}, "type": "x"}),
            json!({"apiVersion": "v1", "kind": "Thing", "metadata": "odd", "zeta": 1}),
            json!({"status": 1}),
            json!({}),
            json!("not an object"),
        ];
        for obj in &objects {
            assert_eq!(encode(obj), slow(obj, None), "{obj}");
            if obj.is_object() {
                assert_eq!(encode_with_status(obj, &st), slow(obj, Some(&st)), "{obj}");
                let mut without = obj.clone();
                without.as_object_mut().unwrap().remove("status");
                assert_eq!(json_without_status(obj).into_bytes(), slow(&without, None), "{obj}");
            }
        }
    }

    /// Only `metadata.deletionTimestamp` makes a namespace Terminating: not the same words in
    /// an annotation, not a null; stored bytes that are not a Namespace are an error.
    #[test]
    fn a_namespace_is_terminating_only_with_a_deletion_timestamp() {
        let check = |json: &str| {
            let kv = KeyValue {
                key: "/registry/namespaces/n".into(),
                value: json.as_bytes().to_vec(),
                create_revision: 1,
                mod_revision: 1,
                version: 1,
            };
            namespace_terminating(&kv)
        };
        let live = r#"{"metadata":{"name":"n","uid":"u"},"spec":{"finalizers":["kubernetes"]}}"#;
        assert!(!check(live).unwrap());
        let ending =
            r#"{"metadata":{"name":"n","deletionTimestamp":"2026-01-01T00:00:00Z"},"status":{"phase":"Terminating"}}"#;
        assert!(check(ending).unwrap());
        assert!(!check(r#"{"metadata":{"name":"n","deletionTimestamp":null}}"#).unwrap());
        let annotated = r#"{"metadata":{"name":"n","annotations":{"deletionTimestamp":"x"}}}"#;
        assert!(!check(annotated).unwrap());
        assert!(check(r#"{"metadata":{"deletionTimestamp":"#).is_err());
    }

    /// Watches on many threads delivering one version at the same moment get one decoded
    /// value, parsed once; a version that does not parse is an error for each of them.
    #[test]
    fn concurrent_watches_decode_a_version_once() {
        let res = skiff_api::lookup("pods").unwrap();
        let kv = |value: &str| {
            Arc::new(KeyValue {
                key: "/registry/pods/default/p".into(),
                value: value.as_bytes().to_vec(),
                create_revision: 7,
                mod_revision: 7,
                version: 1,
            })
        };
        let good = kv(r#"{"metadata":{"name":"p"}}"#);
        let cache = std::sync::Mutex::new(DecodedVersions::default());
        let parses = std::sync::atomic::AtomicUsize::new(0);
        let start = std::sync::Barrier::new(8);
        let values: Vec<Arc<Value>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        decode_once(&cache, &good, 7, || {
                            parses.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            // A parse long enough for every other thread to arrive meanwhile.
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            decode(res, &good, 7)
                        })
                        .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(parses.load(std::sync::atomic::Ordering::SeqCst), 1, "one parse for all watches");
        assert!(values.iter().all(|v| Arc::ptr_eq(v, &values[0])), "every watch holds the one decode");
        assert_eq!(values[0]["metadata"]["resourceVersion"], "7");
        assert_eq!(cache.lock().unwrap().map.len(), 1);

        let bad = kv("not json");
        for _ in 0..2 {
            let e = decode_shared(&cache, res, &bad, 8).unwrap_err();
            assert!(e.to_string().contains("is not JSON"), "{e}");
        }
        // The cache stays bounded.
        for rev in 0..(DECODED_CAPACITY as u64 + 10) {
            decode_shared(&cache, res, &good, 100 + rev).unwrap();
        }
        assert_eq!(cache.lock().unwrap().map.len(), DECODED_CAPACITY);
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue("/registry/pods/default/web-1", 42);
        assert_eq!(decode_continue(&t).unwrap(), ("/registry/pods/default/web-1".to_string(), 42));
        assert_eq!(decode_continue("%%%").unwrap_err().code(), 400);
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&json!({"containers": [{"name": "a"}]})), "BestEffort");
        let g = json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn scale_view_of_a_deployment() {
        let d = json!({"metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let s = scale_of(&registry::DEPLOYMENTS, &d);
        assert_eq!(s["kind"], "Scale");
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web");
        assert_eq!(s["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn same_but_rv_ignores_only_the_resource_version() {
        let a =
            json!({"kind": "Pod", "metadata": {"name": "p", "resourceVersion": "3"}, "status": {"phase": "Running"}});
        let b = json!({"kind": "Pod", "metadata": {"name": "p"}, "status": {"phase": "Running"}});
        assert!(same_but_rv(&a, &b) && same_but_rv(&b, &a));
        let c = json!({"kind": "Pod", "metadata": {"name": "p", "resourceVersion": "4", "labels": {}}, "status": {"phase": "Running"}});
        assert!(!same_but_rv(&a, &c) && !same_but_rv(&c, &a));
        let d = json!({"kind": "Pod", "metadata": {"name": "p"}, "status": {"phase": "Pending"}});
        assert!(!same_but_rv(&b, &d));
        let e = json!({"kind": "Pod", "metadata": {"name": "p"}, "status": {"phase": "Running"}, "spec": {}});
        assert!(!same_but_rv(&b, &e) && !same_but_rv(&e, &b));
        // Encoding leaves the resourceVersion out, with or without one to remove.
        assert_eq!(encode(&a), encode(&b));
        assert!(!String::from_utf8(encode(&a)).unwrap().contains("resourceVersion"));
    }
}
