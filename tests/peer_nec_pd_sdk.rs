//! Our NEC display simulator (generated from the scripted profile) against nec-pd-sdk,
//! NEC's own Python SDK for its large-format displays (tests/peers/nec_display_sdk.py drives
//! it): power status read and set, and the generic get/set parameter commands for volume
//! and input, with the SDK checking every frame's header, length, reply type and XOR check.
//!
//! The simulator stands in for a display in the gateway's tests and demos, so it has to
//! speak what real clients send; the test then checks the simulator's own state, so a
//! mistake on either side fails.
//!
//! Needs `AVGATE_PEERS_PYTHON` = a python with nec-pd-sdk installed (tests/peers/
//! requirements.txt); without it the test prints SKIP and passes.

mod peer_support;

use std::sync::Arc;
use std::time::Duration;

use avgate::config::Profile;
use avgate_drivers::scripted;
use serde_json::json;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/peers/nec_display_sdk.py"
);

/// Bound on the whole script run; the SDK's own reply timeout is shorter.
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn nec_pd_sdk_drives_the_simulated_display() {
    let Some(python) = peer_support::python("nec-pd-sdk") else {
        return;
    };
    let profile = Profile::find("nec-display", &[]).unwrap().unwrap();
    let script = scripted::from_options(&profile.options).expect("the built-in profile compiles");
    let display = scripted::serve(Arc::new(script), "127.0.0.1:0".parse().unwrap()).unwrap();
    let port = display.local_addr().port().to_string();
    peer_support::run_script(&python, SCRIPT, &["127.0.0.1", &port], LIMIT).await;
    let state = display.with(|m| m.state.clone());
    assert_eq!(state.get("volume"), Some(&json!(55)), "{state:?}");
    assert_eq!(state.get("input"), Some(&json!("hdmi2")), "{state:?}");
    assert_eq!(state.get("power"), Some(&json!("off")), "{state:?}");
    display.shutdown().await;
}
