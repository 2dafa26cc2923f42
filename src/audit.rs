//! The audit log: every command, who sent it, when, with what arguments and what came of
//! it. Kept in memory for queries (`GET /api/audit`) and, with a store, on disk beside the
//! journal.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use avgate_drivers::{Map, Value};
use serde::{Deserialize, Serialize};

use crate::command::Failure;
use crate::store::{Store, unix_millis};

/// Entries kept in memory for queries (all of them are on disk with a store).
const IN_MEMORY: usize = 10_000;

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub ts: String,
    /// The panel session that sent it.
    pub session: String,
    /// The panel's `client` name (or its session id).
    pub client: String,
    /// Who the panel's token was issued to, when the site uses tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The panel's command id.
    pub id: String,
    pub device: String,
    pub command: String,
    pub args: Map<String, Value>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

/// What is known about a command when it is logged; the log adds the time and number.
pub struct Record<'a> {
    pub session: &'a str,
    pub client: &'a str,
    pub token: Option<&'a str>,
    pub id: &'a str,
    pub device: &'a str,
    pub command: &'a str,
    pub args: &'a Map<String, Value>,
    pub outcome: Result<(), &'a Failure>,
}

#[derive(Default)]
pub struct AuditLog {
    entries: Mutex<VecDeque<(u64, AuditEntry)>>,
    store: Option<Arc<Store>>,
}

impl AuditLog {
    /// A log kept in `store`, continuing the entries it already holds.
    pub fn durable(store: Arc<Store>, stored: &[(u64, String)]) -> Self {
        let entries = stored
            .iter()
            .filter_map(|(_, json)| serde_json::from_str::<AuditEntry>(json).ok())
            .map(|e| (humantime::parse_rfc3339(&e.ts).map_or(0, unix_millis), e))
            .collect();
        Self {
            entries: Mutex::new(entries),
            store: Some(store),
        }
    }

    pub fn record(&self, record: Record<'_>) {
        let now = SystemTime::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let seq = entries.back().map_or(1, |(_, e)| e.seq + 1);
        let entry = AuditEntry {
            seq,
            ts: humantime::format_rfc3339_millis(now).to_string(),
            session: record.session.into(),
            client: record.client.into(),
            token: record.token.map(str::to_string),
            id: record.id.into(),
            device: record.device.into(),
            command: record.command.into(),
            args: record.args.clone(),
            ok: record.outcome.is_ok(),
            error: record.outcome.err().cloned(),
        };
        if let Some(store) = &self.store {
            let store = store.clone();
            let json = serde_json::to_string(&entry).expect("audit entries serialize");
            // The log is written in order by one blocking task per entry; a failed write
            // is logged by the store and the entry stays queryable in memory.
            tokio::task::spawn_blocking(move || store.put_audit(seq, &json));
        }
        if entries.len() == IN_MEMORY {
            entries.pop_front();
        }
        entries.push_back((unix_millis(now), entry));
    }

    /// The newest entries first, optionally for one device and since a time.
    pub fn query(
        &self,
        device: Option<&str>,
        since: Option<SystemTime>,
        limit: usize,
    ) -> Vec<AuditEntry> {
        let since_ms = since.map_or(0, unix_millis);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .rev()
            .take_while(|(at, _)| *at >= since_ms)
            .filter(|(_, e)| device.is_none_or(|d| e.device == d))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect()
    }
}
