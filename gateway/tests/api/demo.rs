//! `gateway demo`, the real binary, started as a user starts it (on free ports, with a
//! database of its own), with the addresses and keys it prints.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::binary::{gateway, Db, Running};

pub struct Demo {
    /// What it printed, up to the end of its walk-through.
    pub banner: String,
    pub api: String,
    pub sim: String,
    pub key: String,
    pub admin_key: String,
    _process: Running,
    _db: Db,
}

impl Demo {
    pub async fn start() -> Demo {
        Demo::start_on(Db::new()).await
    }

    /// Stops the demo (killing it, as Ctrl-C would not be gentler) and gives back its
    /// database, to start it again on the same one.
    pub fn stop(self) -> Db {
        drop(self._process);
        self._db
    }

    /// `gateway demo` on `db` (which may hold an earlier run's data).
    pub async fn start_on(db: Db) -> Demo {
        let mut child = Running(
            gateway(&db)
                .args([
                    "demo",
                    "--listen",
                    "127.0.0.1:0",
                    "--sim-listen",
                    "127.0.0.1:0",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // Keep draining stdout for the demo's whole life.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        // Read up to the walk-through's last command (blocking IO, in a thread).
        let banner = tokio::task::spawn_blocking(move || {
            let mut lines = Vec::new();
            while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
                let done = line.starts_with("curl -s \"$API/v1/otp/$ID\"");
                lines.push(line);
                if done {
                    return lines;
                }
            }
            panic!("the demo printed no walk-through:\n{}", lines.join("\n"));
        })
        .await
        .unwrap();
        let field = |label: &str| -> String {
            banner
                .iter()
                .find_map(|l| l.trim_start().strip_prefix(label))
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no {label:?} in the banner:\n{}", banner.join("\n")))
                .to_owned()
        };
        Demo {
            banner: banner.join("\n"),
            api: field("Gateway API"),
            sim: field("Simulator HTTP"),
            key: field("Demo API key"),
            admin_key: field("Admin key"),
            _process: child,
            _db: db,
        }
    }
}
