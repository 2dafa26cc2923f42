//! A device that reports more than it was declared to have cannot grow the state.

mod common;

use avgate_drivers::extron::simulator::{self as sim, TieKind};
use common::*;
use serde_json::json;

#[tokio::test]
async fn a_switcher_reporting_outputs_it_does_not_have_adds_no_points() {
    // The unit answers for 64 outputs; the site's profile declares it with 8.
    let switcher = sim::start(sim::Config {
        outputs: 64,
        ..sim::Config::default()
    })
    .await
    .expect("switcher simulator starts");
    let site = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n\
         [devices.sw]\nprofile = \"extron-sis-switcher\"\naddress = \"{}\"\n",
        switcher.local_addr()
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("sw", "route.8", json!(0)).await;

    // A tie on output 40, then one on output 3: when the second arrives, the first has
    // been dealt with (one connection, in order).
    switcher.tie(5, 40, TieKind::All).unwrap();
    switcher.tie(5, 3, TieKind::All).unwrap();
    panel.until_event("sw", "route.3", json!(5)).await;

    let state: serde_json::Value =
        serde_json::from_str(&http_get(gw.local_addr(), "/api/state").await).unwrap();
    let points = state["devices"]["sw"]["points"].as_object().unwrap();
    let routes: Vec<&String> = points.keys().filter(|p| p.starts_with("route.")).collect();
    assert_eq!(routes.len(), 8, "only the declared outputs: {routes:?}");
    assert!(points.get("route.40").is_none());
    assert!(panel.known("sw", "route.40").is_null());
    gw.shutdown().await;
    switcher.shutdown().await;
}
