//! A short, slow run of every scenario against a gateway and simulator that loadgen
//! starts itself (real binaries, a fresh database): it must end with zero errors and a
//! complete report and plot. It asserts nothing about speed.

use std::path::PathBuf;
use std::process::Command;

/// `gateway` and `carrier-sim` beside `loadgen` (cargo test --workspace builds them;
/// alone, this test builds them).
fn bin_dir() -> PathBuf {
    let loadgen = PathBuf::from(env!("CARGO_BIN_EXE_loadgen"));
    let dir = loadgen.parent().unwrap().to_owned();
    if !dir.join("gateway").exists() || !dir.join("carrier-sim").exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "gateway", "-p", "simulator", "--bins"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    dir
}

#[test]
fn a_short_mixed_run_ends_without_errors_and_reports_everything() {
    let dir = std::env::temp_dir().join(format!("loadgen-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("report.json");
    let plot = dir.join("plot.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "run",
            "--scenario",
            "otp=1,otp-send=2,signature=1",
            "--rate",
            "12",
            "--duration",
            "4s",
            "--warmup",
            "1s",
            "--signers",
            "4",
            "--no-progress",
        ])
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--report")
        .arg(&report)
        .arg("--plot")
        .arg(&plot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["errors"], serde_json::json!({}), "{stdout}");
    assert!(r["ok"].as_u64().unwrap() >= 20, "{stdout}");
    assert_eq!(r["ok"], r["flows"], "{stdout}");
    for step in [
        "POST /v1/otp",
        "POST /v1/otp/{id}/check",
        "POST /v1/signatures",
        "SMS on the handset",
        "otp flow",
        "signature flow",
        "receipt (end to end)",
    ] {
        assert!(
            r["latency_ms"][step]["count"].as_u64().unwrap_or(0) > 0,
            "no {step} in {stdout}"
        );
    }
    assert!(r["gateway_rss_mib"]["max"].as_f64().unwrap() > 0.0);
    assert!(r["series"].as_array().unwrap().len() >= 5);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 4);
    assert!(stdout.contains("throughput"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}
