//! The id of the request a task serves, carried into the work done on its behalf (the
//! outbox rows and MSS calls it causes). The HTTP layer sets it; anything below reads it.

tokio::task_local! {
    /// The id of the request being handled, for outgoing calls made on its behalf.
    pub static REQUEST_ID: String;
}

/// The request id of the current task, if it serves a request.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}
