//! Admitting a run's data sources before anything runs: each source's contribution read, its
//! owner's signature, its data, its expiry and its terms checked against the run's declared
//! jurisdiction and the policy's requirements. The first refusal stops the run.

use std::path::PathBuf;

use super::{ContributionError, Opened, Refusal, SALT_LEN, Use};
use crate::data::SourceBytes;
use crate::sign::PublicKey;
use crate::spec::{Spec, resolve};

/// What a run declares and a policy demands of its sources.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RunTerms {
    /// Where the run processes the data (`run --jurisdiction`).
    pub jurisdiction: Option<String>,
    /// Every source must have a contribution (policy `contributions.required`).
    pub required: bool,
    /// Licences the policy accepts (`None`: any).
    pub licenses: Option<Vec<String>>,
}

/// One admitted source.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The data file.
    pub path: PathBuf,
    /// Its contribution, checked.
    pub contribution: Option<Opened>,
    /// With a withheld contribution: the salted commitment the manifest records instead of the
    /// file's digest.
    pub commitment: Option<String>,
}

/// Check every source of `spec` (its bytes in `files`, in spec order) at time `at`.
pub fn admit(
    spec: &Spec,
    files: &[SourceBytes],
    terms: &RunTerms,
    at: &str,
) -> Result<Vec<Admitted>, ContributionError> {
    let source_err = |path: &PathBuf, inner: ContributionError| ContributionError::Source {
        source_file: path.clone(),
        inner: Box::new(inner),
    };
    if spec.data.sources.is_empty() {
        let f = &files[0];
        if terms.required {
            return Err(source_err(
                &f.path,
                ContributionError::Refused {
                    path: spec.source.clone(),
                    refusal: Refusal::Missing,
                },
            ));
        }
        return Ok(vec![Admitted {
            path: f.path.clone(),
            contribution: None,
            commitment: None,
        }]);
    }
    let mut out = Vec::new();
    for (s, f) in spec.data.sources.iter().zip(files) {
        let one = || -> Result<Admitted, ContributionError> {
            let Some(c) = &s.contribution else {
                if terms.required {
                    return Err(ContributionError::Refused {
                        path: spec.source.clone(),
                        refusal: Refusal::Missing,
                    });
                }
                return Ok(Admitted {
                    path: f.path.clone(),
                    contribution: None,
                    commitment: None,
                });
            };
            let opened = super::open(&resolve(&c.value, &spec.source))?;
            let owner = s
                .owner
                .as_ref()
                .map(|o| PublicKey::read(&resolve(&o.value, &spec.source)))
                .transpose()?;
            let salt: Option<[u8; SALT_LEN]> = s
                .salt
                .as_ref()
                .map(|p| super::read_salt(&resolve(&p.value, &spec.source)))
                .transpose()?;
            opened.check_data(&f.bytes, salt.as_ref())?;
            opened.check_use(&Use {
                jurisdiction: terms.jurisdiction.as_deref(),
                at: at.to_string(),
                owner: owner.as_ref(),
                licenses: terms.licenses.as_deref(),
            })?;
            Ok(Admitted {
                path: f.path.clone(),
                commitment: opened.statement.commitment().map(str::to_string),
                contribution: Some(opened),
            })
        };
        out.push(one().map_err(|e| source_err(&f.path, e))?);
    }
    Ok(out)
}
