//! Wire traces against a running gateway: frames both ways, the PJLink password and its
//! digest never stored, and the trace switching itself off when its time is up.

mod common;

use std::time::Duration;

use avgate_drivers::pjlink::simulator as sim;
use common::{Panel, gateway, http_get};
use serde_json::{Value, json};

const PASSWORD: &str = "secret-pw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_shows_frames_both_ways_without_credentials_and_ends_by_itself() {
    // A projector that closes idle connections quickly, so the trace sees a whole login.
    let projector = sim::start(sim::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        password: Some(PASSWORD.into()),
        idle_timeout: Duration::from_millis(1200),
        ..sim::Config::default()
    })
    .await
    .unwrap();
    let site = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n\
         [devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"{}\"\npassword = \"{PASSWORD}\"\n\
         [devices.proj.overrides]\npoll = {{ power = \"30s\", input = \"30s\" }}\n",
        projector.local_addr()
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("proj", "online", json!(true)).await;

    // What `avgate trace proj --for 3s` does, in this process; meanwhile the projector
    // drops the idle connection (the gateway logs in again) and a panel sends a command.
    let follow = tokio::spawn(avgate::trace::follow(
        gw.local_addr(),
        None,
        "proj",
        Duration::from_secs(3),
    ));
    let before = projector.connection_count();
    while projector.connection_count() == before {
        panel.try_next(Duration::from_millis(50)).await;
    }
    panel
        .command(json!("t1"), "proj", "power", json!({"on": true}))
        .await;
    assert_eq!(panel.result(json!("t1")).await["ok"], true);
    tokio::time::timeout(Duration::from_secs(10), follow)
        .await
        .expect("the trace ends by itself after 3s")
        .unwrap()
        .expect("avgate trace ran");

    let reply: Value =
        serde_json::from_str(&http_get(gw.local_addr(), "/api/trace?device=proj").await).unwrap();
    assert_eq!(reply["remaining_s"], 0.0, "{reply}");
    let frames = reply["frames"].as_array().unwrap();
    let text = |dir: &str| -> Vec<&str> {
        frames
            .iter()
            .filter(|f| f["dir"] == dir)
            .map(|f| f["text"].as_str().unwrap())
            .collect()
    };
    let (sent, received) = (text("tx"), text("rx"));
    assert!(
        received.iter().any(|t| t.starts_with("PJLINK 1 ")),
        "{received:?}"
    );
    assert!(sent.iter().any(|t| t.contains("%1POWR 1\\r")), "{sent:?}");
    assert!(
        received.iter().any(|t| t.contains("%1POWR=OK")),
        "{received:?}"
    );
    // The login's first command carries the digest: it is shown masked.
    assert!(
        sent.iter().any(|t| t.starts_with(&"*".repeat(32))),
        "the digest is masked: {sent:?}"
    );
    let hex_password: String = PASSWORD.bytes().map(|b| format!("{b:02x}")).collect();
    for frame in frames {
        let shown = frame.to_string();
        assert!(
            !shown.contains(PASSWORD) && !shown.contains(&hex_password),
            "{shown}"
        );
        let hex = frame["hex"].as_str().unwrap();
        let text = frame["text"].as_str().unwrap();
        assert!(!text.is_empty() && hex.len() >= 2, "{frame}");
        // No 32-hex-digit run (a digest) survives in the text.
        let longest_hex_run = text
            .split(|c: char| !c.is_ascii_hexdigit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest_hex_run < 32, "{text}");
    }

    // Off now: new traffic is not recorded.
    let seen = frames.len();
    panel
        .command(json!("t2"), "proj", "power", json!({"on": false}))
        .await;
    panel.result(json!("t2")).await;
    let reply: Value =
        serde_json::from_str(&http_get(gw.local_addr(), "/api/trace?device=proj").await).unwrap();
    assert_eq!(reply["frames"].as_array().unwrap().len(), seen);

    let (status, body) =
        common::http_request(gw.local_addr(), "/api/trace?device=nope", None).await;
    assert!(
        status.contains("404") && body.contains("proj"),
        "{status} {body}"
    );
    gw.shutdown().await;
}
