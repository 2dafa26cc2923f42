//! What `/api/state` says about a device whose reads all fail: a meter profile written
//! with the manual's 1-based numbers against a meter that answers exception 02 for them.

mod common;

use avgate::config::Profile;
use avgate_drivers::modbus::RegisterMap;
use avgate_drivers::modbus::simulator as sim;
use common::*;
use serde_json::{Value, json};

/// The sensor as it really is (input registers 0..=3).
fn sensor_map() -> RegisterMap {
    let profile = Profile::find("modbus-environment-sensor", &[])
        .expect("built in")
        .expect("valid");
    RegisterMap::from_options(&profile.options).expect("valid map")
}

/// The same sensor as a new user might write it from the manual: 30001 for input 0.
const MANUAL_NUMBERS: &str = "name = \"sensor from the manual\"\ndriver = \"modbus\"\n\
    [options]\npoll_groups = { default = \"200ms\" }\n\
    [[options.points]]\nname = \"temperature\"\ntable = \"input\"\naddress = 30001\ntype = \"i16\"\nscale = 0.1\n\
    [[options.points]]\nname = \"humidity\"\ntable = \"input\"\naddress = 30002\nscale = 0.1\n";

#[tokio::test]
async fn a_device_whose_every_read_fails_is_not_shown_healthy() {
    let device = sim::start_tcp(sim::Config::new(sensor_map())).unwrap();
    let profiles = tempfile::tempdir().unwrap();
    std::fs::write(profiles.path().join("manual-sensor.toml"), MANUAL_NUMBERS).unwrap();
    let site = format!(
        "profile_dirs = [\"{}\"]\n[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n\
         [devices.sensor]\nprofile = \"manual-sensor\"\naddress = \"{}\"\n",
        profiles.path().display(),
        device.local_addr()
    );
    let gw = gateway(&site).await;

    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel
        .until("the sensor's error", |m| {
            m["device"] == "sensor" && m["point"] == "error" && m["value"].is_string()
                || m["type"] == "snapshot" && m["devices"]["sensor"]["error"].is_string()
        })
        .await;
    let state: Value =
        serde_json::from_str(&http_get(gw.local_addr(), "/api/state").await).expect("json");
    let sensor = &state["devices"]["sensor"];
    let error = sensor["error"].as_str().unwrap();
    assert!(error.starts_with("every poll fails: "), "{error}");
    assert!(error.contains("illegal data address (02)"), "{error}");
    assert!(error.contains("30001 is input 0"), "{error}");
    assert_eq!(sensor["online"], false, "never a successful answer");
    assert_eq!(sensor["points"], json!({}));
    assert_eq!(
        sensor["stale"],
        json!(["humidity", "temperature"]),
        "the points are listed as unknown, not absent"
    );
    // A monitoring probe on the status code alone sees the dead room.
    let (status, body) = http_request(gw.local_addr(), "/healthz", None).await;
    assert!(status.contains("503"), "{status}: {body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "failing");
    assert!(
        health["problems"][0]
            .as_str()
            .unwrap()
            .contains("every poll fails"),
        "{health}"
    );
}
