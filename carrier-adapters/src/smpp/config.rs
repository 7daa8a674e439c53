//! What one bind is told: where the SMSC is, who we are, how we bind and how fast we
//! may go. Plain data, read from the gateway's configuration.

use std::time::Duration;

/// SMPP interface version announced in the bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SmppVersion {
    #[serde(rename = "3.4")]
    V34,
    #[serde(rename = "5.0")]
    V50,
}

/// How a session binds: one transceiver, or a transmitter (submits) or a receiver
/// (receipts) of a transmitter + receiver pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    Transceiver,
    Transmitter,
    Receiver,
}

impl BindMode {
    pub fn can_submit(self) -> bool {
        self != BindMode::Receiver
    }
}

#[derive(Debug, Clone)]
pub struct EsmeConfig {
    pub mode: BindMode,
    /// Route name, for logs (`viettel`, `aggregator`, …).
    pub route: String,
    pub host: String,
    pub port: u16,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub version: SmppVersion,
    /// Most submit_sm outstanding at once on this bind.
    pub window: usize,
    /// Most submit_sm per second on this bind (the carrier's contracted TPS share).
    pub tps: Option<u32>,
    pub enquire_link_interval: Duration,
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
    /// First pause before dialling again; it doubles while dials keep failing.
    pub reconnect_min: Duration,
    /// Largest pause while the SMSC's host answers (a refused connection, a refused bind,
    /// a session that dropped): the SMSC is restarting or flapping, not gone, and the
    /// first bind after it is back must come soon.
    pub reconnect_max_answering: Duration,
    /// Largest pause while the host does not answer at all (connect timed out or the
    /// network is unreachable).
    pub reconnect_max: Duration,
    /// A session that stays bound this long resets the back-off; one that dies sooner
    /// (an SMSC dropping every session after a few PDUs) keeps it growing.
    pub stable_after: Duration,
    /// Most parts per second per brandname, shared by every bind of the route.
    pub sender_tps: std::sync::Arc<SenderTps>,
}

/// Limits a carrier sets per brandname (sender), in submit_sm per second: each part of
/// a concatenated message is one. One value is shared by all binds of a route, so the
/// limit holds for the route on this instance whatever bind a part goes out on (like
/// `tps`, it is this instance's share).
#[derive(Default)]
pub struct SenderTps {
    limits: std::collections::BTreeMap<String, (u32, governor::DefaultDirectRateLimiter)>,
}

impl SenderTps {
    /// From brandname → parts per second (a 0 is no limit).
    pub fn new(limits: &std::collections::BTreeMap<String, u32>) -> SenderTps {
        SenderTps {
            limits: limits
                .iter()
                .filter_map(|(sender, &tps)| {
                    let quota = governor::Quota::per_second(std::num::NonZeroU32::new(tps)?);
                    Some((sender.clone(), (tps, governor::RateLimiter::direct(quota))))
                })
                .collect(),
        }
    }

    /// Takes `parts` submits of `sender`'s limit, waiting until they fit, but not past
    /// `until`: then false (the parts taken so far are spent, and nothing may be sent).
    /// At once for a brandname without a limit.
    pub async fn take(
        &self,
        sender: &str,
        parts: usize,
        until: Option<std::time::Instant>,
    ) -> bool {
        let Some((_, limiter)) = self.limits.get(sender) else {
            return true;
        };
        for _ in 0..parts {
            match until {
                Some(until) => {
                    let wait = tokio::time::Instant::from_std(until);
                    if tokio::time::timeout_at(wait, limiter.until_ready())
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
                None => limiter.until_ready().await,
            }
        }
        true
    }

    /// The limit of `sender`, if it has one.
    pub fn limit(&self, sender: &str) -> Option<u32> {
        self.limits.get(sender).map(|(tps, _)| *tps)
    }
}

impl std::fmt::Debug for SenderTps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.limits.iter().map(|(s, (tps, _))| (s, tps)))
            .finish()
    }
}
