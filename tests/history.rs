//! `GET /api/history`: past events from the durable journal, filtered and paged.

mod common;

use common::{Panel, gateway, http_get, http_request, projector, site_toml};
use serde_json::{Value, json};

async fn history(addr: std::net::SocketAddr, query: &str) -> Value {
    serde_json::from_str(&http_get(addr, &format!("/api/history?{query}")).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_projector_went_offline_is_answered_from_the_journal() {
    let sim = projector(None).await;
    let other = projector(None).await;
    let data = tempfile::tempdir().unwrap();
    let journal = format!(
        "[journal]\ndurable = true\ndata_dir = \"{}\"\n",
        data.path().display()
    );
    let gw = gateway(&site_toml(
        &[
            ("proj", sim.local_addr(), None),
            ("other", other.local_addr(), None),
        ],
        &journal,
    ))
    .await;
    let addr = gw.local_addr();
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("proj", "online", json!(true)).await;
    panel.until_event("other", "online", json!(true)).await;
    let started = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    sim.shutdown().await;
    // Panels see only what is on disk, so once the panel has it, history has it too.
    panel.until_event("proj", "online", json!(false)).await;

    let page = history(addr, "device=proj&point=online").await;
    let values: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["value"])
        .collect();
    assert_eq!(
        values,
        [&json!(false), &json!(true)],
        "newest first: {page}"
    );
    assert_eq!(page["next_before"], Value::Null);
    let offline = &page["events"][0];
    assert_eq!(offline["device"], "proj");
    assert!(
        offline["ts"].as_str().unwrap() >= started.as_str(),
        "{offline}"
    );

    // Only this device's events, and every point of it without `point`.
    let all = history(addr, "device=proj").await;
    let events = all["events"].as_array().unwrap();
    assert!(events.iter().all(|e| e["device"] == "proj"), "{all}");
    assert!(events.iter().any(|e| e["point"] == "power"), "{all}");
    assert!(
        events
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() > w[1]["seq"].as_u64())
    );

    // One at a time: each page says where the next starts, and they add up.
    let mut paged = Vec::new();
    let mut query = "device=proj&limit=1".to_string();
    loop {
        let page = history(addr, &query).await;
        paged.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_u64() {
            Some(before) => query = format!("device=proj&limit=1&before={before}"),
            None => break,
        }
    }
    assert_eq!(&paged, events);

    // A time window after everything is empty; one before the offline excludes it.
    let empty = history(addr, "device=proj&since=2999-01-01T00:00:00Z").await;
    assert_eq!(empty["events"], json!([]));
    let before_start = history(addr, "device=proj&until=2000-01-01T00:00:00Z").await;
    assert_eq!(before_start["events"], json!([]));

    let (status, body) = http_request(addr, "/api/history?since=yesterday", None).await;
    assert!(
        status.contains("400") && body.contains("RFC 3339"),
        "{status} {body}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn without_a_durable_journal_history_says_what_to_change() {
    let sim = projector(None).await;
    let gw = gateway(&site_toml(
        &[("proj", sim.local_addr(), None)],
        common::IN_MEMORY,
    ))
    .await;
    let (status, body) = http_request(gw.local_addr(), "/api/history?device=proj", None).await;
    assert!(
        status.contains("409") && body.contains("durable = true"),
        "{status} {body}"
    );
    // The status page reads it per device.
    let page = http_get(gw.local_addr(), "/status").await;
    assert!(
        page.contains("/api/history?device="),
        "the status page asks for history"
    );
    gw.shutdown().await;
}
