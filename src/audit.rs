//! The audit log: every command, who sent it, when, with what arguments and what came of
//! it. The newest entries are kept in memory for queries (`GET /api/audit`) and, with a
//! store, all of them (within retention) on disk beside the journal, written with the
//! journal's group commits.
//!
//! An entry is a bounded summary, whatever the panel sent: strings are cut to
//! [`MAX_FIELD`] bytes and arguments whose JSON is longer than [`MAX_ARGS`] bytes are
//! replaced by their size and a preview, so a panel sending huge refused commands cannot
//! grow memory or disk faster than the entry count allows.
//!
//! Refused commands (never run, so nothing to answer for later) are logged one by one up
//! to [`REFUSED_PER_SECOND`] per client per second; beyond that they are counted, and one
//! entry (`suppressed`: how many) sums them up when the client's next second starts. A
//! panel flooding the gateway with bad commands costs a few entries a second, not one
//! disk write per message.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use avgate_drivers::{Map, Value};
use serde::{Deserialize, Serialize};

use crate::command::Failure;
use crate::store::{Store, unix_millis};

/// Entries kept in memory for queries (older ones are read from disk with a store).
pub const IN_MEMORY: usize = 10_000;
/// Refused commands logged one by one per client per second; the rest are summed up.
pub const REFUSED_PER_SECOND: u32 = 20;
/// Clients whose refusals are being counted at once, at most (the oldest summary is
/// written out early to make room).
const MAX_COUNTED_CLIENTS: usize = 1_024;

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
    /// The address the command came from (the client behind a trusted proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The web page's origin, when a browser sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
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
    /// This entry sums up this many refused commands from `client` that were not logged
    /// one by one (over [`REFUSED_PER_SECOND`]); `error` is the last one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
}

/// What is known about a command when it is logged; the log adds the time and number.
pub struct Record<'a> {
    pub session: &'a str,
    pub client: &'a str,
    pub token: Option<&'a str>,
    pub peer: Option<&'a str>,
    pub origin: Option<&'a str>,
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
    /// Refusals per client in the current second.
    refusals: HashMap<String, Refusals>,
}

/// One client's refused commands in its current one-second window.
struct Refusals {
    window_start: Instant,
    logged: u32,
    /// Refused but not logged one by one, with the last one's details.
    suppressed: u64,
    last: Option<AuditEntry>,
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
            entries: Mutex::new(Entries {
                recent,
                last_seq,
                refusals: HashMap::new(),
            }),
            store: Some(store),
        }
    }

    pub fn record(&self, record: Record<'_>) {
        let now = SystemTime::now();
        let entry = AuditEntry {
            seq: 0,
            ts: humantime::format_rfc3339_millis(now).to_string(),
            session: bounded(record.session, MAX_FIELD),
            client: bounded(record.client, MAX_FIELD),
            token: record.token.map(|t| bounded(t, MAX_FIELD)),
            peer: record.peer.map(|p| bounded(p, MAX_FIELD)),
            origin: record.origin.map(|o| bounded(o, MAX_FIELD)),
            id: bounded(record.id, MAX_FIELD),
            device: bounded(record.device, MAX_FIELD),
            command: bounded(record.command, MAX_FIELD),
            args: Map::new(),
            args_bytes: None,
            args_preview: None,
            ok: record.outcome.is_ok(),
            error: record.outcome.err().cloned(),
            suppressed: None,
        };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for summary in entries.due_summaries(Instant::now()) {
            self.append(&mut entries, summary);
        }
        let refused_to_count = refused_without_running(record.outcome)
            && !entries.admit_refusal(&entry, Instant::now());
        if refused_to_count {
            return;
        }
        let args = ArgsSummary::of(record.args);
        let entry = AuditEntry {
            args: args.args,
            args_bytes: args.bytes,
            args_preview: args.preview,
            ..entry
        };
        self.append(&mut entries, entry);
    }

    /// Numbers an entry, keeps it for queries and queues it for the disk.
    fn append(&self, entries: &mut Entries, mut entry: AuditEntry) {
        entries.last_seq += 1;
        entry.seq = entries.last_seq;
        let at_ms = humantime::parse_rfc3339(&entry.ts).map_or(0, unix_millis);
        if let Some(store) = &self.store {
            // Rides the journal's next group commit, in order; nobody waits for it.
            let json = serde_json::to_string(&entry).expect("audit entries serialize");
            store.enqueue_audit(entry.seq, at_ms, json);
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
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            for summary in entries.due_summaries(Instant::now()) {
                self.append(&mut entries, summary);
            }
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

/// Whether a failure means the command never ran (so logging a count of them loses
/// nothing anyone must answer for).
fn refused_without_running(outcome: Result<(), &Failure>) -> bool {
    use crate::command::ErrorCode::*;
    matches!(
        outcome,
        Err(Failure {
            code: UnknownDevice
                | UnknownCommand
                | InvalidArgs
                | Unauthorized
                | InvalidMessage
                | StorageUnavailable,
            ..
        })
    )
}

impl Entries {
    /// Whether this refusal gets an entry of its own; if not, it is counted.
    fn admit_refusal(&mut self, entry: &AuditEntry, now: Instant) -> bool {
        if !self.refusals.contains_key(&entry.client) && self.refusals.len() >= MAX_COUNTED_CLIENTS
        {
            // Make room: the client counted longest ago is summed up at once.
            if let Some(oldest) = self
                .refusals
                .iter()
                .min_by_key(|(_, r)| r.window_start)
                .map(|(c, _)| c.clone())
                && let Some(mut refusals) = self.refusals.remove(&oldest)
            {
                refusals.window_start = now - Duration::from_secs(2);
                self.refusals.insert(oldest, refusals);
            }
        }
        let refusals = self
            .refusals
            .entry(entry.client.clone())
            .or_insert_with(|| Refusals {
                window_start: now,
                logged: 0,
                suppressed: 0,
                last: None,
            });
        if refusals.logged < REFUSED_PER_SECOND {
            refusals.logged += 1;
            return true;
        }
        refusals.suppressed += 1;
        refusals.last = Some(entry.clone());
        false
    }

    /// Summaries of clients whose second is over (their counters start again).
    fn due_summaries(&mut self, now: Instant) -> Vec<AuditEntry> {
        let mut due = Vec::new();
        self.refusals.retain(|_, refusals| {
            if now.duration_since(refusals.window_start) < Duration::from_secs(1) {
                return true;
            }
            if let Some(mut last) = refusals.last.take() {
                last.suppressed = Some(refusals.suppressed);
                last.args = Map::new();
                due.push(last);
            }
            false
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ErrorCode;

    fn refuse(log: &AuditLog, client: &str, id: usize, args: &Map<String, Value>) {
        let failure = Failure::new(ErrorCode::UnknownCommand, "no such command");
        log.record(Record {
            session: "s",
            client,
            token: None,
            peer: None,
            origin: None,
            id: &id.to_string(),
            device: "proj",
            command: "self_destruct",
            args,
            outcome: Err(&failure),
        });
    }

    async fn all(log: &AuditLog) -> Vec<AuditEntry> {
        log.query(&AuditQuery {
            limit: 1_000,
            ..AuditQuery::default()
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_refusals_is_logged_as_a_few_entries_and_a_count() {
        let log = AuditLog::default();
        let args = Map::new();
        for i in 0..100 {
            refuse(&log, "flooder", i, &args);
        }
        refuse(&log, "witness", 0, &args);
        assert_eq!(
            all(&log).await.len(),
            21,
            "20 of the flood, and the witness"
        );

        tokio::time::advance(Duration::from_millis(1_100)).await;
        refuse(&log, "flooder", 100, &args);
        let entries = all(&log).await;
        assert_eq!(entries.len(), 23);
        let summary = &entries[1];
        assert_eq!(summary.suppressed, Some(80), "{summary:?}");
        assert_eq!(summary.id, "99", "the last one counted");
        assert_eq!(entries[0].id, "100", "a new second logs again");
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] == w[1] + 1), "{seqs:?}");
    }

    #[tokio::test]
    async fn entries_keep_bounded_arguments_and_fields() {
        let log = AuditLog::default();
        let mut args = Map::new();
        args.insert("blob".into(), Value::String("é".repeat(40_000)));
        let client = "c".repeat(60_000);
        refuse(&log, &client, 1, &args);
        let entry = &all(&log).await[0];
        assert!(entry.args.is_empty());
        assert!(entry.args_bytes.unwrap() > 80_000);
        let preview = entry.args_preview.as_deref().unwrap();
        assert!(preview.len() <= ARGS_PREVIEW && preview.starts_with("{\"blob\""));
        assert_eq!(entry.client.len(), MAX_FIELD);
        assert!(serde_json::to_string(entry).unwrap().len() < 2_048);
    }

    #[tokio::test]
    async fn pages_follow_before() {
        let log = AuditLog::default();
        for i in 0..15 {
            refuse(&log, &format!("client-{i}"), i, &Map::new());
        }
        let page = log
            .query(&AuditQuery {
                before: Some(6),
                limit: 3,
                ..AuditQuery::default()
            })
            .await;
        let seqs: Vec<u64> = page.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![5, 4, 3]);
    }
}
