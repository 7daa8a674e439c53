//! The flows a virtual user runs against the gateway and the simulator's handsets.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::numbers;

/// What one flow does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Create → read the code on the simulated handset → check it.
    Otp,
    /// Create only; the receipts are awaited after the run.
    OtpSend,
    /// Request → the simulated person confirms → long-poll until signed.
    Signature,
    /// Create by Zalo ZNS with SMS as the fallback → read the code wherever it came
    /// (one number in five has no Zalo account, so its code comes by SMS) → check it.
    Zalo,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        match s {
            "otp" => Ok(Kind::Otp),
            "otp-send" => Ok(Kind::OtpSend),
            "signature" => Ok(Kind::Signature),
            "zalo" => Ok(Kind::Zalo),
            _ => Err(format!(
                "unknown scenario {s:?}: otp, otp-send, signature, zalo or mixed"
            )),
        }
    }
}

/// A scenario: one kind, or several with weights (`mixed`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mix(pub Vec<(Kind, u32)>);

impl Mix {
    /// `otp-send`, or `otp=1,otp-send=3,signature=1`.
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut parts = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = match part.split_once('=') {
                Some((k, w)) => (
                    k.trim().parse()?,
                    w.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("weight of {k:?} must be a whole number"))?,
                ),
                None => (part.parse()?, 1),
            };
            if weight > 0 {
                parts.push((kind, weight));
            }
        }
        if parts.is_empty() {
            return Err("name at least one scenario with a weight above 0".into());
        }
        Ok(Mix(parts))
    }

    /// The kind of the `index`-th flow: weights interleaved, deterministic.
    pub fn kind(&self, index: u64) -> Kind {
        let total: u64 = self.0.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut slot = index % total;
        for (kind, weight) in &self.0 {
            if slot < u64::from(*weight) {
                return *kind;
            }
            slot -= u64::from(*weight);
        }
        unreachable!("slot is below the total weight")
    }

    pub fn has(&self, kind: Kind) -> bool {
        self.0.iter().any(|(k, _)| *k == kind)
    }

    pub fn name(&self) -> String {
        match self.0.as_slice() {
            [(kind, _)] => serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            parts => {
                let named: Vec<String> = parts
                    .iter()
                    .map(|(k, w)| format!("{}={w}", Mix(vec![(*k, 1)]).name()))
                    .collect();
                format!("mixed({})", named.join(","))
            }
        }
    }
}

/// Where the load goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// One or more gateway instances (flows are spread over them by index).
    pub apis: Vec<String>,
    pub sim: String,
    pub key: String,
}

/// What the flows share.
pub struct Ctx {
    pub http: reqwest::Client,
    pub target: Target,
    /// Where this run's numbers start (so that runs against one gateway do not meet
    /// each other's per-number limits).
    pub number_offset: u64,
    /// Subscribers with a SIM signature, for the signature flow.
    pub signers: Vec<String>,
}

/// How a flow ended: the latency of each step, or an error's kind.
pub struct Outcome {
    pub steps: Vec<(&'static str, Duration)>,
    pub result: Result<(), String>,
    /// The OTP created (`otp-send`), to await its receipt.
    pub otp_id: Option<String>,
    /// Every OTP the flow created, with its number (E.164), for `--fault` runs' count of
    /// what reached the handsets.
    pub created: Vec<(String, String)>,
}

impl Ctx {
    /// The instance that flow `index` talks to.
    pub fn api(&self, index: u64) -> &str {
        &self.target.apis[index as usize % self.target.apis.len()]
    }

    pub async fn run(&self, kind: Kind, index: u64, intended: Instant) -> Outcome {
        let mut out = Outcome {
            steps: Vec::new(),
            result: Ok(()),
            otp_id: None,
            created: Vec::new(),
        };
        out.result = match kind {
            Kind::OtpSend => self.otp_send(index, intended, &mut out).await,
            Kind::Otp => self.otp(index, intended, &mut out).await,
            Kind::Signature => self.signature(index, intended, &mut out).await,
            Kind::Zalo => self.zalo(index, intended, &mut out).await,
        };
        out
    }

    async fn create_otp(
        &self,
        index: u64,
        purpose: &str,
        intended: Instant,
        out: &mut Outcome,
    ) -> Result<(String, String), String> {
        self.create_otp_by(index, purpose, None, intended, out)
            .await
    }

    async fn create_otp_by(
        &self,
        index: u64,
        purpose: &str,
        channels: Option<&[&str]>,
        intended: Instant,
        out: &mut Outcome,
    ) -> Result<(String, String), String> {
        let msisdn = numbers::number(self.number_offset, index);
        let mut body = json!({"msisdn": msisdn, "purpose": purpose});
        if let Some(channels) = channels {
            body["channels"] = json!(channels);
        }
        let resp = self
            .http
            .post(format!("{}/v1/otp", self.api(index)))
            .bearer_auth(&self.target.key)
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let body = expect(resp, 201).await?;
        // From when the request was due (open loop), so queueing in front of a slow
        // server counts.
        out.steps.push(("POST /v1/otp", intended.elapsed()));
        let id = body["id"].as_str().ok_or("no id in the 201")?.to_owned();
        out.created.push((id.clone(), numbers::e164(&msisdn)));
        Ok((id, msisdn))
    }

    async fn otp_send(
        &self,
        index: u64,
        intended: Instant,
        out: &mut Outcome,
    ) -> Result<(), String> {
        let (id, _) = self.create_otp(index, "register", intended, out).await?;
        out.otp_id = Some(id);
        Ok(())
    }

    async fn otp(&self, index: u64, intended: Instant, out: &mut Outcome) -> Result<(), String> {
        let (id, msisdn) = self.create_otp(index, "login", intended, out).await?;
        let created = Instant::now();
        let e164 = numbers::e164(&msisdn);
        let deadline = created + Duration::from_secs(60);
        let code = loop {
            let resp = self
                .http
                .get(format!("{}/handsets/{e164}/messages", self.target.sim))
                .send()
                .await
                .map_err(transport)?;
            let messages = expect(resp, 200).await?;
            if let Some(text) = messages
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["text"].as_str())
            {
                break extract_code(text).ok_or("no code in the SMS")?;
            }
            if Instant::now() > deadline {
                return Err("SMS not on the handset within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        self.check_code(
            index,
            &id,
            &code,
            ("SMS on the handset", "otp flow"),
            created,
            intended,
            out,
        )
        .await
    }

    async fn zalo(&self, index: u64, intended: Instant, out: &mut Outcome) -> Result<(), String> {
        let e164 = numbers::e164(&numbers::number(self.number_offset, index));
        let has_zalo = index % 5 != 0;
        let resp = self
            .http
            .put(format!("{}/zns/users/{e164}", self.target.sim))
            .json(&json!({ "zalo": has_zalo }))
            .send()
            .await
            .map_err(transport)?;
        expect(resp, 200).await?;
        let (id, _) = self
            .create_otp_by(index, "login", Some(&["zalo", "sms"]), intended, out)
            .await?;
        let created = Instant::now();
        let deadline = created + Duration::from_secs(60);
        let (code, by) = 'found: loop {
            for by in ["zalo", "sms"] {
                let inbox = if by == "zalo" { "zalo" } else { "messages" };
                let resp = self
                    .http
                    .get(format!("{}/handsets/{e164}/{inbox}", self.target.sim))
                    .send()
                    .await
                    .map_err(transport)?;
                let messages = expect(resp, 200).await?;
                if let Some(text) = messages
                    .as_array()
                    .and_then(|m| m.last())
                    .and_then(|m| m["text"].as_str())
                {
                    let code = match by {
                        "sms" => extract_code(text),
                        _ => text
                            .split(|c: char| !c.is_ascii_digit())
                            .find(|run| run.len() >= 4)
                            .map(str::to_owned),
                    };
                    match code {
                        Some(code) => break 'found (code, by),
                        None => return Err(format!("no code in the {by} message")),
                    }
                }
            }
            if Instant::now() > deadline {
                return Err("code neither in the Zalo app nor by SMS within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let arrived = if by == "zalo" {
            "code in the Zalo app"
        } else {
            "code by SMS (fallback)"
        };
        self.check_code(
            index,
            &id,
            &code,
            (arrived, "zalo flow"),
            created,
            intended,
            out,
        )
        .await
    }

    /// Records when the code arrived (`steps.0`, from `created`), checks it, and records
    /// the whole flow (`steps.1`, from `intended`).
    #[allow(clippy::too_many_arguments)]
    async fn check_code(
        &self,
        index: u64,
        id: &str,
        code: &str,
        steps: (&'static str, &'static str),
        created: Instant,
        intended: Instant,
        out: &mut Outcome,
    ) -> Result<(), String> {
        out.steps.push((steps.0, created.elapsed()));
        let checking = Instant::now();
        let resp = self
            .http
            .post(format!("{}/v1/otp/{id}/check", self.api(index)))
            .bearer_auth(&self.target.key)
            .json(&json!({ "code": code }))
            .send()
            .await
            .map_err(transport)?;
        let body = expect(resp, 200).await?;
        out.steps
            .push(("POST /v1/otp/{id}/check", checking.elapsed()));
        if body["valid"] != true {
            return Err("code not accepted".into());
        }
        out.steps.push((steps.1, intended.elapsed()));
        Ok(())
    }

    async fn signature(
        &self,
        index: u64,
        intended: Instant,
        out: &mut Outcome,
    ) -> Result<(), String> {
        let msisdn = self
            .signers
            .get(index as usize % self.signers.len().max(1))
            .ok_or("no signers registered")?;
        let resp = self
            .http
            .post(format!("{}/v1/signatures", self.api(index)))
            .bearer_auth(&self.target.key)
            .json(&json!({"msisdn": msisdn, "purpose": "login"}))
            .send()
            .await
            .map_err(transport)?;
        let body = expect(resp, 202).await?;
        out.steps.push(("POST /v1/signatures", intended.elapsed()));
        let id = body["id"].as_str().ok_or("no id in the 202")?.to_owned();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let resp = self
                .http
                .get(format!("{}/v1/signatures/{id}?wait=30", self.api(index)))
                .bearer_auth(&self.target.key)
                .send()
                .await
                .map_err(transport)?;
            let body = expect(resp, 200).await?;
            match body["status"].as_str() {
                Some("pending") if Instant::now() < deadline => continue,
                Some("signed") => break,
                Some(other) => return Err(format!("signature ended {other}")),
                None => return Err("no status".into()),
            }
        }
        out.steps.push(("signature flow", intended.elapsed()));
        Ok(())
    }
}

fn transport(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "transport".into()
    }
}

async fn expect(resp: reqwest::Response, status: u16) -> Result<Value, String> {
    let got = resp.status().as_u16();
    if got != status {
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        return Err(match body["type"].as_str() {
            Some(t) => format!("http {got} {t}"),
            None => format!("http {got}"),
        });
    }
    resp.json().await.map_err(|_| "unreadable body".to_owned())
}

/// The code: the run of 4 to 10 digits after the first ": ".
pub fn extract_code(text: &str) -> Option<String> {
    let start = text.find(": ")? + 2;
    let code: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    (4..=10).contains(&code.len()).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_interleave_by_weight() {
        let mix = Mix::parse("otp=1, otp-send=3,signature=0").unwrap();
        assert_eq!(mix.0, vec![(Kind::Otp, 1), (Kind::OtpSend, 3)]);
        let kinds: Vec<Kind> = (0..8).map(|i| mix.kind(i)).collect();
        assert_eq!(kinds.iter().filter(|k| **k == Kind::Otp).count(), 2);
        assert_eq!(kinds.iter().filter(|k| **k == Kind::OtpSend).count(), 6);
        assert_eq!(mix.name(), "mixed(otp=1,otp-send=3)");
        assert_eq!(Mix::parse("signature").unwrap().name(), "signature");
        assert!(Mix::parse("otp=0").is_err());
        assert!(Mix::parse("sms").is_err());
        assert!(Mix::parse("otp=x").is_err());
    }

    #[test]
    fn codes_are_read_from_both_languages() {
        assert_eq!(
            extract_code("Mã OTP đăng ký Cổng DVC: 403458. Hiệu lực 5 phút.").as_deref(),
            Some("403458")
        );
        assert_eq!(extract_code("Your code: 1234.").as_deref(), Some("1234"));
        assert_eq!(extract_code("no code here"), None);
    }
}
