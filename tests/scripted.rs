//! The scripted families through the gateway: each built-in scripted profile against the
//! simulator generated from the same file, over TCP, with a real panel.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use avgate::config::Profile;
use avgate_drivers::kit::Served;
use avgate_drivers::scripted::{self, Model};
use common::*;
use serde_json::json;

/// The simulator of built-in profile `id`, on a free loopback port.
fn simulator(id: &str) -> Served<Model> {
    let profile = Profile::find(id, &[])
        .expect("profile is built in")
        .expect("profile is valid");
    let script = scripted::from_options(&profile.options).expect("profile compiles");
    scripted::serve(Arc::new(script), "127.0.0.1:0".parse().unwrap()).expect("simulator starts")
}

fn site(id: &str, profile: &str, addr: SocketAddr, polls: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n\
         [devices.{id}]\nprofile = \"{profile}\"\naddress = \"{addr}\"\n\
         [devices.{id}.overrides]\ncommand_timeout = \"2s\"\n{polls}"
    )
}

#[tokio::test]
async fn kramer_routes_mutes_and_reports_front_panel_switches() {
    let sim = simulator("kramer-protocol-3000");
    let gw = gateway(&site(
        "matrix",
        "kramer-protocol-3000",
        sim.local_addr(),
        "",
    ))
    .await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("matrix", "online", json!(true)).await;
    // The routes poll reads every output once connected.
    panel.until_event("matrix", "route.4", json!(4)).await;

    panel
        .command(
            json!(1),
            "matrix",
            "route",
            json!({"input": 3, "output": 2}),
        )
        .await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    panel.until_event("matrix", "route.2", json!(3)).await;
    assert_eq!(sim.with(|m| m.state["route.2"].clone()), json!(3));

    panel
        .command(
            json!(2),
            "matrix",
            "mute",
            json!({"output": 1, "audio": true}),
        )
        .await;
    assert_eq!(panel.result(json!(2)).await["ok"], true);
    panel
        .until_event("matrix", "audio_mute.1", json!(true))
        .await;

    // A switch on the front panel arrives without a poll (the next is 30 s away).
    sim.change(|m| m.set_point("route.1", json!(2)));
    panel.until_event("matrix", "route.1", json!(2)).await;

    panel
        .command(
            json!(3),
            "matrix",
            "route",
            json!({"input": 3, "output": 99}),
        )
        .await;
    let result = panel.result(json!(3)).await;
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["error"]["code"], "invalid_args", "{result}");
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn shure_gain_mute_and_names_round_trip() {
    let sim = simulator("shure-ulxd-receiver");
    let gw = gateway(&site("mics", "shure-ulxd-receiver", sim.local_addr(), "")).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("mics", "online", json!(true)).await;
    panel.until_event("mics", "name.2", json!("Podium")).await;
    panel.until_event("mics", "battery.3", json!(255)).await;

    panel
        .command(json!(1), "mics", "gain", json!({"channel": 1, "gain": -6}))
        .await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    panel.until_event("mics", "gain.1", json!(-6)).await;
    assert_eq!(sim.with(|m| m.state["gain.1"].clone()), json!(-6));

    panel
        .command(
            json!(2),
            "mics",
            "mute",
            json!({"channel": 4, "mute": true}),
        )
        .await;
    assert_eq!(panel.result(json!(2)).await["ok"], true);
    panel.until_event("mics", "mute.4", json!(true)).await;

    // Someone turns a knob on the receiver: its REP reaches the panel unpolled.
    sim.change(|m| m.set_point("gain.2", json!(30)));
    panel.until_event("mics", "gain.2", json!(30)).await;
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn tesira_levels_follow_subscriptions() {
    let sim = simulator("biamp-tesira");
    let gw = gateway(&site("dsp", "biamp-tesira", sim.local_addr(), "")).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("dsp", "online", json!(true)).await;
    panel.until_event("dsp", "level.2", json!(-10)).await;

    panel
        .command(
            json!(1),
            "dsp",
            "level",
            json!({"channel": 1, "level": -25.5}),
        )
        .await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    panel.until_event("dsp", "level.1", json!(-25.5)).await;
    panel
        .command(json!(2), "dsp", "preset", json!({"preset": 1001}))
        .await;
    assert_eq!(panel.result(json!(2)).await["ok"], true);

    // A wall control mutes channel 2: the subscription publishes it.
    sim.change(|m| m.set_point("mute.2", json!(true)));
    panel.until_event("dsp", "mute.2", json!(true)).await;
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn nec_power_input_and_volume_in_checked_frames() {
    let sim = simulator("nec-display");
    // The profile's 600 ms pacing is the display's rule; the simulator needs none.
    let gw = gateway(&format!(
        "{}pacing = \"0ms\"\n",
        site("wall", "nec-display", sim.local_addr(), "")
    ))
    .await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("wall", "online", json!(true)).await;
    panel.until_event("wall", "input", json!("hdmi1")).await;

    panel
        .command(json!(1), "wall", "input", json!({"input": "displayport"}))
        .await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    panel
        .until_event("wall", "input", json!("displayport"))
        .await;
    panel
        .command(json!(2), "wall", "power", json!({"power": "off"}))
        .await;
    assert_eq!(panel.result(json!(2)).await["ok"], true);
    panel.until_event("wall", "power", json!("off")).await;
    panel
        .command(json!(3), "wall", "volume", json!({"volume": 64}))
        .await;
    assert_eq!(panel.result(json!(3)).await["ok"], true);
    panel.until_event("wall", "volume", json!(64)).await;
    assert_eq!(sim.with(|m| m.state["volume"].clone()), json!(64));
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn videohub_routes_and_labels_from_its_dump_and_pushes() {
    let sim = simulator("blackmagic-videohub");
    let gw = gateway(&site("router", "blackmagic-videohub", sim.local_addr(), "")).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("router", "online", json!(true)).await;
    // Nothing polls labels: they come from the dump the router sends on connect.
    panel
        .until_event("router", "input_label.3", json!("Lectern PC"))
        .await;
    panel.until_event("router", "route.4", json!(4)).await;

    panel
        .command(
            json!(1),
            "router",
            "route",
            json!({"input": 3, "output": 2}),
        )
        .await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    panel.until_event("router", "route.2", json!(3)).await;
    panel
        .command(
            json!(2),
            "router",
            "output_label",
            json!({"output": 1, "label": "Main screen"}),
        )
        .await;
    assert_eq!(panel.result(json!(2)).await["ok"], true);
    panel
        .until_event("router", "output_label.1", json!("Main screen"))
        .await;

    sim.change(|m| m.set_point("route.1", json!(4)));
    panel.until_event("router", "route.1", json!(4)).await;
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn the_venue_demo_room_brings_every_scripted_family_online() {
    let venue = avgate::demo_venue::VenueRoom::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .expect("venue starts");
    let gw = avgate::Gateway::start(venue.site.clone())
        .await
        .expect("gateway starts");
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    let commands = [
        ("matrix", "route", json!({"input": 2, "output": 1})),
        ("mics", "mute", json!({"channel": 1, "mute": true})),
        ("dsp", "level", json!({"channel": 1, "level": -12})),
        ("wall", "input", json!({"input": "hdmi2"})),
        ("router", "route", json!({"input": 1, "output": 4})),
        ("audio", "set_gain", json!({"value": -6})),
    ];
    assert_eq!(venue.site.devices.len(), commands.len());
    for (n, (device, command, args)) in commands.into_iter().enumerate() {
        panel.until_event(device, "online", json!(true)).await;
        panel.command(json!(n), device, command, args).await;
        let result = panel.result(json!(n)).await;
        assert_eq!(result["ok"], true, "{device} {command}: {result}");
    }
    gw.shutdown().await;
    venue.shutdown().await;
}

/// The worked example in device-profiles/README.md, as written there.
fn readme_example() -> String {
    let readme = include_str!("../device-profiles/README.md");
    let start = readme
        .find("### A worked example")
        .expect("the guide has its example");
    let body = &readme[start..];
    let open = body.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let close = body[open..].find("```").expect("the block ends");
    body[open..open + close].to_string()
}

#[tokio::test]
async fn the_guides_worked_example_runs_against_its_simulator() {
    let text = readme_example();
    let profile = Profile::parse("denon-avr", std::path::Path::new("denon-avr.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(profile.commands.len(), 4);
    let script = scripted::from_options(&profile.options).unwrap();
    let sim = scripted::serve(Arc::new(script), "127.0.0.1:0".parse().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("denon-avr.toml"), &text).unwrap();
    let gw = gateway(&format!(
        "profile_dirs = [{}]\n{}",
        toml::Value::String(dir.path().display().to_string()),
        site("avr", "denon-avr", sim.local_addr(), "")
    ))
    .await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("avr", "volume", json!(40)).await;
    panel
        .command(json!(1), "avr", "input", json!({"input": "bluray"}))
        .await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    panel.until_event("avr", "input", json!("bluray")).await;
    panel
        .command(json!(2), "avr", "volume", json!({"volume": 55}))
        .await;
    assert_eq!(panel.result(json!(2)).await["ok"], true);
    sim.change(|m| m.set_point("power", json!("off")));
    panel.until_event("avr", "power", json!("off")).await;
    gw.shutdown().await;
    sim.shutdown().await;
}

#[test]
fn profile_errors_point_at_the_line_and_column() {
    let text = readme_example()
        .replace("send = \"MV{volume:d2}\"", "send = \"MV{level:d2}\"")
        .replace("\"{mute}\" }", "\"{mute}\", \"muted\" = \"{mute}\" }")
        .replace("every = \"30s\"", "every = \"30ms\"");
    let errors = Profile::parse("denon-avr", std::path::Path::new("denon-avr.toml"), &text)
        .unwrap_err()
        .to_string();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(
        errors.contains(&format!("denon-avr.toml:{}:", line_of("MV{level:d2}")))
            && errors.contains("field `{level}` is not one of the command's args (volume)"),
        "{errors}"
    );
    assert!(
        errors.contains("sets point `muted`, which [options.points] does not declare"),
        "{errors}"
    );
    let broken = text.replace("kind = \"line\"", "kind = \"lines\"");
    let errors = Profile::parse("denon-avr", std::path::Path::new("denon-avr.toml"), &broken)
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains(&format!("denon-avr.toml:{}:", line_of("kind = \"line\""))),
        "{errors}"
    );
}
