//! The outboxes: the SMS dispatcher that sends what the services queued, the delivery
//! receipts (their writer and their reader), the ZNS dispatcher, and the channel
//! workflows that move from one channel to the next.

mod dispatcher;
mod durable;
pub mod receipts;
pub mod workflow;
pub mod zns;

pub use dispatcher::*;
pub use receipts::ReceiptStore;
