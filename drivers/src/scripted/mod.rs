//! `driver = "scripted"`: a protocol written as data. The profile's `[options]` script
//! every exchange: how frames are cut, the handshake, each command's request and the reply
//! that completes it, each query, the unsolicited reports, the error replies, and which
//! points each reply sets. "Scripted" because the profile is the script the session kit
//! ([`crate::kit`]) plays, line by line; the simulator plays the other part of the same
//! script ([`model`]), so every scripted device is testable and demo-able with no code.
//!
//! - [`template`]: the field language of requests and replies (`#ROUTE 1,{output},{input}`),
//!   text and hex.
//! - [`definition`]: the `[options]` keys ([`Definition`]), checked and compiled into a
//!   [`Script`]; errors carry the key path, which check-config turns into file:line:column.
//! - [`session`]: the client, a sans-IO [`crate::Protocol`].
//! - [`model`]: the simulated device, a [`crate::kit::DeviceModel`].
//!
//! device-profiles/README.md walks through writing one.

mod cli;
pub mod definition;
mod eval;
pub mod model;
pub mod session;
pub mod template;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use definition::{Definition, DefinitionError, Script};
pub use model::Model;
pub use session::Session;

use crate::{
    Catalog, CommandSpec, DriverInfo, DriverSettings, OptionsError, OptionsPath, PathKey,
    PointSpec, Protocol, QuerySpec,
};

/// The scripted driver as profiles name it. Its commands, queries and points come from
/// the profile: see [`catalog`].
pub const DRIVER: DriverInfo = DriverInfo {
    name: "scripted",
    catalog,
    build,
    link: crate::plain_link,
    simulator: Some(cli::SIMULATOR),
};

fn build(settings: &DriverSettings) -> Result<Box<dyn Protocol>, String> {
    let script = from_options(&settings.options).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    Ok(Box::new(Session::new(Arc::new(script))))
}

/// Compiles the script in a profile's `[options]` (as the gateway holds them).
pub fn from_options(options: &Map<String, Value>) -> Result<Script, Vec<DefinitionError>> {
    let definition: Definition =
        serde_json::from_value(Value::Object(options.clone())).map_err(|e| {
            vec![DefinitionError {
                path: Vec::new(),
                message: e.to_string(),
            }]
        })?;
    Script::compile(definition)
}

/// What a scripted profile offers panels, derived from its script: the points, the
/// commands with their argument schemas, and a query per scripted query (polled by
/// default when it says `every`). Each problem names its key path in `[options]`.
pub fn catalog(settings: &DriverSettings) -> Result<Catalog, OptionsError> {
    // Read through the shared reader first, so a wrong key or type is placed at its path.
    let definition: Definition = settings.options()?;
    let script = Script::compile(definition).map_err(|errors| {
        let mut found = errors
            .into_iter()
            .map(|error| OptionsError::at(options_path(&error.path), error.message));
        let mut first = found
            .next()
            .unwrap_or_else(|| OptionsError::new("the script could not be read"));
        first.more = found.collect();
        first
    })?;
    let definition = &script.definition;
    let mut catalog = Catalog::default();
    for (name, declaration) in &definition.points {
        let value = serde_json::to_value(declaration).expect("plain data");
        let spec = serde_json::from_value::<PointSpec>(value).map_err(|e| {
            OptionsError::at(
                options_path(&["points".into(), name.clone()]),
                e.to_string(),
            )
        })?;
        catalog.points.insert(name.clone(), spec);
    }
    for (name, exchange) in &definition.commands {
        let mut value = serde_json::json!({ "args": exchange.args });
        if !exchange.description.is_empty() {
            value["description"] = Value::from(exchange.description.clone());
        }
        let spec = serde_json::from_value::<CommandSpec>(value).map_err(|e| {
            let path = ["commands".into(), name.clone(), "args".into()];
            OptionsError::at(options_path(&path), e.to_string())
        })?;
        catalog.commands.insert(name.clone(), spec);
    }
    for (name, exchange) in &definition.queries {
        catalog.queries.push(QuerySpec {
            name: name.clone(),
            every: exchange.every,
            description: String::new(),
            defined_at: options_path(&["queries".into(), name.clone(), "every".into()]),
        });
    }
    Ok(catalog)
}

/// A definition error's path as the options locator reads it: a number is an array index.
fn options_path(path: &[String]) -> OptionsPath {
    path.iter()
        .map(|part| match part.parse::<usize>() {
            Ok(index) => PathKey::Index(index),
            Err(_) => PathKey::Key(part.clone()),
        })
        .collect()
}

/// Serves the simulated device of `script` on TCP at `listen`.
pub fn serve(
    script: Arc<Script>,
    listen: SocketAddr,
) -> std::io::Result<crate::kit::Served<Model>> {
    crate::kit::serve_tcp(Model::new(script), listen, "scripted simulator")
}

#[cfg(test)]
mod tests;
