//! The second demo room, `avgate demo --room venue`: one device of every scripted family
//! (Kramer matrix, Shure receiver, Biamp Tesira, NEC display, Blackmagic Videohub), each a
//! simulator generated from its built-in profile, and a Q-SYS Core (its own driver, with a
//! simulator serving the controls its profile names), so every family can be seen working.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use avgate_drivers::kit::Served;
use avgate_drivers::{DriverSettings, qsys, scripted};

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

/// One of the room's simulators.
pub enum VenueSimulator {
    /// Generated from a scripted profile.
    Scripted(Served<scripted::Model>),
    /// A Q-SYS Core with the controls of its profile.
    Qsys(Served<qsys::Model>),
}

impl VenueSimulator {
    /// Starts the simulator a profile's driver calls for, on a free loopback port.
    fn start(profile: &Profile) -> anyhow::Result<VenueSimulator> {
        let listen = "127.0.0.1:0".parse()?;
        if profile.driver == qsys::DRIVER.name {
            let options = qsys::Options::from_settings(&DriverSettings::with_options(
                profile.options.clone(),
            ))
            .map_err(|e| anyhow::anyhow!("{}: {e}", profile.id))?;
            return Ok(VenueSimulator::Qsys(qsys::serve(&options, None, listen)?));
        }
        let script = scripted::from_options(&profile.options)
            .map_err(|errors| anyhow::anyhow!("{}: {}", profile.id, errors[0]))?;
        Ok(VenueSimulator::Scripted(scripted::serve(
            Arc::new(script),
            listen,
        )?))
    }

    pub fn local_addr(&self) -> SocketAddr {
        match self {
            VenueSimulator::Scripted(sim) => sim.local_addr(),
            VenueSimulator::Qsys(sim) => sim.local_addr(),
        }
    }

    pub async fn shutdown(&self) {
        match self {
            VenueSimulator::Scripted(sim) => sim.shutdown().await,
            VenueSimulator::Qsys(sim) => sim.shutdown().await,
        }
    }
}

/// Running simulators; [`VenueRoom::shutdown`] stops them.
pub struct VenueRoom {
    pub simulators: Vec<(String, VenueSimulator)>,
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
            let sim = VenueSimulator::start(&profile)
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
