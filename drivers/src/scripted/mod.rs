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
//!   [`Script`]; errors carry the key path, which [`load`] turns into a byte span.
//! - [`session`]: the client, a sans-IO [`crate::Protocol`].
//! - [`model`]: the simulated device, a [`crate::kit::DeviceModel`].
//!
//! device-profiles/README.md walks through writing one.

pub mod definition;
mod eval;
pub mod model;
pub mod session;
pub mod template;

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use definition::{Definition, DefinitionError, Script};
pub use model::Model;
pub use session::Session;

use crate::{DriverInfo, DriverSettings, Protocol};

/// The scripted driver as profiles name it. Its commands, queries and points come from
/// the profile: see [`catalog`].
pub const DRIVER: DriverInfo = DriverInfo {
    name: "scripted",
    commands: &[],
    queries: &[],
    points: &[],
    build,
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

/// A problem in a profile's text, at a byte range of it when one can be named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub span: Option<Range<usize>>,
    pub message: String,
}

/// Reads and compiles the script of a whole profile file; each error carries the span of
/// the key at fault, for file:line:column messages.
pub fn load(text: &str) -> Result<Script, Vec<Located>> {
    #[derive(Deserialize)]
    struct File {
        options: Option<Definition>,
    }
    let file: File = toml::from_str(text).map_err(|e| {
        vec![Located {
            span: e.span(),
            message: format!("[options]: {}", e.message()),
        }]
    })?;
    let Some(definition) = file.options else {
        return Err(vec![Located {
            span: None,
            message: "a scripted profile needs [options] with at least `framing`".into(),
        }]);
    };
    Script::compile(definition).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| {
                let mut path = vec!["options".to_string()];
                path.extend(e.path.iter().cloned());
                Located {
                    span: span_of(text, &path),
                    message: format!("{}: {}", path.join("."), e.message),
                }
            })
            .collect()
    })
}

/// The span of the value at `path` (table keys and array indices), or of the deepest
/// part of it that exists.
pub fn span_of(text: &str, path: &[String]) -> Option<Range<usize>> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut array: Option<&[toml::Spanned<DeValue>]> = None;
    let mut span = None;
    for part in path {
        let value = match array.take() {
            Some(items) => items.get(part.parse::<usize>().ok()?)?,
            None => {
                let (key, value) = table.iter().find(|(k, _)| k.get_ref() == part)?;
                span = Some(key.span());
                value
            }
        };
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            DeValue::Array(items) => array = Some(items),
            _ => {}
        }
        if !matches!(value.get_ref(), DeValue::Table(_)) {
            span = Some(value.span());
        }
    }
    span
}

/// What a scripted profile offers panels, derived from its script: the points, the
/// commands with their argument schemas (the profile's own `[commands]` keys), the polls.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Point name (or `route.*` pattern) to its declaration, in a profile's `[points]` shape.
    pub points: Vec<(String, Value)>,
    /// Command name to `{ description, args }`, in a profile's `[commands]` shape.
    pub commands: Vec<(String, Value)>,
    pub polls: Vec<(String, Duration)>,
}

pub fn catalog(script: &Script) -> Catalog {
    let d = &script.definition;
    Catalog {
        points: d
            .points
            .iter()
            .map(|(name, decl)| {
                (
                    name.clone(),
                    serde_json::to_value(decl).expect("plain data"),
                )
            })
            .collect(),
        commands: d
            .commands
            .iter()
            .map(|(name, ex)| {
                let mut spec = serde_json::json!({ "args": ex.args });
                if !ex.description.is_empty() {
                    spec["description"] = Value::from(ex.description.clone());
                }
                (name.clone(), spec)
            })
            .collect(),
        polls: d
            .queries
            .iter()
            .filter_map(|(name, ex)| Some((name.clone(), ex.every?)))
            .collect(),
    }
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
