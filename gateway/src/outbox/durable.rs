//! Recording a batch's outcomes after its messages went out, through a database that may
//! be failing over: both dispatchers' one loop.

/// Runs `record` (a batch's outcomes, after the messages went out) until it succeeds,
/// trying again on a fresh connection while the database cannot answer: the messages are
/// at the carrier, and a batch left claimed would be sent once more when its lease ends.
/// Gives up (the lease then decides) after half the lease, so that it never records
/// after another worker may have claimed the rows.
pub(super) async fn record_durably<F, Fut>(
    lease: std::time::Duration,
    what: &str,
    mut record: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let give_up = std::time::Instant::now() + lease / 2;
    let schedule = carrier_adapters::retry::Schedule::doubling(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(2),
    );
    let mut retry = 0;
    loop {
        retry += 1;
        let pause = schedule.wait(retry, None).unwrap_or_default();
        match record().await {
            Ok(()) => return Ok(()),
            Err(e)
                if std::time::Instant::now() + pause < give_up
                    && crate::store::chain_unavailable(&e) =>
            {
                tracing::warn!(error = format!("{e:#}"), retry_in = ?pause, "{what} not recorded; trying again");
                tokio::time::sleep(pause).await;
            }
            Err(e) => return Err(e),
        }
    }
}
