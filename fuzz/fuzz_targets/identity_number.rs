//! Identity numbers as the owner check and the simulator read them, on arbitrary text:
//! never panic, and what is accepted is canonical (normalising it again changes
//! nothing, and its kind is the kind it was read as).
#![no_main]

use carrier_adapters::identity::{self, IdKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for kind in [
        None,
        Some(IdKind::Cccd),
        Some(IdKind::Cmnd),
        Some(IdKind::Passport),
        Some(IdKind::Mst),
    ] {
        if let Ok((k, number)) = identity::parse(kind, text) {
            assert_eq!(k.normalise(&number).as_deref(), Ok(number.as_str()));
            assert!(kind.is_none_or(|given| given == k));
        }
    }
});
