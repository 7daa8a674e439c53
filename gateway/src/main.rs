//! `gateway`: serve, migrate, manage clients, or run the demo.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::Settings;
#[cfg(feature = "demo")]
use gateway::demo;
use gateway::startup::{shutdown_signal, Application};
use gateway::{clients, mnp, store, telemetry};

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
    /// Billing.
    Usage {
        #[command(subcommand)]
        command: UsageCmd,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Number portability.
    Mnp {
        #[command(subcommand)]
        command: MnpCmd,
    },
    /// Run the simulator and the gateway together, with a demo client and walk-through.
    #[cfg(feature = "demo")]
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8081")]
        sim_listen: std::net::SocketAddr,
        /// Print the `[smpp.*]` and `[mss.*]` tables for a standalone `carrier-sim` with
        /// its default ports (for `gateway serve --config`), and exit.
        #[arg(long)]
        print_config: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UsageCmd {
    /// Usage per client, day (UTC), carrier and item, with exact VND amounts.
    Export {
        #[arg(long, default_value = "csv")]
        format: String,
        /// RFC 3339; default: 30 days ago.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339; default: now.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Write events as JSON lines to standard output (all clients).
    Export {
        /// RFC 3339; default: 30 days ago.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339; default: now.
        #[arg(long)]
        to: Option<String>,
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
    /// List clients with their key prefixes and state.
    List,
    /// Disable a client: every instance refuses its keys from the next request on.
    Disable {
        #[arg(long)]
        name: String,
    },
    /// Enable a disabled client again.
    Enable {
        #[arg(long)]
        name: String,
    },
    /// Change a client's policy: purposes, brandnames per carrier, rate and quota. Every
    /// instance applies it from the client's next request.
    Set {
        #[arg(long)]
        name: String,
        /// Purposes the client may ask for (`login,register`), or `all`.
        #[arg(long)]
        purposes: Option<String>,
        /// Brandname on one carrier's network (`viettel=UBND-HN`); `viettel=` removes it.
        /// Repeat for several carriers.
        #[arg(long = "sender")]
        senders: Vec<String>,
        /// The SMS template registered with a carrier for the brandname, per purpose and
        /// language: `viettel:login:vi=Ma OTP dang nhap Cong DVC: {code}. Hieu luc
        /// {minutes} phut.` (parameters `{code}`, `{minutes}`, `{seconds}`); an empty
        /// template removes it. Once a client has a template with a carrier, it sends
        /// there only what it registered. Repeat for several.
        #[arg(long = "template")]
        templates: Vec<String>,
        /// SMS per UTC day, or `default` for `limits.client_daily_sms`.
        #[arg(long)]
        daily_sms: Option<String>,
        /// Requests per second across all instances, or `default`.
        #[arg(long)]
        rps: Option<String>,
        /// Burst of requests, or `default`.
        #[arg(long)]
        burst: Option<String>,
        /// The channels a code goes by unless a request names its own, in the order to
        /// try them (`zalo,sms`: Zalo ZNS first, SMS when it fails or times out), or
        /// `default` for SMS only.
        #[arg(long)]
        channels: Option<String>,
        /// Where the client's OTP events (`otp.sent`, `otp.delivered`, `otp.fallback`, …)
        /// are POSTed, signed as Standard Webhooks; an empty value stops them.
        #[arg(long)]
        otp_callback_url: Option<String>,
    },
    /// Show a client's policy (JSON).
    Show {
        #[arg(long)]
        name: String,
    },
    /// Give a client a new key and revoke its other keys after a grace period.
    RotateKey {
        #[arg(long)]
        name: String,
        /// How long the old keys keep working (humantime, e.g. `1h`; `0s` revokes now).
        #[arg(long, default_value = "24h")]
        grace: humantime::Duration,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    let default_filter = match cli.command {
        #[cfg(feature = "demo")]
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
            store::ensure_database(&settings.database.url).await?;
            let pool = store::pool(&settings.database.url, 1)?;
            let applied = store::migrate(&pool).await?;
            println!("migrations applied: {applied}");
            Ok(())
        }
        Cmd::Client {
            command: ClientCmd::List,
        } => {
            let pool = store::pool(&settings.database.url, 1)?;
            for c in clients::list(&pool).await? {
                println!(
                    "{}\t{}\t{}\tkeys: {}",
                    c.name,
                    c.id,
                    if c.disabled { "disabled" } else { "active" },
                    c.active_keys.join(", ")
                );
            }
            Ok(())
        }
        Cmd::Client {
            command: ClientCmd::Disable { name },
        } => {
            let pool = store::pool(&settings.database.url, 1)?;
            clients::set_disabled(&pool, &name, true).await?;
            println!("client {name} disabled");
            Ok(())
        }
        Cmd::Client {
            command: ClientCmd::Enable { name },
        } => {
            let pool = store::pool(&settings.database.url, 1)?;
            clients::set_disabled(&pool, &name, false).await?;
            println!("client {name} enabled");
            Ok(())
        }
        Cmd::Client {
            command:
                ClientCmd::Set {
                    name,
                    purposes,
                    senders,
                    templates,
                    daily_sms,
                    rps,
                    burst,
                    channels,
                    otp_callback_url,
                },
        } => {
            let change = clients::PolicyChange {
                purposes: purposes.map(|p| {
                    (p.trim() != "all").then(|| {
                        p.split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                }),
                senders: senders
                    .iter()
                    .map(|s| {
                        s.split_once('=')
                            .map(|(c, b)| (c.trim().to_ascii_lowercase(), b.trim().to_owned()))
                            .with_context(|| format!("--sender {s:?}: write CARRIER=BRANDNAME"))
                    })
                    .collect::<anyhow::Result<_>>()?,
                templates: templates
                    .iter()
                    .map(|t| {
                        let (key, template) = t.split_once('=').with_context(|| {
                            format!("--template {t:?}: write CARRIER:PURPOSE:LOCALE=TEMPLATE")
                        })?;
                        let mut key = key.trim().split(':').map(str::to_ascii_lowercase);
                        match (key.next(), key.next(), key.next(), key.next()) {
                            (Some(c), Some(p), Some(l), None) => {
                                Ok((c, p, l, template.trim().to_owned()))
                            }
                            _ => anyhow::bail!(
                                "--template {t:?}: write CARRIER:PURPOSE:LOCALE=TEMPLATE"
                            ),
                        }
                    })
                    .collect::<anyhow::Result<_>>()?,
                daily_sms_quota: daily_sms
                    .map(|v| optional_number("--daily-sms", &v))
                    .transpose()?,
                requests_per_second: rps.map(|v| optional_number("--rps", &v)).transpose()?,
                request_burst: burst.map(|v| optional_number("--burst", &v)).transpose()?,
                otp_channels: channels.map(|c| {
                    (c.trim() != "default").then(|| {
                        c.split(',')
                            .map(|s| s.trim().to_ascii_lowercase())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                }),
                otp_callback_url: otp_callback_url.map(|u| {
                    let u = u.trim().to_owned();
                    (!u.is_empty()).then_some(u)
                }),
            };
            let pool = store::pool(&settings.database.url, 1)?;
            let policy = clients::set_policy(&pool, &name, &change).await?;
            println!("{}", serde_json::to_string_pretty(&policy)?);
            Ok(())
        }
        Cmd::Client {
            command: ClientCmd::Show { name },
        } => {
            let pool = store::pool(&settings.database.url, 1)?;
            let policy = clients::policy(&pool, &name).await?;
            println!("{}", serde_json::to_string_pretty(&policy)?);
            Ok(())
        }
        Cmd::Client {
            command: ClientCmd::RotateKey { name, grace },
        } => {
            let pool = store::pool(&settings.database.url, 1)?;
            let key = clients::rotate_key(&pool, &name, *grace).await?;
            println!("new API key for {name} (shown once, store it now): {key}");
            println!("older keys stop working in {grace}");
            Ok(())
        }
        Cmd::Client {
            command: ClientCmd::Add { name },
        } => {
            store::ensure_database(&settings.database.url).await?;
            let pool = store::pool(&settings.database.url, 1)?;
            store::migrate(&pool).await?;
            let client = clients::add(&pool, &name)
                .await
                .context("adding the client")?;
            println!("client {name} ({})", client.id);
            println!("API key (shown once, store it now): {}", client.key);
            println!("webhook signing secret: {}", client.webhook_secret);
            Ok(())
        }
        Cmd::Usage {
            command: UsageCmd::Export { format, from, to },
        } => {
            anyhow::ensure!(format == "csv", "only --format csv is offered");
            let now = chrono::Utc::now();
            let from = parse_time(from, now - chrono::Duration::days(30))?;
            let to = parse_time(to, now + chrono::Duration::seconds(1))?;
            let pool = store::pool(&settings.database.url, 1)?;
            let db = pool.get().await.context("connecting to the database")?;
            let rows = db
                .query(
                    "SELECT c.name, to_char(u.at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), u.carrier, u.item,
                            count(*)::bigint, sum(u.quantity)::bigint, sum(u.amount)::text
                     FROM usage_events u JOIN api_clients c ON c.id = u.client_id
                     WHERE u.at >= $1 AND u.at < $2
                     GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
                    &[&from, &to],
                )
                .await?;
            println!("client,day,carrier,item,events,quantity,amount_vnd");
            for r in rows {
                let name: String = r.get(0);
                println!(
                    "\"{}\",{},{},{},{},{},{}",
                    name.replace('"', "\"\""),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, String>(3),
                    r.get::<_, i64>(4),
                    r.get::<_, i64>(5),
                    r.get::<_, String>(6)
                );
            }
            Ok(())
        }
        Cmd::Audit {
            command: AuditCmd::Export { from, to },
        } => {
            let now = chrono::Utc::now();
            let from = parse_time(from, now - chrono::Duration::days(30))?;
            let to = parse_time(to, now + chrono::Duration::seconds(1))?;
            let keys = match &settings.otp.hmac_key {
                Some(k) => gateway::crypto::ServerKeys::from_secret(k)?,
                None => gateway::crypto::ServerKeys::from_secret(
                    &gateway::crypto::generate_server_key()?,
                )?,
            };
            let pool = store::pool(&settings.database.url, 1)?;
            let db = pool.get().await.context("connecting to the database")?;
            let mut after_id = 0i64;
            let mut written = 0usize;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            loop {
                let page = gateway::audit::query(
                    &db,
                    &keys,
                    gateway::audit::Filter {
                        client: None,
                        from,
                        to,
                        msisdn: None,
                        after_id,
                        limit: 5000,
                    },
                )
                .await?;
                let Some(last) = page.last() else { break };
                after_id = last.id;
                for e in &page {
                    use std::io::Write;
                    writeln!(out, "{}", serde_json::to_string(e)?)?;
                    written += 1;
                }
            }
            use std::io::Write;
            out.flush()?;
            eprintln!("audit events exported: {written}");
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
            store::ensure_database(&settings.database.url).await?;
            let pool = store::pool(&settings.database.url, 1)?;
            store::migrate(&pool).await?;
            let n = mnp::import(&pool, &rows).await?;
            println!("ported numbers imported: {n}");
            Ok(())
        }
        #[cfg(feature = "demo")]
        Cmd::Demo {
            print_config: true, ..
        } => {
            print!("{}", gateway::config::Settings::standalone_simulator_toml());
            Ok(())
        }
        #[cfg(feature = "demo")]
        Cmd::Demo {
            listen, sim_listen, ..
        } => demo::run(settings, demo::DemoArgs { listen, sim_listen }).await,
    }
}

/// An RFC 3339 time from the command line, or `default`.
fn parse_time(
    t: Option<String>,
    default: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    match t {
        None => Ok(default),
        Some(t) => chrono::DateTime::parse_from_rfc3339(&t)
            .map(|t| t.with_timezone(&chrono::Utc))
            .with_context(|| format!("{t:?} is not an RFC 3339 time")),
    }
}

/// A number, or `default` (`None`).
fn optional_number<T: std::str::FromStr>(flag: &str, v: &str) -> anyhow::Result<Option<T>> {
    if v.trim() == "default" {
        return Ok(None);
    }
    v.trim()
        .parse()
        .map(Some)
        .map_err(|_| anyhow::anyhow!("{flag} takes a whole number or `default`, not {v:?}"))
}
