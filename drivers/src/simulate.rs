//! What `avgate simulate <command>` needs from a driver: the command's name and flags,
//! whether it serves a profile, and how to start it ([`SimulatorInfo`], carried by the
//! driver's [`DriverInfo`](crate::DriverInfo)). The gateway builds the command line from
//! the registry ([`crate::drivers`]) and never names a simulator.
//!
//! Each family keeps its flags (a `#[derive(clap::Args)]` struct whose doc comment is the
//! command's help) and its start function in `<family>/cli.rs`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use crate::{Map, Value};

/// A driver's simulator as `avgate simulate` offers it.
#[derive(Debug, Clone, Copy)]
pub struct SimulatorInfo {
    /// The subcommand: `avgate simulate <command>`.
    pub command: &'static str,
    /// Adds the simulator's flags and help (about, `Example:` line) to its subcommand:
    /// usually `<Flags as clap::Args>::augment_args`. Every simulator takes `--listen ADDR`
    /// (the tests start each on 127.0.0.1:0); none defines `--profile`, which comes from
    /// [`SimulatorInfo::profile`].
    pub args: fn(clap::Command) -> clap::Command,
    /// Whether the simulator serves a profile, and which one by default.
    pub profile: ProfileUse,
    /// Starts the simulator; it runs until [`RunningSimulator::shutdown`].
    pub start: fn(SimulatorRequest) -> StartFuture,
}

/// Whether a simulator is built from a profile (a register map, a script, named controls).
///
/// A simulator that takes one gets a `--profile NAME|FILE` flag, and a profile of its
/// driver may give it a command of its own (`[simulate] command = "kramer"` in the
/// profile: device-profiles/README.md), which serves that profile with no `--profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileUse {
    /// The simulator needs no profile.
    None,
    /// `--profile` must be given.
    Required,
    /// `--profile` defaults to this built-in profile.
    Default(&'static str),
}

/// The future a [`SimulatorInfo::start`] returns.
pub type StartFuture =
    Pin<Box<dyn Future<Output = Result<RunningSimulator, SimulatorError>> + Send>>;

/// What a simulator is started with.
#[derive(Debug)]
pub struct SimulatorRequest {
    /// The subcommand's parsed flags (read them with [`SimulatorRequest::flags`]).
    pub args: clap::ArgMatches,
    /// The profile to serve, already checked against the driver, when the simulator takes
    /// one ([`ProfileUse`]).
    pub profile: Option<SimulatorProfile>,
}

impl SimulatorRequest {
    /// The flags as the simulator's own `clap::Args` type.
    pub fn flags<T: clap::FromArgMatches>(&self) -> Result<T, SimulatorError> {
        T::from_arg_matches(&self.args).map_err(SimulatorError::Flags)
    }

    /// The profile, for a simulator that takes one.
    pub fn profile(&self) -> Result<&SimulatorProfile, SimulatorError> {
        self.profile.as_ref().ok_or(SimulatorError::NoProfile)
    }
}

/// The part of a checked profile a simulator serves.
#[derive(Debug, Clone)]
pub struct SimulatorProfile {
    /// The profile's name (its file name without `.toml`).
    pub id: String,
    /// The model's human name (`name = "..."`).
    pub name: String,
    /// The profile's `[options]`, already accepted by the driver's catalog hook.
    pub options: Map<String, Value>,
    /// The profile's default port (`[transport] port`), if it has one.
    pub port: Option<u16>,
}

impl SimulatorProfile {
    /// `listen` if given, else 127.0.0.1 on the profile's port (any free port without one).
    pub fn listen_or_default(&self, listen: Option<SocketAddr>) -> SocketAddr {
        listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], self.port.unwrap_or(0))))
    }

    /// Says that the profile's options are not what this simulator serves.
    pub fn refuse(&self, problem: impl Into<String>) -> SimulatorError {
        SimulatorError::Profile {
            profile: self.id.clone(),
            problem: problem.into(),
        }
    }
}

/// A started simulator: what to tell the user, and how to stop it.
pub struct RunningSimulator {
    local_addr: SocketAddr,
    banner: Vec<String>,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for RunningSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSimulator")
            .field("local_addr", &self.local_addr)
            .field("banner", &self.banner)
            .finish_non_exhaustive()
    }
}

impl RunningSimulator {
    /// A simulator serving at `local_addr`, announced by `banner` (one line that says what
    /// it is and ends `listening on ADDR`, as scripts read it), stopped by awaiting `stop`
    /// (typically `async move { handle.shutdown().await }`).
    pub fn new(
        local_addr: SocketAddr,
        banner: String,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> RunningSimulator {
        RunningSimulator {
            local_addr,
            banner: vec![banner],
            stop: Box::pin(stop),
        }
    }

    /// Adds the line that gives the pseudo-terminal's path when one was asked for
    /// (`--pty`: `Some` outcome of opening it), or fails with why there is none.
    pub fn with_pty(
        mut self,
        pty: Option<io::Result<String>>,
    ) -> Result<RunningSimulator, SimulatorError> {
        if let Some(path) = pty {
            let path = path.map_err(SimulatorError::Pty)?;
            self.banner.push(format!(
                "RS-232 port on pseudo-terminal {path} (give it to a site as `serial_port`)"
            ));
        }
        Ok(self)
    }

    /// Where the simulator listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The lines to print once it runs: what it is and where, then its pseudo-terminal.
    pub fn banner(&self) -> &[String] {
        &self.banner
    }

    /// Stops serving and closes every connection.
    pub async fn shutdown(self) {
        self.stop.await;
    }
}

/// Why a simulator did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimulatorError {
    /// Its socket could not be opened (the address is in use, or a port below 1024 needs
    /// privileges: pick another with `--listen`).
    #[error("cannot start the {what} on {listen}")]
    Start {
        what: String,
        listen: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// `--pty` was given but no pseudo-terminal could be made.
    #[error("cannot create a pseudo-terminal")]
    Pty(#[source] io::Error),
    /// The profile is not one this simulator can serve.
    #[error("profile `{profile}` {problem}")]
    Profile { profile: String, problem: String },
    /// The registry entry's `start` reads flags its `args` did not define (a driver bug).
    #[error("the simulator's flags do not match its command")]
    Flags(#[source] clap::Error),
    /// The registry entry's `start` needs a profile but its [`ProfileUse`] is `None` (a
    /// driver bug).
    #[error("the simulator needs a profile but its command takes none")]
    NoProfile,
}

impl SimulatorError {
    /// The socket for the simulator called `what` ("PJLink simulator") did not open.
    pub fn start(what: impl Into<String>, listen: SocketAddr, source: io::Error) -> SimulatorError {
        SimulatorError::Start {
            what: what.into(),
            listen,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn every_simulator_has_its_own_command_help_and_example() {
        let mut seen = BTreeSet::new();
        for driver in crate::drivers() {
            let Some(simulator) = driver.simulator else {
                continue;
            };
            let name = simulator.command;
            assert!(seen.insert(name), "two simulators are called `{name}`");
            let command = (simulator.args)(clap::Command::new(name));
            // clap's own checks of a command's definition (duplicate flags and the like).
            command.clone().debug_assert();
            assert!(
                command.get_arguments().all(|arg| arg.get_id() != "profile"),
                "`{name}` defines --profile itself; ProfileUse adds it"
            );
            assert!(
                command.get_arguments().any(|arg| arg.get_id() == "listen"),
                "`{name}` takes no --listen"
            );
            assert!(command.get_about().is_some(), "`{name}` has no about");
            let long = command
                .get_long_about()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                long.contains(&format!("Example: avgate simulate {name}")),
                "`{name}` shows no example: {long}"
            );
        }
        assert!(seen.len() >= 8, "{seen:?}");
    }
}
