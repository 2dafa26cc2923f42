//! Test harness: a real gateway on 127.0.0.1:0, simulators, and a WebSocket panel.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use avgate::Gateway;
use avgate::config::parse_site;
use avgate_drivers::pjlink::simulator as sim;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// Upper bound for anything a test waits for; hitting it means the test failed.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub async fn projector(password: Option<&str>) -> sim::Handle {
    projector_at("127.0.0.1:0".parse().unwrap(), password).await
}

pub async fn projector_at(listen: SocketAddr, password: Option<&str>) -> sim::Handle {
    sim::start(sim::Config {
        listen,
        password: password.map(str::to_string),
        warm_up: Duration::from_millis(300),
        cool_down: Duration::from_millis(300),
        input: "31".into(),
        ..sim::Config::default()
    })
    .await
    .expect("simulator starts")
}

/// `extra` for [`site_toml`] that keeps the journal in memory; without it a site keeps
/// its journal on disk (the default users run), in a data directory of the test's own.
pub const IN_MEMORY: &str = "[journal]\ndurable = false\n";

/// The journal modes a test that depends on ordering runs in: on disk, then in memory.
pub const BOTH_MODES: [&str; 2] = ["", IN_MEMORY];

/// A site with one PJLink projector per `(id, address, password)`, polled quickly.
pub fn site_toml(devices: &[(&str, SocketAddr, Option<&str>)], extra: &str) -> String {
    let mut text = format!("[server]\nlisten = \"127.0.0.1:0\"\nping_interval = \"5s\"\n{extra}\n");
    for (id, addr, password) in devices {
        text += &format!("[devices.{id}]\nprofile = \"pjlink-projector\"\naddress = \"{addr}\"\n");
        if let Some(pw) = password {
            text += &format!("password = \"{pw}\"\n");
        }
        text += &format!(
            "[devices.{id}.overrides]\ncommand_timeout = \"1s\"\nconnect_timeout = \"1s\"\npoll = {{ power = \"200ms\", input = \"300ms\" }}\n"
        );
    }
    text
}

/// A gateway running `toml`, as if the site file were in a fresh temporary directory: a
/// durable journal (the default) lives there and goes away with the gateway.
pub async fn gateway(toml: &str) -> TestGateway {
    // RUST_LOG=avgate=debug shows what the gateway did when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("temp dir");
    let site = parse_site(&dir.path().join("test-site.toml"), toml)
        .unwrap_or_else(|e| panic!("bad test site: {e}"));
    let gateway = Gateway::start(site).await.expect("gateway starts");
    TestGateway { gateway, dir }
}

/// A running gateway and the directory its data lives in.
pub struct TestGateway {
    gateway: Gateway,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for TestGateway {
    type Target = Gateway;
    fn deref(&self) -> &Gateway {
        &self.gateway
    }
}

impl TestGateway {
    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
    }

    /// The data directory (where `journal.redb` is, for a durable site).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

pub struct Panel {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Every event seq received, in order.
    pub seqs: Vec<u64>,
    /// The seq this panel is at (from a snapshot or its last event): the next event must
    /// be exactly one more.
    pub at: Option<u64>,
    /// The devices as this panel knows them: the last snapshot with every event since
    /// applied, in the snapshot's shape.
    pub devices: Value,
    /// A panel with a subscription sees only some seqs: each must still be above the
    /// last, and a `position` moves it on.
    pub filtered: bool,
}

impl Panel {
    pub async fn connect(gateway: &Gateway) -> Panel {
        Panel::connect_to(gateway.local_addr()).await
    }

    /// Connects to a gateway at `addr` (one running in another process, say).
    pub async fn connect_to(addr: SocketAddr) -> Panel {
        let url = format!("ws://{addr}/ws");
        let (ws, _) = tokio::time::timeout(DEADLINE, connect_async(url))
            .await
            .expect("connect in time")
            .expect("connects");
        Panel {
            ws,
            seqs: Vec::new(),
            at: None,
            devices: json!({}),
            filtered: false,
        }
    }

    /// Connects and says hello; returns the welcome.
    pub async fn hello(gateway: &Gateway, hello: Value) -> (Panel, Value) {
        Panel::hello_to(gateway.local_addr(), hello).await
    }

    pub async fn hello_to(addr: SocketAddr, hello: Value) -> (Panel, Value) {
        let mut panel = Panel::connect_to(addr).await;
        panel.send(hello).await;
        let welcome = panel.next().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (panel, welcome)
    }

    pub async fn send(&mut self, message: Value) {
        self.ws
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// The next JSON message; panics after the deadline.
    pub async fn next(&mut self) -> Value {
        self.try_next(DEADLINE)
            .await
            .expect("a message before the deadline")
    }

    /// The next JSON message within `wait`, or None (also when the socket closed).
    pub async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
                .ok()?;
            match message {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).expect("server sends JSON");
                    if value["type"] == "snapshot" {
                        self.at = value["seq"].as_u64();
                        match value["part"].as_u64() {
                            None => self.devices = value["devices"].clone(),
                            Some(part) => self.merge_part(part, &value),
                        }
                    }
                    if value["type"] == "position" {
                        let seq = value["seq"].as_u64().expect("position seq");
                        if let Some(at) = self.at {
                            assert!(seq > at, "position {seq} must move on from {at}");
                        }
                        self.at = Some(seq);
                    }
                    if value["type"] == "event" {
                        let seq = value["seq"].as_u64().expect("event seq");
                        match self.at {
                            Some(at) if self.filtered => {
                                assert!(
                                    seq > at,
                                    "event {seq} after {at}: repeated or out of order"
                                )
                            }
                            Some(at) => assert_eq!(
                                seq,
                                at + 1,
                                "event sequence must have no gap and no repeat"
                            ),
                            None => {}
                        }
                        self.at = Some(seq);
                        self.seqs.push(seq);
                        let device = value["device"].as_str().expect("event device");
                        let point = value["point"].as_str().expect("event point");
                        let state = &mut self.devices[device];
                        match point {
                            "online" | "error" => state[point] = value["value"].clone(),
                            _ => state["points"][point] = value["value"].clone(),
                        }
                    }
                    return Some(value);
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Applies one part of a snapshot sent in parts: the first replaces what the panel
    /// knew; a device in several parts has its points (and stale list) spread over them.
    fn merge_part(&mut self, part: u64, message: &Value) {
        if part == 1 {
            self.devices = json!({});
        }
        let parts = message["parts"].as_u64().expect("parts");
        assert!((1..=parts).contains(&part), "part {part} of {parts}");
        for (id, share) in message["devices"].as_object().expect("devices") {
            let device = &mut self.devices[id];
            device["online"] = share["online"].clone();
            if let Some(error) = share.get("error") {
                device["error"] = error.clone();
            }
            if device["points"].is_null() {
                device["points"] = json!({});
            }
            for (point, value) in share["points"].as_object().expect("points") {
                device["points"][point] = value.clone();
            }
            for point in share["stale"].as_array().into_iter().flatten() {
                let mut stale = device["stale"].as_array().cloned().unwrap_or_default();
                stale.push(point.clone());
                device["stale"] = Value::Array(stale);
            }
        }
    }

    /// Reads until a message matches; returns it.
    pub async fn until(&mut self, what: &str, mut matches: impl FnMut(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_next(left).await {
                Some(m) if matches(&m) => return m,
                Some(_) => continue,
                None => panic!("no {what} before the deadline"),
            }
        }
    }

    /// What this panel knows of `device`'s `point` (`online` and `error` included).
    pub fn known(&self, device: &str, point: &str) -> &Value {
        match point {
            "online" | "error" => &self.devices[device][point],
            _ => &self.devices[device]["points"][point],
        }
    }

    /// Waits until this panel knows some value for `device`'s `point` (from its snapshot
    /// or an event) and returns it.
    pub async fn until_set(&mut self, device: &str, point: &str) -> Value {
        let what = format!("a value for {device}/{point}");
        while self.known(device, point).is_null() {
            self.until(&what, |m| m["type"] == "event" || m["type"] == "snapshot")
                .await;
        }
        self.known(device, point).clone()
    }

    /// Waits until this panel knows `device`'s `point` is `value`, from its snapshot or
    /// an event (the change may have happened before this panel connected).
    pub async fn until_event(&mut self, device: &str, point: &str, value: Value) {
        let what = format!("{device}/{point} = {value}");
        while *self.known(device, point) != value {
            self.until(&what, |m| m["type"] == "event" || m["type"] == "snapshot")
                .await;
        }
    }

    pub async fn command(&mut self, id: Value, device: &str, command: &str, args: Value) {
        self.send(json!({"type": "command", "id": id, "device": device, "command": command, "args": args})).await;
    }

    /// Waits for the `result` of command `id`.
    pub async fn result(&mut self, id: Value) -> Value {
        let what = format!("result of {id}");
        self.until(&what, |m| m["type"] == "result" && m["id"] == id)
            .await
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A bare HTTP/1.1 GET (with an optional bearer token), to keep an HTTP client crate out of
/// the dependencies. Returns the status line and the body.
pub async fn http_request(addr: SocketAddr, path: &str, token: Option<&str>) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("gateway reachable");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// GET `path`; the response must be 200. Returns the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let (status, body) = http_request(addr, path, None).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}: {body}");
    body
}

/// Everything the process logs, as the text format writes it, for tests that read the log.
/// Such a test installs the process's one subscriber, so it sits alone in its file.
#[derive(Clone, Default)]
pub struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Installs a text subscriber at `filter` writing here; returns the log.
    pub fn install(filter: &str) -> CapturedLog {
        let captured = CapturedLog::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("the log is UTF-8")
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
