//! Framers: cutting a byte stream into frames, sans-IO. Bytes go in with
//! [`Framer::push`] in any chunking; whole frames come out of [`Framer::next_frame`].
//!
//! Every framer holds at most `max_frame` bytes of an unfinished frame: past that it drops
//! what it has, reports [`FrameError::TooLong`] once, and resynchronizes on the next
//! frame boundary, so a device that streams garbage costs a bounded buffer and a log line,
//! never the session.

use crate::kit::checksum::Checksum;

/// Why bytes were dropped instead of becoming a frame. The framer has already resynced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// No frame boundary within the limit; the bytes so far were dropped.
    #[error("no frame end within {limit} bytes; {dropped} bytes dropped")]
    TooLong { limit: usize, dropped: usize },
    /// A frame whose checksum does not add up: a line error or a different protocol.
    #[error("checksum mismatch: frame says {found:#04x}, content gives {expected:#04x}")]
    Checksum { expected: u16, found: u16 },
    /// A length field that cannot be read (not hex digits where hex is expected).
    #[error("unreadable length field {0:?}")]
    Length(Vec<u8>),
}

/// One way of cutting a stream into frames.
#[derive(Debug, Clone)]
pub enum Framer {
    Delimited(Delimited),
    Block(Block),
    Checked(Checked),
}

impl Framer {
    pub fn push(&mut self, data: &[u8]) {
        match self {
            Framer::Delimited(f) => f.buf.extend_from_slice(data),
            Framer::Block(f) => f.lines.buf.extend_from_slice(data),
            Framer::Checked(f) => f.buf.extend_from_slice(data),
        }
    }

    /// The next whole frame (without its terminator), an error for bytes dropped, or
    /// `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        match self {
            Framer::Delimited(f) => f.next_frame(),
            Framer::Block(f) => f.next_frame(),
            Framer::Checked(f) => f.next_frame(),
        }
    }

    /// Forgets a half-received frame (a new connection).
    pub fn clear(&mut self) {
        match self {
            Framer::Delimited(f) => f.buf.clear(),
            Framer::Block(f) => {
                f.lines.buf.clear();
                f.block.clear();
            }
            Framer::Checked(f) => f.buf.clear(),
        }
    }

    /// The bytes of an unfinished frame, as far as they are read: a prompt that comes
    /// with no terminator (`Password:`) is recognised here.
    pub fn pending(&self) -> &[u8] {
        match self {
            Framer::Delimited(f) => &f.buf,
            Framer::Block(f) => &f.lines.buf,
            Framer::Checked(f) => &f.buf,
        }
    }

    /// Bytes held for an unfinished frame.
    pub fn buffered(&self) -> usize {
        match self {
            Framer::Delimited(f) => f.buf.len(),
            Framer::Block(f) => f.lines.buf.len() + f.block.len(),
            Framer::Checked(f) => f.buf.len(),
        }
    }

    /// Turns a frame's content into the bytes to write: the terminator appended, or for a
    /// checked framer the length field filled in and the checksum and trailer appended.
    pub fn seal(&self, content: &[u8], terminator: &[u8]) -> Vec<u8> {
        match self {
            Framer::Checked(f) => f.seal(content),
            _ => [content, terminator].concat(),
        }
    }
}

/// Frames that end with a terminator: a line (`\r\n`, `\r`), or one delimiter byte (NUL for
/// Q-SYS, `>` for Shure). A frame never includes its terminator; with `trim`, leading and
/// trailing ASCII whitespace and NULs (a stray `\n`, Telnet's `\r\0`) go too, and empty
/// frames are skipped.
#[derive(Debug, Clone)]
pub struct Delimited {
    terminator: Vec<u8>,
    /// Any one byte of `terminator` ends a frame (Extron: CR, LF or both).
    any_byte: bool,
    trim: bool,
    /// Bytes dropped where a frame would start (PJLink's LF after a CR terminator).
    skip_leading: Vec<u8>,
    max_frame: usize,
    buf: Vec<u8>,
}

impl Delimited {
    pub fn new(terminator: &[u8], trim: bool, max_frame: usize) -> Delimited {
        assert!(!terminator.is_empty(), "a terminator has at least one byte");
        Delimited {
            terminator: terminator.to_vec(),
            any_byte: false,
            trim,
            skip_leading: Vec::new(),
            max_frame,
            buf: Vec::new(),
        }
    }

    /// Frames that end at any one of `ends`: a device that ends lines with CR, LF or
    /// both, read with `skip_leading(ends)` so a CR LF leaves no empty frame.
    pub fn any_of(ends: &[u8], max_frame: usize) -> Delimited {
        Delimited {
            any_byte: true,
            ..Delimited::new(ends, false, max_frame)
        }
    }

    /// Drops any of `bytes` where a frame would start, before it counts against the
    /// limit: a device that ends lines with CR LF read by a CR framer.
    pub fn skip_leading(mut self, bytes: &[u8]) -> Delimited {
        self.skip_leading = bytes.to_vec();
        self
    }

    /// Lines ending in `\n`, with a `\r` before it (or anywhere at the ends) trimmed off.
    pub fn lines(max_frame: usize) -> Delimited {
        Delimited::new(b"\n", true, max_frame)
    }

    fn next_frame(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        loop {
            let skipped = self
                .buf
                .iter()
                .take_while(|b| self.skip_leading.contains(b))
                .count();
            self.buf.drain(..skipped);
            let (end, terminator_len) = if self.any_byte {
                let at = self.buf.iter().position(|b| self.terminator.contains(b));
                (at, 1)
            } else {
                (find(&self.buf, &self.terminator), self.terminator.len())
            };
            match end {
                Some(at) => {
                    let mut frame: Vec<u8> = self.buf.drain(..at + terminator_len).collect();
                    frame.truncate(at);
                    if at > self.max_frame {
                        return Some(Err(FrameError::TooLong {
                            limit: self.max_frame,
                            dropped: at,
                        }));
                    }
                    if self.trim {
                        let keep = |b: &u8| !b.is_ascii_whitespace() && *b != 0;
                        let start = frame.iter().position(keep).unwrap_or(frame.len());
                        let end = frame.iter().rposition(keep).map_or(start, |e| e + 1);
                        frame = frame[start..end].to_vec();
                        if frame.is_empty() {
                            continue;
                        }
                    }
                    return Some(Ok(frame));
                }
                // From this length on, no terminator can come early enough: say so now
                // rather than on the next byte.
                None if self.buf.len() >= self.max_frame + terminator_len => {
                    // Keep what could be the start of a terminator, so the next frame is
                    // found even when its terminator was split across the limit.
                    let keep = terminator_len - 1;
                    let dropped = self.buf.len() - keep;
                    self.buf.drain(..dropped);
                    return Some(Err(FrameError::TooLong {
                        limit: self.max_frame,
                        dropped,
                    }));
                }
                None => return None,
            }
        }
    }
}

/// Blocks of lines ended by an empty line, as Blackmagic Videohub sends them. A frame is
/// the block's lines joined with `\n` (no trailing newline); `\r` is ignored.
#[derive(Debug, Clone)]
pub struct Block {
    lines: Delimited,
    block: Vec<u8>,
    max_frame: usize,
}

impl Block {
    pub fn new(max_frame: usize) -> Block {
        Block {
            lines: Delimited::new(b"\n", false, max_frame),
            block: Vec::new(),
            max_frame,
        }
    }

    fn next_frame(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        loop {
            let line = match self.lines.next_frame()? {
                Ok(line) => line,
                Err(e) => {
                    self.block.clear();
                    return Some(Err(e));
                }
            };
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if line.is_empty() {
                if self.block.is_empty() {
                    continue;
                }
                return Some(Ok(std::mem::take(&mut self.block)));
            }
            if self.block.len() + line.len() + 1 > self.max_frame {
                let dropped = self.block.len() + line.len();
                self.block.clear();
                return Some(Err(FrameError::TooLong {
                    limit: self.max_frame,
                    dropped,
                }));
            }
            if !self.block.is_empty() {
                self.block.push(b'\n');
            }
            self.block.extend_from_slice(line);
        }
    }
}

/// How a length field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthField {
    /// One binary byte.
    U8,
    /// Two bytes, big-endian.
    U16be,
    /// Two ASCII hex digits (NEC).
    Hex2,
}

impl LengthField {
    pub fn width(self) -> usize {
        match self {
            LengthField::U8 => 1,
            LengthField::U16be | LengthField::Hex2 => 2,
        }
    }

    fn read(self, bytes: &[u8]) -> Option<usize> {
        match self {
            LengthField::U8 => Some(bytes[0] as usize),
            LengthField::U16be => Some(u16::from_be_bytes([bytes[0], bytes[1]]) as usize),
            LengthField::Hex2 => std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| usize::from_str_radix(s, 16).ok()),
        }
    }

    fn write(self, length: usize, into: &mut [u8]) {
        match self {
            LengthField::U8 => into[0] = length as u8,
            LengthField::U16be => into.copy_from_slice(&(length as u16).to_be_bytes()),
            LengthField::Hex2 => into.copy_from_slice(format!("{:02X}", length & 0xFF).as_bytes()),
        }
    }
}

/// The layout of a header + length + checksum frame:
///
/// ```text
/// start .. [length field at length_at] .. | body (length bytes) | checksum | trailer
/// |<------------------- header ---------->|
/// ```
///
/// The checksum covers `checksum_from..` up to the end of the body. Samsung MDC is
/// `start 0xAA, header 4, length u8 at 3, sum8 from 1`; NEC is `start 0x01, header 7,
/// length hex2 at 5, xor from 1, trailer "\r"`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckedLayout {
    /// The first byte of every frame; anything else before a frame is skipped.
    pub start: u8,
    /// Bytes from `start` up to the body, length field included.
    pub header: usize,
    /// Offset of the length field within the header.
    pub length_at: usize,
    pub length: LengthField,
    pub checksum: Checksum,
    /// The first byte the checksum covers.
    #[serde(default)]
    pub checksum_from: usize,
    /// Fixed bytes after the checksum (NEC's CR).
    #[serde(default)]
    pub trailer: Vec<u8>,
}

/// Header + length + checksum frames. A frame comes out without its checksum and trailer
/// (they were checked); a bad one is dropped and the stream resyncs at the next `start`.
#[derive(Debug, Clone)]
pub struct Checked {
    layout: CheckedLayout,
    max_frame: usize,
    buf: Vec<u8>,
}

impl Checked {
    pub fn new(layout: CheckedLayout, max_frame: usize) -> Checked {
        Checked {
            layout,
            max_frame,
            buf: Vec::new(),
        }
    }

    pub fn layout(&self) -> &CheckedLayout {
        &self.layout
    }

    fn next_frame(&mut self) -> Option<Result<Vec<u8>, FrameError>> {
        let l = &self.layout;
        let skip = self
            .buf
            .iter()
            .position(|&b| b == l.start)
            .unwrap_or(self.buf.len());
        self.buf.drain(..skip);
        if self.buf.len() < l.header {
            return None;
        }
        let field = &self.buf[l.length_at..l.length_at + l.length.width()];
        let Some(length) = l.length.read(field) else {
            let field = field.to_vec();
            self.buf.drain(..1);
            return Some(Err(FrameError::Length(field)));
        };
        let body_end = l.header + length;
        let total = body_end + l.checksum.width() + l.trailer.len();
        if total > self.max_frame {
            self.buf.drain(..1);
            return Some(Err(FrameError::TooLong {
                limit: self.max_frame,
                dropped: 1,
            }));
        }
        if self.buf.len() < total {
            return None;
        }
        let expected = l
            .checksum
            .compute(&self.buf[l.checksum_from.min(body_end)..body_end]);
        let found = l.checksum.read(&self.buf[body_end..]);
        let trailer_ok = self.buf[body_end + l.checksum.width()..total] == l.trailer[..];
        if expected != found || !trailer_ok {
            // Not a frame after all: look for the next start byte inside it.
            self.buf.drain(..1);
            return Some(Err(FrameError::Checksum { expected, found }));
        }
        let frame: Vec<u8> = self.buf.drain(..total).take(body_end).collect();
        Some(Ok(frame))
    }

    /// `content` is header and body, with anything in the length field's place: fills the
    /// length in and appends the checksum and the trailer.
    pub fn seal(&self, content: &[u8]) -> Vec<u8> {
        let l = &self.layout;
        let mut frame = content.to_vec();
        if frame.len() >= l.header {
            let length = frame.len() - l.header;
            l.length.write(
                length,
                &mut frame[l.length_at..l.length_at + l.length.width()],
            );
        }
        let sum = l
            .checksum
            .compute(&frame[l.checksum_from.min(frame.len())..]);
        l.checksum.write(sum, &mut frame);
        frame.extend_from_slice(&l.trailer);
        frame
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framer: &mut Framer, input: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        framer.push(input);
        std::iter::from_fn(|| framer.next_frame()).collect()
    }

    fn ok(s: &[u8]) -> Result<Vec<u8>, FrameError> {
        Ok(s.to_vec())
    }

    #[test]
    fn lines_split_on_any_chunking_and_drop_the_carriage_return() {
        let mut framer = Framer::Delimited(Delimited::lines(64));
        let input = b"~01@ROUTE 1,2,1 OK\r\n~01@VID 3>1\r\n";
        let mut got = Vec::new();
        for byte in input {
            got.extend(frames(&mut framer, &[*byte]));
        }
        assert_eq!(got, [ok(b"~01@ROUTE 1,2,1 OK"), ok(b"~01@VID 3>1")]);
    }

    #[test]
    fn a_delimiter_byte_cuts_frames_and_keeps_the_rest() {
        let mut framer = Framer::Delimited(Delimited::new(b"\0", false, 64));
        assert_eq!(
            frames(&mut framer, b"{\"a\":1}\0{\"b\""),
            [ok(b"{\"a\":1}")]
        );
        assert_eq!(framer.buffered(), 4);
        assert_eq!(frames(&mut framer, b":2}\0"), [ok(b"{\"b\":2}")]);
    }

    #[test]
    fn an_overlong_frame_is_dropped_and_the_next_one_read() {
        let mut framer = Framer::Delimited(Delimited::new(b"\r\n", false, 8));
        let got = frames(&mut framer, &[b'x'; 20]);
        assert!(
            matches!(got[..], [Err(FrameError::TooLong { limit: 8, .. })]),
            "{got:?}"
        );
        assert!(framer.buffered() <= 10);
        let got = frames(&mut framer, b"yy\r\nok\r\n");
        assert_eq!(got.last(), Some(&ok(b"ok")), "{got:?}");
    }

    #[test]
    fn a_cr_framer_skips_the_lf_of_crlf_and_refuses_at_the_limit() {
        let mut framer = Framer::Delimited(Delimited::new(b"\r", false, 4).skip_leading(b"\n"));
        assert_eq!(
            frames(&mut framer, b"\n\nab \r\nabcd\r\n"),
            [ok(b"ab "), ok(b"abcd")]
        );
        // Five bytes and no CR: no CR can come in time any more.
        let got = frames(&mut framer, b"\nabcde");
        assert!(
            matches!(
                got[..],
                [Err(FrameError::TooLong {
                    limit: 4,
                    dropped: 5
                })]
            ),
            "{got:?}"
        );
    }

    #[test]
    fn any_of_several_bytes_ends_a_line() {
        let mut framer = Framer::Delimited(Delimited::any_of(b"\r\n", 16).skip_leading(b"\r\n"));
        assert_eq!(
            frames(&mut framer, b"a\rb\nc\r\n\r\nPassword:"),
            [ok(b"a"), ok(b"b"), ok(b"c")]
        );
        assert_eq!(framer.pending(), b"Password:");
    }

    #[test]
    fn blocks_end_at_an_empty_line() {
        let mut framer = Framer::Block(Block::new(256));
        let got = frames(
            &mut framer,
            b"PROTOCOL PREAMBLE:\nVersion: 2.8\n\nVIDEO OUTPUT ROUTING:\r\n0 5\r\n1 3\r\n\r\nACK\n",
        );
        assert_eq!(
            got,
            [
                ok(b"PROTOCOL PREAMBLE:\nVersion: 2.8"),
                ok(b"VIDEO OUTPUT ROUTING:\n0 5\n1 3")
            ]
        );
        assert_eq!(frames(&mut framer, b"\n"), [ok(b"ACK")]);
    }

    fn nec() -> Checked {
        Checked::new(
            CheckedLayout {
                start: 0x01,
                header: 7,
                length_at: 5,
                length: LengthField::Hex2,
                checksum: Checksum::Xor,
                checksum_from: 1,
                trailer: b"\r".to_vec(),
            },
            64,
        )
    }

    #[test]
    fn nec_frames_seal_to_the_documented_bytes() {
        // Power ON for monitor 1, from the protocol document.
        let sealed = nec().seal(b"\x010A0A??\x02C203D60001\x03");
        assert_eq!(
            sealed,
            [
                0x01, 0x30, 0x41, 0x30, 0x41, 0x30, 0x43, 0x02, 0x43, 0x32, 0x30, 0x33, 0x44, 0x36,
                0x30, 0x30, 0x30, 0x31, 0x03, 0x73, 0x0D
            ]
        );
        let volume = nec().seal(b"\x010A0C??\x020062\x03");
        assert_eq!(volume[volume.len() - 2], 0x01);
    }

    #[test]
    fn checked_frames_resync_after_garbage_and_a_bad_checksum() {
        let mut framer = Framer::Checked(nec());
        let good = b"\x0100AB12\x020200D60000040001\x03t\r";
        let mut bad = good.to_vec();
        bad[20] ^= 0x40;
        let mut input = b"\xff\x00junk".to_vec();
        input.extend_from_slice(&bad);
        input.extend_from_slice(good);
        let got = frames(&mut framer, &input);
        assert!(
            got.iter()
                .any(|f| matches!(f, Err(FrameError::Checksum { .. })))
        );
        assert_eq!(got.last(), Some(&ok(&good[..good.len() - 2])));
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn samsung_mdc_frames_use_sum8() {
        let framer = Checked::new(
            CheckedLayout {
                start: 0xAA,
                header: 4,
                length_at: 3,
                length: LengthField::U8,
                checksum: Checksum::Sum8,
                checksum_from: 1,
                trailer: Vec::new(),
            },
            64,
        );
        // Power on for display 1: AA 11 01 01 01 14.
        assert_eq!(
            framer.seal(&[0xAA, 0x11, 0x01, 0x00, 0x01]),
            [0xAA, 0x11, 0x01, 0x01, 0x01, 0x14]
        );
    }
}
