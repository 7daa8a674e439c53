//! The served OpenAPI document against the handlers: every operation it lists is called
//! with what the document says is valid and invalid, and every answer must be one it
//! documents, with the documented body (schemathesis, from PyPI, against the real
//! `gateway demo`). Plus the checks that need no tool: the document and the route table
//! name the same paths, and every problem type the code can answer is documented.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::demo::Demo;

const CONTRACT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract");

#[tokio::test]
async fn the_served_document_and_the_handlers_agree() {
    let demo = Demo::start().await;
    let version = Command::new("schemathesis").arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "schemathesis is needed for the contract test: pip install schemathesis==4.32.5"
    );
    let out = tokio::task::spawn_blocking({
        let url = format!("{}/openapi.json", demo.api);
        let (key, admin) = (demo.key.clone(), demo.admin_key.clone());
        move || {
            Command::new("schemathesis")
                .current_dir(CONTRACT_DIR)
                .env("SCHEMATHESIS_HOOKS", "hooks")
                .env("PYTHONPATH", CONTRACT_DIR)
                .env("GATEWAY_API_KEY", key)
                .env("GATEWAY_ADMIN_KEY", admin)
                .env("NO_COLOR", "1")
                .args(["--config-file", "schemathesis.toml", "run", &url])
                .args(["--checks", "all", "--max-examples", "30", "--workers", "1"])
                .args(["--seed", "20261127", "--report", "junit"])
                .args(["--report-dir", &artifacts_dir()])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found disagreements:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It ran every operation (a document that lost its paths would pass vacuously).
    assert!(stdout.contains("Selected: 20/20"), "{stdout}");
}

fn artifacts_dir() -> String {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/test-artifacts/contract"
    );
    std::fs::create_dir_all(dir).unwrap();
    dir.to_owned()
}

#[tokio::test]
async fn the_document_lists_every_route_and_every_problem() {
    let demo = Demo::start().await;
    let http = reqwest::Client::new();
    let doc: Value = http
        .get(format!("{}/openapi.json", demo.api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // The webhook a signature's callback_url receives is described, with its body.
    assert_eq!(
        doc["webhooks"]["signatureCompleted"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/SignatureEvent"
    );
    assert!(doc["components"]["schemas"]["SignatureEvent"].is_object());
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    // Every documented operation is routed (anything else answers 404 or 405), and every
    // route's other methods answer 405 naming exactly the documented ones.
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let concrete = path
            .replace("{id}", "0195b4e2-0000-7000-8000-000000000000")
            .replace("{client_id}", "0195b4e2-0000-7000-8000-000000000000")
            .replace("{account_ref}", "a")
            .replace("{carrier}", "viettel");
        let resp = http
            .request(
                reqwest::Method::from_bytes(b"PATCH").unwrap(),
                format!("{}{concrete}", demo.api),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "PATCH {path}");
        let allow: BTreeSet<String> = resp.headers()["allow"]
            .to_str()
            .unwrap()
            .split(", ")
            .map(str::to_owned)
            .collect();
        let expected: BTreeSet<String> = documented
            .iter()
            .filter(|(_, p)| p == path)
            .map(|(m, _)| m.clone())
            .collect();
        assert_eq!(allow, expected, "{path}: routed methods vs documented ones");
    }
    // Every problem type is in the document's enum, and no other.
    let types: BTreeSet<String> = doc["components"]["schemas"]["ProblemType"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let table: BTreeSet<String> = gateway::http::error::PROBLEMS
        .iter()
        .map(|p| format!("/problems/{}", p.slug))
        .collect();
    assert_eq!(types, table);
    // The page renders the document: Swagger UI's files are served from the binary.
    let page = http
        .get(format!("{}/docs/", demo.api))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let init = http
        .get(format!("{}/docs/swagger-initializer.js", demo.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
}
