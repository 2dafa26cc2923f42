//! RS-232 through a pseudo-terminal: the switcher simulator on one end, the gateway on the
//! other, reached through a stable symlink as integrators should configure
//! (/dev/serial/by-id/...). Ptys ignore baud rate and timing: these tests check framing,
//! state and the unplug/replug cycle, not line speed.

mod common;

use std::path::Path;

use avgate_drivers::extron::simulator::{self as sim, TieKind};
use common::*;
use serde_json::json;

fn site(port: &Path) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n\
         [devices.sw]\nprofile = \"extron-sis-switcher\"\nserial_port = \"{}\"\n\
         [devices.sw.overrides]\ncommand_timeout = \"1s\"\nserial = {{ baud = 38400 }}\n",
        port.display()
    )
}

/// Points the stable name at the pty a "USB adapter" currently has.
fn plug(link: &Path, pty: &str) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(pty, link).expect("symlink");
}

#[tokio::test]
async fn a_switcher_on_rs232_is_driven_and_survives_unplug_and_replug() {
    let switcher = sim::start(sim::Config::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let by_id = dir.path().join("usb-Extron_RS232-if00");
    plug(&by_id, &switcher.serve_pty().unwrap());
    let gw = gateway(&site(&by_id)).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("sw", "online", json!(true)).await;

    panel
        .command(json!(1), "sw", "route", json!({"input": 3, "output": 2}))
        .await;
    panel.until_event("sw", "route.2", json!(3)).await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    // Front-panel changes come over the serial line too.
    switcher.tie(5, 1, TieKind::All).unwrap();
    panel.until_event("sw", "route.1", json!(5)).await;

    // Unplugged: offline, with the reason, and commands fail at once.
    switcher.unplug();
    panel.until_event("sw", "online", json!(false)).await;
    let error = panel
        .until_set("sw", "error")
        .await
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("serial port"), "{error}");
    panel
        .command(json!(2), "sw", "route", json!({"input": 1, "output": 1}))
        .await;
    assert_eq!(
        panel.result(json!(2)).await["error"]["code"],
        "device_offline"
    );

    // Replugged (under a new /dev/pts, the stable name follows): back without a restart,
    // with state re-read (a change made while unplugged shows up).
    switcher.tie(7, 3, TieKind::All).unwrap();
    plug(&by_id, &switcher.serve_pty().unwrap());
    panel.until_event("sw", "online", json!(true)).await;
    panel.until_event("sw", "route.3", json!(7)).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_missing_serial_port_is_reported_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&site(&dir.path().join("usb-nothing-if00"))).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    let error = panel
        .until_set("sw", "error")
        .await
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("cannot open serial port") && error.contains("usb-nothing-if00"),
        "{error}"
    );
    gw.shutdown().await;
}
