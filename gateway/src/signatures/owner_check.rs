//! The owner check ("thuê bao chính chủ"): is this number registered to this person?
//! Asked of the network that serves the number now (number portability); the answer
//! never reveals the registered owner's data; each check is audited and billed.

use carrier_adapters::identity::{self, IdKind};
use uuid::Uuid;

use super::error::SignatureError;
use super::service::SignatureService;
use crate::domain::Msisdn;
use crate::failure::Failure;

/// What the portal asks.
#[derive(Debug, Clone)]
pub struct OwnerCheck {
    pub msisdn: Msisdn,
    /// `cccd`, `cmnd`, `passport`, `mst`; inferred from the number when left out.
    pub id_type: Option<String>,
    pub id_number: String,
    pub full_name: Option<String>,
    /// YYYY-MM-DD.
    pub date_of_birth: Option<String>,
}

/// The carrier's answer.
#[derive(Debug, Clone)]
pub struct OwnerMatch {
    /// `full`, `partial`, `none` or `unknown_subscriber`.
    pub result: String,
    pub carrier: carrier_adapters::Carrier,
}

fn invalid(field: &'static str, detail: impl Into<String>) -> SignatureError {
    SignatureError::InvalidField {
        field,
        detail: detail.into(),
    }
}

/// Checks the owner of `ask.msisdn` for `client`.
#[tracing::instrument(name = "signatures.owner_check", skip_all, fields(client = %client))]
pub async fn check(
    svc: &SignatureService,
    client: Uuid,
    ask: OwnerCheck,
) -> Result<OwnerMatch, SignatureError> {
    let id_type = ask
        .id_type
        .as_deref()
        .map(str::parse::<IdKind>)
        .transpose()
        .map_err(|e| invalid("id_type", e.to_string()))?;
    let (id_type, id_number) =
        identity::parse(id_type, &ask.id_number).map_err(|e| invalid("id_number", e.0))?;
    if id_type.is_enterprise() && ask.date_of_birth.is_some() {
        return Err(invalid(
            "date_of_birth",
            "an enterprise (mst) has no date of birth",
        ));
    }
    if let Some(dob) = &ask.date_of_birth {
        if chrono::NaiveDate::parse_from_str(dob.trim(), "%Y-%m-%d").is_err() {
            return Err(invalid("date_of_birth", "date_of_birth must be YYYY-MM-DD"));
        }
    }
    if ask
        .full_name
        .as_deref()
        .is_some_and(|n| n.trim().is_empty() || n.chars().count() > 200)
    {
        return Err(invalid("full_name", "full_name must be 1..=200 characters"));
    }
    let msisdn = &ask.msisdn;
    let carrier = {
        let db = svc.pool.get().await?;
        crate::mnp::carrier_of(&db, msisdn).await?
    };
    let mssp = svc
        .mssps
        .get(&carrier)
        .filter(|m| m.route.owner_check_url.is_some())
        .ok_or_else(|| invalid("msisdn", format!("{carrier} offers no owner check here")))?;
    let result = mssp
        .owner_check(
            msisdn,
            id_type,
            &id_number,
            ask.full_name.as_deref().map(str::trim),
            ask.date_of_birth.as_deref().map(str::trim),
        )
        .await
        .map_err(|e| Failure::Unavailable(e.context("carrier owner check failed")))?;
    tracing::info!(msisdn = %msisdn, %carrier, result = %result, "owner check");
    let db = svc.pool.get().await?;
    crate::audit::record(
        &db,
        &svc.keys,
        crate::audit::Event {
            event: "owner_check",
            client: Some(client),
            msisdn: Some(msisdn),
            subject: None,
            detail: serde_json::json!({ "match": result, "carrier": carrier.as_str(), "id_type": id_type.as_str() }),
        },
    )
    .await?;
    crate::billing::record(&db, &[(client, carrier.as_str(), "owner_check", 1, None)]).await?;
    Ok(OwnerMatch { result, carrier })
}
