//! Building and running the gateway: database, SMPP binds, outbox dispatcher, HTTP.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use anyhow::Context;
use carrier_adapters::smpp::{BindGroup, Esme};
use deadpool_postgres::Pool;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::crypto::ServerKeys;
use crate::http::AppState;
use crate::otp::OtpService;
use crate::outbox::{Dispatcher, ReceiptStore};
use crate::signatures::SignatureService;
use crate::{http, mssp, notifications, signatures, store, webhooks};

pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    /// Cancelled to stop the application (by a signal, or by a test).
    shutdown: CancellationToken,
    /// Readiness's view of it: cancelled first, then the drain, then the listener closes.
    draining: CancellationToken,
    drain: Duration,
    /// Stops the background workers once the HTTP server has answered its last request.
    workers_shutdown: CancellationToken,
    /// Stops the binds and the receipt writer, after the dispatcher has drained.
    smpp_shutdown: CancellationToken,
    /// Stops the create batchers once the HTTP server has answered its last request
    /// (every create it accepted has been through a batch by then).
    batch_shutdown: CancellationToken,
    dispatcher: tokio::task::JoinHandle<()>,
    conversion_counts: Arc<crate::guards::ConversionCounts>,
    smpp_workers: Vec<tokio::task::JoinHandle<()>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    pub pool: Pool,
}

impl Application {
    /// Prepares the database, binds the listener and starts the background workers.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(settings.server.listen)
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        Self::build_with_listener(settings, listener).await
    }

    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
    ) -> anyhow::Result<Application> {
        let secret = settings.otp.hmac_key.clone().context(
            "otp.hmac_key is not set: set GATEWAY__OTP__HMAC_KEY to the same secret of at least 32 bytes on every instance",
        )?;
        if settings.smpp.is_empty() {
            anyhow::bail!(
                "no [smpp.*] route is configured, so no SMS could be sent: name each carrier's \
                 SMSC in the configuration file (`gateway demo --print-config` writes one for \
                 a standalone carrier-sim), or run `gateway demo`"
            );
        }
        let keys = Arc::new(ServerKeys::from_secret(&secret)?);
        if settings.database.create {
            store::ensure_database(&settings.database.url).await?;
        }
        let pool = store::pool(&settings.database.url, settings.database.pool_size)?;
        store::migrate(&pool).await.context("applying migrations")?;
        crate::billing::load_prices(&pool, &settings.billing.prices)
            .await
            .context("loading billing.prices")?;

        let shutdown = CancellationToken::new();
        let draining = CancellationToken::new();
        // The workers (dispatcher, pollers) run until HTTP has stopped: during the drain
        // the instance still takes OTPs, and still sends them.
        let workers_shutdown = CancellationToken::new();
        let smpp_shutdown = CancellationToken::new();
        let mut workers = Vec::new();
        let mut smpp_workers = Vec::new();
        let funnel = Arc::new(crate::telemetry::funnel::Funnel::default());
        let (sink, receipt_writer) =
            ReceiptStore::start(pool.clone(), funnel.clone(), smpp_shutdown.clone());
        smpp_workers.push(receipt_writer);
        let mut binds = BTreeMap::new();
        for (name, route) in &settings.smpp {
            let mut group = Vec::with_capacity(route.binds);
            let sender_tps = route.sender_limits();
            for _ in 0..route.binds {
                for config in route.esme_configs(name, &sender_tps) {
                    let (esme, task) = Esme::start(config, sink.clone(), smpp_shutdown.clone());
                    group.push(esme);
                    smpp_workers.push(task);
                }
            }
            binds.insert(name.clone(), BindGroup::new(name, group));
        }
        let binds = Arc::new(binds);
        let wake = Arc::new(Notify::new());
        let workflow_wake = Arc::new(Notify::new());
        let dispatcher = Dispatcher {
            funnel: funnel.clone(),
            pool: pool.clone(),
            keys: keys.clone(),
            binds: binds.clone(),
            fallbacks: settings
                .smpp
                .iter()
                .filter_map(|(name, r)| {
                    r.fallback
                        .clone()
                        .map(|f| (name.clone(), (f, r.fallback_after)))
                })
                .collect(),
            settings: settings.outbox.clone(),
            wake: wake.clone(),
            workflow_wake: workflow_wake.clone(),
        };
        let dispatcher = tokio::spawn(dispatcher.run(workers_shutdown.clone()));
        let zns_wake = Arc::new(Notify::new());
        if let Some(zalo) = &settings.zalo {
            let client = crate::zalo::ZaloClient::new(zalo.clone(), pool.clone(), keys.clone())
                .context("the Zalo client")?;
            workers.push(tokio::spawn(
                crate::outbox::zns::ZnsDispatcher {
                    pool: pool.clone(),
                    keys: keys.clone(),
                    zalo: Arc::new(client),
                    settings: settings.outbox.clone(),
                    wake: zns_wake.clone(),
                    workflow_wake: workflow_wake.clone(),
                    funnel: funnel.clone(),
                }
                .run(workers_shutdown.clone()),
            ));
        }
        workers.push(tokio::spawn(
            crate::outbox::workflow::Workflow {
                pool: pool.clone(),
                interval: settings.otp.workflow_interval,
                sms_wake: wake.clone(),
                zns_wake: zns_wake.clone(),
                wake: workflow_wake,
            }
            .run(workers_shutdown.clone()),
        ));
        let (signature_events, _) = broadcast::channel(1024);
        workers.push(tokio::spawn(notifications::listen(
            settings.database.url.clone(),
            signature_events.clone(),
            workers_shutdown.clone(),
        )));
        let mssps = Arc::new(mssp::clients(&settings.mss)?);

        let settings = Arc::new(settings);
        let conversion_counts = Arc::new(crate::guards::ConversionCounts::default());
        let otp = Arc::new(OtpService::new(crate::otp::Deps {
            pool: pool.clone(),
            keys: keys.clone(),
            settings: settings.clone(),
            outbox_wake: wake,
            zns_wake,
            guard_counters: Default::default(),
            conversion_counts: conversion_counts.clone(),
            funnel: funnel.clone(),
        }));
        let signatures = Arc::new(SignatureService {
            pool: pool.clone(),
            keys: keys.clone(),
            settings: settings.clone(),
            mssps,
            signature_events,
            funnel: funnel.clone(),
        });
        let request_metrics = Arc::new(http::requests::RequestMetrics::default());
        let state = Arc::new(AppState {
            pool: pool.clone(),
            keys,
            settings: settings.clone(),
            binds,
            otp: otp.clone(),
            signatures: signatures.clone(),
            request_metrics: request_metrics.clone(),
            funnel: funnel.clone(),
            client_rate: crate::limits::ClientRates::new(&settings.limits),
            shutting_down: draining.clone(),
        });
        let batch_shutdown = CancellationToken::new();
        workers.extend(otp.start_batchers(&batch_shutdown));
        workers.push(tokio::spawn(signatures::run_poller(
            signatures.clone(),
            workers_shutdown.clone(),
        )));
        workers.push(tokio::spawn(webhooks::run(
            Arc::new(webhooks::Deliveries {
                pool: pool.clone(),
                settings: settings.webhooks.clone(),
            }),
            workers_shutdown.clone(),
        )));
        workers.push(tokio::spawn(crate::guards::run_flusher(
            conversion_counts.clone(),
            pool.clone(),
            workers_shutdown.clone(),
        )));
        let state = web::Data::from(state);
        let addr = listener.local_addr()?;
        let connections = http::deadline::ConnectionCounts::default();
        let per_ip = settings.server.max_connections_per_ip;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(http::deadline::middleware))
                .wrap(actix_web::middleware::from_fn(http::requests::middleware))
                .app_data(state.clone())
                .app_data(web::Data::from(request_metrics.clone()))
                .app_data(http::query_config())
                .configure(http::routes)
                .default_service(web::to(http::not_found))
        })
        .on_connect(move |connection, ext| connections.on_connect(per_ip, connection, ext))
        .client_request_timeout(settings.server.header_timeout)
        .workers(settings.server.workers.max(1))
        .disable_signals()
        .shutdown_timeout(5)
        .listen(listener)?
        .run();
        Ok(Application {
            addr,
            server,
            shutdown,
            draining,
            drain: settings.server.shutdown_drain,
            workers_shutdown,
            smpp_shutdown,
            batch_shutdown,
            dispatcher,
            conversion_counts,
            smpp_workers,
            workers,
            pool,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A token that stops the application when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains in order: `/readyz`
    /// answers 503 for `server.shutdown_drain` while requests are still served, HTTP
    /// stops taking requests (in-flight ones finish), the dispatcher finishes the batch
    /// it is sending (at most 10 s; the rest stays queued for the next start or another
    /// instance), then the binds unbind.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let (shutdown, draining, drain) =
            (self.shutdown.clone(), self.draining.clone(), self.drain);
        let stopper = tokio::spawn(async move {
            shutdown.cancelled().await;
            draining.cancel();
            if !drain.is_zero() {
                tracing::info!(?drain, "shutting down: not ready, still serving");
                tokio::time::sleep(drain).await;
            }
            handle.stop(true).await;
        });
        let served = self.server.await;
        self.shutdown.cancel();
        self.draining.cancel();
        self.workers_shutdown.cancel();
        self.batch_shutdown.cancel();
        // Every request has ended: write the last conversion counts.
        if let Err(e) = self.conversion_counts.flush(&self.pool).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "last conversion counts not written"
            );
        }
        let _ = stopper.await;
        if tokio::time::timeout(Duration::from_secs(10), self.dispatcher)
            .await
            .is_err()
        {
            tracing::warn!("outbox dispatcher did not finish within 10 s; its rows stay claimed until their lease ends");
        }
        for worker in self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(5), worker).await;
        }
        self.smpp_shutdown.cancel();
        for worker in self.smpp_workers {
            let _ = tokio::time::timeout(Duration::from_secs(5), worker).await;
        }
        served.context("HTTP server failed")
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
