//! Turning captured fields into point values and back: what both the session and the
//! simulator do with a `set` table.

use std::collections::BTreeMap;

use serde_json::Value;

use super::definition::{PointKind, Script, Setter};
use super::template::Vars;

fn no_lookup(_: &str) -> Option<Value> {
    None
}

/// The point updates `set` gives for `vars`; a setter whose fields are missing or whose
/// value does not fit its point is skipped with the reason.
pub fn apply(script: &Script, set: &[Setter], vars: &Vars) -> Vec<Result<(String, Value), String>> {
    set.iter()
        .map(|setter| {
            let maps = &script.definition.maps;
            let point = setter.point.render(vars, maps, 0, &no_lookup)?;
            let point = String::from_utf8_lossy(&point).into_owned();
            let raw = match setter.value.single_field().and_then(|f| vars.get(f)) {
                Some(value) => value.clone(),
                None => Value::String(
                    String::from_utf8_lossy(&setter.value.render(vars, maps, 0, &no_lookup)?)
                        .into_owned(),
                ),
            };
            let decl = script
                .point(&point)
                .ok_or_else(|| format!("point `{point}` is not declared"))?;
            let value = coerce(&raw, decl.kind, setter.scale, setter.offset)
                .ok_or_else(|| format!("{raw} does not fit point `{point}` ({:?})", decl.kind))?;
            if decl.kind == PointKind::Enum
                && !decl
                    .values
                    .iter()
                    .any(|v| Some(v.as_str()) == value.as_str())
            {
                return Err(format!(
                    "{value} is not one of `{point}`'s values ({})",
                    decl.values.join(", ")
                ));
            }
            Ok((point, value))
        })
        .collect()
}

fn coerce(raw: &Value, kind: PointKind, scale: f64, offset: f64) -> Option<Value> {
    let text = || match raw {
        Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    };
    let number = || -> Option<f64> {
        raw.as_f64()
            .or_else(|| text().parse::<f64>().ok())
            .map(|n| n * scale + offset)
    };
    Some(match kind {
        PointKind::Bool => match raw {
            Value::Bool(b) => Value::Bool(*b),
            _ => match text().to_ascii_lowercase().as_str() {
                "1" | "true" | "on" | "yes" => Value::Bool(true),
                "0" | "false" | "off" | "no" => Value::Bool(false),
                _ => return None,
            },
        },
        PointKind::Integer => {
            let n = number()?;
            (n.fract() == 0.0).then(|| Value::from(n as i64))?
        }
        PointKind::Number => {
            let n = number()?;
            if n.fract() == 0.0 && n.abs() < 1e15 {
                Value::from(n as i64)
            } else {
                Value::from(n)
            }
        }
        PointKind::String | PointKind::Enum => Value::String(text()),
    })
}

/// For the simulator: the value of field `field` as the device holds it, found through a
/// setter that sets a point from exactly that field, with the arithmetic undone.
pub fn lookup(
    script: &Script,
    set: &[Setter],
    vars: &Vars,
    state: &BTreeMap<String, Value>,
    field: &str,
) -> Option<Value> {
    set.iter()
        .filter(|s| s.value.single_field() == Some(field))
        .find_map(|setter| {
            let point = setter
                .point
                .render(vars, &script.definition.maps, 0, &no_lookup)
                .ok()?;
            let value = state.get(String::from_utf8_lossy(&point).as_ref())?;
            if setter.scale == 1.0 && setter.offset == 0.0 {
                return Some(value.clone());
            }
            let raw = (value.as_f64()? - setter.offset) / setter.scale;
            Some(Value::from(raw.round() as i64))
        })
}
