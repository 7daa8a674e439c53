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
