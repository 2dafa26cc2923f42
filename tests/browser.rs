//! The built-in panels in a real browser (Debian's headless Chromium over WebDriver)
//! against the demo room's simulators: the room page, a TOML panel page, a link that goes
//! silent, a reload in the middle of a command, touch-target sizes at four screen sizes,
//! ten sessions at once, and press → state latency.
//!
//! Without chromium and chromedriver each test prints a `SKIP` line (and fails under
//! `CI=true`). Screenshots land in target/browser-screenshots/.

mod browser_support;
mod common;

use std::time::Duration;

use avgate::Gateway;
use avgate::demo::DemoRoom;
use browser_support::*;
use common::{DEADLINE, Panel, http_get};
use serde_json::{Value, json};

/// The demo room and a gateway for it; `ping` replaces the site's ping interval.
async fn state(gateway: &Gateway) -> Value {
    serde_json::from_str(&http_get(gateway.local_addr(), "/api/state").await).expect("state JSON")
}

/// JSON with every number as a float: the browser has no integer 0 apart from 0.0.
fn as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(items) => Value::Array(items.iter().map(as_floats).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), as_floats(v))).collect())
        }
        other => other.clone(),
    }
}

/// Audit entries for `device` (newest first).
async fn audit(gateway: &Gateway, device: &str) -> Vec<Value> {
    let body = http_get(gateway.local_addr(), &format!("/api/audit?device={device}")).await;
    serde_json::from_str(&body).expect("audit JSON")
}

const POWER_ON: &str =
    r#"[data-widget="display_power"][data-device="proj-left"] [data-action="on"]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_page_powers_on_selects_an_input_routes_and_is_quick() {
    let Some(driver) = driver("room_page_powers_on_selects_an_input_routes_and_is_quick") else {
        return;
    };
    let (room, gateway) = demo_gateway(None).await;
    let browser = Browser::open(&driver, 1280, 800).await;
    browser
        .open_panel(&format!("http://{}/", gateway.local_addr()))
        .await;

    // Power on: the button is pending until the result, the card says it is warming up,
    // then the projector's real state (on) is selected.
    browser
        .js(
            r#"const b = document.querySelector(arguments[0]); window.seenClasses = [];
               new MutationObserver(() => window.seenClasses.push(b.className)).observe(b, {attributes: true, attributeFilter: ["class"]});"#,
            vec![json!(POWER_ON)],
        )
        .await;
    browser.click(POWER_ON).await;
    browser
        .until(
            "the warming-up progress",
            r#"[...document.querySelectorAll('[data-widget="display_power"][data-device="proj-left"] .chip')].find(c => !c.hidden && c.textContent.includes("Warming up"))"#,
        )
        .await;
    // Each part of the progress ("Warming up ·", "0:01 of ~0:02", the bar) stays whole on
    // its line, however narrow the card: a part that does not fit moves down entire.
    let broken = browser
        .js(
            r#"const chip = [...document.querySelectorAll('[data-widget="display_power"][data-device="proj-left"] .chip')].find(c => !c.hidden);
               return [...chip.querySelectorAll("span")].filter(part => {
                 const lines = document.createRange(); lines.selectNodeContents(part);
                 return new Set([...lines.getClientRects()].map(r => Math.round(r.top))).size > 1;
               }).map(part => part.textContent);"#,
            vec![],
        )
        .await;
    assert_eq!(broken, json!([]), "progress parts broken over lines");
    browser
        .screenshot(&screenshot_dir().join("power-warming-1280x800.png"))
        .await;
    browser
        .until(
            "power on, selected from the device's state",
            &format!(
                r#"document.querySelector('{POWER_ON}').classList.contains("is-selected") && !document.querySelector('{POWER_ON}').classList.contains("is-pending")"#
            ),
        )
        .await;
    // The panel remembers how long warming took (the simulator takes 2 s), for a
    // determinate bar next time.
    let warming_ms = browser
        .until(
            "the warm-up time remembered",
            r#"Number(localStorage.getItem("avgate:proj-left:warming-ms"))"#,
        )
        .await
        .as_f64()
        .unwrap();
    assert!(
        (1000.0..10_000.0).contains(&warming_ms),
        "remembered {warming_ms} ms"
    );
    let seen = browser.js("return window.seenClasses", vec![]).await;
    assert!(
        seen.as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().contains("is-pending")),
        "the button was never pending: {seen}"
    );
    assert_eq!(
        state(&gateway).await["devices"]["proj-left"]["points"]["power"],
        "on"
    );

    // An input from the projector's own list.
    let hdmi2 =
        r#"[data-widget="source_select"][data-device="proj-left"] [data-action="source-hdmi2"]"#;
    browser.click(hdmi2).await;
    browser
        .until(
            "HDMI 2 selected",
            &format!(r#"document.querySelector('{hdmi2}').classList.contains("is-selected")"#),
        )
        .await;
    assert_eq!(
        state(&gateway).await["devices"]["proj-left"]["points"]["input"],
        "hdmi2"
    );

    // A route: output 2's tile, then input 3 in the chooser; the tile shows the new route.
    browser
        .click(r#"[data-widget="route"][data-device="switcher"] [data-action="output-2"]"#)
        .await;
    browser
        .click(r#".sheet:not([hidden]) [data-action="input-3"]"#)
        .await;
    browser
        .until(
            "output 2 showing input 3",
            r#"(t => t.dataset.input === "3" && t.textContent.includes("Input 3"))(document.querySelector('[data-widget="route"][data-device="switcher"] [data-action="output-2"]'))"#,
        )
        .await;
    assert_eq!(
        state(&gateway).await["devices"]["switcher"]["points"]["route.2"],
        3
    );

    // Latency, press to accepted and press to the device's new state on screen: on a
    // display (its profile paces MDC commands 50 ms apart, so the read-back waits) and on
    // a Modbus outlet (no pacing).
    let display = [
        r#"[data-widget="source_select"][data-device="display"] [data-action="source-room_pc"]"#,
        r#"[data-widget="source_select"][data-device="display"] [data-action="source-laptop"]"#,
    ];
    let outlet = [
        r#"[data-widget="toggle"][data-point="outlet.5"] [data-action="on"]"#,
        r#"[data-widget="toggle"][data-point="outlet.5"] [data-action="off"]"#,
    ];
    for (what, device, buttons) in [
        ("display input, Samsung MDC", "display", display),
        ("outlet, Modbus TCP", "sequencer", outlet),
    ] {
        latency(&browser, what, device, buttons).await;
    }

    browser.close().await;
    finish(room, gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_shows_the_overlay_then_resumes_exactly_and_runs_the_tap_once() {
    let Some(driver) =
        driver("a_silent_link_shows_the_overlay_then_resumes_exactly_and_runs_the_tap_once")
    else {
        return;
    };
    let ping = Duration::from_secs(2);
    let (room, gateway) = demo_gateway(Some(ping)).await;
    let proxy = SilentProxy::start(gateway.local_addr()).await;
    let browser = Browser::open(&driver, 1280, 800).await;
    browser.open_panel(&format!("http://{}/", proxy.addr)).await;
    browser
        .js(
            r#"window.marker = "still here";
               const overlay = document.getElementById("overlay");
               new MutationObserver(() => { if (!overlay.hidden && window.overlayAt === undefined) window.overlayAt = performance.now(); })
                 .observe(overlay, { attributes: true, attributeFilter: ["hidden"] });"#,
            vec![],
        )
        .await;
    let outlet = r#"[data-widget="toggle"][data-point="outlet.3"] [data-action="on"]"#;
    assert_eq!(
        state(&gateway).await["devices"]["sequencer"]["points"]["outlet.3"],
        false
    );

    let silent_at = browser.js("return performance.now()", vec![]).await;
    proxy.set_silent(true);
    // Tapped after the link died, before the panel could know: it must run, once.
    browser.click(outlet).await;

    // Meanwhile the room changes behind the panel's back.
    let (mut other, _) = Panel::hello(&gateway, json!({"type": "hello"})).await;
    other
        .command(
            json!("other-1"),
            "display",
            "input",
            json!({"source": "signage"}),
        )
        .await;
    assert_eq!(other.result(json!("other-1")).await["ok"], true);

    browser
        .until("the connection-lost overlay", "window.overlayAt")
        .await;
    let overlay_after = browser
        .js("return window.overlayAt - arguments[0]", vec![silent_at])
        .await
        .as_f64()
        .unwrap();
    println!(
        "OVERLAY shown {overlay_after:.0} ms after the link went silent (ping interval {ping:?})"
    );
    assert!(
        overlay_after <= 2.0 * ping.as_millis() as f64,
        "overlay took {overlay_after} ms, more than two ping intervals"
    );
    assert_eq!(
        browser
            .js(r#"return document.getElementById("pages").inert"#, vec![])
            .await,
        true,
        "controls stay usable while the link is down"
    );
    assert_eq!(
        audit(&gateway, "sequencer").await.len(),
        0,
        "the tap crossed a silent link"
    );

    proxy.set_silent(false);
    browser
        .until(
            "the panel live again",
            r#"window.avgatePanel.status.state === "live" && document.getElementById("overlay").hidden"#,
        )
        .await;
    assert_eq!(
        browser
            .js("return window.avgatePanel.status.resumed", vec![])
            .await,
        true
    );
    assert_eq!(
        browser.js("return window.marker", vec![]).await,
        "still here",
        "the page was reloaded"
    );
    browser
        .until(
            "the tapped outlet on",
            &format!(r#"(b => b.dataset.result === "ok" && b.classList.contains("is-selected"))(document.querySelector('{outlet}'))"#),
        )
        .await;
    browser
        .until(
            "the input changed during the outage",
            r#"document.querySelector('[data-widget="source_select"][data-device="display"] [data-action="source-signage"]').classList.contains("is-selected")"#,
        )
        .await;
    let writes = audit(&gateway, "sequencer").await;
    assert_eq!(
        writes.len(),
        1,
        "the outlet was driven {} times: {writes:?}",
        writes.len()
    );
    assert_eq!(
        writes[0]["args"],
        json!({"point": "outlet.3", "value": true})
    );

    // Exactly the gateway's state: every device's points, nothing more, nothing less.
    let page_state = r#"const out = {};
        for (const [id, d] of window.avgatePanel.devices) out[id] = { online: d.online, points: Object.fromEntries([...d.points].map(([k, v]) => [k, v.value])) };
        return out;"#;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let gateway_state = state(&gateway).await["devices"].clone();
        let page = browser.js(page_state, vec![]).await;
        let expected: serde_json::Map<String, Value> = gateway_state
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, d)| {
                (
                    id.clone(),
                    json!({"online": d["online"], "points": d["points"]}),
                )
            })
            .collect();
        if as_floats(&page) == as_floats(&Value::Object(expected.clone())) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "page state differs from the gateway's:\npage: {page}\ngateway: {}",
            Value::Object(expected)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    other.close().await;
    browser.close().await;
    drop(proxy);
    finish(room, gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_mid_command_still_shows_the_result_and_drives_the_device_once() {
    let Some(driver) =
        driver("a_reload_mid_command_still_shows_the_result_and_drives_the_device_once")
    else {
        return;
    };
    let (room, gateway) = demo_gateway(None).await;
    let browser = Browser::open(&driver, 1280, 800).await;
    browser
        .open_panel(&format!("http://{}/", gateway.local_addr()))
        .await;
    let signage =
        r#"[data-widget="source_select"][data-device="display"] [data-action="source-signage"]"#;
    // The display takes 2 s to answer (twice, in case a poll takes the first delay), so
    // the old page is gone before the result: the command is mid-flight at the reload.
    for _ in 0..2 {
        room.display
            .inject(avgate_drivers::mdc::simulator::Fault::Delay(
                Duration::from_secs(2),
            ));
    }
    browser
        .js(
            "window.marker = 1; document.querySelector(arguments[0]).click(); location.reload();",
            vec![json!(signage)],
        )
        .await;
    browser
        .until(
            "the reloaded page, live",
            "window.marker === undefined && document.body.dataset.ready === 'true' && window.avgatePanel.status.state === 'live'",
        )
        .await;
    browser
        .until(
            "the command's result on the reloaded page",
            &format!(r#"(b => b.dataset.result === "ok" && b.classList.contains("is-selected"))(document.querySelector('{signage}'))"#),
        )
        .await;
    assert_eq!(
        browser
            .js("return window.avgatePanel.pending().length", vec![])
            .await,
        0
    );
    let entries = audit(&gateway, "display").await;
    assert_eq!(
        entries.len(),
        1,
        "the display was driven {} times: {entries:?}",
        entries.len()
    );
    assert_eq!(entries[0]["args"], json!({"source": "signage"}));
    // And the display itself saw one "set input" frame (MDC command 0x14 with one byte).
    let sets: Vec<String> = room
        .display
        .commands_received()
        .into_iter()
        .filter(|frame| frame.starts_with("AA 14 ") && frame.split(' ').nth(3) == Some("01"))
        .collect();
    assert_eq!(sets.len(), 1, "input set frames: {sets:?}");
    browser.close().await;
    finish(room, gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toml_panel_page_button_drives_its_device() {
    let Some(driver) = driver("a_toml_panel_page_button_drives_its_device") else {
        return;
    };
    let (room, gateway) = demo_gateway(None).await;
    let browser = Browser::open(&driver, 1280, 800).await;
    browser
        .open_panel(&format!("http://{}/panel/demo", gateway.local_addr()))
        .await;
    assert_eq!(
        state(&gateway).await["devices"]["sequencer"]["points"]["outlet.3"],
        false
    );
    let button = r#"[data-widget="button"][data-device="sequencer"] button"#;
    browser.click(button).await;
    browser
        .until(
            "the button's result",
            &format!(r#"document.querySelector('{button}').dataset.result === "ok""#),
        )
        .await;
    assert_eq!(
        state(&gateway).await["devices"]["sequencer"]["points"]["outlet.3"],
        true
    );
    // Its page link leads to the camera page.
    browser.click(r#"[data-action="page-camera"]"#).await;
    browser
        .until(
            "the camera page",
            r#"!document.querySelector('main[data-page="camera"]').hidden && document.querySelector('main[data-page="present"]').hidden"#,
        )
        .await;
    browser.close().await;
    finish(room, gateway).await;
}

/// A bad binding in a panel page fails `avgate check-config`, pointing at the line.
#[test]
fn a_bad_panel_binding_fails_check_config_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("panels")).unwrap();
    std::fs::write(
        dir.path().join("site.toml"),
        "[devices.display]\nprofile = \"samsung-qmr\"\naddress = \"127.0.0.1:1515\"\n\n[panels.lobby]\nfile = \"panels/lobby.toml\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("panels/lobby.toml"),
        "title = \"Lobby\"\n\n[[pages]]\nid = \"home\"\n\n[[pages.widgets]]\ntype = \"source_select\"\ndevice = \"display\"\nsources = [{ label = \"Laptop\", value = \"laptop\" }, { label = \"Apple TV\", value = \"hdmi4\" }]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_avgate"))
        .arg("check-config")
        .arg(dir.path().join("site.toml"))
        .output()
        .expect("avgate runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("panels/lobby.toml:9:52: `input` on device `display`: argument `source`: expected one of laptop, room_pc, displayport, dvi, signage, got \"hdmi4\""),
        "{stderr}"
    );
}

const SIZES: [(u32, u32); 4] = [(1280, 800), (800, 1280), (1920, 1080), (390, 844)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_control_is_a_48px_touch_target_at_four_screen_sizes() {
    let Some(driver) = driver("every_control_is_a_48px_touch_target_at_four_screen_sizes") else {
        return;
    };
    let (room, gateway) = demo_gateway(None).await;
    let browser = Browser::open(&driver, 1280, 800).await;
    let measure = r#"
        const targets = 'button, input, select, a[href], summary, [role=button], [role=switch], [role=radio], [role=tab], [role=slider]';
        const small = [];
        let count = 0;
        for (const el of document.querySelectorAll(targets)) {
          const r = el.getBoundingClientRect();
          if (r.width === 0 && r.height === 0) continue;   // not displayed (another page, a closed sheet)
          count++;
          if (r.width < 48 || r.height < 48) small.push(el.outerHTML.slice(0, 100) + " is " + r.width.toFixed(0) + "x" + r.height.toFixed(0));
        }
        return { count, small, overflow: document.documentElement.scrollWidth - window.innerWidth };"#;
    for (path, name) in [("/", "room"), ("/panel/demo", "demo-panel")] {
        for (width, height) in SIZES {
            browser.viewport(width, height).await;
            browser
                .open_panel(&format!("http://{}{path}", gateway.local_addr()))
                .await;
            let found = browser.js(measure, vec![]).await;
            let file = screenshot_dir().join(format!("{name}-{width}x{height}.png"));
            browser.screenshot(&file).await;
            println!(
                "{name} at {width}x{height}: {} controls measured; screenshot {}",
                found["count"],
                file.display()
            );
            assert!(found["count"].as_u64().unwrap() > 5, "{name}: {found}");
            assert_eq!(
                found["small"],
                json!([]),
                "{name} at {width}x{height}: controls under 48x48 px (the floor; 44 is the least allowed)"
            );
            assert!(
                found["overflow"].as_i64().unwrap() <= 0,
                "{name} at {width}x{height} scrolls sideways: {found}"
            );
        }
    }
    browser.close().await;
    finish(room, gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_browser_sessions_at_once_all_follow_the_room() {
    let Some(driver) = driver("ten_browser_sessions_at_once_all_follow_the_room") else {
        return;
    };
    let (room, gateway) = demo_gateway(None).await;
    let url = format!("http://{}/", gateway.local_addr());
    let browsers = futures_util::future::join_all((0..10).map(|_| async {
        let browser = Browser::open(&driver, 800, 1280).await;
        browser.open_panel(&url).await;
        browser
    }))
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&http_get(gateway.local_addr(), "/healthz").await).unwrap()["panels"],
        10
    );
    // One session changes the display's volume; every session shows it.
    let slider = r#"[data-widget="volume"][data-device="display"] input[type=range]"#;
    browsers[3]
        .js(
            r#"const s = document.querySelector(arguments[0]); s.value = 55;
               s.dispatchEvent(new Event("input")); s.dispatchEvent(new Event("change"));"#,
            vec![json!(slider)],
        )
        .await;
    for browser in &browsers {
        browser
            .until(
                "the new volume",
                r#"document.querySelector('[data-widget="volume"][data-device="display"] .level').textContent === "55 %""#,
            )
            .await;
    }
    assert_eq!(
        state(&gateway).await["devices"]["display"]["points"]["volume"],
        55
    );
    futures_util::future::join_all(browsers.into_iter().map(Browser::close)).await;
    finish(room, gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_is_greyed_and_its_controls_disabled_and_a_camera_stops_on_release() {
    let Some(driver) = driver(
        "an_offline_device_is_greyed_and_its_controls_disabled_and_a_camera_stops_on_release",
    ) else {
        return;
    };
    let (room, gateway) = demo_gateway(None).await;
    let browser = Browser::open(&driver, 1280, 800).await;
    browser
        .open_panel(&format!("http://{}/", gateway.local_addr()))
        .await;

    // Hold "pan left", then let go: a start, then a stop, nothing else.
    browser
        .js(
            r#"const b = document.querySelector('[data-widget="camera"][data-device="camera"] [data-action="pan-left"]');
               b.dispatchEvent(new PointerEvent("pointerdown", { bubbles: true, pointerId: 7 }));"#,
            vec![],
        )
        .await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while audit(&gateway, "camera").await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the camera never started moving"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser
        .js(
            r#"document.querySelector('[data-widget="camera"][data-device="camera"] [data-action="pan-left"]')
                 .dispatchEvent(new PointerEvent("pointerup", { bubbles: true, pointerId: 7 }));"#,
            vec![],
        )
        .await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let moves = loop {
        let moves = audit(&gateway, "camera").await;
        if moves.len() >= 2 {
            break moves;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stop after the release: {moves:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let directions: Vec<&Value> = moves
        .iter()
        .rev()
        .map(|m| &m["args"]["direction"])
        .collect();
    assert_eq!(directions, [&json!("left"), &json!("stop")]);

    // The right projector stops answering: its card says so, its controls go grey and
    // disabled, its last values are marked stale; the others stay usable.
    room.projectors[1].1.shutdown().await;
    let right = r#"[data-widget="display_power"][data-device="proj-right"]"#;
    browser
        .until(
            "the right projector offline",
            r#"document.querySelector('section[data-device="proj-right"] [data-badge]').textContent === "Offline""#,
        )
        .await;
    let shown = browser
        .js(
            r#"const w = document.querySelector(arguments[0]);
               return { offline: w.classList.contains("is-offline"), opacity: getComputedStyle(w).opacity,
                        disabled: [...w.querySelectorAll("button")].every(b => b.disabled && b.getAttribute("aria-disabled") === "true"),
                        stale: w.querySelector('[data-point="power"]').classList.contains("is-stale"),
                        selected: w.querySelectorAll(".is-selected").length,
                        others: [...document.querySelectorAll('[data-widget="display_power"][data-device="proj-left"] button')].every(b => !b.disabled) };"#,
            vec![json!(right)],
        )
        .await;
    assert_eq!(
        shown,
        json!({"offline": true, "opacity": "0.6", "disabled": true, "stale": true, "selected": 0, "others": true})
    );
    browser.close().await;
    finish(room, gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_the_panel_asks_to_sign_in_and_says_when_a_token_is_refused() {
    let Some(driver) =
        driver("with_tokens_the_panel_asks_to_sign_in_and_says_when_a_token_is_refused")
    else {
        return;
    };
    let room = DemoRoom::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .expect("demo room starts");
    let mut site = room.site.clone();
    site.auth = vec![avgate::config::AuthToken {
        name: "lobby-panel".into(),
        secret: avgate::auth::Secret::plain("correct-horse-battery"),
        scopes: avgate::auth::Scopes::panel_default(),
        priority: 0,
    }];
    let gateway = Gateway::start(site).await.expect("gateway starts");
    let browser = Browser::open(&driver, 390, 844).await;
    browser
        .goto(&format!("http://{}/", gateway.local_addr()))
        .await;
    browser
        .until(
            "the sign-in screen",
            r#"!document.getElementById("signin").hidden"#,
        )
        .await;
    let sign_in = r#"const f = document.getElementById("signin").querySelector("form");
        f.querySelector("input").value = arguments[0]; f.requestSubmit();"#;
    browser.js(sign_in, vec![json!("wrong-token-123")]).await;
    browser
        .until(
            "the refusal",
            r#"!document.getElementById("signin").hidden && document.getElementById("signin").querySelector(".error-text").textContent.includes("refused")"#,
        )
        .await;
    browser
        .js(sign_in, vec![json!("correct-horse-battery")])
        .await;
    browser
        .until(
            "the room page, live",
            "document.body.dataset.ready === 'true' && window.avgatePanel.status.state === 'live'",
        )
        .await;
    let kept = browser
        .js(
            r#"return [localStorage.getItem("avgate:token"), location.search]"#,
            vec![],
        )
        .await;
    assert_eq!(
        kept,
        json!(["correct-horse-battery", ""]),
        "the token belongs in storage, not the URL"
    );
    // A TOML panel page on the same tablet signs in with the stored token.
    browser
        .open_panel(&format!("http://{}/panel/demo", gateway.local_addr()))
        .await;
    browser.close().await;
    finish(room, gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_panel_directory_works_with_data_av_attributes_alone() {
    let Some(driver) = driver("a_site_panel_directory_works_with_data_av_attributes_alone") else {
        return;
    };
    // The example page docs/PANELS.md tells integrators to copy, as it is there.
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PANELS.md"))
        .expect("docs/PANELS.md");
    let page = docs
        .split("```html\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("an html example in docs/PANELS.md");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), page).unwrap();
    let room = DemoRoom::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .expect("demo room starts");
    let mut site = room.site.clone();
    site.panels.push(avgate::config::Panel {
        name: "lobby".into(),
        content: avgate::config::PanelContent::Dir(dir.path().to_path_buf()),
    });
    let gateway = Gateway::start(site).await.expect("gateway starts");
    let browser = Browser::open(&driver, 1280, 800).await;
    // Without the slash it redirects, so relative links in the page work.
    browser
        .goto(&format!("http://{}/panel/lobby", gateway.local_addr()))
        .await;
    let laptop = r#"[data-av-press='switcher route {"input":1,"output":1}']"#;
    browser
        .until(
            "the page, live, showing the projector",
            r#"location.pathname === "/panel/lobby/" && [...document.querySelectorAll("[data-av-text]")][0].textContent === "off" && document.getElementById("offline").hidden"#,
        )
        .await;
    browser
        .js(
            r#"const b = document.querySelector(arguments[0]); window.seen = [];
               new MutationObserver(() => window.seen.push(b.className)).observe(b, { attributes: true, attributeFilter: ["class"] });
               b.click();"#,
            vec![json!(laptop)],
        )
        .await;
    browser
        .until(
            "the laptop routed, from the switcher's own state",
            &format!(r#"document.querySelector(`{laptop}`).classList.contains("av-active") && !document.querySelector(`{laptop}`).classList.contains("av-pending")"#),
        )
        .await;
    let seen = browser.js("return window.seen", vec![]).await;
    assert!(
        seen.to_string().contains("av-pending"),
        "never pending: {seen}"
    );
    assert_eq!(
        state(&gateway).await["devices"]["switcher"]["points"]["route.1"],
        1
    );
    browser.close().await;
    finish(room, gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_command_shows_its_error_beside_the_control_and_an_idle_panel_goes_home() {
    let Some(driver) =
        driver("a_refused_command_shows_its_error_beside_the_control_and_an_idle_panel_goes_home")
    else {
        return;
    };
    let room = DemoRoom::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .expect("demo room starts");
    let mut site = room.site.clone();
    // A source the profile cannot rule out (PJLink inputs are free text) but the projector
    // does not have: only the device can refuse it.
    let page = avgate::config::panel::parse_panel_page(
        "wrong",
        std::path::Path::new("wrong.toml"),
        r#"title = "Wrong"
idle_timeout = "1s"
[[pages]]
id = "home"
[[pages.widgets]]
type = "source_select"
device = "proj-left"
sources = [{ label = "Apple TV", value = "appletv" }]
[[pages.widgets]]
type = "page_link"
page = "more"
[[pages]]
id = "more"
[[pages.widgets]]
type = "status"
device = "proj-left"
point = "lamp_hours"
"#,
        &site.devices,
        &[],
    )
    .expect("the page passes check-config");
    site.panels.push(avgate::config::Panel {
        name: "wrong".into(),
        content: avgate::config::PanelContent::Page(page),
    });
    let gateway = Gateway::start(site).await.expect("gateway starts");
    let browser = Browser::open(&driver, 1280, 800).await;
    browser
        .open_panel(&format!("http://{}/panel/wrong", gateway.local_addr()))
        .await;
    browser
        .until(
            "the projector online",
            r#"!document.querySelector('[data-action="source-appletv"]').disabled"#,
        )
        .await;
    browser.click(r#"[data-action="source-appletv"]"#).await;
    let shown = browser
        .until(
            "the error beside the control",
            r#"(b => b.dataset.result !== undefined && [b.dataset.result, b.classList.contains("is-error"), b.classList.contains("is-selected"),
                  b.closest(".widget").querySelector('[role="alert"]').textContent])(document.querySelector('[data-action="source-appletv"]'))"#,
        )
        .await;
    assert_eq!(shown[0], "invalid_args", "{shown}");
    assert_eq!(shown[1], true, "{shown}");
    assert_eq!(
        shown[2], false,
        "a refused source must not look selected: {shown}"
    );
    assert!(
        shown[3]
            .as_str()
            .unwrap()
            .contains("unknown input `appletv`"),
        "{shown}"
    );

    // Left on another page, the panel goes back home by itself after its idle timeout.
    browser.click(r#"[data-action="page-more"]"#).await;
    browser
        .until(
            "the second page",
            r#"!document.querySelector('main[data-page="more"]').hidden"#,
        )
        .await;
    browser
        .until(
            "home again after the idle timeout",
            r#"!document.querySelector('main[data-page="home"]').hidden && document.querySelector('main[data-page="more"]').hidden"#,
        )
        .await;
    browser.close().await;
    finish(room, gateway).await;
}

/// Presses two buttons in turn, 20 times, and prints press → accepted and press → the
/// pressed button selected from the device's state (p50/p95).
async fn latency(browser: &Browser, what: &str, device: &str, buttons: [&str; 2]) {
    let samples = browser
        .js_async(
            r#"const [device, buttons, done] = arguments;
               const gw = window.avgatePanel;
               (async () => {
                 const times = [];
                 for (let i = 0; i < 20; i++) {
                   const b = document.querySelector(buttons[i % 2]);
                   const t0 = performance.now();
                   let accepted, visible, result;
                   await new Promise((resolve) => {
                     const check = () => { if (accepted !== undefined && visible !== undefined && result) { stop(); mo.disconnect(); resolve(); } };
                     const stop = gw.onCommand((u) => {
                       if (u.device !== device) return;
                       if (u.phase === "accepted" && accepted === undefined) accepted = performance.now() - t0;
                       if (u.phase === "result") { result = u.result; check(); }
                     });
                     const mo = new MutationObserver(() => {
                       if (visible === undefined && b.classList.contains("is-selected")) { visible = performance.now() - t0; check(); }
                     });
                     mo.observe(b, { attributes: true, attributeFilter: ["class"] });
                     b.click();
                   });
                   times.push([accepted, visible, result.ok]);
                   // Let the page finish the frame before the next press.
                   await new Promise((r) => requestAnimationFrame(() => r()));
                 }
                 done(times);
               })();"#,
            vec![json!(device), json!(buttons)],
        )
        .await;
    let samples = samples.as_array().expect("latency samples");
    assert_eq!(samples.len(), 20);
    assert!(samples.iter().all(|s| s[2] == json!(true)), "{samples:?}");
    let accepted: Vec<f64> = samples.iter().map(|s| s[0].as_f64().unwrap()).collect();
    let visible: Vec<f64> = samples.iter().map(|s| s[1].as_f64().unwrap()).collect();
    println!(
        "LATENCY {what}: press→accepted p50 {:.1} ms p95 {:.1} ms; press→visible state p50 {:.1} ms p95 {:.1} ms ({} presses)",
        percentile(&accepted, 50.0),
        percentile(&accepted, 95.0),
        percentile(&visible, 50.0),
        percentile(&visible, 95.0),
        samples.len()
    );
}

/// avgate.js against a scripted gateway: a snapshot in two parts is applied whole, a new
/// snapshot removes what it lacks, an error code the library does not know still reaches
/// the page with its message, the resume point is sent back, and a command that waited
/// too long offline fails locally instead of being sent late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avgate_js_follows_snapshots_errors_and_expiry_from_a_scripted_gateway() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let Some(driver) =
        driver("avgate_js_follows_snapshots_errors_and_expiry_from_a_scripted_gateway")
    else {
        return;
    };
    // Any gateway serves the library; the page then talks to the scripted one.
    let room = DemoRoom::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .expect("demo room starts");
    let gateway = Gateway::start(room.site.clone())
        .await
        .expect("gateway starts");
    let scripted = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_url = format!("ws://{}/ws", scripted.local_addr().unwrap());

    let browser = Browser::open(&driver, 800, 600).await;
    browser
        .goto(&format!("http://{}/status", gateway.local_addr()))
        .await;
    browser
        .js_async(
            r#"const [url, done] = arguments;
               import("/avgate.js").then(({ connect }) => {
                 window.seen = { errors: [], a: [] };
                 window.gw = connect({ url, client: "scripted", commandMaxAgeMs: 1, bind: false });
                 gw.onError((e) => seen.errors.push(e));
                 gw.watch("a/*", (p, key) => seen.a.push([key, p.value === undefined ? null : p.value]));
                 done();
               });"#,
            vec![json!(ws_url)],
        )
        .await;

    let next_text = |message: Option<Result<Message, _>>| -> Value {
        match message {
            Some(Ok(Message::Text(text))) => serde_json::from_str(&text).expect("JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    };
    let (stream, _) = tokio::time::timeout(DEADLINE, scripted.accept())
        .await
        .expect("the page connects")
        .unwrap();
    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
    let hello = next_text(ws.next().await);
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["client"], "scripted");
    assert!(
        hello.get("resume").is_none(),
        "a first connect has no place: {hello}"
    );
    for message in [
        json!({"type": "welcome", "session": "s1", "epoch": 7, "seq": 10, "resumed": false}),
        json!({"type": "snapshot", "epoch": 7, "seq": 10, "part": 1, "parts": 3, "devices": {"a": {"online": true, "points": {"x": 1}}}}),
        // A device with many points may be spread over consecutive parts.
        json!({"type": "snapshot", "epoch": 7, "seq": 10, "part": 2, "parts": 3, "devices": {"a": {"online": true, "points": {"z": 5}}}}),
    ] {
        ws.send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }
    // Half a snapshot is not the room: nothing is shown as live yet.
    browser
        .until(
            "the first parts taken in",
            "window.gw.snapshotParts && window.gw.snapshotParts.devices.a && window.gw.status.state === 'connecting'",
        )
        .await;
    assert_eq!(
        browser
            .js("return window.gw.get('a/x') === undefined", vec![])
            .await,
        true
    );
    let last = json!({"type": "snapshot", "epoch": 7, "seq": 10, "part": 3, "parts": 3, "devices": {"b": {"online": true, "points": {"y": 2}}}});
    ws.send(Message::Text(last.to_string().into()))
        .await
        .unwrap();
    browser
        .until(
            "both parts applied",
            "window.gw.status.state === 'live' && window.gw.get('a/x').value === 1 && window.gw.get('a/z').value === 5 && window.gw.get('b/y').value === 2",
        )
        .await;

    // A later snapshot replaces everything: device `a` is gone, and its watcher hears so.
    let lagged = json!({"type": "snapshot", "reason": "lagged", "epoch": 7, "seq": 12, "devices": {"b": {"online": true, "points": {"y": 3}}}});
    ws.send(Message::Text(lagged.to_string().into()))
        .await
        .unwrap();
    ws.send(Message::Text(
        json!({"type": "error", "code": "rate_limited", "message": "slow down: 100 messages a second at most"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let seen = browser
        .until(
            "the removal and the error",
            "window.gw.get('b/y').value === 3 && window.seen.errors.length === 1 && window.seen",
        )
        .await;
    assert_eq!(
        browser
            .js("return window.gw.get('a/x') === undefined", vec![])
            .await,
        true
    );
    assert_eq!(
        seen["errors"],
        json!([{"code": "rate_limited", "message": "slow down: 100 messages a second at most"}])
    );
    let heard = seen["a"].as_array().unwrap();
    for gone in ["a/x", "a/z"] {
        assert!(
            heard.ends_with(&[json!([gone, null])])
                || heard[heard.len() - 2] == json!([gone, null]),
            "the watcher hears {gone} is gone: {seen}"
        );
    }

    // The link drops; a command issued offline outlives commandMaxAgeMs (1 ms here) before
    // the gateway is back, so it fails locally and is never sent.
    ws.close(None).await.unwrap();
    drop(ws);
    browser
        .until("offline", "window.gw.status.state === 'offline'")
        .await;
    browser
        .js(
            r#"window.late = window.gw.command("b", "power", { on: true });
               window.late.result.then((r) => (window.lateResult = r));"#,
            vec![],
        )
        .await;
    browser
        .js("window.dispatchEvent(new Event('online'))", vec![])
        .await;
    let (stream, _) = tokio::time::timeout(DEADLINE, scripted.accept())
        .await
        .expect("the page reconnects")
        .unwrap();
    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
    let hello = next_text(ws.next().await);
    assert_eq!(hello["resume"], json!({"epoch": 7, "seq": 12}), "{hello}");
    ws.send(Message::Text(
        json!({"type": "welcome", "session": "s2", "epoch": 7, "seq": 12, "resumed": true})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let result = browser
        .until("the local failure", "window.lateResult")
        .await;
    assert_eq!(result["ok"], false);
    assert_eq!(result["error"]["code"], "expired", "{result}");
    // Nothing else arrives: the expired command was not sent.
    browser
        .js(
            "window.gw.socket.send(JSON.stringify({type: 'ping'}))",
            vec![],
        )
        .await;
    let after = next_text(ws.next().await);
    assert_eq!(after["type"], "ping", "the page sent {after}");
    browser.close().await;
    finish(room, gateway).await;
}
