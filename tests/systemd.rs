//! The real binary under a pretend systemd: a NOTIFY_SOCKET this test binds. Checks what
//! the gateway says and in which order: READY=1 once serving, WATCHDOG=1 only after that,
//! RELOADING=1 with MONOTONIC_USEC then READY=1 around each reload (a refused one too),
//! STOPPING=1 at the end. Also `systemd-analyze verify` on the shipped unit.

mod common;

use std::process::Stdio;

use common::{DEADLINE, projector, site_toml};
use tokio::io::AsyncReadExt;
use tokio::net::UnixDatagram;

/// The next change of state: skips status refreshes, and watchdog pings, counting them.
async fn next_state(socket: &UnixDatagram, pings: &mut usize) -> String {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = tokio::time::timeout(DEADLINE, socket.recv(&mut buf))
            .await
            .expect("a notification before the deadline")
            .expect("the socket reads");
        let message = String::from_utf8(buf[..n].to_vec()).expect("notifications are text");
        if message == "WATCHDOG=1\n" {
            *pings += 1;
            continue;
        }
        if message.starts_with("STATUS=") {
            continue;
        }
        return message;
    }
}

fn monotonic_usec() -> i128 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) },
        0
    );
    i128::from(now.tv_sec) * 1_000_000 + i128::from(now.tv_nsec) / 1_000
}

fn signal(child: &tokio::process::Child, signal: libc::c_int) {
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: kill has no memory effects; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_watchdog_and_reloads_are_told_to_systemd_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify_path).unwrap();
    let first = projector(None).await;
    let second = projector(None).await;
    let site = dir.path().join("site.toml");
    std::fs::write(&site, site_toml(&[("a", first.local_addr(), None)], "")).unwrap();

    let mut gateway = tokio::process::Command::new(env!("CARGO_BIN_EXE_avgate"))
        .args(["run", "--config"])
        .arg(&site)
        .env("NOTIFY_SOCKET", &notify_path)
        // A watchdog of 200 ms: a ping every 100 ms while the gateway is healthy.
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .env("RUST_LOG", "avgate=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the gateway starts");

    let mut pings = 0;
    let ready = next_state(&socket, &mut pings).await;
    assert_eq!(pings, 0, "no watchdog ping before READY=1");
    assert!(ready.starts_with("READY=1\nSTATUS="), "{ready:?}");
    assert!(
        ready.contains("devices online") && ready.contains("panel"),
        "{ready:?}"
    );

    // A reload that adds a device.
    std::fs::write(
        &site,
        site_toml(
            &[
                ("a", first.local_addr(), None),
                ("b", second.local_addr(), None),
            ],
            "",
        ),
    )
    .unwrap();
    signal(&gateway, libc::SIGHUP);
    let reloading = next_state(&socket, &mut pings).await;
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("RELOADING=1 with MONOTONIC_USEC: {reloading:?}"));
    let usec: i128 = usec.parse().expect("microseconds");
    assert!(usec <= monotonic_usec() && usec > 0, "{usec}");
    let ready = next_state(&socket, &mut pings).await;
    assert!(ready.starts_with("READY=1\nSTATUS="), "{ready:?}");
    assert!(
        ready.contains("/2 devices online"),
        "the new device counts: {ready:?}"
    );

    // The watchdog keeps being petted while the gateway works.
    let seen = pings;
    let mut buf = [0u8; 64];
    while pings < seen + 2 {
        let n = tokio::time::timeout(DEADLINE, socket.recv(&mut buf))
            .await
            .expect("watchdog pings keep coming")
            .unwrap();
        if &buf[..n] == b"WATCHDOG=1\n" {
            pings += 1;
        }
    }

    // A reload of a broken file: still RELOADING=1 then READY=1 (systemd waits for it),
    // nothing changes, and the log names the place.
    std::fs::write(&site, "[devices.a]\nprofile = 12\n").unwrap();
    signal(&gateway, libc::SIGHUP);
    let reloading = next_state(&socket, &mut pings).await;
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    let ready = next_state(&socket, &mut pings).await;
    assert!(
        ready.contains("/2 devices online"),
        "nothing changed: {ready:?}"
    );

    signal(&gateway, libc::SIGTERM);
    let stopping = next_state(&socket, &mut pings).await;
    assert_eq!(stopping, "STOPPING=1\n");
    let status = tokio::time::timeout(DEADLINE, gateway.wait())
        .await
        .expect("the gateway stops")
        .unwrap();
    assert!(status.success(), "{status}");
    let mut log = String::new();
    gateway
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .await
        .unwrap();
    assert!(log.contains("reload refused"), "{log}");
    assert!(
        log.contains("site.toml:2:"),
        "the error names file:line:column: {log}"
    );
}

#[test]
fn the_shipped_unit_passes_systemd_analyze_verify() {
    let Ok(version) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        println!("SKIP systemd-analyze verify: systemd-analyze is not installed");
        return;
    };
    let version = String::from_utf8_lossy(&version.stdout);
    let major: u32 = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let dir = tempfile::tempdir().unwrap();
    // verify wants ExecStart to exist: point it at the binary under test.
    let unit = avgate::systemd::UNIT.replace("/usr/bin/avgate", env!("CARGO_BIN_EXE_avgate"));
    let path = dir.path().join("avgate.service");
    std::fs::write(&path, unit).unwrap();
    let output = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let complaints = String::from_utf8_lossy(&output.stderr);
    // Type=notify-reload and ReloadSignal= arrived in systemd 253; an older verify does
    // not know them, and says so, which is all it can say about them.
    let newer_than_this_systemd = |line: &&str| {
        major < 253 && (line.contains("notify-reload") || line.contains("'ReloadSignal'"))
    };
    let (unknown, problems): (Vec<&str>, Vec<&str>) = complaints
        .lines()
        .filter(|l| !l.trim().is_empty())
        .partition(newer_than_this_systemd);
    if !unknown.is_empty() {
        println!("SKIP notify-reload checks: systemd {major} predates them: {unknown:?}");
    }
    assert!(problems.is_empty(), "systemd-analyze verify: {problems:?}");
    assert!(
        output.status.success() || !unknown.is_empty(),
        "{complaints}"
    );
}
