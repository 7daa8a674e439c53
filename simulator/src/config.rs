//! Simulator configuration: defaults that other SMPP clients can rely on, overridable by
//! a TOML file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use carrier_adapters::Carrier;
use serde::{Deserialize, Serialize};

use crate::mssp::MsspConfig;
use crate::smsc::SmscConfig;

pub const DEFAULT_PASSWORD: &str = "sim-pass";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    pub http: HttpConfig,
    pub smsc: Vec<SmscConfig>,
    #[serde(default = "default_mssps")]
    pub mssp: Vec<MsspConfig>,
    /// The simulated Zalo Notification Service (`/zns` on the HTTP port).
    #[serde(default)]
    pub zns: crate::zns::ZnsConfig,
}

fn default_mssps() -> Vec<MsspConfig> {
    [Carrier::Viettel, Carrier::Vinaphone, Carrier::Mobifone]
        .into_iter()
        .map(MsspConfig::default_for)
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl Default for SimConfig {
    /// HTTP on 127.0.0.1:8081; SMSCs on 2775 (Viettel), 2776 (VinaPhone), 2777
    /// (MobiFone), 2778 (aggregator); system_id = the SMSC name; password `sim-pass`.
    fn default() -> Self {
        SimConfig::on_ports(
            "127.0.0.1".parse().expect("valid ip"),
            8081,
            [2775, 2776, 2777, 2778],
        )
    }
}

impl SimConfig {
    /// The standard layout on chosen ports (0 lets the OS choose).
    pub fn on_ports(ip: std::net::IpAddr, http: u16, smsc: [u16; 4]) -> SimConfig {
        let smsc_config = |name: &str, port: u16, networks: Vec<Carrier>| SmscConfig {
            name: name.to_owned(),
            listen: SocketAddr::new(ip, port),
            system_id: name.to_owned(),
            password: DEFAULT_PASSWORD.to_owned(),
            networks,
            receipt_delay: Duration::from_millis(500),
            faults: Default::default(),
            brandnames: Default::default(),
        };
        SimConfig {
            http: HttpConfig {
                listen: SocketAddr::new(ip, http),
            },
            smsc: vec![
                smsc_config("viettel", smsc[0], vec![Carrier::Viettel]),
                smsc_config("vinaphone", smsc[1], vec![Carrier::Vinaphone]),
                smsc_config("mobifone", smsc[2], vec![Carrier::Mobifone]),
                // An aggregator reaches every network.
                smsc_config("aggregator", smsc[3], Carrier::ALL.to_vec()),
            ],
            mssp: default_mssps(),
            zns: Default::default(),
        }
    }

    /// Everything on 127.0.0.1 port 0, receipts after `receipt_delay`: for tests.
    pub fn ephemeral(receipt_delay: Duration) -> SimConfig {
        let mut config = SimConfig::on_ports("127.0.0.1".parse().expect("valid ip"), 0, [0; 4]);
        for smsc in &mut config.smsc {
            smsc.receipt_delay = receipt_delay;
        }
        for mssp in &mut config.mssp {
            mssp.answer_delay = receipt_delay;
        }
        config
    }

    pub fn from_file(path: &Path) -> anyhow::Result<SimConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}
