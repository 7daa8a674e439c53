//! Simulator integration tests: real sockets, plain protocol clients, the real PKI.

mod pki;
mod smsc;
