//! Our PJLink projector simulator against aiopjlink 1.0.5, a PJLink client nobody on this
//! project wrote (tests/peers/pjlink_aiopjlink.py drives it).
//!
//! The simulator stands in for projectors in every other test, so it has to be right: here
//! an independent client powers it on, switches inputs and reads its status, and the test
//! then checks the simulator's own state, so a mistake on either side fails.
//!
//! Needs `AVGATE_PEERS_PYTHON` = a python with aiopjlink installed (CI sets it up from
//! tests/peers/requirements.txt); without it the tests print SKIP and pass.

mod peer_support;

use std::time::Duration;

use avgate_drivers::pjlink::simulator::{self, Class, Config, Handle, PowerState};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/peers/pjlink_aiopjlink.py"
);

/// Bound on the whole script run (its own checks are bounded at 25 s).
const LIMIT: Duration = Duration::from_secs(60);

/// The input the script selects.
const INPUT: &str = "32";

async fn projector(password: Option<&str>, class: Class) -> Handle {
    simulator::start(Config {
        password: password.map(str::to_string),
        warm_up: Duration::from_millis(300),
        cool_down: Duration::from_millis(300),
        class,
        ..Config::default()
    })
    .await
    .expect("simulator starts")
}

/// Runs the peer script against `projector` and fails the test if any check failed.
async fn run_peer(python: &str, projector: &Handle, password: Option<&str>, class: u8) {
    let port = projector.local_addr().port().to_string();
    let class = class.to_string();
    let mut args = vec![
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--expect-class",
        &class,
        "--input",
        INPUT,
    ];
    if let Some(password) = password {
        args.extend(["--password", password]);
    }
    peer_support::run_script(python, SCRIPT, &args, LIMIT).await;
}

/// What the script must have left behind, seen from the simulator.
fn assert_projector_after_peer(projector: &Handle) {
    let state = projector.state();
    assert_eq!(state.power, PowerState::On);
    assert_eq!(state.input, INPUT);
    let commands = projector.commands_received();
    let power_ons = commands.iter().filter(|c| c.as_str() == "%1POWR 1").count();
    assert_eq!(power_ons, 1, "power on sent once: {commands:?}");
    assert!(
        commands.contains(&format!("%1INPT {INPUT}")),
        "{commands:?}"
    );
}

#[tokio::test]
async fn aiopjlink_with_password_class_1() {
    let Some(python) = peer_support::python("aiopjlink==1.0.5") else {
        return;
    };
    let projector = projector(Some("JBMIAProjectorLink"), Class::One).await;
    run_peer(&python, &projector, Some("JBMIAProjectorLink"), 1).await;
    assert_projector_after_peer(&projector);
    projector.shutdown().await;
}

#[tokio::test]
async fn aiopjlink_without_password_class_2() {
    let Some(python) = peer_support::python("aiopjlink==1.0.5") else {
        return;
    };
    let projector = projector(None, Class::Two).await;
    run_peer(&python, &projector, None, 2).await;
    assert_projector_after_peer(&projector);
    assert!(
        projector
            .commands_received()
            .iter()
            .any(|c| c == "%2SNUM ?")
    );
    projector.shutdown().await;
}
