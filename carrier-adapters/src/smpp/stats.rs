//! Counters of one bind (submits, receipts, errors by status, receipt latency, binds),
//! and the snapshot that metrics and health read of it.

use super::config::BindMode;

/// Submit times remembered for receipt latency; beyond this the oldest are forgotten.
const LATENCY_MEMORY: usize = 50_000;
/// Counters of one bind, for metrics and health.
#[derive(Debug, Default)]
pub struct BindStats {
    pub(super) submitted: std::sync::atomic::AtomicU64,
    pub(super) receipts: std::sync::atomic::AtomicU64,
    pub(super) errors: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    pub(super) last_receipt_latency_ms: std::sync::atomic::AtomicU64,
    pub(super) submit_times: std::sync::Mutex<(
        std::collections::HashMap<String, std::time::Instant>,
        std::collections::VecDeque<String>,
    )>,
    /// Submits per second over the last minute: (second, count) buckets.
    pub(super) recent: std::sync::Mutex<std::collections::VecDeque<(u64, u64)>>,
    /// Since when the session has been down (`None` while bound).
    pub(super) down_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// Successful binds since start (a flapping SMSC shows as a fast-growing count).
    pub(super) binds: std::sync::atomic::AtomicU64,
}

impl BindStats {
    pub(super) fn set_bound(&self, bound: bool) {
        let mut down = self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        match (bound, *down) {
            (true, _) => *down = None,
            (false, None) => *down = Some(std::time::Instant::now()),
            (false, Some(_)) => {}
        }
    }

    pub(super) fn record_submit(&self, message_id: &str) {
        use std::sync::atomic::Ordering;
        self.submitted.fetch_add(1, Ordering::Relaxed);
        let key = crate::receipt::normalise_message_id(message_id);
        {
            let mut times = self.submit_times.lock().unwrap_or_else(|p| p.into_inner());
            if times.1.len() >= LATENCY_MEMORY {
                if let Some(old) = times.1.pop_front() {
                    times.0.remove(&old);
                }
            }
            times.0.insert(key.clone(), std::time::Instant::now());
            times.1.push_back(key);
        }
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        match recent.back_mut() {
            Some((s, n)) if *s == second => *n += 1,
            _ => recent.push_back((second, 1)),
        }
        while recent.front().is_some_and(|(s, _)| *s + 60 < second) {
            recent.pop_front();
        }
    }

    pub(super) fn record_error(&self, label: &str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(label.to_owned())
            .or_default() += 1;
    }

    pub(super) fn record_receipt(&self, message_id: &str) {
        use std::sync::atomic::Ordering;
        self.receipts.fetch_add(1, Ordering::Relaxed);
        let key = crate::receipt::normalise_message_id(message_id);
        let (dec, hex) = crate::receipt::alternate_message_ids(&key);
        let times = self.submit_times.lock().unwrap_or_else(|p| p.into_inner());
        let sent = [Some(key), dec, hex]
            .into_iter()
            .flatten()
            .find_map(|k| times.0.get(&k).copied());
        if let Some(sent) = sent {
            self.last_receipt_latency_ms
                .store(sent.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }

    pub(super) fn submits_per_second(&self) -> f64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        // The last ten whole seconds.
        let n: u64 = recent
            .iter()
            .filter(|(s, _)| *s < now && *s + 10 >= now)
            .map(|(_, n)| n)
            .sum();
        n as f64 / 10.0
    }
}

/// What metrics and health show of a bind.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BindSnapshot {
    pub route: String,
    pub mode: BindMode,
    pub bound: bool,
    pub window_size: usize,
    pub window_in_use: usize,
    pub tps_limit: Option<u32>,
    pub submitted_total: u64,
    pub submits_per_second: f64,
    pub errors_by_status: std::collections::BTreeMap<String, u64>,
    pub receipts_total: u64,
    pub last_receipt_latency_ms: Option<u64>,
    pub throttled_for_ms: u64,
    /// Successful binds since start.
    pub binds_total: u64,
}
