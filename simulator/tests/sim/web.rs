//! The web handset page: served at `/`, it calls only endpoints the simulator has, and
//! its script parses.

use std::time::Duration;

use simulator::SimConfig;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_web_handset_is_served_and_its_script_parses() {
    let shutdown = CancellationToken::new();
    let sim = simulator::start(
        SimConfig::ephemeral(Duration::from_millis(20)),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", sim.http_addr);
    let resp = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = resp.text().await.unwrap();
    for needle in [
        "Nhập mã authentication PIN",
        "/handsets/${number}/messages",
        "/handsets/${number}/prompts",
        "/subscribers/${number}",
        "/smsc/${$(\"smsc\").value}/faults",
    ] {
        assert!(page.contains(needle), "{needle} missing");
    }
    // Each endpoint the page calls answers (with a demo number and SMSC).
    for path in [
        "/handsets/84971234567/messages",
        "/handsets/84971234567/prompts",
        "/subscribers/84971234567",
        "/smsc/viettel/faults",
    ] {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // The script is valid JavaScript (Node parses it without running it).
    let start = page.find("<script>").unwrap() + "<script>".len();
    let end = page.find("</script>").unwrap();
    let file = std::env::temp_dir().join(format!("handset-{}.js", std::process::id()));
    std::fs::write(&file, &page[start..end]).unwrap();
    match std::process::Command::new("node")
        .arg("--check")
        .arg(&file)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("node not found ({e}): the script's syntax was not checked"),
    }
    let _ = std::fs::remove_file(&file);
    shutdown.cancel();
}
