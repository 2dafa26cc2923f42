//! Templates: the one small language a scripted profile writes its frames in. The same
//! template renders a request (the session) and matches it (the simulator); a response
//! pattern matches a reply (the session) and renders it (the simulator).
//!
//! A template is text with fields in braces: `#ROUTE 1,{output},{input}`. A field is
//! `{name}`, `{name:FORMAT}` or `{name:FORMAT|MAP}`:
//!
//! | format | renders | matches |
//! |--------|---------|---------|
//! | `s` (default) | the value as text | any text, as little as possible |
//! | `w` | the value as text | one word (no spaces) |
//! | `d`, `d3` | decimal, zero-padded to 3 | an optional sign and digits |
//! | `x2`, `X4` | hex (lower, upper case), zero-padded | exactly that many hex digits (`x`: any) |
//! | `u8`, `u16` | one byte, two bytes big-endian | as many bytes |
//!
//! `|MAP` runs the value through a value map of the profile (`[options.maps.MAP]`, wire
//! text to value) backwards when rendering and forwards when matching. A map's keys are
//! the field's text as on the wire (`"000F"` for an `X4` field), or decimal numbers for
//! `u8` and `u16` fields. The field `_`
//! matches anything and is not kept (a simulator writes zeros of its width there);
//! `len` stands for a checked frame's length field
//! (filled in when the frame is sealed). `{{` and `}}` are literal braces.
//!
//! A template that starts with `hex:` is binary: whitespace-separated hex bytes and
//! fields, `hex: AA 11 {id:u8} 01 {power:u8|power}`.

use std::collections::BTreeMap;

use regex::bytes::Regex;
use serde_json::Value;

/// Value maps by name: wire text to value.
pub type Maps = BTreeMap<String, BTreeMap<String, Value>>;

/// Values by field name: a command's arguments, or what a pattern captured.
pub type Vars = BTreeMap<String, Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Word,
    Decimal(usize),
    Hex { width: usize, upper: bool },
    U8,
    U16,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Literal(Vec<u8>),
    Field {
        name: String,
        format: Format,
        map: Option<String>,
        /// Added to a number on the wire (`{gain:d3+18}`: 0 dB is sent as `018`).
        offset: i64,
    },
}

/// A parsed template, with its pattern compiled.
#[derive(Debug, Clone)]
pub struct Template {
    pub source: String,
    pub tokens: Vec<Token>,
    regex: Regex,
    /// The field each capture group belongs to (group `i + 1`).
    groups: Vec<usize>,
}

/// Where the name `len` stands for the length field, how wide it is.
pub const LENGTH_FIELD: &str = "len";

impl Template {
    /// Parses `source`; `length_width` is the width of a checked frame's length field
    /// (0 when the framing has none). The error says what is wrong, for the profile author.
    pub fn parse(source: &str, length_width: usize) -> Result<Template, String> {
        let tokens = match source.strip_prefix("hex:") {
            Some(hex) => parse_hex(hex)?,
            None => parse_text(source)?,
        };
        let mut pattern = String::from("(?s-u)^");
        let mut groups = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            match token {
                Token::Literal(bytes) => {
                    for b in bytes {
                        pattern += &format!("\\x{b:02x}");
                    }
                }
                Token::Field { name, format, .. } => {
                    let class = if name == LENGTH_FIELD {
                        format!(".{{{length_width}}}")
                    } else {
                        match format {
                            Format::Text => ".*?".into(),
                            Format::Word => "[^ \\t\\r\\n]+".into(),
                            Format::Decimal(_) => "[-+]?[0-9]+".into(),
                            // Binary-style protocols put hex fields side by side:
                            // a width is exact, or two fields could not be told apart.
                            Format::Hex { width: 0, .. } => "[0-9A-Fa-f]+".into(),
                            Format::Hex { width, .. } => format!("[0-9A-Fa-f]{{{width}}}"),
                            Format::U8 => ".".into(),
                            Format::U16 => "..".into(),
                        }
                    };
                    if name == "_" || name == LENGTH_FIELD {
                        pattern += &format!("(?:{class})");
                    } else {
                        pattern += &format!("({class})");
                        groups.push(i);
                    }
                }
            }
        }
        pattern += "$";
        let regex = Regex::new(&pattern).map_err(|e| format!("template `{source}`: {e}"))?;
        Ok(Template {
            source: source.to_string(),
            tokens,
            regex,
            groups,
        })
    }

    /// Names of the fields that carry a value.
    pub fn fields(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.tokens.iter().filter_map(|t| match t {
            Token::Field { name, map, .. } if name != "_" && name != LENGTH_FIELD => {
                Some((name.as_str(), map.as_deref()))
            }
            _ => None,
        })
    }

    /// Whether the template is a single field and nothing else.
    pub fn single_field(&self) -> Option<&str> {
        match &self.tokens[..] {
            [Token::Field { name, .. }] => Some(name),
            _ => None,
        }
    }

    /// Matches a whole frame; captured fields come back as values (numbers for numeric
    /// formats, mapped through their map, text otherwise). `None`: no match, or a captured
    /// value its map does not know.
    pub fn capture(&self, frame: &[u8], maps: &Maps) -> Option<Vars> {
        let captures = self.regex.captures(frame)?;
        let mut vars = Vars::new();
        for (group, &token) in self.groups.iter().enumerate() {
            let Token::Field {
                name,
                format,
                map,
                offset,
            } = &self.tokens[token]
            else {
                unreachable!("groups index fields")
            };
            let raw = captures.get(group + 1)?.as_bytes();
            let mut value = decode(raw, *format, map.as_deref(), maps)?;
            if *offset != 0 {
                value = Value::from(value.as_i64()? - offset);
            }
            vars.entry(name.clone()).or_insert(value);
        }
        Some(vars)
    }

    /// Renders the template with `vars`; `lookup` is asked for any field `vars` lacks. The
    /// error names the field that has no value or cannot be written.
    pub fn render(
        &self,
        vars: &Vars,
        maps: &Maps,
        length_width: usize,
        lookup: &dyn Fn(&str) -> Option<Value>,
    ) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for token in &self.tokens {
            match token {
                Token::Literal(bytes) => out.extend_from_slice(bytes),
                Token::Field { name, .. } if name == LENGTH_FIELD => {
                    out.extend(std::iter::repeat_n(b'0', length_width))
                }
                // What a pattern skips, a reply still has to carry: zeros of the width.
                Token::Field { name, format, .. } if name == "_" => match format {
                    Format::Decimal(width) | Format::Hex { width, .. } => {
                        out.extend(std::iter::repeat_n(b'0', *width))
                    }
                    Format::U8 => out.push(0),
                    Format::U16 => out.extend([0, 0]),
                    Format::Text | Format::Word => {}
                },
                Token::Field {
                    name,
                    format,
                    map,
                    offset,
                } => {
                    let mut value = vars
                        .get(name)
                        .cloned()
                        .or_else(|| lookup(name))
                        .ok_or_else(|| format!("no value for `{{{name}}}`"))?;
                    if *offset != 0 {
                        let n = value
                            .as_i64()
                            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
                            .ok_or_else(|| format!("`{name}` = {value} is not an integer"))?;
                        value = Value::from(n + offset);
                    }
                    out.extend(encode(name, &value, *format, map.as_deref(), maps)?);
                }
            }
        }
        Ok(out)
    }
}

fn decode(raw: &[u8], format: Format, map: Option<&str>, maps: &Maps) -> Option<Value> {
    let text = || String::from_utf8_lossy(raw).into_owned();
    if let Some(map) = map {
        let key = match format {
            Format::U8 | Format::U16 => decode(raw, format, None, maps)?.to_string(),
            _ => text(),
        };
        return maps.get(map)?.get(key.trim()).cloned();
    }
    Some(match format {
        Format::Text | Format::Word => Value::String(text()),
        Format::Decimal(_) => Value::from(text().parse::<i64>().ok()?),
        Format::Hex { .. } => Value::from(i64::from_str_radix(&text(), 16).ok()?),
        Format::U8 => Value::from(raw[0]),
        Format::U16 => Value::from(u16::from_be_bytes([raw[0], raw[1]])),
    })
}

fn encode(
    name: &str,
    value: &Value,
    format: Format,
    map: Option<&str>,
    maps: &Maps,
) -> Result<Vec<u8>, String> {
    let mapped;
    let value = match map {
        Some(map) => {
            let entries = maps
                .get(map)
                .ok_or_else(|| format!("`{{{name}}}` uses map `{map}`, which is not declared"))?;
            let wire = entries
                .iter()
                .find(|(_, v)| *v == value)
                .map(|(wire, _)| wire.clone())
                .ok_or_else(|| format!("`{name}` = {value} is not in map `{map}`"))?;
            match format {
                // The key is the text as it goes on the wire.
                Format::U8 | Format::U16 => {}
                _ => return Ok(wire.into_bytes()),
            }
            mapped = Value::from(
                wire.parse::<i64>()
                    .map_err(|_| format!("map `{map}` key `{wire}` is not a decimal number"))?,
            );
            &mapped
        }
        None => value,
    };
    let number = || {
        value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f.round() as i64))
            .or_else(|| value.as_bool().map(i64::from))
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| format!("`{name}` = {value} is not a number"))
    };
    Ok(match format {
        Format::Text | Format::Word => crate::kit::args::as_text(value).into_bytes(),
        Format::Decimal(width) => format!("{:0width$}", number()?).into_bytes(),
        Format::Hex { width, upper: true } => format!("{:0width$X}", number()?).into_bytes(),
        Format::Hex {
            width,
            upper: false,
        } => format!("{:0width$x}", number()?).into_bytes(),
        Format::U8 => {
            let n = number()?;
            vec![u8::try_from(n).map_err(|_| format!("`{name}` = {n} does not fit a byte"))?]
        }
        Format::U16 => {
            let n = number()?;
            u16::try_from(n)
                .map_err(|_| format!("`{name}` = {n} does not fit two bytes"))?
                .to_be_bytes()
                .to_vec()
        }
    })
}

fn parse_field(inner: &str) -> Result<Token, String> {
    let (rest, map) = match inner.split_once('|') {
        Some((rest, map)) => (rest, Some(map.trim().to_string())),
        None => (inner, None),
    };
    let (name, format) = match rest.split_once(':') {
        Some((name, format)) => (name.trim(), format.trim()),
        None => (rest.trim(), "s"),
    };
    let (format, offset) = match format.find(['+', '-']) {
        Some(at) => (
            &format[..at],
            format[at..]
                .trim_start_matches('+')
                .parse::<i64>()
                .map_err(|_| format!("field `{{{inner}}}`: bad offset `{}`", &format[at..]))?,
        ),
        None => (format, 0),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "field `{{{inner}}}`: a field name is letters, digits and `_`"
        ));
    }
    let width = |digits: &str| -> Result<usize, String> {
        if digits.is_empty() {
            Ok(0)
        } else {
            digits
                .parse()
                .map_err(|_| format!("field `{{{inner}}}`: bad width `{digits}`"))
        }
    };
    let format = match format {
        "s" => Format::Text,
        "w" => Format::Word,
        "u8" => Format::U8,
        "u16" => Format::U16,
        f if f.starts_with('d') => Format::Decimal(width(&f[1..])?),
        f if f.starts_with('x') => Format::Hex {
            width: width(&f[1..])?,
            upper: false,
        },
        f if f.starts_with('X') => Format::Hex {
            width: width(&f[1..])?,
            upper: true,
        },
        other => {
            return Err(format!(
                "field `{{{inner}}}`: unknown format `{other}`; use s, w, d, d3, x2, X4, u8 or u16"
            ));
        }
    };
    if offset != 0
        && !matches!(
            format,
            Format::Decimal(_) | Format::Hex { .. } | Format::U8 | Format::U16
        )
    {
        return Err(format!(
            "field `{{{inner}}}`: an offset needs a number format (d, x, u8, u16)"
        ));
    }
    Ok(Token::Field {
        name: name.to_string(),
        format,
        map,
        offset,
    })
}

fn parse_text(source: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut literal = Vec::new();
    let mut rest = source;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("{{") || rest.starts_with("}}") {
            literal.push(c as u8);
            rest = &rest[2..];
        } else if c == '{' {
            let end = rest
                .find('}')
                .ok_or_else(|| format!("template `{source}`: `{{` without a closing `}}`"))?;
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            tokens.push(parse_field(&rest[1..end])?);
            rest = &rest[end + 1..];
        } else if c == '}' {
            return Err(format!(
                "template `{source}`: a lone `}}`; write `}}}}` for a literal brace"
            ));
        } else {
            let mut utf8 = [0u8; 4];
            literal.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            rest = &rest[c.len_utf8()..];
        }
    }
    if !literal.is_empty() {
        tokens.push(Token::Literal(literal));
    }
    Ok(tokens)
}

fn parse_hex(source: &str) -> Result<Vec<Token>, String> {
    let mut tokens: Vec<Token> = Vec::new();
    for word in source.split_whitespace() {
        if let Some(inner) = word.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            tokens.push(parse_field(inner)?);
            continue;
        }
        let byte = u8::from_str_radix(word, 16)
            .ok()
            .filter(|_| word.len() == 2)
            .ok_or_else(|| {
                format!("hex template: `{word}` is neither two hex digits nor a {{field}}")
            })?;
        match tokens.last_mut() {
            Some(Token::Literal(bytes)) => bytes.push(byte),
            _ => tokens.push(Token::Literal(vec![byte])),
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn maps() -> Maps {
        let mut maps = Maps::new();
        maps.insert(
            "power".into(),
            [("0001".into(), json!("on")), ("0004".into(), json!("off"))].into(),
        );
        maps.insert(
            "onoff".into(),
            [("ON".into(), json!(true)), ("OFF".into(), json!(false))].into(),
        );
        maps
    }

    fn vars(v: Value) -> Vars {
        v.as_object().unwrap().clone().into_iter().collect()
    }

    fn none(_: &str) -> Option<Value> {
        None
    }

    #[test]
    fn a_template_renders_and_matches_its_own_output() {
        let t = Template::parse("#ROUTE 1,{output},{input:d}", 0).unwrap();
        let bytes = t
            .render(&vars(json!({"output": 2, "input": 7})), &maps(), 0, &none)
            .unwrap();
        assert_eq!(bytes, b"#ROUTE 1,2,7");
        assert_eq!(
            t.capture(&bytes, &maps()).unwrap(),
            vars(json!({"output": "2", "input": 7}))
        );
        assert!(t.capture(b"#ROUTE 1,2,x", &maps()).is_none());
    }

    #[test]
    fn maps_and_widths_work_both_ways() {
        let t = Template::parse("< REP {ch:d} AUDIO_MUTE {mute:w|onoff}", 0).unwrap();
        assert_eq!(
            t.capture(b"< REP 1 AUDIO_MUTE ON", &maps()).unwrap(),
            vars(json!({"ch": 1, "mute": true}))
        );
        assert!(t.capture(b"< REP 1 AUDIO_MUTE MAYBE", &maps()).is_none());
        let shure = Template::parse("< REP {ch:d} AUDIO_GAIN {gain:d3+18}", 0).unwrap();
        assert_eq!(
            shure.capture(b"< REP 2 AUDIO_GAIN 030", &maps()).unwrap()["gain"],
            json!(12)
        );
        assert_eq!(
            shure
                .render(&vars(json!({"ch": 2, "gain": -18})), &maps(), 0, &none)
                .unwrap(),
            b"< REP 2 AUDIO_GAIN 000"
        );
        let gain = Template::parse("GAIN {g:d3}", 0).unwrap();
        assert_eq!(
            gain.render(&vars(json!({"g": 30})), &maps(), 0, &none)
                .unwrap(),
            b"GAIN 030"
        );
        let nec = Template::parse("\u{1}0A0A{len}\u{2}C203D6{power:X4|power}\u{3}", 2).unwrap();
        let bytes = nec
            .render(&vars(json!({"power": "on"})), &maps(), 2, &none)
            .unwrap();
        assert_eq!(bytes, b"\x010A0A00\x02C203D60001\x03");
        assert_eq!(
            nec.capture(b"\x010A0A0E\x02C203D60004\x03", &maps())
                .unwrap()["power"],
            json!("off")
        );
    }

    #[test]
    fn hex_templates_carry_binary_fields() {
        let t = Template::parse("hex: AA 11 {id:u8} 01 {level:u8}", 0).unwrap();
        let bytes = t
            .render(&vars(json!({"id": 1, "level": 200})), &maps(), 0, &none)
            .unwrap();
        assert_eq!(bytes, [0xAA, 0x11, 0x01, 0x01, 200]);
        assert_eq!(t.capture(&bytes, &maps()).unwrap()["level"], json!(200));
        assert!(Template::parse("hex: AA 1", 0).unwrap_err().contains("`1`"));
    }

    #[test]
    fn lookups_fill_fields_the_vars_lack_and_errors_name_the_field() {
        let t = Template::parse("~01@ROUTE 1,{output},{input}", 0).unwrap();
        let lookup = |name: &str| (name == "input").then(|| json!(4));
        assert_eq!(
            t.render(&vars(json!({"output": 2})), &maps(), 0, &lookup)
                .unwrap(),
            b"~01@ROUTE 1,2,4"
        );
        assert_eq!(
            t.render(&Vars::new(), &maps(), 0, &none).unwrap_err(),
            "no value for `{output}`"
        );
        assert!(
            Template::parse("{a:q}", 0)
                .unwrap_err()
                .contains("unknown format `q`")
        );
        assert!(Template::parse("{a", 0).unwrap_err().contains("closing"));
        assert_eq!(
            Template::parse("{{\"id\":{id}}}", 0)
                .unwrap()
                .render(&vars(json!({"id": 3})), &maps(), 0, &none)
                .unwrap(),
            b"{\"id\":3}"
        );
    }
}
