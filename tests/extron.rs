//! An Extron SIS switcher through the gateway: routes, volume, front-panel changes, errors.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use avgate_drivers::extron::simulator::{self as sim, Fault, TieKind};
use common::*;
use serde_json::json;

async fn switcher(password: Option<&str>) -> sim::Handle {
    sim::start(sim::Config {
        password: password.map(str::to_string),
        ..sim::Config::default()
    })
    .await
    .expect("switcher simulator starts")
}

fn site(addr: SocketAddr, password: Option<&str>) -> String {
    let password = password.map_or(String::new(), |p| format!("password = \"{p}\"\n"));
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n\
         [devices.sw]\nprofile = \"extron-sis-switcher\"\naddress = \"{addr}\"\n{password}\
         [devices.sw.overrides]\ncommand_timeout = \"1s\"\n"
    )
}

#[tokio::test]
async fn routes_volume_and_mute_round_trip_through_the_gateway() {
    let sw = switcher(Some("extron")).await;
    let gw = gateway(&site(sw.local_addr(), Some("extron"))).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("sw", "online", json!(true)).await;

    panel
        .command(json!(1), "sw", "route", json!({"input": 3, "output": 2}))
        .await;
    panel.until_event("sw", "route.2", json!(3)).await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    assert_eq!(sw.state().outputs[1].video, 3);
    assert_eq!(sw.state().outputs[1].audio, 3);

    panel
        .command(
            json!(2),
            "sw",
            "route",
            json!({"input": 5, "output": 2, "kind": "audio"}),
        )
        .await;
    panel.until_event("sw", "audio_route.2", json!(5)).await;
    assert_eq!(panel.result(json!(2)).await["ok"], true);
    assert_eq!(
        *panel.known("sw", "route.2"),
        json!(3),
        "the video tie is untouched"
    );

    panel
        .command(json!(3), "sw", "volume", json!({"level": 40, "output": 1}))
        .await;
    panel.until_event("sw", "volume.1", json!(40)).await;
    assert_eq!(panel.result(json!(3)).await["ok"], true);

    panel
        .command(json!(4), "sw", "mute", json!({"audio": true, "output": 1}))
        .await;
    panel.until_event("sw", "audio_mute.1", json!(true)).await;
    assert_eq!(panel.result(json!(4)).await["ok"], true);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_front_panel_tie_reaches_the_panel_without_a_poll() {
    let sw = switcher(None).await;
    let gw = gateway(&site(sw.local_addr(), None)).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    // Routes are polled once a minute: this event can only come from verbose mode.
    panel.until_event("sw", "route.4", json!(0)).await;
    sw.tie(6, 4, TieKind::All).unwrap();
    panel.until_event("sw", "route.4", json!(6)).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn switcher_errors_get_their_codes_and_the_link_survives() {
    let sw = switcher(None).await;
    let gw = gateway(&site(sw.local_addr(), None)).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    // The start-up reads end with `info`; after that the link is idle and the next
    // command on the wire is ours.
    panel.until_event("sw", "firmware", json!("1.05")).await;

    // The profile's schema stops what it can before the wire...
    panel
        .command(json!("a"), "sw", "route", json!({"input": 1, "output": 0}))
        .await;
    assert_eq!(
        panel.result(json!("a")).await["error"]["code"],
        "invalid_args"
    );
    // ...and the unit's own E-codes map to named errors.
    sw.inject(Fault::ErrorNextCommand("E13"));
    panel
        .command(
            json!("b"),
            "sw",
            "volume",
            json!({"level": 10, "output": 1}),
        )
        .await;
    let result = panel.result(json!("b")).await;
    assert_eq!(result["error"]["code"], "invalid_args", "{result}");
    assert!(
        result["error"]["message"].as_str().unwrap().contains("E13"),
        "{result}"
    );

    panel
        .command(json!("c"), "sw", "route", json!({"input": 2, "output": 1}))
        .await;
    assert_eq!(panel.result(json!("c")).await["ok"], true);
    gw.shutdown().await;
}

#[test]
fn the_profiles_ship_valid() {
    for profile in ["extron-sis-switcher", "extron-in1608"] {
        let text = format!("[devices.x]\nprofile = \"{profile}\"\naddress = \"192.0.2.1\"\n");
        avgate::config::parse_site(Path::new("site.toml"), &text)
            .unwrap_or_else(|e| panic!("{profile}: {e}"));
    }
}

#[tokio::test]
async fn a_single_output_model_reports_its_plain_points() {
    let sw = sim::start(sim::Config {
        inputs: 8,
        outputs: 1,
        volume: 70,
        ..sim::Config::default()
    })
    .await
    .expect("switcher simulator starts");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n\
         [devices.in1608]\nprofile = \"extron-in1608\"\naddress = \"{}\"\n",
        sw.local_addr()
    );
    let gw = gateway(&toml).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("in1608", "volume", json!(70)).await;
    assert_eq!(panel.until_set("in1608", "audio_mute").await, json!(false));
    panel
        .command(json!("v"), "in1608", "volume", json!({"level": 35}))
        .await;
    assert_eq!(panel.result(json!("v")).await["ok"], true);
    panel.until_event("in1608", "volume", json!(35)).await;
    gw.shutdown().await;
}
