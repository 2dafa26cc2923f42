//! Samsung MDC displays through the gateway: over TCP 1515, and several displays sharing
//! one RS-232 line (a pseudo-terminal here) as separate devices.

mod common;

use std::path::Path;

use avgate_drivers::mdc::simulator::{self as sim, Fault};
use common::*;
use serde_json::json;

async fn displays(ids: &[u8]) -> sim::Handle {
    sim::start(sim::Config {
        display_ids: ids.to_vec(),
        ..sim::Config::default()
    })
    .await
    .expect("display simulator starts")
}

const TOP: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n";

/// A display on `link` (`address = ...` or `serial_port = ...`) with MDC id `id`.
fn display(name: &str, link: &str, id: u8) -> String {
    format!(
        "[devices.{name}]\nprofile = \"samsung-mdc-display\"\n{link}\n\
         [devices.{name}.overrides]\noptions = {{ display_id = {id} }}\n\
         command_timeout = \"500ms\"\npoll = {{ status = \"200ms\" }}\n"
    )
}

#[tokio::test]
async fn a_display_on_tcp_is_driven_and_its_remote_control_changes_show() {
    let tv = displays(&[1]).await;
    let site = format!(
        "{TOP}{}",
        display("tv", &format!("address = \"{}\"", tv.local_addr()), 1)
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("tv", "online", json!(true)).await;
    assert_eq!(panel.until_set("tv", "power").await, "off");

    panel
        .command(json!(1), "tv", "power", json!({"on": true}))
        .await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    panel.until_event("tv", "power", json!("on")).await;
    panel
        .command(json!(2), "tv", "volume", json!({"level": 40}))
        .await;
    assert_eq!(panel.result(json!(2)).await["ok"], true);
    panel
        .command(json!(3), "tv", "input", json!({"source": "hdmi2"}))
        .await;
    assert_eq!(panel.result(json!(3)).await["ok"], true);
    panel.until_event("tv", "input", json!("hdmi2")).await;
    let state = tv.state(1).unwrap();
    assert!(state.power);
    assert_eq!((state.volume, state.input), (40, 0x23));

    // Someone uses the remote: the status poll brings it in.
    tv.set_volume(1, 12).unwrap();
    panel.until_event("tv", "volume", json!(12)).await;

    // A refusal is the device's error, with its code, and the device stays online.
    tv.inject(Fault::Nak(0x02));
    panel
        .command(json!(4), "tv", "volume", json!({"level": 50}))
        .await;
    let result = panel.result(json!(4)).await;
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["error"]["code"], "device_error", "{result}");
    assert_eq!(*panel.known("tv", "online"), json!(true));
    gw.shutdown().await;
}

#[tokio::test]
async fn displays_sharing_one_rs232_line_are_separate_devices() {
    // Displays 1 and 2 are on the line; display 3 is configured but not there.
    let line = displays(&[1, 2]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = dir.path().join("usb-FTDI_FT232R-if00-port0");
    std::os::unix::fs::symlink(line.serve_pty().unwrap(), &port).unwrap();
    let link = format!("serial_port = \"{}\"", Path::new(&port).display());
    let site = format!(
        "{TOP}{}{}{}",
        display("tv-left", &link, 1),
        display("tv-right", &link, 2),
        display("tv-missing", &link, 3)
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("tv-left", "online", json!(true)).await;
    panel.until_event("tv-right", "online", json!(true)).await;

    panel
        .command(json!("l"), "tv-left", "volume", json!({"level": 70}))
        .await;
    panel
        .command(json!("r"), "tv-right", "mute", json!({"on": true}))
        .await;
    assert_eq!(panel.result(json!("l")).await["ok"], true);
    assert_eq!(panel.result(json!("r")).await["ok"], true);
    let (left, right) = (line.state(1).unwrap(), line.state(2).unwrap());
    assert_eq!(
        (left.volume, left.mute),
        (70, false),
        "only the left one's volume"
    );
    assert!(right.mute && right.volume != 70, "only the right one muted");

    // The absent display goes offline on its own; the others keep working meanwhile.
    panel
        .until_event("tv-missing", "online", json!(false))
        .await;
    line.set_volume(2, 9).unwrap();
    panel.until_event("tv-right", "volume", json!(9)).await;
    panel
        .command(json!("l2"), "tv-left", "power", json!({"on": true}))
        .await;
    assert_eq!(panel.result(json!("l2")).await["ok"], true);
    assert!(line.state(1).unwrap().power);
    assert_eq!(*panel.known("tv-left", "online"), json!(true));
    gw.shutdown().await;
}

#[tokio::test]
async fn commands_sent_back_to_back_wait_only_for_the_pacing() {
    let tv = displays(&[1]).await;
    // No polls to wake the link: only the commands and the pacing between them.
    let site = format!(
        "{TOP}[devices.tv]\nprofile = \"samsung-mdc-display\"\naddress = \"{}\"\n\
         [devices.tv.overrides]\npacing = \"100ms\"\npoll = {{ status = \"1h\" }}\n",
        tv.local_addr()
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("tv", "online", json!(true)).await;
    for level in [10, 20, 30] {
        panel
            .command(json!(level), "tv", "volume", json!({"level": level}))
            .await;
    }
    // A volume still waiting when a newer one arrives is replaced by it (conflation);
    // the last one always runs.
    for level in [10, 20] {
        let result = panel.result(json!(level)).await;
        assert!(
            result["ok"] == true || result["error"]["code"] == "superseded",
            "{result}"
        );
    }
    assert_eq!(panel.result(json!(30)).await["ok"], true);
    assert_eq!(tv.state(1).unwrap().volume, 30);
    gw.shutdown().await;
}
