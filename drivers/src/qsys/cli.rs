//! `avgate simulate qsys`: a Core serving the controls a qsys profile names, its flags and
//! start.

use std::net::SocketAddr;

use crate::DriverSettings;
use crate::simulate::{
    ProfileUse, RunningSimulator, SimulatorError, SimulatorInfo, SimulatorRequest, StartFuture,
};

pub(super) const SIMULATOR: SimulatorInfo = SimulatorInfo {
    command: "qsys",
    args: <Flags as clap::Args>::augment_args,
    profile: ProfileUse::Default("qsys-core"),
    start,
};

/// A Q-SYS Core on QRC (JSON-RPC 2.0, NUL-terminated, TCP 1710) with the controls a
/// `driver = "qsys"` profile names: Control.Get/Set, Component.Get/Set, change groups
/// with AutoPoll.
///
/// Example: avgate simulate qsys --listen 127.0.0.1:1710 --password secret
#[derive(clap::Args)]
struct Flags {
    /// Address to listen on (TCP); default: 127.0.0.1 on the profile's port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Require a Logon with this password (any user name).
    #[arg(long)]
    password: Option<String>,
}

fn start(request: SimulatorRequest) -> StartFuture {
    Box::pin(async move {
        let Flags { listen, password } = request.flags()?;
        let profile = request.profile()?;
        let options =
            super::Options::from_settings(&DriverSettings::with_options(profile.options.clone()))
                .map_err(|e| {
                profile.refuse(format!("is not a Q-SYS profile (driver = \"qsys\"): {e}"))
            })?;
        let listen = profile.listen_or_default(listen);
        let sim = super::serve(&options, password, listen)
            .map_err(|e| SimulatorError::start("Q-SYS simulator", listen, e))?;
        Ok(RunningSimulator::new(
            sim.local_addr(),
            format!(
                "{} simulator (from profile `{}`) listening on {} (TCP)",
                profile.name,
                profile.id,
                sim.local_addr()
            ),
            async move { sim.shutdown().await },
        ))
    })
}
