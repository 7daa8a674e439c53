//! SMPP: the ESME bind the gateway uses and the tolerant framing the simulator's SMSCs
//! use ([`frame`]). PDU types come from rusmpp.
//!
//! One bind is four parts: [`config`] (what it is told), [`handle`] (the [`Esme`] its
//! callers submit through), [`session`] (the task that dials, binds, answers and
//! redials), [`pdu`] (pure: the PDUs it writes and reads, fuzzed) and [`stats`] (its
//! counters). [`pool`] groups the binds of one route.

pub mod config;
pub mod frame;
pub mod handle;
pub mod pdu;
pub mod pool;
pub mod session;
pub mod stats;

pub use config::{BindMode, EsmeConfig, SenderTps, SmppVersion};
pub use handle::{Esme, SubmitError};
pub use pdu::{DeliveryReport, OutgoingSms};
pub use pool::BindGroup;
pub use session::ReceiptSink;
pub use stats::BindSnapshot;
