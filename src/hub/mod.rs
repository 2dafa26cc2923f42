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

mod session;
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
use crate::router::Router;

pub use session::serve;

/// Largest message a panel may send. Commands are small; anything bigger is a mistake or
/// an attack, and tungstenite closes the connection.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Outgoing bytes buffered per panel beyond what the kernel holds. Sends wait (and the
/// panel is eventually dropped) rather than buffer more.
pub const MAX_WRITE_BUFFER: usize = 256 * 1024;
/// Events sent per journal read; bounds what one session holds at once (as shared
/// references, not copies).
pub const BATCH: usize = 256;
/// How long a new connection has to say `hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What every session shares.
pub struct Hub {
    pub journal: Arc<Journal>,
    pub router: Router,
    /// The site's tokens. Empty: panels need none.
    tokens: TokenBook,
    /// Failed token attempts per peer address.
    lockout: Mutex<Lockout>,
    pub ping_interval: Duration,
    /// Panels connected now (past `hello`).
    panels: AtomicUsize,
}

impl Hub {
    pub fn new(
        journal: Arc<Journal>,
        router: Router,
        tokens: &[AuthToken],
        ping_interval: Duration,
    ) -> Self {
        let tokens = TokenBook::new(tokens);
        Self {
            journal,
            router,
            tokens,
            lockout: Mutex::default(),
            ping_interval,
            panels: AtomicUsize::new(0),
        }
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

    pub fn auth_required(&self) -> bool {
        !self.tokens.is_open()
    }

    /// Who a token belongs to, for a request from `peer`. Failures count towards locking
    /// the address out; while it is locked out nothing it sends is even checked.
    pub fn authenticate(&self, peer: IpAddr, token: Option<&str>) -> Result<Principal, Refused> {
        if self.tokens.is_open() {
            return Ok(Principal::open());
        }
        let now = Instant::now();
        let mut lockout = self.lockout.lock().unwrap_or_else(|p| p.into_inner());
        if let Attempt::Locked { retry_in } = lockout.check(peer, now) {
            return Err(Refused::LockedOut { retry_in });
        }
        match self.tokens.verify(token) {
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
