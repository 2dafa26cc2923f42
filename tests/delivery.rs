//! Delivery under load: many panels resuming at once, and a panel that stops reading.
//!
//! Events here are recorded straight into the gateway's journal, so thousands arrive in
//! moments; what is tested is the hub's side: cursors, replay, isolation.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn quiet_site() -> String {
    // A device that is never reached: the events come from the test itself. Panels that
    // take no data for two ping intervals are dropped: long enough for fifty test panels
    // parsing megabytes each on a loaded machine.
    "[server]\nlisten = \"127.0.0.1:0\"\nping_interval = \"3s\"\n[journal]\ndurable = false\n\
     [devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"127.0.0.1:9\"\nrequired = false\n"
        .to_string()
}

#[tokio::test]
async fn two_hundred_panels_resuming_at_once_each_get_exactly_what_they_missed() {
    let gw = gateway(&quiet_site()).await;
    let (_, welcome) = Panel::hello(&gw, json!({"type": "hello"})).await;
    let epoch = welcome["epoch"].as_u64().unwrap();
    let start = gw.journal().head();
    for i in 0..400 {
        gw.journal().record("proj", "lamp_hours", json!(i));
    }
    let head = gw.journal().head();
    assert_eq!(head, start + 400);

    let panels = (0..200u64).map(|i| {
        let addr = gw.local_addr();
        // Each panel last saw a different point of the stream.
        let last = start + i * 2;
        tokio::spawn(async move {
            let hello = json!({"type": "hello", "resume": {"epoch": epoch, "seq": last}});
            let (mut panel, welcome) = Panel::hello_to(addr, hello).await;
            assert_eq!(welcome["resumed"], true, "{welcome}");
            panel.at = Some(last);
            while panel.at.unwrap() < head {
                let message = panel.next().await;
                assert_eq!(
                    message["type"], "event",
                    "only the missed events: {message}"
                );
            }
            (last, panel.seqs)
        })
    });
    for task in futures_util::future::join_all(panels).await {
        let (last, seqs) = task.expect("panel task");
        // Contiguity is checked as they arrive; here: exactly the missed range.
        assert_eq!(seqs, ((last + 1)..=head).collect::<Vec<_>>());
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panel_that_never_reads_does_not_slow_fifty_others_and_is_dropped() {
    let gw = gateway(&quiet_site()).await;
    let url = format!("ws://{}/ws", gw.local_addr());

    // The slow panel says hello, then never reads another byte.
    let (mut slow, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    slow.send(Message::Text(json!({"type": "hello"}).to_string().into()))
        .await
        .unwrap();

    let mut panels = Vec::new();
    for _ in 0..50 {
        let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
        assert_eq!(panel.next().await["type"], "snapshot");
        panels.push(panel);
    }

    // 3000 events of 2 KiB: far more than the slow panel's socket buffers hold.
    let big = "x".repeat(2048);
    let start = gw.journal().head();
    for i in 0..3000 {
        gw.journal()
            .record("proj", "name", json!(format!("{big}{i}")));
    }
    let head = gw.journal().head();

    let readers = panels.into_iter().map(|mut panel| {
        tokio::spawn(async move {
            while panel.at.unwrap() < head {
                panel.next().await;
            }
            panel.seqs.len()
        })
    });
    for received in futures_util::future::join_all(readers).await {
        assert_eq!(
            received.unwrap() as u64,
            head - start,
            "every reading panel gets every event"
        );
    }

    // The reading panels are done and gone. The slow one never answered a ping: within two
    // ping intervals the gateway lets it go too, holding nothing more for it.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let health: serde_json::Value =
            serde_json::from_str(&http_get(gw.local_addr(), "/healthz").await).unwrap();
        if health["panels"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow panel is still held: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What it finds when it finally reads: the events that fit in the socket buffers, then
    // the end of the connection.
    let mut closed = false;
    while let Ok(next) = tokio::time::timeout(DEADLINE, slow.next()).await {
        if matches!(next, Some(Ok(Message::Close(_))) | Some(Err(_)) | None) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the gateway closed the slow panel's connection");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_panel_behind_the_window_gets_a_lagged_snapshot() {
    let site = quiet_site().replace("durable = false", "durable = false\nwindow = 50");
    let gw = gateway(&site).await;
    let (_, welcome) = Panel::hello(&gw, json!({"type": "hello"})).await;
    let epoch = welcome["epoch"].as_u64().unwrap();
    let stale_point = gw.journal().head();
    for i in 0..200 {
        gw.journal().record("proj", "lamp_hours", json!(i));
    }
    let hello = json!({"type": "hello", "resume": {"epoch": epoch, "seq": stale_point}});
    let (mut panel, welcome) = Panel::hello(&gw, hello).await;
    assert_eq!(
        welcome["resumed"], false,
        "its place left the window: {welcome}"
    );
    let snapshot = panel.next().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["devices"]["proj"]["points"]["lamp_hours"], 199);
    gw.shutdown().await;
}
