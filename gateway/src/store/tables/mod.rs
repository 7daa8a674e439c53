//! The tables' rows as structs, one module per table: the column lists that the
//! statements select, and a struct per shape of row they read, mapped once by column
//! name (`postgres_from_row::FromRow`). A column that is missing or of another type is a
//! typed error (`try_from_row`), not a panic at a `row.get`.
//!
//! The statements themselves stay beside the flow that runs them (each is tuned: set-
//! based, planned once, locking as its flow needs), and select these lists.

pub mod otp_challenges;
pub mod signature_requests;
pub mod sms_outbox;

pub use postgres_from_row::FromRow;
