//! `avgate simulate <command>`: one device simulator on its own, to build panels or test a
//! driver before the hardware arrives.
//!
//! The commands come from the driver registry (each driver's
//! [`SimulatorInfo`]: its flags, whether it serves a
//! profile, how to start it) and from the built-in profiles that name a command for
//! themselves (`[simulate]`, see `config::simulate`). Nothing here names a driver.

use std::path::PathBuf;
use std::sync::LazyLock;

use anyhow::Context;
use avgate_drivers::{
    DriverInfo, ProfileUse, RunningSimulator, SimulatorInfo, SimulatorProfile, SimulatorRequest,
};
use clap::{ArgMatches, FromArgMatches};

use crate::config::simulate::ProfileSimulator;
use crate::config::{ConfigErrors, Profile};

/// The simulator a command line asked for: its command and its flags.
#[derive(Debug, Clone)]
pub struct Simulator {
    command: String,
    args: ArgMatches,
}

/// One `avgate simulate` command.
struct Entry {
    command: String,
    driver: &'static DriverInfo,
    simulator: SimulatorInfo,
    /// For a command a profile names for itself: that profile, served with no `--profile`.
    preset: Option<ProfileSimulator>,
}

/// Every command, and what is wrong with the built-in profiles' `[simulate]` tables.
struct Commands {
    entries: Vec<Entry>,
    problems: Option<ConfigErrors>,
}

/// Built once per process: clap asks for the commands to build the command line, and
/// again to read it.
static COMMANDS: LazyLock<Commands> = LazyLock::new(|| {
    let mut entries: Vec<Entry> = avgate_drivers::drivers()
        .iter()
        .filter_map(|driver| {
            driver.simulator.map(|simulator| Entry {
                command: simulator.command.to_string(),
                driver,
                simulator,
                preset: None,
            })
        })
        .collect();
    let (declared, problems) = Profile::built_in_simulators();
    for preset in declared {
        // Checked when declared: the driver serves profiles.
        if let Some(simulator) = preset.driver.simulator {
            entries.push(Entry {
                command: preset.command.clone(),
                driver: preset.driver,
                simulator,
                preset: Some(preset),
            });
        }
    }
    Commands { entries, problems }
});

impl Commands {
    fn find(&self, command: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.command == command)
    }
}

impl Entry {
    /// The entry's subcommand: `--profile` when it serves one that is not preset, then the
    /// simulator's own flags and help.
    fn subcommand(&self) -> clap::Command {
        let profile = clap::Arg::new("profile")
            .long("profile")
            .value_name("PROFILE")
            .help(format!(
                "A built-in profile name, or the path of a profile TOML file (driver = \"{}\")",
                self.driver.name
            ));
        let mut command = clap::Command::new(self.command.clone());
        match (&self.preset, self.simulator.profile) {
            (None, ProfileUse::Required) => command = command.arg(profile.required(true)),
            (None, ProfileUse::Default(name)) => command = command.arg(profile.default_value(name)),
            _ => {}
        }
        command = (self.simulator.args)(command);
        if let Some(preset) = &self.preset {
            command = command
                .about(preset.about.clone())
                .long_about(preset.long_about.clone());
        }
        command
    }

    /// The profile this run serves, if the simulator takes one: the preset, or `--profile`.
    fn profile(&self, args: &ArgMatches) -> anyhow::Result<Option<Profile>> {
        let name = match (&self.preset, self.simulator.profile) {
            (Some(preset), _) => preset.profile.as_str(),
            (None, ProfileUse::None) => return Ok(None),
            (None, ProfileUse::Required | ProfileUse::Default(_)) => args
                .get_one::<String>("profile")
                .map(String::as_str)
                .context("--profile is required")?,
        };
        let profile = load_profile(name)?;
        if profile.driver_info.name != self.driver.name {
            anyhow::bail!(
                "profile `{}` uses the {} driver; `avgate simulate {}` serves a profile with driver = \"{}\"",
                profile.id,
                profile.driver,
                self.command,
                self.driver.name
            );
        }
        Ok(Some(profile))
    }
}

impl FromArgMatches for Simulator {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        match matches.subcommand() {
            Some((command, args)) if COMMANDS.find(command).is_some() => Ok(Simulator {
                command: command.to_string(),
                args: args.clone(),
            }),
            Some((command, _)) => Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidSubcommand,
                format!(
                    "no simulator is called `{command}`; `avgate simulate --help` lists them\n"
                ),
            )),
            None => Err(clap::Error::raw(
                clap::error::ErrorKind::MissingSubcommand,
                "name a simulator; `avgate simulate --help` lists them\n",
            )),
        }
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Simulator::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Subcommand for Simulator {
    fn augment_subcommands(command: clap::Command) -> clap::Command {
        command.subcommands(COMMANDS.entries.iter().map(Entry::subcommand))
    }

    fn augment_subcommands_for_update(command: clap::Command) -> clap::Command {
        Simulator::augment_subcommands(command)
    }

    fn has_subcommand(name: &str) -> bool {
        COMMANDS.find(name).is_some()
    }
}

/// Runs a simulator until Ctrl-C or SIGTERM.
pub async fn run(simulator: Simulator) -> anyhow::Result<()> {
    let running = start(simulator).await?;
    let stop = crate::cli::wait_for_stop();
    for line in running.banner() {
        println!("{line}");
    }
    stop.await;
    running.shutdown().await;
    Ok(())
}

/// Starts a simulator.
pub async fn start(simulator: Simulator) -> anyhow::Result<RunningSimulator> {
    if let Some(problems) = &COMMANDS.problems {
        anyhow::bail!("{problems}");
    }
    let entry = COMMANDS
        .find(&simulator.command)
        .with_context(|| format!("no simulator is called `{}`", simulator.command))?;
    let profile = entry.profile(&simulator.args)?;
    let request = SimulatorRequest {
        args: simulator.args,
        profile: profile.as_ref().map(served),
    };
    Ok((entry.simulator.start)(request).await?)
}

/// Starts the simulator of `profile`'s driver serving that profile, with `flags` (such as
/// `--listen 127.0.0.1:0`), for a demo room built from profiles.
pub async fn start_for_profile(
    profile: &Profile,
    flags: &[&str],
) -> anyhow::Result<RunningSimulator> {
    let simulator = profile
        .driver_info
        .simulator
        .filter(|simulator| simulator.profile != ProfileUse::None)
        .with_context(|| {
            format!(
                "the {} driver has no simulator that serves a profile",
                profile.driver
            )
        })?;
    let command = (simulator.args)(clap::Command::new(simulator.command).no_binary_name(true));
    let args = command
        .try_get_matches_from(flags)
        .with_context(|| format!("flags for `avgate simulate {}`", simulator.command))?;
    let request = SimulatorRequest {
        args,
        profile: Some(served(profile)),
    };
    Ok((simulator.start)(request).await?)
}

/// What a simulator serves of a profile.
fn served(profile: &Profile) -> SimulatorProfile {
    SimulatorProfile {
        id: profile.id.clone(),
        name: profile.name.clone(),
        options: profile.options.clone(),
        port: profile.transport.port,
    }
}

/// A built-in profile, or a profile file.
fn load_profile(profile: &str) -> anyhow::Result<Profile> {
    let path = PathBuf::from(profile);
    let loaded = if path.is_file() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read profile {}", path.display()))?;
        let id = path
            .file_stem()
            .map_or(profile.into(), |s| s.to_string_lossy());
        Profile::parse(&id, &path, &text)
    } else {
        Profile::find(profile, &[]).with_context(|| {
            format!(
                "`{profile}` is neither a profile file nor a built-in profile ({})",
                Profile::built_in_names().collect::<Vec<_>>().join(", ")
            )
        })?
    };
    loaded.map_err(|e| anyhow::anyhow!("{e}"))
}
