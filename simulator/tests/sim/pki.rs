//! The simulated CAs and SIM keys, checked by the gateway's verifier.

use std::time::{Duration, SystemTime};

use carrier_adapters::signature::{verify_cms, verify_pkcs1, TrustStore, VerifyError, Window};
use simulator::pki::{generate_key, Lifetime, SimCa, SimCredential, SubjectInfo};

fn subject() -> SubjectInfo {
    SubjectInfo {
        full_name: "Trần Thị Bích Ngọc".into(),
        identifiers: vec![
            ("CCCD".into(), "079190001234".into()),
            ("CMND".into(), "025123456".into()),
        ],
        province: Some("Thành phố Hồ Chí Minh".into()),
        organization: None,
    }
}

fn window() -> Window {
    Window {
        started: SystemTime::now() - Duration::from_secs(60),
        now: SystemTime::now(),
    }
}

struct Fixture {
    ca: SimCa,
    other_ca: SimCa,
    sim: SimCredential,
    expired: SimCredential,
    revoked: SimCredential,
}

fn fixture() -> Fixture {
    let ca = SimCa::new(
        "Viettel-CA SIM (simulated)",
        "Viettel Group",
        generate_key().unwrap(),
    )
    .unwrap();
    let other_ca = SimCa::new("Rogue CA", "Nobody", generate_key().unwrap()).unwrap();
    let issue = |lifetime| {
        let key = generate_key().unwrap();
        let cert = ca.issue(&subject(), &key, lifetime).unwrap();
        SimCredential::new(key, cert)
    };
    let sim = issue(Lifetime::Current);
    let expired = issue(Lifetime::Expired);
    let revoked = issue(Lifetime::Current);
    ca.revoke(&revoked.cert_der).unwrap();
    Fixture {
        ca,
        other_ca,
        sim,
        expired,
        revoked,
    }
}

#[test]
fn signatures_verify_and_every_bad_case_is_refused() {
    let f = fixture();
    let trust = TrustStore::new(
        vec![f.ca.certificate_der().to_vec()],
        vec![f.ca.crl_der().unwrap()],
    )
    .unwrap();
    let data = b"challenge 7f3a: dang nhap Cong DVC";

    // A good CMS signature: identity read by OID, both UIDs, Vietnamese name intact.
    let cms = f.sim.sign_cms(data).unwrap();
    let v = verify_cms(&cms, data, &trust, window()).unwrap();
    assert_eq!(v.subject.common_name.as_deref(), Some("Trần Thị Bích Ngọc"));
    assert_eq!(
        v.subject.identifiers,
        vec![
            ("CCCD".into(), "079190001234".into()),
            ("CMND".into(), "025123456".into())
        ]
    );
    assert_eq!(
        v.issuer_common_name.as_deref(),
        Some("Viettel-CA SIM (simulated)")
    );
    assert!(v.not_before < SystemTime::now() && v.not_after > SystemTime::now());

    // Signature over other data.
    assert_eq!(
        verify_cms(&cms, b"something else", &trust, window()).unwrap_err(),
        VerifyError::ContentMismatch
    );
    // Tampered signature value.
    let mut tampered = cms.clone();
    let n = tampered.len();
    tampered[n - 3] ^= 0x40;
    assert_eq!(
        verify_cms(&tampered, data, &trust, window()).unwrap_err(),
        VerifyError::BadSignature
    );
    // Unknown CA.
    let rogue = TrustStore::new(vec![f.other_ca.certificate_der().to_vec()], vec![]).unwrap();
    assert_eq!(
        verify_cms(&cms, data, &rogue, window()).unwrap_err(),
        VerifyError::UnknownCa
    );
    // Expired and revoked certificates.
    let expired = f.expired.sign_cms(data).unwrap();
    assert_eq!(
        verify_cms(&expired, data, &trust, window()).unwrap_err(),
        VerifyError::Expired
    );
    let revoked = f.revoked.sign_cms(data).unwrap();
    assert_eq!(
        verify_cms(&revoked, data, &trust, window()).unwrap_err(),
        VerifyError::Revoked
    );
    // A signing time outside the transaction.
    let late = Window {
        started: SystemTime::now() + Duration::from_secs(3600),
        now: SystemTime::now() + Duration::from_secs(3700),
    };
    assert_eq!(
        verify_cms(&cms, data, &trust, late).unwrap_err(),
        VerifyError::SigningTimeOutOfRange
    );

    // PKCS#1: verified against the separately fetched certificate, returned as CMS that
    // verifies on its own.
    let raw = f.sim.sign_pkcs1(data);
    let v = verify_pkcs1(&raw, &f.sim.cert_der, data, &trust, window()).unwrap();
    let again = verify_cms(&v.cms_der, data, &trust, window()).unwrap();
    assert_eq!(again.subject, v.subject);
    assert_eq!(
        verify_pkcs1(&raw, &f.sim.cert_der, b"other", &trust, window()).unwrap_err(),
        VerifyError::BadSignature
    );
    assert_eq!(
        verify_pkcs1(&raw, &f.expired.cert_der, data, &trust, window()).unwrap_err(),
        VerifyError::BadSignature,
        "a signature checked against another SIM's certificate"
    );
    let raw_revoked = f.revoked.sign_pkcs1(data);
    assert_eq!(
        verify_pkcs1(&raw_revoked, &f.revoked.cert_der, data, &trust, window()).unwrap_err(),
        VerifyError::Revoked
    );
}

#[test]
fn without_the_crl_revocation_is_unknown_only_when_crls_are_required() {
    let f = fixture();
    let data = b"x";
    // A CRL of another issuer says nothing about this certificate: status unknown.
    let trust = TrustStore::new(
        vec![f.ca.certificate_der().to_vec()],
        vec![f.other_ca.crl_der().unwrap()],
    )
    .unwrap();
    let cms = f.sim.sign_cms(data).unwrap();
    assert!(matches!(
        verify_cms(&cms, data, &trust, window()).unwrap_err(),
        VerifyError::RevocationUnknown(_)
    ));
}
