//! Delivery receipts, written and read in one place: the writer stores what the SMSCs
//! report (keyed by route and normalised message id; the submit may be recorded before
//! or after), and the reader turns an SMS's parts and their latest receipts into its
//! delivery.

use std::sync::Arc;
use std::time::Duration;

use crate::store::tables::sms_outbox::LatestDelivery;
use carrier_adapters::receipt::normalise_message_id;
use carrier_adapters::smpp::{DeliveryReport, ReceiptSink};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::store::Cached;

/// Stores receipts keyed by route and normalised message id; the submit may be
/// recorded before or after. Receipts are written in batches (one statement for all that
/// arrived within a few milliseconds) and each is acknowledged to the SMSC only after its
/// batch committed.
pub struct ReceiptStore {
    tx: tokio::sync::mpsc::Sender<PendingReceipt>,
}

struct PendingReceipt {
    route: String,
    report: DeliveryReport,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Most receipts in one statement, and how long the first one waits for company.
const RECEIPT_BATCH: usize = 256;
const RECEIPT_LINGER: Duration = Duration::from_millis(5);

impl ReceiptStore {
    pub fn start(
        pool: Pool,
        funnel: Arc<crate::telemetry::funnel::Funnel>,
        shutdown: CancellationToken,
    ) -> (Arc<ReceiptStore>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let task = tokio::spawn(write_receipts(pool, funnel, rx, shutdown));
        (Arc::new(ReceiptStore { tx }), task)
    }
}

async fn write_receipts(
    pool: Pool,
    funnel: Arc<crate::telemetry::funnel::Funnel>,
    mut rx: tokio::sync::mpsc::Receiver<PendingReceipt>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => None,
            r = rx.recv() => r,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let linger = tokio::time::sleep(RECEIPT_LINGER);
        tokio::pin!(linger);
        while batch.len() < RECEIPT_BATCH {
            tokio::select! {
                _ = &mut linger => break,
                r = rx.recv() => match r {
                    Some(r) => batch.push(r),
                    None => break,
                },
            }
        }
        let result = insert_receipts(&pool, &batch)
            .await
            .map_err(|e| format!("{e:#}"));
        if result.is_ok() {
            for r in &batch {
                if r.report.state.as_str() == "delivered" {
                    funnel.otp("delivered", &r.route, 1);
                }
            }
        }
        for r in batch {
            let _ = r.done.send(result.clone());
        }
    }
}

async fn insert_receipts(pool: &Pool, batch: &[PendingReceipt]) -> anyhow::Result<()> {
    // One row per key: ON CONFLICT cannot touch a row twice in one statement; the
    // latest receipt for a message wins.
    let mut rows: std::collections::HashMap<(String, String), (&str, Option<String>)> =
        std::collections::HashMap::new();
    for r in batch {
        rows.insert(
            (r.route.clone(), normalise_message_id(&r.report.message_id)),
            (r.report.state.as_str(), r.report.error.clone()),
        );
    }
    let (mut routes, mut ids, mut states, mut errors) = (vec![], vec![], vec![], vec![]);
    for ((route, id), (state, error)) in rows {
        routes.push(route);
        ids.push(id);
        states.push(state.to_owned());
        errors.push(error);
    }
    let db = pool.get().await?;
    db.execute_cached(
        "INSERT INTO delivery_receipts (route, message_id, state, error_code)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
         ON CONFLICT (route, message_id) DO UPDATE
            SET state = EXCLUDED.state, error_code = EXCLUDED.error_code, received_at = now()",
        &[&routes, &ids, &states, &errors],
    )
    .await?;
    tracing::debug!(receipts = batch.len(), "receipts stored");
    Ok(())
}

impl ReceiptSink for ReceiptStore {
    fn deliver(
        &self,
        route: &str,
        report: DeliveryReport,
    ) -> BoxFuture<'static, Result<(), String>> {
        let tx = self.tx.clone();
        let route = route.to_owned();
        Box::pin(async move {
            let (done, wait) = tokio::sync::oneshot::channel();
            tx.send(PendingReceipt {
                route,
                report,
                done,
            })
            .await
            .map_err(|_| "receipt writer stopped".to_owned())?;
            wait.await
                .map_err(|_| "receipt writer stopped".to_owned())?
        })
    }
}

/// Where the latest SMS of a verification is. / Trạng thái gửi tin nhắn.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// `queued`, `submitted`, `failed`, `canceled`, or the receipt's state
    /// (`delivered`, `undeliverable`, `expired`, `rejected`, …).
    #[schema(example = "delivered")]
    pub status: String,
    /// The SMPP route (carrier bind) it went out on.
    #[schema(example = "vinaphone")]
    pub route: String,
    /// The first part's SMSC message id.
    pub message_id: Option<String>,
    /// How many SMS the text went out as.
    pub parts: i32,
    pub submitted_at: Option<DateTime<Utc>>,
    pub receipt_at: Option<DateTime<Utc>>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// Every part's latest receipt of the SMS `o`, as a lateral join `r`: delivered when all
/// parts are; the first bad final state (and its error) otherwise.
macro_rules! sms_receipts_join {
    () => {
        "LEFT JOIN LATERAL (
        SELECT count(*)::int AS parts,
            count(*) FILTER (WHERE pr.state = 'delivered')::int AS delivered,
            (array_agg(pr.state ORDER BY pr.received_at)
                FILTER (WHERE pr.state IS NOT NULL AND pr.state <> 'delivered'))[1] AS bad_state,
            (array_agg(pr.error_code ORDER BY pr.received_at)
                FILTER (WHERE pr.state IS NOT NULL AND pr.state <> 'delivered'))[1] AS bad_error,
            max(pr.received_at) AS last_at
        FROM sms_parts p
        LEFT JOIN LATERAL (
            SELECT * FROM delivery_receipts d
            WHERE d.route = o.route
              AND d.message_id IN (p.message_key, p.message_key_dec, p.message_key_hex)
            ORDER BY d.received_at DESC LIMIT 1
        ) pr ON true
        WHERE p.outbox_id = o.id
     ) r ON true"
    };
}

/// See [`sms_receipts_join`]: for a query that reads an SMS as `o`.
pub const SMS_RECEIPTS_JOIN: &str = sms_receipts_join!();

/// The latest SMS of challenge `c` and its delivery, as lateral joins for a query that
/// reads challenges (`c`); `delivery_of` reads the columns they add
/// (`store::tables::sms_outbox::LATEST_DELIVERY`).
pub const LATEST_DELIVERY_JOINS: &str = concat!(
    "LEFT JOIN LATERAL (
        SELECT * FROM sms_outbox WHERE challenge_id = c.id ORDER BY id DESC LIMIT 1
     ) o ON true
     ",
    sms_receipts_join!()
);

/// The delivery in a row read with `LATEST_DELIVERY_JOINS` and its columns
/// (`store::tables::sms_outbox::LATEST_DELIVERY`); none before its first SMS.
pub fn delivery_of(row: LatestDelivery) -> Option<DeliveryView> {
    let outbox_status = row.o_status?;
    let parts = row.parts.unwrap_or(0);
    let delivered = row.delivered.unwrap_or(0);
    let status = match (row.bad_state, parts > 0 && delivered == parts) {
        (Some(state), _) => state,
        (None, true) => "delivered".to_owned(),
        (None, false) => outbox_status,
    };
    Some(DeliveryView {
        status,
        route: row.o_route.unwrap_or_default(),
        message_id: row.smsc_message_id,
        parts: parts.max(1),
        submitted_at: row.submitted_at,
        receipt_at: row.r_at,
        error: row
            .bad_error
            .filter(|e| !e.trim_start_matches('0').is_empty())
            .or(row.last_error),
    })
}
