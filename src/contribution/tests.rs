use super::*;

const CSV: &[u8] = b"x,y,label\n1,2,a\n3,NA,b\n5,6,a\n";

fn terms() -> Terms {
    Terms {
        license: "CC-BY-4.0".into(),
        legal_basis: "dpv:Consent".into(),
        permissions: Uses {
            ai_training: Permission::Allowed,
            ai_inference: Permission::Allowed,
            data_mining: Permission::NotAllowed,
        },
        constraint_info: None,
        jurisdictions: vec!["EU".into()],
        excluded_jurisdictions: vec!["FR".into()],
        expires: "2099-01-01T00:00:00Z".into(),
        reward_address: None,
    }
}

fn made(salt: Option<&[u8; SALT_LEN]>, key: &SecretKey) -> Opened {
    let facts = describe(Path::new("d.csv"), CSV).unwrap();
    assert_eq!(facts.rows, 3);
    assert_eq!(facts.columns[1].kind, "numeric");
    assert_eq!(facts.columns[2].kind, "text");
    let bytes = create(
        "d.csv",
        facts,
        CSV,
        (Some("Clinic A".into()), terms()),
        key,
        salt,
    );
    from_bytes(Path::new("d.contribution.json"), bytes).unwrap()
}

fn usage(j: Option<&str>) -> Use<'_> {
    Use {
        jurisdiction: j,
        at: "2030-01-01T00:00:00Z".into(),
        owner: None,
        licenses: None,
    }
}

#[test]
fn a_contribution_admits_its_data_and_terms_only() {
    let key = SecretKey::generate().unwrap();
    let c = made(None, &key);
    c.check_data(CSV, None).unwrap();
    assert!(c.check_data(b"x,y,label\n", None).is_err());
    c.check_use(&usage(Some("DE"))).unwrap();
    let refusal = |r: Result<(), ContributionError>| match r {
        Err(ContributionError::Refused { refusal, .. }) => refusal,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        refusal(c.check_use(&usage(Some("FR")))),
        Refusal::Jurisdiction { .. }
    ));
    assert!(matches!(
        refusal(c.check_use(&usage(Some("US")))),
        Refusal::Jurisdiction { .. }
    ));
    assert!(matches!(
        refusal(c.check_use(&usage(None))),
        Refusal::NoJurisdiction { .. }
    ));
    let mut late = usage(Some("DE"));
    late.at = "2100-01-01T00:00:00Z".into();
    assert!(matches!(
        refusal(c.check_use(&late)),
        Refusal::Expired { .. }
    ));
    let mit = vec!["MIT".to_string()];
    let mut strict = usage(Some("DE"));
    strict.licenses = Some(&mit);
    assert!(matches!(
        refusal(c.check_use(&strict)),
        Refusal::License { .. }
    ));
    let other = SecretKey::generate().unwrap().public();
    let mut pinned = usage(Some("DE"));
    pinned.owner = Some(&other);
    assert!(matches!(
        refusal(c.check_use(&pinned)),
        Refusal::OtherOwner { .. }
    ));
}

#[test]
fn a_salted_contribution_hides_the_digest_and_needs_the_salt() {
    let key = SecretKey::generate().unwrap();
    let salt = [7u8; SALT_LEN];
    let c = made(Some(&salt), &key);
    let text = String::from_utf8_lossy(&c.bytes).to_string();
    let payload = c.statement.clone();
    assert!(!payload.data().unwrap().digest.contains_key("blake3"));
    assert!(!text.contains(&crate::hash::Digest::of(CSV).hex()));
    assert!(matches!(
        c.check_data(CSV, None),
        Err(ContributionError::Refused {
            refusal: Refusal::NeedsSalt,
            ..
        })
    ));
    c.check_data(CSV, Some(&salt)).unwrap();
    assert!(c.check_data(CSV, Some(&[8u8; SALT_LEN])).is_err());
}

#[test]
fn a_statement_not_signed_by_its_owner_is_refused() {
    let owner = SecretKey::generate().unwrap();
    let thief = SecretKey::generate().unwrap();
    let c = made(None, &owner);
    // Re-sign the same payload with another key only.
    let (mut env, _, _) = crate::manifest::open_envelope(&c.bytes).unwrap();
    env.signatures.clear();
    env.sign(&thief);
    let err = from_bytes(Path::new("c.json"), env.to_bytes()).unwrap_err();
    assert!(matches!(
        err,
        ContributionError::Refused {
            refusal: Refusal::NotSignedByOwner { .. },
            ..
        }
    ));
    // A payload whose owner was swapped to the thief's key, signed by the thief, passes the
    // signature but is then another owner: the spec's `owner:` pin catches it.
    assert!(from_bytes(Path::new("x.json"), b"{}".to_vec()).is_err());
}
