//! `gateway`: serve, migrate, manage clients, or run the demo.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::Settings;
use gateway::startup::{shutdown_signal, Application};
use gateway::{clients, db, demo, mnp, telemetry};

#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "OTP and SIM-signature gateway")]
struct Cli {
    /// TOML configuration file (layers: defaults, this file, DATABASE_URL, GATEWAY__* env).
    #[arg(long, global = true, env = "GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the gateway.
    Serve,
    /// Create the database if needed and apply migrations.
    Migrate,
    /// Manage API clients.
    Client {
        #[command(subcommand)]
        command: ClientCmd,
    },
    /// Number portability.
    Mnp {
        #[command(subcommand)]
        command: MnpCmd,
    },
    /// Run the simulator and the gateway together, with a demo client and walk-through.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8081")]
        sim_listen: SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
enum MnpCmd {
    /// Import ported numbers from a CSV file of `msisdn,carrier` lines (all or nothing).
    Import { file: PathBuf },
}

#[derive(Debug, Subcommand)]
enum ClientCmd {
    /// Add a client (or a key to an existing one); prints the new API key once.
    Add {
        #[arg(long)]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    let default_filter = match cli.command {
        Cmd::Demo { .. } => "warn,gateway=info,simulator=warn",
        _ => settings.log.filter.as_str(),
    }
    .to_owned();
    telemetry::init(&settings.log.format, &default_filter);
    match cli.command {
        Cmd::Serve => {
            let app = Application::build(settings).await?;
            tracing::info!(addr = %app.addr(), "gateway listening");
            let stop = app.shutdown_token();
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("shutting down");
                stop.cancel();
            });
            app.run_until_stopped().await
        }
        Cmd::Migrate => {
            db::ensure_database(&settings.database.url).await?;
            let pool = db::pool(&settings.database.url, 1)?;
            let applied = db::migrate(&pool).await?;
            println!("migrations applied: {applied}");
            Ok(())
        }
        Cmd::Client {
            command: ClientCmd::Add { name },
        } => {
            db::ensure_database(&settings.database.url).await?;
            let pool = db::pool(&settings.database.url, 1)?;
            db::migrate(&pool).await?;
            let client = clients::add(&pool, &name)
                .await
                .context("adding the client")?;
            println!("client {name} ({})", client.id);
            println!("API key (shown once, store it now): {}", client.key);
            println!("webhook signing secret: {}", client.webhook_secret);
            Ok(())
        }
        Cmd::Mnp {
            command: MnpCmd::Import { file },
        } => {
            let input = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let rows = match mnp::read_csv(std::io::BufReader::new(input)) {
                Ok(rows) => rows,
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{}: {e}", file.display());
                    }
                    anyhow::bail!("{} bad lines; nothing imported", errors.len());
                }
            };
            db::ensure_database(&settings.database.url).await?;
            let pool = db::pool(&settings.database.url, 1)?;
            db::migrate(&pool).await?;
            let n = mnp::import(&pool, &rows).await?;
            println!("ported numbers imported: {n}");
            Ok(())
        }
        Cmd::Demo { listen, sim_listen } => {
            demo::run(settings, demo::DemoArgs { listen, sim_listen }).await
        }
    }
}
