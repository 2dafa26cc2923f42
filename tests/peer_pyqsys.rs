//! Our Q-SYS Core simulator against pyqsys 0.0.2, a QRC client nobody on this project
//! wrote (tests/peers/qsys_pyqsys.py drives it): logon, status, Control.Get/Set,
//! Component.Get, a change group polled by hand, and the errors a Core answers.
//!
//! The simulator stands in for a Core in the gateway's tests, so it has to be right; the
//! test then checks the simulator's own state, so a mistake on either side fails.
//!
//! Needs `AVGATE_PEERS_PYTHON` = a python with pyqsys installed (tests/peers/
//! requirements.txt); without it the test prints SKIP and passes.

mod peer_support;

use std::time::Duration;

use avgate::config::Profile;
use avgate_drivers::DriverSettings;
use avgate_drivers::qsys;
use serde_json::json;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/qsys_pyqsys.py");

/// Bound on the whole script run: pyqsys itself waits for answers without a timeout.
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn pyqsys_drives_the_simulated_core() {
    let Some(python) = peer_support::python("pyqsys") else {
        return;
    };
    let profile = Profile::find("qsys-core", &[]).unwrap().unwrap();
    let options =
        qsys::Options::from_settings(&DriverSettings::with_options(profile.options.clone()))
            .unwrap();
    let core = qsys::serve(
        &options,
        Some("peer-pass".into()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let port = core.local_addr().port().to_string();
    let args = [
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--password",
        "peer-pass",
    ];
    peer_support::run_script(&python, SCRIPT, &args, LIMIT).await;
    assert_eq!(
        core.with(|m| m.value(None, "ProgramGain").cloned()),
        Some(json!(-12.5))
    );
    assert_eq!(
        core.with(|m| m.value(None, "ProgramMute").cloned()),
        Some(json!(1.0))
    );
    core.shutdown().await;
}
