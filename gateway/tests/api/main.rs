//! Gateway integration tests: real PostgreSQL (a database per test), the real simulator
//! over real SMPP sockets, the real HTTP API.

mod audit;
mod batching;
mod billing;
mod binary;
mod browser;
mod cancel;
mod channels;
mod contract;
mod demo;
mod durability;
mod faults;
mod guards;
mod helpers;
mod identity;
mod layering;
mod limits;
mod migrations;
mod observability;
mod otp;
mod plans;
mod restart;
mod revocation;
mod signatures;
mod smpp;
mod soap;
mod templates;
mod tenants;
mod zalo;
