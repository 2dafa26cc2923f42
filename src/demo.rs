//! The demo room: simulators for a room's devices plus a gateway that drives them, so the
//! panel UI can be tried on any machine.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use avgate_drivers::extron::simulator as extron_sim;
use avgate_drivers::mdc::simulator as mdc_sim;
use avgate_drivers::modbus::{RegisterMap, simulator as modbus_sim};
use avgate_drivers::pjlink::simulator as pjlink_sim;
use avgate_drivers::visca::simulator as visca_sim;
use serde_json::json;

use crate::config::{Profile, Site, parse_site_with};

/// The demo projector's password, printed so the integrator can try a PJLink client too.
pub const DEMO_PASSWORD: &str = "panasonic";

/// Where the demo site says its panel page is (built into the binary: src/web/demo-panel.toml).
const DEMO_PANEL_PATH: &str = "panels/demo.toml";

/// Running simulators; dropping them does not stop them, [`DemoRoom::shutdown`] does.
pub struct DemoRoom {
    pub projectors: Vec<(String, pjlink_sim::Handle)>,
    pub switcher: extron_sim::Handle,
    pub display: mdc_sim::Handle,
    pub camera: visca_sim::Handle,
    pub sequencer: modbus_sim::Handle,
    pub site: Site,
    /// The site as TOML, for `--print-config`.
    pub site_toml: String,
}

impl DemoRoom {
    /// Starts the simulators on free loopback ports and builds the site that uses them.
    pub async fn start(listen: SocketAddr, data_dir: Option<&Path>) -> anyhow::Result<DemoRoom> {
        DemoRoom::start_with_mqtt(listen, data_dir, None).await
    }

    /// [`DemoRoom::start`], bridged to the MQTT broker at `mqtt` (`mqtt://host[:port]` or
    /// `mqtts://host[:port]`) with commands enabled, under the prefix `avgate/demo`.
    pub async fn start_with_mqtt(
        listen: SocketAddr,
        data_dir: Option<&Path>,
        mqtt: Option<&str>,
    ) -> anyhow::Result<DemoRoom> {
        let left = pjlink_sim::start(pjlink_sim::Config {
            name: "Left projector".into(),
            input: "31".into(),
            warm_up: Duration::from_secs(2),
            cool_down: Duration::from_secs(2),
            ..pjlink_sim::Config::default()
        })
        .await
        .context("starting the left projector simulator")?;
        let right = pjlink_sim::start(pjlink_sim::Config {
            name: "Right projector".into(),
            password: Some(DEMO_PASSWORD.into()),
            warm_up: Duration::from_secs(2),
            cool_down: Duration::from_secs(2),
            lamps: vec![812, 640],
            input: "31".into(),
            ..pjlink_sim::Config::default()
        })
        .await
        .context("starting the right projector simulator")?;

        let switcher = extron_sim::start(extron_sim::Config::default())
            .await
            .context("starting the switcher simulator")?;

        let display = mdc_sim::start(mdc_sim::Config::default())
            .await
            .context("starting the display simulator")?;
        let camera = visca_sim::start_udp(visca_sim::Config::default())
            .await
            .context("starting the camera simulator")?;
        let sequencer = start_sequencer().context("starting the power sequencer simulator")?;

        let mut text = site_toml(
            listen,
            data_dir,
            &Addresses {
                left: left.local_addr(),
                right: right.local_addr(),
                switcher: switcher.local_addr(),
                display: display.local_addr(),
                camera: camera.local_addr(),
                sequencer: sequencer.local_addr(),
            },
        );
        if let Some(broker) = mqtt {
            text += &format!(
                "\n# Every device's state to the broker, retained, under avgate/demo; commands from\n# avgate/demo/<device>/<command>/set (docs/MQTT.md).\n[mqtt]\nbroker = {}\nsite = \"demo\"\ncommands = true\n",
                toml::Value::String(broker.to_string())
            );
        }
        // The demo's panel page is built in; a site reads its own from disk.
        let read = |path: &Path| {
            if path == Path::new(DEMO_PANEL_PATH) {
                Ok(crate::web::DEMO_PANEL_TOML.to_string())
            } else {
                std::fs::read_to_string(path)
            }
        };
        let site = parse_site_with(Path::new("demo-site.toml"), &text, &read)
            .map_err(|e| anyhow::anyhow!("demo site is invalid: {e}"))?;
        let projectors = vec![("proj-left".into(), left), ("proj-right".into(), right)];
        Ok(DemoRoom {
            projectors,
            switcher,
            display,
            camera,
            sequencer,
            site,
            site_toml: text,
        })
    }

    pub async fn shutdown(self) {
        for (_, sim) in self.projectors {
            sim.shutdown().await;
        }
        self.switcher.shutdown().await;
        self.display.shutdown().await;
        self.camera.shutdown().await;
        self.sequencer.shutdown().await;
    }
}

/// The built-in 8-outlet sequencer, with mains voltage and some load on its outlets.
fn start_sequencer() -> anyhow::Result<modbus_sim::Handle> {
    let profile = Profile::find("modbus-power-sequencer-8", &[])
        .context("the sequencer profile is built in")?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let map = RegisterMap::from_options(&profile.options).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sim = modbus_sim::start_tcp(modbus_sim::Config::new(map))?;
    let set = |point: &str, value| {
        sim.set_point(point, &value)
            .map_err(|e| anyhow::anyhow!("{point}: {e}"))
    };
    set("voltage", json!(229.8))?;
    set("sequence_delay", json!(2))?;
    for (outlet, amps) in [(1, 0.42), (2, 1.35), (3, 0.0), (4, 2.1)] {
        set(&format!("outlet.{outlet}"), json!(amps > 0.0))?;
        set(&format!("current.{outlet}"), json!(amps))?;
    }
    Ok(sim)
}

/// Where the demo's simulators listen.
struct Addresses {
    left: SocketAddr,
    right: SocketAddr,
    switcher: SocketAddr,
    display: SocketAddr,
    camera: SocketAddr,
    sequencer: SocketAddr,
}

/// The demo's site file; `avgate demo --print-config` shows it as a starting point.
fn site_toml(listen: SocketAddr, data_dir: Option<&Path>, at: &Addresses) -> String {
    let Addresses {
        left,
        right,
        switcher,
        display,
        camera,
        sequencer,
    } = at;
    let journal = match data_dir {
        // A TOML string, quoted and escaped.
        Some(dir) => format!(
            "data_dir = {}",
            toml::Value::String(dir.display().to_string())
        ),
        None => "durable = false".to_string(),
    };
    format!(
        r#"# Demo room: every device is a simulator on this machine.

[server]
listen = "{listen}"

[journal]
{journal}

[devices.proj-left]
name = "Left projector"
profile = "pjlink-projector"
address = "{left}"

[devices.proj-left.overrides]
# Poll power often so warm-up and cool-down show promptly in the demo.
poll = {{ power = "1s" }}

[devices.proj-right]
name = "Right projector (password)"
profile = "pjlink-projector"
address = "{right}"
password = "{DEMO_PASSWORD}"

[devices.proj-right.overrides]
poll = {{ power = "1s" }}

[devices.switcher]
name = "Matrix switcher"
profile = "extron-sis-switcher"
address = "{switcher}"

[devices.display]
name = "Lobby display"
profile = "samsung-qmr"
address = "{display}"

[devices.camera]
name = "Stage camera"
profile = "sony-srg-300h"
address = "{camera}"

[devices.sequencer]
name = "Rack power"
profile = "modbus-power-sequencer-8"
address = "{sequencer}"

# "System on / System off" (docs/MACROS.md): one run per group, so Room off cancels a
# Room on that is still warming up.
[macros.room-on]
label = "Room on"
group = "room"
steps = [
  {{ skip_if = "proj-left/power in ['on', 'warming']", device = "proj-left", command = "power", args = {{ on = true }}, label = "Left projector on" }},
  {{ skip_if = "proj-right/power in ['on', 'warming']", device = "proj-right", command = "power", args = {{ on = true }}, label = "Right projector on", on_error = "continue" }},
  {{ device = "display", command = "power", args = {{ on = true }}, label = "Lobby display on", on_error = "continue" }},
  {{ wait_until = "proj-left/power == 'on'", timeout = "2m", label = "Warming up projectors" }},
  {{ device = "switcher", command = "route", args = {{ input = 1, output = 1 }}, label = "Lectern PC to the projectors" }},
  {{ device = "switcher", command = "mute", args = {{ audio = false, output = 1 }}, label = "Sound on" }},
]

[macros.room-off]
label = "Room off"
group = "room"
mode = "restart"
steps = [
  {{ device = "switcher", command = "mute", args = {{ audio = true, output = 1 }}, label = "Sound off", on_error = "continue" }},
  {{ skip_if = "proj-left/power in ['off', 'cooling']", device = "proj-left", command = "power", args = {{ on = false }}, label = "Left projector off", on_error = "continue" }},
  {{ skip_if = "proj-right/power in ['off', 'cooling']", device = "proj-right", command = "power", args = {{ on = false }}, label = "Right projector off", on_error = "continue" }},
  {{ device = "display", command = "power", args = {{ on = false }}, label = "Lobby display off", on_error = "continue" }},
]

# If someone forgot: the room goes off at 22:00 (the host's time zone), after five
# minutes in which any panel can press "Keep on".
[[schedules]]
macro = "room-off"
at = "22:00"
warning = "5m"

# A panel page at /panel/demo. The demo has this file built in; for your own site, copy
# src/web/demo-panel.toml to panels/demo.toml beside the site file.
[panels.demo]
file = "{DEMO_PANEL_PATH}"
"#
    )
}
