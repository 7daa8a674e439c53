//! `loadgen`: drives the gateway against the carrier simulator and tells the truth about
//! throughput and latency. `loadgen run` runs one scenario; `loadgen bench` runs the
//! benchmark of BENCHMARKS.md (pgbench reference, then the gateway's figures).

mod bench;
mod cpu;
mod faults;
mod numbers;
mod pacing;
mod pending;
mod plot;
mod receipts;
mod runner;
mod scenario;
mod stack;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use runner::{Load, Receipts, RunSpec};
use scenario::{Ctx, Kind, Mix, Target};
use stack::{Stack, StackOptions};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load tests for the OTP and SIM-signature gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run one scenario and report.
    Run(RunArgs),
    /// The benchmark: pgbench's durable-write reference, then otp-send at the highest
    /// rate with p99 ≤ 50 ms, the otp flow and the signature flow; prints the table.
    Bench(bench::BenchArgs),
    /// Draw the SVG plot of a JSON report written by `run --report` or `bench`.
    Plot {
        report: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// `otp`, `otp-send`, `signature`, `zalo`, or weights: `otp=1,otp-send=3,signature=1`.
    #[arg(long, default_value = "otp-send")]
    scenario: String,
    /// Open loop: flows started per second, on schedule.
    #[arg(long, conflicts_with = "users")]
    rate: Option<f64>,
    /// Closed loop: concurrent users.
    #[arg(long)]
    users: Option<usize>,
    /// Measured time after the warm-up.
    #[arg(long, default_value = "30s")]
    duration: humantime::Duration,
    /// Stop after this many flows (warm-up included), if sooner.
    #[arg(long)]
    count: Option<u64>,
    #[arg(long, default_value = "5s")]
    warmup: humantime::Duration,
    /// Open loop: most flows in flight; beyond it a flow is not started and counts as
    /// an error.
    #[arg(long, default_value_t = 20_000)]
    max_in_flight: usize,
    /// How long to wait after the run for the receipts of the SMS it sent.
    #[arg(long, default_value = "60s")]
    receipt_timeout: humantime::Duration,
    /// Apply a fault during the run (repeatable): `SMSC:KEY=VALUE,…@START+LENGTH` sets
    /// the simulator's faults of that SMSC for the window (`viettel:drop_after_pdus=3@5s+60s`,
    /// `mobifone:refuse_binds=true,drop_after_pdus=1@0s+6m`), `postgres:terminate@START+LENGTH`
    /// terminates the gateway's database connections every 200 ms of it. The report then
    /// says what became of every accepted OTP: delivered, lost, failed, unsent because its
    /// code ended first, duplicates, and stale (sent after the code expired).
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the SVG plot of throughput and latency over time here.
    #[arg(long)]
    plot: Option<PathBuf>,
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// A running gateway, or several instances separated by commas (else loadgen
    /// starts one, with a simulator and a database).
    #[arg(long, requires_all = ["sim", "key"])]
    api: Option<String>,
    /// The running simulator's HTTP base URL.
    #[arg(long)]
    sim: Option<String>,
    /// The API key of a client whose rate and quota do not throttle the load.
    #[arg(long, env = "LOADGEN_API_KEY")]
    key: Option<String>,
    /// PostgreSQL: where loadgen creates its run's database.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// With --api: the running gateway's database, for exact receipt times of every SMS
    /// (without it, a sample is read through the API).
    #[arg(long)]
    gateway_database_url: Option<String>,
    /// Where `gateway` and `carrier-sim` are; default: next to loadgen.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Receipt delay of the simulated SMSCs that loadgen starts.
    #[arg(long, default_value = "200ms")]
    receipt_delay: humantime::Duration,
    /// How long the simulated person takes to confirm a signature.
    #[arg(long, default_value = "200ms")]
    answer_delay: humantime::Duration,
    /// SMPP sessions per route of the gateway that loadgen starts.
    #[arg(long, default_value_t = 2)]
    binds: usize,
    /// Window per session.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Subscribers with a SIM signature, for the signature flow.
    #[arg(long, default_value_t = 100)]
    signers: usize,
    /// Keep the started processes' logs.
    #[arg(long)]
    keep_logs: bool,
}

impl TargetArgs {
    fn stack_options(&self) -> anyhow::Result<StackOptions> {
        let bin_dir = match &self.bin_dir {
            Some(d) => d.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("loadgen has no directory")?
                .to_owned(),
        };
        Ok(StackOptions {
            bin_dir,
            database_url: self
                .database_url
                .clone()
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            receipt_delay: *self.receipt_delay,
            answer_delay: *self.answer_delay,
            binds: self.binds,
            window: self.window,
            keep_logs: self.keep_logs,
        })
    }
}

/// A gateway to drive: the one given, or one started here (stopped with `finish`).
pub struct Running {
    pub target: Target,
    pub database_url: Option<String>,
    pub gateway_pid: Option<u32>,
    stack: Option<Stack>,
}

impl Running {
    pub async fn start(args: &TargetArgs) -> anyhow::Result<Running> {
        match (&args.api, &args.sim, &args.key) {
            (Some(api), Some(sim), Some(key)) => Ok(Running {
                target: Target {
                    apis: api
                        .split(',')
                        .map(|a| a.trim().trim_end_matches('/').to_owned())
                        .filter(|a| !a.is_empty())
                        .collect(),
                    sim: sim.trim_end_matches('/').to_owned(),
                    key: key.clone(),
                },
                database_url: args.gateway_database_url.clone(),
                gateway_pid: None,
                stack: None,
            }),
            _ => {
                let stack = Stack::start(&args.stack_options()?).await?;
                Ok(Running {
                    target: stack.target.clone(),
                    database_url: Some(stack.database_url.clone()),
                    gateway_pid: Some(stack.gateway_pid()),
                    stack: Some(stack),
                })
            }
        }
    }

    pub async fn finish(self) {
        if let Some(stack) = self.stack {
            stack.stop().await;
        }
    }

    pub fn receipts(&self) -> Receipts<'_> {
        match &self.database_url {
            Some(url) => Receipts::Database(url),
            None => Receipts::Api,
        }
    }
}

/// The shared context of a run: an HTTP client sized for the load, this run's numbers,
/// and (for signatures) subscribers registered on the simulator with their keys made.
pub async fn context(target: &Target, mix: &Mix, signers: usize) -> anyhow::Result<Arc<Ctx>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        // Below the gateway's keep-alive (5 s): never send on a connection it is closing.
        .pool_idle_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(120))
        .build()?;
    // A different stretch of numbers every run: runs against one gateway do not meet
    // each other's per-number limits.
    let number_offset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as u64;
    let signers = if mix.has(Kind::Signature) {
        prepare_signers(
            &http,
            &target.sim,
            number_offset.wrapping_add(1 << 40),
            signers,
        )
        .await?
    } else {
        Vec::new()
    };
    Ok(Arc::new(Ctx {
        http,
        target: target.clone(),
        number_offset,
        signers,
    }))
}

/// Registers `n` subscribers who confirm every signature, and has the simulator make
/// their SIM keys now (RSA key generation is slow and would otherwise land in the run).
async fn prepare_signers(
    http: &reqwest::Client,
    sim: &str,
    offset: u64,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    use futures::StreamExt;
    let numbers: Vec<String> = (0..n as u64).map(|i| numbers::number(offset, i)).collect();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(numbers.iter().enumerate())
        .map(|(i, n)| async move {
            let e164 = numbers::e164(n);
            let put = http
                .put(format!("{sim}/subscribers/{e164}"))
                .json(&serde_json::json!({
                    "full_name": format!("Người Thử Tải {i}"),
                    "id_number": format!("0010990{:05}", i % 100_000),
                    "date_of_birth": "1990-01-01",
                    "sim_pki": true,
                    "behaviour": "confirm",
                    "certificate": "valid"
                }))
                .send()
                .await?;
            anyhow::ensure!(
                put.status().is_success(),
                "registering {n}: {}",
                put.status()
            );
            let carrier = gateway::domain::Msisdn::parse(n)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .carrier();
            let cert = http
                .get(format!(
                    "{sim}/mssp/{}/certificates/{e164}",
                    carrier.as_str()
                ))
                .basic_auth("http://dichvucong.gov.vn/ap", Some("sim-ap-pass"))
                .send()
                .await?;
            anyhow::ensure!(
                cert.status().is_success(),
                "certificate of {n}: {}",
                cert.status()
            );
            Ok(())
        })
        .buffer_unordered(4)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(numbers)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mix = Mix::parse(&args.scenario).map_err(anyhow::Error::msg)?;
    let load = match (args.rate, args.users) {
        (Some(rate), _) if rate > 0.0 && rate.is_finite() => Load::Open { rate },
        (Some(_), _) => anyhow::bail!("--rate must be above 0"),
        (None, Some(users)) if users > 0 => Load::Closed { users },
        (None, Some(_)) => anyhow::bail!("--users must be at least 1"),
        (None, None) => Load::Closed { users: 32 },
    };
    let faults = args
        .faults
        .iter()
        .map(|f| f.parse::<faults::Fault>().map(|parsed| (f.clone(), parsed)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let running = Running::start(&args.target).await?;
    let result = async {
        let ctx = context(&running.target, &mix, args.target.signers).await?;
        let spec = RunSpec {
            mix: mix.clone(),
            load,
            duration: *args.duration,
            count: args.count,
            warmup: *args.warmup,
            max_in_flight: args.max_in_flight,
            progress: !args.no_progress,
            receipt_timeout: *args.receipt_timeout,
            faults,
            database_url: running.database_url.clone(),
        };
        runner::run(ctx, &spec, running.receipts(), running.gateway_pid).await
    }
    .await;
    running.finish().await;
    let report = result?;
    print!("{}", runner::summary(&report));
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let title = format!("{} — {}", report.scenario, describe(&report.load));
        std::fs::write(
            path,
            plot::svg(&title, &report.series, report.warmup_s as u64),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub fn describe(load: &Load) -> String {
    match load {
        Load::Open { rate } => format!("open loop, {rate}/s"),
        Load::Closed { users } => format!("closed loop, {users} users"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run(args) => run(args).await,
        Cmd::Bench(args) => bench::bench(args).await,
        Cmd::Plot { report, out } => {
            let r: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&report).with_context(|| format!("reading {}", report.display()))?,
            )?;
            let series: Vec<stats::SeriesPoint> =
                serde_json::from_value(r["series"].clone()).context("the report has no series")?;
            let load: Load = serde_json::from_value(r["load"].clone()).context("no load")?;
            let title = format!(
                "{} — {}",
                r["scenario"].as_str().unwrap_or("run"),
                describe(&load)
            );
            let warmup = r["warmup_s"].as_f64().unwrap_or(0.0) as u64;
            std::fs::write(&out, plot::svg(&title, &series, warmup))?;
            Ok(())
        }
    }
}
