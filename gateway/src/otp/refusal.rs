//! Recording a refused send: after its transaction rolled back, in a statement of its
//! own (a refusal must leave its trace even though nothing else of the send stays).

use serde_json::json;
use uuid::Uuid;

use super::admission::Fate;
use super::deps::Deps;
use super::error::OtpError;
use crate::audit;
use crate::domain::{Msisdn, Purpose};

/// Audits a refusal (`otp.rate_limited`, `guard.blocked`, `otp.template_unregistered`) and returns the error to
/// answer with. `subject` is the verification of a resend.
pub(super) async fn refused(
    deps: &Deps,
    fate: Fate,
    client: Uuid,
    msisdn: &Msisdn,
    subject: Option<Uuid>,
    purpose: Purpose,
) -> OtpError {
    let db = match deps.pool.get().await {
        Ok(db) => db,
        Err(e) => return e.into(),
    };
    match fate {
        Fate::Limited(limited) => {
            let recorded = audit::record(
                &db,
                &deps.keys,
                audit::Event {
                    event: "otp.rate_limited",
                    client: Some(client),
                    msisdn: Some(msisdn),
                    subject,
                    detail: json!({ "purpose": purpose.as_str() }),
                },
            )
            .await;
            match recorded {
                Ok(()) => limited.into(),
                Err(e) => e.into(),
            }
        }
        Fate::Guarded(blocked) => crate::guards::refuse(
            &db,
            &deps.keys,
            &deps.guard_counters,
            client,
            msisdn,
            blocked,
        )
        .await
        .into(),
        Fate::AccountLocked => OtpError::AccountLocked,
        Fate::Unregistered(u) => {
            let recorded = audit::record(
                &db,
                &deps.keys,
                audit::Event {
                    event: "otp.template_unregistered",
                    client: Some(client),
                    msisdn: Some(msisdn),
                    subject,
                    detail: json!({
                        "purpose": purpose.as_str(),
                        "carrier": u.carrier.as_str(),
                        "brandname": u.brandname,
                        "template": crate::clients::template_key(u.purpose, u.locale),
                    }),
                },
            )
            .await;
            match recorded {
                Ok(()) => OtpError::TemplateUnregistered(u),
                Err(e) => e.into(),
            }
        }
        Fate::Admitted(_) => OtpError::Failure(crate::failure::Failure::internal(
            "an admitted send was handled as refused",
        )),
    }
}
