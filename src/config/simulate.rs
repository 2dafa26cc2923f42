//! A profile's `[simulate]` table: the `avgate simulate <command>` a profile names for
//! itself, so a protocol written as data gets a simulator command of its own with no code
//! (`avgate simulate kramer` serves `kramer-protocol-3000`).
//!
//! ```toml
//! [simulate]
//! command = "kramer"
//! about = "A Kramer matrix switcher on Protocol 3000 (`#ROUTE`, `~01@` replies)."
//! example = "avgate simulate kramer --listen 127.0.0.1:5000"   # optional
//! ```
//!
//! The command runs the simulator of the profile's driver (which must serve profiles:
//! `ProfileUse::Required` or `Default`) with the profile preset. It may not be a driver's
//! own command, nor one another built-in profile names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use avgate_drivers::{DriverInfo, ProfileUse};
use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, ConfigErrors, parse_toml};

/// `[simulate]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SimulateTable {
    /// The subcommand: `avgate simulate <command>`.
    pub command: Spanned<String>,
    /// One line for `avgate simulate --help`; the profile's `name` without it.
    pub about: Option<String>,
    /// A command line to show in the command's help; one on the profile's port without it.
    pub example: Option<String>,
}

/// A simulator command a profile names for itself, checked.
#[derive(Debug, Clone)]
pub struct ProfileSimulator {
    /// `avgate simulate <command>`.
    pub command: String,
    /// The one line `avgate simulate --help` shows.
    pub about: String,
    /// The command's own `--help`: the line, what it serves, an example.
    pub long_about: String,
    /// The profile it serves.
    pub profile: String,
    /// The profile's driver, whose simulator runs.
    pub driver: &'static DriverInfo,
}

impl ProfileSimulator {
    /// Checks `[simulate]` of the profile `id` (named `name`, described by `description`,
    /// on `port` by default) for `driver`: why it cannot be, otherwise the command.
    pub(super) fn check(
        file: &SimulateTable,
        id: &str,
        name: &str,
        description: &str,
        port: Option<u16>,
        driver: &'static DriverInfo,
    ) -> Result<ProfileSimulator, String> {
        let command = file.command.get_ref();
        let well_formed = command.starts_with(|c: char| c.is_ascii_lowercase())
            && command
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !well_formed || command == "help" {
            return Err(format!(
                "[simulate] command `{command}` cannot be a command: use lowercase letters, digits and `-`, starting with a letter (and not `help`)"
            ));
        }
        if let Some(owner) = avgate_drivers::drivers()
            .iter()
            .find(|d| d.simulator.is_some_and(|s| s.command == command))
        {
            return Err(format!(
                "[simulate] command `{command}` is the {} driver's own `avgate simulate {command}`; pick another name",
                owner.name
            ));
        }
        match driver.simulator {
            Some(simulator) if simulator.profile != ProfileUse::None => {}
            Some(simulator) => {
                return Err(format!(
                    "[simulate]: the {} driver's simulator (`avgate simulate {}`) serves no profile, so a profile cannot name a command for it; remove [simulate]",
                    driver.name, simulator.command
                ));
            }
            None => {
                return Err(format!(
                    "[simulate]: the {} driver has no simulator; remove [simulate]",
                    driver.name
                ));
            }
        }
        let about = file.about.clone().unwrap_or_else(|| name.to_string());
        let example = file.example.clone().unwrap_or_else(|| {
            format!(
                "avgate simulate {command} --listen 127.0.0.1:{}",
                port.unwrap_or(7000)
            )
        });
        let serves = if description.is_empty() {
            format!("Serves the built-in profile `{id}` ({name}).")
        } else {
            format!("Serves the built-in profile `{id}` ({name}): {description}")
        };
        Ok(ProfileSimulator {
            command: command.clone(),
            long_about: format!("{about}\n\n{serves}\n\nExample: {example}"),
            // A one-line summary, as clap shows the drivers' own (no closing period).
            about: about.trim_end_matches('.').to_string(),
            profile: id.to_string(),
            driver,
        })
    }
}

/// Just what [`declared`] reads of a profile: the rest is [`super::Profile::parse`]'s job.
#[derive(Deserialize)]
struct Header {
    name: String,
    #[serde(default)]
    description: String,
    driver: String,
    #[serde(default)]
    transport: PortOnly,
    simulate: Option<SimulateTable>,
}

#[derive(Default, Deserialize)]
struct PortOnly {
    port: Option<u16>,
}

/// The simulator commands the profiles `(id, path, text)` name for themselves, in the
/// order given, and the problems with the others. Reads only what it needs of each file,
/// so it is cheap enough to run for every command line; a profile that does not parse is
/// left to [`super::Profile::parse`] to report, unless its `[simulate]` is at fault. Two
/// profiles naming the same command is an error at the second one's line.
pub fn declared<'a>(
    profiles: impl IntoIterator<Item = (&'a str, PathBuf, &'a str)>,
) -> (Vec<ProfileSimulator>, Option<ConfigErrors>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let mut taken: BTreeMap<String, (String, PathBuf)> = BTreeMap::new();
    for (id, path, text) in profiles {
        let Ok(header) = parse_toml::<Header>(&path, text) else {
            continue;
        };
        let Some(file) = &header.simulate else {
            continue;
        };
        let at = |message: String| ConfigError::at(&path, text, Some(file.command.span()), message);
        let Some(driver) = avgate_drivers::driver(&header.driver) else {
            continue;
        };
        let checked = ProfileSimulator::check(
            file,
            id,
            &header.name,
            &header.description,
            header.transport.port,
            driver,
        );
        match checked {
            Err(why) => errors.push(at(why)),
            Ok(simulator) => match taken.get(&simulator.command) {
                Some((first, first_path)) => errors.push(at(format!(
                    "[simulate] command `{}` is already the command of profile `{first}` ({}); pick another name",
                    simulator.command,
                    first_path.display()
                ))),
                None => {
                    taken.insert(simulator.command.clone(), (id.to_string(), path.clone()));
                    found.push(simulator);
                }
            },
        }
    }
    let problems = (!errors.is_empty()).then_some(ConfigErrors(errors));
    (found, problems)
}

/// Where a built-in profile's text says it came from, in messages.
pub(super) fn built_in_path(id: &str) -> PathBuf {
    Path::new("device-profiles").join(format!("{id}.toml (built in)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Profile;

    /// A scripted profile (the smallest script there is) with `simulator` as its
    /// `[simulate]` table body, at line 4.
    fn scripted(simulator: &str) -> String {
        format!(
            "name = \"Box\"\ndriver = \"scripted\"\n[simulate]\n{simulator}\n\
             [transport]\nport = 7100\n\
             [options]\nframing = {{ kind = \"line\", end = \"\\r\" }}\n\
             [options.commands.reset]\nsend = \"RESET\"\n"
        )
    }

    #[test]
    fn a_profile_names_its_own_command_with_its_help() {
        let text = scripted("command = \"box\"\nabout = \"A box on a wire.\"");
        let profile = Profile::parse("box-1", Path::new("box-1.toml"), &text).unwrap();
        let simulator = profile.simulator.expect("declared");
        assert_eq!(simulator.command, "box");
        assert_eq!(simulator.about, "A box on a wire");
        assert_eq!(simulator.profile, "box-1");
        assert_eq!(simulator.driver.name, "scripted");
        assert!(
            simulator.long_about.contains("`box-1` (Box)")
                && simulator
                    .long_about
                    .ends_with("Example: avgate simulate box --listen 127.0.0.1:7100"),
            "{}",
            simulator.long_about
        );
    }

    #[test]
    fn a_driver_command_or_a_bad_name_is_refused_at_its_line() {
        for (command, says) in [
            ("pjlink", "the pjlink driver's own `avgate simulate pjlink`"),
            ("scripted", "the scripted driver's own"),
            ("Box 2", "lowercase letters, digits and `-`"),
            ("help", "not `help`"),
        ] {
            let text = scripted(&format!("command = \"{command}\""));
            let error = Profile::parse("box", Path::new("box.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("box.toml:4:11: [simulate] command") && error.contains(says),
                "{command}: {error}"
            );
        }
    }

    #[test]
    fn a_driver_whose_simulator_serves_no_profile_cannot_be_named() {
        let text = "name = \"P\"\ndriver = \"pjlink\"\n[simulate]\ncommand = \"projector\"\n";
        let error = Profile::parse("p", Path::new("p.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("p.toml:4:11:") && error.contains("serves no profile"),
            "{error}"
        );
    }

    #[test]
    fn two_profiles_naming_one_command_is_an_error_at_the_second() {
        let first = scripted("command = \"box\"");
        let second = format!("# the same box again\n{first}");
        let other = scripted("command = \"crate\"");
        let (found, problems) = declared([
            ("box-1", PathBuf::from("box-1.toml"), first.as_str()),
            ("box-2", PathBuf::from("box-2.toml"), second.as_str()),
            ("crate", PathBuf::from("crate.toml"), other.as_str()),
        ]);
        let commands: Vec<&str> = found.iter().map(|s| s.command.as_str()).collect();
        assert_eq!(commands, ["box", "crate"], "the first keeps its command");
        let problems = problems.expect("a clash").to_string();
        assert!(
            problems.starts_with("box-2.toml:5:11: [simulate] command `box` is already the command of profile `box-1` (box-1.toml)"),
            "{problems}"
        );
    }

    #[test]
    fn the_built_in_profiles_name_their_commands_without_a_clash() {
        let (found, problems) = Profile::built_in_simulators();
        assert!(problems.is_none(), "{problems:?}");
        let mut named: Vec<(&str, &str)> = found
            .iter()
            .map(|s| (s.command.as_str(), s.profile.as_str()))
            .collect();
        named.sort();
        assert_eq!(
            named,
            [
                ("kramer", "kramer-protocol-3000"),
                ("nec", "nec-display"),
                ("shure", "shure-ulxd-receiver"),
                ("tesira", "biamp-tesira"),
                ("videohub", "blackmagic-videohub"),
            ]
        );
        for simulator in &found {
            let profile = Profile::find(&simulator.profile, &[]).unwrap().unwrap();
            assert_eq!(
                profile.simulator.map(|s| s.command),
                Some(simulator.command.clone()),
                "the full parse agrees with the quick read"
            );
        }
    }
}
