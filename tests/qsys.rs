//! A Q-SYS Core through the gateway: the built-in `qsys-core` profile against the
//! simulated Core over TCP, with a real panel and a logon.

mod common;

use avgate::config::Profile;
use avgate_drivers::DriverSettings;
use avgate_drivers::kit::Served;
use avgate_drivers::qsys::{self, Model};
use common::*;
use serde_json::json;

const PASSWORD: &str = "dsp-s3cret";

/// The simulated Core with the controls of the built-in profile, on a free loopback port.
fn core(password: Option<&str>) -> Served<Model> {
    let profile = Profile::find("qsys-core", &[])
        .expect("profile is built in")
        .expect("profile is valid");
    let options =
        qsys::Options::from_settings(&DriverSettings::with_options(profile.options.clone()))
            .expect("options are valid");
    qsys::serve(
        &options,
        password.map(str::to_string),
        "127.0.0.1:0".parse().unwrap(),
    )
    .expect("simulator starts")
}

fn site(core: &Served<Model>, password: Option<&str>) -> String {
    let password = password.map_or(String::new(), |p| format!("password = \"{p}\"\n"));
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n\
         [devices.dsp]\nprofile = \"qsys-core\"\naddress = \"{}\"\n{password}\
         [devices.dsp.overrides]\ncommand_timeout = \"2s\"\n",
        core.local_addr()
    )
}

#[tokio::test]
async fn a_panel_sets_the_gain_and_sees_front_panel_changes() {
    let core = core(Some(PASSWORD));
    let gw = gateway(&site(&core, Some(PASSWORD))).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("dsp", "online", json!(true)).await;
    panel
        .until_event("dsp", "core_state", json!("Active"))
        .await;
    // The change group reports every control once, as it is created.
    panel.until_event("dsp", "mute", json!(false)).await;

    panel
        .command(json!(1), "dsp", "set_gain", json!({"value": -12.5}))
        .await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    panel.until_event("dsp", "gain", json!(-12.5)).await;
    assert_eq!(
        core.with(|m| m.value(None, "ProgramGain").cloned()),
        Some(json!(-12.5))
    );

    panel
        .command(json!(2), "dsp", "set_source", json!({"value": "Lectern"}))
        .await;
    assert_eq!(panel.result(json!(2)).await["ok"], true);
    panel.until_event("dsp", "source", json!("Lectern")).await;

    // Someone mutes the program on a wall plate: AutoPoll brings it, unasked.
    core.change(|m| m.front_panel(None, "ProgramMute", json!(1)));
    panel.until_event("dsp", "mute", json!(true)).await;
    core.change(|m| m.front_panel(Some("Program"), "meter.1", json!(-18)));
    panel.until_event("dsp", "signal", json!(-18.0)).await;

    // Out of the profile's range: refused before it reaches the Core.
    panel
        .command(json!(3), "dsp", "set_gain", json!({"value": 40}))
        .await;
    let result = panel.result(json!(3)).await;
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["error"]["code"], "invalid_args", "{result}");
    // A meter is read-only: no command sets it.
    panel
        .command(json!(4), "dsp", "set_signal", json!({"value": 0}))
        .await;
    assert_eq!(panel.result(json!(4)).await["ok"], false);
    gw.shutdown().await;
    core.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_keeps_the_core_offline_and_says_why() {
    let core = core(Some(PASSWORD));
    let gw = gateway(&site(&core, Some("guess"))).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    let error = panel.until_set("dsp", "error").await;
    let error = error.to_string();
    assert!(
        error.contains("logon") && !error.contains("guess"),
        "{error}"
    );
    assert_ne!(panel.known("dsp", "online"), &json!(true));
    gw.shutdown().await;
    core.shutdown().await;
}
