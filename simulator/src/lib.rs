//! The bundled carriers: one SMSC per network (Viettel, VinaPhone, MobiFone, and an
//! aggregator for the others) speaking SMPP 3.4/5.0, the carriers' MSSPs and CAs for SIM
//! signatures, Zalo's notification service (ZNS), and virtual handsets that show what
//! each number received, by SMS and in Zalo.
//!
//! Every server takes a listener and a shutdown token, so tests run it on port 0 and the
//! gateway's demo runs it in-process.

pub mod config;
pub mod handset;
pub mod http;
pub mod mssp;
pub mod pki;
pub mod registry;
pub mod smsc;
pub mod zns;
mod zns_http;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::SimConfig;
pub use handset::{HandsetMessage, Handsets};
pub use smsc::{Smsc, SmscConfig};

/// A simulator whose servers are listening.
#[derive(Debug)]
pub struct RunningSimulator {
    pub http_addr: SocketAddr,
    /// SMSC name → bound address.
    pub smsc_addrs: Vec<(String, SocketAddr)>,
    pub handsets: Arc<Handsets>,
    pub registry: Arc<registry::Registry>,
    pub mssps: Vec<Arc<mssp::Mssp>>,
    pub zns: Arc<zns::Zns>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningSimulator {
    pub fn smsc_addr(&self, name: &str) -> Option<SocketAddr> {
        self.smsc_addrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// Waits until every server has stopped (after the shutdown token is cancelled).
    /// The simulated MSSP of a carrier.
    pub fn mssp(&self, carrier: carrier_adapters::Carrier) -> Option<&Arc<mssp::Mssp>> {
        self.mssps.iter().find(|m| m.config.carrier == carrier)
    }

    pub async fn stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Binds every listener named in `config` (port 0 allowed) and starts serving.
pub async fn start(
    config: SimConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningSimulator> {
    use anyhow::Context;
    let handsets = Arc::new(Handsets::default());
    let registry = Arc::new(registry::Registry::seeded());
    let mut smscs = Vec::new();
    let mut smsc_addrs = Vec::new();
    let mut tasks = Vec::new();
    for smsc_config in config.smsc {
        let listener = TcpListener::bind(smsc_config.listen)
            .await
            .with_context(|| {
                format!(
                    "SMSC {} cannot listen on {}",
                    smsc_config.name, smsc_config.listen
                )
            })?;
        let addr = listener.local_addr()?;
        let name = smsc_config.name.clone();
        let smsc = Smsc::new(smsc_config, handsets.clone(), registry.clone())
            .map_err(anyhow::Error::msg)?;
        smscs.push(smsc.clone());
        smsc_addrs.push((name, addr));
        tasks.push(tokio::spawn(smsc.serve(listener, shutdown.clone())));
    }
    let mut mssps = Vec::new();
    for mssp_config in config.mssp {
        let (cn, org) = mssp::ca_name(mssp_config.carrier);
        let carrier = mssp_config.carrier;
        let ca = tokio::task::spawn_blocking(move || -> anyhow::Result<pki::SimCa> {
            pki::SimCa::new(cn, org, pki::ca_key(carrier)?)
        })
        .await??;
        mssps.push(mssp::Mssp::new(
            mssp_config,
            Arc::new(ca),
            registry.clone(),
        )?);
    }
    let http_listener = std::net::TcpListener::bind(config.http.listen)
        .with_context(|| format!("simulator HTTP cannot listen on {}", config.http.listen))?;
    let http_addr = http_listener.local_addr()?;
    let reachable = if http_addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], http_addr.port()))
    } else {
        http_addr
    };
    for mssp in &mssps {
        mssp.ca.set_base_url(&format!(
            "http://{reachable}/ca/{}",
            mssp.config.carrier.as_str()
        ));
    }
    let zns = zns::Zns::new(config.zns);
    let state = http::State {
        handsets: handsets.clone(),
        smscs,
        registry: registry.clone(),
        mssps: mssps.clone(),
        zns: zns.clone(),
    };
    tasks.push(http::serve(http_listener, state, shutdown)?);
    tracing::info!(%http_addr, ?smsc_addrs, "carrier simulator listening");
    Ok(RunningSimulator {
        http_addr,
        smsc_addrs,
        handsets,
        registry,
        mssps,
        zns,
        tasks,
    })
}
