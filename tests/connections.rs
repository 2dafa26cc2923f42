//! Connections as the gateway accepts them: caps, deadlines for the silent, TCP_NODELAY.

mod common;

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The gateway's end of the connection whose client end is `client`: the gateway runs in
/// this process, so its socket is one of our descriptors.
fn server_side_nodelay(gateway: SocketAddr, client: SocketAddr) -> Option<bool> {
    for entry in std::fs::read_dir("/proc/self/fd").ok()? {
        let Ok(fd) = entry.ok()?.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: the descriptor is open (listed just now) and only borrowed for the
        // duration of these getsockopt calls; a race with a close makes them fail, which
        // is skipped.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&borrowed);
        let (Ok(local), Ok(peer)) = (socket.local_addr(), socket.peer_addr()) else {
            continue;
        };
        if local.as_socket() == Some(gateway) && peer.as_socket() == Some(client) {
            return socket.tcp_nodelay().ok();
        }
    }
    None
}

#[tokio::test]
async fn panel_connections_have_nagle_off() {
    let gateway = gateway(&site_toml(&[], "")).await;
    let addr = gateway.local_addr();
    let stream = TcpStream::connect(addr).await.unwrap();
    let client = stream.local_addr().unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
        .await
        .expect("WebSocket upgrade");
    ws.send(r#"{"type":"hello"}"#.into()).await.unwrap();
    let welcome = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap();
    assert!(
        welcome
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .contains("welcome")
    );
    assert_eq!(
        server_side_nodelay(addr, client),
        Some(true),
        "the gateway's socket for this panel must have TCP_NODELAY set"
    );
    gateway.shutdown().await;
}

/// Reads until the gateway closes the socket (end of file or reset).
async fn closed_by_gateway(mut socket: TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(DEADLINE, socket.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn thousands_of_silent_sockets_are_capped_and_closed_while_a_panel_and_device_carry_on() {
    let projector = projector(None).await;
    let site = site_toml(
        &[("proj", projector.local_addr(), None)],
        "max_connections = 500\nmax_connections_per_peer = 500\nheader_read_timeout = \"1s\"\n",
    );
    let gateway = gateway(&site).await;
    let addr = gateway.local_addr();
    let (mut witness, _) = Panel::hello(&gateway, json!({"type": "hello"})).await;
    witness.until_set("proj", "power").await;

    // 3,000 sockets that connect and never say anything.
    let mut silent = Vec::new();
    for _ in 0..3_000 {
        silent.push(TcpStream::connect(addr).await.expect("the kernel accepts"));
    }

    // The panel and the device carry on while they are all open.
    witness
        .command(json!("w1"), "proj", "power", json!({"on": true}))
        .await;
    let result = witness.result(json!("w1")).await;
    assert_eq!(result["ok"], true, "{result}");
    witness.until_event("proj", "power", json!("on")).await;

    // Those beyond the cap are closed at once, the rest when their header deadline
    // passes: none stays open.
    let closed = futures_util::future::join_all(silent.into_iter().map(closed_by_gateway)).await;
    let still_open = closed.iter().filter(|c| !**c).count();
    assert_eq!(still_open, 0, "silent sockets the gateway left open");

    // With them gone, HTTP and new panels are served again.
    let health = http_get(addr, "/healthz").await;
    assert!(health.contains("\"panels\":1"), "{health}");
    let (mut late, _) = Panel::hello(&gateway, json!({"type": "hello"})).await;
    late.until_event("proj", "power", json!("on")).await;
    witness
        .command(json!("w2"), "proj", "power", json!({"on": false}))
        .await;
    assert_eq!(witness.result(json!("w2")).await["ok"], true);
    gateway.shutdown().await;
}

#[tokio::test]
async fn one_peer_cannot_take_every_slot_and_silent_websockets_are_closed() {
    let site = site_toml(
        &[],
        "max_connections = 50\nmax_connections_per_peer = 5\nhello_timeout = \"1s\"\n",
    );
    let gateway = gateway(&site).await;
    let addr = gateway.local_addr();
    // Five open WebSockets that never say hello hold this peer's five slots...
    let mut quiet = Vec::new();
    for _ in 0..5 {
        quiet.push(Panel::connect(&gateway).await);
    }
    // ...so a sixth connection from the same address is closed before anything is read.
    let sixth = TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_gateway(sixth).await, "over the per-peer cap");
    // Each silent panel is told why and let go after the hello deadline.
    for mut panel in quiet {
        let error = panel.next().await;
        assert_eq!(error["code"], "hello_required", "{error}");
        assert!(panel.try_next(DEADLINE).await.is_none(), "closed");
    }
    // Their slots are free again.
    let (_panel, welcome) = Panel::hello(&gateway, json!({"type": "hello"})).await;
    assert_eq!(welcome["resumed"], false);
    gateway.shutdown().await;
}
