//! Secrets never leave the gateway: not in its log (at debug level), its JSON API or its
//! audit log — token secrets, a wrong token a panel tried, or a device's password. One
//! test in this file: it installs the process's log subscriber.

mod common;

use common::*;
use serde_json::json;

const PLAIN: &str = "plain-secret-AAAA1111";
const HASHED: &str = "hashed-secret-BBBB2222";
const GUESS: &str = "guessed-secret-CCCC3333";
const DEVICE_PASSWORD: &str = "projector-pw-DDDD4444";

#[tokio::test]
async fn secrets_stay_out_of_logs_the_api_and_the_audit_log() {
    let captured = CapturedLog::install("avgate=debug,avgate_drivers=debug");

    let proj = projector(Some(DEVICE_PASSWORD)).await;
    let tokens = format!(
        "[[auth.tokens]]\nname = \"lobby\"\ntoken = \"{PLAIN}\"\n\
         [[auth.tokens]]\nname = \"support\"\ntoken_sha256 = \"{}\"\nscopes = [\"admin\", \"control\"]\n",
        avgate::auth::Secret::plain(HASHED).sha256_hex()
    );
    let gw = gateway(&site_toml(
        &[("proj", proj.local_addr(), Some(DEVICE_PASSWORD))],
        &tokens,
    ))
    .await;

    let mut refused = Panel::connect(&gw).await;
    refused.send(json!({"type": "hello", "token": GUESS})).await;
    assert_eq!(refused.next().await["code"], "unauthorized");
    let (mut lobby, _) = Panel::hello(&gw, json!({"type": "hello", "token": PLAIN})).await;
    lobby.until_set("proj", "power").await;
    lobby
        .command(json!("m1"), "proj", "mute", json!({"audio": true}))
        .await;
    assert_eq!(lobby.result(json!("m1")).await["ok"], true);

    let mut answers = String::new();
    for path in ["/api/state", "/api/devices", "/api/audit", "/healthz"] {
        let (status, body) = http_request(gw.local_addr(), path, Some(HASHED)).await;
        assert!(status.contains("200"), "{path}: {status}");
        answers += &body;
    }
    let (status, _) = http_request(gw.local_addr(), "/api/state", Some(GUESS)).await;
    assert!(status.contains("401"), "{status}");
    assert!(
        answers.contains("\"lobby\""),
        "the audit names the token: {answers}"
    );
    lobby.close().await;
    gw.shutdown().await;

    let log = captured.text();
    assert!(
        log.contains("token accepted"),
        "debug logging was on:\n{log}"
    );
    for secret in [PLAIN, HASHED, GUESS, DEVICE_PASSWORD] {
        assert!(!log.contains(secret), "{secret} in the log");
        assert!(!answers.contains(secret), "{secret} in an API answer");
    }
}
