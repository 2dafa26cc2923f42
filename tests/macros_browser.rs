//! Room macros and the lease indicator in a real browser (headless Chromium over
//! WebDriver) against the demo room: /panel/demo's "Room on" asks first, then shows the
//! run's progress step by step and its end, and the room page has the same buttons.
//!
//! Without chromium and chromedriver each test prints a `SKIP` line (and fails under
//! `CI=true`). Screenshots land in target/browser-screenshots/.

mod browser_support;
mod common;

use avgate::Gateway;
use avgate::demo::DemoRoom;
use browser_support::*;
use common::{Panel, http_get};
use serde_json::{Value, json};

async fn state(gateway: &Gateway) -> Value {
    serde_json::from_str(&http_get(gateway.local_addr(), "/api/state").await).expect("state JSON")
}

const ROOM_ON: &str = r#"[data-widget="macro"][data-macro="room-on"]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_macro_button_asks_first_then_shows_progress_and_the_end() {
    let Some(driver) = driver("a_macro_button_asks_first_then_shows_progress_and_the_end") else {
        return;
    };
    let (room, gateway) = demo_gateway(None).await;
    let browser = Browser::open(&driver, 1280, 800).await;
    browser
        .open_panel(&format!("http://{}/panel/demo", gateway.local_addr()))
        .await;
    let shots = screenshot_dir();
    browser
        .until(
            "nobody has the room yet",
            r#"document.querySelector('[data-widget="lease"]').dataset.holder === "none""#,
        )
        .await;

    browser
        .click(&format!("{ROOM_ON} [data-action=\"run\"]"))
        .await;
    let question = browser
        .until(
            "the confirm question",
            r#"(() => { const s = document.querySelector('.sheet[role="alertdialog"]:not([hidden])'); return s && s.querySelector('h3').textContent; })()"#,
        )
        .await;
    assert_eq!(
        question,
        "Turn the room on? The projectors take about half a minute to warm up."
    );
    browser.screenshot(&shots.join("macro-confirm.png")).await;
    // Nothing ran before the answer.
    assert_eq!(
        state(&gateway).await["devices"]["@macros"]["points"]["room-on"],
        Value::Null
    );

    browser
        .click(r#".sheet[role="alertdialog"]:not([hidden]) [data-action="confirm"]"#)
        .await;
    let warming = browser
        .until(
            "the warm-up step in progress",
            &format!(
                r#"(() => {{ const t = document.querySelector('{ROOM_ON} .macro-text').textContent; return t.startsWith("Warming up projectors") && t; }})()"#
            ),
        )
        .await;
    // The projector profile's `[hints] warm_up = "30s"` is shown with the step.
    assert_eq!(warming, "Warming up projectors… 4/6 · about 30 s");
    browser.screenshot(&shots.join("macro-running.png")).await;

    browser
        .until(
            "the run's end",
            &format!(
                r#"document.querySelector('{ROOM_ON} .macro-text').textContent === "✓ Done" && document.querySelector('{ROOM_ON} button').dataset.result === "ok""#
            ),
        )
        .await;
    let holder = browser
        .until(
            "the lease indicator",
            r#"document.querySelector('[data-widget="lease"] .value').textContent === "You have the room" && document.querySelector('[data-widget="lease"]').dataset.holder"#,
        )
        .await;
    assert_eq!(holder, "me");
    browser.screenshot(&shots.join("macro-done.png")).await;
    let now = state(&gateway).await;
    assert_eq!(now["devices"]["proj-left"]["points"]["power"], "on");
    assert_eq!(now["devices"]["switcher"]["points"]["route.1"], 1);
    assert_eq!(
        now["devices"]["@macros"]["points"]["room-on"]["state"],
        "done"
    );
    browser.close().await;
    finish(room, gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_page_lists_the_sites_macros_and_who_has_the_room() {
    let Some(driver) = driver("the_room_page_lists_the_sites_macros_and_who_has_the_room") else {
        return;
    };
    let (room, gateway) = demo_gateway(None).await;
    let browser = Browser::open(&driver, 1280, 800).await;
    browser
        .open_panel(&format!("http://{}/", gateway.local_addr()))
        .await;
    let macros = browser
        .until(
            "the macro buttons",
            r#"[...document.querySelectorAll('[data-widget="macro"]')].map((m) => m.dataset.macro).join(",")"#,
        )
        .await;
    assert_eq!(macros, "room-on,room-off");
    // Another panel drives the room: this page names it and offers to take control.
    let (mut other, _) =
        Panel::hello(&gateway, json!({"type": "hello", "client": "lectern"})).await;
    other
        .command(
            json!(1),
            "switcher",
            "route",
            json!({"input": 2, "output": 1}),
        )
        .await;
    other.result(json!(1)).await;
    browser
        .until(
            "the other panel named",
            r#"document.querySelector('[data-widget="lease"] .value').textContent.startsWith("In use by lectern")"#,
        )
        .await;
    browser.screenshot(&shots().join("room-lease.png")).await;
    browser.click(r#"[data-action="take-control"]"#).await;
    browser
        .until(
            "this page has the room",
            r#"document.querySelector('[data-widget="lease"]').dataset.holder === "me""#,
        )
        .await;
    browser.close().await;
    finish(room, gateway).await;
}

fn shots() -> std::path::PathBuf {
    screenshot_dir()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_counts_down_on_the_panel_and_keep_on_cancels_it() {
    let Some(driver) = driver("a_scheduled_run_counts_down_on_the_panel_and_keep_on_cancels_it")
    else {
        return;
    };
    let room = DemoRoom::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .expect("demo room starts");
    let mut site = room.site.clone();
    // Room off in a minute, warned about from now on.
    let zone = jiff::tz::TimeZone::UTC;
    let due = jiff::Timestamp::now()
        .to_zoned_datetime(zone.clone())
        .time()
        .wrapping_add(jiff::SignedDuration::from_secs(60))
        .round(jiff::Unit::Second)
        .unwrap();
    site.schedules = vec![avgate::config::schedules::Schedule {
        run: "room-off".into(),
        at: due,
        days: vec![],
        zone,
        catch_up: false,
        warning: Some(std::time::Duration::from_secs(120)),
    }];
    let gateway = Gateway::start(site).await.expect("gateway starts");
    let browser = Browser::open(&driver, 1280, 800).await;
    browser
        .open_panel(&format!("http://{}/panel/demo", gateway.local_addr()))
        .await;
    let countdown = browser
        .until(
            "the countdown",
            r#"(() => { const c = document.querySelector('.schedule-banner:not([hidden]) .countdown'); return c && c.textContent; })()"#,
        )
        .await;
    let countdown = countdown.as_str().unwrap();
    assert!(
        countdown.starts_with("Room off in 0:") || countdown.starts_with("Room off in 1:00"),
        "{countdown}"
    );
    let lease = browser
        .until(
            "the lease indicator",
            r#"document.querySelector('[data-widget="lease"] .value').textContent"#,
        )
        .await;
    assert_eq!(lease, "Free: nobody has the room");
    browser
        .screenshot(&screenshot_dir().join("schedule-countdown.png"))
        .await;

    browser
        .click(r#"[data-action="keep-on"][data-macro="room-off"]"#)
        .await;
    let kept = browser
        .until(
            "the run kept on",
            r#"(() => { const c = document.querySelector('.schedule-banner:not([hidden]) .countdown'); return c && c.textContent.includes("kept on") && c.textContent; })()"#,
        )
        .await;
    let client = browser.js("return window.avgatePanel.client", vec![]).await;
    assert_eq!(
        kept,
        format!("Room off skipped: kept on by {}", client.as_str().unwrap())
    );
    let point = &state(&gateway).await["devices"]["@schedules"]["points"]["room-off"];
    assert_eq!(point["state"], "kept_on", "{point}");
    browser.close().await;
    finish(room, gateway).await;
}
