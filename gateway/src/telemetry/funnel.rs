//! This instance's OTP funnel and signature outcomes, for `/metrics`: counters that
//! Prometheus sums across instances. Counted after the transaction that made each event
//! committed.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
    carrier: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignatureLabels {
    carrier: String,
    status: String,
}

#[derive(Debug, Default)]
pub struct Funnel {
    otp: Family<StageLabels, Counter>,
    signatures: Family<SignatureLabels, Counter>,
    /// Create batches run, and the creates they held.
    create_batches: Counter,
    batched_creates: Counter,
}

impl Funnel {
    /// An OTP reached `stage` (`created`, `sent`, `delivered`, `approved`, `expired`,
    /// `locked`) on `carrier` (for `sent` and `delivered`: the route it went out on).
    pub fn otp(&self, stage: &'static str, carrier: &str, n: u64) {
        if n == 0 {
            return;
        }
        self.otp
            .get_or_create(&StageLabels {
                stage,
                carrier: carrier.to_owned(),
            })
            .inc_by(n);
    }

    /// A create batch of `size` requests ran.
    pub fn create_batch(&self, size: usize) {
        self.create_batches.inc();
        self.batched_creates.inc_by(size as u64);
    }

    /// A signature request ended with `status`.
    pub fn signature(&self, carrier: &str, status: &str) {
        self.signatures
            .get_or_create(&SignatureLabels {
                carrier: carrier.to_owned(),
                status: status.to_owned(),
            })
            .inc();
    }

    /// The funnel's families, into the registry a scrape encodes.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_otp_create_batches",
            "Transactions the create path ran",
            self.create_batches.clone(),
        );
        registry.register(
            "gateway_otp_create_batched",
            "Create requests those transactions held (their ratio is the mean batch size)",
            self.batched_creates.clone(),
        );
        registry.register(
            "gateway_otp_funnel",
            "OTPs reaching each stage, by carrier (for sent and delivered: the route)",
            self.otp.clone(),
        );
        registry.register(
            "gateway_signatures",
            "SIM signature requests ended, by carrier and status",
            self.signatures.clone(),
        );
    }
}
