//! The CMS and certificate parsers behind signature verification, on arbitrary bytes:
//! never panic, never accept.
#![no_main]

use std::time::SystemTime;

use carrier_adapters::signature::{certificate_identity, verify_cms, verify_pkcs1, TrustStore, Window};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let window = Window {
        started: SystemTime::UNIX_EPOCH,
        now: SystemTime::now(),
    };
    let trust = TrustStore::default();
    // With no trusted root nothing can verify: any Ok would be a bug.
    assert!(verify_cms(data, b"challenge", &trust, window).is_err());
    let (sig, cert) = data.split_at(data.len().min(256));
    assert!(verify_pkcs1(sig, cert, b"challenge", &trust, window).is_err());
    let _ = certificate_identity(data);
});
