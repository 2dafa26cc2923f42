//! Modbus devices through the gateway, from nothing but a profile's register map: the
//! built-in power sequencer over Modbus TCP, and two units on one RTU bus (a
//! pseudo-terminal) where one falls silent and the other carries on.

mod common;

use avgate::config::Profile;
use avgate_drivers::modbus::RegisterMap;
use avgate_drivers::modbus::simulator::{self as sim, Fault};
use common::*;
use serde_json::json;

const TOP: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n";

/// The register map of the built-in sequencer profile, for the simulator to serve.
fn sequencer_map() -> RegisterMap {
    let profile = Profile::find("modbus-power-sequencer-8", &[])
        .expect("built in")
        .expect("valid");
    RegisterMap::from_options(&profile.options).expect("valid map")
}

fn sequencer(name: &str, link: &str, unit: u8) -> String {
    format!(
        "[devices.{name}]\nprofile = \"modbus-power-sequencer-8\"\n{link}\n\
         [devices.{name}.overrides]\noptions = {{ unit = {unit} }}\ncommand_timeout = \"300ms\"\n\
         poll = {{ fast = \"200ms\", slow = \"200ms\", default = \"200ms\" }}\n"
    )
}

#[tokio::test]
async fn a_sequencer_on_modbus_tcp_reports_and_switches_outlets() {
    let device = sim::start_tcp(sim::Config::new(sequencer_map())).unwrap();
    device.set_point("voltage", &json!(230.4)).unwrap();
    device.set_point("current.2", &json!(1.25)).unwrap();
    device.set_point("fault.surge", &json!(true)).unwrap();
    let site = format!(
        "{TOP}{}",
        sequencer("seq", &format!("address = \"{}\"", device.local_addr()), 1)
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("seq", "voltage", json!(230.4)).await;
    panel.until_event("seq", "current.2", json!(1.25)).await;
    panel.until_event("seq", "fault.surge", json!(true)).await;
    assert_eq!(*panel.known("seq", "fault.overcurrent"), json!(false));

    panel
        .command(
            json!(1),
            "seq",
            "write",
            json!({"point": "outlet.3", "value": true}),
        )
        .await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    assert_eq!(device.point("outlet.3"), Some(json!(true)));
    panel.until_event("seq", "outlet.3", json!(true)).await;

    // Read-only points are not among the `write` command's choices.
    panel
        .command(
            json!(2),
            "seq",
            "write",
            json!({"point": "voltage", "value": 1}),
        )
        .await;
    let refused = panel.result(json!(2)).await;
    assert_eq!(refused["error"]["code"], "invalid_args", "{refused}");

    // A Modbus exception is the device's error, named.
    device.inject(Fault::Exception(4));
    panel
        .command(
            json!(3),
            "seq",
            "write",
            json!({"point": "sequence_delay", "value": 3}),
        )
        .await;
    let failed = panel.result(json!(3)).await;
    assert_eq!(failed["ok"], false, "{failed}");
    assert_eq!(failed["error"]["code"], "device_error", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap().to_lowercase();
    assert!(
        message.contains("failure") || message.contains("04"),
        "{failed}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_silent_unit_on_an_rtu_bus_goes_offline_without_stalling_the_other() {
    let bus = sim::start_tcp(sim::Config {
        units: vec![1, 2],
        ..sim::Config::new(sequencer_map())
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = dir.path().join("usb-FTDI_USB-RS485-if00-port0");
    std::os::unix::fs::symlink(bus.serve_rtu_pty().unwrap(), &port).unwrap();
    let link = format!("serial_port = \"{}\"", port.display());
    let site = format!(
        "{TOP}{}{}",
        sequencer("rack-a", &link, 1),
        sequencer("rack-b", &link, 2)
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("rack-a", "online", json!(true)).await;
    panel.until_event("rack-b", "online", json!(true)).await;

    bus.unit(2).unwrap().inject(Fault::Silent(usize::MAX));
    panel.until_event("rack-b", "online", json!(false)).await;

    // Unit 1 is still read and driven while unit 2 stays silent.
    bus.unit(1)
        .unwrap()
        .set_point("voltage", &json!(229.9))
        .unwrap();
    panel.until_event("rack-a", "voltage", json!(229.9)).await;
    panel
        .command(
            json!("on"),
            "rack-a",
            "write",
            json!({"point": "outlet.1", "value": true}),
        )
        .await;
    assert_eq!(panel.result(json!("on")).await["ok"], true);
    assert_eq!(bus.unit(1).unwrap().point("outlet.1"), Some(json!(true)));
    assert_eq!(bus.unit(2).unwrap().point("outlet.1"), Some(json!(false)));
    assert_eq!(*panel.known("rack-a", "online"), json!(true));
    gw.shutdown().await;
}

#[tokio::test]
async fn rtu_over_tcp_through_a_serial_device_server_works_like_a_serial_line() {
    let device = sim::start_tcp(sim::Config {
        units: vec![5],
        ..sim::Config::new(sequencer_map())
    })
    .unwrap();
    device.set_point("voltage", &json!(231.5)).unwrap();
    let pty = device.serve_rtu_pty().unwrap();
    // The serial device server: one TCP client at a time, bytes passed to the RS-485 port
    // as they are.
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = server.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio_serial::SerialPortBuilderExt;
        let (mut client, _) = server.accept().await.unwrap();
        let mut port = tokio_serial::new(&pty, 19200).open_native_async().unwrap();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut port).await;
    });
    let site = format!(
        "{TOP}[devices.seq]\nprofile = \"modbus-power-sequencer-8\"\naddress = \"{address}\"\n\
         [devices.seq.overrides]\noptions = {{ framing = \"rtu\", unit = 5 }}\n\
         poll = {{ slow = \"200ms\" }}\n"
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("seq", "voltage", json!(231.5)).await;
    panel
        .command(
            json!(1),
            "seq",
            "write",
            json!({"point": "outlet.8", "value": true}),
        )
        .await;
    assert_eq!(panel.result(json!(1)).await["ok"], true);
    assert_eq!(device.point("outlet.8"), Some(json!(true)));
    gw.shutdown().await;
}
