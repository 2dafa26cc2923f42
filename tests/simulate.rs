//! `avgate simulate`, on the real binary: every simulator the driver registry and the
//! built-in profiles offer is listed with its one-line help, starts on 127.0.0.1:0 saying
//! where it listens, and stops cleanly on SIGTERM.

mod common;

use std::process::Stdio;

use avgate::config::Profile;
use avgate_drivers::ProfileUse;
use common::DEADLINE;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// One command `avgate simulate` must offer: its name, its one-line help, and the flags
/// that start it (a built-in profile of its driver when it needs one).
struct Expected {
    command: String,
    about: String,
    flags: Vec<String>,
}

/// Every driver's own simulator and every simulator a built-in profile names, as the
/// registry and the profiles declare them.
fn expected() -> Vec<Expected> {
    let built_in: Vec<Profile> = Profile::built_in_names()
        .map(|id| Profile::find(id, &[]).unwrap().unwrap())
        .collect();
    let mut expected = Vec::new();
    for driver in avgate_drivers::drivers() {
        let Some(simulator) = driver.simulator else {
            continue;
        };
        let about = (simulator.args)(clap::Command::new(simulator.command))
            .get_about()
            .expect("every simulator says what it is")
            .to_string();
        let mut flags = Vec::new();
        if simulator.profile == ProfileUse::Required {
            let profile = built_in
                .iter()
                .find(|p| p.driver == driver.name)
                .unwrap_or_else(|| panic!("no built-in {} profile to serve", driver.name));
            flags = vec!["--profile".into(), profile.id.clone()];
        }
        expected.push(Expected {
            command: simulator.command.into(),
            about,
            flags,
        });
    }
    let (declared, problems) = Profile::built_in_simulators();
    assert!(problems.is_none(), "{problems:?}");
    assert!(!declared.is_empty(), "the scripted families name theirs");
    for simulator in declared {
        expected.push(Expected {
            command: simulator.command,
            about: simulator.about,
            flags: Vec::new(),
        });
    }
    expected
}

/// Runs `avgate simulate ARGS` to the end; its exit success and stdout.
async fn output(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_avgate"))
        .arg("simulate")
        .args(args)
        .output()
        .await
        .expect("the avgate binary runs");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `text` with every run of whitespace made one space, so wrapped help reads as one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn the_help_lists_every_simulator_with_its_one_line_about() {
    let (ok, help, _) = output(&["--help"]).await;
    assert!(ok);
    let help = one_line(&help);
    for expected in expected() {
        let line = one_line(&format!("{} {}", expected.command, expected.about));
        assert!(help.contains(&line), "`{line}` missing from: {help}");
    }
}

#[tokio::test]
async fn a_simulator_s_help_shows_its_flags_and_an_example() {
    let (ok, help, _) = output(&["pjlink", "--help"]).await;
    assert!(ok);
    for flag in [
        "--listen",
        "--password",
        "--warm-up",
        "--cool-down",
        "--class",
        "--name",
        "--err3-in-standby",
        "--close-after-reply",
    ] {
        assert!(help.contains(flag), "{flag} missing from: {help}");
    }
    assert!(
        help.contains("Example: avgate simulate pjlink --listen 127.0.0.1:4352"),
        "{help}"
    );

    // A profile's own command serves that profile: no --profile to give.
    let (ok, help, _) = output(&["kramer", "--help"]).await;
    assert!(ok);
    let help = one_line(&help);
    assert!(
        help.contains("Serves the built-in profile `kramer-protocol-3000`")
            && help.contains("Example: avgate simulate kramer --listen 127.0.0.1:5000")
            && help.contains("--pty")
            && !help.contains("--profile"),
        "{help}"
    );
}

#[tokio::test]
async fn every_simulator_starts_on_a_free_port_and_stops_on_sigterm() {
    for expected in expected() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_avgate"))
            .arg("simulate")
            .arg(&expected.command)
            .args(&expected.flags)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the avgate binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let banner = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{}: no banner in time", expected.command))
            .unwrap()
            .unwrap_or_else(|| panic!("{}: exited without a banner", expected.command));
        // "... listening on 127.0.0.1:PORT ...", as scripts read it.
        let port: u16 = banner
            .split("listening on 127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("{}: no address in {banner:?}", expected.command));
        assert_ne!(port, 0, "{}: {banner}", expected.command);

        let pid = child.id().expect("still running") as libc::pid_t;
        // SAFETY: kill(2) on the child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(DEADLINE, child.wait())
            .await
            .unwrap_or_else(|_| panic!("{}: still running after SIGTERM", expected.command))
            .unwrap();
        assert!(status.success(), "{}: {status}", expected.command);
    }
}

#[tokio::test]
async fn a_profile_of_another_driver_is_refused_by_name() {
    let (ok, _, stderr) = output(&["modbus", "--profile", "pjlink-projector"]).await;
    assert!(!ok);
    assert!(
        stderr.contains(
            "profile `pjlink-projector` uses the pjlink driver; `avgate simulate modbus` serves a profile with driver = \"modbus\""
        ),
        "{stderr}"
    );
}
