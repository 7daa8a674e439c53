//! Logging (text or JSON, filter from `RUST_LOG` or config), the request id, the
//! verification funnel and the shared queue figures ([`queues`]). Secrets never reach these
//! logs (codes and keys are not logged; numbers are logged masked).

pub mod funnel;
pub mod queues;
pub mod request_id;

use tracing_subscriber::EnvFilter;

pub fn init(format: &str, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only for a person at a terminal: a file or a log shipper gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
