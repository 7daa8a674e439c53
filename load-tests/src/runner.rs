//! Runs a scenario open-loop (a target rate) or closed-loop (N users), then waits for
//! the receipts of the SMS it caused, and reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::pacing::Schedule;
use crate::scenario::{Ctx, Kind, Mix};
use crate::stats::{Latency, Recorder, SeriesPoint};

#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Requests per second, sent on time whatever the server does.
    Open { rate: f64 },
    /// Users that each start their next flow when the last one ends.
    Closed { users: usize },
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub mix: Mix,
    pub load: Load,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Or: this many flows in all (warm-up included), whichever comes first.
    pub count: Option<u64>,
    pub warmup: Duration,
    /// Open loop: flows in flight beyond this are not started (counted as errors).
    pub max_in_flight: usize,
    pub progress: bool,
    /// How long to wait for outstanding receipts after the run.
    pub receipt_timeout: Duration,
    /// Faults to apply during the run (with the text they were given as).
    pub faults: Vec<(String, crate::faults::Fault)>,
    /// The gateway's database, for `postgres:` faults.
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub load: Load,
    pub warmup_s: f64,
    pub measured_s: f64,
    /// Flows started after the warm-up.
    pub flows: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// Completed flows per second over the measured time.
    pub throughput_per_s: f64,
    /// Per step, in milliseconds (`POST /v1/otp`, `receipt (end to end)`, …).
    pub latency_ms: BTreeMap<String, Latency>,
    /// The gateway's resident memory during the measured time (when loadgen started it).
    pub gateway_rss_mib: Option<RssReport>,
    /// The CPU the measured time cost per completed flow, every process of the machine
    /// counted, and by part of the stack.
    pub cpu: Option<crate::cpu::CpuReport>,
    pub series: Vec<SeriesPoint>,
    /// The faults applied (`--fault`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<crate::faults::AppliedFault>,
    /// With faults: what became of every OTP the run created, warm-up included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<crate::faults::DeliveryTruth>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct RssReport {
    pub max: f64,
    pub end: f64,
}

const SHARDS: usize = 16;

/// What the flows of a run share: recorder shards, the OTPs whose receipts are awaited,
/// and the counters the progress bar and the in-flight limit read.
#[derive(Default)]
struct Shared {
    shards: Vec<Mutex<Recorder>>,
    created: Mutex<Vec<String>>,
    /// Every OTP created, warm-up included: (id, E.164).
    accepted: Mutex<Vec<(String, String)>>,
    done: AtomicU64,
    failed: AtomicU64,
    measured_flows: AtomicU64,
    in_flight: AtomicUsize,
}

impl Shared {
    /// Records a finished flow in its shard.
    fn record(
        &self,
        index: u64,
        start: Instant,
        intended: Instant,
        measured: bool,
        outcome: crate::scenario::Outcome,
    ) {
        let second = start.elapsed().as_secs() as usize;
        let mut rec = self.shards[index as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (step, latency) in &outcome.steps {
            rec.step(step, *latency, measured);
        }
        match &outcome.result {
            Ok(()) => {
                self.done.fetch_add(1, Ordering::Relaxed);
                rec.ok(second, intended.elapsed(), measured);
            }
            Err(kind) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                rec.error(second, kind, measured);
            }
        }
        drop(rec);
        if !outcome.created.is_empty() {
            self.accepted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(outcome.created);
        }
        if let (Some(id), true) = (outcome.otp_id, measured) {
            self.created
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(id);
        }
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where the `otp-send` receipts are read from after the run.
pub enum Receipts<'a> {
    /// The gateway's database (exact, every OTP).
    Database(&'a str),
    /// The API (`GET /v1/otp/{id}`), for a sample of the OTPs.
    Api,
}

pub async fn run(
    ctx: Arc<Ctx>,
    spec: &RunSpec,
    receipts: Receipts<'_>,
    gateway_pid: Option<u32>,
) -> anyhow::Result<Report> {
    let shared = Arc::new(Shared {
        shards: (0..SHARDS)
            .map(|_| Mutex::new(Recorder::default()))
            .collect(),
        ..Shared::default()
    });
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;

    let faults = (!spec.faults.is_empty()).then(|| {
        crate::faults::schedule(
            ctx.http.clone(),
            ctx.target.sim.clone(),
            spec.database_url.clone(),
            spec.faults.clone(),
            start,
        )
    });
    let bar = progress_bar(spec);
    let ticker = {
        let (bar, shared) = (bar.clone(), shared.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let elapsed = start.elapsed().as_secs_f64().max(0.001);
                let n = shared.done.load(Ordering::Relaxed);
                bar.set_position(elapsed as u64);
                bar.set_message(format!(
                    "{n} done, {:.0}/s, errors {}",
                    n as f64 / elapsed,
                    shared.failed.load(Ordering::Relaxed)
                ));
            }
        })
    };
    // CPU time at the start and the end of the measured time.
    let cpu_window = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let gateways: Vec<u32> = gateway_pid.into_iter().collect();
        let before = crate::cpu::sample(&gateways);
        tokio::time::sleep_until(end.into()).await;
        (before, crate::cpu::sample(&gateways))
    });
    let rss = gateway_pid.map(|pid| {
        let max = Arc::new(Mutex::new(0.0f64));
        let m = max.clone();
        let task = tokio::spawn(async move {
            loop {
                if Instant::now() >= measure_from {
                    if let Some(mib) = crate::stack::rss_mib(pid) {
                        let mut max = m.lock().unwrap_or_else(|p| p.into_inner());
                        *max = max.max(mib);
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        (pid, max, task)
    });

    // One flow: run it, record it in its shard.
    let launch = {
        let (ctx, shared, mix) = (ctx.clone(), shared.clone(), spec.mix.clone());
        move |index: u64, intended: Instant| {
            let (ctx, shared) = (ctx.clone(), shared.clone());
            let kind = mix.kind(index);
            async move {
                let measured = intended >= measure_from;
                if measured {
                    shared.measured_flows.fetch_add(1, Ordering::Relaxed);
                }
                let outcome = ctx.run(kind, index, intended).await;
                shared.record(index, start, intended, measured, outcome);
            }
        }
    };

    let total = spec.count.unwrap_or(u64::MAX);
    let mut tasks = tokio::task::JoinSet::new();
    match spec.load {
        Load::Open { rate } => {
            let schedule = Schedule::new(rate);
            let mut i = 0u64;
            while i < total && Instant::now() < end {
                let due = schedule.due_by(start.elapsed()).min(total);
                while i < due {
                    let intended = start + schedule.due(i);
                    if intended >= end {
                        break;
                    }
                    if shared.in_flight.load(Ordering::Relaxed) >= spec.max_in_flight {
                        let second = start.elapsed().as_secs() as usize;
                        shared.shards[i as usize % SHARDS]
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .error(
                                second,
                                "not started: too many in flight",
                                intended >= measure_from,
                            );
                        if intended >= measure_from {
                            shared.measured_flows.fetch_add(1, Ordering::Relaxed);
                        }
                        shared.failed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        shared.in_flight.fetch_add(1, Ordering::Relaxed);
                        tasks.spawn(launch(i, intended));
                    }
                    i += 1;
                }
                while tasks.try_join_next().is_some() {}
                tokio::time::sleep_until((start + schedule.due(i)).into()).await;
            }
        }
        Load::Closed { users } => {
            let next = Arc::new(AtomicU64::new(0));
            for _ in 0..users.max(1) {
                let (next, launch, shared) = (next.clone(), launch.clone(), shared.clone());
                tasks.spawn(async move {
                    loop {
                        let intended = Instant::now();
                        if intended >= end {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        shared.in_flight.fetch_add(1, Ordering::Relaxed);
                        launch(i, intended).await;
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    while tasks.join_next().await.is_some() {}
    let measured_s = (Instant::now().min(end) - measure_from.min(Instant::now()))
        .as_secs_f64()
        .max(0.001);
    ticker.abort();
    bar.finish_and_clear();
    // A run that stopped early (`--count`) ends its window then.
    let cpu_samples = if cpu_window.is_finished() {
        cpu_window.await.ok()
    } else {
        cpu_window.abort();
        None
    };
    let rss = match rss {
        Some((pid, max, task)) => {
            task.abort();
            let max = *max.lock().unwrap_or_else(|p| p.into_inner());
            Some(RssReport {
                max: round1(max),
                end: round1(crate::stack::rss_mib(pid).unwrap_or(0.0)),
            })
        }
        None => None,
    };

    // Faults that outlast the load end before the receipts are awaited.
    let applied = match faults {
        Some(task) => task.await??,
        None => Vec::new(),
    };
    let mut merged = Recorder::default();
    for shard in shared.shards.iter() {
        merged.merge(&shard.lock().unwrap_or_else(|p| p.into_inner()));
    }
    if spec.mix.has(Kind::OtpSend) {
        let ids = std::mem::take(&mut *shared.created.lock().unwrap_or_else(|p| p.into_inner()));
        match receipts {
            Receipts::Database(url) => {
                crate::receipts::from_database(url, &ids, spec.receipt_timeout, &mut merged).await?
            }
            Receipts::Api => {
                crate::receipts::from_api(&ctx, &ids, spec.receipt_timeout, &mut merged).await
            }
        }
    }
    let delivery = if spec.faults.is_empty() {
        None
    } else {
        let accepted =
            std::mem::take(&mut *shared.accepted.lock().unwrap_or_else(|p| p.into_inner()));
        Some(crate::faults::truth(&ctx, &accepted, spec.receipt_timeout).await)
    };
    Ok(Report {
        faults: applied,
        delivery,
        scenario: spec.mix.name(),
        load: spec.load,
        warmup_s: spec.warmup.as_secs_f64(),
        measured_s: round1(measured_s),
        flows: shared.measured_flows.load(Ordering::Relaxed),
        ok: merged.ok_count(),
        errors: merged.errors().clone(),
        throughput_per_s: round1(merged.ok_count() as f64 / measured_s),
        latency_ms: merged.steps(),
        gateway_rss_mib: rss,
        cpu: cpu_samples.and_then(|(before, after)| {
            crate::cpu::report(&before, &after, merged.ok_count(), measured_s)
        }),
        series: {
            // Whole seconds of the run only: the flows that end after it would make a
            // last, partial second look like a collapse.
            let mut series = merged.series();
            series.truncate((spec.warmup + spec.duration).as_secs() as usize);
            series
        },
    })
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn progress_bar(spec: &RunSpec) -> indicatif::ProgressBar {
    if !spec.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new((spec.warmup + spec.duration).as_secs());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} s  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// The summary table printed at the end of a run.
pub fn summary(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let load = match report.load {
        Load::Open { rate } => format!("open loop at {rate}/s"),
        Load::Closed { users } => format!("closed loop with {users} users"),
    };
    let _ = writeln!(
        out,
        "{} — {load}, {} s measured after {} s warm-up",
        report.scenario, report.measured_s, report.warmup_s
    );
    let _ = writeln!(
        out,
        "flows {}  ok {}  errors {}  throughput {}/s",
        report.flows,
        report.ok,
        report.errors.values().sum::<u64>(),
        report.throughput_per_s
    );
    let _ = writeln!(
        out,
        "{:<28} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
    );
    for (step, l) in &report.latency_ms {
        let _ = writeln!(
            out,
            "{step:<28} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            l.count, l.p50, l.p90, l.p99, l.p999, l.max
        );
    }
    for (kind, n) in &report.errors {
        let _ = writeln!(out, "error: {kind}: {n}");
    }
    for f in &report.faults {
        let _ = writeln!(
            out,
            "fault: {} (from {} s for {} s){}",
            f.fault,
            f.start_s,
            f.length_s,
            f.connections_terminated
                .map(|n| format!(", {n} database connections terminated"))
                .unwrap_or_default()
        );
    }
    if let Some(d) = &report.delivery {
        let _ = writeln!(
            out,
            "delivery: accepted {}  delivered {}  lost {}  failed {}  code ended first {}  duplicates {}  stale {}",
            d.accepted, d.delivered, d.lost, d.failed, d.unsent_ended, d.duplicates, d.stale
        );
    }
    if let Some(rss) = report.gateway_rss_mib {
        let _ = writeln!(
            out,
            "gateway RSS: max {} MiB, at the end {} MiB",
            rss.max, rss.end
        );
    }
    if let Some(c) = &report.cpu {
        let _ = writeln!(
            out,
            "CPU per flow, all processes: {} µs (gateway {}, PostgreSQL {}, simulator {}, loadgen {}, other {}); {} of {} cores busy",
            c.per_flow_us, c.gateway_us, c.postgres_us, c.simulator_us, c.loadgen_us, c.other_us,
            c.cores_busy, c.cores
        );
    }
    out
}
