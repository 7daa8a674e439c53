//! The plans of the statements that are planned once per connection (`db::PLAN_ONCE`):
//! such a plan is kept whatever the tables grow to, so it must be right at any size.

use crate::helpers::spawn_app;

/// On a deep, analysed backlog the claim walks `sms_outbox_ready` and stops at its limit.
/// (With the limit as a parameter the one plan was a hash join over the whole outbox:
/// 85 ms per claim on 300 000 queued rows instead of 2 ms.)
#[tokio::test]
async fn the_outbox_claim_walks_its_index_on_a_deep_backlog() {
    let app = spawn_app().await;
    let mut db = app.pool.get().await.unwrap();
    // Uncommitted: this transaction sees the backlog and ANALYZE samples it; the running
    // gateway's dispatcher does not see it.
    let tx = db.transaction().await.unwrap();
    tx.batch_execute(
        "INSERT INTO sms_outbox (route, msisdn, sender, next_attempt_at)
         SELECT (ARRAY['viettel', 'vinaphone', 'mobifone'])[1 + g % 3],
                '8486' || lpad(g::text, 7, '0'), 'DVC',
                now() - interval '1 hour' + g * interval '1 ms'
         FROM generate_series(1, 200000) g;
         ANALYZE sms_outbox;",
    )
    .await
    .unwrap();
    tx.batch_execute(&gateway::outbox::claim_settings())
        .await
        .unwrap();
    tx.batch_execute(&format!(
        "PREPARE claim(float8, text[]) AS {}",
        gateway::outbox::claim_sql(64)
    ))
    .await
    .unwrap();
    let plan: Vec<String> = tx
        .query(
            "EXPLAIN EXECUTE claim(30, '{viettel,vinaphone,mobifone}')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Scan using sms_outbox_ready"),
        "the claim does not walk its index:\n{plan}"
    );
    assert!(
        !plan.contains("Seq Scan on sms_outbox"),
        "the claim reads the whole outbox:\n{plan}"
    );
    // And it claims the 64 oldest.
    tx.batch_execute("DEALLOCATE claim").await.unwrap();
    let rows = tx
        .query(
            &gateway::outbox::claim_sql(64),
            &[&30f64, &vec!["viettel", "vinaphone", "mobifone"]],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 64);
    tx.rollback().await.unwrap();
}
