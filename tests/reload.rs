//! Reloading the site file: only what changed restarts, panels keep their sessions and
//! hear about it, and a file with problems changes nothing.

mod common;

use avgate::Gateway;
use avgate::config::load_site;
use avgate::reload::{ReloadError, SITE};
use common::{DEADLINE, Panel, http_get, projector, site_toml};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

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

/// Whether the gateway closes `socket` without a byte (refused at the accept).
async fn closed_by_gateway(mut socket: TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(DEADLINE, socket.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowered_limits_hold_at_once_for_new_connections_and_the_open_session() {
    let proj = projector(None).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    let site = |server: &str, commands: &str| {
        format!(
            "{}[commands]\n{commands}\n",
            site_toml(&[("proj", proj.local_addr(), None)], server)
        )
    };
    let roomy = "max_connections = 100\nmax_connections_per_peer = 100\n";
    std::fs::write(&path, site(roomy, "")).unwrap();
    let gw = Gateway::start(load_site(&path).unwrap()).await.unwrap();
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_set("proj", "power").await;

    // One connection, one command at once and one a second from now on.
    let tight = "max_connections = 1\nmax_connections_per_peer = 1\n";
    std::fs::write(&path, site(tight, "panel_rate = 1\npanel_burst = 1\n")).unwrap();
    let summary = gw.reload(&path).await.expect("the new file is valid");
    assert!(
        summary.needs_restart.is_empty(),
        "limits reload: {summary:?}"
    );
    assert!(
        summary.changed.is_empty(),
        "no device restarted: {summary:?}"
    );

    // The panel holds the only slot: a new connection is closed unread.
    let newcomer = TcpStream::connect(gw.local_addr()).await.unwrap();
    assert!(closed_by_gateway(newcomer).await, "over the lowered cap");

    // The open session sends 20 commands back to back: the bucket it had (1,000 at once)
    // was cut to the new burst, so at most one, plus one per second taken, gets through.
    let sent_at = tokio::time::Instant::now();
    for i in 0..20 {
        panel
            .command(
                json!(format!("r{i}")),
                "proj",
                "power",
                json!({"on": i % 2 == 0}),
            )
            .await;
    }
    let (mut ran, mut limited) = (0u64, Vec::new());
    while ran + (limited.len() as u64) < 20 {
        let message = panel.next().await;
        assert!(
            message["type"] != "welcome" && message["type"] != "snapshot",
            "the panel kept its session: {message}"
        );
        if message["type"] != "result" {
            continue;
        }
        match message["error"]["code"].as_str() {
            Some("rate_limited") => limited.push(message),
            _ => ran += 1,
        }
    }
    let seconds = sent_at.elapsed().as_secs();
    assert!(
        ran <= 1 + seconds,
        "{ran} commands ran in {seconds} s under 1 at once and 1 a second"
    );
    let refusal = limited[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        refusal.contains("1 at once, then one every 1s"),
        "the refusal names the new limit: {refusal}"
    );

    // Raised again: new panels get in, and the key that cannot change is named.
    std::fs::write(
        &path,
        site(roomy, "").replace("ping_interval = \"5s\"", "ping_interval = \"7s\""),
    )
    .unwrap();
    let summary = gw.reload(&path).await.expect("the new file is valid");
    assert_eq!(summary.needs_restart, ["server.ping_interval"]);
    let again = gw.reload(&path).await.expect("the same file");
    assert_eq!(
        again.needs_restart,
        ["server.ping_interval"],
        "still waiting for a restart"
    );
    let (_second, welcome) = Panel::hello(&gw, json!({"type": "hello"})).await;
    assert_eq!(welcome["resumed"], false);
    panel
        .command(json!("after"), "proj", "power", json!({"on": true}))
        .await;
    // The projector may still be warming up from the commands above; the command reaching
    // it at all is what matters here.
    let result: Value = panel.result(json!("after")).await;
    assert_ne!(result["error"]["code"], "rate_limited", "{result}");
    gw.shutdown().await;
}

/// A TLS client that trusts only `cert_pem`, and the certificate the server showed it.
async fn tls_handshake(
    addr: std::net::SocketAddr,
    cert_pem: &std::path::Path,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    use std::sync::Arc;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert_pem).unwrap())
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(
        DEADLINE,
        connector.connect(ServerName::from(addr.ip()), tcp),
    )
    .await
    .expect("a handshake in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_a_renewed_certificate_and_open_panels_stay() {
    use futures_util::{SinkExt, StreamExt};
    let proj = projector(None).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    let cert = dir.path().join("data/tls/cert.pem");
    // A self-signed certificate is made again when the names it covers change: the
    // same as a renewed certificate file.
    let site = |name: &str| {
        format!(
            "{}[server.tls]\nself_signed = true\nnames = [\"{name}\"]\n[journal]\ndurable = false\ndata_dir = \"data\"\n",
            site_toml(&[("proj", proj.local_addr(), None)], "")
        )
    };
    std::fs::write(&path, site("first.example")).unwrap();
    let gw = Gateway::start(load_site(&path).unwrap()).await.unwrap();
    let first = dir.path().join("first.pem");
    std::fs::copy(&cert, &first).unwrap();

    let tls = tls_handshake(gw.local_addr(), &first)
        .await
        .expect("the first certificate");
    let (mut panel, _) = tokio_tungstenite::client_async(gw.ws_url(), tls)
        .await
        .expect("wss upgrade");
    panel
        .send(json!({"type": "hello"}).to_string().into())
        .await
        .unwrap();
    let welcome = tokio::time::timeout(DEADLINE, panel.next()).await.unwrap();
    assert!(
        welcome
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .contains("welcome")
    );

    std::fs::write(&path, site("second.example")).unwrap();
    let summary = gw.reload(&path).await.expect("the new file is valid");
    assert!(summary.needs_restart.is_empty(), "{summary:?}");
    let second = dir.path().join("second.pem");
    std::fs::copy(&cert, &second).unwrap();
    assert_ne!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap(),
        "a new certificate was made"
    );
    assert!(
        tls_handshake(gw.local_addr(), &second).await.is_ok(),
        "new connections get the new certificate"
    );
    assert!(
        tls_handshake(gw.local_addr(), &first).await.is_err(),
        "and no longer the old one"
    );

    // The panel that connected under the old certificate keeps its session.
    panel
        .send(json!({"type": "ping"}).to_string().into())
        .await
        .unwrap();
    let pong = loop {
        let message = tokio::time::timeout(DEADLINE, panel.next())
            .await
            .expect("an answer in time")
            .expect("open")
            .expect("readable");
        let text = message.to_text().unwrap_or_default().to_string();
        if text.contains("\"pong\"") {
            break text;
        }
    };
    assert!(pong.contains("pong"));

    // A certificate that cannot be loaded changes nothing.
    std::fs::write(
        &path,
        site("x").replace(
            "self_signed = true\nnames = [\"x\"]",
            "cert = \"missing.pem\"\nkey = \"missing-key.pem\"",
        ),
    )
    .unwrap();
    let refused = gw.reload(&path).await.expect_err("no such files");
    assert!(refused.to_string().contains("missing.pem"), "{refused}");
    assert!(tls_handshake(gw.local_addr(), &second).await.is_ok());
    gw.shutdown().await;
}
