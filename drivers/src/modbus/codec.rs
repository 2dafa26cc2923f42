//! Turning registers and bits into point values and back.
//!
//! Two layers, so each can be tested on its own:
//!
//! - [`decode_raw`] / [`encode_raw`]: registers in the point's [`WordOrder`] to the value the
//!   device holds ([`Raw`]) and back. Pure bit shuffling; the vectors in the tests are the
//!   ones libmodbus, Telegraf and the spec examples use.
//! - [`decode`] / [`encode`]: the point's view on top: bit extraction, `scale`/`offset`,
//!   `enum` names, and range checks for writes.
//!
//! Values come out as JSON because that is what points carry. Scaled integers are rounded
//! to the decimals the scale and offset have (raw 2301 × 0.1 is 230.1, not
//! 230.10000000000002), and f32 values are reported as the shortest decimal that reads back
//! as the same f32 (123.456, not 123.45600128173828): panels show these numbers as they are.

use serde_json::{Number, Value};

use crate::{DeviceError, DeviceErrorKind};

use super::map::{Kind, Point, WordOrder};

/// A value as the device holds it, before scale, offset and enum names.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(String),
}

/// What a read returned for one point: bits for coils and discrete inputs, registers
/// otherwise. Exactly the point's width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Data<'a> {
    Bits(&'a [bool]),
    Registers(&'a [u16]),
}

/// What a write must put on the device for one point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// A coil, or one bit of a holding register (`Kind::Bit`).
    Bit(bool),
    /// The point's registers, in wire order.
    Registers(Vec<u16>),
}

/// Why a value could not be decoded or encoded. Encoding errors are the panel's mistake
/// ([`DeviceErrorKind::InvalidArgs`]); a decoding error means the transport handed over the
/// wrong amount of data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("point `{point}`: expected {expected}, got {got}")]
    WrongType {
        point: String,
        expected: &'static str,
        got: String,
    },
    #[error("point `{point}`: {value} is out of range for {data_type} ({range})")]
    OutOfRange {
        point: String,
        value: String,
        data_type: &'static str,
        range: String,
    },
    #[error("point `{point}`: {value} is not representable: {reason}")]
    NotRepresentable {
        point: String,
        value: String,
        reason: String,
    },
    #[error("point `{point}`: `{name}` is not one of {known}")]
    UnknownName {
        point: String,
        name: String,
        known: String,
    },
    #[error("point `{point}`: read returned {got} values, the point needs {expected}")]
    Length {
        point: String,
        expected: usize,
        got: usize,
    },
}

impl CodecError {
    pub fn kind(&self) -> DeviceErrorKind {
        match self {
            CodecError::Length { .. } => DeviceErrorKind::Failed,
            _ => DeviceErrorKind::InvalidArgs,
        }
    }
}

impl From<CodecError> for DeviceError {
    fn from(error: CodecError) -> DeviceError {
        DeviceError::new(error.kind(), error.to_string())
    }
}

/// Converts between the point's wire order and big-endian (ABCD). The same call goes both
/// ways: each swap undoes itself.
pub fn reorder(order: WordOrder, registers: &[u16]) -> Vec<u16> {
    let mut words = registers.to_vec();
    if order.swaps_words() {
        words.reverse();
    }
    if order.swaps_bytes() {
        for word in &mut words {
            *word = word.swap_bytes();
        }
    }
    words
}

/// Registers (most significant first) as one integer.
fn join(words: &[u16]) -> u64 {
    words.iter().fold(0, |acc, &w| (acc << 16) | u64::from(w))
}

/// The low `count` registers of `value`, most significant first.
fn split(value: u64, count: usize) -> Vec<u16> {
    (0..count)
        .rev()
        .map(|i| (value >> (16 * i)) as u16)
        .collect()
}

/// Reads the raw value of a register point. `registers` must be exactly the point's width
/// (the caller slices the read); `Kind::Bool` has no registers and is refused.
pub fn decode_raw(kind: Kind, order: WordOrder, registers: &[u16]) -> Option<Raw> {
    if kind == Kind::Bool || registers.len() != usize::from(kind.width()) {
        return None;
    }
    let words = reorder(order, registers);
    let bits = join(&words);
    Some(match kind {
        Kind::Bool => return None,
        Kind::Bit(bit) => Raw::Bool(bits >> bit & 1 == 1),
        Kind::U16 | Kind::U32 | Kind::U64 => Raw::Unsigned(bits),
        Kind::I16 => Raw::Signed(i64::from(bits as u16 as i16)),
        Kind::I32 => Raw::Signed(i64::from(bits as u32 as i32)),
        Kind::I64 => Raw::Signed(bits as i64),
        Kind::F32 => Raw::Float(f64::from(f32::from_bits(bits as u32))),
        Kind::F64 => Raw::Float(f64::from_bits(bits)),
        Kind::String { .. } => Raw::Text(decode_text(&words)),
    })
}

/// Two characters per register, high byte first; trailing NULs and spaces are padding.
/// Bytes that are not UTF-8 show as replacement characters rather than failing the read.
fn decode_text(words: &[u16]) -> String {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    let end = bytes
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(0, |i| i + 1);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Writes a raw value as the point's registers in wire order. `None` when the raw value's
/// shape does not match the kind (a text for a u32) or a number does not fit it.
pub fn encode_raw(kind: Kind, order: WordOrder, raw: &Raw) -> Option<Vec<u16>> {
    let width = usize::from(kind.width());
    let words = match (kind, raw) {
        (Kind::U16 | Kind::U32 | Kind::U64, Raw::Unsigned(v)) => {
            (width == 4 || *v >> (16 * width) == 0).then(|| split(*v, width))?
        }
        (Kind::I16 | Kind::I32 | Kind::I64, Raw::Signed(v)) => {
            let bits = 16 * width as u32;
            let fits = bits == 64 || (*v >> (bits - 1) == 0 || *v >> (bits - 1) == -1);
            fits.then(|| split(*v as u64, width))?
        }
        (Kind::F32, Raw::Float(v)) => split(u64::from((*v as f32).to_bits()), 2),
        (Kind::F64, Raw::Float(v)) => split(v.to_bits(), 4),
        (Kind::String { .. }, Raw::Text(text)) => {
            let bytes = text.as_bytes();
            if bytes.len() > 2 * width {
                return None;
            }
            let mut padded = bytes.to_vec();
            padded.resize(2 * width, 0);
            padded
                .chunks(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect()
        }
        _ => return None,
    };
    Some(reorder(order, &words))
}

/// The point's value from what a read returned for it.
pub fn decode(point: &Point, data: Data<'_>) -> Result<Value, CodecError> {
    let length_error = |got: usize| CodecError::Length {
        point: point.name.clone(),
        expected: usize::from(point.width()),
        got,
    };
    let raw = match (point.kind, data) {
        (Kind::Bool, Data::Bits([bit])) => Raw::Bool(*bit),
        (Kind::Bool, Data::Bits(bits)) => return Err(length_error(bits.len())),
        (_, Data::Registers(registers)) => decode_raw(point.kind, point.order, registers)
            .ok_or_else(|| length_error(registers.len()))?,
        (_, Data::Bits(bits)) => return Err(length_error(bits.len())),
    };
    Ok(present(point, raw))
}

/// Why a float reading looks like the wrong word order rather than a measurement (NaN or
/// infinite, subnormal, or of an absurd magnitude), as a hint for the integrator; `None`
/// when it looks plausible. Copying a CDAB meter's profile for an ABCD meter gives values
/// like `2.4175e-41`.
pub fn implausible(point: &Point, value: &Value) -> Option<String> {
    let smallest_normal = match point.kind {
        Kind::F32 => f64::from(f32::MIN_POSITIVE),
        Kind::F64 => f64::MIN_POSITIVE,
        _ => return None,
    };
    let what = match value.as_f64() {
        None if value.is_null() => "not a number (NaN or infinite)".to_string(),
        None => return None,
        Some(v) => {
            let raw = ((v - point.offset) / point.scale).abs();
            if raw != 0.0 && raw < smallest_normal {
                format!("{v:e}, a subnormal float")
            } else if raw > 1e15 || (raw != 0.0 && raw < 1e-20) {
                format!("{v:e}, an absurd magnitude")
            } else {
                return None;
            }
        }
    };
    let order = match point.order {
        WordOrder::Abcd => "ABCD",
        WordOrder::Cdab => "CDAB",
        WordOrder::Badc => "BADC",
        WordOrder::Dcba => "DCBA",
    };
    Some(format!(
        "point `{}` read {what}: the word order is probably wrong (it has order = \"{order}\"; \
         try the others of ABCD, CDAB, BADC, DCBA: a profile copied from another meter keeps \
         that meter's order)",
        point.name
    ))
}

/// Applies enum names, scale and offset to a raw value.
fn present(point: &Point, raw: Raw) -> Value {
    let integer = match raw {
        Raw::Bool(b) => return Value::Bool(b),
        Raw::Text(text) => return Value::String(text),
        Raw::Float(v) => return float_value(point, v),
        Raw::Unsigned(v) => i128::from(v),
        Raw::Signed(v) => i128::from(v),
    };
    if let Some(name) = i64::try_from(integer)
        .ok()
        .and_then(|key| point.enum_map.get(&key))
    {
        return Value::String(name.clone());
    }
    let decimals = decimals(point.scale).max(decimals(point.offset));
    if decimals == 0 {
        // Whole scale and offset: exact integer arithmetic, so u64 and i64 keep every digit.
        let exact = integer
            .checked_mul(point.scale as i128)
            .and_then(|v| v.checked_add(point.offset as i128));
        if let Some(value) = exact.and_then(integer_value) {
            return value;
        }
    }
    number(round_to(
        integer as f64 * point.scale + point.offset,
        decimals,
    ))
}

/// A float register value with scale and offset applied; NaN and infinities (which JSON
/// cannot carry) become null.
fn float_value(point: &Point, raw: f64) -> Value {
    let single = point.kind == Kind::F32;
    let raw = if single { shortest_f32(raw) } else { raw };
    let value = raw * point.scale + point.offset;
    number(if single { shortest_f32(value) } else { value })
}

/// The f64 with the shortest decimal form that is the same f32: what a person typed in.
fn shortest_f32(value: f64) -> f64 {
    let single = value as f32;
    if !single.is_finite() {
        return value;
    }
    single.to_string().parse().unwrap_or(value)
}

fn integer_value(value: i128) -> Option<Value> {
    if let Ok(v) = i64::try_from(value) {
        Some(Value::from(v))
    } else {
        u64::try_from(value).ok().map(Value::from)
    }
}

fn number(value: f64) -> Value {
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// Digits after the point in the shortest form of `value` (0.1 → 1, 0.025 → 3, 10 → 0).
fn decimals(value: f64) -> u32 {
    let text = value.abs().to_string();
    text.split_once('.').map_or(0, |(_, d)| d.len() as u32)
}

/// Rounds to `decimals` places when that is within f64's precision; otherwise as is.
fn round_to(value: f64, decimals: u32) -> f64 {
    if decimals > 15 {
        return value;
    }
    let factor = 10f64.powi(decimals as i32);
    let scaled = value * factor;
    if !scaled.is_finite() || scaled.abs() >= 2f64.powi(53) {
        return value;
    }
    scaled.round() / factor
}

/// What a write of `value` to `point` puts on the device. Checks the value against the
/// type's range after undoing scale and offset; does not check `writable` (see
/// [`super::write::plan_write`]).
pub fn encode(point: &Point, value: &Value) -> Result<Encoded, CodecError> {
    let wrong_type = |expected: &'static str| CodecError::WrongType {
        point: point.name.clone(),
        expected,
        got: value.to_string(),
    };
    let raw = match point.kind {
        Kind::Bool | Kind::Bit(_) => {
            return match value {
                Value::Bool(b) => Ok(Encoded::Bit(*b)),
                Value::Number(n) if n.as_u64() == Some(0) => Ok(Encoded::Bit(false)),
                Value::Number(n) if n.as_u64() == Some(1) => Ok(Encoded::Bit(true)),
                _ => Err(wrong_type("true or false")),
            };
        }
        Kind::String { length } => {
            let text = value.as_str().ok_or_else(|| wrong_type("a string"))?;
            if !text.is_ascii() {
                return Err(CodecError::NotRepresentable {
                    point: point.name.clone(),
                    value: value.to_string(),
                    reason: "only ASCII text can be written".into(),
                });
            }
            if text.len() > 2 * usize::from(length) {
                return Err(CodecError::OutOfRange {
                    point: point.name.clone(),
                    value: value.to_string(),
                    data_type: "string",
                    range: format!("at most {} characters", 2 * length),
                });
            }
            Raw::Text(text.to_string())
        }
        Kind::F32 | Kind::F64 => Raw::Float(float_raw(point, value)?),
        _ => integer_raw(point, value)?,
    };
    // Every range was checked above, so this only fails on a bug.
    let registers =
        encode_raw(point.kind, point.order, &raw).ok_or_else(|| CodecError::NotRepresentable {
            point: point.name.clone(),
            value: value.to_string(),
            reason: format!("does not fit {}", point.kind.data_type()),
        })?;
    Ok(Encoded::Registers(registers))
}

/// The register value for a float point: scale and offset undone, and an f32 that would
/// overflow refused rather than sent as infinity.
fn float_raw(point: &Point, value: &Value) -> Result<f64, CodecError> {
    let v = value.as_f64().ok_or_else(|| CodecError::WrongType {
        point: point.name.clone(),
        expected: "a number",
        got: value.to_string(),
    })?;
    let raw = (v - point.offset) / point.scale;
    let fits = match point.kind {
        Kind::F32 => (raw as f32).is_finite(),
        _ => raw.is_finite(),
    };
    if !fits {
        return Err(CodecError::OutOfRange {
            point: point.name.clone(),
            value: value.to_string(),
            data_type: point.kind.data_type().as_str(),
            range: format!(
                "±{:e}",
                if point.kind == Kind::F32 {
                    f64::from(f32::MAX)
                } else {
                    f64::MAX
                }
            ),
        });
    }
    Ok(raw)
}

/// The raw integer for an integer point: an enum name looked up, or a number with scale and
/// offset undone, which must land on a whole raw value inside the type's range.
fn integer_raw(point: &Point, value: &Value) -> Result<Raw, CodecError> {
    let not_representable = |reason: String| CodecError::NotRepresentable {
        point: point.name.clone(),
        value: value.to_string(),
        reason,
    };
    let raw: i128 = match value {
        Value::String(name) if !point.enum_map.is_empty() => point
            .enum_map
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(raw, _)| i128::from(*raw))
            .ok_or_else(|| CodecError::UnknownName {
                point: point.name.clone(),
                name: name.clone(),
                known: point
                    .enum_map
                    .values()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
        Value::Number(n) => {
            if let (true, Some(v)) = (point.is_unscaled(), n.as_i64()) {
                i128::from(v)
            } else if let (true, Some(v)) = (point.is_unscaled(), n.as_u64()) {
                i128::from(v)
            } else {
                let v = n.as_f64().unwrap_or(f64::NAN);
                let exact = (v - point.offset) / point.scale;
                let rounded = exact.round();
                if !rounded.is_finite() || rounded.abs() >= 2f64.powi(100) {
                    return Err(out_of_range(point, value, None));
                }
                // Scales like 0.1 leave float noise (230.1 / 0.1 = 2301.0000000000005);
                // anything further from a whole raw value is a value the device cannot hold.
                if (exact - rounded).abs() > 1e-6 * rounded.abs().max(1.0) {
                    return Err(not_representable(if point.is_unscaled() {
                        format!("{} is a whole number type", point.kind.data_type())
                    } else {
                        format!(
                            "it is not a whole multiple of the scale {} from the offset {}",
                            point.scale, point.offset
                        )
                    }));
                }
                rounded as i128
            }
        }
        _ => {
            return Err(CodecError::WrongType {
                point: point.name.clone(),
                expected: if point.enum_map.is_empty() {
                    "a number"
                } else {
                    "a number or an enum name"
                },
                got: value.to_string(),
            });
        }
    };
    let (min, max) = integer_range(point.kind);
    if raw < min || raw > max {
        return Err(out_of_range(point, value, Some(raw)));
    }
    Ok(match point.kind {
        Kind::I16 | Kind::I32 | Kind::I64 => Raw::Signed(raw as i64),
        _ => Raw::Unsigned(raw as u64),
    })
}

fn out_of_range(point: &Point, value: &Value, raw: Option<i128>) -> CodecError {
    let (min, max) = integer_range(point.kind);
    let range = if point.is_unscaled() {
        format!("{min}..={max}")
    } else {
        let low = min as f64 * point.scale + point.offset;
        let high = max as f64 * point.scale + point.offset;
        let (low, high) = if low <= high {
            (low, high)
        } else {
            (high, low)
        };
        match raw {
            Some(raw) => format!("{low}..={high}; raw {raw} is outside {min}..={max}"),
            None => format!("{low}..={high}"),
        }
    };
    CodecError::OutOfRange {
        point: point.name.clone(),
        value: value.to_string(),
        data_type: point.kind.data_type().as_str(),
        range,
    }
}

/// Smallest and largest raw value of an integer kind.
fn integer_range(kind: Kind) -> (i128, i128) {
    match kind {
        Kind::U16 => (0, u16::MAX.into()),
        Kind::I16 => (i16::MIN.into(), i16::MAX.into()),
        Kind::U32 => (0, u32::MAX.into()),
        Kind::I32 => (i32::MIN.into(), i32::MAX.into()),
        Kind::U64 => (0, u64::MAX.into()),
        Kind::I64 => (i64::MIN.into(), i64::MAX.into()),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::modbus::map::Table;
    use serde_json::json;

    const ORDERS: [WordOrder; 4] = [
        WordOrder::Abcd,
        WordOrder::Cdab,
        WordOrder::Badc,
        WordOrder::Dcba,
    ];

    /// A value in all four orders (ABCD, CDAB, BADC, DCBA).
    struct Vector {
        kind: Kind,
        raw: Raw,
        wire: [&'static [u16]; 4],
    }

    fn vectors() -> Vec<Vector> {
        vec![
            Vector {
                kind: Kind::U16,
                raw: Raw::Unsigned(0x1234),
                wire: [&[0x1234], &[0x1234], &[0x3412], &[0x3412]],
            },
            Vector {
                kind: Kind::I16,
                raw: Raw::Signed(-5),
                wire: [&[0xFFFB], &[0xFFFB], &[0xFBFF], &[0xFBFF]],
            },
            Vector {
                kind: Kind::U32,
                raw: Raw::Unsigned(123_456),
                wire: [
                    &[0x0001, 0xE240],
                    &[0xE240, 0x0001],
                    &[0x0100, 0x40E2],
                    &[0x40E2, 0x0100],
                ],
            },
            Vector {
                kind: Kind::I32,
                raw: Raw::Signed(-2),
                wire: [
                    &[0xFFFF, 0xFFFE],
                    &[0xFFFE, 0xFFFF],
                    &[0xFFFF, 0xFEFF],
                    &[0xFEFF, 0xFFFF],
                ],
            },
            Vector {
                kind: Kind::F32,
                raw: Raw::Float(f64::from(123.456f32)),
                wire: [
                    &[0x42F6, 0xE979],
                    &[0xE979, 0x42F6],
                    &[0xF642, 0x79E9],
                    &[0x79E9, 0xF642],
                ],
            },
            Vector {
                kind: Kind::F32,
                raw: Raw::Float(22.5),
                wire: [
                    &[0x41B4, 0x0000],
                    &[0x0000, 0x41B4],
                    &[0xB441, 0x0000],
                    &[0x0000, 0xB441],
                ],
            },
            Vector {
                kind: Kind::U64,
                raw: Raw::Unsigned(0x0102_0304_0506_0708),
                wire: [
                    &[0x0102, 0x0304, 0x0506, 0x0708],
                    &[0x0708, 0x0506, 0x0304, 0x0102],
                    &[0x0201, 0x0403, 0x0605, 0x0807],
                    &[0x0807, 0x0605, 0x0403, 0x0201],
                ],
            },
            Vector {
                kind: Kind::I64,
                raw: Raw::Signed(-2),
                wire: [
                    &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE],
                    &[0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF],
                    &[0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF],
                    &[0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF],
                ],
            },
            Vector {
                kind: Kind::F64,
                raw: Raw::Float(123.456),
                wire: [
                    &[0x405E, 0xDD2F, 0x1A9F, 0xBE77],
                    &[0xBE77, 0x1A9F, 0xDD2F, 0x405E],
                    &[0x5E40, 0x2FDD, 0x9F1A, 0x77BE],
                    &[0x77BE, 0x9F1A, 0x2FDD, 0x5E40],
                ],
            },
            Vector {
                kind: Kind::String { length: 3 },
                raw: Raw::Text("AB-12".into()),
                wire: [
                    &[0x4142, 0x2D31, 0x3200],
                    &[0x3200, 0x2D31, 0x4142],
                    &[0x4241, 0x312D, 0x0032],
                    &[0x0032, 0x312D, 0x4241],
                ],
            },
        ]
    }

    #[test]
    fn every_type_in_every_order_matches_the_vectors() {
        for vector in vectors() {
            for (order, wire) in ORDERS.iter().zip(vector.wire) {
                assert_eq!(
                    decode_raw(vector.kind, *order, wire),
                    Some(vector.raw.clone()),
                    "decode {:?} {order:?}",
                    vector.kind
                );
                assert_eq!(
                    encode_raw(vector.kind, *order, &vector.raw).as_deref(),
                    Some(wire),
                    "encode {:?} {order:?}",
                    vector.kind
                );
            }
        }
    }

    #[test]
    fn bits_of_a_register_in_every_order() {
        // Register value 0x8001: bits 0 and 15 set. Byte-swapped orders carry 0x0180.
        for (order, wire) in ORDERS.iter().zip([0x8001, 0x8001, 0x0180, 0x0180]) {
            for (bit, set) in [(0, true), (1, false), (7, false), (8, false), (15, true)] {
                assert_eq!(
                    decode_raw(Kind::Bit(bit), *order, &[wire]),
                    Some(Raw::Bool(set)),
                    "bit {bit} {order:?}"
                );
            }
        }
        assert_eq!(
            decode_raw(Kind::Bit(3), WordOrder::Abcd, &[0b1000]),
            Some(Raw::Bool(true))
        );
    }

    #[test]
    fn strings_trim_padding() {
        let text = |words: &[u16]| decode_raw(Kind::String { length: 4 }, WordOrder::Abcd, words);
        assert_eq!(
            text(&[0x4849, 0x2020, 0x2000, 0x0000]),
            Some(Raw::Text("HI".into()))
        );
        assert_eq!(
            text(&[0x2048, 0x4920, 0x4A00, 0x0000]),
            Some(Raw::Text(" HI J".into()))
        );
        assert_eq!(text(&[0, 0, 0, 0]), Some(Raw::Text(String::new())));
        assert_eq!(
            text(&[0x4142, 0x4344, 0x4546, 0x4748]),
            Some(Raw::Text("ABCDEFGH".into()))
        );
        // An odd-length text ends in a NUL byte, a full one fills every byte.
        assert_eq!(
            encode_raw(
                Kind::String { length: 2 },
                WordOrder::Abcd,
                &Raw::Text("abc".into())
            ),
            Some(vec![0x6162, 0x6300])
        );
        assert_eq!(
            encode_raw(
                Kind::String { length: 1 },
                WordOrder::Abcd,
                &Raw::Text("abc".into())
            ),
            None
        );
    }

    #[test]
    fn raw_shapes_and_widths_must_match() {
        assert_eq!(decode_raw(Kind::U32, WordOrder::Abcd, &[1]), None);
        assert_eq!(decode_raw(Kind::Bool, WordOrder::Abcd, &[1]), None);
        assert_eq!(
            encode_raw(Kind::U16, WordOrder::Abcd, &Raw::Unsigned(0x1_0000)),
            None
        );
        assert_eq!(
            encode_raw(Kind::I16, WordOrder::Abcd, &Raw::Signed(-32769)),
            None
        );
        assert_eq!(
            encode_raw(Kind::I16, WordOrder::Abcd, &Raw::Signed(-32768)),
            Some(vec![0x8000])
        );
        assert_eq!(
            encode_raw(Kind::U32, WordOrder::Abcd, &Raw::Signed(1)),
            None
        );
    }

    #[test]
    fn a_float_read_in_the_wrong_word_order_gets_a_hint_naming_the_order() {
        // 230 V as an ABCD meter sends it, decoded by a profile copied from a CDAB one:
        // 2.4178e-41.
        let volts = Point {
            order: WordOrder::Cdab,
            ..point(Kind::F32)
        };
        let words = split(u64::from(230.0f32.to_bits()), 2);
        let misread = decode(&volts, Data::Registers(&words)).unwrap();
        assert_eq!(misread, json!(2.4178e-41));
        let hint = implausible(&volts, &misread).expect("implausible");
        assert!(hint.contains("subnormal"), "{hint}");
        assert!(
            hint.contains("word order") && hint.contains("CDAB"),
            "{hint}"
        );
        // 230.1 V misread the same way is merely tiny.
        let words = split(u64::from(230.1f32.to_bits()), 2);
        let misread = decode(&volts, Data::Registers(&words)).unwrap();
        assert!(implausible(&volts, &misread).is_some(), "{misread}");

        assert!(implausible(&volts, &Value::Null).unwrap().contains("NaN"));
        assert!(
            implausible(&volts, &json!(3.2e21))
                .unwrap()
                .contains("absurd")
        );
        for plausible in [json!(230.1), json!(0.0), json!(-1e-3), json!(9.9e14)] {
            assert_eq!(implausible(&volts, &plausible), None, "{plausible}");
        }
        assert_eq!(
            implausible(&point(Kind::U32), &json!(1e20)),
            None,
            "floats only"
        );
    }

    fn point(kind: Kind) -> Point {
        Point {
            name: "p".into(),
            table: Table::Holding,
            address: 0,
            kind,
            order: WordOrder::Abcd,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            enum_map: BTreeMap::new(),
            writable: true,
            poll: "default".into(),
        }
    }

    fn scaled(kind: Kind, scale: f64, offset: f64) -> Point {
        Point {
            scale,
            offset,
            ..point(kind)
        }
    }

    fn registers(point: &Point, value: Value) -> Vec<u16> {
        match encode(point, &value) {
            Ok(Encoded::Registers(words)) => words,
            other => panic!("{value}: {other:?}"),
        }
    }

    fn value(point: &Point, words: &[u16]) -> Value {
        decode(point, Data::Registers(words)).unwrap()
    }

    #[test]
    fn point_values_decode_as_json() {
        assert_eq!(value(&point(Kind::U16), &[65535]), json!(65535));
        assert_eq!(value(&point(Kind::I16), &[0xFFFB]), json!(-5));
        assert_eq!(
            value(&point(Kind::U64), &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]),
            json!(u64::MAX)
        );
        assert_eq!(
            value(&point(Kind::I64), &[0x8000, 0, 0, 0]),
            json!(i64::MIN)
        );
        assert_eq!(value(&point(Kind::F32), &[0x42F6, 0xE979]), json!(123.456));
        assert_eq!(
            value(&point(Kind::F64), &[0x405E, 0xDD2F, 0x1A9F, 0xBE77]),
            json!(123.456)
        );
        assert_eq!(value(&point(Kind::Bit(1)), &[0b10]), json!(true));
        assert_eq!(
            value(&point(Kind::String { length: 2 }), &[0x4F4B, 0x0000]),
            json!("OK")
        );
        let coil = Point {
            table: Table::Coil,
            ..point(Kind::Bool)
        };
        assert_eq!(decode(&coil, Data::Bits(&[true])), Ok(json!(true)));
    }

    #[test]
    fn non_finite_floats_decode_as_null() {
        assert_eq!(value(&point(Kind::F32), &[0x7FC0, 0x0000]), Value::Null);
        assert_eq!(value(&point(Kind::F32), &[0x7F80, 0x0000]), Value::Null);
        assert_eq!(value(&point(Kind::F64), &[0xFFF0, 0, 0, 0]), Value::Null);
    }

    #[test]
    fn scale_and_offset_apply_both_ways() {
        let volts = scaled(Kind::U16, 0.1, 0.0);
        assert_eq!(value(&volts, &[2301]), json!(230.1));
        assert_eq!(registers(&volts, json!(230.1)), [2301]);
        let temp = scaled(Kind::I16, 0.5, -40.0);
        assert_eq!(value(&temp, &[0xFFFE]), json!(-41.0));
        assert_eq!(value(&temp, &[130]), json!(25.0));
        assert_eq!(registers(&temp, json!(25)), [130]);
        assert_eq!(registers(&temp, json!(-41)), [0xFFFE]);
        // Whole scales stay integers, exactly, even for u64.
        let watts = scaled(Kind::U64, 10.0, 5.0);
        assert_eq!(value(&watts, &[0, 0, 0, 7]), json!(75));
        assert_eq!(registers(&watts, json!(75)), [0, 0, 0, 7]);
        let amps = scaled(Kind::F32, 0.001, 0.0);
        assert_eq!(value(&amps, &[0x42F6, 0xE979]), json!(0.123456));
        let negative = scaled(Kind::I32, -1.0, 0.0);
        assert_eq!(value(&negative, &[0, 5]), json!(-5));
        assert_eq!(registers(&negative, json!(-5)), [0, 5]);
        let f64_offset = scaled(Kind::F64, 2.0, 1.0);
        assert_eq!(
            value(&f64_offset, &[0xBFE0, 0, 0, 0]),
            json!(0.0),
            "-0.5 × 2 + 1"
        );
        assert_eq!(registers(&f64_offset, json!(0)), [0xBFE0, 0, 0, 0]);
    }

    #[test]
    fn enum_names_apply_both_ways() {
        let mut mode = point(Kind::I16);
        mode.enum_map = BTreeMap::from([(0, "off".into()), (1, "on".into()), (-1, "fault".into())]);
        assert_eq!(value(&mode, &[1]), json!("on"));
        assert_eq!(value(&mode, &[0xFFFF]), json!("fault"));
        assert_eq!(value(&mode, &[7]), json!(7), "unnamed values stay numbers");
        assert_eq!(registers(&mode, json!("fault")), [0xFFFF]);
        assert_eq!(registers(&mode, json!(7)), [7]);
        let error = encode(&mode, &json!("standby")).unwrap_err();
        assert!(matches!(error, CodecError::UnknownName { .. }));
        assert!(error.to_string().contains("`off`"), "{error}");
        // Without an enum a string is the wrong type.
        assert!(matches!(
            encode(&point(Kind::U16), &json!("1")),
            Err(CodecError::WrongType { .. })
        ));
    }

    #[test]
    fn writes_out_of_range_are_refused() {
        let cases = [
            (Kind::U16, json!(65536)),
            (Kind::U16, json!(-1)),
            (Kind::I16, json!(32768)),
            (Kind::I16, json!(-32769)),
            (Kind::U32, json!(4_294_967_296u64)),
            (Kind::I32, json!(2_147_483_648u64)),
            (Kind::U64, json!(-1)),
            (Kind::I64, json!(u64::MAX)),
            (Kind::U64, json!(1e20)),
            (Kind::F32, json!(1e39)),
            (Kind::String { length: 1 }, json!("abc")),
        ];
        for (kind, value) in cases {
            let error = encode(&point(kind), &value).unwrap_err();
            assert!(
                matches!(error, CodecError::OutOfRange { .. }),
                "{kind:?} {value}: {error}"
            );
            assert_eq!(error.kind(), DeviceErrorKind::InvalidArgs);
        }
        let error = encode(&point(Kind::U16), &json!(70000)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "point `p`: 70000 is out of range for u16 (0..=65535)"
        );
        let error = encode(&scaled(Kind::U16, 0.1, 0.0), &json!(7000)).unwrap_err();
        assert!(error.to_string().contains("raw 70000"), "{error}");
        // The extremes themselves are fine.
        assert_eq!(registers(&point(Kind::U64), json!(u64::MAX)), [0xFFFF; 4]);
        assert_eq!(
            registers(&point(Kind::I64), json!(i64::MIN)),
            [0x8000, 0, 0, 0]
        );
        assert_eq!(registers(&point(Kind::U16), json!(65535.0)), [0xFFFF]);
        let f32_max = f64::from(f32::MAX);
        assert_eq!(
            registers(&point(Kind::F32), json!(f32_max)),
            [0x7F7F, 0xFFFF]
        );
    }

    #[test]
    fn writes_that_cannot_be_represented_are_refused() {
        for (point, value) in [
            (point(Kind::U16), json!(1.5)),
            (scaled(Kind::U16, 0.1, 0.0), json!(230.05)),
            (point(Kind::String { length: 2 }), json!("Grüß")),
        ] {
            let error = encode(&point, &value).unwrap_err();
            assert!(
                matches!(error, CodecError::NotRepresentable { .. }),
                "{value}: {error}"
            );
        }
        for (kind, value) in [
            (Kind::U16, json!(true)),
            (Kind::F32, json!("1.0")),
            (Kind::Bit(0), json!(2)),
            (Kind::Bool, json!("on")),
            (Kind::String { length: 2 }, json!(12)),
        ] {
            let error = encode(&point(kind), &value).unwrap_err();
            assert!(
                matches!(error, CodecError::WrongType { .. }),
                "{kind:?} {value}: {error}"
            );
            let device: DeviceError = error.into();
            assert_eq!(device.kind, DeviceErrorKind::InvalidArgs);
        }
    }

    #[test]
    fn every_type_round_trips_through_points() {
        for order in ORDERS {
            for (kind, v) in [
                (Kind::U16, json!(513)),
                (Kind::I16, json!(-513)),
                (Kind::U32, json!(70_000)),
                (Kind::I32, json!(-70_000)),
                (Kind::U64, json!(1u64 << 60)),
                (Kind::I64, json!(-(1i64 << 60))),
                (Kind::F32, json!(-1.25)),
                (Kind::F64, json!(1e-300)),
                (Kind::String { length: 3 }, json!("hello")),
            ] {
                let point = Point {
                    order,
                    ..point(kind)
                };
                let words = registers(&point, v.clone());
                assert_eq!(value(&point, &words), v, "{kind:?} {order:?}");
            }
        }
        assert_eq!(
            encode(&point(Kind::Bit(4)), &json!(true)),
            Ok(Encoded::Bit(true))
        );
        assert_eq!(
            encode(&point(Kind::Bool), &json!(0)),
            Ok(Encoded::Bit(false))
        );
    }

    #[test]
    fn short_reads_are_reported() {
        let error = decode(&point(Kind::U32), Data::Registers(&[1])).unwrap_err();
        assert_eq!(error.kind(), DeviceErrorKind::Failed);
        assert!(decode(&point(Kind::Bool), Data::Bits(&[])).is_err());
        assert!(decode(&point(Kind::U16), Data::Bits(&[true])).is_err());
    }
}
