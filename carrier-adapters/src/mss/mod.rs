//! ETSI TS 102 204 v1.1.2 (Mobile Signature Service) messages over SOAP: values, a
//! writer and a parser. Pure code: bytes in, values out.
//!
//! Messages are RPC/literal: the body holds an operation element (`mss:MSS_Signature`)
//! whose part (`MSS_SignatureReq`) is unqualified (`xmlns=""`) in the WSDL but qualified
//! by many implementations; both are accepted, and either can be written. The operation
//! element itself is accepted qualified or unqualified (a WSDL-generated client such as
//! zeep writes `<MSS_Signature>` in no namespace).
//!
//! `message` holds the values, `write` and `parse` the two directions.

pub mod dialect;
mod message;
mod parse;
mod write;
pub mod xml;

pub use message::*;
pub use parse::{parse_document, parse_envelope};
pub use write::{write_document, write_envelope, write_fault};

#[cfg(test)]
mod tests;
