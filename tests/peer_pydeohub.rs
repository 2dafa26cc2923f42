//! Our Blackmagic Videohub simulator (generated from the scripted profile) against
//! pydeohub 0.0.1, a Videohub client nobody on this project wrote
//! (tests/peers/videohub_pydeohub.py drives it): the state dump on connect, a route and a
//! label changed through it, and the status blocks that report them.
//!
//! pydeohub always connects to TCP 9990, so the simulator listens on 127.0.0.1:9990.
//!
//! Needs `AVGATE_PEERS_PYTHON` = a python with pydeohub installed (tests/peers/
//! requirements.txt); without it the test prints SKIP and passes.

mod peer_support;

use std::sync::Arc;
use std::time::Duration;

use avgate::config::Profile;
use avgate_drivers::scripted;
use serde_json::json;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/peers/videohub_pydeohub.py"
);

/// Bound on the whole script run; the script's own waits are 10 s each.
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn pydeohub_routes_and_relabels_the_simulated_videohub() {
    let Some(python) = peer_support::python("pydeohub") else {
        return;
    };
    let profile = Profile::find("blackmagic-videohub", &[]).unwrap().unwrap();
    let script = scripted::from_options(&profile.options).expect("the built-in profile compiles");
    let hub = scripted::serve(Arc::new(script), "127.0.0.1:9990".parse().unwrap())
        .expect("TCP 9990 free on 127.0.0.1 (pydeohub connects nowhere else)");
    peer_support::run_script(&python, SCRIPT, &["127.0.0.1"], LIMIT).await;
    let state = hub.with(|m| m.state.clone());
    assert_eq!(state.get("route.2"), Some(&json!(3)), "{state:?}");
    assert_eq!(
        state.get("input_label.4"),
        Some(&json!("Archive")),
        "{state:?}"
    );
    hub.shutdown().await;
}
