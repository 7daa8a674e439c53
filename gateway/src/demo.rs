//! `gateway demo`: the simulator and the gateway together, a demo client, and a
//! copy-paste walk-through. Starts a private PostgreSQL when none answers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::startup::{shutdown_signal, Application};
use crate::{clients, crypto};

pub struct DemoArgs {
    pub listen: SocketAddr,
    pub sim_listen: SocketAddr,
}

pub async fn run(mut settings: Settings, args: DemoArgs) -> anyhow::Result<()> {
    let mut private_pg = None;
    if !server_answers(&settings.database.url).await {
        match PrivateCluster::start()? {
            Some(cluster) => {
                eprintln!(
                    "No PostgreSQL answered at {}; started a private throwaway cluster in {} (port {}).",
                    redact(&settings.database.url),
                    cluster.dir.display(),
                    cluster.port
                );
                settings.database.url = format!("postgres://postgres@127.0.0.1:{}/gateway", cluster.port);
                private_pg = Some(cluster);
            }
            None => bail!(
                "no PostgreSQL answers at {} and no PostgreSQL binaries were found under /usr/lib/postgresql; start PostgreSQL or set DATABASE_URL",
                redact(&settings.database.url)
            ),
        }
    }

    let shutdown = CancellationToken::new();
    let mut sim_config =
        simulator::SimConfig::on_ports(args.sim_listen.ip(), args.sim_listen.port(), [0; 4]);
    for smsc in &mut sim_config.smsc {
        smsc.receipt_delay = Duration::from_millis(300);
    }
    let sim = simulator::start(sim_config, shutdown.clone())
        .await
        .context("starting the carrier simulator")?;

    settings.use_simulator(&sim);
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    settings.server.listen = listener.local_addr()?;
    // Carriers that call back reach this gateway at its own address.
    settings.signatures.public_base_url = format!("http://{}", listener.local_addr()?);
    if settings.otp.hmac_key.is_none() {
        settings.otp.hmac_key = Some(crypto::generate_server_key()?);
    }
    // Fast resends make the walk-through easy to replay.
    settings.otp.resend_interval = Duration::from_secs(10);
    // An admin key for the status page, unless the configuration gives one (then it is
    // not printed).
    let admin_key = if settings.admin.api_key.is_none() {
        let k = match std::env::var("GATEWAY_DEMO_ADMIN_KEY") {
            Ok(k) if !k.trim().is_empty() => k.trim().to_owned(),
            _ => {
                let mut bytes = [0u8; 16];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                    .map_err(|_| anyhow::anyhow!("system RNG failed"))?;
                hex::encode(bytes)
            }
        };
        settings.admin.api_key = Some(k.clone().into());
        Some(k)
    } else {
        None
    };
    let app = Application::build_with_listener(settings, listener).await?;
    let key = match std::env::var("GATEWAY_DEMO_API_KEY") {
        Ok(k) if !k.trim().is_empty() => {
            let k = k.trim().to_owned();
            clients::add_key(
                &app.pool,
                "demo",
                &k,
                &k.chars().take(10).collect::<String>(),
            )
            .await?;
            k
        }
        _ => clients::add(&app.pool, "demo").await?.key,
    };
    let api = format!("http://{}", app.addr());
    let sim_url = format!("http://{}", sim.http_addr);
    // The simulated Zalo posts its delivery events to this gateway, as Zalo would to
    // the OA app's webhook URL.
    sim.zns
        .set_webhook(Some(format!("{api}/carriers/zalo/events")));
    {
        // One write, and a closed stdout (a pager quit, a test done reading) must not
        // stop the demo.
        use std::io::Write;
        let text = format!(
            "{}\n",
            walkthrough(&api, &sim_url, &key, admin_key.as_deref(), &sim.smsc_addrs)
        );
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    }

    let stop = app.shutdown_token();
    let app_task = tokio::spawn(app.run_until_stopped());
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = stop.cancelled() => {}
    }
    stop.cancel();
    shutdown.cancel();
    let _ = app_task.await;
    sim.stopped().await;
    drop(private_pg);
    Ok(())
}

fn walkthrough(
    api: &str,
    sim: &str,
    key: &str,
    admin_key: Option<&str>,
    smscs: &[(String, SocketAddr)],
) -> String {
    let admin = match admin_key {
        Some(k) => format!("{k}   (a browser asks: any user name, this key as password)"),
        None => "as configured (admin.api_key)".to_owned(),
    };
    let smsc_lines: Vec<String> = smscs
        .iter()
        .map(|(n, a)| format!("    {n:<10} smpp://{a}  (system_id {n}, password sim-pass)"))
        .collect();
    format!(
        r#"
OTP gateway demo is running. Stop it with Ctrl-C.

  Gateway API      {api}
  API reference    {api}/docs/   (OpenAPI 3.1: {api}/openapi.json)
  Status page      {api}/status
  Admin key        {admin}
  Simulator HTTP   {sim}
  Web handset      {sim}/   (open it in a browser: SMS inbox and SIM PIN prompt)
  Simulator SMSCs
{smscs}
  Demo API key     {key}

Walk-through (copy and paste into another terminal):

export API={api} SIM={sim} KEY={key}

# 1. Ask for an OTP for 0828123088 (VinaPhone)
OTP=$(curl -s -X POST "$API/v1/otp" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' \
  -d '{{"msisdn":"0828123088","purpose":"register"}}'); echo "$OTP"
ID=$(echo "$OTP" | grep -o '"id":"[^"]*"' | cut -d'"' -f4)

# 2. Read the SMS on the simulated handset
sleep 1; curl -s "$SIM/handsets/84828123088/messages"; echo
CODE=$(curl -s "$SIM/handsets/84828123088/messages" | grep -o 'DVC: [0-9]*' | tail -n 1 | grep -o '[0-9]*$')

# 3. Check the code
curl -s -X POST "$API/v1/otp/$ID/check" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d "{{\"code\":\"$CODE\"}}"; echo

# 4. See the verification, with the delivery receipt
curl -s "$API/v1/otp/$ID" -H "Authorization: Bearer $KEY"; echo

# Zalo ZNS with SMS fallback, and SIM ký số: the README's walk-throughs run against this demo.
"#,
        smscs = smsc_lines.join("\n")
    )
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match tokio_postgres::Config::from_str(url) {
        Ok(c) => {
            let host = match c.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                #[cfg(unix)]
                Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
                None => "localhost".into(),
            };
            format!(
                "{}@{host}:{}",
                c.get_user().unwrap_or("?"),
                c.get_ports().first().copied().unwrap_or(5432)
            )
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

async fn server_answers(url: &str) -> bool {
    let Ok(mut config) = tokio_postgres::Config::from_str(url) else {
        return false;
    };
    config.dbname("postgres");
    config.connect_timeout(Duration::from_secs(3));
    match config.connect(tokio_postgres::NoTls).await {
        Ok(_) => true,
        // The server answered, if only to say no: it is there.
        Err(e) => e.as_db_error().is_some(),
    }
}

/// A PostgreSQL cluster in a temporary directory, removed on drop.
struct PrivateCluster {
    dir: PathBuf,
    port: u16,
    child: Child,
    bin: PathBuf,
    as_root: bool,
}

impl PrivateCluster {
    fn start() -> anyhow::Result<Option<PrivateCluster>> {
        let Some(bin) = find_pg_bin() else {
            return Ok(None);
        };
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let dir = std::env::temp_dir().join(format!("gateway-demo-pg-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let as_root = is_root();
        if as_root {
            // PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()?;
            anyhow::ensure!(status.success(), "chown of {} failed", dir.display());
        }
        let run = |program: &Path, args: &[&str]| pg_command(as_root, program, args);
        let data = dir.join("data");
        let data_s = data.to_string_lossy().to_string();
        let out = run(
            &bin.join("initdb"),
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port_s = port.to_string();
        let dir_s = dir.to_string_lossy().to_string();
        let child = run(
            &bin.join("postgres"),
            &[
                "-D",
                &data_s,
                "-p",
                &port_s,
                "-k",
                &dir_s,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting postgres")?;
        let cluster = PrivateCluster {
            dir,
            port,
            child,
            bin,
            as_root,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                std::thread::sleep(Duration::from_millis(200));
                return Ok(Some(cluster));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the private PostgreSQL did not start within 10 s")
    }
}

/// Runs a PostgreSQL program, as the `postgres` user when we are root.
fn pg_command(as_root: bool, program: &Path, args: &[&str]) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // runuser does not pass signals on to postgres: ask pg_ctl to stop it.
        let data = self.dir.join("data").to_string_lossy().to_string();
        let stopped = pg_command(
            self.as_root,
            &self.bin.join("pg_ctl"),
            &["stop", "-D", &data, "-m", "fast", "-w", "-t", "20"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        eprintln!("Stopped and removed the private PostgreSQL cluster.");
    }
}

fn find_pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists() && p.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
