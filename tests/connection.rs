//! A device whose firmware closes the connection after every reply is declared
//! `connection = "per_request"` in its profile or in the site's overrides, and driven
//! through the gateway without going offline: the gateway connects for each request, and
//! a command the device carried out before closing (its read-back cut off) succeeds.

mod common;

use std::path::Path;
use std::time::Duration;

use avgate::config::parse_site;
use avgate::config::profile::Connection;
use avgate_drivers::pjlink::simulator as sim;
use common::*;
use serde_json::json;

fn site(address: &str, overrides: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n\
         [devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"{address}\"\n\
         [devices.proj.overrides]\ncommand_timeout = \"1s\"\nconnect_timeout = \"1s\"\n{overrides}"
    )
}

#[test]
fn the_connection_mode_is_a_site_override_checked_at_its_line() {
    let parsed = parse_site(
        Path::new("site.toml"),
        &site("127.0.0.1:4352", "connection = \"per_request\"\n"),
    )
    .expect("valid site");
    assert_eq!(parsed.devices[0].connection, Connection::PerRequest);
    let default = parse_site(Path::new("site.toml"), &site("127.0.0.1:4352", "")).unwrap();
    assert_eq!(default.devices[0].connection, Connection::Persistent);

    let error = parse_site(
        Path::new("site.toml"),
        &site("127.0.0.1:4352", "connection = \"sometimes\"\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(error.starts_with("site.toml:11:"), "{error}");
    assert!(error.contains("per_request"), "{error}");
}

#[tokio::test]
async fn a_projector_that_closes_after_every_reply_shows_its_values_and_stays_online() {
    let proj = sim::start(sim::Config {
        close_after_reply: true,
        input: "31".into(),
        ..sim::Config::default()
    })
    .await
    .expect("simulator starts");
    let gw = gateway(&site(
        &proj.local_addr().to_string(),
        "connection = \"per_request\"\npoll = { power = \"200ms\", input = \"300ms\" }\n",
    ))
    .await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("proj", "online", json!(true)).await;
    panel.until_set("proj", "input").await;
    panel.until_set("proj", "power").await;

    // Every request had a connection of its own, and not one close was taken for a failure.
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Some(message) = panel
        .try_next(watch_until.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        assert!(
            !(message["point"] == "online" && message["value"] == false),
            "went offline: {message}"
        );
    }
    assert!(proj.connection_count() > 3, "{}", proj.connection_count());
    panel
        .command(json!("on"), "proj", "power", json!({"on": true}))
        .await;
    assert_eq!(panel.result(json!("on")).await["ok"], true);
    assert_ne!(proj.state().power, sim::PowerState::Off, "carried out");
}
