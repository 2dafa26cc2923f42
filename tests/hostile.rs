//! A hostile panel cannot grow the gateway: what it sends is bounded in size and number,
//! and one that never reads stops being read. Measured as this process's resident memory
//! (the gateway runs in it), so this file holds one test: nothing else allocates meanwhile.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// Growth allowed per scenario. The gateway's own bound for one panel is a few hundred
/// KiB (ARCHITECTURE.md); the rest is slack for the allocator and the test's own client.
const ALLOWED_GROWTH_KIB: u64 = 24 * 1024;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr) -> Socket {
    connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("connects")
        .0
}

async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("readable");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Sends `message(i)` for i in 0..count, stopping early if a send stays blocked for a
/// second: the gateway stopped reading (backpressure). Returns how many went out.
async fn flood<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    count: usize,
    message: impl Fn(usize) -> String,
) -> usize
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for i in 0..count {
        let send = ws.send(Message::Text(message(i).into()));
        match tokio::time::timeout(Duration::from_secs(1), send).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("send failed after {i}: {e}"),
            Err(_) => return i,
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_panel_cannot_grow_the_gateway() {
    let projector = projector(None).await;
    let gateway = gateway(&site_toml(&[("proj", projector.local_addr(), None)], "")).await;
    let addr = gateway.local_addr();
    let (mut witness, _) = Panel::hello(&gateway, json!({"type": "hello"})).await;
    witness.until_set("proj", "power").await;
    // The witness keeps reading (and so answering pings) while the hostile panel works,
    // then sends a command of its own.
    let (finished, mut hostile_done) = tokio::sync::oneshot::channel::<()>();
    let witness = tokio::spawn(async move {
        while hostile_done.try_recv().is_err() {
            witness.try_next(Duration::from_millis(100)).await;
        }
        witness
            .command(json!("w1"), "proj", "power", json!({"on": true}))
            .await;
        witness.result(json!("w1")).await
    });
    let mut report = Vec::new();

    // 1. A thousand refused commands, each with 60 KB of arguments.
    let start = resident_kib();
    let mut ws = connect(addr).await;
    ws.send(Message::Text(json!({"type": "hello"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    let big = "x".repeat(60_000);
    let mut refused = 0;
    for i in 0..1_000 {
        let command = json!({"type": "command", "id": i, "device": "proj", "command": "no-such", "args": {"text": big}});
        ws.send(Message::Text(command.to_string().into()))
            .await
            .unwrap();
        // Read the answer, skipping the snapshot and events.
        loop {
            let reply = next_json(&mut ws).await;
            if reply["id"] == i {
                assert!(
                    reply["type"] == "error" || reply["ok"] == false,
                    "refused: {reply}"
                );
                refused += 1;
                break;
            }
        }
    }
    assert_eq!(refused, 1_000);
    let grown = resident_kib().saturating_sub(start);
    report.push(format!(
        "1,000 refused commands with 60 KB args: +{grown} KiB"
    ));
    drop(ws);

    // 2. A 60 KB client name, then 5,000 commands.
    let start = resident_kib();
    let mut ws = connect(addr).await;
    let long_client = "c".repeat(60_000);
    ws.send(Message::Text(
        json!({"type": "hello", "client": long_client})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let first = next_json(&mut ws).await;
    let sent = flood(&mut ws, 5_000, |i| {
        json!({"type": "command", "id": format!("n{i}"), "device": "nope", "command": "power", "args": {"on": true}}).to_string()
    })
    .await;
    // Everything sent gets an answer; read them all so the gateway has done its work.
    let mut answered = 0;
    while answered < sent {
        let reply = next_json(&mut ws).await;
        if reply["type"] != "event" && reply["type"] != "snapshot" && reply["type"] != "welcome" {
            answered += 1;
        }
    }
    let grown = resident_kib().saturating_sub(start);
    report.push(format!(
        "60 KB client name ({}) + {sent} commands: +{grown} KiB",
        first["type"]
    ));
    drop(ws);

    // 3. A panel that sends commands as fast as it can and never reads. The first one
    // also fills the gateway-wide audit log to its 10,000 entries; the second, with the
    // first still connected, shows what one more such panel costs.
    let mut never_reading = Vec::new();
    let mut sent = 0;
    for which in ["first", "second"] {
        let start = resident_kib();
        let (ws, taken) = never_reading_panel(addr).await;
        let grown = resident_kib().saturating_sub(start);
        report.push(format!(
            "{which} never-reading panel, {taken} commands sent before the gateway stopped reading: +{grown} KiB"
        ));
        never_reading.push(ws);
        sent = sent.max(taken);
    }

    // The others never noticed.
    finished.send(()).unwrap();
    let result = witness.await.unwrap();
    println!("{}", report.join("\n"));
    assert!(
        result["ok"] == true || result["error"]["code"] == "device_busy",
        "{result}"
    );
    assert!(
        sent < 200_000,
        "the gateway kept reading a panel that never reads"
    );
    for line in &report {
        let grown: u64 = line
            .rsplit_once('+')
            .and_then(|(_, kib)| kib.trim_end_matches(" KiB").parse().ok())
            .unwrap();
        assert!(grown < ALLOWED_GROWTH_KIB, "{line}");
    }
    drop(never_reading);
    gateway.shutdown().await;
}

/// Connects a panel (with a small receive buffer, so the kernel does not hold megabytes
/// of replies for it) that sends commands as fast as it can and never reads. Returns it
/// and how many commands went out before its sends blocked.
async fn never_reading_panel(
    addr: std::net::SocketAddr,
) -> (
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    usize,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
        .await
        .expect("connects");
    ws.send(Message::Text(json!({"type": "hello"}).to_string().into()))
        .await
        .unwrap();
    // Commands the router refuses, so the command ledger (which remembers every accepted
    // id for the dedupe window, whoever sent it) stays out of the measurement.
    let sent = flood(&mut ws, 200_000, |i| {
        json!({"type": "command", "id": i, "device": "proj", "command": "launch", "args": {"on": i % 2 == 0}}).to_string()
    })
    .await;
    (ws, sent)
}
