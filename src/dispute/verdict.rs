//! A dispute's verdict: the SLSA Verification Summary form of `verify --attest`, whose subjects
//! are the two runs' manifests and whose auditai extension carries the whole game (header and
//! every signed move) and the referee's judgement; and the checks `verify` makes of one.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Comparison, DisputeFile, Header, State, fold};
use crate::manifest::ResourceDescriptor;
use crate::sign::Envelope;
use crate::vsa::{self, Input, VerdictStatement, VerificationResult, Vsa};

/// How the game ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Ending {
    /// The referee replayed the one step left.
    Replayed {
        /// The step replayed (from the state after it).
        step: usize,
        /// The state the referee reached.
        replayed: State,
        /// Per party: whether its claim matched.
        matches: [bool; 2],
        /// Per party: how its claim compared.
        details: [String; 2],
    },
    /// A party did not answer the open request of this round.
    NoAnswer {
        /// The round.
        round: usize,
        /// 0 or 1.
        party: usize,
    },
}

/// The dispute in a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisputeSummary {
    /// The header.
    pub header: Header,
    /// Every move, as signed.
    pub moves: Vec<Envelope>,
    /// How it ended.
    pub ending: Ending,
    /// The party found right (0 or 1), when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<usize>,
    /// The parties found wrong.
    pub losers: Vec<usize>,
}

impl DisputeSummary {
    /// Who won and lost, from the ending.
    pub fn decide(ending: &Ending) -> (Option<usize>, Vec<usize>) {
        match ending {
            Ending::NoAnswer { party, .. } => (Some(1 - party), vec![*party]),
            Ending::Replayed { matches, .. } => match matches {
                [true, false] => (Some(0), vec![1]),
                [false, true] => (Some(1), vec![0]),
                [false, false] => (None, vec![0, 1]),
                [true, true] => (None, Vec::new()),
            },
        }
    }
}

/// The verdict statement about the two manifests (paths relative to `out`'s directory).
pub fn statement(
    file: &DisputeFile,
    dispute: &Path,
    ending: Ending,
    out: &Path,
) -> VerdictStatement {
    let (winner, losers) = DisputeSummary::decide(&ending);
    let base = crate::run_dir::of_manifest(dispute);
    let out_dir = crate::run_dir::of_manifest(out);
    let inputs: Vec<Input> = file
        .header
        .parties
        .iter()
        .map(|p| Input {
            uri: crate::fsio::relative_to(out_dir, &base.join(&p.run)),
            digest: BTreeMap::from([("sha256".to_string(), p.manifest_sha256.clone())]),
        })
        .collect();
    let subject = inputs
        .iter()
        .map(|i| ResourceDescriptor {
            name: Some(i.uri.clone()),
            uri: None,
            digest: i.digest.clone(),
            annotations: None,
        })
        .collect();
    let passed = losers.is_empty();
    let t = crate::provenance::toolchain();
    VerdictStatement {
        statement_type: crate::manifest::STATEMENT_TYPE.to_string(),
        subject,
        predicate_type: vsa::VSA_PREDICATE.to_string(),
        predicate: Vsa {
            verifier: vsa::Verifier {
                id: vsa::VERIFIER_ID.to_string(),
                version: BTreeMap::from([("auditai".to_string(), t.auditai)]),
            },
            time_verified: crate::manifest::now_rfc3339(),
            resource_uri: crate::fsio::relative_to(out_dir, dispute),
            policy: vsa::PolicyRef {
                uri: "auditai:dispute".to_string(),
                digest: BTreeMap::from([("sha256".to_string(), file.header.hash())]),
            },
            input_attestations: inputs,
            verification_result: if passed {
                VerificationResult::Passed
            } else {
                VerificationResult::Failed
            },
            verified_levels: if passed {
                vec!["AUDITAI_DISPUTE_NO_FAULT".to_string()]
            } else {
                Vec::new()
            },
            slsa_version: "1.0".to_string(),
            auditai: vsa::Extension {
                schema: vsa::EXTENSION_SCHEMA.to_string(),
                kind: vsa::VerdictKind::Dispute,
                checks: Vec::new(),
                audit: None,
                dispute: Some(Box::new(DisputeSummary {
                    header: file.header.clone(),
                    moves: file.moves.clone(),
                    ending,
                    winner,
                    losers,
                })),
            },
        },
    }
}

/// What `verify` finds in a dispute verdict: every move re-checked (signatures, chain, turns,
/// the intervals), the ending consistent with the moves, and who won as the ending says. The
/// referee's replay itself is a claim (`auditai audit dispute` re-does it). `Err` is a failure.
pub fn check(d: &DisputeSummary) -> Result<String, String> {
    let file = DisputeFile {
        header: d.header.clone(),
        moves: d.moves.clone(),
    };
    let mut game = fold(&file)?;
    if let Some((lo, _)) = super::next_interval(&d.header, &game) {
        game.settle(lo != game.lo);
    } else if let Ending::Replayed { step, .. } = &d.ending {
        // A tolerance game: the referee's decision on the last round is its claim.
        game.settle(*step != game.lo);
    }
    if DisputeSummary::decide(&d.ending) != (d.winner, d.losers.clone()) {
        return Err("the winner and losers do not follow from the ending".into());
    }
    match &d.ending {
        Ending::NoAnswer { round, party } => {
            let open = game.open_request().filter(|_| *round == game.rounds.len());
            match open {
                Some(r) if r.answers[*party].is_none() => Ok(format!(
                    "{} moves chained and signed; party {} did not answer round {round}",
                    d.moves.len(),
                    party + 1
                )),
                _ => Err(format!("party {} answered round {round}", party + 1)),
            }
        }
        Ending::Replayed {
            step,
            replayed,
            matches,
            ..
        } => {
            if !game.narrowed() || game.open_request().is_some() || *step != game.lo {
                return Err(format!(
                    "the game stands at steps {}..{}, not at the one step {step} replayed",
                    game.lo, game.hi
                ));
            }
            if d.header.comparison == Comparison::Bitwise {
                for (p, m) in matches.iter().enumerate() {
                    let claim = game.claim(&d.header, p, game.hi);
                    if (claim.as_ref() == Some(replayed)) != *m {
                        return Err(format!(
                            "party {}'s claim at step {} does not compare with the replay as the verdict says",
                            p + 1,
                            game.hi
                        ));
                    }
                }
            }
            Ok(format!(
                "{} moves chained and signed over {} round(s); the referee replayed step {} -> {} ({})",
                d.moves.len(),
                game.rounds.len(),
                step,
                step + 1,
                match d.header.comparison {
                    Comparison::Bitwise => "compared bitwise",
                    Comparison::Tolerance =>
                        "compared within tolerances: the parties committed to different backends",
                }
            ))
        }
    }
}
