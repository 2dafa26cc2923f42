//! The real binary under a low open-file limit (as a service gets, LimitNOFILE): a flood of
//! silent connections takes panel slots, never the descriptors a device link needs.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

/// The open-file limit the gateway runs under (soft and hard).
const OPEN_FILES: usize = 200;

#[tokio::test]
async fn silent_connections_never_starve_a_device_reconnect() {
    let projector = projector(None).await;
    let device = projector.local_addr();
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site.toml");
    let text = site_toml(&[("proj", device, None)], "").replace(
        "ping_interval = \"5s\"",
        "ping_interval = \"5s\"\nmax_connections_per_peer = 4096\nheader_read_timeout = \"3s\"",
    );
    std::fs::write(&site, text).unwrap();
    let log = dir.path().join("gateway.log");
    let script = format!("ulimit -n {OPEN_FILES} && exec \"$0\" run --config \"$1\" 2>\"$2\"",);
    let mut child = Command::new("sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_avgate")])
        .arg(&site)
        .arg(&log)
        .env("RUST_LOG", "avgate=info")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sh runs the gateway");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(DEADLINE, stdout.next_line())
        .await
        .expect("started in time")
        .unwrap()
        .unwrap_or_else(|| panic!("no start line: {}", std::fs::read_to_string(&log).unwrap()));
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));

    let (mut witness, _) = Panel::hello_to(addr, json!({"type": "hello"})).await;
    witness.until_event("proj", "online", json!(true)).await;

    // Five times more silent connections than the gateway has descriptors.
    let mut silent = Vec::new();
    for _ in 0..OPEN_FILES * 5 {
        silent.push(TcpStream::connect(addr).await.expect("the kernel accepts"));
    }

    // The projector restarts: reconnecting takes a descriptor, and there is one.
    projector.shutdown().await;
    witness.until_event("proj", "online", json!(false)).await;
    let _back = projector_at(device, None).await;
    witness.until_event("proj", "online", json!(true)).await;
    witness
        .command(json!("w1"), "proj", "power", json!({"on": true}))
        .await;
    assert_eq!(witness.result(json!("w1")).await["ok"], true);

    // None of the silent ones stays: those over the cap at once, the rest at the header
    // deadline.
    for mut socket in silent {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(DEADLINE, socket.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "a silent socket stayed open"
        );
    }
    let health = http_get(addr, "/healthz").await;
    assert!(health.contains("\"panels\":1"), "{health}");

    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("max_connections lowered")
            && log.contains("connection refused: [server] max_connections reached"),
        "the log says what the limit did:\n{log}"
    );
    assert!(!log.contains("Too many open files"), "{log}");
    child.kill().await.unwrap();
}
