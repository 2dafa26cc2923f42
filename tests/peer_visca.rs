//! Our VISCA over IP camera simulator against visca-over-ip 0.5.2, a client nobody on this
//! project wrote (tests/peers/visca_visca_over_ip.py drives it).
//!
//! The simulator stands in for cameras in every other VISCA test, so it has to be right:
//! here an independent client resets the sequence number, powers the camera on, zooms,
//! reads zoom and pan/tilt positions, stores and recalls a preset and gets an error reply
//! for a zoom in standby; the test then checks the simulator's own state and the commands
//! it carried out, so a mistake on either side fails.
//!
//! The client binds its inquiry socket to the camera's port on every address, so the
//! simulator listens on 127.0.0.2 with SO_REUSEADDR (PROTOCOLS.md §5.4).
//!
//! Needs `AVGATE_PEERS_PYTHON` = a python with visca-over-ip installed (CI sets it up from
//! tests/peers/requirements.txt); without it the test prints SKIP and passes.

mod peer_support;

use std::net::SocketAddr;
use std::time::Duration;

use avgate_drivers::visca::simulator::{self, Config, Handle, Position};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/peers/visca_visca_over_ip.py"
);

/// Bound on the whole script run (its moves are bounded at 10 s each).
const LIMIT: Duration = Duration::from_secs(60);

/// Where the head starts; the script expects to read it back and stores it in a preset.
const PAN: i16 = -16;
const TILT: i16 = 300;
/// The preset the script stores and recalls.
const PRESET: u8 = 3;
/// zoom_to(0.25) in the script: a quarter of the 0x4000 range.
const ZOOM: u16 = 0x1000;

async fn camera() -> Handle {
    let camera = simulator::start_udp(Config {
        // Port 0: the kernel picks a free port, which the client then also binds.
        listen: SocketAddr::from(([127, 0, 0, 2], 0)),
        power: false,
        ..Config::default()
    })
    .await
    .expect("simulator starts on 127.0.0.2");
    camera.set_pan_tilt(PAN, TILT);
    camera
}

/// Runs the peer script against `camera` and fails the test if any check failed.
async fn run_peer(python: &str, camera: &Handle) {
    let port = camera.local_addr().port().to_string();
    let (pan, tilt, preset) = (PAN.to_string(), TILT.to_string(), PRESET.to_string());
    let args = [
        "--host",
        "127.0.0.2",
        "--port",
        &port,
        "--pan",
        &pan,
        "--tilt",
        &tilt,
        "--preset",
        &preset,
    ];
    peer_support::run_script(python, SCRIPT, &args, LIMIT).await;
}

#[tokio::test]
async fn visca_over_ip_client_drives_the_udp_simulator() {
    let Some(python) = peer_support::python("visca-over-ip==0.5.2") else {
        return;
    };
    let camera = camera().await;
    run_peer(&python, &camera).await;

    let state = camera.state();
    assert!(state.power, "{state:?}");
    assert!(!state.moving, "the script waited for every move: {state:?}");
    assert_eq!((state.zoom, state.pan, state.tilt), (ZOOM, PAN, TILT));
    assert_eq!(
        state.presets.get(&PRESET),
        Some(&Position {
            zoom: ZOOM,
            pan: PAN,
            tilt: TILT
        })
    );

    // The exact packets the client sent for each step, carried out by the camera.
    let executed = camera.commands_executed();
    for packet in [
        "81 01 04 00 02 FF",          // power on
        "81 01 04 47 01 00 00 00 FF", // zoom to 0x1000
        "81 01 04 3F 01 03 FF",       // store preset 3
        "81 01 06 04 FF",             // home
        "81 01 04 3F 02 03 FF",       // recall preset 3
    ] {
        assert!(
            executed.iter().any(|p| p == packet),
            "{packet} not carried out: {executed:?}"
        );
    }
    // Inquiries went through too (the client sends them with the command payload type).
    let received = camera.commands_received();
    assert!(
        received.iter().any(|p| p == "81 09 04 47 FF"),
        "{received:?}"
    );
    assert!(
        received.iter().any(|p| p == "81 09 06 12 FF"),
        "{received:?}"
    );
    camera.shutdown().await;
}
