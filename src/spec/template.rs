//! DVC-style templating of pipeline stages: `${…}` interpolation, `foreach`/`do` and `matrix`.
//!
//! Owns the YAML tree a stage is written as ([`Node`], every node with its position), the
//! interpolation context (`vars:`, parameter files, the spec's `params:`, `item`/`key`), the
//! expansion of one written stage into named stages (`train@0.01`, `train@adam-64`), and the
//! re-emission of an expanded stage as YAML text with a line map back to the written positions,
//! so that every later check still names the line and column the user wrote.

use std::fmt;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::Pos;
use super::raw::Sp;

/// Most stages one written stage may expand into.
pub const MAX_EXPANDED: usize = 1024;
/// Longest interpolated string.
const MAX_STRING: usize = 1 << 20;
/// Most bytes `${…}` may insert into one pipeline's stages, all together (a large list from a
/// parameter file inserted into many fields or stages would otherwise multiply memory).
const MAX_INSERTED: usize = 256 << 20;

/// A YAML node as written.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Sp<Node>>),
    Map(Vec<(Sp<String>, Sp<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a YAML value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(Node::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some(n) = s.next_element::<Sp<Node>>()? {
                    out.push(n);
                }
                Ok(Node::Seq(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut out: Vec<(Sp<String>, Sp<Node>)> = Vec::new();
                while let Some(k) = m.next_key::<Sp<String>>()? {
                    if out.iter().any(|(o, _)| o.value == k.value) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate key `{}`",
                            k.value
                        )));
                    }
                    let v = m.next_value::<Sp<Node>>()?;
                    out.push((k, v));
                }
                Ok(Node::Map(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Where a node was written.
pub(super) fn at<T>(s: &Sp<T>) -> Pos {
    Pos {
        line: s.referenced.line(),
        column: s.referenced.column(),
    }
}

fn spanned<T>(value: T, like: &Sp<Node>) -> Sp<T> {
    serde_saphyr::Spanned::new(value, like.referenced, like.defined)
}

impl Node {
    /// The node as JSON (positions dropped).
    pub(super) fn to_json(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::from(*i),
            Node::UInt(u) => Value::from(*u),
            Node::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Node::Str(s) => Value::String(s.clone()),
            Node::Seq(v) => Value::Array(v.iter().map(|n| n.value.to_json()).collect()),
            Node::Map(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.value.clone(), v.value.to_json()))
                    .collect(),
            ),
        }
    }

    /// A JSON value as a node, every part placed where `like` was written.
    fn from_json(v: &Value, like: &Sp<Node>) -> Node {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Node::UInt(u),
                (None, Some(i), _) => Node::Int(i),
                (_, _, f) => Node::Float(f.unwrap_or(f64::NAN)),
            },
            Value::String(s) => Node::Str(s.clone()),
            Value::Array(a) => Node::Seq(
                a.iter()
                    .map(|x| spanned(Node::from_json(x, like), like))
                    .collect(),
            ),
            Value::Object(m) => Node::Map(
                m.iter()
                    .map(|(k, x)| {
                        (
                            spanned(k.clone(), like),
                            spanned(Node::from_json(x, like), like),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

/// A templating error at a written position.
#[derive(Debug)]
pub(super) struct TemplateError {
    pub pos: Pos,
    pub message: String,
}

fn fail<T>(pos: Pos, message: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError {
        pos,
        message: message.into(),
    })
}

/// What `${…}` can name: `vars:`, parameter files, the spec's `params:`, and in an expanded
/// stage `item` and `key`.
#[derive(Debug, Clone, Default)]
pub(super) struct Context {
    /// `vars:`, parameter files and the spec's `params:`, shared by every derived context.
    base: Rc<Map<String, Value>>,
    /// A stage's own `item` and `key`.
    extra: Map<String, Value>,
    /// The parameter file each top-level name of `base` came from (absent: the spec itself).
    origin: Rc<BTreeMap<String, String>>,
    /// Bytes inserted so far, shared by every context derived from this one.
    inserted: Rc<Cell<usize>>,
    /// Parameter-file values `${…}` read since the last [`Context::take_used`] (`FILE:key`).
    used: Rc<RefCell<BTreeMap<String, Value>>>,
}

impl Context {
    /// Add `values`' top-level keys, read from the parameter file `file` (or from the spec).
    /// A key already defined with another value is refused, as in DVC.
    pub(super) fn merge(
        &mut self,
        values: &Map<String, Value>,
        source: &str,
        file: Option<&str>,
        pos: Pos,
    ) -> Result<(), TemplateError> {
        for (k, v) in values {
            match self.base.get(k) {
                Some(old) if old != v => {
                    return fail(
                        pos,
                        format!(
                            "`{k}` from {source} is already defined with another value; every interpolation name must come from one place"
                        ),
                    );
                }
                _ => {
                    Rc::make_mut(&mut self.base).insert(k.clone(), v.clone());
                    if let Some(f) = file {
                        Rc::make_mut(&mut self.origin).insert(k.clone(), f.to_string());
                    }
                }
            }
        }
        Ok(())
    }

    /// The parameter-file values `${…}` read since the last call, as `FILE:key` (DVC tracks
    /// them as the stage's params).
    pub(super) fn take_used(&self) -> BTreeMap<String, Value> {
        std::mem::take(&mut *self.used.borrow_mut())
    }

    /// Note that `expr` (whose value is `v`) was read, when its name comes from a file.
    fn note_used(&self, expr: &str, v: &Value) {
        let head = expr.split(['.', '[']).next().unwrap_or(expr);
        if self.extra.contains_key(head) {
            return;
        }
        let Some(file) = self.origin.get(head) else {
            return;
        };
        let mut used = self.used.borrow_mut();
        match v {
            Value::Object(_) => {
                for (k, x) in crate::spec::params::leaves(v) {
                    used.insert(format!("{file}:{expr}.{k}"), x.clone());
                }
            }
            other => {
                used.insert(format!("{file}:{expr}"), other.clone());
            }
        }
    }

    /// Count `bytes` more inserted; an error past [`MAX_INSERTED`].
    fn charge(&self, bytes: usize, pos: Pos) -> Result<(), TemplateError> {
        let total = self.inserted.get().saturating_add(bytes);
        self.inserted.set(total);
        if total > MAX_INSERTED {
            return fail(
                pos,
                "`${…}` inserts more than 256 MiB into the stages in all",
            );
        }
        Ok(())
    }

    fn with(&self, extra: &[(&str, Value)]) -> Context {
        let mut c = self.clone();
        for (k, v) in extra {
            c.extra.insert((*k).to_string(), v.clone());
        }
        c
    }

    /// The value at `a.b[0].c`.
    fn lookup(&self, expr: &str) -> Result<&Value, String> {
        let mut segs = Vec::new();
        for part in expr.split('.') {
            let (head, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if head.is_empty() && segs.is_empty() {
                return Err(format!("`{expr}` is not a name"));
            }
            if !head.is_empty() {
                segs.push(Seg::Key(head));
            }
            while let Some(r) = rest.strip_prefix('[') {
                let Some(end) = r.find(']') else {
                    return Err(format!("`{expr}`: unclosed `[`"));
                };
                let i = r[..end]
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| format!("`{expr}`: `[{}]` is not an index", &r[..end]))?;
                segs.push(Seg::Index(i));
                rest = &r[end + 1..];
            }
            if !rest.is_empty() {
                return Err(format!("`{expr}` is not a name"));
            }
        }
        let mut cur: Option<&Value> = None;
        let mut done = String::new();
        for seg in segs {
            let next = match (seg, cur) {
                (Seg::Key(k), None) => self.extra.get(k).or_else(|| self.base.get(k)),
                (Seg::Key(k), Some(Value::Object(m))) => m.get(k),
                (Seg::Index(i), Some(Value::Array(a))) => a.get(i),
                _ => None,
            };
            let shown = match seg {
                Seg::Key(k) if done.is_empty() => k.to_string(),
                Seg::Key(k) => format!("{done}.{k}"),
                Seg::Index(i) => format!("{done}[{i}]"),
            };
            cur = Some(next.ok_or_else(|| {
                if done.is_empty() {
                    format!(
                        "`{shown}` is not defined (names come from vars:, params.yaml, the spec's params: and, in foreach/matrix stages, item and key)"
                    )
                } else {
                    format!("`{shown}` is not defined")
                }
            })?);
            done = shown;
        }
        let v = cur.ok_or_else(|| format!("`{expr}` is not a name"))?;
        self.note_used(expr, v);
        Ok(v)
    }
}

#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// One piece of an interpolated string.
enum Piece<'a> {
    Text(String),
    Expr(&'a str),
}

/// Split `s` into text and `${…}` expressions; `\${` is a literal `${`.
fn pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('\\') {
            text.push_str(&rest[..i - 1]);
            text.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        text.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else {
            return Err(format!("unclosed `${{` in `{s}`"));
        };
        if !text.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut text)));
        }
        let expr = rest[i + 2..i + end].trim();
        if expr.is_empty() {
            return Err(format!("empty `${{}}` in `{s}`"));
        }
        out.push(Piece::Expr(expr));
        rest = &rest[i + end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

/// A value written into a string: numbers and booleans as JSON writes them.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".into()),
        _ => None,
    }
}

/// A mapping written into a command line, as DVC unpacks it: `--key value`, `--flag` for true,
/// nothing for false, list items after their key.
fn unpack_args(m: &Map<String, Value>) -> Option<String> {
    let mut parts = Vec::new();
    for (k, v) in m {
        match v {
            Value::Bool(true) => parts.push(format!("--{k}")),
            Value::Bool(false) => {}
            Value::Array(a) => {
                parts.push(format!("--{k}"));
                for x in a {
                    parts.push(scalar_text(x)?);
                }
            }
            other => {
                parts.push(format!("--{k}"));
                parts.push(scalar_text(other)?);
            }
        }
    }
    Some(parts.join(" "))
}

impl Context {
    /// Interpolate one string written at `pos`. A string that is exactly one `${…}` takes the
    /// value's own type; otherwise every value must be a scalar (or, in `cmd`, a mapping).
    fn string(&self, s: &str, pos: Pos, in_cmd: bool) -> Result<Option<Value>, TemplateError> {
        if !s.contains("${") {
            return Ok(None);
        }
        let pieces = pieces(s).map_err(|m| TemplateError { pos, message: m })?;
        if let [Piece::Expr(e)] = pieces.as_slice() {
            let v = self.lookup(e).map_err(|m| TemplateError {
                pos,
                message: format!("cannot interpolate `${{{e}}}`: {m}"),
            })?;
            let v = match v {
                Value::Object(m) if in_cmd => Value::String(unpack_args(m).unwrap_or_default()),
                other => other.clone(),
            };
            self.charge(v.to_string().len(), pos)?;
            return Ok(Some(v));
        }
        let mut out = String::new();
        for p in &pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Expr(e) => {
                    let v = self.lookup(e).map_err(|m| TemplateError {
                        pos,
                        message: format!("cannot interpolate `${{{e}}}`: {m}"),
                    })?;
                    let text = match v {
                        Value::Object(m) if in_cmd => unpack_args(m),
                        other => scalar_text(other),
                    };
                    let Some(text) = text else {
                        return fail(
                            pos,
                            format!(
                                "cannot interpolate `${{{e}}}` into a string: it is a {}",
                                if v.is_array() { "list" } else { "mapping" }
                            ),
                        );
                    };
                    out.push_str(&text);
                }
            }
            if out.len() > MAX_STRING {
                return fail(pos, "an interpolated string is longer than 1 MiB");
            }
        }
        self.charge(out.len(), pos)?;
        Ok(Some(Value::String(out)))
    }

    /// A mapping key interpolated (a path entry such as `- metrics-${item}.json: {cache: false}`).
    fn key(&self, k: &Sp<String>) -> Result<Sp<String>, TemplateError> {
        let value = match self.string(&k.value, at(k), false)? {
            None => return Ok(k.clone()),
            Some(v) => scalar_text(&v).ok_or_else(|| TemplateError {
                pos: at(k),
                message: format!("`{}` must be text, not a list or mapping", k.value),
            })?,
        };
        Ok(serde_saphyr::Spanned::new(value, k.referenced, k.defined))
    }

    /// Interpolate every string under `node`, mapping keys included.
    pub(super) fn node(&self, node: &Sp<Node>, in_cmd: bool) -> Result<Sp<Node>, TemplateError> {
        let value = match &node.value {
            Node::Str(s) => match self.string(s, at(node), in_cmd)? {
                Some(v) => Node::from_json(&v, node),
                None => Node::Str(s.clone()),
            },
            Node::Seq(items) => Node::Seq(
                items
                    .iter()
                    .map(|n| self.node(n, false))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Map(entries) => Node::Map(
                entries
                    .iter()
                    .map(|(k, v)| Ok((self.key(k)?, self.node(v, k.value == "cmd")?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            other => other.clone(),
        };
        Ok(spanned(value, node))
    }
}

/// A written stage expanded: its name, its body and the context its `${…}` resolve in.
pub(super) struct Expanded {
    pub name: Sp<String>,
    pub body: Sp<Node>,
    pub context: Context,
}

/// A mapping's entries as written.
type Fields = Vec<(Sp<String>, Sp<Node>)>;

/// The stage as a map node, or an error.
fn entries(body: &Sp<Node>, name: &str) -> Result<Fields, TemplateError> {
    match &body.value {
        Node::Map(m) => Ok(m.clone()),
        _ => fail(at(body), format!("stage `{name}` must be a mapping")),
    }
}

/// A value's part of an expanded name: scalars as written, anything else by `fallback`.
fn name_part(v: &Value, fallback: impl FnOnce() -> String) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => scalar_text(v).unwrap_or_default(),
        _ => fallback(),
    }
}

/// Expand a written stage: a plain stage is itself; `foreach:` + `do:` gives one stage per item
/// (`name@item`, `name@key`, or `name@index` for non-scalar items); `matrix:` one per
/// combination (`name@a-b`).
pub(super) fn expand(
    key: &Sp<String>,
    body: &Sp<Node>,
    context: &Context,
) -> Result<Vec<Expanded>, TemplateError> {
    let mut fields = entries(body, &key.value)?;
    let take = |fields: &mut Fields, name: &str| {
        fields
            .iter()
            .position(|(k, _)| k.value == name)
            .map(|i| fields.remove(i))
    };
    let foreach = take(&mut fields, "foreach");
    let matrix = take(&mut fields, "matrix");
    let doo = take(&mut fields, "do");
    match (foreach, matrix, doo) {
        (None, None, None) => Ok(vec![Expanded {
            name: key.clone(),
            body: body.clone(),
            context: context.clone(),
        }]),
        (None, None, Some((d, _))) => fail(
            at(&d),
            format!("stage `{}`: `do` needs `foreach`", key.value),
        ),
        (Some((f, _)), Some(_), _) => fail(
            at(&f),
            format!(
                "stage `{}` has both `foreach` and `matrix`; use one",
                key.value
            ),
        ),
        (Some((f, items)), None, d) => {
            let Some((_, d)) = d else {
                return fail(
                    at(&f),
                    format!("stage `{}`: `foreach` needs a `do:` stage body", key.value),
                );
            };
            if let Some((other, _)) = fields.first() {
                return fail(
                    at(other),
                    format!(
                        "stage `{}`: with `foreach`, every stage field goes under `do:` (found `{}`)",
                        key.value, other.value
                    ),
                );
            }
            expand_foreach(key, &items, &d, context)
        }
        (None, Some((m, axes)), _) => {
            let body = spanned(Node::Map(fields), body);
            expand_matrix(key, &m, &axes, &body, context)
        }
    }
}

/// A `foreach` or matrix axis value: a list or mapping written in place, or one `${…}`.
fn iterable(node: &Sp<Node>, context: &Context, what: &str) -> Result<Value, TemplateError> {
    let v = context.node(node, false)?.value.to_json();
    match v {
        Value::Array(_) | Value::Object(_) => Ok(v),
        _ => fail(at(node), format!("{what} must be a list or a mapping")),
    }
}

fn expanded_name(key: &Sp<String>, suffix: &str, pos: Pos) -> Result<Sp<String>, TemplateError> {
    let name = format!("{}@{suffix}", key.value);
    let ok = name.len() <= 256
        && !suffix.is_empty()
        && suffix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@=+,".contains(c));
    if !ok {
        return fail(
            pos,
            format!(
                "expanded stage name `{name}` may hold only letters, digits and - _ . @ = + , (at most 256 characters); use a mapping to name the items"
            ),
        );
    }
    Ok(serde_saphyr::Spanned::new(
        name,
        key.referenced,
        key.defined,
    ))
}

fn expand_foreach(
    key: &Sp<String>,
    items: &Sp<Node>,
    body: &Sp<Node>,
    context: &Context,
) -> Result<Vec<Expanded>, TemplateError> {
    let pairs: Vec<(String, Value, Option<String>)> = match iterable(items, context, "`foreach`")? {
        Value::Array(a) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| (name_part(&v, || i.to_string()), v, None))
            .collect(),
        Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| (k.clone(), v, Some(k)))
            .collect(),
        _ => Vec::new(),
    };
    limit(pairs.len(), at(items))?;
    let mut out: Vec<Expanded> = Vec::new();
    for (suffix, item, k) in pairs {
        let name = expanded_name(key, &suffix, at(items))?;
        if out.iter().any(|e| e.name.value == name.value) {
            return fail(
                at(items),
                format!("`foreach` gives stage `{}` twice", name.value),
            );
        }
        let mut extra = vec![("item", item)];
        if let Some(k) = k {
            extra.push(("key", Value::String(k)));
        }
        out.push(Expanded {
            name,
            body: body.clone(),
            context: context.with(&extra),
        });
    }
    Ok(out)
}

fn limit(n: usize, pos: Pos) -> Result<(), TemplateError> {
    if n == 0 {
        return fail(pos, "nothing to expand: the list is empty");
    }
    if n > MAX_EXPANDED {
        return fail(
            pos,
            format!("expands into {n} stages; at most {MAX_EXPANDED}"),
        );
    }
    Ok(())
}

fn expand_matrix(
    key: &Sp<String>,
    m: &Sp<String>,
    axes: &Sp<Node>,
    body: &Sp<Node>,
    context: &Context,
) -> Result<Vec<Expanded>, TemplateError> {
    let Node::Map(axes) = &axes.value else {
        return fail(
            at(m),
            "`matrix` must map names to lists of values".to_string(),
        );
    };
    let mut lists: Vec<(String, Vec<Value>)> = Vec::new();
    let mut total: usize = 1;
    for (name, values) in axes {
        let list = match iterable(values, context, "a matrix axis")? {
            Value::Array(a) => a,
            _ => {
                return fail(
                    at(values),
                    format!("matrix axis `{}` must be a list", name.value),
                );
            }
        };
        total = total.saturating_mul(list.len());
        limit(total, at(values))?;
        lists.push((name.value.clone(), list));
    }
    limit(total, at(m))?;
    let mut out = Vec::new();
    for mut i in 0..total {
        let mut item = Map::new();
        let mut parts = Vec::new();
        for (name, list) in lists.iter().rev() {
            let j = i % list.len();
            i /= list.len();
            parts.push(name_part(&list[j], || format!("{name}{j}")));
            item.insert(name.clone(), list[j].clone());
        }
        parts.reverse();
        let name = expanded_name(key, &parts.join("-"), at(m))?;
        out.push(Expanded {
            name,
            body: body.clone(),
            context: context.with(&[("item", Value::Object(item))]),
        });
    }
    Ok(out)
}

/// An expanded stage written out as YAML, one node per line, and the position each line was
/// written at in the spec.
pub(super) struct Emitted {
    pub text: String,
    lines: Vec<Pos>,
}

impl Emitted {
    /// The written position of a position in the emitted text.
    pub(super) fn written(&self, p: Pos) -> Pos {
        usize::try_from(p.line)
            .ok()
            .and_then(|l| l.checked_sub(1))
            .and_then(|l| self.lines.get(l))
            .copied()
            .unwrap_or(p)
    }
}

/// Emit `node` (a mapping) as block YAML with scalars in JSON form on lines of their own.
pub(super) fn emit(node: &Sp<Node>) -> Emitted {
    let mut e = Emitted {
        text: String::new(),
        lines: Vec::new(),
    };
    emit_into(node, 0, &mut e);
    e
}

fn line(e: &mut Emitted, indent: usize, text: &str, pos: Pos) {
    e.text.push_str(&" ".repeat(indent));
    e.text.push_str(text);
    e.text.push('\n');
    e.lines.push(pos);
}

fn emit_into(node: &Sp<Node>, indent: usize, e: &mut Emitted) {
    match &node.value {
        Node::Map(m) if m.is_empty() => line(e, indent, "{}", at(node)),
        Node::Seq(s) if s.is_empty() => line(e, indent, "[]", at(node)),
        Node::Map(m) => {
            for (k, v) in m {
                let key = serde_json::to_string(&k.value).unwrap_or_default();
                line(e, indent, &format!("{key}:"), at(k));
                emit_into(v, indent + 2, e);
            }
        }
        Node::Seq(s) => {
            for v in s {
                line(e, indent, "-", at(v));
                emit_into(v, indent + 2, e);
            }
        }
        Node::Null => line(e, indent, "null", at(node)),
        Node::Float(f) if !f.is_finite() => {
            let t = if f.is_nan() {
                ".nan"
            } else if *f > 0.0 {
                ".inf"
            } else {
                "-.inf"
            };
            line(e, indent, t, at(node))
        }
        other => {
            let text = serde_json::to_string(&other.to_json()).unwrap_or_default();
            line(e, indent, &text, at(node))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(v: Value) -> Context {
        let mut c = Context::default();
        c.merge(
            v.as_object().unwrap(),
            "test",
            Some("p.yaml"),
            Pos::default(),
        )
        .unwrap();
        c
    }

    #[test]
    fn interpolates_with_types_and_text() {
        let c = ctx(
            json!({"a": {"b": 3, "l": [1, 2]}, "s": "x", "f": {"lr": 0.1, "v": true, "q": false}}),
        );
        let p = Pos::default();
        assert_eq!(c.string("${a.b}", p, false).unwrap(), Some(json!(3)));
        assert_eq!(c.string("${ a.l[1] }", p, false).unwrap(), Some(json!(2)));
        assert_eq!(
            c.string("n=${a.b}/${s}", p, false).unwrap(),
            Some(json!("n=3/x"))
        );
        assert_eq!(
            c.string("run ${f}", p, true).unwrap(),
            Some(json!("run --lr 0.1 --v"))
        );
        assert_eq!(c.string("\\${s}", p, false).unwrap(), Some(json!("${s}")));
        assert_eq!(c.string("plain", p, false).unwrap(), None);
        for bad in ["${nope}", "${a.c}", "x ${a}", "${s", "${}", "${a.l[9]}"] {
            assert!(c.string(bad, p, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn insertions_are_bounded_across_every_stage() {
        let c = ctx(json!({"a": 1}));
        let derived = c.with(&[("item", json!(2))]);
        assert!(c.charge(200 << 20, Pos::default()).is_ok());
        assert!(derived.charge(57 << 20, Pos::default()).is_err());
    }

    #[test]
    fn names_follow_dvc() {
        let key = serde_saphyr::from_str::<Sp<String>>("train").unwrap();
        let body: Sp<Node> =
            serde_saphyr::from_str("matrix:\n  opt: [adam, sgd]\n  bs: [16, 32]\ncmd: x\n")
                .unwrap();
        let names: Vec<String> = expand(&key, &body, &Context::default())
            .unwrap()
            .into_iter()
            .map(|e| e.name.value)
            .collect();
        assert_eq!(
            names,
            [
                "train@adam-16",
                "train@adam-32",
                "train@sgd-16",
                "train@sgd-32"
            ]
        );
        let body: Sp<Node> =
            serde_saphyr::from_str("foreach: [{a: 1}, {a: 2}]\ndo:\n  cmd: x\n").unwrap();
        let names: Vec<String> = expand(&key, &body, &Context::default())
            .unwrap()
            .into_iter()
            .map(|e| e.name.value)
            .collect();
        assert_eq!(names, ["train@0", "train@1"]);
        let body: Sp<Node> = serde_saphyr::from_str("foreach: [a/b]\ndo:\n  cmd: x\n").unwrap();
        assert!(expand(&key, &body, &Context::default()).is_err());
    }

    #[test]
    fn emitted_text_maps_back_to_written_lines() {
        let body: Sp<Node> =
            serde_saphyr::from_str("cmd: a\nouts:\n  - x\n  - y\nn: 1.5\nm: {}\n").unwrap();
        let e = emit(&body);
        let back: serde_json::Value = serde_saphyr::from_str(&e.text).unwrap();
        assert_eq!(back, body.value.to_json());
        assert_eq!(e.written(Pos { line: 5, column: 3 }).line, 3);
        assert_eq!(e.written(Pos { line: 9, column: 1 }).line, 5);
    }
}
