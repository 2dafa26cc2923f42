//! The hub: one WebSocket session per panel.
//!
//! A session starts with `hello`, gets `welcome` and then either a snapshot or, when it
//! resumes inside the journal's window, every event it missed. After that a reader handles
//! what the panel sends (commands, acks) while a writer streams the journal from the
//! session's cursor. The writer is the only place that sends, so its order is the
//! protocol's order: a command's `result` always follows the events it caused.
//!
//! A slow panel holds only its cursor; it reads the shared journal at its own pace and
//! never makes anyone else wait. One that stops taking data, or stops answering pings, is
//! dropped after two ping intervals.

pub mod limits;
mod session;
pub mod snapshot;
pub mod subscription;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::AuthToken;
use crate::journal::Journal;
use crate::router::Router;

pub use session::serve;

/// Largest message a panel may send. Commands are small; anything bigger is a mistake or
/// an attack, and tungstenite closes the connection.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Outgoing bytes buffered per panel beyond what the kernel holds. Sends wait (and the
/// panel is eventually dropped) rather than buffer more.
pub const MAX_WRITE_BUFFER: usize = 256 * 1024;
/// Bytes read from a panel's socket at a time; a bigger message grows the buffer.
pub const READ_BUFFER: usize = 1024;
/// Frames are gathered up to this many bytes before they are written to the socket, so
/// a batch of events goes out in few packets (TCP_NODELAY is on).
pub const WRITE_BUFFER: usize = 4 * 1024;
/// Events sent per journal read; bounds what one session holds at once (as shared
/// references, not copies).
pub const BATCH: usize = 256;

/// What every session shares.
pub struct Hub {
    pub journal: Arc<Journal>,
    pub router: Router,
    /// Token → the name it was issued to. Empty: panels need no token. Replaced whole by
    /// a reload.
    tokens: Mutex<Arc<HashMap<String, String>>>,
    pub ping_interval: Duration,
    /// How long a new connection has to say `hello`.
    pub hello_timeout: Duration,
    /// Panels connected now (past `hello`).
    panels: AtomicUsize,
    /// The last whole snapshot encoded, shared by panels joining at the same seq.
    snapshots: snapshot::Shared,
}

impl Hub {
    pub fn new(
        journal: Arc<Journal>,
        router: Router,
        tokens: &[AuthToken],
        ping_interval: Duration,
    ) -> Self {
        Self {
            journal,
            router,
            tokens: Mutex::new(token_map(tokens)),
            ping_interval,
            hello_timeout: Duration::from_secs(10),
            panels: AtomicUsize::new(0),
            snapshots: snapshot::Shared::default(),
        }
    }

    pub fn with_hello_timeout(mut self, hello_timeout: Duration) -> Self {
        self.hello_timeout = hello_timeout;
        self
    }

    /// Panels connected now (past `hello`).
    pub fn panels(&self) -> usize {
        self.panels.load(Ordering::Relaxed)
    }

    /// Counts a panel in until the returned guard is dropped.
    fn panel_connected(&self) -> PanelCount<'_> {
        self.panels.fetch_add(1, Ordering::Relaxed);
        PanelCount(&self.panels)
    }

    /// The current state as `subscription` sees it, encoded for the wire; shared between
    /// panels when they see everything.
    fn snapshot_for(
        &self,
        subscription: &subscription::Subscription,
        reason: Option<&'static str>,
    ) -> Arc<snapshot::Encoded> {
        if subscription.is_everything() {
            return self.snapshots.current(&self.journal, reason);
        }
        Arc::new(snapshot::encode(
            &subscription.filter(&self.journal.snapshot()),
            reason,
        ))
    }

    pub fn auth_required(&self) -> bool {
        !self.current_tokens().is_empty()
    }

    /// Who a token belongs to: `Some(None)` when no token is needed, `None` when the
    /// token is missing or wrong.
    pub fn authorize(&self, token: Option<&str>) -> Option<Option<String>> {
        let tokens = self.current_tokens();
        if tokens.is_empty() {
            return Some(None);
        }
        token
            .and_then(|t| tokens.get(t))
            .map(|name| Some(name.clone()))
    }

    /// Checks tokens against `tokens` from now on; sessions already past `hello` stay.
    pub fn replace_tokens(&self, tokens: &[AuthToken]) {
        *self.tokens.lock().unwrap_or_else(|p| p.into_inner()) = token_map(tokens);
    }

    fn current_tokens(&self) -> Arc<HashMap<String, String>> {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn token_map(tokens: &[AuthToken]) -> Arc<HashMap<String, String>> {
    Arc::new(
        tokens
            .iter()
            .map(|t| (t.token.clone(), t.name.clone()))
            .collect(),
    )
}

/// Keeps a panel counted for as long as its session lives.
struct PanelCount<'a>(&'a AtomicUsize);

impl Drop for PanelCount<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A string from a panel, for text logs: control characters (a newline that would forge a
/// log line, an ANSI escape that would recolour a terminal) are shown escaped, the rest as
/// it is.
pub struct Untrusted<'a>(pub &'a str);

impl std::fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for c in self.0.chars() {
            if c.is_control() || c == '\\' {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_cannot_forge_a_log_line_or_reach_the_terminal() {
        let shown = Untrusted("proj\n2026-11-30T00:00:00Z  INFO forged\u{1b}[31m\\n é").to_string();
        assert_eq!(
            shown,
            "proj\\n2026-11-30T00:00:00Z  INFO forged\\u{1b}[31m\\\\n é"
        );
        assert!(!shown.chars().any(char::is_control), "{shown}");
    }
}
