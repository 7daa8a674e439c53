//! Starting what a run needs on this machine: a fresh database, the simulator and the
//! gateway as separate processes (the real binaries, so that the gateway's memory is
//! its own), each on free ports; and stopping them again.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::scenario::Target;

pub struct StackOptions {
    /// Where `gateway` and `carrier-sim` are (default: next to `loadgen`).
    pub bin_dir: PathBuf,
    /// A PostgreSQL URL; the run's database is created beside the one it names.
    pub database_url: String,
    /// The simulated SMSCs' delay before a delivery receipt.
    pub receipt_delay: Duration,
    /// How long the simulated person takes to confirm a signature.
    pub answer_delay: Duration,
    /// SMPP sessions per route.
    pub binds: usize,
    pub window: usize,
    pub keep_logs: bool,
}

pub struct Stack {
    pub target: Target,
    pub database_url: String,
    gateways: Vec<Child>,
    sim: Child,
    dir: PathBuf,
    keep: bool,
    gateway_bin: PathBuf,
    /// The gateway configuration with `{PORT}` where the listening port goes.
    gateway_template: String,
}

/// `postgres://u@h:5432/db?x` with the database replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Stack {
    pub async fn start(opts: &StackOptions) -> anyhow::Result<Stack> {
        let gateway_bin = opts.bin_dir.join("gateway");
        let sim_bin = opts.bin_dir.join("carrier-sim");
        for bin in [&gateway_bin, &sim_bin] {
            if !bin.exists() {
                bail!(
                    "{} not found: build it first (cargo build --release -p gateway -p simulator) or pass --bin-dir",
                    bin.display()
                );
            }
        }
        let run = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("loadgen-{}", &run[..12]));
        std::fs::create_dir_all(&dir)?;

        // The simulator, on free ports.
        let ip = "127.0.0.1".parse().expect("valid ip");
        let http_port = free_port()?;
        let smsc_ports = [free_port()?, free_port()?, free_port()?, free_port()?];
        let mut sim_config = simulator::SimConfig::on_ports(ip, http_port, smsc_ports);
        for smsc in &mut sim_config.smsc {
            smsc.receipt_delay = opts.receipt_delay;
        }
        for mssp in &mut sim_config.mssp {
            mssp.answer_delay = opts.answer_delay;
        }
        let sim_toml = dir.join("sim.toml");
        std::fs::write(&sim_toml, toml::to_string(&sim_config)?)?;
        let sim = Command::new(&sim_bin)
            .arg("--config")
            .arg(&sim_toml)
            .env("RUST_LOG", "warn")
            .stdout(log_file(&dir, "sim.out")?)
            .stderr(log_file(&dir, "sim.err")?)
            .spawn()
            .with_context(|| format!("starting {}", sim_bin.display()))?;
        let sim_url = format!("http://127.0.0.1:{http_port}");

        // The gateway's configuration: its own database, limits that do not throttle
        // the load client, every route on the simulator.
        let database_url = with_database(&opts.database_url, &format!("loadgen_{}", &run[..16]));
        let hmac_key = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let smscs: Vec<(String, SocketAddr)> = sim_config
            .smsc
            .iter()
            .map(|s| (s.name.clone(), s.listen))
            .collect();
        let gateway_toml = format!(
            // Every simulated user comes from loadgen's one address.
            "[server]\nlisten = \"127.0.0.1:{{PORT}}\"\nmax_connections_per_ip = 1000000\n\n\
             [database]\nurl = \"{database_url}\"\npool_size = 24\n\n\
             [otp]\nhmac_key = \"{hmac_key}\"\n\n\
             [outbox]\npoll_interval = \"200ms\"\n\n\
             [limits]\nclient_requests_per_second = 10000000\nclient_burst = 10000000\n\
             client_daily_sms = 1000000000\n\n\
             [signatures]\npublic_base_url = \"http://127.0.0.1:{{PORT}}\"\npoll_min = \"200ms\"\npoll_max = \"1s\"\n\n\
             [log]\nfilter = \"warn\"\n\n{}",
            gateway::config::simulator_toml(
                SocketAddr::new(ip, http_port),
                &smscs,
                opts.binds,
                opts.window
            )
        );
        let config_path = dir.join("gateway-admin.toml");
        std::fs::write(&config_path, gateway_toml.replace("{PORT}", "0"))?;
        let gateway_cmd = |args: &[&str]| {
            let mut c = Command::new(&gateway_bin);
            c.arg("--config").arg(&config_path).args(args);
            c.env_remove("DATABASE_URL");
            c
        };
        let out = gateway_cmd(&["migrate"]).output()?;
        if !out.status.success() {
            bail!("gateway migrate: {}", String::from_utf8_lossy(&out.stderr));
        }
        let out = gateway_cmd(&["client", "add", "--name", "loadgen"]).output()?;
        if !out.status.success() {
            bail!(
                "gateway client add: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let key = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find(|w| w.starts_with("gk_"))
            .context("no API key in `client add`'s output")?
            .to_owned();
        let mut stack = Stack {
            target: Target {
                apis: Vec::new(),
                sim: sim_url,
                key,
            },
            database_url,
            gateways: Vec::new(),
            sim,
            dir,
            keep: opts.keep_logs,
            gateway_bin,
            gateway_template: gateway_toml,
        };
        if let Err(e) = stack.add_instance().await {
            stack.keep = true;
            let dir = stack.dir.clone();
            stack.stop().await;
            return Err(e.context(format!("logs in {}", dir.display())));
        }
        Ok(stack)
    }

    /// Starts one more gateway instance on the same database and simulator, and waits
    /// until it is ready; the target then spreads flows over every instance.
    pub async fn add_instance(&mut self) -> anyhow::Result<()> {
        let n = self.gateways.len() + 1;
        let port = free_port()?;
        let config = self.dir.join(format!("gateway-{n}.toml"));
        std::fs::write(
            &config,
            self.gateway_template.replace("{PORT}", &port.to_string()),
        )?;
        let child = Command::new(&self.gateway_bin)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env_remove("DATABASE_URL")
            .stdout(log_file(&self.dir, &format!("gateway-{n}.out"))?)
            .stderr(log_file(&self.dir, &format!("gateway-{n}.err"))?)
            .spawn()
            .with_context(|| format!("starting {}", self.gateway_bin.display()))?;
        self.gateways.push(child);
        self.target.apis.push(format!("http://127.0.0.1:{port}"));
        self.wait_ready().await
    }

    /// The first gateway instance's process id (its memory is what runs report).
    pub fn gateway_pid(&self) -> u32 {
        self.gateways[0].id()
    }

    /// Replaces the first gateway instance by a fresh process (same configuration and
    /// port): what it held from an earlier, overloaded step is gone.
    pub async fn restart_first(&mut self) -> anyhow::Result<()> {
        let port = self.target.apis[0]
            .rsplit(':')
            .next()
            .context("no port in the API URL")?
            .to_owned();
        let old = &mut self.gateways[0];
        let _ = Command::new("kill")
            .args(["-TERM", &old.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while old.try_wait()?.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = old.kill();
        let _ = old.wait();
        let child = Command::new(&self.gateway_bin)
            .arg("--config")
            .arg(self.dir.join("gateway-1.toml"))
            .arg("serve")
            .env_remove("DATABASE_URL")
            .stdout(log_file(&self.dir, &format!("gateway-1-{port}.out"))?)
            .stderr(log_file(&self.dir, &format!("gateway-1-{port}.err"))?)
            .spawn()
            .with_context(|| format!("starting {}", self.gateway_bin.display()))?;
        self.gateways[0] = child;
        self.wait_ready().await
    }

    /// Until the simulator answers and every route of the gateway is bound.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for gateway in &mut self.gateways {
                if let Some(status) = gateway.try_wait()? {
                    bail!("a gateway exited: {status}");
                }
            }
            if let Some(status) = self.sim.try_wait()? {
                bail!("the simulator exited: {status}");
            }
            let sim_up = http
                .get(format!("{}/health", self.target.sim))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let mut health: Option<serde_json::Value> = None;
            let mut bound = true;
            for api in &self.target.apis {
                health = match http.get(format!("{api}/health")).send().await {
                    Ok(r) => r.json().await.ok(),
                    Err(_) => None,
                };
                bound &= health.as_ref().is_some_and(|h| {
                    h["smpp"]
                        .as_object()
                        .is_some_and(|m| !m.is_empty() && m.values().all(|b| b["bound"] == true))
                });
            }
            if sim_up && bound {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not ready within 30 s (gateway health: {health:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops both processes (SIGTERM, then SIGKILL after 10 s) and drops the database.
    pub async fn stop(mut self) {
        for child in self.gateways.iter_mut().chain([&mut self.sim]) {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = gateway::store::drop_database(&self.database_url).await {
            eprintln!("could not drop the run's database: {e:#}");
        }
        if self.keep {
            eprintln!("logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    Ok(Stdio::from(std::fs::File::create(dir.join(name))?))
}

/// The resident memory of process `pid` in MiB (Linux), if it can be read.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }

    #[test]
    fn our_own_memory_is_readable() {
        let mib = rss_mib(std::process::id()).expect("Linux /proc");
        assert!(mib > 0.1 && mib < 10_000.0, "{mib}");
    }
}
