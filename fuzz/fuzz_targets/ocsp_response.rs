//! The OCSP response parser and checks, and the certificate extension readers the
//! revocation check uses, on arbitrary bytes: never panic, never accept (nothing here
//! holds the issuer's key, so no input can carry a valid signature).
#![no_main]

use std::time::SystemTime;

use carrier_adapters::ocsp;
use carrier_adapters::signature::{crl_next_update, crl_urls};
use libfuzzer_sys::fuzz_target;

/// A throw-away self-signed CA made for this target (its key was discarded).
const ISSUER: &[u8] = include_bytes!("../testdata/ocsp-issuer.der");

fuzz_target!(|data: &[u8]| {
    let query = ocsp::query(ISSUER, ISSUER, &[7; 32]).expect("a query for the issuer itself");
    assert!(ocsp::check(&query, data, ISSUER, SystemTime::now()).is_err());
    let _ = ocsp::responder_urls(data);
    let _ = crl_urls(data);
    let _ = crl_next_update(data);
});
