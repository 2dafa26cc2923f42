//! The harness against the PJLink simulator, through the same rack-file format a real rack
//! uses: if the harness passes here and fails on a rack, the device differs.

use std::time::Duration;

use avgate_drivers::pjlink::simulator as sim;
use avgate_hil_tests::{Report, run_file};

async fn rack_file(body: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    file
}

#[tokio::test]
async fn every_check_passes_against_the_simulator() {
    let projector = sim::start(sim::Config {
        password: Some("JBMIAProjectorLink".into()),
        warm_up: Duration::from_millis(200),
        ..sim::Config::default()
    })
    .await
    .unwrap();
    let rack = rack_file(&format!(
        "[[pjlink]]\nname = \"sim\"\naddress = \"{}\"\npassword = \"JBMIAProjectorLink\"\nallow_power = true\n",
        projector.local_addr()
    ))
    .await;
    let mut out = Vec::new();
    let report = run_file(rack.path(), &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(report.failed, 0, "{out}");
    assert!(out.contains("PASS sim connect"), "{out}");
    assert!(out.contains("PASS sim power on"), "{out}");
    assert!(out.contains("PASS sim lamp"), "{out}");
}

#[tokio::test]
async fn a_wrong_password_fails_connect_with_the_reason() {
    let projector = sim::start(sim::Config {
        password: Some("right".into()),
        ..sim::Config::default()
    })
    .await
    .unwrap();
    let rack = rack_file(&format!(
        "[[pjlink]]\nname = \"sim\"\naddress = \"{}\"\npassword = \"wrong\"\n",
        projector.local_addr()
    ))
    .await;
    let mut out = Vec::new();
    let report = run_file(rack.path(), &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(report.failed, 1, "{out}");
    assert!(
        out.contains("FAIL sim connect") && out.contains("password"),
        "{out}"
    );
}

#[tokio::test]
async fn families_without_devices_are_skipped_with_a_reason() {
    let rack = rack_file("").await;
    let mut out = Vec::new();
    let report = run_file(rack.path(), &mut out).await.unwrap();
    assert_eq!(
        report,
        Report {
            passed: 0,
            failed: 0,
            skipped: 2
        }
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "SKIP pjlink all: no [[pjlink]] devices in the rack file\nSKIP extron all: no [[extron]] devices in the rack file\n"
    );
}

#[tokio::test]
async fn extron_checks_pass_over_telnet_and_rs232() {
    use avgate_drivers::extron::simulator as extron_sim;
    let switcher = extron_sim::start(extron_sim::Config {
        password: Some("extron".into()),
        ..extron_sim::Config::default()
    })
    .await
    .unwrap();
    let pty = switcher.serve_pty().unwrap();
    let rack = rack_file(&format!(
        "[[extron]]\nname = \"telnet\"\naddress = \"{}\"\npassword = \"extron\"\nallow_routing = true\n\
         [[extron]]\nname = \"serial\"\nserial_port = \"{pty}\"\n",
        switcher.local_addr()
    ))
    .await;
    let mut out = Vec::new();
    let report = run_file(rack.path(), &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(report.failed, 0, "{out}");
    for line in [
        "PASS telnet connect",
        "PASS telnet routes",
        "PASS telnet re-tie output 1",
        "PASS serial routes",
        "SKIP serial re-tie output 1",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}
