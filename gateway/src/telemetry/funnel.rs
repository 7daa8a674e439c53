//! This instance's OTP funnel and signature outcomes, for `/metrics`: counters that
//! Prometheus sums across instances. Counted after the transaction that made each event
//! committed.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Funnel {
    /// (stage, carrier) → count.
    otp: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// (carrier, status) → count.
    signatures: Mutex<BTreeMap<(String, String), u64>>,
    /// Create batches run, and the creates they held.
    create_batches: std::sync::atomic::AtomicU64,
    batched_creates: std::sync::atomic::AtomicU64,
}

impl Funnel {
    /// An OTP reached `stage` (`created`, `sent`, `delivered`, `approved`, `expired`,
    /// `locked`) on `carrier` (for `sent` and `delivered`: the route it went out on).
    pub fn otp(&self, stage: &'static str, carrier: &str, n: u64) {
        if n == 0 {
            return;
        }
        *self
            .otp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((stage, carrier.to_owned()))
            .or_insert(0) += n;
    }

    /// The create batcher ran a batch of `size` requests.
    pub fn create_batch(&self, size: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.create_batches.fetch_add(1, Relaxed);
        self.batched_creates.fetch_add(size as u64, Relaxed);
    }

    /// A signature request ended with `status`.
    pub fn signature(&self, carrier: &str, status: &str) {
        *self
            .signatures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((carrier.to_owned(), status.to_owned()))
            .or_insert(0) += 1;
    }

    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let _ = writeln!(
            out,
            "# HELP gateway_otp_create_batches_total Transactions the create batcher ran.\n# TYPE gateway_otp_create_batches_total counter\ngateway_otp_create_batches_total {}",
            self.create_batches.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gateway_otp_create_batched_total Create requests those transactions held (their ratio is the mean batch size).\n# TYPE gateway_otp_create_batched_total counter\ngateway_otp_create_batched_total {}",
            self.batched_creates.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gateway_otp_funnel_total OTPs reaching each stage, by carrier (for sent and delivered: the route).\n# TYPE gateway_otp_funnel_total counter"
        );
        for ((stage, carrier), n) in self.otp.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "gateway_otp_funnel_total{{stage=\"{stage}\",carrier=\"{carrier}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP gateway_signatures_total SIM signature requests ended, by carrier and status.\n# TYPE gateway_signatures_total counter"
        );
        for ((carrier, status), n) in self
            .signatures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "gateway_signatures_total{{carrier=\"{carrier}\",status=\"{status}\"}} {n}"
            );
        }
    }
}
