//! Reloading the site file: only what changed restarts, panels keep their sessions and
//! hear about it, and a file with problems changes nothing.

mod common;

use avgate::Gateway;
use avgate::config::load_site;
use avgate::reload::{ReloadError, SITE};
use common::{Panel, http_get, projector, site_toml};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_one_address_reconnects_only_that_device_and_panels_stay() {
    let first = projector(None).await;
    let other = projector(None).await;
    let moved_to = projector(None).await;
    moved_to.set_power_on(true);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    let site = |devices: &[(&str, std::net::SocketAddr, Option<&str>)]| site_toml(devices, "");
    std::fs::write(
        &path,
        site(&[
            ("a", first.local_addr(), None),
            ("b", other.local_addr(), None),
        ]),
    )
    .unwrap();
    let gw = Gateway::start(load_site(&path).unwrap()).await.unwrap();

    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("a", "online", json!(true)).await;
    panel.until_event("b", "online", json!(true)).await;
    panel.until_event("a", "power", json!("off")).await;
    let other_connections = other.connection_count();

    // `a` moves to another projector (one that is on, so the panel sees the difference).
    std::fs::write(
        &path,
        site(&[
            ("a", moved_to.local_addr(), None),
            ("b", other.local_addr(), None),
        ]),
    )
    .unwrap();
    let summary = gw.reload(&path).await.expect("the new file is valid");
    assert_eq!(summary.changed, ["a"]);
    assert!(
        summary.added.is_empty() && summary.removed.is_empty(),
        "{summary:?}"
    );
    assert!(summary.restarted_with_link.is_empty(), "{summary:?}");

    // The same session hears of the reload, then reads `a` from its new address.
    let reloaded = panel
        .until("the reload event", |m| {
            m["type"] == "event" && m["device"] == SITE
        })
        .await;
    assert_eq!(reloaded["point"], "devices");
    assert_eq!(reloaded["value"]["changed"], json!(["a"]));
    assert_eq!(reloaded["value"]["devices"], json!(["a", "b"]));
    panel.until_event("a", "power", json!("on")).await;
    assert_eq!(moved_to.connection_count(), 1);
    assert_eq!(
        other.connection_count(),
        other_connections,
        "b was not touched, so it did not reconnect"
    );
    // Still the same session: nothing but events (no new welcome or snapshot) arrives.
    panel
        .command(json!("p1"), "b", "power", json!({"on": true}))
        .await;
    assert_eq!(panel.result(json!("p1")).await["ok"], true);

    // A file with a problem changes nothing, and says where the problem is.
    std::fs::write(
        &path,
        site(&[("a", first.local_addr(), None)]).replace("pjlink-projector", "no-such-profile"),
    )
    .unwrap();
    let refused = gw
        .reload(&path)
        .await
        .expect_err("the profile does not exist");
    let ReloadError::Invalid(errors) = &refused else {
        panic!("{refused}")
    };
    let shown = errors.to_string();
    assert!(
        shown.contains("site.toml:") && shown.contains("no-such-profile"),
        "{shown}"
    );
    let devices = http_get(gw.local_addr(), "/api/devices").await;
    assert!(devices.contains("\"b\""), "b is still served: {devices}");
    panel
        .command(json!("p2"), "a", "power", json!({"on": false}))
        .await;
    assert_eq!(panel.result(json!("p2")).await["ok"], true);
    assert_eq!(moved_to.connection_count(), 1, "a stayed where it was");

    // Adding a device: the panel can command it at once, and the pages list it.
    let added = projector(None).await;
    std::fs::write(
        &path,
        site(&[
            ("a", moved_to.local_addr(), None),
            ("b", other.local_addr(), None),
            ("c", added.local_addr(), None),
        ]),
    )
    .unwrap();
    let summary = gw.reload(&path).await.unwrap();
    assert_eq!(summary.added, ["c"]);
    assert!(summary.changed.is_empty(), "{summary:?}");
    panel.until_event("c", "online", json!(true)).await;
    panel
        .command(json!("p3"), "c", "power", json!({"on": true}))
        .await;
    assert_eq!(panel.result(json!("p3")).await["ok"], true);
    let devices = http_get(gw.local_addr(), "/api/devices").await;
    assert!(devices.contains("\"c\""), "{devices}");
    assert_eq!(other.connection_count(), other_connections);
    assert_eq!(moved_to.connection_count(), 1);

    // Removing one: it goes offline with a reason, the others stay.
    std::fs::write(
        &path,
        site(&[
            ("a", moved_to.local_addr(), None),
            ("b", other.local_addr(), None),
        ]),
    )
    .unwrap();
    let summary = gw.reload(&path).await.unwrap();
    assert_eq!(summary.removed, ["c"]);
    panel.until_event("c", "online", json!(false)).await;
    panel
        .command(json!("p4"), "c", "power", json!({"on": false}))
        .await;
    assert_eq!(
        panel.result(json!("p4")).await["error"]["code"],
        "unknown_device"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_pages_are_swapped_by_a_reload() {
    let proj = projector(None).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    let page = |title: &str| {
        format!(
            "title = \"{title}\"\n[[pages]]\nid = \"main\"\ntitle = \"Main\"\n[[pages.widgets]]\ntype = \"display_power\"\ndevice = \"proj\"\nlabel = \"Projector\"\n"
        )
    };
    std::fs::write(dir.path().join("lobby.toml"), page("Lobby")).unwrap();
    std::fs::write(dir.path().join("lecture.toml"), page("Lecture hall")).unwrap();
    let site = |panel: &str| {
        format!(
            "{}[panels.{panel}]\nfile = \"{panel}.toml\"\n",
            site_toml(&[("proj", proj.local_addr(), None)], "")
        )
    };
    std::fs::write(&path, site("lobby")).unwrap();
    let gw = Gateway::start(load_site(&path).unwrap()).await.unwrap();
    assert!(
        http_get(gw.local_addr(), "/panel/lobby")
            .await
            .contains("Lobby")
    );

    std::fs::write(&path, site("lecture")).unwrap();
    gw.reload(&path).await.expect("the new file is valid");
    assert!(
        http_get(gw.local_addr(), "/panel/lecture")
            .await
            .contains("Lecture hall")
    );
    let (status, body) = common::http_request(gw.local_addr(), "/panel/lobby", None).await;
    assert!(
        status.contains("404"),
        "the old page is gone: {status} {body}"
    );
    gw.shutdown().await;
}
