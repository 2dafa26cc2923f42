//! What a panel may send: the size of every field it controls, how many commands it may
//! have in flight, and how often it may ask for a fresh snapshot.
//!
//! Each limit is far above what a real panel needs and far below what would let one
//! panel grow the gateway: whatever a panel sends is either within these bounds or
//! refused with `too_large` / `rate_limited` before anything is stored or queued.

use std::time::Duration;

use avgate_drivers::Value;
use tokio::time::Instant;

use super::wire::ClientMessage;
use crate::command::{ErrorCode, Failure};

/// Longest `client`, `device` and `command` (bytes). Device ids and command names are
/// short; a client name is a label.
pub const MAX_NAME: usize = 128;
/// Longest `token` (bytes).
pub const MAX_TOKEN: usize = 256;
/// Largest `args` object, as JSON text (bytes). Real arguments are a few numbers and
/// names; the audit log and the command ledger keep them.
pub const MAX_ARGS: usize = 4 * 1024;
/// Deepest nesting inside `args` (an object in an object is depth 2).
pub const MAX_ARGS_DEPTH: usize = 8;
/// Commands per session waiting for their result at once; more get `rate_limited`. A
/// slider dragged at 60 Hz keeps a few dozen in flight while their records are committed
/// and older ones are superseded; each costs a few hundred bytes.
pub const MAX_IN_FLIGHT: usize = 128;
/// Subscription changes (each answered with a snapshot) a session may make in a burst,
/// and how often it earns another one after that.
pub const RESUBSCRIBE_BURST: u32 = 5;
pub const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(1);

/// The limits a site sets for its panels (`[server] hello_timeout`, `[commands]
/// panel_rate` and `panel_burst`). A reload replaces them whole; a session reads them when
/// it starts and again at every command, so sessions already open follow the new values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanelLimits {
    /// How long a new connection has to say `hello`.
    pub hello_timeout: Duration,
    /// Commands one connection may send at once, then one per `command_every`.
    pub command_burst: u32,
    pub command_every: Duration,
}

impl PanelLimits {
    /// `burst` commands at once, then `per_second` (both at least 1).
    pub fn new(hello_timeout: Duration, per_second: u32, burst: u32) -> Self {
        Self {
            hello_timeout,
            command_burst: burst.max(1),
            command_every: Duration::from_secs(1) / per_second.max(1),
        }
    }
}

impl Default for PanelLimits {
    /// The site file's defaults.
    fn default() -> Self {
        Self::new(Duration::from_secs(10), 500, 1000)
    }
}

/// Longest error text sent to a panel (bytes). Parse errors quote what the panel sent,
/// and some refusals list what the site has: clipped, so every message in a panel's
/// outbox stays small.
pub const MAX_ERROR_TEXT: usize = 1024;

/// `failure` with its message clipped to [`MAX_ERROR_TEXT`].
pub fn clipped(failure: &Failure) -> std::borrow::Cow<'_, Failure> {
    if failure.message.len() <= MAX_ERROR_TEXT {
        return std::borrow::Cow::Borrowed(failure);
    }
    let mut end = MAX_ERROR_TEXT;
    while !failure.message.is_char_boundary(end) {
        end -= 1;
    }
    let message = format!(
        "{} … ({} bytes in all)",
        &failure.message[..end],
        failure.message.len()
    );
    std::borrow::Cow::Owned(Failure::new(failure.code, message))
}

/// Checks the fields of a parsed message against the limits above.
pub fn check(message: &ClientMessage) -> Result<(), Failure> {
    match message {
        ClientMessage::Hello { token, client, .. } => {
            if let Some(client) = client {
                name("client", client)?;
            }
            if let Some(token) = token
                && token.len() > MAX_TOKEN
            {
                return Err(too_large(format!(
                    "token is {} bytes; tokens have at most {MAX_TOKEN}",
                    token.len()
                )));
            }
            Ok(())
        }
        ClientMessage::Command {
            device,
            command,
            args,
            run,
            ..
        } => {
            for (field, value) in [("device", device), ("command", command), ("macro", run)] {
                if let Some(value) = value {
                    name(field, value)?;
                }
            }
            let depth = args.values().map(depth).max().unwrap_or(0) + 1;
            if depth > MAX_ARGS_DEPTH {
                return Err(too_large(format!(
                    "args are nested {depth} deep; at most {MAX_ARGS_DEPTH} levels"
                )));
            }
            let size = serde_json::to_string(args).map_or(usize::MAX, |s| s.len());
            if size > MAX_ARGS {
                return Err(too_large(format!(
                    "args are {size} bytes of JSON; at most {MAX_ARGS}"
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn name(field: &str, value: &str) -> Result<(), Failure> {
    if value.len() > MAX_NAME {
        return Err(too_large(format!(
            "{field} is {} bytes; at most {MAX_NAME}",
            value.len()
        )));
    }
    Ok(())
}

fn too_large(message: String) -> Failure {
    Failure::new(ErrorCode::TooLarge, message)
}

/// Nesting depth of a JSON value: a scalar is 1.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 1,
    }
}

/// A token bucket: `burst` at once, then one every `every`.
#[derive(Debug)]
pub struct RateLimit {
    burst: u32,
    every: Duration,
    tokens: u32,
    /// When the last token was earned (or the bucket was full).
    since: Instant,
}

impl RateLimit {
    pub fn new(burst: u32, every: Duration) -> Self {
        Self {
            burst,
            every,
            tokens: burst,
            since: Instant::now(),
        }
    }

    /// Follows a changed limit: the new rate from now on, and no more tokens in hand
    /// than the new burst (a lowered limit holds at once, a raised one fills up at the
    /// new rate).
    pub fn set(&mut self, burst: u32, every: Duration) {
        if (burst, every) == (self.burst, self.every) {
            return;
        }
        self.refill();
        self.burst = burst;
        self.every = every;
        self.tokens = self.tokens.min(burst);
    }

    /// Takes a token if there is one.
    pub fn allow(&mut self) -> bool {
        self.refill();
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Adds the tokens earned since they were last counted.
    fn refill(&mut self) {
        let now = Instant::now();
        let earned = (now - self.since).as_nanos() / self.every.as_nanos().max(1);
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(self.burst);
            self.since += self.every * earned.min(self.burst);
            if self.tokens == self.burst {
                self.since = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::wire::parse;
    use serde_json::json;

    fn command(device: &str, command: &str, args: Value) -> ClientMessage {
        parse(&json!({"type": "command", "id": 1, "device": device, "command": command, "args": args}).to_string())
            .unwrap()
    }

    #[test]
    fn every_field_a_panel_controls_is_bounded() {
        assert!(check(&command("proj", "power", json!({"on": true}))).is_ok());
        let long = "x".repeat(MAX_NAME + 1);
        for message in [
            command(&long, "power", json!({})),
            command("proj", &long, json!({})),
            command("proj", "power", json!({"text": "y".repeat(MAX_ARGS)})),
            command("proj", "power", json!({"a": [[[[[[[[1]]]]]]]]})),
            parse(&json!({"type": "hello", "client": long}).to_string()).unwrap(),
            parse(&json!({"type": "hello", "token": "t".repeat(MAX_TOKEN + 1)}).to_string())
                .unwrap(),
        ] {
            let refused = check(&message).unwrap_err();
            assert_eq!(refused.code, ErrorCode::TooLarge, "{refused}");
        }
        let deep_enough = command("proj", "power", json!({"a": [[[[[[1]]]]]]}));
        assert!(check(&deep_enough).is_ok());
    }

    #[test]
    fn long_error_texts_are_clipped() {
        let long = Failure::new(ErrorCode::InvalidMessage, "é".repeat(2000));
        let clipped = clipped(&long);
        assert!(
            clipped.message.len() < MAX_ERROR_TEXT + 40,
            "{}",
            clipped.message.len()
        );
        assert!(clipped.message.ends_with("(4000 bytes in all)"));
        let short = Failure::new(ErrorCode::InvalidMessage, "short");
        assert_eq!(*super::clipped(&short), short);
    }

    #[tokio::test(start_paused = true)]
    async fn resubscribes_come_in_a_burst_then_one_a_second() {
        let mut limit = RateLimit::new(3, Duration::from_secs(1));
        assert!((0..3).all(|_| limit.allow()));
        assert!(!limit.allow(), "burst spent");
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!limit.allow());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(limit.allow(), "one earned after a second");
        assert!(!limit.allow());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(
            (0..3).all(|_| limit.allow()),
            "refilled, but only to the burst"
        );
        assert!(!limit.allow());
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_rate_holds_at_once_for_a_bucket_in_use() {
        let mut limit = RateLimit::new(10, Duration::from_millis(100));
        assert!((0..4).all(|_| limit.allow()), "6 tokens left");
        limit.set(2, Duration::from_secs(1));
        assert!((0..2).all(|_| limit.allow()), "clipped to the new burst");
        assert!(!limit.allow());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(!limit.allow(), "the new, slower rate applies");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(limit.allow());
        limit.set(5, Duration::from_millis(10));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(
            (0..5).all(|_| limit.allow()),
            "a raised limit fills up to its burst"
        );
        assert!(!limit.allow());
    }
}
