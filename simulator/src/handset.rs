//! Virtual handsets: what each simulated phone has received.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Messages kept per handset; older ones are dropped first.
const MAX_MESSAGES_PER_HANDSET: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct HandsetMessage {
    /// Sender id (brandname or number) as submitted.
    pub from: String,
    /// The decoded text.
    pub text: String,
    pub received_at: DateTime<Utc>,
    /// The SMSC that delivered it (`viettel`, `vinaphone`, `mobifone`, `aggregator`).
    pub carrier: String,
    pub smsc_message_id: String,
    /// Until when the SMSC would have kept trying (from the submit's `validity_period`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct Handsets {
    inbox: Mutex<HashMap<String, Vec<HandsetMessage>>>,
}

impl Handsets {
    pub fn deliver(&self, msisdn_e164: &str, message: HandsetMessage) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        let messages = inbox.entry(msisdn_e164.to_owned()).or_default();
        if messages.len() >= MAX_MESSAGES_PER_HANDSET {
            messages.remove(0);
        }
        messages.push(message);
    }

    /// Oldest first.
    pub fn messages(&self, msisdn_e164: &str) -> Vec<HandsetMessage> {
        let inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        inbox.get(msisdn_e164).cloned().unwrap_or_default()
    }

    pub fn clear(&self, msisdn_e164: &str) -> usize {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        inbox.remove(msisdn_e164).map(|m| m.len()).unwrap_or(0)
    }
}
