//! Billing: exact totals over many entries, and prices that apply from their date.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Options};

#[tokio::test]
async fn totals_of_100k_entries_are_exact() {
    let app = spawn_app_with(Options::default()).await;
    let db = app.pool.get().await.unwrap();
    let client: uuid::Uuid = db
        .query_one("SELECT id FROM api_clients WHERE name = 'test-portal'", &[])
        .await
        .unwrap()
        .get(0);
    // Deterministic pseudo-random prices with 4 decimals and quantities.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let n = 100_000usize;
    let mut prices = Vec::with_capacity(n);
    let mut quantities = Vec::with_capacity(n);
    let mut amounts = Vec::with_capacity(n);
    let mut expected = Decimal::ZERO;
    for _ in 0..n {
        let price = Decimal::new((next() % 100_000_000) as i64, 4); // 0.0000 .. 9999.9999
        let quantity = (next() % 5 + 1) as i32;
        let amount = price * Decimal::from(quantity);
        expected += amount;
        prices.push(price);
        quantities.push(quantity);
        amounts.push(amount);
    }
    db.execute(
        "INSERT INTO usage_events (client_id, carrier, item, quantity, unit_price, amount)
         SELECT $1, 'viettel', 'otp_sms_segment', q, p, a
         FROM unnest($2::int[], $3::numeric[], $4::numeric[]) AS v(q, p, a)",
        &[&client, &quantities, &prices, &amounts],
    )
    .await
    .unwrap();
    let pg_sum: Decimal = db
        .query_one("SELECT sum(amount) FROM usage_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pg_sum, expected);
    let usage: Value = app
        .get("/v1/usage?group_by=carrier")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        Decimal::from_str(usage["total_vnd"].as_str().unwrap()).unwrap(),
        expected
    );
    assert_eq!(usage["rows"][0]["key"], "viettel");
    assert_eq!(usage["rows"][0]["events"], n as i64);
    assert_eq!(
        Decimal::from_str(usage["rows"][0]["amount_vnd"].as_str().unwrap()).unwrap(),
        expected
    );
}

#[tokio::test]
async fn prices_apply_from_their_effective_date() {
    let app = spawn_app_with(Options {
        tweak: Some(Box::new(|s| {
            let now = chrono::Utc::now();
            let price = |carrier: &str, item: &str, vnd: &str, from| gateway::config::PriceEntry {
                carrier: carrier.into(),
                item: item.into(),
                price_vnd: Decimal::from_str(vnd).unwrap(),
                effective_from: from,
            };
            s.billing.prices = vec![
                price(
                    "vinaphone",
                    "owner_check",
                    "500",
                    now - chrono::Duration::days(1),
                ),
                price(
                    "vinaphone",
                    "owner_check",
                    "700",
                    now + chrono::Duration::hours(1),
                ),
                price(
                    "*",
                    "otp_sms_segment",
                    "412.5",
                    now - chrono::Duration::days(1),
                ),
            ];
        })),
        ..Options::default()
    })
    .await;
    let check = || {
        app.post("/v1/subscriber-checks")
            .json(&json!({"msisdn": "0828123088", "id_number": "001099000000"}))
            .send()
    };
    assert_eq!(check().await.unwrap().status(), 200);
    // A price change effective from now on.
    let db = app.pool.get().await.unwrap();
    db.execute(
        "INSERT INTO prices (carrier, item, effective_from, price_vnd)
         VALUES ('vinaphone', 'owner_check', now() - interval '1 second', 600)",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(check().await.unwrap().status(), 200);
    // An OTP SMS billed per segment at the '*' price.
    app.create_otp("0971234567", "login").await;
    app.wait_for_code("84971234567", 1).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM usage_events WHERE item = 'otp_sms_segment'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SMS usage not recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let prices: Vec<(String, Decimal)> = db
        .query("SELECT item, unit_price FROM usage_events ORDER BY id", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        prices,
        vec![
            ("owner_check".to_owned(), Decimal::from(500)),
            ("owner_check".to_owned(), Decimal::from(600)),
            (
                "otp_sms_segment".to_owned(),
                Decimal::from_str("412.5").unwrap()
            ),
        ]
    );
    let usage: Value = app
        .get("/v1/usage?group_by=carrier")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["total_vnd"], "1512.5000");
    let bad = app.get("/v1/usage?group_by=week").send().await.unwrap();
    assert_eq!(bad.status(), 422);
}
