//! The SMS outbox: the dispatcher that sends what the services queued, and the delivery
//! receipts (their writer and their reader).

mod dispatcher;
pub mod receipts;

pub use dispatcher::*;
pub use receipts::ReceiptStore;
