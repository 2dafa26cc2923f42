//! Who may do what: scoped tokens, Origin and Host checks, lockouts, identity-bound
//! command ids, TLS.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const VIEWER: &str = "viewer-secret-0001";
const LOBBY: &str = "lobby-secret-0002";
const OPS: &str = "ops-secret-0003";
const ADMIN: &str = "admin-secret-0004";

fn tokens() -> String {
    format!(
        "[[auth.tokens]]\nname = \"viewer\"\ntoken_sha256 = \"{}\"\nscopes = [\"read\"]\n\
         [[auth.tokens]]\nname = \"lobby\"\ntoken_sha256 = \"{}\"\nscopes = [\"read:proj-1\"]\n\
         [[auth.tokens]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\nscopes = [\"read\", \"control:proj-1/mute\"]\n\
         [[auth.tokens]]\nname = \"admin\"\ntoken_sha256 = \"{}\"\nscopes = [\"admin\", \"control\"]\n",
        sha256(VIEWER),
        sha256(LOBBY),
        sha256(OPS),
        sha256(ADMIN)
    )
}

fn sha256(secret: &str) -> String {
    avgate::auth::Secret::plain(secret).sha256_hex()
}

async fn http_with_headers(addr: SocketAddr, path: &str, headers: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.lines().next().unwrap_or_default().into(), body.into())
}

#[tokio::test]
async fn a_token_sees_only_what_its_read_scopes_cover_everywhere() {
    let (p1, p2) = (projector(None).await, projector(None).await);
    let site = site_toml(
        &[
            ("proj-1", p1.local_addr(), None),
            ("proj-2", p2.local_addr(), None),
        ],
        &tokens(),
    );
    let gw = gateway(&site).await;
    // An everything-reader waits until both projectors are polled.
    let (mut watcher, _) = Panel::hello(&gw, json!({"type": "hello", "token": VIEWER})).await;
    watcher.next().await;
    watcher.until_set("proj-1", "power").await;
    watcher.until_set("proj-2", "power").await;

    let (mut lobby, _) = Panel::hello(
        &gw,
        json!({"type": "hello", "token": LOBBY, "subscribe": ["proj-*"]}),
    )
    .await;
    lobby.filtered = true;
    let snapshot = lobby.next().await;
    assert_eq!(snapshot["type"], "snapshot");
    let devices: Vec<&String> = snapshot["devices"].as_object().unwrap().keys().collect();
    assert_eq!(devices, ["proj-1"], "snapshot: {snapshot}");

    // Asking for proj-2 explicitly changes nothing.
    lobby
        .send(json!({"type": "subscribe", "patterns": ["proj-2"]}))
        .await;
    p2.set_power_on(true);
    p1.set_power_on(true);
    watcher.until_event("proj-2", "power", json!("on")).await;
    watcher.until_event("proj-1", "power", json!("on")).await;
    let mut seen_proj_1 = false;
    while !seen_proj_1 {
        let message = lobby.next().await;
        let text = message.to_string();
        // `subscribed` echoes the panel's own patterns; nothing else may name proj-2.
        assert!(
            message["type"] == "subscribed" || !text.contains("proj-2"),
            "leaked: {text}"
        );
        seen_proj_1 = message["type"] == "event"
            && message["device"] == "proj-1"
            && message["point"] == "power"
            && message["value"] == "on";
    }

    let auth = |t: &str| format!("Host: {}\r\nAuthorization: Bearer {t}\r\n", gw.local_addr());
    for path in ["/api/state", "/api/devices"] {
        let (status, body) = http_with_headers(gw.local_addr(), path, &auth(LOBBY)).await;
        assert!(status.contains("200"), "{path}: {status}");
        assert!(
            body.contains("proj-1") && !body.contains("proj-2"),
            "{path}: {body}"
        );
    }
    let (status, _) = http_with_headers(gw.local_addr(), "/api/audit", &auth(VIEWER)).await;
    assert!(status.contains("403"), "audit needs admin: {status}");
    let (status, _) = http_with_headers(gw.local_addr(), "/api/audit", &auth(ADMIN)).await;
    assert!(status.contains("200"), "{status}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_foreign_origin_is_refused_before_the_upgrade_and_foreign_names_are_not_answered() {
    let proj = projector(None).await;
    let extra = "allowed_origins = [\"https://panels.example.edu\"]\n";
    let site = site_toml(&[("proj", proj.local_addr(), None)], "").replacen(
        "[server]\n",
        &format!("[server]\n{extra}"),
        1,
    );
    let gw = gateway(&site).await;
    let addr = gw.local_addr();
    let upgrade = |origin: Option<&str>| {
        let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", HeaderValue::from_str(origin).unwrap());
        }
        tokio_tungstenite::connect_async(request)
    };
    match upgrade(Some("http://evil.example.com")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("a foreign page must be refused before the upgrade: {other:?}"),
    }
    for ok in [
        Some(format!("http://{addr}")),
        Some("https://panels.example.edu".to_string()),
        None,
    ] {
        let connected = upgrade(ok.as_deref()).await;
        assert!(connected.is_ok(), "{ok:?}: {connected:?}");
    }
    // DNS rebinding: the page's own name in Host.
    let (status, _) =
        http_with_headers(addr, "/api/state", "Host: evil.example.com:8080\r\n").await;
    assert!(status.contains("421"), "{status}");
    let (status, _) = http_with_headers(addr, "/api/state", &format!("Host: {addr}\r\n")).await;
    assert!(status.contains("200"), "{status}");
    gw.shutdown().await;
}

/// A WebSocket connection from a chosen loopback address.
async fn hello_from(from: &str, gw: SocketAddr, token: &str) -> Value {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(gw).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{gw}/ws"), stream)
        .await
        .unwrap();
    use futures_util::{SinkExt, StreamExt};
    ws.send(json!({"type": "hello", "token": token}).to_string().into())
        .await
        .unwrap();
    let reply = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    serde_json::from_str(reply.to_text().unwrap()).unwrap()
}

#[tokio::test]
async fn wrong_tokens_lock_out_their_address_but_not_another() {
    let proj = projector(None).await;
    let gw = gateway(&site_toml(&[("proj", proj.local_addr(), None)], &tokens())).await;
    let addr = gw.local_addr();
    let mut refused = 0;
    for i in 0..20 {
        let reply = hello_from("127.0.0.1", addr, &format!("guess-{i:04}-xxxxxxxx")).await;
        assert_eq!(reply["code"], "unauthorized", "{reply}");
        refused += 1;
    }
    assert_eq!(refused, 20);
    let locked = hello_from("127.0.0.1", addr, VIEWER).await;
    assert_eq!(locked["code"], "unauthorized", "{locked}");
    assert!(
        locked["message"]
            .as_str()
            .unwrap()
            .contains("too many wrong tokens"),
        "{locked}"
    );
    let other = hello_from("127.0.0.2", addr, VIEWER).await;
    assert_eq!(
        other["type"], "welcome",
        "another address still works: {other}"
    );
    gw.shutdown().await;
}

#[test]
fn token_new_prints_a_secret_once_and_a_stanza_that_accepts_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_avgate"))
        .args([
            "token",
            "new",
            "lobby-panel",
            "--scopes",
            "read,control:proj-*",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("#   "))
        .expect("the secret line")
        .trim()
        .to_string();
    let stanza: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        !stanza.contains(&secret),
        "the site file holds only the digest"
    );
    assert!(stanza.contains(&sha256(&secret)), "{stanza}");
    let parsed = avgate::config::parse_site(std::path::Path::new("t.toml"), &stanza).unwrap();
    assert_eq!(parsed.auth[0].name, "lobby-panel");
    assert!(parsed.auth[0].scopes.can_control("proj-2", "power"));
    assert!(!parsed.auth[0].scopes.can_control("switcher", "route"));
}

#[tokio::test]
async fn wss_and_https_end_to_end_with_a_self_signed_certificate() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let proj = projector(None).await;
    let data = tempfile::tempdir().unwrap();
    let extra = format!(
        "[server.tls]\nself_signed = true\n[journal]\ndurable = false\ndata_dir = {:?}\n{}",
        data.path(),
        tokens()
    );
    let gw = gateway(&site_toml(&[("proj", proj.local_addr(), None)], &extra)).await;
    assert!(gw.url().starts_with("https://") && gw.ws_url().starts_with("wss://"));

    // The client trusts exactly the certificate the gateway made and kept.
    let cert = CertificateDer::from_pem_file(data.path().join("tls/cert.pem")).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::from(gw.local_addr().ip());

    let tcp = TcpStream::connect(gw.local_addr()).await.unwrap();
    let tls = connector
        .connect(name.clone(), tcp)
        .await
        .expect("TLS handshake");
    let (mut ws, _) = tokio_tungstenite::client_async(gw.ws_url(), tls)
        .await
        .expect("wss upgrade");
    use futures_util::{SinkExt, StreamExt};
    ws.send(json!({"type": "hello", "token": VIEWER}).to_string().into())
        .await
        .unwrap();
    let welcome = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let welcome: Value = serde_json::from_str(welcome.to_text().unwrap()).unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");

    let tcp = TcpStream::connect(gw.local_addr()).await.unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!(
        "GET /api/state HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {VIEWER}\r\nConnection: close\r\n\r\n",
        gw.local_addr()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"proj\""), "{response}");

    // Plain HTTP on the TLS port gets nothing useful.
    let (status, _) = http_with_headers(
        gw.local_addr(),
        "/api/state",
        &format!("Host: {}\r\n", gw.local_addr()),
    )
    .await;
    assert!(
        !status.contains("200"),
        "plain HTTP must not be served: {status:?}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_command_outside_the_tokens_scopes_is_forbidden_audited_and_never_reaches_the_device() {
    let proj = projector(None).await;
    let gw = gateway(&site_toml(
        &[("proj-1", proj.local_addr(), None)],
        &tokens(),
    ))
    .await;
    let (mut viewer, _) = Panel::hello(&gw, json!({"type": "hello", "token": VIEWER})).await;
    viewer.until_set("proj-1", "power").await;
    let (mut ops, _) = Panel::hello(&gw, json!({"type": "hello", "token": OPS})).await;
    let mutes_before = mutes(&proj);

    viewer
        .command(json!("v1"), "proj-1", "mute", json!({"audio": true}))
        .await;
    let refused = viewer.result(json!("v1")).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    ops.command(json!("o1"), "proj-1", "power", json!({"on": true}))
        .await;
    let refused = ops.result(json!("o1")).await;
    assert_eq!(
        refused["error"]["code"], "forbidden",
        "only mute: {refused}"
    );
    // Not even the list of devices leaks to a token that may not see them.
    ops.command(json!("o2"), "nope", "mute", json!({"audio": true}))
        .await;
    assert_eq!(ops.result(json!("o2")).await["error"]["code"], "forbidden");
    ops.command(json!("o3"), "proj-1", "mute", json!({"audio": true}))
        .await;
    assert_eq!(ops.result(json!("o3")).await["ok"], true);
    assert_eq!(
        mutes(&proj) - mutes_before,
        1,
        "only the allowed command reached the device"
    );
    assert!(
        !proj
            .commands_received()
            .iter()
            .any(|c| c.starts_with("%1POWR 1")),
        "the forbidden power command never reached the device"
    );

    let (status, body) = http_with_headers(
        gw.local_addr(),
        "/api/audit",
        &format!(
            "Host: {}\r\nAuthorization: Bearer {ADMIN}\r\n",
            gw.local_addr()
        ),
    )
    .await;
    assert!(status.contains("200"), "{status}");
    let audit: Value = serde_json::from_str(&body).unwrap();
    let forbidden: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["error"]["code"] == "forbidden")
        .collect();
    assert_eq!(forbidden.len(), 3, "{audit}");
    assert!(
        forbidden
            .iter()
            .any(|e| e["token"] == "viewer" && e["peer"] == "127.0.0.1")
    );
    assert!(
        forbidden
            .iter()
            .any(|e| e["token"] == "ops" && e["command"] == "power")
    );
    gw.shutdown().await;
}

fn mutes(proj: &avgate_drivers::pjlink::simulator::Handle) -> usize {
    proj.commands_received()
        .iter()
        .filter(|c| c.starts_with("%1AVMT ") && !c.ends_with('?'))
        .count()
}

#[tokio::test]
async fn two_tokens_claiming_the_same_client_and_ids_never_share_them() {
    let proj = projector(None).await;
    let gw = gateway(&site_toml(
        &[("proj-1", proj.local_addr(), None)],
        &tokens(),
    ))
    .await;
    let hello = |token: &str| json!({"type": "hello", "token": token, "client": "lobby-panel"});
    let (mut lobby, _) = Panel::hello(&gw, hello(ADMIN)).await;
    lobby.until_set("proj-1", "power").await;
    let (mut guest, _) = Panel::hello(&gw, hello(OPS)).await;
    let before = mutes(&proj);

    // The guest sends first, with the id the real lobby panel will use next.
    guest
        .command(json!("next-1"), "proj-1", "mute", json!({"audio": true}))
        .await;
    assert_eq!(guest.result(json!("next-1")).await["ok"], true);
    lobby
        .command(json!("next-1"), "proj-1", "mute", json!({"video": true}))
        .await;
    let accepted = lobby
        .until("accepted", |m| {
            m["type"] == "accepted" && m["id"] == "next-1"
        })
        .await;
    assert!(
        accepted.get("duplicate").is_none(),
        "not pre-empted: {accepted}"
    );
    assert_eq!(lobby.result(json!("next-1")).await["ok"], true);
    assert_eq!(mutes(&proj) - before, 2, "both commands ran");
    gw.shutdown().await;
}

#[tokio::test]
async fn commands_beyond_the_panel_rate_are_refused_without_being_queued() {
    let proj = projector(None).await;
    let site = site_toml(
        &[("proj-1", proj.local_addr(), None)],
        "[commands]\npanel_rate = 1\npanel_burst = 3\nqueue = 100\n",
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    for i in 0..5 {
        panel
            .command(
                json!(i),
                "proj-1",
                "input",
                json!({"source": format!("hdmi{}", i % 2 + 1)}),
            )
            .await;
    }
    let mut codes = Vec::new();
    while codes.len() < 5 {
        let result = panel.until("a result", |m| m["type"] == "result").await;
        codes.push(result["error"]["code"].as_str().unwrap_or("ok").to_string());
    }
    let limited = codes.iter().filter(|c| *c == "rate_limited").count();
    assert_eq!(limited, 2, "a burst of 3, then one a second: {codes:?}");
    gw.shutdown().await;
}
