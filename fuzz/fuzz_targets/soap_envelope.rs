//! The SOAP/ETSI parser on arbitrary bytes: never panics, and whatever it accepts
//! survives a write and a second parse unchanged.
#![no_main]

use carrier_adapters::mss::{self, PartStyle, SoapContent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((version, content)) = mss::parse_envelope(data, mss::DEFAULT_MAX_BYTES) else {
        return;
    };
    if let SoapContent::Message {
        operation: Some(op),
        message,
    } = &content
    {
        for style in [PartStyle::Unqualified, PartStyle::Qualified] {
            let written = mss::write_envelope(version, *op, message, style);
            let (_, again) = mss::parse_envelope(written.as_bytes(), usize::MAX)
                .expect("what we write parses");
            assert_eq!(&again, &content);
        }
    }
});
