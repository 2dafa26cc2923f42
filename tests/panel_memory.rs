//! What an idle panel costs the gateway, measured on the real binary: its resident memory
//! before and after a thousand panels connect and take their snapshot. The panels live in
//! this process, so only the gateway's memory is counted.

mod common;

use common::DEADLINE;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const PANELS: usize = 1_000;

/// Above this an idle panel costs too much (socket.io measured 17 KB a panel here; this
/// debug build measures about 7.6 KiB, the release build 7.0-7.4 KiB in the bench).
const IDLE_PANEL_LIMIT_KIB: f64 = 10.0;

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the gateway runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A site of `devices` projectors nobody can reach: each is offline with its error, so
/// the snapshot grows with the site.
fn site(devices: usize) -> String {
    let mut site = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections_per_peer = {}\n[journal]\ndurable = false\n",
        PANELS * 2
    );
    for i in 0..devices {
        site += &format!(
            "[devices.proj-{i:04}]\nprofile = \"pjlink-projector\"\naddress = \"127.0.0.1:9\"\n"
        );
    }
    site
}

/// Starts the binary on `site` and returns it with the address it printed.
async fn start(dir: &std::path::Path, site: &str) -> (Child, std::net::SocketAddr) {
    let path = dir.join("site.toml");
    std::fs::write(&path, site).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_avgate"))
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the avgate binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("started in time")
        .unwrap()
        .expect("a line saying where it listens");
    // "avgate listening on http://127.0.0.1:PORT/ (panels: ...)"
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A panel that says hello and reads its whole snapshot; returns it and the snapshot's
/// size in bytes.
async fn panel(addr: std::net::SocketAddr) -> (Socket, usize) {
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{addr}/ws"),
        Some(config),
        false,
    )
    .await
    .expect("connects");
    ws.send(Message::Text(r#"{"type":"hello"}"#.into()))
        .await
        .unwrap();
    let mut snapshot_bytes = 0;
    loop {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("readable");
        let Message::Text(text) = message else {
            continue;
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        if value["type"] == "snapshot" {
            snapshot_bytes += text.len();
            if value["part"] == value["parts"] {
                return (ws, snapshot_bytes);
            }
        }
    }
}

/// Resident memory per idle panel, in KiB, and the snapshot's size.
async fn per_panel(devices: usize) -> (f64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start(dir.path(), &site(devices)).await;
    let pid = child.id().unwrap();
    // One panel first, so what the first one starts (buffers, the shared snapshot) is
    // not counted against the thousand.
    let (first, _) = panel(addr).await;
    let before = resident_kib(pid);
    let mut panels = Vec::with_capacity(PANELS);
    let mut snapshot = 0;
    for _ in 0..PANELS {
        let (ws, bytes) = panel(addr).await;
        snapshot = bytes;
        panels.push(ws);
    }
    // Every panel has read its whole snapshot, so the gateway has written it: all idle.
    let after = resident_kib(pid);
    drop((first, panels, child));
    (
        (after.saturating_sub(before)) as f64 / PANELS as f64,
        snapshot,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_panel_costs_little_whatever_the_size_of_the_site() {
    let (small, small_snapshot) = per_panel(2).await;
    let (big, big_snapshot) = per_panel(2_000).await;
    println!(
        "idle panel: {small:.1} KiB with a {small_snapshot}-byte snapshot, {big:.1} KiB with a {big_snapshot}-byte snapshot ({PANELS} panels)"
    );
    assert!(
        big_snapshot > 100 * 1024,
        "a big site: {big_snapshot} bytes"
    );
    assert!(
        small < IDLE_PANEL_LIMIT_KIB,
        "{small:.1} KiB per idle panel"
    );
    // The snapshot is shared and sent in parts: after it, a panel holds at most what its
    // write buffer grew to for one part, not the snapshot (measured: +0.5 KiB).
    assert!(
        big < small + 4.0,
        "{big:.1} KiB per panel with a big site vs {small:.1} with a small one"
    );
}
