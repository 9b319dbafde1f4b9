//! The terms vocabulary of a contribution: SPDX licence expressions, W3C DPV legal bases, the
//! CAWG training-and-data-mining permissions, jurisdictions (ISO 3166-1 alpha-2 codes and the
//! EU / EEA groups) and expiry times. Parsing and the question "does this permit that"; no I/O.

use serde::{Deserialize, Serialize};

/// A CAWG training-and-data-mining permission value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Permission {
    /// The use is allowed.
    Allowed,
    /// The use is not allowed.
    NotAllowed,
    /// The use is allowed under the constraints the statement's `constraintInfo` describes.
    Constrained,
}

impl Permission {
    /// Whether the use may go ahead (allowed, or constrained with its constraints recorded).
    pub fn permits(self) -> bool {
        self != Permission::NotAllowed
    }

    /// The CAWG word.
    pub fn word(self) -> &'static str {
        match self {
            Permission::Allowed => "allowed",
            Permission::NotAllowed => "notAllowed",
            Permission::Constrained => "constrained",
        }
    }
}

impl std::str::FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Permission, String> {
        match s {
            "allowed" => Ok(Permission::Allowed),
            "notAllowed" | "not-allowed" => Ok(Permission::NotAllowed),
            "constrained" => Ok(Permission::Constrained),
            _ => Err(format!(
                "`{s}` is not a CAWG permission (allowed, notAllowed, constrained)"
            )),
        }
    }
}

/// The uses a contribution rules on, named as the CAWG training-and-data-mining assertion names
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uses {
    /// `cawg.ai_training`: training models on the data.
    #[serde(rename = "cawg.ai_training")]
    pub ai_training: Permission,
    /// `cawg.ai_inference`: using the data as input to a model at inference time.
    #[serde(rename = "cawg.ai_inference")]
    pub ai_inference: Permission,
    /// `cawg.data_mining`: text and data mining.
    #[serde(rename = "cawg.data_mining")]
    pub data_mining: Permission,
}

/// The W3C DPV legal bases a contribution may name (GDPR Art. 6 and 9 families).
pub const LEGAL_BASES: &[&str] = &[
    "dpv:Consent",
    "dpv:ExplicitlyExpressedConsent",
    "dpv:InformedConsent",
    "dpv:Contract",
    "dpv:LegalObligation",
    "dpv:VitalInterest",
    "dpv:PublicInterest",
    "dpv:OfficialAuthorityOfController",
    "dpv:LegitimateInterest",
    "dpv:DataPublishedByDataSubject",
    "dpv:ScientificResearch",
];

/// A legal basis, `dpv:`-prefixed, checked against [`LEGAL_BASES`] (`Consent` is read as
/// `dpv:Consent`).
pub fn legal_basis(s: &str) -> Result<String, String> {
    let term = if s.starts_with("dpv:") {
        s.to_string()
    } else {
        format!("dpv:{s}")
    };
    if LEGAL_BASES.contains(&term.as_str()) {
        Ok(term)
    } else {
        Err(format!(
            "`{s}` is not a DPV legal basis auditai knows ({})",
            LEGAL_BASES.join(", ")
        ))
    }
}

/// An SPDX licence expression (`CC-BY-4.0`, `MIT OR Apache-2.0`, `LicenseRef-clinic-terms`).
pub fn license(s: &str) -> Result<String, String> {
    spdx::Expression::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("`{s}` is not an SPDX licence expression: {}", e.reason))
}

/// Whether the licence expression `expr` can be satisfied with only the licences in `allowed`
/// (SPDX ids or `LicenseRef-…` names).
pub fn license_within(expr: &str, allowed: &[String]) -> bool {
    let Ok(e) = spdx::Expression::parse(expr) else {
        return false;
    };
    e.evaluate(|req| {
        let name = match &req.license {
            spdx::LicenseItem::Spdx { id, .. } => id.name.to_string(),
            spdx::LicenseItem::Other(r) => format!("LicenseRef-{}", r.lic_ref),
        };
        allowed.iter().any(|a| a.eq_ignore_ascii_case(&name))
    })
}

/// The member states of the European Union (ISO 3166-1 alpha-2).
const EU: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];

/// The EEA beyond the EU.
const EEA_EXTRA: &[&str] = &["IS", "LI", "NO"];

/// A jurisdiction: an ISO 3166-1 alpha-2 code (upper case) or `EU` / `EEA`.
pub fn jurisdiction(s: &str) -> Result<String, String> {
    let up = s.trim().to_ascii_uppercase();
    let code = up.len() == 2 && up.bytes().all(|b| b.is_ascii_uppercase());
    if code || up == "EEA" {
        Ok(up)
    } else {
        Err(format!(
            "`{s}` is not a jurisdiction (an ISO 3166-1 alpha-2 code such as DE or US, or EU, EEA)"
        ))
    }
}

/// Whether the run's jurisdiction `run` lies within the listed `area` (a code, `EU` or `EEA`).
pub fn within(run: &str, area: &str) -> bool {
    run == area
        || (area == "EU" && EU.contains(&run))
        || (area == "EEA" && (run == "EU" || EU.contains(&run) || EEA_EXTRA.contains(&run)))
}

/// An expiry: RFC 3339, or a date `YYYY-MM-DD` meaning the end of that day (UTC). Returned as
/// RFC 3339 seconds.
pub fn expiry(s: &str) -> Result<String, String> {
    let full = if s.len() == 10 {
        format!("{s}T23:59:59Z")
    } else {
        s.to_string()
    };
    humantime::parse_rfc3339_weak(&full)
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .map_err(|_| format!("`{s}` is not a date (YYYY-MM-DD) or an RFC 3339 time"))
}

/// Whether the RFC 3339 time `at` is after `expires` (an unreadable time counts as expired).
pub fn expired(expires: &str, at: &str) -> bool {
    match (
        humantime::parse_rfc3339_weak(expires),
        humantime::parse_rfc3339_weak(at),
    ) {
        (Ok(e), Ok(a)) => a > e,
        _ => true,
    }
}

/// An EVM address: `0x` and 40 hex digits; a mixed-case address must carry a valid EIP-55
/// checksum. Returned in its checksummed form.
pub fn reward_address(s: &str) -> Result<String, String> {
    let bad = || format!("`{s}` is not an EVM address (0x and 40 hex digits)");
    let a: alloy_primitives::Address = s.parse().map_err(|_| bad())?;
    let hex = &s[2..];
    let mixed =
        hex.bytes().any(|b| b.is_ascii_lowercase()) && hex.bytes().any(|b| b.is_ascii_uppercase());
    if mixed && alloy_primitives::Address::parse_checksummed(s, None).is_err() {
        return Err(format!("`{s}` has a wrong EIP-55 checksum"));
    }
    Ok(a.to_checksum(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_parse_and_refuse() {
        assert_eq!(legal_basis("Consent").unwrap(), "dpv:Consent");
        assert!(legal_basis("dpv:Whatever").is_err());
        assert!(license("CC-BY-4.0").is_ok());
        assert!(license("MIT OR Apache-2.0").is_ok());
        assert!(license("Not a licence").is_err());
        assert!(license_within("MIT OR GPL-3.0-only", &["MIT".into()]));
        assert!(!license_within("GPL-3.0-only", &["MIT".into()]));
        assert_eq!(jurisdiction("de").unwrap(), "DE");
        assert!(jurisdiction("Germany").is_err());
        assert!(within("DE", "EU") && within("NO", "EEA") && !within("US", "EU"));
        assert_eq!(expiry("2027-01-31").unwrap(), "2027-01-31T23:59:59Z");
        assert!(expired("2027-01-31T23:59:59Z", "2027-02-01T00:00:00Z"));
        assert!(!expired("2027-01-31T23:59:59Z", "2027-01-31T00:00:00Z"));
        assert!(expiry("tomorrow").is_err());
        let a = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        assert_eq!(reward_address(&a.to_lowercase()).unwrap(), a);
        assert!(reward_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD").is_err());
        assert!(reward_address("0x123").is_err());
    }
}
