//! `carrier-sim`: the carrier simulator, standalone.

use std::path::PathBuf;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Simulated Vietnamese carriers: SMSCs over SMPP and virtual handsets over HTTP.
///
/// Defaults: HTTP on 127.0.0.1:8081; SMSCs on 127.0.0.1:2775 (viettel), 2776
/// (vinaphone), 2777 (mobifone), 2778 (aggregator); system_id = SMSC name, password
/// `sim-pass`.
#[derive(Debug, Parser)]
#[command(name = "carrier-sim", version)]
struct Args {
    /// TOML file replacing the defaults (see README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = match &args.config {
        Some(path) => simulator::SimConfig::from_file(path)?,
        None => simulator::SimConfig::default(),
    };
    if args.print_config {
        println!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    let sim = simulator::start(config, shutdown.clone()).await?;
    println!("carrier simulator: HTTP http://{}", sim.http_addr);
    for (name, addr) in &sim.smsc_addrs {
        println!(
            "  SMSC {name:<10} smpp://{addr}  system_id={name} password={}",
            simulator::config::DEFAULT_PASSWORD
        );
    }
    shutdown_signal().await;
    shutdown.cancel();
    sim.stopped().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
