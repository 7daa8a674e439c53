//! What the MSSP is told about us in every message, and what its status codes end a
//! request as.

use std::time::SystemTime;

use carrier_adapters::mss::{ApInfo, MsspInfo, StatusCode};
use chrono::{DateTime, Utc};

use super::service::SignatureService;
use crate::mssp::MsspClient;

pub(super) fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(super) fn ap_info(mssp: &MsspClient, svc: &SignatureService, ap_trans_id: &str) -> ApInfo {
    use secrecy::ExposeSecret;
    ApInfo {
        ap_id: mssp.route.ap_id.clone(),
        ap_trans_id: ap_trans_id.to_owned(),
        ap_pwd: mssp.route.ap_pwd.expose_secret().to_owned(),
        instant: rfc3339(SystemTime::now()),
        ap_url: mssp.dialect.calls_back().then(|| {
            format!(
                "{}/carriers/{}/mss",
                svc.settings
                    .signatures
                    .public_base_url
                    .trim_end_matches('/'),
                mssp.carrier
            )
        }),
    }
}

pub(super) fn mssp_info(mssp: &MsspClient) -> MsspInfo {
    MsspInfo {
        mssp_id: mssp.route.mssp_id.clone(),
        instant: None,
    }
}

/// The gateway status an ETSI status ends a request with (`None`: not an end).
pub(super) fn ending(code: StatusCode) -> Option<&'static str> {
    Some(match code {
        StatusCode::RequestOk
        | StatusCode::Signature
        | StatusCode::ValidSignature
        | StatusCode::OutstandingTransaction => return None,
        StatusCode::ExpiredTransaction => "expired",
        StatusCode::UserCancel => "user_cancel",
        StatusCode::PinNrBlocked => "pin_blocked",
        StatusCode::CardBlocked => "card_blocked",
        StatusCode::NoKeyFound => "no_key",
        StatusCode::NoCertFound => "no_cert",
        StatusCode::RevokedCertificate => "revoked",
        StatusCode::InvalidSignature => "invalid_signature",
        _ => "carrier_error",
    })
}
