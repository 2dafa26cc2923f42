//! A big site: a snapshot far over one message's limit is delivered whole, in parts.
//! Its own file, so its two thousand link tasks do not slow the other delivery tests.

mod common;

use common::*;
use serde_json::json;

/// A site of `devices` projectors nobody can reach (offline, each with its error).
fn big_site(devices: usize) -> String {
    let mut site =
        "[server]\nlisten = \"127.0.0.1:0\"\nping_interval = \"5s\"\n[journal]\ndurable = false\n"
            .to_string();
    for i in 0..devices {
        site += &format!(
            "[devices.proj-{i:04}]\nprofile = \"pjlink-projector\"\naddress = \"127.0.0.1:9\"\n"
        );
    }
    site
}

#[tokio::test]
async fn a_two_thousand_device_site_is_delivered_whole_in_parts() {
    let gw = gateway(&big_site(2_000)).await;
    // Every device has a name, so the snapshot is well over the 256 KiB a single
    // message could carry.
    for i in 0..2_000 {
        let name = format!("Projector {i:04} in the north wing, ceiling mount, lens shift A");
        gw.journal()
            .record(&format!("proj-{i:04}"), "name", json!(name.repeat(2)));
    }
    let state = http_get(gw.local_addr(), "/api/state").await;
    assert!(
        state.len() > 256 * 1024,
        "snapshot of {} bytes",
        state.len()
    );

    let (mut panel, welcome) = Panel::hello(&gw, json!({"type": "hello"})).await;
    let first = panel.next().await;
    assert_eq!(first["type"], "snapshot");
    assert_eq!(first["part"], 1, "a big snapshot comes in parts");
    let parts = first["parts"].as_u64().unwrap();
    for part in 2..=parts {
        let next = panel.next().await;
        assert_eq!(
            (next["type"].as_str(), next["part"].as_u64()),
            (Some("snapshot"), Some(part))
        );
        assert_eq!(next["seq"], welcome["seq"]);
    }
    let devices = panel.devices.as_object().unwrap();
    assert_eq!(devices.len(), 2_000);
    let name = panel
        .known("proj-1999", "name")
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with("Projector 1999"), "{name}");

    // The session goes on: events follow the snapshot.
    gw.journal().record("proj-0007", "lamp_hours", json!(77));
    panel
        .until_event("proj-0007", "lamp_hours", json!(77))
        .await;

    // A panel that watches part of the site gets that part.
    let (mut subscribed, _) =
        Panel::hello(&gw, json!({"type": "hello", "subscribe": ["proj-00*"]})).await;
    subscribed.filtered = true;
    subscribed
        .until("its whole snapshot", |m| {
            m["type"] == "snapshot" && m.get("part").is_none_or(|part| *part == m["parts"])
        })
        .await;
    let watched = subscribed.devices.as_object().unwrap();
    assert_eq!(
        watched.len(),
        100,
        "{:?}",
        watched.keys().collect::<Vec<_>>()
    );
    gw.shutdown().await;
}
