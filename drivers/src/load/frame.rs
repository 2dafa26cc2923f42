//! The load generator's wire format: ASCII lines ending in `\n` (a `\r` before it is
//! tolerated).
//!
//! | direction | line | meaning |
//! |---|---|---|
//! | device → gateway | `EV <point> <value>` | point `value.<point>` is now `<value>` (unsolicited, or the read-back of a `SET`) |
//! | device → gateway | `RATE <n>` | the device publishes `n` events a second (answers `RATE?` and `RATE <n>`) |
//! | device → gateway | `OK` | the `SET` in flight is done |
//! | device → gateway | `ERR <text>` | the request in flight failed, and why |
//! | gateway → device | `SET <point> <value>` | set a point; answered `EV <point> <value>` then `OK` |
//! | gateway → device | `RATE <n>` / `RATE?` | change / read the publishing rate |

/// The longest line either side sends; a longer one means the stream is out of step.
pub const MAX_LINE: usize = 128;

/// A line from the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromDevice {
    Event { point: u32, value: i64 },
    Rate(u64),
    Ok,
    Err(String),
}

/// A line to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToDevice {
    Set { point: u32, value: i64 },
    SetRate(u64),
    QueryRate,
}

impl FromDevice {
    pub fn parse(line: &str) -> Result<FromDevice, String> {
        let mut words = line.splitn(2, ' ');
        let head = words.next().unwrap_or_default();
        let rest = words.next();
        match (head, rest) {
            ("EV", Some(rest)) => {
                let (point, value) = two_numbers(rest)?;
                Ok(FromDevice::Event { point, value })
            }
            ("RATE", Some(n)) => n
                .parse()
                .map(FromDevice::Rate)
                .map_err(|_| format!("`{line}`: the rate is not a whole number")),
            ("OK", None) => Ok(FromDevice::Ok),
            ("ERR", text) => Ok(FromDevice::Err(text.unwrap_or("no reason given").into())),
            _ => Err(format!("`{line}` is not a load generator line")),
        }
    }

    /// The line, with its `\n`.
    pub fn encode(&self) -> String {
        match self {
            FromDevice::Event { point, value } => format!("EV {point} {value}\n"),
            FromDevice::Rate(n) => format!("RATE {n}\n"),
            FromDevice::Ok => "OK\n".into(),
            FromDevice::Err(text) => format!("ERR {text}\n"),
        }
    }
}

impl ToDevice {
    pub fn parse(line: &str) -> Result<ToDevice, String> {
        match line.split_once(' ') {
            Some(("SET", rest)) => {
                let (point, value) = two_numbers(rest)?;
                Ok(ToDevice::Set { point, value })
            }
            Some(("RATE", n)) => n
                .parse()
                .map(ToDevice::SetRate)
                .map_err(|_| format!("`{line}`: the rate is not a whole number")),
            None if line == "RATE?" => Ok(ToDevice::QueryRate),
            _ => Err(format!("`{line}` is not a request this device knows")),
        }
    }

    /// The line, with its `\n`.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToDevice::Set { point, value } => format!("SET {point} {value}\n"),
            ToDevice::SetRate(n) => format!("RATE {n}\n"),
            ToDevice::QueryRate => "RATE?\n".into(),
        }
        .into_bytes()
    }
}

fn two_numbers(text: &str) -> Result<(u32, i64), String> {
    let (point, value) = text
        .split_once(' ')
        .ok_or_else(|| format!("`{text}`: expected a point number and a value"))?;
    let point = point
        .parse()
        .map_err(|_| format!("`{point}` is not a point number"))?;
    let value = value
        .parse()
        .map_err(|_| format!("`{value}` is not an integer value"))?;
    Ok((point, value))
}

/// Splits a byte stream into lines, whatever the chunking.
#[derive(Debug, Default)]
pub struct LineReader {
    pending: Vec<u8>,
}

impl LineReader {
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Adds bytes and calls `line` for every complete line (without its ending). Stops at
    /// the first line that is not UTF-8 or longer than [`MAX_LINE`], with why.
    pub fn push(&mut self, data: &[u8], mut line: impl FnMut(&str)) -> Result<(), String> {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let raw = &self.pending[start..start + end];
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            start += end + 1;
            match std::str::from_utf8(raw) {
                Ok(text) if text.len() <= MAX_LINE => line(text),
                Ok(_) => return Err(format!("a line longer than {MAX_LINE} bytes")),
                Err(_) => return Err("a line that is not text".into()),
            }
        }
        self.pending.drain(..start);
        if self.pending.len() > MAX_LINE {
            return Err(format!("more than {MAX_LINE} bytes without a line end"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_lines_round_trip() {
        for line in [
            FromDevice::Event {
                point: 3,
                value: -42,
            },
            FromDevice::Rate(500),
            FromDevice::Ok,
            FromDevice::Err("no point 9".into()),
        ] {
            let text = line.encode();
            assert_eq!(FromDevice::parse(text.trim_end()), Ok(line));
        }
    }

    #[test]
    fn requests_round_trip() {
        for request in [
            ToDevice::Set { point: 0, value: 7 },
            ToDevice::SetRate(1000),
            ToDevice::QueryRate,
        ] {
            let text = String::from_utf8(request.encode()).unwrap();
            assert_eq!(ToDevice::parse(text.trim_end()), Ok(request));
        }
    }

    #[test]
    fn nonsense_is_named() {
        assert!(FromDevice::parse("EV x 1").unwrap_err().contains("`x`"));
        assert!(FromDevice::parse("HELLO").unwrap_err().contains("HELLO"));
        assert!(ToDevice::parse("SET 1").unwrap_err().contains("expected"));
        assert!(ToDevice::parse("RATE fast").unwrap_err().contains("whole"));
    }

    #[test]
    fn lines_split_across_chunks_and_crlf() {
        let mut reader = LineReader::default();
        let mut lines = Vec::new();
        reader
            .push(b"EV 0 1\r\nEV 1", |l| lines.push(l.to_string()))
            .unwrap();
        reader
            .push(b" 2\nOK\n", |l| lines.push(l.to_string()))
            .unwrap();
        assert_eq!(lines, ["EV 0 1", "EV 1 2", "OK"]);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut reader = LineReader::default();
        let error = reader.push(&[b'A'; MAX_LINE + 1], |_| {}).unwrap_err();
        assert!(error.contains("without a line end"), "{error}");
    }
}
