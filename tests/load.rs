//! The load generator through the gateway, as a site file uses it: a burst arrives whole
//! and in order, `set` reads back before its result, `rate` changes the rate.

mod common;

use std::net::SocketAddr;

use avgate_drivers::load::simulator as sim;
use common::*;
use serde_json::json;

fn site(addr: SocketAddr) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n\
         [devices.load]\nprofile = \"load-generator\"\naddress = \"{addr}\"\n"
    )
}

fn generator(points: u32) -> sim::Handle {
    sim::start(sim::Config {
        points,
        ..sim::Config::default()
    })
    .expect("load generator starts")
}

/// A panel on a gateway whose load generator is online and serving its connection (a
/// `rate` round trip proves the generator took the connection, so no event is missed).
async fn ready(load: &sim::Handle) -> (TestGateway, Panel) {
    let gw = gateway(&site(load.local_addr())).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("load", "online", json!(true)).await;
    panel
        .command(json!("quiet"), "load", "rate", json!({"per_second": 0}))
        .await;
    assert_eq!(panel.result(json!("quiet")).await["ok"], true);
    (gw, panel)
}

fn is_load_value(message: &serde_json::Value) -> bool {
    message["type"] == "event"
        && message["point"]
            .as_str()
            .is_some_and(|p| p.starts_with("value."))
}

#[tokio::test]
async fn a_burst_arrives_whole_and_in_order_on_the_points_in_turn() {
    let load = generator(4);
    let (gw, mut panel) = ready(&load).await;

    let values = load.publish(5_000, 300).await;
    for expected in values {
        let event = panel.until("a load value", is_load_value).await;
        assert_eq!(event["value"], json!(expected));
        assert_eq!(event["point"], format!("value.{}", (expected - 1) % 4));
    }
    gw.shutdown().await;
    load.shutdown().await;
}

#[tokio::test]
async fn set_reads_back_before_its_result_and_a_bad_point_says_which_exist() {
    let load = generator(2);
    let (gw, mut panel) = ready(&load).await;

    panel
        .command(json!(1), "load", "set", json!({"point": 1, "value": -5}))
        .await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    assert_eq!(panel.known("load", "value.1"), &json!(-5));

    panel
        .command(json!(2), "load", "set", json!({"point": 2, "value": 1}))
        .await;
    let result = panel.result(json!(2)).await;
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["error"]["code"], "device_error", "{result}");
    let message = result["error"]["message"].as_str().unwrap();
    assert!(message.contains("value.0 to value.1"), "{message}");
    gw.shutdown().await;
    load.shutdown().await;
}

#[tokio::test]
async fn a_panel_starts_the_events_with_the_rate_command() {
    let load = generator(1);
    let (gw, mut panel) = ready(&load).await;

    panel
        .command(json!(1), "load", "rate", json!({"per_second": 200}))
        .await;
    panel.until_event("load", "rate", json!(200)).await;
    let first = panel.until("a load value", is_load_value).await;
    let second = panel.until("a load value", is_load_value).await;
    assert_eq!(
        second["value"].as_u64(),
        first["value"].as_u64().map(|v| v + 1)
    );
    gw.shutdown().await;
    load.shutdown().await;
}
