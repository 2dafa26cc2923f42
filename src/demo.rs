//! The demo room: simulators for a room's devices plus a gateway that drives them, so the
//! panel UI can be tried on any machine.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use avgate_drivers::extron::simulator as extron_sim;
use avgate_drivers::pjlink::simulator as pjlink_sim;

use crate::config::{Site, parse_site};

/// The demo projector's password, printed so the integrator can try a PJLink client too.
pub const DEMO_PASSWORD: &str = "panasonic";

/// Running simulators; dropping them does not stop them, [`DemoRoom::shutdown`] does.
pub struct DemoRoom {
    pub projectors: Vec<(String, pjlink_sim::Handle)>,
    pub switcher: extron_sim::Handle,
    pub site: Site,
    /// The site as TOML, for `--print-config`.
    pub site_toml: String,
}

impl DemoRoom {
    /// Starts the simulators on free loopback ports and builds the site that uses them.
    pub async fn start(listen: SocketAddr, data_dir: Option<&Path>) -> anyhow::Result<DemoRoom> {
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

        let text = site_toml(
            listen,
            data_dir,
            left.local_addr(),
            right.local_addr(),
            switcher.local_addr(),
        );
        let site = parse_site(Path::new("demo-site.toml"), &text)
            .map_err(|e| anyhow::anyhow!("demo site is invalid: {e}"))?;
        let projectors = vec![("proj-left".into(), left), ("proj-right".into(), right)];
        Ok(DemoRoom {
            projectors,
            switcher,
            site,
            site_toml: text,
        })
    }

    pub async fn shutdown(self) {
        for (_, sim) in self.projectors {
            sim.shutdown().await;
        }
        self.switcher.shutdown().await;
    }
}

/// The demo's site file; `avgate demo --print-config` shows it as a starting point.
fn site_toml(
    listen: SocketAddr,
    data_dir: Option<&Path>,
    left: SocketAddr,
    right: SocketAddr,
    switcher: SocketAddr,
) -> String {
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
"#
    )
}
