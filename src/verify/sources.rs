//! The data sources of a training run (`data.sources`): each contribution re-checked from the
//! copy the run carries (its owner's signature, that the manifest records its terms as signed,
//! expiry at the run's start, the training permission, the run's jurisdiction, the policy's
//! licences), and its data: the manifest's digest of the file against the one the owner signed,
//! or for a withheld file the salted commitment, checked only when the salt is revealed.

use std::path::Path;

use super::Options;
use crate::contribution::{self, Opened, Use};
use crate::manifest::{ContributionRecord, SourceRecord, Statement};
use crate::report::{CheckId, Report, Status};

/// One row per recorded source.
pub(super) fn check_sources(path: &Path, st: &Statement, opts: &Options, report: &mut Report) {
    let Some(ext) = st.predicate.auditai.as_ref() else {
        return;
    };
    let policy = opts
        .trust
        .policy
        .as_ref()
        .and_then(|p| p.contributions.clone())
        .unwrap_or_default();
    let ctx = Ctx {
        dir: crate::run_dir::of_manifest(path),
        st,
        at: &st.predicate.run_details.metadata.started_on,
        jurisdiction: ext.jurisdiction.as_deref(),
        policy: &policy,
        opts,
    };
    for s in &ext.sources {
        let label = format!("{} {}", CheckId::Source.label(), s.name);
        let (status, detail) = match &s.contribution {
            None if policy.required => (
                Status::Fail,
                "has no contribution statement, and the policy requires one".to_string(),
            ),
            None => (Status::Skip, "no contribution statement".to_string()),
            Some(c) => match ctx.one(s, c) {
                Ok(x) => x,
                Err(why) => (Status::Fail, why),
            },
        };
        report.push(CheckId::Source, label, status, detail);
    }
}

/// What every source is checked against.
struct Ctx<'a> {
    dir: &'a Path,
    st: &'a Statement,
    at: &'a str,
    jurisdiction: Option<&'a str>,
    policy: &'a crate::trust::ContributionPolicy,
    opts: &'a Options,
}

impl Ctx<'_> {
    /// Check one source with a contribution: `Err` is a failure's reason.
    fn one(&self, s: &SourceRecord, c: &ContributionRecord) -> Result<(Status, String), String> {
        let (dir, at, jurisdiction, policy) = (self.dir, self.at, self.jurisdiction, self.policy);
        let file = crate::fsio::safe_join(dir, &c.path).map_err(|e| e.to_string())?;
        let bytes = crate::fsio::read_bounded(&file, crate::fsio::MAX_DOCUMENT)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if !crate::hash::hex_eq(&crate::hash::sha256_hex(&bytes), &c.sha256) {
            return Err(format!(
                "{} is not the contribution the manifest records",
                c.path
            ));
        }
        let opened = contribution::from_bytes(&file, bytes).map_err(|e| e.to_string())?;
        if opened.record(&c.path) != *c {
            return Err("the manifest records other terms than the owner signed".into());
        }
        opened
            .check_use(&Use {
                jurisdiction,
                at: at.to_string(),
                owner: None,
                licenses: policy.licenses.as_deref(),
            })
            .map_err(|e| e.to_string())?;
        let owner = opened.statement.owner_label();
        let terms = format!(
            "owner {owner}, {}, {}, cawg.ai_training {}",
            c.terms.license,
            c.terms.legal_basis,
            c.terms.permissions.ai_training.word()
        );
        let now = crate::manifest::now_rfc3339();
        let lapsed = if contribution::terms::expired(&c.terms.expires, &now) {
            format!("; the terms have expired since ({})", c.terms.expires)
        } else {
            String::new()
        };
        let data = self.data_binding(s, &opened)?;
        let (status, data) = match data {
            Binding::Checked(d) => (Status::Pass, d),
            Binding::Withheld => (
                Status::Claimed,
                format!(
                    "data withheld, committed by {owner} (--reveal {}=SALT_FILE checks it)",
                    s.name
                ),
            ),
        };
        Ok((status, format!("{terms}; {data}{lapsed}")))
    }

    /// The manifest's digest (or commitment) of the source against the owner's; a withheld file is
    /// re-hashed with the revealed salt.
    fn data_binding(&self, s: &SourceRecord, opened: &Opened) -> Result<Binding, String> {
        let opts = self.opts;
        let dep = self
            .st
            .predicate
            .build_definition
            .resolved_dependencies
            .iter()
            .find(|d| d.name.as_deref() == Some(s.name.as_str()))
            .ok_or_else(|| format!("the manifest has no dependency {}", s.name))?;
        let Some(commitment) = opened.statement.commitment() else {
            let signed = opened
                .statement
                .data()
                .and_then(|d| d.digest.get("blake3"))
                .cloned()
                .unwrap_or_default();
            let recorded = dep.digest.get("blake3").cloned().unwrap_or_default();
            if !crate::hash::hex_eq(&signed, &recorded) {
                return Err(format!(
                    "the owner signed data blake3 {signed}, the manifest records {recorded}"
                ));
            }
            return Ok(Binding::Checked(
                "the data is the file the owner signed".into(),
            ));
        };
        let recorded = dep.digest.get(contribution::SALTED_DIGEST);
        if recorded.is_none_or(|r| !crate::hash::hex_eq(r, commitment))
            || s.commitment.as_deref() != Some(commitment)
        {
            return Err("the manifest's commitment is not the one the owner signed".into());
        }
        let Some(salt) = opts.reveal.salt_for(&s.name) else {
            return Ok(Binding::Withheld);
        };
        let root = opts
            .root
            .clone()
            .unwrap_or_else(|| crate::provenance::project_root(self.dir));
        let path = crate::fsio::safe_join(&root, &s.name).map_err(|e| e.to_string())?;
        let bytes = crate::fsio::read_bounded(&path, crate::data::MAX_DATA_BYTES)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if crate::hash::hex_eq(&contribution::salted(salt, &bytes), commitment) {
            Ok(Binding::Checked(
                "revealed: the file and salt match the owner's commitment".into(),
            ))
        } else {
            Err("revealed: the file and salt do not match the owner's commitment".into())
        }
    }
}

enum Binding {
    Checked(String),
    Withheld,
}
