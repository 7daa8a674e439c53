//! What talks to carriers: the Vietnamese numbering plan and routing, SMS text coding,
//! delivery receipts, and SMPP sessions (ESME side for the gateway, codec helpers for
//! the simulator's SMSCs).

pub mod mss;
pub mod numbering;
pub mod receipt;
pub mod signature;
pub mod smpp;
pub mod sms_text;

pub use numbering::{Carrier, Msisdn, MsisdnError};
