//! The schema's migrations through the real `gateway migrate`: a fresh database, two
//! instances migrating it at once, a database the earlier hand-written runner made
//! (upgraded in place, applying only what it lacks), and one a newer gateway migrated
//! (refused, naming what it does not know).

use std::str::FromStr;

use crate::binary::{gateway, Db};

/// The migration files, in order: (the earlier runner's name, the SQL).
fn files() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            // V0001__otp.sql was 0001_otp.sql.
            let stem = n.trim_end_matches(".sql").trim_start_matches('V');
            let (number, name) = stem.split_once("__").unwrap();
            let sql = std::fs::read_to_string(dir.join(&n)).unwrap();
            (format!("{number}_{name}"), sql)
        })
        .collect()
}

async fn connect(db: &Db) -> tokio_postgres::Client {
    gateway::store::ensure_database(&db.url).await.unwrap();
    let config = tokio_postgres::Config::from_str(&db.url).unwrap();
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// What the earlier runner did for each of `files`: the SQL and a row in
/// `schema_migrations`, in one transaction.
async fn migrate_the_old_way(client: &mut tokio_postgres::Client, files: &[(String, String)]) {
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (
                name text PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    for (name, sql) in files {
        let tx = client.transaction().await.unwrap();
        tx.batch_execute(sql).await.unwrap();
        tx.execute("INSERT INTO schema_migrations (name) VALUES ($1)", &[name])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

fn migrate(db: &Db) -> (bool, String, String) {
    let out = gateway(db).arg("migrate").output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn history(client: &tokio_postgres::Client) -> Vec<(i32, String)> {
    client
        .query(
            "SELECT version, name FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn two_instances_migrating_a_fresh_database_at_once_apply_each_migration_once() {
    let db = Db::new();
    let client = connect(&db).await;
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| migrate(&db));
        let b = migrate(&db);
        (a.join().unwrap(), b)
    });
    assert!(a.0 && b.0, "{}\n{}", a.2, b.2);
    let applied = |out: &str| -> usize {
        out.trim()
            .strip_prefix("migrations applied: ")
            .unwrap()
            .parse()
            .unwrap()
    };
    let files = files();
    assert_eq!(applied(&a.1) + applied(&b.1), files.len(), "{a:?} {b:?}");
    assert!([0, files.len()].contains(&applied(&a.1)));
    let h = history(&client).await;
    assert_eq!(h.len(), files.len());
    assert_eq!(h.last().unwrap().0 as usize, files.len());
}

#[tokio::test]
async fn a_database_the_earlier_runner_made_applies_only_what_it_lacks() {
    let db = Db::new();
    let mut client = connect(&db).await;
    let files = files();
    let (old, new) = files.split_at(files.len() - 1);
    migrate_the_old_way(&mut client, old).await;
    // Data written before the upgrade stays.
    client
        .execute(
            "INSERT INTO ported_numbers (msisdn, carrier) VALUES ('84971234567', 'mobifone')",
            &[],
        )
        .await
        .unwrap();

    let (ok, stdout, stderr) = migrate(&db);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), format!("migrations applied: {}", new.len()));
    let h = history(&client).await;
    assert_eq!(h.len(), files.len(), "the old history was adopted: {h:?}");
    assert_eq!(h[0], (1, "otp".to_owned()));
    let (ok, stdout, _) = migrate(&db);
    assert!(ok);
    assert_eq!(stdout.trim(), "migrations applied: 0");
    let n: i64 = client
        .query_one("SELECT count(*) FROM ported_numbers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // The last migration really ran: its column is there.
    client
        .query("SELECT client_ip FROM sms_outbox LIMIT 1", &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_database_a_newer_gateway_migrated_is_refused_by_name() {
    let db = Db::new();
    let mut client = connect(&db).await;
    let mut files = files();
    files.push((
        "9999_from_the_future".to_owned(),
        "CREATE TABLE from_the_future (id int)".to_owned(),
    ));
    migrate_the_old_way(&mut client, &files).await;
    let (ok, _, stderr) = migrate(&db);
    assert!(!ok);
    assert!(stderr.contains("9999_from_the_future"), "{stderr}");
    // Nothing was half-adopted: the next binary that knows it can still adopt the history.
    let adopted: Option<String> = client
        .query_one("SELECT to_regclass('refinery_schema_history')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(adopted, None);
}
