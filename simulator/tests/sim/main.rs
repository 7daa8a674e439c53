//! Simulator integration tests: real sockets, plain protocol clients, the real PKI.

mod mssp;
mod pki;
mod smsc;
mod web;
mod zns;
