//! One panel's WebSocket session: hello, then a reader and a cursor-driven writer.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{FuturesUnordered, SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::limits::{self, RateLimit};
use super::subscription::Subscription;
use super::wire::{self, ClientMessage, ServerMessage};
use super::{BATCH, Hub, Untrusted};
use crate::auth::Principal;
use crate::command::{ErrorCode, Failure};
use crate::journal::Read;
use crate::router::{self, CommandKey, Origin, Submission};

/// Messages waiting for the writer, per session. When it is full the reader stops reading
/// that panel: a panel that sends faster than it reads slows only itself.
const OUTBOX: usize = 64;

/// WebSocket close code for a policy violation (RFC 6455), used for a refused token.
const CLOSE_POLICY: u16 = 1008;

/// At most one `position` message per this interval per session.
const POSITION_EVERY: Duration = Duration::from_secs(1);

type Sink = SplitSink<WebSocket, Message>;

/// What the reader hands the writer. Boxed, so that the outbox's first block of slots,
/// allocated with the channel and kept for the session, is small: every idle panel
/// holds one.
enum Outgoing {
    /// Send this, after the events before it.
    Send(Box<Message>),
    /// The panel changed its patterns: confirm them and send a fresh snapshot.
    Resubscribe(Box<Subscription>),
    /// A command was queued: send `accepted` now and its result when `waiting`
    /// completes. The writer waits for it itself, so a result goes from the device's
    /// answer straight to the panel's socket, not through the reader as well.
    Command(Box<Tracked>),
}

/// A queued command's `accepted` and the wait for its result.
struct Tracked {
    accepted: Message,
    waiting: InFlight,
}

impl Outgoing {
    fn send(message: Message) -> Outgoing {
        Outgoing::Send(Box::new(message))
    }
}

/// What a session knows about its panel after `hello`.
struct Panel {
    session: String,
    /// Dedupe scope for command ids (see [`CommandKey::client`]).
    client: String,
    /// Whose token the panel presented, and what it may read and control.
    principal: Principal,
    peer: SocketAddr,
    /// The page's origin, when a browser opened the connection (for the audit log).
    web_origin: Option<String>,
}

/// Serves one panel until it goes away or the gateway stops.
///
/// An `async fn` keeps its arguments for as long as it runs, moved or not: the socket
/// (hundreds of bytes of WebSocket state) is boxed before the session starts, so the
/// session's future holds a pointer, and the box is emptied when the socket is split.
pub fn serve(
    socket: WebSocket,
    peer: SocketAddr,
    web_origin: Option<String>,
    hub: Arc<Hub>,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send {
    run(Box::new(socket), peer, web_origin, hub, shutdown)
}

async fn run(
    mut socket: Box<WebSocket>,
    peer: SocketAddr,
    web_origin: Option<String>,
    hub: Arc<Hub>,
    shutdown: CancellationToken,
) {
    let session = format!("{:016x}", fastrand::u64(..));
    // Boxed: the greeting's state (a snapshot on its way) is freed once it is done, not
    // kept in this future for the whole session.
    let greeting = Box::pin(greet(&mut socket, &hub, session, peer)).await;
    let Some((mut panel, cursor, subscription)) = greeting else {
        return;
    };
    panel.web_origin = web_origin;
    info!(session = %panel.session, client = %Untrusted(&panel.client), %peer, "panel connected");
    let _counted = hub.panel_connected();

    let (sink, stream) = (*socket).split();
    let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
    let done = shutdown.child_token();
    let shared = Arc::new(Shared {
        heard: Heard::new(),
        in_flight: AtomicUsize::new(0),
    });
    // The writer's logs carry which panel they are about.
    let span = tracing::info_span!("panel", session = %panel.session, peer = %panel.peer);
    let writer = tokio::spawn(
        write_loop(
            sink,
            outbox_rx,
            hub.clone(),
            cursor,
            subscription.clone(),
            done.clone(),
            shared.clone(),
        )
        .instrument(span),
    );
    let read_end = read_loop(stream, outbox, &hub, &panel, subscription, &done, &shared).await;
    done.cancel();
    let write_end = writer.await;
    let session = &panel.session;
    let reason = match (&read_end, &write_end) {
        (ReadEnd::Closed, _) => "closed",
        (ReadEnd::Failed(_), _) => "read_failed",
        (ReadEnd::Stopped, _) if shutdown.is_cancelled() => "shutdown",
        (ReadEnd::Stopped, Ok(_)) => "unresponsive",
        (ReadEnd::Stopped, Err(_)) => "writer_failed",
    };
    metrics::counter!(crate::metrics::PANELS_DROPPED, "reason" => reason).increment(1);
    match read_end {
        ReadEnd::Closed => info!(session, %peer, "panel disconnected: it closed the connection"),
        ReadEnd::Failed(why) => {
            warn!(session, %peer, "panel dropped: reading from it failed: {why}")
        }
        ReadEnd::Stopped if shutdown.is_cancelled() => {
            info!(session, %peer, "panel disconnected: the gateway is stopping")
        }
        ReadEnd::Stopped => match write_end {
            Ok(why) => warn!(session, %peer, "panel dropped: {why}"),
            Err(e) => warn!(session, %peer, "panel dropped: its writer failed: {e}"),
        },
    }
}

/// Waits for `hello`, checks the token, and sends `welcome` plus the snapshot or nothing
/// (when resuming, the writer replays from the returned cursor).
async fn greet(
    socket: &mut WebSocket,
    hub: &Hub,
    session: String,
    peer: SocketAddr,
) -> Option<(Panel, u64, Subscription)> {
    let hello_timeout = hub.limits().hello_timeout;
    let deadline = Instant::now() + hello_timeout;
    loop {
        let text = match tokio::time::timeout_at(deadline, socket.recv()).await {
            Err(_) => {
                info!(%peer, "connection closed: no hello within {hello_timeout:?}");
                let failure = Failure::new(
                    ErrorCode::HelloRequired,
                    format!("send hello within {hello_timeout:?} of connecting"),
                );
                let _ = socket.send(error_message(&failure, None)).await;
                return None;
            }
            Ok(None | Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Err(e))) => {
                info!(%peer, "connection dropped before hello: reading failed: {e}");
                return None;
            }
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
        };
        let hello = wire::parse(&text).and_then(|m| limits::check(&m).map(|()| m));
        let (token, resume, client, patterns) = match hello {
            Ok(ClientMessage::Hello {
                token,
                resume,
                client,
                subscribe,
            }) => (token, resume, client, subscribe),
            Ok(_) => {
                let failure = Failure::new(
                    ErrorCode::HelloRequired,
                    "the first message must be {\"type\":\"hello\"}",
                );
                sent(socket.send(error_message(&failure, None)).await, peer)?;
                continue;
            }
            Err(failure) => {
                sent(socket.send(error_message(&failure, None)).await, peer)?;
                continue;
            }
        };
        let principal = match hub.authenticate(peer.ip(), token.as_deref()) {
            Ok(principal) => principal,
            Err(refused) => {
                info!(%peer, "panel refused: {}", refused.message());
                metrics::counter!(crate::metrics::PANEL_SESSIONS, "outcome" => "refused")
                    .increment(1);
                metrics::counter!(crate::metrics::AUTH_FAILURES, "surface" => "websocket")
                    .increment(1);
                let failure = Failure::new(ErrorCode::Unauthorized, refused.message());
                let _ = socket.send(error_message(&failure, None)).await;
                let close = CloseFrame {
                    code: CLOSE_POLICY,
                    reason: Utf8Bytes::from_static("unauthorized"),
                };
                let _ = socket.send(Message::Close(Some(close))).await;
                return None;
            }
        };
        if let Some(name) = &principal.name {
            debug!(%peer, token = %name, "token accepted");
        }
        let subscription = match patterns.as_deref().map(Subscription::new) {
            None => Subscription::default().within(&principal.scopes),
            Some(Ok(subscription)) => subscription.within(&principal.scopes),
            Some(Err(failure)) => {
                sent(socket.send(error_message(&failure, None)).await, peer)?;
                continue;
            }
        };

        let journal = &hub.journal;
        let resumed = resume.is_some_and(|r| journal.can_resume(r.epoch, r.seq));
        let (seq, cursor, snapshot) = match resume {
            Some(r) if resumed => (journal.head(), r.seq, None),
            _ => {
                let snapshot = hub.snapshot_for(&subscription, None);
                (snapshot.seq, snapshot.seq, Some(snapshot))
            }
        };
        let outcome = if resumed { "resumed" } else { "snapshot" };
        metrics::counter!(crate::metrics::PANEL_SESSIONS, "outcome" => outcome).increment(1);
        let welcome = ServerMessage::Welcome {
            session: &session,
            epoch: journal.epoch(),
            seq,
            resumed,
        };
        let greeting = async {
            socket.feed(Message::Text(welcome.to_text().into())).await?;
            for message in snapshot.iter().flat_map(|s| &s.messages) {
                socket.feed(Message::Text(message.clone())).await?;
            }
            socket.flush().await
        };
        sent(greeting.await, peer)?;
        let client = client
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| session.clone());
        return Some((
            Panel {
                session,
                client,
                principal,
                peer,
                web_origin: None,
            },
            cursor,
            subscription,
        ));
    }
}

/// Logs why a panel was let go during its greeting, if sending to it failed.
fn sent(result: Result<(), axum::Error>, peer: SocketAddr) -> Option<()> {
    match result {
        Ok(()) => Some(()),
        Err(e) => {
            warn!(%peer, "panel dropped before it was greeted: sending failed: {e}");
            None
        }
    }
}

/// What a session's reader tells its writer besides the outbox.
struct Shared {
    heard: Heard,
    /// Commands waiting for their result: counted up by the reader, down by the writer
    /// once the result is out.
    in_flight: AtomicUsize,
}

/// When the panel was last heard from (any frame, pongs included), for the writer's
/// liveness check.
struct Heard {
    start: Instant,
    /// Microseconds after `start`.
    last: AtomicU64,
}

impl Heard {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn now(&self) {
        self.last
            .store(self.start.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    fn since(&self, at: Instant) -> bool {
        self.last.load(Ordering::Relaxed)
            >= at.saturating_duration_since(self.start).as_micros() as u64
    }
}

/// Why a session's reader stopped.
enum ReadEnd {
    /// The panel closed the connection.
    Closed,
    /// Reading failed: a frame over the size limit, a broken connection.
    Failed(String),
    /// The writer stopped (or the gateway is stopping); the writer says why.
    Stopped,
}

/// A command waiting for its outcome: the panel's id and the router's watch.
type InFlight = Pin<Box<dyn Future<Output = Finished> + Send>>;

/// A command's outcome, ready to send.
struct Finished {
    /// The panel's id for it.
    id: serde_json::Value,
    report: router::Report,
    /// When its frame was read, to time the gateway's share (none for a duplicate, which
    /// the device did not run again).
    received: Option<Instant>,
}

/// Handles everything the panel sends until it closes or the session ends.
///
/// Every reply goes through the outbox, and the reader waits while the outbox is full:
/// a panel that sends without reading stops being read (the kernel's buffers fill and
/// its sends block) instead of making the gateway buffer for it.
async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    outbox: mpsc::Sender<Outgoing>,
    hub: &Hub,
    panel: &Panel,
    mut subscription: Subscription,
    done: &CancellationToken,
    shared: &Shared,
) -> ReadEnd {
    let mut resubscribes = RateLimit::new(limits::RESUBSCRIBE_BURST, limits::RESUBSCRIBE_EVERY);
    let limits = hub.limits();
    let mut commands = RateLimit::new(limits.command_burst, limits.command_every);
    loop {
        let message = tokio::select! {
            _ = done.cancelled() => return ReadEnd::Stopped,
            next = stream.next() => match next {
                None | Some(Ok(Message::Close(_))) => return ReadEnd::Closed,
                Some(Err(e)) => return ReadEnd::Failed(e.to_string()),
                Some(Ok(message)) => message,
            },
        };
        shared.heard.now();
        let received = Instant::now();
        let action = match message {
            Message::Text(text) => {
                let state = ReaderState {
                    received,
                    subscription: &mut subscription,
                    resubscribes: &mut resubscribes,
                    commands: &mut commands,
                    in_flight: shared.in_flight.load(Ordering::Relaxed),
                };
                handle_text(&text, hub, panel, state)
            }
            Message::Binary(_) => Action::Reply(Outgoing::send(error_message(
                &Failure::new(
                    ErrorCode::Malformed,
                    "binary frames are not part of this protocol; send JSON text",
                ),
                None,
            ))),
            // Pongs only matter as proof of life, counted above; axum answers pings itself.
            _ => Action::Nothing,
        };
        let reply = match action {
            Action::Nothing => continue,
            Action::Reply(reply) => reply,
            Action::Track { accepted, waiting } => {
                shared.in_flight.fetch_add(1, Ordering::Relaxed);
                Outgoing::Command(Box::new(Tracked { accepted, waiting }))
            }
        };
        if outbox.send(reply).await.is_err() {
            return ReadEnd::Stopped;
        }
    }
}

/// What the reader keeps between messages.
struct ReaderState<'a> {
    /// When this frame was read.
    received: Instant,
    subscription: &'a mut Subscription,
    resubscribes: &'a mut RateLimit,
    /// Commands this session may send now (`[commands] panel_rate` and `panel_burst`).
    commands: &'a mut RateLimit,
    /// Commands of this session waiting for their outcome.
    in_flight: usize,
}

/// What the reader does about one message.
enum Action {
    Nothing,
    Reply(Outgoing),
    /// A command was queued: send `accepted`, then its result when `waiting` completes.
    Track {
        accepted: Message,
        waiting: InFlight,
    },
}

/// Acts on one text frame.
fn handle_text(text: &str, hub: &Hub, panel: &Panel, state: ReaderState<'_>) -> Action {
    let reply = |message| Action::Reply(Outgoing::send(message));
    let message = match wire::parse(text) {
        Ok(message) => message,
        Err(failure) => return reply(error_message(&failure, None)),
    };
    if let Err(failure) = limits::check(&message) {
        let id = match &message {
            ClientMessage::Command { id, .. } => Some(id),
            _ => None,
        };
        return reply(error_message(&failure, id));
    }
    match message {
        ClientMessage::Hello { .. } => reply(error_message(
            &Failure::new(
                ErrorCode::InvalidMessage,
                "hello was already received on this connection",
            ),
            None,
        )),
        ClientMessage::Ping => reply(Message::Text(ServerMessage::Pong.to_text().into())),
        ClientMessage::Subscribe { .. } | ClientMessage::Unsubscribe { .. }
            if !state.resubscribes.allow() =>
        {
            let failure = Failure::new(
                ErrorCode::RateLimited,
                format!(
                    "too many subscription changes: {} at once, then one every {:?}; send it again in a moment",
                    limits::RESUBSCRIBE_BURST,
                    limits::RESUBSCRIBE_EVERY
                ),
            );
            reply(error_message(&failure, None))
        }
        ClientMessage::Subscribe { patterns } => match state.subscription.add(&patterns) {
            Ok(()) => Action::Reply(Outgoing::Resubscribe(Box::new(state.subscription.clone()))),
            Err(failure) => reply(error_message(&failure, None)),
        },
        ClientMessage::Unsubscribe { patterns } => {
            state.subscription.remove(&patterns);
            Action::Reply(Outgoing::Resubscribe(Box::new(state.subscription.clone())))
        }
        ClientMessage::Ack { seq } => {
            if seq > hub.journal.head() {
                let message = format!(
                    "ack {seq} is ahead of the newest event {}",
                    hub.journal.head()
                );
                return reply(error_message(
                    &Failure::new(ErrorCode::InvalidMessage, message),
                    None,
                ));
            }
            debug!(session = %panel.session, seq, "ack");
            Action::Nothing
        }
        ClientMessage::Command {
            id,
            device,
            command,
            args,
            run,
        } => {
            let wanted = match wire::wanted(device, command, run, &args) {
                Ok(wanted) => wanted,
                Err(failure) => return reply(error_message(&failure, Some(&id))),
            };
            let Some(key) = wire::id_key(&id) else {
                let failure = Failure::new(
                    ErrorCode::InvalidMessage,
                    "command id must be a non-empty string (up to 128 bytes) or an integer",
                );
                return reply(error_message(&failure, Some(&id)));
            };
            if state.in_flight >= limits::MAX_IN_FLIGHT {
                let failure = Failure::new(
                    ErrorCode::RateLimited,
                    format!(
                        "{} commands of this connection are still waiting for their result; wait for one before sending more",
                        limits::MAX_IN_FLIGHT
                    ),
                );
                return reply(result_message(&id, Err(&failure)));
            }
            // Read per command: a reload changes the rate for sessions already open.
            let limits = hub.limits();
            state
                .commands
                .set(limits.command_burst, limits.command_every);
            if !state.commands.allow() {
                let failure = Failure::new(
                    ErrorCode::RateLimited,
                    format!(
                        "this connection sends commands faster than the site allows ({} at once, then one every {:?}); send it again in a moment",
                        limits.command_burst, limits.command_every
                    ),
                );
                return reply(result_message(&id, Err(&failure)));
            }
            let key = CommandKey {
                owner: panel.principal.dedupe_scope().to_string(),
                client: panel.client.clone(),
                id: key,
            };
            let (device, command) = match &wanted {
                wire::Wanted::Device { device, command } => (device.as_str(), command.as_str()),
                wire::Wanted::Macro(name) => (crate::macros::DEVICE, name.as_str()),
            };
            info!(
                session = %panel.session,
                device = %Untrusted(device),
                command = %Untrusted(command),
                id = %Untrusted(&key.id),
                "command"
            );
            let origin = Origin {
                session: panel.session.clone(),
                token: panel.principal.name.as_deref().map(str::to_string),
                scopes: panel.principal.scopes.clone(),
                peer: Some(panel.peer.ip().to_string()),
                web_origin: panel.web_origin.clone(),
            };
            let submitted = match &wanted {
                wire::Wanted::Device { device, command } => {
                    hub.router.submit(&origin, key, device, command, args)
                }
                wire::Wanted::Macro(name) => hub.router.submit_macro(&origin, key, name),
            };
            match submitted {
                Err(failure) => reply(result_message(&id, Err(&failure))),
                Ok(submission) => {
                    let (watch, duplicate) = match submission {
                        Submission::Accepted(w) => (w, false),
                        Submission::Duplicate(w) => (w, true),
                    };
                    let accepted = ServerMessage::Accepted { id: &id, duplicate };
                    let accepted = Message::Text(accepted.to_text().into());
                    let received = (!duplicate).then_some(state.received);
                    let waiting = Box::pin(async move {
                        let report = router::report(watch).await;
                        Finished {
                            id,
                            report,
                            received,
                        }
                    });
                    Action::Track { accepted, waiting }
                }
            }
        }
    }
}

/// Where a panel is in the journal.
struct Place {
    /// The last seq the writer has dealt with (sent or skipped as not subscribed).
    cursor: u64,
    /// The last seq the panel was told about (an event, a snapshot or a `position`): its
    /// resume point.
    told: u64,
    filter: Subscription,
}

/// Streams the journal from `cursor` and the outbox, in protocol order, until `done`;
/// returns why it stopped.
async fn write_loop(
    mut sink: Sink,
    mut outbox: mpsc::Receiver<Outgoing>,
    hub: Arc<Hub>,
    cursor: u64,
    filter: Subscription,
    done: CancellationToken,
    shared: Arc<Shared>,
) -> String {
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    let mut place = Place {
        cursor,
        told: cursor,
        filter,
    };
    let mut head = hub.journal.watch();
    let mut ping = tokio::time::interval(hub.ping_interval);
    ping.tick().await;
    // A live panel answers a ping once it has read up to it; one sent this long ago and
    // still unanswered means the panel is gone (sleeping tablet, dead Wi-Fi) even if TCP
    // has not noticed. The clock starts when the ping leaves, not when it was queued, so a
    // panel busy reading a burst of events is not mistaken for a dead one.
    let answer_limit = hub.ping_interval * 2;
    let mut unanswered: Option<Instant> = None;
    // A send that cannot complete in this long means the panel stopped reading.
    let send_limit = hub.ping_interval * 2;
    let stalled = || format!("the panel took no data for {send_limit:?}");
    // Replies taken from the outbox, sent together after the events before them.
    let mut replies: Vec<Outgoing> = Vec::new();
    // Results among them to time once they are out: when the command's frame was read,
    // and how long its device had it.
    let mut timed: Vec<(Instant, Duration)> = Vec::new();
    let mut last_position = Instant::now() - POSITION_EVERY;
    let why = loop {
        // Replies waiting now were queued before the journal is read below, so the events
        // a command caused go out before its result.
        while replies.len() < OUTBOX
            && let Ok(reply) = outbox.try_recv()
        {
            replies.push(reply);
        }
        if let Err(why) = send_events(&mut sink, &hub, &mut place, send_limit).await {
            break why;
        }
        if !replies.is_empty() {
            match timeout(
                send_limit,
                send_replies(&mut sink, &hub, &mut place, &mut replies, &mut in_flight),
            )
            .await
            {
                Ok(Ok(())) => {
                    record_gateway_time(&mut timed);
                    continue;
                }
                Ok(Err(e)) => break format!("sending failed: {e}"),
                Err(_) => break stalled(),
            }
        }
        // Caught up, but the last events were all outside the subscription: move the
        // panel's resume point, at most once a second.
        let position_due = (place.cursor > place.told).then_some(last_position + POSITION_EVERY);
        tokio::select! {
            _ = done.cancelled() => break "the session ended".into(),
            message = outbox.recv() => match message {
                Some(message) => replies.push(message),
                None => break "the session ended".into(),
            },
            changed = head.changed() => if changed.is_err() { break "the journal closed".into() },
            // The result is sent after the events before it: `report` waited until the
            // journal holds every event the device gave before answering.
            Some(finished) = in_flight.next(), if !in_flight.is_empty() => {
                shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                if let (Some(received), Some(device_time)) = (finished.received, finished.report.device_time) {
                    timed.push((received, device_time));
                }
                replies.push(Outgoing::send(report_message(&finished.id, &finished.report)));
            }
            _ = tokio::time::sleep_until(position_due.unwrap_or_else(Instant::now)), if position_due.is_some() => {
                let position = ServerMessage::Position { seq: place.cursor };
                match timeout(send_limit, sink.send(Message::Text(position.to_text().into()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break format!("sending failed: {e}"),
                    Err(_) => break stalled(),
                }
                place.told = place.cursor;
                last_position = Instant::now();
            }
            _ = ping.tick() => {
                if let Some(sent) = unanswered {
                    if shared.heard.since(sent) {
                        unanswered = None;
                    } else if sent.elapsed() >= answer_limit {
                        break format!("no answer to a ping for {answer_limit:?}");
                    }
                }
                match timeout(send_limit, sink.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break format!("sending failed: {e}"),
                    Err(_) => break stalled(),
                }
                unanswered.get_or_insert_with(Instant::now);
            }
        }
    };
    done.cancel();
    let _ = timeout(Duration::from_secs(1), sink.close()).await;
    why
}

/// The gateway's own share of each command whose result just went out: the time from its
/// frame read to now, less its device's.
fn record_gateway_time(timed: &mut Vec<(Instant, Duration)>) {
    for (received, device_time) in timed.drain(..) {
        let share = received.elapsed().saturating_sub(device_time);
        metrics::histogram!(crate::metrics::COMMAND_GATEWAY_TIME).record(share.as_secs_f64());
    }
}

/// Sends the replies taken from the outbox, in order, with one flush for all of them
/// (TCP_NODELAY is on, so each flush is a packet).
async fn send_replies(
    sink: &mut Sink,
    hub: &Hub,
    place: &mut Place,
    replies: &mut Vec<Outgoing>,
    in_flight: &mut FuturesUnordered<InFlight>,
) -> Result<(), axum::Error> {
    for reply in replies.drain(..) {
        match reply {
            Outgoing::Send(message) => sink.feed(*message).await?,
            Outgoing::Command(tracked) => {
                let Tracked { accepted, waiting } = *tracked;
                sink.feed(accepted).await?;
                in_flight.push(waiting);
            }
            Outgoing::Resubscribe(filter) => {
                place.filter = *filter;
                resubscribe(sink, hub, place).await?;
            }
        }
    }
    sink.flush().await
}

/// Confirms new patterns and sends what they cover now; the stream goes on from there.
async fn resubscribe(sink: &mut Sink, hub: &Hub, place: &mut Place) -> Result<(), axum::Error> {
    let patterns = place.filter.patterns();
    let subscribed = ServerMessage::Subscribed {
        patterns: &patterns,
    };
    sink.feed(Message::Text(subscribed.to_text().into()))
        .await?;
    send_snapshot(sink, hub, place, "subscription").await
}

/// Sends the journal's snapshot, filtered, and moves the panel's place to it. The parts
/// of a big one go out back to back; the caller flushes.
async fn send_snapshot(
    sink: &mut Sink,
    hub: &Hub,
    place: &mut Place,
    reason: &'static str,
) -> Result<(), axum::Error> {
    let snapshot = hub.snapshot_for(&place.filter, Some(reason));
    for message in &snapshot.messages {
        sink.feed(Message::Text(message.clone())).await?;
    }
    place.cursor = snapshot.seq;
    place.told = snapshot.seq;
    Ok(())
}

/// Sends every subscribed journal event after the panel's cursor, or a snapshot if the
/// panel fell out of the window.
///
/// Each batch must go out within `limit`: a panel that keeps taking data may catch up on
/// any backlog, one that stops is let go.
async fn send_events(
    sink: &mut Sink,
    hub: &Hub,
    place: &mut Place,
    limit: Duration,
) -> Result<(), String> {
    loop {
        match timeout(limit, send_batch(sink, hub, place)).await {
            Ok(Ok(true)) => continue,
            Ok(Ok(false)) => return Ok(()),
            Ok(Err(e)) => return Err(format!("sending failed: {e}")),
            Err(_) => return Err(format!("the panel took no data for {limit:?}")),
        }
    }
}

/// Sends one batch; returns whether there may be more. Events outside the subscription
/// are skipped, never re-serialized: every panel sends the journal's shared frames.
async fn send_batch(sink: &mut Sink, hub: &Hub, place: &mut Place) -> Result<bool, axum::Error> {
    match hub.journal.read_after(place.cursor, BATCH) {
        Read::Events(events) if events.is_empty() => Ok(false),
        Read::Events(events) => {
            let mut fed = false;
            for event in &events {
                if place.filter.matches(&event.device, &event.point) {
                    sink.feed(Message::Text(event.frame.clone())).await?;
                    place.told = event.seq;
                    fed = true;
                }
                place.cursor = event.seq;
            }
            if fed {
                sink.flush().await?;
            }
            Ok(true)
        }
        Read::Gap => {
            send_snapshot(sink, hub, place, "lagged").await?;
            sink.flush().await?;
            Ok(true)
        }
    }
}

fn error_message(failure: &Failure, id: Option<&serde_json::Value>) -> Message {
    let failure = limits::clipped(failure);
    let message = ServerMessage::Error {
        code: failure.code,
        message: &failure.message,
        id,
    };
    Message::Text(message.to_text().into())
}

fn result_message(id: &serde_json::Value, outcome: Result<(), &Failure>) -> Message {
    let error = outcome.err().map(limits::clipped);
    let message = ServerMessage::Result {
        id,
        ok: outcome.is_ok(),
        error: error.as_deref(),
        steps: None,
    };
    Message::Text(message.to_text().into())
}

/// The `result` of a command that was accepted: a macro run's has its steps.
fn report_message(id: &serde_json::Value, report: &router::Report) -> Message {
    let error = report.outcome.as_ref().err().map(limits::clipped);
    let message = ServerMessage::Result {
        id,
        ok: report.outcome.is_ok(),
        error: error.as_deref(),
        steps: report.steps.as_deref(),
    };
    Message::Text(message.to_text().into())
}
