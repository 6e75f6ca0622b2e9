//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded into the
//! JSON object the rest of the server handles.
//!
//! kubectl's typed clients (`kubectl create namespace|deployment|service`, `kubectl drain`) send
//! their objects this way. A body is the 4-byte magic `k8s\0` followed by a `runtime.Unknown`
//! message: `typeMeta` (1: `apiVersion` = 1, `kind` = 2), `raw` (2: the object's own message),
//! `contentEncoding` (3) and `contentType` (4). The kind picks the object's message schema in
//! [`schema`], and [`decode`] walks the wire format with it.
//!
//! **Presence.** Kubernetes' marshaller writes every non-pointer Go field, even when it is
//! zero (`selfLink: ""`, `status: {}`, `hostNetwork: false` are all on the wire of a plain
//! `kubectl create deployment`). The decoder keeps such a field only when it is not zero, which
//! is what an absent field means to Kubernetes and to Skiff's defaulting. Fields that are
//! pointers in Go (`Card::Opt`: `spec.replicas`, `maxSurge`, `emptyDir`, ...) are written only when
//! set, so they are kept whenever they are on the wire, zero or empty included (`replicas: 0`).
//!
//! **Special types.** `meta.v1.Time` {seconds = 1, nanos = 2} becomes an RFC 3339 string at
//! second precision (as Kubernetes reads it; an empty message is the zero time, `null`);
//! `resource.Quantity` {string = 1} its string; `intstr.IntOrString` {type = 1, intVal = 2,
//! strVal = 3} a number or a string; `FieldsV1` {Raw = 1} the JSON it carries; maps (repeated
//! entries {key = 1, value = 2}) JSON objects.
//!
//! **Errors.** A field number the schema does not know is refused (415) naming the message, the
//! number and where it is, so no data the user sent is dropped silently; malformed input
//! (truncated, wrong wire type, bad UTF-8, an int32 out of range, an unknown field inside the
//! fixed special types, nesting deeper than [`MAX_DEPTH`]) is a 400. The caller applies the
//! body size limit before decoding.

mod schema;

use std::fmt;

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// What every Kubernetes protobuf body starts with.
pub const MAGIC: [u8; 4] = *b"k8s\0";
/// Deepest nesting of messages accepted (Kubernetes objects need about 12).
pub const MAX_DEPTH: usize = 32;

/// How a field's value is encoded and turned into JSON.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    /// `string` (length-delimited, UTF-8).
    Str,
    /// `bool` (varint).
    Bool,
    /// `int32` (varint, sign-extended to 64 bits when negative).
    I32,
    /// `int64` (varint).
    I64,
    /// A nested message.
    Msg(&'static Message),
    /// `meta.v1.Time`.
    Time,
    /// `resource.Quantity`.
    Quantity,
    /// `intstr.IntOrString`.
    IntOrString,
    /// `meta.v1.FieldsV1` (raw JSON).
    FieldsV1,
    /// `map<string, string>`.
    StrMap,
    /// `map<string, resource.Quantity>` (a `ResourceList`).
    QuantityMap,
}

/// Cardinality and presence of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    /// A Go value field: always on the wire, kept in JSON only when not zero.
    One,
    /// A Go pointer field: on the wire only when set, then always kept.
    Opt,
    /// `repeated` (numbers packed or not).
    Rep,
    /// An embedded Go struct whose fields JSON flattens into the parent (`json:",inline"`).
    Inline,
}

#[derive(Debug)]
pub(crate) struct Field {
    pub num: u32,
    pub json: &'static str,
    pub ty: Ty,
    pub card: Card,
}

/// One message's schema; `name` is its protobuf name, used in errors.
#[derive(Debug)]
pub(crate) struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

impl Message {
    fn field(&self, num: u32) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.num == num)
    }
}

/// The top-level kinds decoded: `(apiVersion, kind, schema)`; `None` accepts any apiVersion.
static KINDS: &[(Option<&str>, &str, &Message)] = &[
    (Some("v1"), "Namespace", &schema::NAMESPACE),
    (Some("v1"), "Pod", &schema::POD),
    (Some("v1"), "Service", &schema::SERVICE),
    (Some("apps/v1"), "Deployment", &schema::DEPLOYMENT),
    (Some("policy/v1"), "Eviction", &schema::EVICTION),
    // DeleteOptions is registered in every group version (`v1`, `meta.k8s.io/v1`, `apps/v1`, ...).
    (None, "DeleteOptions", &schema::DELETE_OPTIONS),
];

/// Why a protobuf body was not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// Well-formed, but a kind or field Skiff does not decode: 415 Unsupported Media Type.
    Unsupported(String),
    /// Not a valid Kubernetes protobuf body: 400 Bad Request.
    Malformed(String),
}

impl ProtoError {
    pub fn message(&self) -> &str {
        match self {
            ProtoError::Unsupported(m) | ProtoError::Malformed(m) => m,
        }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ProtoError {}

impl From<ProtoError> for ApiError {
    fn from(e: ProtoError) -> Self {
        match e {
            ProtoError::Unsupported(m) => {
                ApiError::from(skiff_api::Status::failure(skiff_api::StatusReason::UnsupportedMediaType, m, None))
            }
            ProtoError::Malformed(m) => ApiError::bad_request(m),
        }
    }
}

/// Decodes a whole body (magic + `runtime.Unknown`) into the object's JSON, `apiVersion` and
/// `kind` included.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let Some(rest) = body.strip_prefix(&MAGIC) else {
        return Err(ProtoError::Malformed(
            "the request body is not a Kubernetes protobuf object: it does not start with the magic bytes \"k8s\\x00\""
                .into(),
        ));
    };
    let env = Envelope::decode(rest)?;
    if !env.content_encoding.is_empty() {
        return Err(ProtoError::Unsupported(format!(
            "protobuf envelope: content encoding {:?} is not supported (only unencoded objects)",
            env.content_encoding
        )));
    }
    if !env.content_type.is_empty() && env.content_type != CONTENT_TYPE {
        return Err(ProtoError::Unsupported(format!(
            "protobuf envelope: the object's content type {:?} is not supported (only {CONTENT_TYPE})",
            env.content_type
        )));
    }
    if env.kind.is_empty() {
        return Err(ProtoError::Malformed("protobuf envelope: typeMeta.kind is empty".into()));
    }
    let Some((_, _, msg)) = KINDS.iter().find(|(v, k, _)| *k == env.kind && v.is_none_or(|v| v == env.api_version))
    else {
        let served: Vec<String> = KINDS
            .iter()
            .map(|(v, k, _)| match v {
                Some(v) => format!("{v} {k}"),
                None => k.to_string(),
            })
            .collect();
        return Err(ProtoError::Unsupported(format!(
            "Skiff decodes protobuf bodies of {} only, not {} {}; send this object as JSON (e.g. kubectl apply -f)",
            served.join(", "),
            env.api_version,
            env.kind
        )));
    };
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), Value::String(env.api_version));
    obj.insert("kind".into(), Value::String(env.kind));
    let mut path = Path::default();
    decode_message(msg, env.raw, &mut obj, 1, &mut path)?;
    Ok(Value::Object(obj))
}

/// The fields of a `runtime.Unknown`.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

impl<'a> Envelope<'a> {
    fn decode(buf: &'a [u8]) -> Result<Self, ProtoError> {
        const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
        const TYPE_META: &str = "k8s.io.apimachinery.pkg.runtime.TypeMeta";
        let err = |m: &str, e: String| ProtoError::Malformed(format!("protobuf envelope ({m}): {e}"));
        let mut env = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
            content_type: String::new(),
        };
        let mut r = Reader::new(buf);
        while !r.done() {
            let (num, wire) = r.key().map_err(|e| err(UNKNOWN, e))?;
            if wire != WIRE_LEN || !(1..=4).contains(&num) {
                return Err(ProtoError::Malformed(format!(
                    "protobuf envelope: field {num} (wire type {wire}) of {UNKNOWN} is not expected"
                )));
            }
            let bytes = r.bytes().map_err(|e| err(UNKNOWN, e))?;
            match num {
                1 => {
                    let mut t = Reader::new(bytes);
                    while !t.done() {
                        let (n, w) = t.key().map_err(|e| err(TYPE_META, e))?;
                        if w != WIRE_LEN || !(1..=2).contains(&n) {
                            return Err(ProtoError::Malformed(format!(
                                "protobuf envelope: field {n} (wire type {w}) of {TYPE_META} is not expected"
                            )));
                        }
                        let s = utf8(t.bytes().map_err(|e| err(TYPE_META, e))?).map_err(|e| err(TYPE_META, e))?;
                        if n == 1 {
                            env.api_version = s;
                        } else {
                            env.kind = s;
                        }
                    }
                }
                2 => env.raw = bytes,
                3 => env.content_encoding = utf8(bytes).map_err(|e| err(UNKNOWN, e))?,
                _ => env.content_type = utf8(bytes).map_err(|e| err(UNKNOWN, e))?,
            }
        }
        Ok(env)
    }
}

const WIRE_VARINT: u8 = 0;
const WIRE_LEN: u8 = 2;

/// A cursor over protobuf wire data.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(format!("truncated varint at byte {}", self.pos));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(format!("varint overflows 64 bits at byte {}", self.pos - 1));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    /// A field key: (field number, wire type).
    fn key(&mut self) -> Result<(u32, u8), String> {
        let at = self.pos;
        let k = self.varint()?;
        let num = k >> 3;
        if num == 0 || num > (1 << 29) - 1 {
            return Err(format!("invalid field number {num} at byte {at}"));
        }
        Ok((num as u32, (k & 7) as u8))
    }

    /// A length-delimited value.
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let at = self.pos;
        let len = self.varint()?;
        let left = self.buf.len() - self.pos;
        if len > left as u64 {
            return Err(format!("truncated: a {len}-byte value at byte {at} but only {left} bytes remain"));
        }
        let b = &self.buf[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(b)
    }
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a string is not valid UTF-8".to_string())
}

/// Where the decoder is, as a JSON path (`spec.template.spec.containers[0].ports[1]`).
#[derive(Default)]
struct Path(Vec<Seg>);

enum Seg {
    Key(&'static str),
    Index(usize),
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("the object");
        }
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

fn malformed(msg: &Message, path: &Path, e: impl fmt::Display) -> ProtoError {
    ProtoError::Malformed(format!("protobuf body: {path} ({}): {e}", msg.name))
}

/// Decodes the fields of one message into `out` (the message's own object, or its parent's
/// for an inlined message).
fn decode_message(
    msg: &'static Message,
    buf: &[u8],
    out: &mut Map<String, Value>,
    depth: usize,
    path: &mut Path,
) -> Result<(), ProtoError> {
    if depth > MAX_DEPTH {
        return Err(malformed(msg, path, format!("messages nested deeper than {MAX_DEPTH}")));
    }
    let mut r = Reader::new(buf);
    while !r.done() {
        let (num, wire) = r.key().map_err(|e| malformed(msg, path, e))?;
        let Some(field) = msg.field(num) else {
            return Err(ProtoError::Unsupported(format!(
                "protobuf body: field number {num} (wire type {wire}) of {} at {path} is not known to Skiff's \
                 protobuf decoder; send this object as JSON instead (e.g. kubectl apply -f)",
                msg.name
            )));
        };
        if field.card != Card::Inline {
            path.0.push(Seg::Key(field.json));
        }
        decode_field(msg, field, wire, &mut r, out, depth, path)?;
        if field.card != Card::Inline {
            path.0.pop();
        }
    }
    Ok(())
}

fn expect_wire(msg: &Message, field: &Field, wire: u8, want: u8, path: &Path) -> Result<(), ProtoError> {
    if wire == want {
        return Ok(());
    }
    Err(malformed(msg, path, format!("field {} has wire type {wire}, expected {want}", field.num)))
}

/// Whether a value Kubernetes would treat as unset (a Go zero value).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Stores one decoded occurrence of a non-message field according to its cardinality.
fn put(out: &mut Map<String, Value>, field: &Field, v: Value) {
    match field.card {
        Card::Rep => match out.entry(field.json).or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(a) => a.push(v),
            other => *other = Value::Array(vec![v]),
        },
        // The last occurrence wins, as in protobuf; a zero value means "unset".
        Card::One if is_zero(&v) => {
            out.remove(field.json);
        }
        Card::One | Card::Opt | Card::Inline => {
            out.insert(field.json.to_string(), v);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn decode_field(
    msg: &'static Message,
    field: &'static Field,
    wire: u8,
    r: &mut Reader<'_>,
    out: &mut Map<String, Value>,
    depth: usize,
    path: &mut Path,
) -> Result<(), ProtoError> {
    let num = |r: &mut Reader<'_>, path: &Path| -> Result<Value, ProtoError> {
        let v = r.varint().map_err(|e| malformed(msg, path, e))?;
        scalar(msg, field, v, path)
    };
    match field.ty {
        Ty::Bool | Ty::I32 | Ty::I64 => {
            if field.card == Card::Rep && wire == WIRE_LEN {
                // Packed repeated numbers.
                let bytes = r.bytes().map_err(|e| malformed(msg, path, e))?;
                let mut p = Reader::new(bytes);
                while !p.done() {
                    let v = num(&mut p, path)?;
                    put(out, field, v);
                }
                return Ok(());
            }
            expect_wire(msg, field, wire, WIRE_VARINT, path)?;
            let v = num(r, path)?;
            put(out, field, v);
        }
        Ty::Str => {
            expect_wire(msg, field, wire, WIRE_LEN, path)?;
            let s = utf8(r.bytes().map_err(|e| malformed(msg, path, e))?).map_err(|e| malformed(msg, path, e))?;
            put(out, field, Value::String(s));
        }
        Ty::Msg(sub) => {
            expect_wire(msg, field, wire, WIRE_LEN, path)?;
            let bytes = r.bytes().map_err(|e| malformed(msg, path, e))?;
            match field.card {
                Card::Inline => decode_message(sub, bytes, out, depth + 1, path)?,
                Card::Rep => {
                    let arr = match out.entry(field.json).or_insert_with(|| Value::Array(Vec::new())) {
                        Value::Array(a) => a,
                        other => {
                            *other = Value::Array(Vec::new());
                            other.as_array_mut().expect("just set")
                        }
                    };
                    path.0.push(Seg::Index(arr.len()));
                    let mut o = Map::new();
                    let res = decode_message(sub, bytes, &mut o, depth + 1, path);
                    path.0.pop();
                    res?;
                    arr.push(Value::Object(o));
                }
                Card::One | Card::Opt => {
                    // A message occurring twice is merged, as in protobuf.
                    let mut o = match out.remove(field.json) {
                        Some(Value::Object(o)) => o,
                        _ => Map::new(),
                    };
                    decode_message(sub, bytes, &mut o, depth + 1, path)?;
                    if field.card == Card::Opt || !o.is_empty() {
                        out.insert(field.json.to_string(), Value::Object(o));
                    }
                }
            }
        }
        Ty::Time | Ty::Quantity | Ty::IntOrString | Ty::FieldsV1 => {
            expect_wire(msg, field, wire, WIRE_LEN, path)?;
            let bytes = r.bytes().map_err(|e| malformed(msg, path, e))?;
            if depth + 1 > MAX_DEPTH {
                return Err(malformed(msg, path, format!("messages nested deeper than {MAX_DEPTH}")));
            }
            let v = match field.ty {
                Ty::Time => time(bytes),
                Ty::Quantity => quantity(bytes),
                Ty::IntOrString => int_or_string(bytes),
                _ => fields_v1(bytes),
            }
            .map_err(|e| malformed(msg, path, e))?;
            // A non-pointer Quantity is "0" when unset.
            let v = match (&v, field.ty, field.card) {
                (Value::String(s), Ty::Quantity, Card::One) if s == "0" => Value::Null,
                _ => v,
            };
            put(out, field, v);
        }
        Ty::StrMap | Ty::QuantityMap => {
            expect_wire(msg, field, wire, WIRE_LEN, path)?;
            let bytes = r.bytes().map_err(|e| malformed(msg, path, e))?;
            let (k, v) = map_entry(bytes, matches!(field.ty, Ty::QuantityMap)).map_err(|e| malformed(msg, path, e))?;
            match out.entry(field.json).or_insert_with(|| Value::Object(Map::new())) {
                Value::Object(m) => {
                    m.insert(k, v);
                }
                other => *other = Value::Object(Map::from_iter([(k, v)])),
            }
        }
    }
    Ok(())
}

/// A varint as the field's JSON scalar.
fn scalar(msg: &Message, field: &Field, v: u64, path: &Path) -> Result<Value, ProtoError> {
    Ok(match field.ty {
        Ty::Bool => Value::Bool(v != 0),
        Ty::I32 => {
            let i = v as i64;
            if i < i64::from(i32::MIN) || i > i64::from(i32::MAX) {
                return Err(malformed(
                    msg,
                    path,
                    format!("field {} ({}) does not fit in int32: {i}", field.num, field.json),
                ));
            }
            Value::from(i)
        }
        _ => Value::from(v as i64),
    })
}

/// The fields of a small fixed message; unknown numbers are refused.
fn small_message<'a>(
    name: &str,
    buf: &'a [u8],
    mut each: impl FnMut(u32, u8, &mut Reader<'a>) -> Result<bool, String>,
) -> Result<(), String> {
    let mut r = Reader::new(buf);
    while !r.done() {
        let (num, wire) = r.key()?;
        if !each(num, wire, &mut r)? {
            return Err(format!("field number {num} (wire type {wire}) of {name} is not known"));
        }
    }
    Ok(())
}

/// `meta.v1.Time` → RFC 3339 (seconds; Kubernetes ignores `nanos` too), `null` when empty.
fn time(buf: &[u8]) -> Result<Value, String> {
    if buf.is_empty() {
        return Ok(Value::Null);
    }
    let mut seconds: i64 = 0;
    small_message("k8s.io.apimachinery.pkg.apis.meta.v1.Time", buf, |num, wire, r| {
        match (num, wire) {
            (1, WIRE_VARINT) => seconds = r.varint()? as i64,
            (2, WIRE_VARINT) => {
                r.varint()?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let ts = jiff::Timestamp::from_second(seconds).map_err(|e| format!("time {seconds}s is out of range: {e}"))?;
    Ok(Value::String(crate::meta::format_ts(ts)))
}

/// `resource.Quantity` → its string.
fn quantity(buf: &[u8]) -> Result<Value, String> {
    let mut s = String::new();
    small_message("k8s.io.apimachinery.pkg.api.resource.Quantity", buf, |num, wire, r| {
        if (num, wire) != (1, WIRE_LEN) {
            return Ok(false);
        }
        s = utf8(r.bytes()?)?;
        Ok(true)
    })?;
    Ok(Value::String(s))
}

/// `intstr.IntOrString` → a number (type 0) or a string (type 1).
fn int_or_string(buf: &[u8]) -> Result<Value, String> {
    let (mut ty, mut int, mut string) = (0u64, 0i64, String::new());
    small_message("k8s.io.apimachinery.pkg.util.intstr.IntOrString", buf, |num, wire, r| {
        match (num, wire) {
            (1, WIRE_VARINT) => ty = r.varint()?,
            (2, WIRE_VARINT) => int = r.varint()? as i64,
            (3, WIRE_LEN) => string = utf8(r.bytes()?)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    match ty {
        0 if int < i64::from(i32::MIN) || int > i64::from(i32::MAX) => {
            Err(format!("IntOrString intVal {int} does not fit in int32"))
        }
        0 => Ok(Value::from(int)),
        1 => Ok(Value::String(string)),
        t => Err(format!("IntOrString type {t} is neither 0 (int) nor 1 (string)")),
    }
}

/// `meta.v1.FieldsV1` → the JSON document in its `Raw` bytes.
fn fields_v1(buf: &[u8]) -> Result<Value, String> {
    let mut raw: &[u8] = &[];
    small_message("k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1", buf, |num, wire, r| {
        if (num, wire) != (1, WIRE_LEN) {
            return Ok(false);
        }
        raw = r.bytes()?;
        Ok(true)
    })?;
    if raw.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(raw).map_err(|e| format!("FieldsV1 does not hold JSON: {e}"))
}

/// One map entry {key = 1, value = 2}: a string value, or a Quantity message.
fn map_entry(buf: &[u8], quantity_value: bool) -> Result<(String, Value), String> {
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    small_message("map entry", buf, |num, wire, r| {
        match (num, wire) {
            (1, WIRE_LEN) => key = utf8(r.bytes()?)?,
            (2, WIRE_LEN) if quantity_value => value = quantity(r.bytes()?)?,
            (2, WIRE_LEN) => value = Value::String(utf8(r.bytes()?)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok((key, value))
}

#[cfg(test)]
mod tests;
