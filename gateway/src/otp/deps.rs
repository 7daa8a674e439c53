//! What the OTP service's operations depend on, given explicitly.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::Notify;

use crate::config::Settings;
use crate::crypto::ServerKeys;
use crate::guards::{ConversionCounts, GuardCounters};
use crate::telemetry::funnel::Funnel;

pub struct Deps {
    pub pool: Pool,
    pub keys: Arc<ServerKeys>,
    pub settings: Arc<Settings>,
    /// Wakes this instance's dispatcher right after a commit.
    pub outbox_wake: Arc<Notify>,
    /// Wakes this instance's ZNS dispatcher right after a commit.
    pub zns_wake: Arc<Notify>,
    /// Sends refused by the pumping guards (this instance).
    pub guard_counters: GuardCounters,
    /// Codes sent and approved per number prefix (the conversion guard), flushed to the
    /// database in the background.
    pub conversion_counts: Arc<ConversionCounts>,
    pub funnel: Arc<Funnel>,
}
