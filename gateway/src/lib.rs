//! The OTP and SIM-signature gateway: REST API, OTP service, durable SMS outbox over
//! SMPP, configuration and the demo.

pub mod audit;
pub mod billing;
pub mod clients;
pub mod config;
pub mod crypto;
/// `gateway demo`: the simulator and the gateway together (the `demo` feature).
#[cfg(feature = "demo")]
pub mod demo;
pub mod domain;
pub mod failure;
pub mod guards;
pub mod http;
pub mod limits;
pub mod mnp;
pub mod mssp;
pub mod notifications;
pub mod otp;
pub mod outbox;
pub mod signatures;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod webhooks;
pub mod zalo;
