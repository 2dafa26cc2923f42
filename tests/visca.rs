//! Sony VISCA cameras through the gateway: VISCA over IP (UDP, with a lost reply that the
//! driver's resend recovers without moving the camera twice) and a daisy chain of two
//! cameras on one RS-232 line.

mod common;

use avgate_drivers::visca::simulator::{self as sim, Fault};
use common::*;
use serde_json::json;

const TOP: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n";

fn camera(name: &str, profile: &str, link: &str, extra_options: &str) -> String {
    format!(
        "[devices.{name}]\nprofile = \"{profile}\"\n{link}\n\
         [devices.{name}.overrides]\ncommand_timeout = \"2s\"\n\
         poll = {{ zoom = \"200ms\", pan_tilt = \"200ms\", power = \"200ms\" }}\n{extra_options}"
    )
}

#[tokio::test]
async fn a_camera_speaking_bare_visca_over_udp_is_driven_without_sonys_header() {
    let cam = sim::start_udp_raw(sim::Config::default()).await.unwrap();
    let site = format!(
        "{TOP}{}",
        camera(
            "cam",
            "sony-visca-camera",
            &format!("address = \"{}\"", cam.local_addr()),
            "options = { framing = \"udp\" }\n"
        )
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("cam", "online", json!(true)).await;
    panel
        .command(json!(1), "cam", "zoom_to", json!({"position": 4000}))
        .await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    cam.settle();
    panel.until_event("cam", "zoom", json!(4000)).await;
}

#[tokio::test]
async fn a_camera_over_ip_moves_once_even_when_a_reply_is_lost() {
    let cam = sim::start_udp(sim::Config::default()).await.unwrap();
    let site = format!(
        "{TOP}{}",
        camera(
            "cam",
            "sony-visca-camera",
            &format!("address = \"{}\"", cam.local_addr()),
            ""
        )
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("cam", "online", json!(true)).await;

    panel
        .command(json!(1), "cam", "zoom_to", json!({"position": 8000}))
        .await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    cam.settle();
    panel.until_event("cam", "zoom", json!(8000)).await;

    panel
        .command(
            json!(2),
            "cam",
            "preset",
            json!({"action": "set", "number": 4}),
        )
        .await;
    assert_eq!(panel.result(json!(2)).await["ok"], true);
    cam.set_pan_tilt(-300, 120);
    panel.until_event("cam", "pan", json!(-300)).await;

    // The recall's reply is lost: the driver resends with the same sequence number, the
    // camera answers again without a second recall.
    let recalls_before = recalls(&cam);
    cam.inject(Fault::DropReply);
    panel
        .command(
            json!(3),
            "cam",
            "preset",
            json!({"action": "recall", "number": 4}),
        )
        .await;
    assert_eq!(panel.result(json!(3)).await["ok"], true);
    assert_eq!(
        recalls(&cam),
        recalls_before + 1,
        "{:?}",
        cam.commands_executed()
    );
    cam.settle();
    panel.until_event("cam", "pan", json!(0)).await;
    assert_eq!(*panel.known("cam", "preset"), json!(4));

    // A camera in standby refuses motion, and says so.
    cam.set_power(false);
    panel.until_event("cam", "power", json!("off")).await;
    panel
        .command(json!(4), "cam", "pan_tilt", json!({"direction": "left"}))
        .await;
    let result = panel.result(json!(4)).await;
    assert_eq!(result["ok"], false, "{result}");
    gw.shutdown().await;
}

fn recalls(cam: &sim::Handle) -> usize {
    cam.commands_executed()
        .iter()
        .filter(|c| c.contains("3F 02") || c.contains("3f 02"))
        .count()
}

#[tokio::test]
async fn two_cameras_on_one_serial_chain_are_separate_devices() {
    let chain = sim::start_tcp(sim::Config {
        cameras: 2,
        ..sim::Config::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = dir.path().join("usb-Prolific_RS232-if00-port0");
    std::os::unix::fs::symlink(chain.serve_pty().unwrap(), &port).unwrap();
    let link = format!("serial_port = \"{}\"", port.display());
    let site = format!(
        "{TOP}{}{}",
        camera(
            "cam-1",
            "sony-visca-serial",
            &link,
            "options = { address = 1 }\n"
        ),
        camera(
            "cam-2",
            "sony-visca-serial",
            &link,
            "options = { address = 2 }\n"
        )
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("cam-1", "online", json!(true)).await;
    panel.until_event("cam-2", "online", json!(true)).await;

    panel
        .command(json!("a"), "cam-2", "zoom_to", json!({"position": 12000}))
        .await;
    assert_eq!(panel.result(json!("a")).await["ok"], true);
    panel
        .command(json!("b"), "cam-1", "power", json!({"on": false}))
        .await;
    assert_eq!(panel.result(json!("b")).await["ok"], true);
    chain.settle();
    panel.until_event("cam-2", "zoom", json!(12000)).await;
    panel.until_event("cam-1", "power", json!("off")).await;
    let (one, two) = (chain.camera(1).unwrap(), chain.camera(2).unwrap());
    assert_eq!(
        (one.power, one.zoom),
        (false, 0),
        "camera 1 only powered off"
    );
    assert_eq!((two.power, two.zoom), (true, 12000), "camera 2 only zoomed");
    gw.shutdown().await;
}
