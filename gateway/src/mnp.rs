//! Mobile number portability: numbers that moved to another network keep their prefix,
//! so the prefix alone routes them wrong. `ported_numbers` overrides it.

use crate::store::Cached;
use std::io::BufRead;

use anyhow::Context;
use carrier_adapters::{Carrier, Msisdn};
use deadpool_postgres::Pool;

/// Rows per INSERT statement.
const CHUNK: usize = 1000;

/// Reads `msisdn,carrier` lines (a header line, blank lines and `#` comments are
/// skipped). Every line must be valid, or nothing is imported.
pub fn read_csv(input: impl BufRead) -> Result<Vec<(Msisdn, Carrier)>, Vec<String>> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line_no = n + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                errors.push(format!("line {line_no}: {e}"));
                continue;
            }
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut fields = trimmed.split([',', ';', '\t']).map(str::trim);
        let (Some(number), Some(carrier), None) = (fields.next(), fields.next(), fields.next())
        else {
            errors.push(format!("line {line_no}: expected 'msisdn,carrier'"));
            continue;
        };
        if line_no == 1 && number.eq_ignore_ascii_case("msisdn") {
            continue;
        }
        match (Msisdn::parse(number), carrier.parse::<Carrier>()) {
            (Ok(m), Ok(c)) => rows.push((m, c)),
            (Err(e), _) => errors.push(format!("line {line_no}: {e}")),
            (_, Err(e)) => errors.push(format!("line {line_no}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

/// Upserts the rows in one transaction; returns how many.
pub async fn import(pool: &Pool, rows: &[(Msisdn, Carrier)]) -> anyhow::Result<usize> {
    let mut db = pool.get().await.context("connecting to the database")?;
    let tx = db.transaction().await?;
    for chunk in rows.chunks(CHUNK) {
        let numbers: Vec<&str> = chunk.iter().map(|(m, _)| m.e164()).collect();
        let carriers: Vec<&str> = chunk.iter().map(|(_, c)| c.as_str()).collect();
        tx.execute_cached(
            "INSERT INTO ported_numbers (msisdn, carrier)
             SELECT * FROM unnest($1::text[], $2::text[])
             ON CONFLICT (msisdn) DO UPDATE SET carrier = EXCLUDED.carrier, updated_at = now()",
            &[&numbers, &carriers],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}

/// The network that serves a number now.
pub async fn carrier_of(
    client: &impl deadpool_postgres::GenericClient,
    msisdn: &Msisdn,
) -> anyhow::Result<Carrier> {
    let row = client
        .query_opt_cached(
            "SELECT carrier FROM ported_numbers WHERE msisdn = $1",
            &[&msisdn.e164()],
        )
        .await?;
    match row {
        Some(r) => r
            .get::<_, String>(0)
            .parse()
            .map_err(|e| anyhow::anyhow!("ported_numbers: {e}")),
        None => Ok(msisdn.carrier()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_valid_files_and_refuses_any_bad_line() {
        let ok = read_csv(
            "msisdn,carrier\n0971234567,mobifone\n\n# moved in 2025\n+84 828 123 088 ; viettel\n"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].0.e164(), "84971234567");
        assert_eq!(ok[0].1, Carrier::Mobifone);
        assert_eq!(ok[1].1, Carrier::Viettel);
        let errors = read_csv(
            "0971234567,mobifone\n024 3825 1234,viettel\n0971234568,orange\n0971234569\n"
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("line 2"), "{errors:?}");
        assert!(errors[1].contains("orange"), "{errors:?}");
    }
}
