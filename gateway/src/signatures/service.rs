//! The signature service and what it depends on.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::config::Settings;
use crate::crypto::ServerKeys;
use crate::mssp::MsspClient;
use crate::telemetry::funnel::Funnel;

/// The signature service and what it depends on, given explicitly.
pub struct SignatureService {
    pub pool: deadpool_postgres::Pool,
    pub keys: Arc<ServerKeys>,
    pub settings: Arc<Settings>,
    /// The carriers' MSSPs.
    pub mssps: Arc<BTreeMap<carrier_adapters::Carrier, Arc<MsspClient>>>,
    /// Ids of signature requests that ended (on any instance).
    pub signature_events: tokio::sync::broadcast::Sender<Uuid>,
    pub funnel: Arc<Funnel>,
}
