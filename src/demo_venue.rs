//! The second demo room, `avgate demo --room venue`: one device of every scripted family
//! (Kramer matrix, Shure receiver, Biamp Tesira, NEC display, Blackmagic Videohub), each a
//! simulator generated from its built-in profile, and a Q-SYS Core (its own driver, with a
//! simulator serving the controls its profile names), so every family can be seen working.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use avgate_drivers::RunningSimulator;

use crate::config::{Profile, Site, parse_site};

/// The room's devices: id, name, built-in profile.
pub const DEVICES: &[(&str, &str, &str)] = &[
    ("matrix", "Stage matrix (Kramer)", "kramer-protocol-3000"),
    ("mics", "Wireless mics (Shure)", "shure-ulxd-receiver"),
    ("dsp", "Audio DSP (Biamp Tesira)", "biamp-tesira"),
    ("wall", "Video wall display (NEC)", "nec-display"),
    ("router", "Video router (Videohub)", "blackmagic-videohub"),
    ("audio", "Audio core (Q-SYS)", "qsys-core"),
];

/// Running simulators; [`VenueRoom::shutdown`] stops them.
pub struct VenueRoom {
    /// Each device's simulator: the one its profile's driver serves profiles with.
    pub simulators: Vec<(String, RunningSimulator)>,
    pub site: Site,
    /// The site as TOML, for `--print-config`.
    pub site_toml: String,
}

impl VenueRoom {
    /// Starts the simulators on free loopback ports and builds the site that uses them.
    pub async fn start(listen: SocketAddr, data_dir: Option<&Path>) -> anyhow::Result<VenueRoom> {
        let journal = match data_dir {
            Some(dir) => format!(
                "data_dir = {}",
                toml::Value::String(dir.display().to_string())
            ),
            None => "durable = false".to_string(),
        };
        let mut text = format!(
            "# Demo venue: one device of every scripted family and a Q-SYS Core, each a\n\
             # simulator built from its profile (device-profiles/*.toml).\n\n\
             [server]\nlisten = \"{listen}\"\n\n[journal]\n{journal}\n"
        );
        let mut simulators = Vec::new();
        for (id, name, profile_id) in DEVICES {
            let profile = Profile::find(profile_id, &[])
                .context("the profile is built in")?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let sim = crate::simulate::start_for_profile(&profile, &["--listen", "127.0.0.1:0"])
                .await
                .with_context(|| format!("starting the {profile_id} simulator"))?;
            text += &format!(
                "\n[devices.{id}]\nname = \"{name}\"\nprofile = \"{profile_id}\"\naddress = \"{}\"\n",
                sim.local_addr()
            );
            if *id == "wall" {
                // The real display wants 600 ms between packets; its simulator does not.
                text += &format!("\n[devices.{id}.overrides]\npacing = \"50ms\"\n");
            }
            simulators.push((id.to_string(), sim));
        }
        let site = parse_site(Path::new("demo-venue.toml"), &text)
            .map_err(|e| anyhow::anyhow!("demo venue site is invalid: {e}"))?;
        Ok(VenueRoom {
            simulators,
            site,
            site_toml: text,
        })
    }

    pub async fn shutdown(self) {
        for (_, sim) in self.simulators {
            sim.shutdown().await;
        }
    }
}
