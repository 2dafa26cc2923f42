//! The MQTT bridge: the journal's state, published to a broker as retained messages.
//!
//! The bridge reads the journal through a cursor, like a panel. With QoS 1 it counts a
//! seq as delivered only once the broker acknowledged it (PUBACKs come in publish order),
//! and keeps the last acknowledged seq in the data directory. After a broker outage or a
//! gateway restart it resumes from there when the broker kept its session and the journal
//! still holds the events; otherwise (a new epoch, events gone from the window, a broker
//! that came back without the session: CONNACK session-present 0) it republishes the
//! whole current state. docs/MQTT.md has the topics and payloads.
//!
//! The bridge speaks MQTT 5, for response topics and correlation data on commands; the
//! state keeps its small JSON envelope, so MQTT 3.1.1 subscribers of the same broker read
//! it too. With Home Assistant discovery on, [`discovery`] builds the entity configs.

pub mod config;
pub mod discovery;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet, Publish, PublishProperties};
use rumqttc::v5::{AsyncClient, ConnectionError, Event as MqttEvent, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use serde::{Deserialize, Serialize};
use serde_json::Map;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::MqttSettings;
pub use discovery::Announcement;

use crate::command::{ErrorCode, Failure};
use crate::hub::Hub;
use crate::journal::{ERROR, Event, Journal, ONLINE, Read, Snapshot};
use crate::router::{self, CommandKey, Origin, Submission};
use crate::runtime::Backoff;

/// Publishes awaiting their PUBACK at most; below rumqttc's request channel and inflight
/// window, so `try_publish` never finds the channel full.
const MAX_IN_FLIGHT: usize = 64;
/// rumqttc's request channel.
const REQUEST_CHANNEL: usize = 4 * MAX_IN_FLIGHT;
/// The file in the data directory that keeps the last acknowledged seq.
pub const CURSOR_FILE: &str = "mqtt-cursor.json";
/// How long a stopping bridge waits for its `offline` to reach the broker.
const GOODBYE: Duration = Duration::from_secs(2);
/// How long the broker keeps the bridge's session (its subscriptions, and what it did not
/// acknowledge yet) after the connection drops: an MQTT 5 session ends with the connection
/// unless given an expiry. A gateway away longer gets the whole state republished.
const SESSION_EXPIRY_SECS: u32 = 24 * 3600;

/// The last seq of one journal epoch the broker acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    pub epoch: u64,
    pub seq: u64,
    /// Counts the broker sessions the bridge started (CONNACK session-present 0): the
    /// broker numbers its messages afresh in each, and command ids include it.
    #[serde(default)]
    pub session: u64,
}

impl Acked {
    /// What `path` holds, or `None` (a first start, or an unreadable file: the snapshot
    /// then republishes everything, so nothing is lost).
    pub fn load(path: &Path) -> Option<Acked> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(&self, path: &Path) -> std::io::Result<()> {
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, serde_json::to_vec(self).expect("serializes"))?;
        std::fs::rename(&temporary, path)
    }
}

/// The topic with the gateway's own availability (its Last Will says `offline`).
pub fn status_topic(settings: &MqttSettings) -> String {
    format!("{}/status", settings.prefix)
}

/// Starts the bridge; it runs until `stop`, reconnecting with jittered backoff.
/// `announcements`: the Home Assistant discovery configs ([`discovery::announcements`]).
pub async fn run(
    settings: Arc<MqttSettings>,
    journal: Arc<Journal>,
    hub: Arc<Hub>,
    data_dir: Option<PathBuf>,
    announcements: Vec<Announcement>,
    stop: CancellationToken,
) {
    // Without a durable journal a restart starts a new epoch: nothing to resume from.
    if let Some(dir) = &data_dir
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        warn!(dir = %dir.display(), error = %e, "mqtt: cannot create the data directory; the acknowledged seq is not kept across restarts");
    }
    let mut bridge = Bridge {
        cursor_file: data_dir.map(|dir| dir.join(CURSOR_FILE)),
        acked: None,
        session: 0,
        settings,
        journal,
        hub,
        announcements,
    };
    bridge.acked = bridge.cursor_file.as_deref().and_then(Acked::load);
    bridge.session = bridge.acked.map_or(0, |a| a.session);
    let mut backoff = Backoff::default();
    loop {
        match bridge.connection(&stop, &mut backoff).await {
            Ok(()) => return,
            Err(e) => {
                let delay = backoff.next_delay();
                warn!(
                    broker = %format!("{}:{}", bridge.settings.host, bridge.settings.port),
                    error = %e,
                    retry_in = ?delay,
                    "mqtt: broker connection lost; events wait in the journal"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum BridgeError {
    #[error("{0}")]
    Connection(#[from] ConnectionError),
    #[error("the MQTT client stopped: {0}")]
    Client(#[from] rumqttc::v5::ClientError),
}

struct Bridge {
    settings: Arc<MqttSettings>,
    journal: Arc<Journal>,
    hub: Arc<Hub>,
    /// `None` without a durable journal.
    cursor_file: Option<PathBuf>,
    acked: Option<Acked>,
    session: u64,
    /// Home Assistant discovery configs, published after every CONNACK and again after
    /// Home Assistant's birth message.
    announcements: Vec<Announcement>,
}

/// One message on its way to the broker.
struct Message {
    topic: String,
    payload: Vec<u8>,
    /// The journal position delivered once the broker acknowledged this message.
    delivers: Option<u64>,
}

/// Polls rumqttc's event loop in its own task (publishing from the polling task deadlocks
/// once the request channel fills) and ends it when dropped.
struct Poller(tokio::task::JoinHandle<()>);

impl Drop for Poller {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Bridge {
    fn options(&self) -> MqttOptions {
        let s = &self.settings;
        let mut options = MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
        options
            .set_keep_alive(s.keep_alive)
            // The broker keeps our session, so a CONNACK with session-present 1 tells us
            // its retained state is the one we left.
            .set_clean_start(false)
            .set_session_expiry_interval(Some(SESSION_EXPIRY_SECS))
            .set_request_channel_capacity(REQUEST_CHANNEL)
            // A command is acknowledged once the router took it, so a gateway that dies
            // before that gets it again from the broker (and the dedupe runs it once).
            .set_manual_acks(true)
            .set_last_will(LastWill::new(
                status_topic(s),
                "offline",
                QoS::AtLeastOnce,
                true,
                None,
            ));
        if let Some(user) = &s.username {
            options.set_credentials(user.clone(), s.password.clone().unwrap_or_default());
        }
        if let Some(tls) = &s.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        options
    }

    fn qos(&self) -> QoS {
        if self.settings.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }

    /// One connection, from CONNACK until it fails (`Err`) or the gateway stops (`Ok`).
    async fn connection(
        &mut self,
        stop: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Result<(), BridgeError> {
        let (client, mut eventloop) = AsyncClient::new(self.options(), REQUEST_CHANNEL);
        let (events_tx, mut events) = mpsc::channel(REQUEST_CHANNEL);
        let _poller = Poller(tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if events_tx.send(event).await.is_err() || failed {
                    return;
                }
            }
        }));
        let session_present = loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                event = events.recv() => match event {
                    Some(Ok(MqttEvent::Incoming(Packet::ConnAck(ack)))) => break ack.session_present,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => return Ok(()),
                },
            }
        };
        backoff.reset();
        let epoch = self.journal.epoch();
        if !session_present {
            self.session += 1;
        }
        // Subscriptions are part of the session, but asked for again after every CONNACK
        // in case the broker lost them: subscribing again to the same filter is harmless.
        if self.settings.commands.is_some() {
            client.try_subscribe(
                format!("{}/+/+/set", self.settings.prefix),
                QoS::AtLeastOnce,
            )?;
        }
        if let Some(discovery_prefix) = &self.settings.discovery {
            client.try_subscribe(discovery::birth_topic(discovery_prefix), QoS::AtLeastOnce)?;
            // The broker answers with the retained configs of this node, among them those
            // of devices removed since: each is cleared as it arrives (`stale_config`).
            client.try_subscribe(
                discovery::own_configs_filter(discovery_prefix, &self.settings.prefix),
                QoS::AtLeastOnce,
            )?;
        }
        let resume = self
            .acked
            .filter(|a| session_present && self.journal.can_resume(epoch, a.seq))
            .filter(|a| a.epoch == epoch);
        info!(
            broker = %format!("{}:{}", self.settings.host, self.settings.port),
            session_present,
            resume_after = resume.map(|a| a.seq),
            "mqtt: connected"
        );
        let mut backlog: VecDeque<Message> = VecDeque::new();
        backlog.push_back(Message {
            topic: status_topic(&self.settings),
            payload: b"online".to_vec(),
            delivers: None,
        });
        backlog.extend(self.discovery_messages());
        let mut reannounce = discovery::Reannounce::default();
        let mut cursor = match resume {
            Some(acked) => acked.seq,
            None => {
                let snapshot = self.journal.snapshot();
                backlog.extend(self.snapshot_messages(&snapshot));
                snapshot.seq
            }
        };
        let mut sent: VecDeque<Option<u64>> = VecDeque::new();
        let mut head = self.journal.watch();
        loop {
            while sent.len() < MAX_IN_FLIGHT {
                if let Some(message) = backlog.pop_front() {
                    client.try_publish(message.topic, self.qos(), true, message.payload)?;
                    if self.qos() == QoS::AtLeastOnce {
                        sent.push_back(message.delivers);
                    }
                    continue;
                }
                match self.journal.read_after(cursor, MAX_IN_FLIGHT - sent.len()) {
                    Read::Events(read) if read.is_empty() => break,
                    Read::Events(read) => {
                        for event in read {
                            cursor = event.seq;
                            backlog.extend(self.event_message(&event));
                        }
                    }
                    Read::Gap => {
                        let snapshot = self.journal.snapshot();
                        backlog.extend(self.snapshot_messages(&snapshot));
                        cursor = snapshot.seq;
                    }
                }
            }
            if sent.is_empty() && backlog.is_empty() {
                self.acknowledge(epoch, cursor);
            }
            tokio::select! {
                _ = stop.cancelled() => {
                    // A clean goodbye: the Last Will is for crashes; say `offline` ourselves.
                    let _ = client.try_publish(status_topic(&self.settings), QoS::AtLeastOnce, true, "offline");
                    let _ = client.try_disconnect();
                    let _ = tokio::time::timeout(GOODBYE, async {
                        while let Some(Ok(_)) = events.recv().await {}
                    }).await;
                    return Ok(());
                }
                changed = head.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                _ = sleep_until(reannounce.due()) => {
                    if reannounce.take(tokio::time::Instant::now()) {
                        info!("mqtt: Home Assistant started; announcing the devices again");
                        backlog.extend(self.discovery_messages());
                    }
                }
                event = events.recv() => {
                    let mut next = event;
                    // The cursor file is written once per batch of PUBACKs, not per message.
                    let mut newest_acked = None;
                    let connected = loop {
                        match next {
                            Some(Ok(MqttEvent::Incoming(Packet::Publish(publish)))) => {
                                if self.is_birth(&publish) {
                                    reannounce.birth(tokio::time::Instant::now());
                                } else if let Some(topic) = self.stale_config(&publish) {
                                    info!(%topic, "mqtt: clearing the Home Assistant entity of a device or point no longer in the site");
                                    backlog.push_back(Message { topic, payload: Vec::new(), delivers: None });
                                } else if self.is_config(&publish) {
                                    // One of ours, current (our own publish coming back).
                                } else {
                                    self.command(&client, &publish);
                                }
                                if let Err(e) = client.try_ack(&publish) {
                                    // The connection is ending; the broker delivers it again.
                                    warn!(error = %e, "mqtt: cannot acknowledge a message");
                                }
                            }
                            Some(Ok(MqttEvent::Incoming(Packet::PubAck(_)))) => {
                                if let Some(Some(seq)) = sent.pop_front() {
                                    newest_acked = Some(seq);
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => break Err(e),
                            None => break Ok(false),
                        }
                        match events.try_recv() {
                            Ok(more) => next = Some(more),
                            Err(_) => break Ok(true),
                        }
                    };
                    if let Some(seq) = newest_acked {
                        self.acknowledge(epoch, seq);
                    }
                    match connected {
                        Ok(true) => {}
                        Ok(false) => return Ok(()),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    fn acknowledge(&mut self, epoch: u64, seq: u64) {
        let acked = Acked {
            epoch,
            seq,
            session: self.session,
        };
        if self.acked == Some(acked) {
            return;
        }
        self.acked = Some(acked);
        let Some(path) = &self.cursor_file else {
            return;
        };
        if let Err(e) = acked.save(path) {
            warn!(path = %path.display(), error = %e, "mqtt: cannot keep the acknowledged seq; after a restart the bridge republishes the whole state");
        }
    }

    /// Whether `publish` is Home Assistant's birth message.
    fn is_birth(&self, publish: &Publish) -> bool {
        self.settings.discovery.as_ref().is_some_and(|prefix| {
            publish.topic == discovery::birth_topic(prefix).as_bytes()
                && &publish.payload[..] == b"online"
        })
    }

    /// Whether `publish` is on one of this node's discovery config topics.
    fn is_config(&self, publish: &Publish) -> bool {
        let Some(discovery_prefix) = &self.settings.discovery else {
            return false;
        };
        let filter = discovery::own_configs_filter(discovery_prefix, &self.settings.prefix);
        std::str::from_utf8(&publish.topic).is_ok_and(|topic| topic_matches(&filter, topic))
    }

    /// The topic of a retained discovery config of this node that no current device or
    /// point announces (a removed device, a renamed point), to be cleared with an empty
    /// retained message, which also removes the entity from Home Assistant.
    fn stale_config(&self, publish: &Publish) -> Option<String> {
        if publish.payload.is_empty() || !self.is_config(publish) {
            return None;
        }
        let topic = std::str::from_utf8(&publish.topic).ok()?;
        (!self.announcements.iter().any(|a| a.topic == topic)).then(|| topic.to_string())
    }

    fn discovery_messages(&self) -> impl Iterator<Item = Message> + '_ {
        self.announcements.iter().map(|a| Message {
            topic: a.topic.clone(),
            payload: a.payload.to_string().into_bytes(),
            delivers: None,
        })
    }

    /// A command from `<prefix>/<device>/<command>/set`: JSON args through the router as
    /// the configured identity; the outcome goes to the request's MQTT 5 response topic
    /// with its correlation data, or else to `.../<command>/result`.
    fn command(&self, client: &AsyncClient, publish: &Publish) {
        let Some(identity) = &self.settings.commands else {
            return;
        };
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            return;
        };
        let Some((device, command)) = command_topic(&self.settings.prefix, topic) else {
            return;
        };
        let id = command_id(self.session, publish);
        let requested = publish.properties.as_ref();
        let correlation = requested.and_then(|p| p.correlation_data.clone());
        let default_topic = format!("{}/{device}/{command}/result", self.settings.prefix);
        let response_topic = requested.and_then(|p| p.response_topic.clone());
        let refused_response_topic = response_topic.as_deref().and_then(|t| {
            response_topic_problem(&self.settings.prefix, t).or_else(|| {
                let discovery = self.settings.discovery.as_deref()?;
                response_topic_problem(discovery, t)
            })
        });
        let result_topic = match response_topic {
            Some(t) if refused_response_topic.is_none() => t,
            _ => default_topic,
        };
        let client_name = format!("mqtt:{}", self.settings.client_id);
        let report = {
            let client = client.clone();
            let id = id.clone();
            move |outcome: Result<(), Failure>| {
                let payload = match outcome {
                    Ok(()) => json!({ "id": id, "ok": true }),
                    Err(failure) => json!({ "id": id, "ok": false, "error": failure }),
                };
                if let Err(e) = client.try_publish_with_properties(
                    result_topic,
                    QoS::AtLeastOnce,
                    false,
                    payload.to_string(),
                    result_properties(correlation),
                ) {
                    warn!(error = %e, "mqtt: cannot publish a command's result");
                }
            }
        };
        if let Some(why) = refused_response_topic {
            return report(Err(Failure::new(ErrorCode::InvalidMessage, why)));
        }
        let args = if publish.payload.iter().all(u8::is_ascii_whitespace) {
            Ok(Map::new())
        } else {
            serde_json::from_slice::<Map<String, Value>>(&publish.payload)
        };
        let args = match args {
            Ok(args) => args,
            Err(e) => {
                return report(Err(Failure::new(
                    ErrorCode::InvalidMessage,
                    format!(
                        "the payload of {topic} must be a JSON object of the command's arguments (or empty): {e}"
                    ),
                )));
            }
        };
        let origin = Origin {
            session: client_name.clone(),
            token: Some(identity.name.clone()),
            scopes: identity.scopes.clone(),
            peer: Some(format!("{}:{}", self.settings.host, self.settings.port)),
            web_origin: None,
        };
        let key = CommandKey {
            owner: identity.name.clone(),
            client: client_name,
            id,
        };
        match self.hub.router.submit(&origin, key, device, command, args) {
            Err(failure) => report(Err(failure)),
            Ok(Submission::Accepted(watch) | Submission::Duplicate(watch)) => {
                tokio::spawn(async move { report(router::outcome(watch).await) });
            }
        }
    }

    fn topic(&self, device: &str, point: &str) -> String {
        format!("{}/{device}/{point}", self.settings.prefix)
    }

    fn availability(&self, device: &str, online: bool, delivers: Option<u64>) -> Message {
        Message {
            topic: self.topic(device, "availability"),
            payload: if online {
                &b"online"[..]
            } else {
                &b"offline"[..]
            }
            .to_vec(),
            delivers,
        }
    }

    fn point(&self, device: &str, point: &str, envelope: Value, delivers: Option<u64>) -> Message {
        Message {
            topic: self.topic(device, point),
            payload: serde_json::to_vec(&envelope).expect("json serializes"),
            delivers,
        }
    }

    /// The message for one journal event, if it is published.
    fn event_message(&self, event: &Event) -> Option<Message> {
        if !self.settings.publishes(&event.device, &event.point) {
            return None;
        }
        let frame: Value = serde_json::from_str(event.frame.as_str()).ok()?;
        let value = frame.get("value").cloned().unwrap_or(Value::Null);
        let delivers = Some(event.seq);
        if event.point == ONLINE {
            return Some(self.availability(&event.device, value == Value::Bool(true), delivers));
        }
        let envelope = json!({ "value": value, "seq": event.seq, "ts": frame.get("ts") });
        Some(self.point(&event.device, &event.point, envelope, delivers))
    }

    /// Every published point's current value; the last message delivers the snapshot's seq.
    fn snapshot_messages(&self, snapshot: &Snapshot) -> Vec<Message> {
        let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let mut messages = Vec::new();
        for (device, state) in &snapshot.devices {
            if !self.settings.publishes(device, ONLINE) {
                continue;
            }
            messages.push(self.availability(device, state.online, None));
            let error = json!({ "value": state.error, "seq": snapshot.seq, "ts": ts });
            messages.push(self.point(device, ERROR, error, None));
            for (point, value) in &state.points {
                if !self.settings.publishes(device, point) {
                    continue;
                }
                let mut envelope = json!({ "value": value, "seq": snapshot.seq, "ts": ts });
                if state.stale.contains(point) {
                    envelope["stale"] = Value::Bool(true);
                }
                messages.push(self.point(device, point, envelope, None));
            }
        }
        if let Some(last) = messages.last_mut() {
            last.delivers = Some(snapshot.seq);
        }
        messages
    }
}

/// Why a request's response topic is refused, if it is: one inside the bridge's own topics
/// under `prefix` (other than a `.../result`) would put an outcome where dashboards read a
/// device's state, or Home Assistant its discovery configs.
fn response_topic_problem(prefix: &str, topic: &str) -> Option<String> {
    let inside = topic
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    (inside && !topic.ends_with("/result")).then(|| {
        format!(
            "the response topic {topic} is among this gateway's own topics ({prefix}/...); \
             give one outside them (e.g. replies/<your client>), or none to get the outcome on \
             <prefix>/<device>/<command>/result"
        )
    })
}

/// A result's properties: the request's correlation data, and that the payload is JSON.
fn result_properties(correlation: Option<Bytes>) -> PublishProperties {
    PublishProperties {
        correlation_data: correlation,
        content_type: Some("application/json".into()),
        ..PublishProperties::default()
    }
}

/// Sleeps until `due`, or forever without one.
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// `(device, command)` of `<prefix>/<device>/<command>/set`.
fn command_topic<'a>(prefix: &str, topic: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = topic
        .strip_prefix(prefix)?
        .strip_prefix('/')?
        .strip_suffix("/set")?;
    let (device, command) = rest.split_once('/')?;
    (!device.is_empty() && !command.is_empty() && !command.contains('/'))
        .then_some((device, command))
}

/// The id a command gets: the same for a QoS 1 redelivery of one message (same session,
/// packet id and content), so the router's dedupe runs it once, even across a gateway
/// restart (its ledger is durable); different for every other message.
fn command_id(session: u64, publish: &Publish) -> String {
    if publish.qos == QoS::AtMostOnce {
        // Never redelivered, and without a packet id to tell two apart.
        return format!("{session}-q0-{:016x}", fastrand::u64(..));
    }
    let mut digest = Sha256::new();
    digest.update(&publish.topic);
    digest.update([0]);
    digest.update(&publish.payload);
    let digest = digest.finalize();
    format!("{session}-{}-{}", publish.pkid, hex::encode(&digest[..8]))
}

/// Whether MQTT `topic` matches `filter`, where `+` stands for one level (the only
/// wildcard the bridge's own filters use besides a final `#`).
fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for part in filter.split('/') {
        if part == "#" {
            return true;
        }
        match levels.next() {
            Some(level) if part == "+" || part == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(pkid: u16, payload: &str) -> Publish {
        let mut publish = Publish::new(
            "avgate/r/proj/power/set",
            QoS::AtLeastOnce,
            payload.to_string(),
            None,
        );
        publish.pkid = pkid;
        publish
    }

    #[test]
    fn a_redelivery_gets_the_same_id_and_anything_else_another() {
        let first = command_id(1, &publish(7, r#"{"on":true}"#));
        let mut again = publish(7, r#"{"on":true}"#);
        again.dup = true;
        assert_eq!(command_id(1, &again), first);
        assert_ne!(command_id(1, &publish(8, r#"{"on":true}"#)), first);
        assert_ne!(command_id(1, &publish(7, r#"{"on":false}"#)), first);
        // A new broker session numbers its packets from the start again.
        assert_ne!(command_id(2, &publish(7, r#"{"on":true}"#)), first);
    }

    #[test]
    fn a_response_topic_among_the_state_topics_is_refused() {
        assert_eq!(response_topic_problem("a/b", "replies/desk-3"), None);
        assert_eq!(response_topic_problem("a/b", "a/b/proj/power/result"), None);
        assert_eq!(response_topic_problem("a/b", "a/bc/proj/power"), None);
        let why = response_topic_problem("a/b", "a/b/proj/power").unwrap();
        assert!(
            why.contains("a/b/proj/power is among this gateway's own topics"),
            "{why}"
        );
        assert!(response_topic_problem("a/b", "a/b/status").is_some());
    }

    #[test]
    fn command_topics_name_a_device_and_a_command() {
        assert_eq!(
            command_topic("a/b", "a/b/proj/power/set"),
            Some(("proj", "power"))
        );
        assert_eq!(command_topic("a/b", "a/b/proj/power"), None);
        assert_eq!(command_topic("a/b", "a/bc/proj/power/set"), None);
        assert_eq!(command_topic("a/b", "a/b/proj/x/power/set"), None);
    }

    #[test]
    fn plus_matches_one_level_and_hash_the_rest() {
        let filter = "homeassistant/+/avgate_room-101/+/config";
        assert!(topic_matches(
            filter,
            "homeassistant/switch/avgate_room-101/proj_power/config"
        ));
        assert!(!topic_matches(
            filter,
            "homeassistant/switch/avgate_room-102/proj_power/config"
        ));
        assert!(!topic_matches(
            filter,
            "homeassistant/switch/avgate_room-101/proj_power/config/x"
        ));
        assert!(!topic_matches(
            filter,
            "homeassistant/switch/avgate_room-101/config"
        ));
        assert!(topic_matches("a/#", "a/b/c"));
    }
}
