//! The binds of one route: N sessions to one SMSC, each with its own window and TPS
//! share; a submit goes to the bound session with the most room.

use std::sync::Arc;
use std::time::Duration;

use super::{BindSnapshot, Esme, OutgoingSms, SubmitError};

#[derive(Debug, Clone)]
pub struct BindGroup {
    route: Arc<str>,
    binds: Vec<Esme>,
}

impl BindGroup {
    pub fn new(route: &str, binds: Vec<Esme>) -> BindGroup {
        BindGroup {
            route: route.into(),
            binds,
        }
    }

    pub fn route(&self) -> &str {
        &self.route
    }

    /// Whether at least one bind that can submit is up.
    pub fn is_bound(&self) -> bool {
        self.binds
            .iter()
            .any(|b| b.mode().can_submit() && b.is_bound())
    }

    /// How long every bind has been down (`None` while any is bound).
    pub fn down_for(&self) -> Option<Duration> {
        self.binds
            .iter()
            .map(Esme::down_for)
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }

    pub fn bound_count(&self) -> usize {
        self.binds.iter().filter(|b| b.is_bound()).count()
    }

    pub async fn wait_bound(&self, timeout: Duration) -> bool {
        for bind in &self.binds {
            if !bind.wait_bound(timeout).await {
                return false;
            }
        }
        true
    }

    /// Submits on the bound session with the most free window; the ids of the parts.
    pub async fn submit(&self, sms: &OutgoingSms) -> Result<Vec<String>, SubmitError> {
        let best = self
            .binds
            .iter()
            .filter(|b| b.mode().can_submit() && b.is_bound())
            .max_by_key(|b| b.available());
        match best {
            Some(bind) => bind.submit(sms).await,
            None => Err(SubmitError::NotBound {
                route: self.route.to_string(),
            }),
        }
    }

    pub fn snapshots(&self) -> Vec<BindSnapshot> {
        self.binds.iter().map(Esme::snapshot).collect()
    }
}
