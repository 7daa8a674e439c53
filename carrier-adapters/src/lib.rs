//! What talks to carriers: the Vietnamese numbering plan and routing, SMS text coding,
//! delivery receipts, and SMPP sessions (ESME side for the gateway, codec helpers for
//! the simulator's SMSCs).

pub mod identity;
pub mod mss;
pub mod numbering;
pub mod ocsp;
pub mod receipt;
pub mod retry;
pub mod signature;
pub mod smpp;
pub mod sms_text;
pub mod template;
pub mod zns;

pub use numbering::{Carrier, Msisdn, MsisdnError};

/// Where the ETSI TS 102 204 schemas and samples are (test data, never part of the
/// product): `$ETSI_SPEC_DIR`, else `shared/spec/etsi-ts-102-204` beside the checkout
/// or any directory above it.
#[cfg(test)]
pub(crate) fn etsi_spec_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("ETSI_SPEC_DIR") {
        return dir.into();
    }
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/spec/etsi-ts-102-204"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "the ETSI TS 102 204 test data is not in shared/spec beside {} or above it; set ETSI_SPEC_DIR",
                manifest.display()
            )
        })
}
