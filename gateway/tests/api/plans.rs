//! The plans of the statements that are planned once per connection (`store::PLAN_ONCE`,
//! `store::INDEXED_PLAN_ONCE`):
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
    // Each claimed row's challenge is read by its key, never the whole table.
    for bad in ["Seq Scan on otp_challenges", "Hash Join", "Merge Join"] {
        assert!(
            !plan.contains(bad),
            "the claim joins its challenges by {bad}:\n{plan}"
        );
    }
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

/// The statements run under `store::INDEXED_PLAN_ONCE`, each with arguments to plan it by.
fn indexed_statements(client: &str) -> Vec<(&'static str, &'static str, String)> {
    use gateway::{clients as auth, otp::snapshot as b, outbox as o};
    vec![
        ("api key", auth::CLIENT_BY_KEY_SQL, "'\\x00'".into()),
        (
            "per number and purpose",
            b::PHONE_PURPOSE_AGES_SQL,
            "'{84971234567}', '{login}', 3600, 10".into(),
        ),
        (
            "per address",
            b::IP_AGES_SQL,
            "'{10.1.2.3}', 3600, 10".into(),
        ),
        (
            "locked accounts",
            b::LOCKED_ACCOUNTS_SQL,
            format!("'{{{client}}}', '{{acct-1}}'"),
        ),
        (
            "consecutive numbers",
            b::BLOCK_NUMBERS_SQL,
            format!("'{{{client}}}', '{{849712345}}', '{{3600}}', '{{0}}'"),
        ),
        (
            "conversion",
            b::CONVERSION_COUNTS_SQL,
            format!("'{{{client}}}', '{{8497}}', '{{3600}}', '{{0}}'"),
        ),
        ("ported", b::PORTED_SQL, "'{84971234567}'".into()),
        ("daily quota", b::DAILY_SENT_SQL, format!("'{{{client}}}'")),
        (
            "submitted",
            o::RECORD_SUBMITTED_SQL,
            "'{1,2}', '{A,B}', '{a,b}', '{NULL,NULL}', '{NULL,NULL}', '{viettel,viettel}'".into(),
        ),
        (
            "submitted audit",
            o::AUDIT_SUBMITTED_SQL,
            "'{1,2}', '{x,y}', '{\"\\\\x00\",\"\\\\x01\"}', '{1,1}'".into(),
        ),
        (
            "retry",
            o::RECORD_RETRY_SQL,
            "'{1}', '{1.5}', '{timeout}', '{1}'".into(),
        ),
        ("failed", o::RECORD_FAILED_SQL, "'{1}', '{rejected}'".into()),
        (
            "unsent",
            o::RECORD_UNSENT_SQL,
            "'{1}', '{expired}', '{challenge_expired}'".into(),
        ),
    ]
}

/// Each statement's one plan under `INDEXED_PLAN_ONCE` finds its rows through an index
/// (no sequential scan, hash or merge join, bitmap scan), both when the plan is made on a
/// freshly migrated database and on one with 200 000 challenges and SMS, analysed.
#[tokio::test]
async fn statements_planned_once_walk_their_indexes_at_any_size() {
    let app = spawn_app().await;
    let mut db = app.pool.get().await.unwrap();
    let client: String = db
        .query_one("SELECT id::text FROM api_clients LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    let statements = indexed_statements(&client);
    // Uncommitted, as above: the running gateway does not see the rows.
    let tx = db.transaction().await.unwrap();
    tx.batch_execute(&gateway::store::INDEXED_PLAN_ONCE)
        .await
        .unwrap();
    let explain = |when: &'static str| {
        let (tx, statements) = (&tx, &statements);
        async move {
            for (i, (name, sql, args)) in statements.iter().enumerate() {
                tx.batch_execute(&format!("PREPARE s{i} AS {sql}"))
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
                let plan: Vec<String> = tx
                    .query(&format!("EXPLAIN EXECUTE s{i}({args})"), &[])
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect();
                let plan = plan.join("\n");
                for bad in ["Seq Scan", "Hash Join", "Merge Join", "Bitmap Heap Scan"] {
                    assert!(!plan.contains(bad), "{name}, planned {when}: {bad}\n{plan}");
                }
                tx.batch_execute(&format!("DEALLOCATE s{i}")).await.unwrap();
            }
        }
    };
    explain("on an empty database").await;
    tx.batch_execute(&format!(
        "INSERT INTO otp_challenges (id, client_id, msisdn, carrier, purpose, locale,
            code_length, ttl_seconds, code_mac, max_attempts, max_sends, expires_at,
            resend_available_at, client_ip, account_ref, created_at)
         SELECT gen_random_uuid(), '{client}', '8497' || lpad(g::text, 7, '0'), 'viettel',
                'login', 'vi', 6, 300, '\\x00', 5, 3, now(), now(),
                ('10.0.' || (g % 200) || '.' || (g % 250))::inet, 'acct-' || g,
                now() - g * interval '10 ms'
         FROM generate_series(1, 200000) g;
         INSERT INTO sms_outbox (challenge_id, route, msisdn, sender, status, created_at)
         SELECT id, 'viettel', msisdn, 'DVC', 'submitted', created_at FROM otp_challenges;
         INSERT INTO ported_numbers (msisdn, carrier)
         SELECT '8498' || lpad(g::text, 7, '0'), 'mobifone' FROM generate_series(1, 50000) g;
         INSERT INTO account_lockouts (client_id, account_ref, failed_checks)
         SELECT '{client}', 'acct-' || g, 1 FROM generate_series(1, 20000) g;
         INSERT INTO otp_prefix_hourly (client_id, prefix, hour, shard, sent)
         SELECT '{client}', '84' || (g % 100), date_trunc('hour', now()) - (g / 100) * interval '1 hour',
                0, 1 FROM generate_series(1, 20000) g;
         ANALYZE otp_challenges, sms_outbox, ported_numbers, account_lockouts, otp_prefix_hourly;"
    ))
    .await
    .unwrap();
    explain("on 200 000 analysed rows").await;
    tx.rollback().await.unwrap();
}
