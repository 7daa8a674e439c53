//! SMPP: the ESME bind the gateway uses ([`esme`]) and the tolerant framing the
//! simulator's SMSCs use ([`frame`]). PDU types come from rusmpp.

pub mod esme;
pub mod frame;
pub mod pool;

pub use esme::{
    BindMode, BindSnapshot, DeliveryReport, Esme, EsmeConfig, OutgoingSms, ReceiptSink,
    SmppVersion, SubmitError,
};
pub use pool::BindGroup;
