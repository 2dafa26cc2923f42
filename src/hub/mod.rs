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

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::auth::{Attempt, Lockout, Principal, TokenBook};
use crate::config::AuthToken;
use crate::journal::Journal;
use crate::reload::Swap;
use crate::router::Router;
use limits::PanelLimits;

pub use session::serve;

/// Largest message a panel may send. Commands are small; anything bigger is a mistake or
/// an attack, and tungstenite closes the connection.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Outgoing bytes buffered per panel beyond what the kernel holds. Sends wait (and the
/// panel is eventually dropped) rather than buffer more.
pub const MAX_WRITE_BUFFER: usize = 256 * 1024;
/// Bytes read from a panel's socket at a time; a bigger message grows the buffer. Panels
/// send hellos, commands and acks of a few hundred bytes, and every idle panel holds this
/// buffer.
pub const READ_BUFFER: usize = 512;
/// Frames are gathered up to this many bytes before they are written to the socket, so
/// a batch of events goes out in few packets (TCP_NODELAY is on).
pub const WRITE_BUFFER: usize = 4 * 1024;
/// Events sent per journal read; bounds what one session holds at once (as shared
/// references, not copies).
pub const BATCH: usize = 256;

/// What every session shares.
pub struct Hub {
    pub journal: Arc<Journal>,
    pub router: Arc<Router>,
    /// The site's tokens (none: panels need none). Replaced whole by a reload.
    tokens: Mutex<Arc<TokenBook>>,
    /// Failed token attempts per peer address.
    lockout: Mutex<Lockout>,
    pub ping_interval: Duration,
    /// The hello deadline and command rate; replaced whole by a reload.
    limits: Swap<PanelLimits>,
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
            router: Arc::new(router),
            tokens: Mutex::new(Arc::new(TokenBook::new(tokens))),
            lockout: Mutex::default(),
            ping_interval,
            limits: Swap::new(PanelLimits::default()),
            panels: AtomicUsize::new(0),
            snapshots: snapshot::Shared::default(),
        }
    }

    pub fn with_limits(self, limits: PanelLimits) -> Self {
        self.limits.store(limits);
        self
    }

    /// The limits in force now.
    pub fn limits(&self) -> PanelLimits {
        *self.limits.load()
    }

    /// Applies `limits` from now on (a reload): to connections that have not said hello
    /// yet and to the next command of every session.
    pub fn replace_limits(&self, limits: PanelLimits) {
        self.limits.store(limits);
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
        !self.current_tokens().is_open()
    }

    /// Checks tokens against `tokens` from now on (a reload); sessions already past
    /// `hello` keep the principal they were given.
    pub fn replace_tokens(&self, tokens: &[AuthToken]) {
        *self.tokens.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(TokenBook::new(tokens));
    }

    fn current_tokens(&self) -> Arc<TokenBook> {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Who a token belongs to, for a request from `peer`. Failures count towards locking
    /// the address out; while it is locked out nothing it sends is even checked.
    pub fn authenticate(&self, peer: IpAddr, token: Option<&str>) -> Result<Principal, Refused> {
        let tokens = self.current_tokens();
        if tokens.is_open() {
            return Ok(Principal::open());
        }
        let now = Instant::now();
        let mut lockout = self.lockout.lock().unwrap_or_else(|p| p.into_inner());
        if let Attempt::Locked { retry_in } = lockout.check(peer, now) {
            return Err(Refused::LockedOut { retry_in });
        }
        match tokens.verify(token) {
            Some(principal) => Ok(principal),
            None => {
                if lockout.failed(peer, now) {
                    warn!(%peer, "too many wrong tokens: refusing this address for {:?}", crate::auth::lockout_time());
                }
                Err(Refused::WrongToken)
            }
        }
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Missing or not one of the site's tokens.
    WrongToken,
    /// Too many wrong tokens from this address lately.
    LockedOut { retry_in: Duration },
}

impl Refused {
    /// What to tell the panel or API client.
    pub fn message(&self) -> String {
        match self {
            Refused::WrongToken => {
                "missing or wrong token; ask the integrator for this panel's token".into()
            }
            Refused::LockedOut { retry_in } => format!(
                "too many wrong tokens from this address; try again in {} s",
                retry_in.as_secs().max(1)
            ),
        }
    }
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
