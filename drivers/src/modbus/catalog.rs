//! The Modbus driver's catalog, computed from the profile's register map: a point per
//! mapped point (its type from the register type, scale and enum names), the `write`
//! command over the writable ones, and a query per poll group that has points.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::RegisterMap;
use super::map::{Kind, MapError};
use super::session::{Options, WRITE};
use crate::{
    ArgSpec, ArgType, Catalog, CommandSpec, DriverSettings, OptionsError, OptionsPath, PathKey,
    PointSpec, PointType, QuerySpec,
};

/// Checks the session options and the register map in `[options]`, and derives the
/// catalog from the map.
pub fn catalog(settings: &DriverSettings) -> Result<Catalog, OptionsError> {
    Options::from_options(&settings.options)?;
    let map = RegisterMap::from_options(&settings.options).map_err(|error| {
        OptionsError::at(where_is(&error, &settings.options), error.to_string())
    })?;
    let mut points = BTreeMap::new();
    for point in &map.points {
        let kind = match point.kind {
            Kind::Bool | Kind::Bit(_) => PointType::Bool,
            Kind::String { .. } => PointType::String,
            _ if !point.enum_map.is_empty() => PointType::Enum,
            kind if kind.is_integer() && point.is_unscaled() => PointType::Integer,
            _ => PointType::Number,
        };
        let mut spec = PointSpec::new(
            kind,
            format!(
                "{} {}{}",
                point.table,
                point.address,
                if point.writable { ", writable" } else { "" }
            ),
        );
        spec.values = point.enum_map.values().cloned().collect();
        spec.unit = point.unit.clone();
        points.insert(point.name.clone(), spec);
    }
    let writable: Vec<String> = map
        .points
        .iter()
        .filter(|p| p.writable)
        .map(|p| p.name.clone())
        .collect();
    let mut commands = BTreeMap::new();
    if !writable.is_empty() {
        commands.insert(
            WRITE.to_string(),
            CommandSpec::new("Write a writable point; the result follows the device's read-back.")
                .arg(
                    "point",
                    ArgSpec::new(ArgType::Enum, "The point to write.").values(writable),
                )
                .arg(
                    "value",
                    ArgSpec::new(
                        ArgType::Any,
                        "The new value, as the point reports it (bool, number or enum name).",
                    ),
                ),
        );
    }
    // Groups without points would poll nothing.
    let queries = map
        .poll_groups
        .iter()
        .filter(|(group, _)| map.points.iter().any(|p| &p.poll == *group))
        .map(|(group, every)| QuerySpec {
            name: group.clone(),
            every: Some(*every),
            description: format!("Reads the points of poll group `{group}`."),
            defined_at: vec![
                PathKey::Key("poll_groups".into()),
                PathKey::Key(group.clone()),
            ],
        })
        .collect();
    Ok(Catalog {
        points,
        commands,
        queries,
    })
}

/// Where in `[options]` a map error is: the point's field (the last point of that name,
/// for a duplicate), a poll group, a map-level limit.
fn where_is(error: &MapError, options: &Map<String, Value>) -> OptionsPath {
    let key = |k: &str| PathKey::Key(k.to_string());
    if let MapError::BadInterval { group, .. } = error {
        return vec![key("poll_groups"), key(group)];
    }
    let Some(point) = error.point() else {
        return error
            .field()
            .map(|field| vec![key(field)])
            .unwrap_or_default();
    };
    let named = |(_, p): &(usize, &Value)| p.get("name").and_then(Value::as_str) == Some(point);
    let points = options.get("points").and_then(Value::as_array);
    let index = points.and_then(|points| {
        let mut named_so = points.iter().enumerate().filter(named);
        match error {
            MapError::DuplicateName { .. } => named_so.next_back(),
            _ => named_so.next(),
        }
        .map(|(i, _)| i)
    });
    let Some(index) = index else {
        return vec![key("points")];
    };
    let mut at = vec![key("points"), PathKey::Index(index)];
    if let Some(field) = error.field() {
        at.push(key(field));
    }
    at
}
