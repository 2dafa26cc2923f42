//! One panel's WebSocket session: hello, then a reader and a cursor-driven writer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info};

use super::subscription::Subscription;
use super::wire::{self, ClientMessage, ServerMessage};
use super::{BATCH, HELLO_TIMEOUT, Hub};
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

/// What the reader hands the writer.
enum Outgoing {
    /// Send this, after the events before it.
    Send(Message),
    /// The panel changed its patterns: confirm them and send a fresh snapshot.
    Resubscribe(Subscription),
}

/// What a session knows about its panel after `hello`.
struct Panel {
    session: String,
    /// Dedupe scope for command ids (see [`CommandKey::client`]).
    client: String,
    /// Whose token the panel presented, and what it may read and control.
    principal: Principal,
    peer: SocketAddr,
}

/// Serves one panel until it goes away or the gateway stops.
pub async fn serve(
    mut socket: WebSocket,
    peer: SocketAddr,
    hub: Arc<Hub>,
    shutdown: CancellationToken,
) {
    let session = format!("{:016x}", fastrand::u64(..));
    let Some((panel, cursor, subscription)) = greet(&mut socket, &hub, session, peer).await else {
        return;
    };
    info!(session = %panel.session, client = %panel.client, %peer, "panel connected");
    let _counted = hub.panel_connected();

    let (sink, stream) = socket.split();
    let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
    let done = shutdown.child_token();
    let heard = Arc::new(Heard::new());
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
            heard.clone(),
        )
        .instrument(span),
    );
    read_loop(stream, outbox, &hub, &panel, subscription, &done, &heard).await;
    done.cancel();
    let _ = writer.await;
    info!(session = %panel.session, %peer, "panel disconnected");
}

/// Waits for `hello`, checks the token, and sends `welcome` plus the snapshot or nothing
/// (when resuming, the writer replays from the returned cursor).
async fn greet(
    socket: &mut WebSocket,
    hub: &Hub,
    session: String,
    peer: SocketAddr,
) -> Option<(Panel, u64, Subscription)> {
    let deadline = Instant::now() + HELLO_TIMEOUT;
    loop {
        let text = match tokio::time::timeout_at(deadline, socket.recv()).await {
            Err(_) => {
                debug!(%peer, "no hello in time; closing");
                let failure = Failure::new(
                    ErrorCode::HelloRequired,
                    format!("send hello within {HELLO_TIMEOUT:?} of connecting"),
                );
                let _ = socket.send(error_message(&failure, None)).await;
                return None;
            }
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
        };
        let (token, resume, client, patterns) = match wire::parse(&text) {
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
                socket.send(error_message(&failure, None)).await.ok()?;
                continue;
            }
            Err(failure) => {
                socket.send(error_message(&failure, None)).await.ok()?;
                continue;
            }
        };
        let principal = match hub.authenticate(peer.ip(), token.as_deref()) {
            Ok(principal) => principal,
            Err(refused) => {
                info!(%peer, "panel refused: {}", refused.message());
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
            Some(Err(why)) => {
                let failure = Failure::new(ErrorCode::InvalidMessage, why);
                socket.send(error_message(&failure, None)).await.ok()?;
                continue;
            }
        };

        let journal = &hub.journal;
        let resumed = resume.is_some_and(|r| journal.can_resume(r.epoch, r.seq));
        let (seq, cursor, snapshot) = match resume {
            Some(r) if resumed => (journal.head(), r.seq, None),
            _ => {
                let snapshot = journal.snapshot();
                (snapshot.seq, snapshot.seq, Some(snapshot))
            }
        };
        let welcome = ServerMessage::Welcome {
            session: &session,
            epoch: journal.epoch(),
            seq,
            resumed,
        };
        socket
            .send(Message::Text(welcome.to_text().into()))
            .await
            .ok()?;
        if let Some(snapshot) = &snapshot {
            let message = ServerMessage::Snapshot {
                snapshot: &subscription.filter(snapshot),
                reason: None,
            };
            socket
                .send(Message::Text(message.to_text().into()))
                .await
                .ok()?;
        }
        let client = client
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| session.clone());
        return Some((
            Panel {
                session,
                client,
                principal,
                peer,
            },
            cursor,
            subscription,
        ));
    }
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

/// Handles everything the panel sends until it closes or the session ends.
async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    outbox: mpsc::Sender<Outgoing>,
    hub: &Hub,
    panel: &Panel,
    mut subscription: Subscription,
    done: &CancellationToken,
    heard: &Heard,
) {
    loop {
        let message = tokio::select! {
            _ = done.cancelled() => return,
            next = stream.next() => match next {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(message)) => message,
            },
        };
        heard.now();
        let reply = match message {
            Message::Text(text) => handle_text(&text, hub, panel, &mut subscription, &outbox),
            Message::Binary(_) => Some(Outgoing::Send(error_message(
                &Failure::new(
                    ErrorCode::Malformed,
                    "binary frames are not part of this protocol; send JSON text",
                ),
                None,
            ))),
            // Pongs only matter as proof of life, counted above; axum answers pings itself.
            _ => None,
        };
        if let Some(reply) = reply
            && outbox.send(reply).await.is_err()
        {
            return;
        }
    }
}

/// Acts on one text frame; returns an immediate reply, if there is one.
fn handle_text(
    text: &str,
    hub: &Hub,
    panel: &Panel,
    subscription: &mut Subscription,
    outbox: &mpsc::Sender<Outgoing>,
) -> Option<Outgoing> {
    let reply = match wire::parse(text) {
        Err(failure) => Some(error_message(&failure, None)),
        Ok(ClientMessage::Hello { .. }) => Some(error_message(
            &Failure::new(
                ErrorCode::InvalidMessage,
                "hello was already received on this connection",
            ),
            None,
        )),
        Ok(ClientMessage::Ping) => Some(Message::Text(ServerMessage::Pong.to_text().into())),
        Ok(ClientMessage::Subscribe { patterns }) => {
            let mut wanted = subscription.clone();
            match wanted.add(&patterns) {
                Ok(()) => {
                    *subscription = wanted;
                    return Some(Outgoing::Resubscribe(subscription.clone()));
                }
                Err(why) => Some(error_message(
                    &Failure::new(ErrorCode::InvalidMessage, why),
                    None,
                )),
            }
        }
        Ok(ClientMessage::Unsubscribe { patterns }) => {
            subscription.remove(&patterns);
            return Some(Outgoing::Resubscribe(subscription.clone()));
        }
        Ok(ClientMessage::Ack { seq }) => {
            if seq > hub.journal.head() {
                let message = format!(
                    "ack {seq} is ahead of the newest event {}",
                    hub.journal.head()
                );
                return Some(Outgoing::Send(error_message(
                    &Failure::new(ErrorCode::InvalidMessage, message),
                    None,
                )));
            }
            debug!(session = %panel.session, seq, "ack");
            None
        }
        Ok(ClientMessage::Command {
            id,
            device,
            command,
            args,
        }) => {
            let Some(key) = wire::id_key(&id) else {
                let failure = Failure::new(
                    ErrorCode::InvalidMessage,
                    "command id must be a non-empty string (up to 128 bytes) or an integer",
                );
                return Some(Outgoing::Send(error_message(&failure, Some(&id))));
            };
            let key = CommandKey {
                client: panel.client.clone(),
                id: key,
            };
            info!(session = %panel.session, %device, %command, id = %key.id, "command");
            match hub.router.submit(
                &Origin {
                    session: panel.session.clone(),
                    token: panel.principal.name.as_deref().map(str::to_string),
                },
                key,
                &device,
                &command,
                args,
            ) {
                Err(failure) => Some(result_message(&id, Err(&failure))),
                Ok(submission) => {
                    let (watch, duplicate) = match submission {
                        Submission::Accepted(w) => (w, false),
                        Submission::Duplicate(w) => (w, true),
                    };
                    let accepted = ServerMessage::Accepted { id: &id, duplicate };
                    let outbox = outbox.clone();
                    let accepted = Message::Text(accepted.to_text().into());
                    tokio::spawn(async move {
                        if outbox.send(Outgoing::Send(accepted)).await.is_err() {
                            return;
                        }
                        let outcome = router::outcome(watch).await;
                        let result = result_message(&id, outcome.as_ref().map(|_| ()));
                        let _ = outbox.send(Outgoing::Send(result)).await;
                    });
                    None
                }
            }
        }
    };
    reply.map(Outgoing::Send)
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

/// Streams the journal from `cursor` and the outbox, in protocol order, until `done`.
async fn write_loop(
    mut sink: Sink,
    mut outbox: mpsc::Receiver<Outgoing>,
    hub: Arc<Hub>,
    cursor: u64,
    filter: Subscription,
    done: CancellationToken,
    heard: Arc<Heard>,
) {
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
    let mut pending: Option<Outgoing> = None;
    let mut last_position = Instant::now() - POSITION_EVERY;
    loop {
        // Events first, so anything waiting in the outbox (a command's result) goes out
        // after the events that led to it.
        if let Err(why) = send_events(&mut sink, &hub, &mut place, send_limit).await {
            debug!("writer stopping: {why}");
            break;
        }
        if let Some(outgoing) = pending.take() {
            let sent = match outgoing {
                Outgoing::Send(message) => timeout(send_limit, sink.send(message)).await,
                Outgoing::Resubscribe(filter) => {
                    place.filter = filter;
                    timeout(send_limit, resubscribe(&mut sink, &hub, &mut place)).await
                }
            };
            if sent.map_or(true, |r| r.is_err()) {
                break;
            }
            continue;
        }
        // Caught up, but the last events were all outside the subscription: move the
        // panel's resume point, at most once a second.
        let position_due = (place.cursor > place.told).then_some(last_position + POSITION_EVERY);
        tokio::select! {
            _ = done.cancelled() => break,
            message = outbox.recv() => match message {
                Some(message) => pending = Some(message),
                None => break,
            },
            changed = head.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(position_due.unwrap_or_else(Instant::now)), if position_due.is_some() => {
                let position = ServerMessage::Position { seq: place.cursor };
                if timeout(send_limit, sink.send(Message::Text(position.to_text().into()))).await.map_or(true, |r| r.is_err()) {
                    break;
                }
                place.told = place.cursor;
                last_position = Instant::now();
            }
            _ = ping.tick() => {
                if let Some(sent) = unanswered {
                    if heard.since(sent) {
                        unanswered = None;
                    } else if sent.elapsed() >= answer_limit {
                        info!("no answer to a ping for {answer_limit:?}; dropping panel");
                        break;
                    }
                }
                if timeout(send_limit, sink.send(Message::Ping(Default::default()))).await.map_or(true, |r| r.is_err()) {
                    break;
                }
                unanswered.get_or_insert_with(Instant::now);
            }
        }
    }
    done.cancel();
    let _ = timeout(Duration::from_secs(1), sink.close()).await;
}

/// Confirms new patterns and sends what they cover now; the stream goes on from there.
async fn resubscribe(sink: &mut Sink, hub: &Hub, place: &mut Place) -> Result<(), axum::Error> {
    let patterns = place.filter.patterns();
    let subscribed = ServerMessage::Subscribed {
        patterns: &patterns,
    };
    sink.send(Message::Text(subscribed.to_text().into()))
        .await?;
    send_snapshot(sink, hub, place, "subscription").await
}

/// Sends the journal's snapshot, filtered, and moves the panel's place to it.
async fn send_snapshot(
    sink: &mut Sink,
    hub: &Hub,
    place: &mut Place,
    reason: &'static str,
) -> Result<(), axum::Error> {
    let snapshot = place.filter.filter(&hub.journal.snapshot());
    let message = ServerMessage::Snapshot {
        snapshot: &snapshot,
        reason: Some(reason),
    };
    sink.send(Message::Text(message.to_text().into())).await?;
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
) -> Result<(), &'static str> {
    loop {
        match timeout(limit, send_batch(sink, hub, place)).await {
            Ok(Ok(true)) => continue,
            Ok(Ok(false)) => return Ok(()),
            Ok(Err(why)) => return Err(why),
            Err(_) => return Err("the panel stopped taking data"),
        }
    }
}

/// Sends one batch; returns whether there may be more. Events outside the subscription
/// are skipped, never re-serialized: every panel sends the journal's shared frames.
async fn send_batch(sink: &mut Sink, hub: &Hub, place: &mut Place) -> Result<bool, &'static str> {
    match hub.journal.read_after(place.cursor, BATCH) {
        Read::Events(events) if events.is_empty() => Ok(false),
        Read::Events(events) => {
            let mut fed = false;
            for event in &events {
                if place.filter.matches(&event.device, &event.point) {
                    sink.feed(Message::Text(event.frame.clone()))
                        .await
                        .map_err(|_| "send failed")?;
                    place.told = event.seq;
                    fed = true;
                }
                place.cursor = event.seq;
            }
            if fed {
                sink.flush().await.map_err(|_| "send failed")?;
            }
            Ok(true)
        }
        Read::Gap => {
            send_snapshot(sink, hub, place, "lagged")
                .await
                .map_err(|_| "send failed")?;
            Ok(true)
        }
    }
}

fn error_message(failure: &Failure, id: Option<&serde_json::Value>) -> Message {
    let message = ServerMessage::Error {
        code: failure.code,
        message: &failure.message,
        id,
    };
    Message::Text(message.to_text().into())
}

fn result_message(id: &serde_json::Value, outcome: Result<(), &Failure>) -> Message {
    let message = ServerMessage::Result {
        id,
        ok: outcome.is_ok(),
        error: outcome.err(),
    };
    Message::Text(message.to_text().into())
}
