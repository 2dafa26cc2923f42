//! Reading a command's arguments: one set of helpers, one wording for what is wrong.
//!
//! The router has already checked arguments against the profile's schema; these catch
//! what a schema cannot (a request built by hand, a profile that widened a range) and
//! say which argument is wrong and what was expected.

use std::ops::RangeInclusive;

use serde_json::{Map, Value};

use crate::{DeviceError, DeviceErrorKind};

fn invalid(message: String) -> DeviceError {
    DeviceError::new(DeviceErrorKind::InvalidArgs, message)
}

/// A required argument.
pub fn required<'a>(args: &'a Map<String, Value>, name: &str) -> Result<&'a Value, DeviceError> {
    match args.get(name) {
        None | Some(Value::Null) => Err(invalid(format!("missing argument `{name}`"))),
        Some(value) => Ok(value),
    }
}

/// An integer argument within `range`.
pub fn integer(
    args: &Map<String, Value>,
    name: &str,
    range: RangeInclusive<i64>,
) -> Result<i64, DeviceError> {
    let value = required(args, name)?;
    let n = value.as_i64().ok_or_else(|| {
        invalid(format!(
            "argument `{name}`: expected an integer, got {value}"
        ))
    })?;
    if !range.contains(&n) {
        return Err(invalid(format!(
            "argument `{name}`: {n} is out of range {}..={}",
            range.start(),
            range.end()
        )));
    }
    Ok(n)
}

/// An integer argument within `range` that may be left out.
pub fn optional_integer(
    args: &Map<String, Value>,
    name: &str,
    range: RangeInclusive<i64>,
) -> Result<Option<i64>, DeviceError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => integer(args, name, range).map(Some),
    }
}

/// A boolean argument.
pub fn boolean(args: &Map<String, Value>, name: &str) -> Result<bool, DeviceError> {
    let value = required(args, name)?;
    value.as_bool().ok_or_else(|| {
        invalid(format!(
            "argument `{name}`: expected true or false, got {value}"
        ))
    })
}

/// A boolean argument that may be left out (a mute naming only video).
pub fn optional_boolean(
    args: &Map<String, Value>,
    name: &str,
) -> Result<Option<bool>, DeviceError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => boolean(args, name).map(Some),
    }
}

/// A string argument.
pub fn text<'a>(args: &'a Map<String, Value>, name: &str) -> Result<&'a str, DeviceError> {
    let value = required(args, name)?;
    value
        .as_str()
        .ok_or_else(|| invalid(format!("argument `{name}`: expected a string, got {value}")))
}

/// An argument as the text a text protocol would carry: numbers in decimal, booleans as
/// `true`/`false`, strings as they are.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn errors_name_the_argument_and_what_was_expected() {
        let a = args(json!({"output": 9, "name": 3, "on": "yes"}));
        assert_eq!(
            integer(&a, "output", 1..=8).unwrap_err().message,
            "argument `output`: 9 is out of range 1..=8"
        );
        assert_eq!(
            integer(&a, "input", 1..=8).unwrap_err().message,
            "missing argument `input`"
        );
        assert!(
            text(&a, "name")
                .unwrap_err()
                .message
                .contains("expected a string")
        );
        assert!(
            boolean(&a, "on")
                .unwrap_err()
                .message
                .contains("true or false")
        );
        assert_eq!(integer(&args(json!({"output": 8})), "output", 1..=8), Ok(8));
        assert_eq!(optional_boolean(&a, "video"), Ok(None));
        assert_eq!(optional_integer(&a, "input", 1..=8), Ok(None));
        assert!(optional_integer(&a, "output", 1..=8).is_err());
        assert!(optional_boolean(&a, "on").is_err());
    }
}
