//! What a signature request is, as the portal gives it and sees it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Msisdn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignaturePurpose {
    Register,
    Login,
    AddMethod,
}

impl SignaturePurpose {
    pub fn parse(s: &str) -> Option<SignaturePurpose> {
        match s {
            "register" => Some(SignaturePurpose::Register),
            "login" => Some(SignaturePurpose::Login),
            "add_method" => Some(SignaturePurpose::AddMethod),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SignaturePurpose::Register => "register",
            SignaturePurpose::Login => "login",
            SignaturePurpose::AddMethod => "add_method",
        }
    }

    /// What the phone shows when the portal gives no text.
    pub fn default_display_text(self) -> &'static str {
        match self {
            SignaturePurpose::Register => "Xác nhận đăng ký tài khoản Cổng Dịch vụ công",
            SignaturePurpose::Login => "Xác nhận đăng nhập Cổng Dịch vụ công",
            SignaturePurpose::AddMethod => "Xác nhận thêm phương thức xác thực Cổng Dịch vụ công",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewSignature {
    pub msisdn: Msisdn,
    pub purpose: SignaturePurpose,
    pub display_text: String,
    pub data_to_sign: Vec<u8>,
    pub timeout_seconds: u32,
    pub callback_url: Option<String>,
}

/// A SIM ký số signature request. / Yêu cầu ký số trên SIM.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignatureView {
    pub id: Uuid,
    /// `pending`, then `signed` (verified), `user_cancel`, `expired`, `pin_blocked`,
    /// `card_blocked`, `no_key`, `no_cert`, `revoked`, `invalid_signature`,
    /// `carrier_error` or `canceled`.
    #[schema(example = "signed")]
    pub status: String,
    /// More about an unsuccessful end (the carrier's status code and text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,
    #[schema(example = "vinaphone")]
    pub carrier: String,
    #[schema(example = "082****088")]
    pub msisdn_masked: String,
    #[schema(example = "login")]
    pub purpose: String,
    /// Exactly what the SIM is asked to sign (base64).
    pub data_to_sign: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// When signed: the verified signature and who made it.
    #[serde(flatten)]
    pub signed: SignedView,
}

/// A verified signature and its signer, as read from the certificate: every field is
/// present once the request is `signed`, and none before.
/// / Chữ ký đã kiểm tra và thông tin người ký lấy từ chứng thư số.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct SignedView {
    /// The CMS SignedData (base64 DER) over `data_to_sign`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_cms: Option<String>,
    /// The signer's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// The signing time the signature states.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<SignerSubject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<SignerIssuer>,
    /// The certificate's validity (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// The certificate's serial number (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// How the certificate was found not revoked when the signature was verified:
    /// `ocsp` (the CA's responder, answer checked), `crl` (its CRL, when OCSP gave no
    /// answer) or `not_checked` (no status could be had and the carrier is configured
    /// to accept that).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "ocsp")]
    pub revocation: Option<String>,
}

/// The webhook sent to a signature request's `callback_url` when it ends.
/// / Sự kiện gửi tới `callback_url` khi yêu cầu ký kết thúc.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignatureEvent {
    /// Always `signature.completed` (whatever the outcome: see `data.status`).
    #[serde(rename = "type")]
    #[schema(example = "signature.completed")]
    pub kind: &'static str,
    /// When the event was made (RFC 3339).
    pub timestamp: String,
    /// The request as `GET /v1/signatures/{id}` shows it.
    pub data: SignatureView,
}

/// Who signed, from the verified certificate: stored as `signer` (jsonb).
#[derive(Debug, Serialize, Deserialize)]
pub struct Signer {
    pub subject: SignerSubject,
    pub issuer: SignerIssuer,
    /// The certificate's validity (RFC 3339).
    pub not_before: String,
    pub not_after: String,
    /// The certificate's serial number (hex).
    pub serial: String,
    /// How its revocation status was had: `ocsp`, `crl` or `not_checked`.
    #[serde(default)]
    pub revocation: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignerSubject {
    /// The holder's name (Họ và tên).
    #[schema(example = "NGUYỄN VĂN AN")]
    pub common_name: Option<String>,
    /// Identity numbers in the certificate: `CCCD`, `CMND`, `MST`, `HC` (passport).
    pub identifiers: Vec<SignerIdentifier>,
    pub organization: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignerIdentifier {
    #[serde(rename = "type")]
    #[schema(example = "CCCD")]
    pub kind: String,
    #[schema(example = "001099012345")]
    pub value: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignerIssuer {
    /// The CA (tổ chức cung cấp dịch vụ chứng thực).
    #[schema(example = "VNPT-CA SIM")]
    pub common_name: Option<String>,
}
