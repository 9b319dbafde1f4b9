//! Multi-stage pipeline specs: a `stages:` map of command stages and training stages.
//!
//! Owns the stage format and every check the spec alone allows: names, the shape of each stage,
//! paths written as relative paths (normalised against the spec's directory and the stage's
//! `wdir`), `params` keys that exist, `env` names that may be passed. The graph (who produces
//! what, cycles, the project root) is [`crate::stages`]'s. Reads the spec file and nothing else.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::executor::{Executor, RawExecutor};
use super::params::{self, ParamFiles};
use super::raw::{RawAudit, RawData, RawModel, RawOutputs, RawTraining, Sp};
use super::template::{self, Context, Node};
use super::{Body, Checker, Located, Pos, Spec, SpecError, located, name_ok, pos, yaml_error};

/// Most stages in one pipeline.
pub const MAX_STAGES: usize = 1024;
/// Most deps or outs of one stage.
pub const MAX_PATHS: usize = 4096;

/// Environment variables a stage may never see: the signing key auditai itself reads.
const FORBIDDEN_ENV: [&str; 2] = ["AUDITAI_SIGNING_KEY", "AUDITAI_SIGNING_KEY_FILE"];

/// A spec file: a single training spec, or a multi-stage pipeline (it has `stages:`).
#[derive(Debug, Clone)]
pub enum SpecFile {
    /// Today's single-training spec (a one-stage pipeline with its own run-directory layout).
    Single(Box<Spec>),
    /// A spec with `stages:`.
    Pipeline(Box<PipelineSpec>),
}

impl SpecFile {
    /// Read and validate a spec file of either kind.
    pub fn load(path: &Path) -> Result<SpecFile, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        SpecFile::parse(&text, path)
    }

    /// Validate spec text of either kind.
    pub fn parse(text: &str, path: &Path) -> Result<SpecFile, SpecError> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default)]
            stages: Option<IgnoredAny>,
        }
        let pipeline = match serde_saphyr::from_str::<Probe>(text) {
            Ok(probe) => probe.stages.is_some(),
            // Malformed YAML: report it with the parser of the kind the text looks like.
            Err(_) => text.lines().any(|l| l.starts_with("stages:")),
        };
        if pipeline {
            PipelineSpec::parse(text, path).map(|p| SpecFile::Pipeline(Box::new(p)))
        } else {
            Spec::parse(text, path).map(|s| SpecFile::Single(Box::new(s)))
        }
    }
}

/// A validated multi-stage pipeline spec.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// Pipeline name.
    pub name: String,
    /// The pipeline's seed (training stages without their own `seed` use it).
    pub seed: Option<u64>,
    /// The `params:` values stages may read.
    pub params: BTreeMap<String, Value>,
    /// The stages, in the order written.
    pub stages: Vec<Stage>,
    /// The pipeline's run directory (logs, manifest); default `runs/<name>`.
    pub run_dir: String,
    /// Where `outputs.dir` is written in the spec (for errors), when it is.
    pub run_dir_pos: Option<Pos>,
    /// The pipeline's `executor:` (each stage's own is resolved into [`Stage::executor`]).
    pub executor: Executor,
    /// The spec file.
    pub source: PathBuf,
}

/// One stage. Paths are relative to the spec's directory, normalised (`a/../b` is `b`), and
/// may start with `../`; the runner checks they stay inside the project.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The stage name (the key under `stages:`).
    pub name: Located<String>,
    /// Files and directories the stage reads.
    pub deps: Vec<Located<String>>,
    /// Files and directories the stage writes (metrics files included).
    pub outs: Vec<Located<String>>,
    /// JSON metrics files among the outs.
    pub metrics: Vec<String>,
    /// Outs that are subjects of the manifest even when a later stage consumes them.
    pub subjects: Vec<String>,
    /// Plot files among the outs (CSV, JSON or TSV data DVC would plot), with their options.
    pub plots: Vec<(String, Value)>,
    /// Parameter files the stage reads keys of (relative to the spec's directory).
    pub param_files: Vec<Located<String>>,
    /// `frozen: true`: never run; its recorded outs are checked, never rebuilt.
    pub frozen: bool,
    /// `always_changed: true`: run every time (DVC's semantics), even when nothing changed.
    pub always_changed: bool,
    /// A training stage's params: the parameter-file values its `${…}` read (`FILE:key`),
    /// recorded like a command stage's. Empty for command stages, whose `params` hold them.
    pub template_params: BTreeMap<String, Value>,
    /// Where it runs: the pipeline's `executor:` with the stage's own over it.
    pub executor: Executor,
    /// What the stage does.
    pub kind: StageKind,
}

/// A command stage or a training stage.
#[derive(Debug, Clone)]
pub enum StageKind {
    /// A shell command.
    Command(CommandStage),
    /// auditai's own training (the training spec sections); its one out is its run directory.
    Train(Box<Spec>),
}

/// A command stage's command and what it may see.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommandStage {
    /// The command line, run by `sh -c`.
    pub cmd: String,
    /// Working directory, relative to the spec's directory.
    pub wdir: String,
    /// The declared params and their values (passed as JSON in `AUDITAI_PARAMS`).
    pub params: BTreeMap<String, Value>,
    /// Environment variables passed through; names and values are recorded.
    pub env: Vec<String>,
    /// Environment variables passed through whose values are never recorded.
    pub secret_env: Vec<String>,
    /// Stop the command after this long (the stage then fails).
    pub timeout: Option<std::time::Duration>,
}

impl Stage {
    /// The stage's command, when it is a command stage.
    pub fn command(&self) -> Option<&CommandStage> {
        match &self.kind {
            StageKind::Command(c) => Some(c),
            StageKind::Train(_) => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(default)]
    version: Option<Sp<u32>>,
    #[serde(default)]
    name: Option<Sp<String>>,
    #[serde(default)]
    seed: Option<Sp<u64>>,
    #[serde(default)]
    params: Option<Sp<Value>>,
    #[serde(default)]
    vars: Option<Sp<Vec<Sp<Node>>>>,
    #[serde(default)]
    executor: Option<Sp<RawExecutor>>,
    stages: Sp<Entries<Sp<Node>>>,
    #[serde(default)]
    outputs: Option<RawPipelineOutputs>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipelineOutputs {
    #[serde(default)]
    dir: Option<Sp<String>>,
}

type PathList = Option<Sp<Vec<Sp<String>>>>;
type EntryList = Option<Sp<Vec<Sp<OutEntry>>>>;

/// An out, metrics or plots entry as DVC writes it: `path`, or `path: {options}` (DVC's
/// `cache`, `persist`, plot `x`/`y`/`template`…; kept, not acted on).
struct OutEntry {
    path: String,
    options: Value,
}

impl<'de> Deserialize<'de> for OutEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OutEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path, or a mapping of one path to its options")
            }
            fn visit_str<E>(self, v: &str) -> Result<OutEntry, E> {
                Ok(OutEntry {
                    path: v.to_string(),
                    options: Value::Null,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OutEntry, A::Error> {
                let Some((path, options)) = m.next_entry::<String, Value>()? else {
                    return Err(serde::de::Error::custom("an empty mapping is not a path"));
                };
                if m.next_key::<IgnoredAny>()?.is_some() {
                    return Err(serde::de::Error::custom(
                        "a mapping entry names one path (`path: {options}`)",
                    ));
                }
                Ok(OutEntry { path, options })
            }
        }
        d.deserialize_any(V)
    }
}

/// A `params:` entry: a key (`train.lr`, of the spec's `params:` or else of `params.yaml`) or,
/// as in `dvc.yaml`, a parameter file with the keys the stage reads (`params.yaml: [a.b]`; none
/// listed means the whole file).
enum ParamEntry {
    Key(String),
    File(String, Option<Vec<String>>),
}

impl<'de> Deserialize<'de> for ParamEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ParamEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a param key, or a mapping of a parameter file to a list of keys")
            }
            fn visit_str<E>(self, v: &str) -> Result<ParamEntry, E> {
                Ok(ParamEntry::Key(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<ParamEntry, A::Error> {
                let Some((file, keys)) = m.next_entry::<String, Option<Vec<String>>>()? else {
                    return Err(serde::de::Error::custom("an empty mapping names no file"));
                };
                if m.next_key::<IgnoredAny>()?.is_some() {
                    return Err(serde::de::Error::custom(
                        "one parameter file per entry (`- file.yaml: [keys]`)",
                    ));
                }
                Ok(ParamEntry::File(file, keys.filter(|k| !k.is_empty())))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    #[serde(default)]
    cmd: Option<Sp<String>>,
    #[serde(default)]
    wdir: Option<Sp<String>>,
    /// DVC's free-text description: accepted, not recorded.
    #[serde(default)]
    #[allow(dead_code)]
    desc: Option<Sp<String>>,
    #[serde(default)]
    deps: PathList,
    #[serde(default)]
    outs: EntryList,
    #[serde(default)]
    metrics: EntryList,
    #[serde(default)]
    plots: EntryList,
    #[serde(default)]
    subjects: PathList,
    #[serde(default)]
    params: Option<Sp<Vec<Sp<ParamEntry>>>>,
    #[serde(default)]
    frozen: Option<Sp<bool>>,
    #[serde(default)]
    executor: Option<Sp<RawExecutor>>,
    #[serde(default)]
    always_changed: Option<Sp<bool>>,
    #[serde(default)]
    env: PathList,
    #[serde(default)]
    secret_env: PathList,
    #[serde(default)]
    timeout: Option<Sp<String>>,
    // A training stage.
    #[serde(default)]
    seed: Option<Sp<u64>>,
    #[serde(default)]
    data: Option<RawData>,
    #[serde(default)]
    model: Option<Sp<RawModel>>,
    #[serde(default)]
    training: Option<RawTraining>,
    #[serde(default)]
    audit: Option<RawAudit>,
    #[serde(default)]
    outputs: Option<RawOutputs>,
    #[serde(default)]
    out: Option<Sp<String>>,
    #[serde(default)]
    card: Option<super::CardSpec>,
}

/// A YAML mapping read in the order written, keys with their positions.
struct Entries<V>(Vec<(Sp<String>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of stage names to stages")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<V>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<Sp<String>, V>()? {
                    if out.len() >= MAX_STAGES {
                        return Err(serde::de::Error::custom(format!(
                            "a pipeline has at most {MAX_STAGES} stages"
                        )));
                    }
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V2(std::marker::PhantomData))
    }
}

impl PipelineSpec {
    /// Validate a pipeline spec's text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<PipelineSpec, SpecError> {
        let raw: RawPipeline = serde_saphyr::from_str_with_options(text, shallow())
            .map_err(|e| yaml_error(&e, path))?;
        Checker { path }.pipeline(raw)
    }

    /// The spec file's directory, which every stage path is relative to.
    pub fn base(&self) -> &Path {
        self.source
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    /// Warnings about the spec that are not errors: variables in a stage's `env:` (recorded in
    /// plain text in the lock and the manifest) whose names say they hold a secret.
    pub fn warnings(&self) -> Vec<String> {
        let secret = |n: &str| {
            let u = n.to_ascii_uppercase();
            ["TOKEN", "SECRET", "KEY", "PASS", "CREDENTIAL", "AUTH"]
                .iter()
                .any(|w| u.contains(w))
        };
        self.stages
            .iter()
            .filter_map(|s| s.command().map(|c| (s, c)))
            .flat_map(|(s, c)| {
                c.env.iter().filter(|n| secret(n)).map(move |n| {
                    format!(
                        "{}:{}: stage `{}` passes {n} through `env:`, whose value is recorded in plain text in the lock and the manifest; if it is a secret, list it under `secret_env:` instead",
                        self.source.display(),
                        s.name.pos,
                        s.name.value
                    )
                })
            })
            .collect()
    }

    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name.value == name)
    }
}

impl Checker<'_> {
    fn pipeline(&self, raw: RawPipeline) -> Result<PipelineSpec, SpecError> {
        let name = match (&raw.version, &raw.name) {
            (Some(v), Some(n)) => self.header(v, n)?,
            (v, n) => self.dvc_header(v.as_ref(), n.as_ref())?,
        };
        let params = match raw.params {
            None => BTreeMap::new(),
            Some(p) => match p.value {
                Value::Object(m) => m.into_iter().collect(),
                Value::Null => BTreeMap::new(),
                _ => return self.fail(pos(&p), "params must be a mapping of names to values"),
            },
        };
        if raw.stages.value.0.is_empty() {
            return self.fail(pos(&raw.stages), "stages must name at least one stage");
        }
        let (run_dir, run_dir_pos) = match raw.outputs.and_then(|o| o.dir) {
            Some(d) if d.value.trim().is_empty() => {
                return self.fail(pos(&d), "outputs.dir must not be empty");
            }
            Some(d) => (d.value.clone(), Some(pos(&d))),
            None => (format!("runs/{name}"), None),
        };
        let base = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let files = ParamFiles::new(base);
        let executor = raw.executor.map(|e| e.value.executor).unwrap_or_default();
        let context = self.context(&params, raw.vars, &files)?;
        let seed = raw.seed.map(|s| s.value);
        let mut stages: Vec<Stage> = Vec::new();
        for (key, body) in raw.stages.value.0 {
            if !name_ok(&key.value) {
                return self.fail(
                    pos(&key),
                    format!(
                        "stage name `{}` must be 1-128 characters of letters, digits, `-`, `_` or `.`, not starting with `.`",
                        key.value
                    ),
                );
            }
            let expanded = template::expand(&key, &body, &context).map_err(|e| self.template(e))?;
            // What `foreach`/`matrix` read names the stages; it is no one stage's param.
            context.take_used();
            for e in expanded {
                if stages.iter().any(|s| s.name.value == e.name.value) {
                    return self.fail(
                        pos(&key),
                        format!("stage `{}` is defined twice", e.name.value),
                    );
                }
                if stages.len() >= MAX_STAGES {
                    return self.fail(
                        pos(&key),
                        format!("a pipeline has at most {MAX_STAGES} stages"),
                    );
                }
                let ctx = StageContext {
                    pipeline: &name,
                    seed,
                    params: &params,
                    files: &files,
                    executor: &executor,
                };
                stages.push(self.expanded_stage(&ctx, e)?);
            }
        }
        Ok(PipelineSpec {
            name,
            seed,
            params,
            stages,
            run_dir,
            run_dir_pos,
            executor,
            source: self.path.to_path_buf(),
        })
    }

    /// A `dvc.yaml` without auditai's `version` and `name`: version 1, named after the spec's
    /// directory.
    fn dvc_header(
        &self,
        version: Option<&Sp<u32>>,
        name: Option<&Sp<String>>,
    ) -> Result<String, SpecError> {
        if let Some(v) = version.filter(|v| v.value != 1) {
            return self.fail(
                pos(v),
                format!(
                    "unsupported spec version {} (this auditai reads version 1)",
                    v.value
                ),
            );
        }
        if let Some(n) = name {
            return self.header(&serde_saphyr::Spanned::new(1, n.referenced, n.defined), n);
        }
        let dir = std::fs::canonicalize(self.path)
            .ok()
            .and_then(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .map(|d| d.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        let clean: String = dir
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .take(128)
            .collect();
        let clean = clean.trim_start_matches('.').to_string();
        Ok(if clean.is_empty() {
            "pipeline".to_string()
        } else {
            clean
        })
    }

    /// What `${…}` may name: the spec's `params:`, `params.yaml` beside the spec, and `vars:`
    /// (parameter files, `file.yaml:key,key`, or mappings).
    fn context(
        &self,
        params: &BTreeMap<String, Value>,
        vars: Option<Sp<Vec<Sp<Node>>>>,
        files: &ParamFiles,
    ) -> Result<Context, SpecError> {
        let mut c = Context::default();
        let inline: serde_json::Map<String, Value> =
            params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let top = Pos { line: 1, column: 1 };
        c.merge(&inline, "the spec's params:", None, top)
            .map_err(|e| self.template(e))?;
        let mut default_read = false;
        for var in vars.map(|v| v.value).unwrap_or_default() {
            let (values, origin) = match &var.value {
                Node::Str(spec) => {
                    let (file, keys) = match spec.rsplit_once(':') {
                        Some((f, k)) => (f, Some(k)),
                        None => (spec.as_str(), None),
                    };
                    default_read |= file == params::DEFAULT_FILE;
                    let origin = normalize(".", file);
                    (
                        self.var_file(files, file, keys, template::at(&var))?,
                        origin,
                    )
                }
                Node::Map(_) => match var.value.to_json() {
                    Value::Object(m) => (m, None),
                    _ => (serde_json::Map::new(), None),
                },
                _ => {
                    return self.fail(
                        template::at(&var),
                        "a vars: entry is a parameter file or a mapping",
                    );
                }
            };
            c.merge(&values, "vars:", origin.as_deref(), template::at(&var))
                .map_err(|e| self.template(e))?;
        }
        if !default_read {
            let doc = files
                .get(params::DEFAULT_FILE)
                .map_err(|m| SpecError::Invalid {
                    path: self.path.to_path_buf(),
                    pos: top,
                    message: m,
                })?;
            if let Some(Value::Object(m)) = doc {
                c.merge(&m, params::DEFAULT_FILE, Some(params::DEFAULT_FILE), top)
                    .map_err(|e| self.template(e))?;
            }
        }
        Ok(c)
    }

    /// One `vars:` file entry's values (only `keys`, when given).
    fn var_file(
        &self,
        files: &ParamFiles,
        file: &str,
        keys: Option<&str>,
        at: Pos,
    ) -> Result<serde_json::Map<String, Value>, SpecError> {
        let Some(rel) = normalize(".", file).filter(|_| !Path::new(file).is_absolute()) else {
            return self.fail(at, format!("`{file}` is not a relative path"));
        };
        let doc = match files.get(&rel) {
            Ok(Some(Value::Object(m))) => m,
            Ok(_) => return self.fail(at, format!("vars file {rel} does not exist")),
            Err(m) => return self.fail(at, m),
        };
        let Some(keys) = keys else {
            return Ok(doc);
        };
        let mut out = serde_json::Map::new();
        for k in keys.split(',').map(str::trim) {
            match doc.get(k) {
                Some(v) => {
                    out.insert(k.to_string(), v.clone());
                }
                None => return self.fail(at, format!("vars file {rel} has no key `{k}`")),
            }
        }
        Ok(out)
    }

    fn template(&self, e: template::TemplateError) -> SpecError {
        SpecError::Invalid {
            path: self.path.to_path_buf(),
            pos: e.pos,
            message: e.message,
        }
    }

    /// One expanded stage: interpolated, written out as YAML and checked as written, every
    /// position (in errors and in the stage) mapped back to where the user wrote it.
    fn expanded_stage(
        &self,
        ctx: &StageContext<'_>,
        e: template::Expanded,
    ) -> Result<Stage, SpecError> {
        let body = e
            .context
            .node(&e.body, false)
            .map_err(|t| self.template(t))?;
        let used = e.context.take_used();
        let wrapper = serde_saphyr::Spanned::new(
            Node::Map(vec![(e.name.clone(), body)]),
            e.name.referenced,
            e.name.defined,
        );
        let emitted = template::emit(&wrapper);
        let remap = |err: SpecError| match err {
            SpecError::Invalid { path, pos, message } => SpecError::Invalid {
                path,
                pos: emitted.written(pos),
                message,
            },
            other => other,
        };
        let parsed: Entries<RawStage> =
            serde_saphyr::from_str_with_options(&emitted.text, shallow())
                .map_err(|err| remap(yaml_error(&err, self.path)))?;
        let Some((key, raw)) = parsed.0.into_iter().next() else {
            return self.fail(pos(&e.name), "empty stage");
        };
        let mut stage = self.stage(ctx, key, raw).map_err(remap)?;
        stage.remap(|p| emitted.written(p));
        // Values `${…}` read from parameter files are the stage's params, as DVC tracks them.
        match &mut stage.kind {
            StageKind::Command(c) => {
                for (k, v) in used {
                    c.params.entry(k).or_insert(v);
                }
            }
            StageKind::Train(_) => stage.template_params = used,
        }
        Ok(stage)
    }

    /// `frozen` and `always_changed`, which exclude each other.
    fn run_flags(&self, name: &str, raw: &RawStage) -> Result<(bool, bool), SpecError> {
        let frozen = raw.frozen.as_ref().is_some_and(|f| f.value);
        match raw.always_changed.as_ref().filter(|a| a.value) {
            Some(a) if frozen => self.fail(
                pos(a),
                format!("stage `{name}` is both frozen and always_changed"),
            ),
            a => Ok((frozen, a.is_some())),
        }
    }

    /// A training stage carries none of the command stages' fields.
    fn no_command_fields(&self, name: &str, raw: &RawStage) -> Result<(), SpecError> {
        for (field, present) in [
            ("wdir", raw.wdir.as_ref().map(pos)),
            ("deps", raw.deps.as_ref().map(pos)),
            ("outs", raw.outs.as_ref().map(pos)),
            ("params", raw.params.as_ref().map(pos)),
            ("env", raw.env.as_ref().map(pos)),
            ("secret_env", raw.secret_env.as_ref().map(pos)),
            ("timeout", raw.timeout.as_ref().map(pos)),
            ("metrics", raw.metrics.as_ref().map(pos)),
            ("plots", raw.plots.as_ref().map(pos)),
            ("subjects", raw.subjects.as_ref().map(pos)),
        ] {
            if let Some(p) = present {
                return self.fail(
                    p,
                    format!(
                        "`{field}` belongs to command stages; training stage `{name}` reads data.path and writes its run directory `out`"
                    ),
                );
            }
        }
        Ok(())
    }

    fn stage(
        &self,
        ctx: &StageContext<'_>,
        key: Sp<String>,
        raw: RawStage,
    ) -> Result<Stage, SpecError> {
        let at = pos(&key);
        let (frozen, always_changed) = self.run_flags(&key.value, &raw)?;
        let executor = match raw.executor.as_ref() {
            Some(e) => ctx.executor.overlaid(&e.value.executor, e.value.kind_given),
            None => ctx.executor.clone(),
        };
        let name = key.value.clone();
        let training = raw.data.is_some()
            || raw.model.is_some()
            || raw.training.is_some()
            || raw.audit.is_some();
        match (&raw.cmd, training) {
            (Some(c), true) => {
                return self.fail(
                    pos(c),
                    format!(
                        "stage `{name}` has both `cmd` and training sections; a stage is either a command or a training stage"
                    ),
                );
            }
            (None, false) => {
                return self.fail(
                    at,
                    format!(
                        "stage `{name}` needs `cmd` (a command stage) or `data` and `model` (a training stage)"
                    ),
                );
            }
            _ => {}
        }
        let mut stage = match raw.cmd.clone() {
            Some(c) => self.command_stage(ctx, key, c, raw)?,
            None => self.training_stage(ctx, key, raw)?,
        };
        stage.frozen = frozen;
        stage.always_changed = always_changed;
        stage.executor = executor;
        Ok(stage)
    }

    /// A training stage: the training sections of a single spec, its `out` run directory.
    fn training_stage(
        &self,
        ctx: &StageContext<'_>,
        key: Sp<String>,
        raw: RawStage,
    ) -> Result<Stage, SpecError> {
        let (pipeline, seed) = (ctx.pipeline, ctx.seed);
        let at = pos(&key);
        let name = key.value.clone();
        self.no_command_fields(&name, &raw)?;
        let (Some(data), Some(model)) = (raw.data, raw.model) else {
            return self.fail(
                at,
                format!("training stage `{name}` needs both `data` and `model`"),
            );
        };
        let seed = match (raw.seed, seed) {
            (Some(s), _) => s.value,
            (None, Some(s)) => s,
            (None, None) => {
                return self.fail(
                    at,
                    format!(
                        "training stage `{name}` needs a `seed` (its own, or the pipeline's top-level seed)"
                    ),
                );
            }
        };
        if let Some(o) = raw.outputs.as_ref().and_then(|o| o.dir.as_ref()) {
            return self.fail(
                pos(o),
                format!(
                    "training stage `{name}` names its run directory with `out`, not outputs.dir"
                ),
            );
        }
        let out = match raw.out {
            Some(o) => self.path_in(".", &o)?,
            None => Located {
                value: normalize(".", &format!("models/{name}")).unwrap_or_default(),
                pos: at,
            },
        };
        let mut deps = Vec::new();
        if let Some(p) = &data.path {
            deps.push(self.path_in(".", p)?);
        }
        for src in data.sources.iter().flat_map(|l| l.value.iter()) {
            deps.push(self.path_in(".", &src.value.path)?);
            if let Some(c) = &src.value.contribution {
                deps.push(self.path_in(".", c)?);
            }
        }
        let checkpoints = raw.outputs.and_then(|o| o.checkpoints);
        let mut spec = self.training_spec(
            Body {
                name: format!("{pipeline}-{name}"),
                seed,
                data,
                model,
                training: raw.training,
                outputs: Some(RawOutputs {
                    dir: None,
                    checkpoints,
                }),
                audit: raw.audit,
                card: raw.card,
            },
            Some(name.clone()),
        )?;
        spec.outputs.dir = out.value.clone();
        Ok(Stage {
            name: located(key),
            deps,
            outs: vec![out.clone()],
            metrics: Vec::new(),
            subjects: vec![out.value],
            plots: Vec::new(),
            param_files: Vec::new(),
            frozen: false,
            always_changed: false,
            template_params: BTreeMap::new(),
            executor: Executor::default(),
            kind: StageKind::Train(Box::new(spec)),
        })
    }

    /// Environment variable names from `env:` or `secret_env:`: valid names, never the signing
    /// key's or auditai's own.
    fn env_names(&self, list: PathList) -> Result<Vec<String>, SpecError> {
        let mut out = Vec::new();
        for n in list.map(|l| l.value).unwrap_or_default() {
            let valid = n
                .value
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && n.value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return self.fail(
                    pos(&n),
                    format!("`{}` is not an environment variable name", n.value),
                );
            }
            if FORBIDDEN_ENV.contains(&n.value.as_str()) {
                return self.fail(
                    pos(&n),
                    format!(
                        "{} holds auditai's signing key; no stage may see it",
                        n.value
                    ),
                );
            }
            if n.value.starts_with("AUDITAI_") {
                return self.fail(
                    pos(&n),
                    format!(
                        "{}: AUDITAI_ variables are set by auditai, not passed through",
                        n.value
                    ),
                );
            }
            out.push(n.value);
        }
        Ok(out)
    }

    /// A command stage's `timeout:` (`90s`, `10m`, `2h`).
    fn timeout(
        &self,
        name: &str,
        raw: Option<&Sp<String>>,
    ) -> Result<Option<std::time::Duration>, SpecError> {
        Ok(match raw {
            None => None,
            Some(t) => match humantime::parse_duration(t.value.trim()) {
                Ok(d) if !d.is_zero() => Some(d),
                _ => {
                    return self.fail(
                        pos(t),
                        format!(
                            "stage `{name}`: timeout `{}` is not a duration such as `90s`, `10m` or `2h`",
                            t.value
                        ),
                    );
                }
            },
        })
    }

    /// The params a command stage reads, with their values: a key of the spec's `params:` (else
    /// of `params.yaml` in its wdir), or keys of a named parameter file (`FILE:key`; the whole
    /// file as `FILE`). Returns the values and the parameter files read.
    fn chosen_params(
        &self,
        ctx: &StageContext<'_>,
        name: &str,
        wdir: &str,
        raw: Option<Sp<Vec<Sp<ParamEntry>>>>,
    ) -> Result<ChosenParams, SpecError> {
        let mut chosen = BTreeMap::new();
        let mut files: Vec<Located<String>> = Vec::new();
        for entry in raw.map(|p| p.value).unwrap_or_default() {
            let at = pos(&entry);
            let (file, keys) = match &entry.value {
                ParamEntry::Key(k) => match lookup(ctx.params, k) {
                    Some(v) => {
                        ctx.files.charge(v).or_else(|m| self.fail(at, m))?;
                        chosen.insert(k.clone(), v.clone());
                        continue;
                    }
                    None => (params::DEFAULT_FILE, Some(vec![k.clone()])),
                },
                ParamEntry::File(f, keys) => (f.as_str(), keys.clone()),
            };
            let Some(rel) = normalize(wdir, file).filter(|_| !Path::new(file).is_absolute()) else {
                return self.fail(at, format!("`{file}` is not a relative path"));
            };
            let doc = match ctx.files.get(&rel) {
                Ok(Some(doc)) => doc,
                Ok(None) => {
                    let why = match &entry.value {
                        ParamEntry::Key(k) => format!(
                            "stage `{name}` reads param `{k}`, which neither the spec's params: nor {rel} defines ({rel} does not exist)"
                        ),
                        ParamEntry::File(..) => format!(
                            "stage `{name}` reads parameter file {rel}, which does not exist"
                        ),
                    };
                    return self.fail(at, why);
                }
                Err(m) => return self.fail(at, m),
            };
            if !files.iter().any(|f| f.value == rel) {
                files.push(Located {
                    value: rel.clone(),
                    pos: at,
                });
            }
            let Some(keys) = keys else {
                // The whole file: every leaf, as `dvc.lock` lists them.
                for (k, v) in params::leaves(&doc) {
                    ctx.files.charge(v).or_else(|m| self.fail(at, m))?;
                    chosen.insert(format!("{rel}:{k}"), v.clone());
                }
                continue;
            };
            for k in keys {
                let Some(v) = params::lookup(&doc, &k) else {
                    let whose = match &entry.value {
                        ParamEntry::Key(_) => {
                            format!("neither the spec's params: nor {rel} defines")
                        }
                        ParamEntry::File(..) => format!("{rel} does not define"),
                    };
                    return self.fail(
                        at,
                        format!("stage `{name}` reads param `{k}`, which {whose}"),
                    );
                };
                ctx.files.charge(v).or_else(|m| self.fail(at, m))?;
                chosen.insert(format!("{rel}:{k}"), v.clone());
            }
        }
        Ok((chosen, files))
    }

    /// A command stage's outs: none twice, none also a dep, every subject among them.
    fn check_outs(
        &self,
        name: &str,
        deps: &[Located<String>],
        outs: &[Located<String>],
        subjects: &[Located<String>],
    ) -> Result<(), SpecError> {
        for (i, o) in outs.iter().enumerate() {
            if outs[..i].iter().any(|p| p.value == o.value) {
                return self.fail(
                    o.pos,
                    format!("stage `{name}` lists out `{}` twice", o.value),
                );
            }
            if deps.iter().any(|d| d.value == o.value) {
                return self.fail(
                    o.pos,
                    format!(
                        "stage `{name}` lists `{}` as both a dep and an out",
                        o.value
                    ),
                );
            }
        }
        for s in subjects {
            if !outs.iter().any(|o| o.value == s.value) {
                return self.fail(
                    s.pos,
                    format!(
                        "stage `{name}`: subject `{}` is not one of its outs",
                        s.value
                    ),
                );
            }
        }
        Ok(())
    }

    fn command_stage(
        &self,
        ctx: &StageContext<'_>,
        key: Sp<String>,
        cmd: Sp<String>,
        raw: RawStage,
    ) -> Result<Stage, SpecError> {
        let name = key.value.clone();
        if let Some(p) = [
            raw.seed.as_ref().map(pos),
            raw.outputs.as_ref().and_then(|o| o.dir.as_ref()).map(pos),
            raw.out.as_ref().map(pos),
        ]
        .into_iter()
        .flatten()
        .next()
        {
            return self.fail(
                p,
                format!("`seed`, `out` and `outputs` belong to training stages, not command stage `{name}`"),
            );
        }
        if raw.card.is_some() {
            return self.fail(
                pos(&key),
                format!("`card` describes a model: it belongs to training stages, not command stage `{name}`"),
            );
        }
        if cmd.value.trim().is_empty() || cmd.value.contains('\0') {
            return self.fail(
                pos(&cmd),
                format!("stage `{name}`: cmd must be a command line"),
            );
        }
        let wdir = match &raw.wdir {
            Some(w) => self.path_in(".", w)?.value,
            None => ".".to_string(),
        };
        let paths = |list: PathList| -> Result<Vec<Located<String>>, SpecError> {
            let Some(list) = list else {
                return Ok(Vec::new());
            };
            if list.value.len() > MAX_PATHS {
                return self.fail(pos(&list), format!("at most {MAX_PATHS} paths per list"));
            }
            list.value.iter().map(|p| self.path_in(&wdir, p)).collect()
        };
        let deps = paths(raw.deps)?;
        let mut outs = paths(entry_paths(raw.outs).0)?;
        let metrics = paths(entry_paths(raw.metrics).0)?;
        let (plot_paths, plot_options) = entry_paths(raw.plots);
        let plots = paths(plot_paths)?;
        let subjects = paths(raw.subjects)?;
        for m in metrics.iter().chain(&plots) {
            if !outs.iter().any(|o| o.value == m.value) {
                outs.push(m.clone());
            }
        }
        self.check_outs(&name, &deps, &outs, &subjects)?;
        let (chosen, param_files) = self.chosen_params(ctx, &name, &wdir, raw.params)?;
        let env = self.env_names(raw.env)?;
        let secret_env = self.env_names(raw.secret_env)?;
        let timeout = self.timeout(&name, raw.timeout.as_ref())?;
        Ok(Stage {
            name: located(key),
            deps,
            metrics: metrics.into_iter().map(|m| m.value).collect(),
            subjects: subjects
                .into_iter()
                .map(|s| s.value)
                .chain(
                    outs.iter()
                        .filter(|o| is_model_file(&o.value))
                        .map(|o| o.value.clone()),
                )
                .collect(),
            plots: plots
                .into_iter()
                .map(|p| p.value)
                .zip(plot_options)
                .collect(),
            param_files,
            frozen: false,
            always_changed: false,
            template_params: BTreeMap::new(),
            executor: Executor::default(),
            outs,
            kind: StageKind::Command(CommandStage {
                cmd: cmd.value,
                wdir,
                params: chosen,
                env,
                secret_env,
                timeout,
            }),
        })
    }

    /// A path written in the spec, relative to `wdir` (itself relative to the spec's directory),
    /// normalised to a path relative to the spec's directory.
    fn path_in(&self, wdir: &str, p: &Sp<String>) -> Result<Located<String>, SpecError> {
        if Path::new(&p.value).is_absolute() {
            return self.fail(
                pos(p),
                format!(
                    "`{}` is absolute; stage paths are relative to the spec's directory",
                    p.value
                ),
            );
        }
        match normalize(wdir, &p.value) {
            Some(value) => Ok(Located { value, pos: pos(p) }),
            None => self.fail(pos(p), format!("`{}` is not a usable path", p.value)),
        }
    }
}

/// Parser options for pipeline specs: nesting bounded well below what the stack allows for the
/// recursive stage tree (a stage needs about 8 levels).
fn shallow() -> serde_saphyr::Options {
    serde_saphyr::options! { budget: serde_saphyr::budget! { max_depth: 32 } }
}

/// A stage's params with their values, and the parameter files they come from.
type ChosenParams = (BTreeMap<String, Value>, Vec<Located<String>>);

/// File extensions of trained models (scikit-learn, PyTorch, Keras, ONNX, safetensors, XGBoost,
/// LightGBM): a command stage's out with one is a subject of the manifest by default, like a
/// training stage's run directory, even when a later stage consumes it.
const MODEL_EXTENSIONS: [&str; 12] = [
    "pkl",
    "pickle",
    "joblib",
    "pt",
    "pth",
    "ckpt",
    "onnx",
    "safetensors",
    "h5",
    "keras",
    "ubj",
    "bpk",
];

fn is_model_file(path: &str) -> bool {
    Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MODEL_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// What every stage of one pipeline is checked against.
struct StageContext<'a> {
    pipeline: &'a str,
    seed: Option<u64>,
    params: &'a BTreeMap<String, Value>,
    files: &'a ParamFiles,
    executor: &'a Executor,
}

/// The paths of out/metrics/plots entries (positioned where each entry was written) and their
/// options.
fn entry_paths(list: EntryList) -> (PathList, Vec<Value>) {
    let Some(list) = list else {
        return (None, Vec::new());
    };
    let (r, d) = (list.referenced, list.defined);
    let mut paths = Vec::new();
    let mut options = Vec::new();
    for e in list.value {
        paths.push(serde_saphyr::Spanned::new(
            e.value.path,
            e.referenced,
            e.defined,
        ));
        options.push(e.value.options);
    }
    (Some(serde_saphyr::Spanned::new(paths, r, d)), options)
}

impl Stage {
    /// Map every position the stage keeps through `f` (from emitted text back to the spec).
    fn remap(&mut self, f: impl Fn(Pos) -> Pos) {
        self.name.pos = f(self.name.pos);
        for l in self
            .deps
            .iter_mut()
            .chain(&mut self.outs)
            .chain(&mut self.param_files)
        {
            l.pos = f(l.pos);
        }
        if let StageKind::Train(spec) = &mut self.kind {
            spec.remap(&f);
        }
    }
}

/// `wdir/p` with `.` and `..` resolved lexically, `/`-separated; `.` for the directory itself.
/// `None` for an empty path or one with a NUL byte.
fn normalize(wdir: &str, p: &str) -> Option<String> {
    if p.trim().is_empty() || p.contains('\0') || p.contains('\\') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in wdir.split('/').chain(p.split('/')) {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    Some(if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    })
}

/// The value at a dotted key (`train.lr`) of the params mapping.
fn lookup<'a>(params: &'a BTreeMap<String, Value>, key: &str) -> Option<&'a Value> {
    match key.split_once('.') {
        None => params.get(key),
        Some((head, rest)) => params::lookup(params.get(head)?, rest),
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<PipelineSpec, String> {
        PipelineSpec::parse(yaml, Path::new("p/pipeline.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn normalizes_paths_against_wdir() {
        assert_eq!(normalize("a", "../b/./c").as_deref(), Some("b/c"));
        assert_eq!(normalize(".", "../x").as_deref(), Some("../x"));
        assert_eq!(normalize("a", "..").as_deref(), Some("."));
        assert_eq!(normalize(".", ""), None);
    }

    #[test]
    fn command_and_training_stages() {
        let p = parse(
            "version: 1\nname: hc\nseed: 3\nparams:\n  clean:\n    min: 2\nstages:\n  clean:\n    cmd: python3 clean.py\n    wdir: scripts\n    deps: [clean.py, ../raw.csv]\n    outs: [../build/clean.csv]\n    metrics: [../build/m.json]\n    params: [clean.min]\n    env: [LANG]\n  train:\n    data: {path: build/clean.csv, label: y, task: classification}\n    model: {type: mlp}\n",
        )
        .unwrap();
        assert_eq!(p.stages.len(), 2);
        let clean = &p.stages[0];
        assert_eq!(clean.deps[0].value, "scripts/clean.py");
        assert_eq!(clean.deps[1].value, "raw.csv");
        assert_eq!(clean.outs.len(), 2);
        let c = clean.command().unwrap();
        assert_eq!(c.params["clean.min"], serde_json::json!(2));
        let train = &p.stages[1];
        assert_eq!(train.outs[0].value, "models/train");
        assert_eq!(train.deps[0].value, "build/clean.csv");
        match &train.kind {
            StageKind::Train(s) => {
                assert_eq!(s.stage.as_deref(), Some("train"));
                assert_eq!(s.seed, 3);
            }
            StageKind::Command(_) => panic!("not a training stage"),
        }
        assert_eq!(p.run_dir, "runs/hc");
    }

    #[test]
    fn refusals_name_the_position() {
        let cases = [
            ("stages:\n  a:\n    deps: [x]\n", "4:3", "needs `cmd`"),
            (
                "stages:\n  a:\n    cmd: x\n    params: [nope]\n",
                "6:14",
                "neither the spec's params:",
            ),
            (
                "stages:\n  a:\n    cmd: x\n    outs: [/etc/x]\n",
                "6:12",
                "is absolute",
            ),
            (
                "stages:\n  a:\n    cmd: x\n    env: [AUDITAI_SIGNING_KEY]\n",
                "6:11",
                "signing key",
            ),
            (
                "stages:\n  a:\n    cmd: x\n    outs: [o, o]\n",
                "6:15",
                "twice",
            ),
            (
                "stages:\n  a:\n    data: {path: d, label: y, task: regression}\n    model: {type: mlp}\n",
                "4:3",
                "needs a `seed`",
            ),
            (
                "stages:\n  a:\n    cmd: x\n    card: {intended_use: y}\n",
                "4:3",
                "`card` describes a model",
            ),
        ];
        for (body, at, what) in cases {
            let e = parse(&format!("version: 1\nname: t\n{body}")).unwrap_err();
            assert!(e.contains(&format!("pipeline.yaml:{at}:")), "{e}");
            assert!(e.contains(what), "{e}");
        }
    }
}
