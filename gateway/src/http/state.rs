//! What every request handler shares: the services, and what the operator endpoints
//! read directly.

use std::collections::BTreeMap;
use std::sync::Arc;

use carrier_adapters::smpp::BindGroup;
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::crypto::ServerKeys;
use crate::otp::OtpService;
use crate::signatures::SignatureService;
use crate::telemetry::funnel::Funnel;

pub struct AppState {
    pub pool: Pool,
    pub keys: Arc<ServerKeys>,
    pub settings: Arc<Settings>,
    pub binds: Arc<BTreeMap<String, BindGroup>>,
    pub otp: Arc<OtpService>,
    pub signatures: Arc<SignatureService>,
    /// This instance's share of each client's request rate.
    pub client_rate: crate::limits::ClientRates,
    /// Counts and latencies by route (also given to the request middleware on its own).
    pub request_metrics: Arc<super::requests::RequestMetrics>,
    pub funnel: Arc<Funnel>,
    /// Cancelled when the instance begins to shut down: readiness turns 503 for
    /// `server.shutdown_drain` before the listener closes.
    pub shutting_down: CancellationToken,
}
