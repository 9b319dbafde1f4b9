//! Where a pipeline stage runs: `executor:` at the top of a multi-stage spec or on a stage,
//! `local` (a child process of `auditai run`, the default) or `slurm` (a Slurm job, with its
//! resources).
//!
//! Owns the executor's format and its checks. Running on Slurm is [`crate::stages`]'s.

use std::fmt;

use serde::Serialize;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// Most extra `sbatch` arguments.
const MAX_SBATCH_ARGS: usize = 64;

/// Where stages run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// A child process of `auditai run`.
    #[default]
    Local,
    /// A Slurm job submitted with `sbatch`.
    Slurm,
}

impl fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        })
    }
}

/// An executor and the resources a Slurm job asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Executor {
    /// Where the stage runs.
    #[serde(rename = "type")]
    pub kind: ExecutorKind,
    /// `--partition`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--cpus-per-task`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// `--mem` (`4G`, `500M`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// `--gpus`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// `--time` (`10:00`, `1-00:00:00`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// More `sbatch` arguments (`--account=ml`, `--qos=short`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sbatch: Vec<String>,
}

impl Executor {
    /// `self`, with the fields `stage` sets taken from it (a stage's executor over the
    /// pipeline's).
    pub fn overlaid(&self, stage: &Executor, kind_given: bool) -> Executor {
        Executor {
            kind: if kind_given { stage.kind } else { self.kind },
            partition: stage.partition.clone().or_else(|| self.partition.clone()),
            cpus: stage.cpus.or(self.cpus),
            mem: stage.mem.clone().or_else(|| self.mem.clone()),
            gpus: stage.gpus.or(self.gpus),
            time: stage.time.clone().or_else(|| self.time.clone()),
            sbatch: if stage.sbatch.is_empty() {
                self.sbatch.clone()
            } else {
                stage.sbatch.clone()
            },
        }
    }

    /// The `sbatch` arguments for these resources.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(p) = &self.partition {
            a.push(format!("--partition={p}"));
        }
        if let Some(c) = self.cpus {
            a.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            a.push(format!("--mem={m}"));
        }
        if let Some(g) = self.gpus {
            a.push(format!("--gpus={g}"));
        }
        if let Some(t) = &self.time {
            a.push(format!("--time={t}"));
        }
        a.extend(self.sbatch.iter().cloned());
        a
    }
}

/// An executor as written: `slurm`, or `{type: slurm, cpus: 4, …}`; whether `type` was given.
#[derive(Debug, Clone, Default)]
pub(super) struct RawExecutor {
    pub executor: Executor,
    pub kind_given: bool,
}

impl<'de> Deserialize<'de> for RawExecutor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawExecutor;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`local`, `slurm`, or a mapping with `type` and resources")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawExecutor, E> {
                Ok(RawExecutor {
                    executor: Executor {
                        kind: kind(v).map_err(E::custom)?,
                        ..Executor::default()
                    },
                    kind_given: true,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RawExecutor, A::Error> {
                let mut r = RawExecutor::default();
                while let Some(k) = m.next_key::<String>()? {
                    let e = &mut r.executor;
                    match k.as_str() {
                        "type" => {
                            e.kind = kind(&m.next_value::<String>()?).map_err(custom)?;
                            r.kind_given = true;
                        }
                        "partition" => e.partition = Some(word(m.next_value()?)?),
                        "cpus" => e.cpus = Some(positive(m.next_value()?)?),
                        "gpus" => e.gpus = Some(m.next_value()?),
                        "mem" => e.mem = Some(word(m.next_value()?)?),
                        "time" => e.time = Some(word(m.next_value()?)?),
                        "sbatch" => {
                            let args: Vec<String> = m.next_value()?;
                            if args.len() > MAX_SBATCH_ARGS
                                || args.iter().any(|a| !a.starts_with('-') || a.contains('\n'))
                            {
                                return Err(custom(format!(
                                    "sbatch: at most {MAX_SBATCH_ARGS} options, each starting with `-` (`--account=ml`)"
                                )));
                            }
                            e.sbatch = args;
                        }
                        other => {
                            return Err(custom(format!(
                                "unknown field `{other}`, expected one of type, partition, cpus, mem, gpus, time, sbatch"
                            )));
                        }
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_any(V)
    }
}

fn custom<E: serde::de::Error>(m: impl fmt::Display) -> E {
    E::custom(m)
}

fn kind(v: &str) -> Result<ExecutorKind, String> {
    match v {
        "local" => Ok(ExecutorKind::Local),
        "slurm" => Ok(ExecutorKind::Slurm),
        other => Err(format!("executor `{other}`: expected `local` or `slurm`")),
    }
}

/// A resource value passed to `sbatch` as one argument: no spaces, quotes or control characters.
fn word<E: serde::de::Error>(v: String) -> Result<String, E> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:,+=@/".contains(c));
    if ok {
        Ok(v)
    } else {
        Err(custom(format!("`{v}` is not a Slurm resource value")))
    }
}

fn positive<E: serde::de::Error>(v: u32) -> Result<u32, E> {
    if v == 0 {
        Err(custom("cpus must be at least 1"))
    } else {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_forms_and_overlays() {
        let r: RawExecutor = serde_saphyr::from_str("slurm").unwrap();
        assert_eq!(r.executor.kind, ExecutorKind::Slurm);
        let top: RawExecutor =
            serde_saphyr::from_str("{type: slurm, partition: debug, cpus: 2, sbatch: [--qos=x]}")
                .unwrap();
        let stage: RawExecutor = serde_saphyr::from_str("{time: '5:00', cpus: 4}").unwrap();
        let e = top.executor.overlaid(&stage.executor, stage.kind_given);
        assert_eq!(e.kind, ExecutorKind::Slurm);
        assert_eq!(
            e.sbatch_args(),
            [
                "--partition=debug",
                "--cpus-per-task=4",
                "--time=5:00",
                "--qos=x"
            ]
        );
        for bad in [
            "{type: k8s}",
            "{cpus: 0}",
            "{mem: '4 G'}",
            "{sbatch: [x]}",
            "{nodes: 2}",
        ] {
            assert!(serde_saphyr::from_str::<RawExecutor>(bad).is_err(), "{bad}");
        }
    }
}
