//! The audit log: every command, who sent it, when, with what arguments and what came of
//! it. The newest entries are kept in memory for queries (`GET /api/audit`) and, with a
//! store, all of them (within retention) on disk beside the journal, written with the
//! journal's group commits.
//!
//! An entry is a bounded summary, whatever the panel sent: strings are cut to
//! [`MAX_FIELD`] bytes and arguments whose JSON is longer than [`MAX_ARGS`] bytes are
//! replaced by their size and a preview, so a panel sending huge refused commands cannot
//! grow memory or disk faster than the entry count allows.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use avgate_drivers::{Map, Value};
use serde::{Deserialize, Serialize};

use crate::command::Failure;
use crate::store::{Store, unix_millis};

/// Entries kept in memory for queries (older ones are read from disk with a store).
pub const IN_MEMORY: usize = 10_000;
/// Longest `session`, `client`, `token`, `id`, `device` and `command` kept in an entry,
/// in bytes.
pub const MAX_FIELD: usize = 128;
/// Longest arguments kept in an entry, as JSON bytes; longer ones keep a preview of
/// [`ARGS_PREVIEW`] bytes and their size.
pub const MAX_ARGS: usize = 1_024;
pub const ARGS_PREVIEW: usize = 256;

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
    /// The arguments, or `{}` when they were longer than [`MAX_ARGS`] (then see
    /// `args_bytes` and `args_preview`).
    pub args: Map<String, Value>,
    /// The size of the arguments' JSON, when it was too long to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_bytes: Option<usize>,
    /// The start of the arguments' JSON, when it was too long to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_preview: Option<String>,
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

/// Arguments cut down to what an audit entry or a command record keeps: the arguments
/// themselves when short, else nothing plus their size and a preview.
pub struct ArgsSummary {
    pub args: Map<String, Value>,
    pub bytes: Option<usize>,
    pub preview: Option<String>,
}

impl ArgsSummary {
    pub fn of(args: &Map<String, Value>) -> Self {
        let json = serde_json::to_string(args).expect("JSON values serialize");
        if json.len() <= MAX_ARGS {
            return Self {
                args: args.clone(),
                bytes: None,
                preview: None,
            };
        }
        Self {
            args: Map::new(),
            bytes: Some(json.len()),
            preview: Some(bounded(&json, ARGS_PREVIEW)),
        }
    }
}

/// `text`, cut to at most `max` bytes at a character boundary.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[derive(Default)]
pub struct AuditLog {
    entries: Mutex<Entries>,
    store: Option<Arc<Store>>,
}

#[derive(Default)]
struct Entries {
    /// The newest entries, with their time in milliseconds since the Unix epoch.
    recent: VecDeque<(u64, AuditEntry)>,
    /// The last sequence handed out.
    last_seq: u64,
}

/// A page of the audit log: which entries, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery<'a> {
    pub device: Option<&'a str>,
    pub since: Option<SystemTime>,
    /// Only entries with a sequence below this (the `seq` of the last entry of the
    /// previous page).
    pub before: Option<u64>,
    pub limit: usize,
}

impl AuditLog {
    /// A log kept in `store`, continuing the entries it already holds.
    pub fn durable(store: Arc<Store>, stored: &[(u64, String)]) -> Self {
        let recent: VecDeque<(u64, AuditEntry)> = stored
            .iter()
            .filter_map(|(_, json)| serde_json::from_str::<AuditEntry>(json).ok())
            .map(|e| (humantime::parse_rfc3339(&e.ts).map_or(0, unix_millis), e))
            .collect();
        let last_seq = stored.last().map_or(0, |(seq, _)| *seq);
        Self {
            entries: Mutex::new(Entries { recent, last_seq }),
            store: Some(store),
        }
    }

    pub fn record(&self, record: Record<'_>) {
        let now = SystemTime::now();
        let at_ms = unix_millis(now);
        let args = ArgsSummary::of(record.args);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.last_seq += 1;
        let seq = entries.last_seq;
        let entry = AuditEntry {
            seq,
            ts: humantime::format_rfc3339_millis(now).to_string(),
            session: bounded(record.session, MAX_FIELD),
            client: bounded(record.client, MAX_FIELD),
            token: record.token.map(|t| bounded(t, MAX_FIELD)),
            id: bounded(record.id, MAX_FIELD),
            device: bounded(record.device, MAX_FIELD),
            command: bounded(record.command, MAX_FIELD),
            args: args.args,
            args_bytes: args.bytes,
            args_preview: args.preview,
            ok: record.outcome.is_ok(),
            error: record.outcome.err().cloned(),
        };
        if let Some(store) = &self.store {
            // Rides the journal's next group commit, in order; nobody waits for it.
            let json = serde_json::to_string(&entry).expect("audit entries serialize");
            store.enqueue_audit(seq, at_ms, json);
        }
        if entries.recent.len() == IN_MEMORY {
            entries.recent.pop_front();
        }
        entries.recent.push_back((at_ms, entry));
    }

    /// One page, newest first. Entries older than those kept in memory are read from the
    /// store, a page at a time: nothing clones the whole log.
    pub async fn query(&self, query: &AuditQuery<'_>) -> Vec<AuditEntry> {
        let since_ms = query.since.map_or(0, unix_millis);
        let before = query.before.unwrap_or(u64::MAX);
        let wanted =
            |at: u64, e: &AuditEntry| at >= since_ms && query.device.is_none_or(|d| e.device == d);
        let (mut page, oldest_in_memory) = {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let page: Vec<AuditEntry> = entries
                .recent
                .iter()
                .rev()
                .skip_while(|(_, e)| e.seq >= before)
                .take_while(|(at, _)| *at >= since_ms)
                .filter(|(at, e)| wanted(*at, e))
                .take(query.limit)
                .map(|(_, e)| e.clone())
                .collect();
            let oldest = entries.recent.front().map_or(before, |(_, e)| e.seq);
            (page, oldest)
        };
        let Some(store) = &self.store else {
            return page;
        };
        // Older than memory holds: read on, from disk, in pages, until the page is full,
        // the log ends or entries get older than `since`.
        let mut cursor = before.min(oldest_in_memory);
        let mut scanned = 0;
        while page.len() < query.limit && cursor > 1 && scanned < MAX_SCANNED {
            let reader = store.clone();
            let rows = match tokio::task::spawn_blocking(move || {
                reader.audit_before(cursor, PAGE_FROM_DISK)
            })
            .await
            {
                Ok(Ok(rows)) => rows,
                _ => break,
            };
            scanned += rows.len();
            let mut older_than_since = false;
            for json in &rows {
                let Ok(entry) = serde_json::from_str::<AuditEntry>(json) else {
                    continue;
                };
                cursor = entry.seq;
                let at = humantime::parse_rfc3339(&entry.ts).map_or(0, unix_millis);
                if at < since_ms {
                    older_than_since = true;
                    break;
                }
                if wanted(at, &entry) && page.len() < query.limit {
                    page.push(entry);
                }
            }
            if older_than_since || rows.len() < PAGE_FROM_DISK {
                break;
            }
        }
        page
    }
}

/// Audit rows read from disk per step of a query.
const PAGE_FROM_DISK: usize = 500;
/// Most rows one query reads from disk: a filter that matches little answers with what it
/// found so far (page on with `before`) rather than walk the whole log.
const MAX_SCANNED: usize = 20_000;
