//! The Modbus wire format on the client side: request PDUs, the two framings (Modbus TCP's
//! MBAP header, RTU's unit id and CRC), and streaming readers that tell when a response is
//! complete and whether it answers the request in flight.
//!
//! A PDU is a function code and its data; both framings carry the same PDUs:
//!
//! - TCP: transaction id (2), protocol id `00 00` (2), length of what follows (2), unit id
//!   (1), PDU. The transaction id pairs a response with its request.
//! - RTU: unit id (1), PDU, CRC-16/MODBUS (2, low byte first). On the wire a frame ends
//!   after 3.5 character times of silence ([`rtu_silence`]); the reader here decides
//!   completeness from the length the function code and byte count announce instead,
//!   so it does not depend on timing that serial drivers and USB adapters blur.
//!
//! A device answers either the request's function with data, or the function with bit 7
//! set and one exception code ([`Reply::Exception`]).

use std::fmt;
use std::time::Duration;

use super::map::Table;
use super::plan::{self, Read};
use super::write::{Exception, WriteRequest};

/// Longest PDU the spec allows (a 256-byte RTU frame less unit id and CRC).
pub const MAX_PDU: usize = 253;

/// Bits of one character on an RTU line: start, 8 data, parity or second stop, stop.
const BITS_PER_CHAR: f64 = 11.0;

/// The silence that ends an RTU frame: 3.5 character times of 11 bits, and a fixed
/// 1.75 ms above 19200 baud, as the serial line spec fixes it (faster lines would give
/// gaps too short for most UARTs to time). The runtime waits this long between frames.
pub fn rtu_silence(baud: u32) -> Duration {
    if baud == 0 || baud > 19200 {
        return Duration::from_micros(1750);
    }
    Duration::from_secs_f64(3.5 * BITS_PER_CHAR / f64::from(baud))
}

/// Which framing a link uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Modbus TCP: MBAP header, no checksum.
    #[default]
    Tcp,
    /// Modbus RTU: on a serial line, or tunnelled over TCP by a serial device server.
    Rtu,
}

impl Framing {
    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Tcp => "tcp",
            Framing::Rtu => "rtu",
        }
    }
}

/// One request the client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// FC 1, 2, 3 or 4 by table.
    Read(Read),
    /// FC 5, 6, 15 or 16.
    Write(WriteRequest),
}

impl Operation {
    pub fn function_code(&self) -> u8 {
        match self {
            Operation::Read(read) => read.function_code(),
            Operation::Write(write) => write.function_code(),
        }
    }

    /// The request as a PDU: function code, then its data, big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut pdu = vec![self.function_code()];
        match self {
            Operation::Read(read) => {
                pdu.extend(read.start.to_be_bytes());
                pdu.extend(read.count.to_be_bytes());
            }
            Operation::Write(WriteRequest::SingleCoil { address, value }) => {
                pdu.extend(address.to_be_bytes());
                pdu.extend(if *value { [0xFF, 0x00] } else { [0x00, 0x00] });
            }
            Operation::Write(WriteRequest::SingleRegister { address, value }) => {
                pdu.extend(address.to_be_bytes());
                pdu.extend(value.to_be_bytes());
            }
            Operation::Write(WriteRequest::MultipleCoils { address, values }) => {
                let packed = pack_bits(values);
                pdu.extend(address.to_be_bytes());
                pdu.extend((values.len() as u16).to_be_bytes());
                pdu.push(packed.len() as u8);
                pdu.extend(packed);
            }
            Operation::Write(WriteRequest::MultipleRegisters { address, values }) => {
                pdu.extend(address.to_be_bytes());
                pdu.extend((values.len() as u16).to_be_bytes());
                pdu.push((2 * values.len()) as u8);
                pdu.extend(values.iter().flat_map(|v| v.to_be_bytes()));
            }
        }
        pdu
    }

    /// Bytes of data a successful answer carries after its byte count (reads only).
    fn answer_bytes(&self) -> Option<usize> {
        match self {
            Operation::Read(read) if read.table.is_bits() => {
                Some(usize::from(read.count).div_ceil(8))
            }
            Operation::Read(read) => Some(2 * usize::from(read.count)),
            Operation::Write(_) => None,
        }
    }

    /// Parses the PDU that answers this request.
    pub fn parse_reply(&self, pdu: &[u8]) -> Result<Reply, FrameError> {
        let Some((&function, data)) = pdu.split_first() else {
            return Err(FrameError::Malformed("empty PDU".into()));
        };
        let expected = self.function_code();
        if function == expected | 0x80 {
            return match data {
                [code] => Ok(Reply::Exception(Exception::from_code(*code))),
                _ => Err(FrameError::Malformed(format!(
                    "exception response with {} bytes after the function code instead of 1",
                    data.len()
                ))),
            };
        }
        if function != expected {
            return Err(FrameError::WrongFunction {
                expected,
                got: function,
            });
        }
        match self {
            Operation::Read(read) => {
                let wanted = self.answer_bytes().unwrap_or_default();
                let values = match data.split_first() {
                    Some((&count, values))
                        if usize::from(count) == wanted && values.len() == wanted =>
                    {
                        values
                    }
                    _ => {
                        return Err(FrameError::Malformed(format!(
                            "{read}: answer should carry {wanted} data bytes, it has {} bytes after the function code",
                            data.len()
                        )));
                    }
                };
                Ok(Reply::Data(match read.table {
                    Table::Coil | Table::DiscreteInput => plan::Response::Bits(
                        unpack_bits(values)
                            .into_iter()
                            .take(usize::from(read.count))
                            .collect(),
                    ),
                    Table::Holding | Table::Input => plan::Response::Registers(
                        values
                            .chunks_exact(2)
                            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                            .collect(),
                    ),
                }))
            }
            Operation::Write(write) => {
                // FC 5 and 6 echo the request; FC 15 and 16 echo address and quantity.
                let echo = &self.encode()[1..];
                let wanted = match write {
                    WriteRequest::SingleCoil { .. } | WriteRequest::SingleRegister { .. } => echo,
                    _ => &echo[..4],
                };
                if data != wanted {
                    return Err(FrameError::Malformed(format!(
                        "write answer {} does not echo the request {}",
                        hex(data),
                        hex(wanted)
                    )));
                }
                Ok(Reply::Written)
            }
        }
    }
}

/// What a device answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The values a read asked for.
    Data(plan::Response),
    /// A write was done.
    Written,
    /// The device refused (function code with bit 7 set).
    Exception(Exception),
}

/// Why bytes from the device cannot be the answer to the request in flight. All of these
/// mean the stream is out of step or corrupted, so the session ends and the runtime
/// reconnects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error(
        "bad CRC in RTU reply (frame says {got:04X}, bytes give {computed:04X}): noise on the line, or the baud rate or parity does not match the device"
    )]
    BadCrc { computed: u16, got: u16 },
    #[error(
        "reply from unit {got} while unit {expected} was asked: check the unit id, and that no other master shares the line"
    )]
    WrongUnit { expected: u8, got: u8 },
    #[error(
        "reply has transaction id {got} while {expected} was asked: a late or duplicated reply, or a device that does not echo transaction ids"
    )]
    WrongTransaction { expected: u16, got: u16 },
    #[error(
        "reply has protocol id {0} instead of 0: the port does not speak Modbus TCP (check the port, or set `framing = \"rtu\"` for a serial device server)"
    )]
    WrongProtocol(u16),
    #[error(
        "reply to function {expected} has function {got}: the reply belongs to another request, or the device is not speaking Modbus"
    )]
    WrongFunction { expected: u8, got: u8 },
    #[error("malformed reply: {0}")]
    Malformed(String),
    #[error("{0} bytes arrived with no request in flight: the device is out of step")]
    Unsolicited(usize),
}

/// CRC-16/MODBUS: polynomial 0xA001 (reflected 0x8005), initial value 0xFFFF.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &byte in bytes {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// An RTU frame: unit id, PDU, CRC low byte first.
pub fn rtu_wrap(unit: u8, pdu: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(pdu.len() + 3);
    frame.push(unit);
    frame.extend_from_slice(pdu);
    frame.extend(crc16(&frame).to_le_bytes());
    frame
}

/// The unit id and PDU of a whole RTU frame, once its CRC checks out.
pub fn rtu_unwrap(frame: &[u8]) -> Result<(u8, &[u8]), FrameError> {
    if frame.len() < 4 {
        return Err(FrameError::Malformed(format!(
            "RTU frame of {} bytes is shorter than unit id, function and CRC",
            frame.len()
        )));
    }
    let (body, crc) = frame.split_at(frame.len() - 2);
    let got = u16::from_le_bytes([crc[0], crc[1]]);
    let computed = crc16(body);
    if got != computed {
        return Err(FrameError::BadCrc { computed, got });
    }
    Ok((body[0], &body[1..]))
}

/// The fields of a Modbus TCP (MBAP) header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mbap {
    pub transaction: u16,
    pub unit: u8,
}

/// Bytes of the MBAP header, unit id included.
pub const MBAP_LEN: usize = 7;

/// A Modbus TCP frame: MBAP header, then PDU.
pub fn tcp_wrap(header: Mbap, pdu: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(MBAP_LEN + pdu.len());
    frame.extend(header.transaction.to_be_bytes());
    frame.extend([0, 0]);
    frame.extend((pdu.len() as u16 + 1).to_be_bytes());
    frame.push(header.unit);
    frame.extend_from_slice(pdu);
    frame
}

/// How long the whole frame is, from its first six bytes; checks protocol id and length.
fn tcp_frame_len(head: &[u8]) -> Result<usize, FrameError> {
    let protocol = u16::from_be_bytes([head[2], head[3]]);
    if protocol != 0 {
        return Err(FrameError::WrongProtocol(protocol));
    }
    let length = usize::from(u16::from_be_bytes([head[4], head[5]]));
    if !(2..=MAX_PDU + 1).contains(&length) {
        return Err(FrameError::Malformed(format!(
            "MBAP length {length} is outside 2..={}",
            MAX_PDU + 1
        )));
    }
    Ok(6 + length)
}

/// The header and PDU of a whole Modbus TCP frame.
pub fn tcp_unwrap(frame: &[u8]) -> Result<(Mbap, &[u8]), FrameError> {
    if frame.len() < MBAP_LEN + 1 {
        return Err(FrameError::Malformed(format!(
            "Modbus TCP frame of {} bytes is shorter than header and function",
            frame.len()
        )));
    }
    let len = tcp_frame_len(frame)?;
    if len != frame.len() {
        return Err(FrameError::Malformed(format!(
            "MBAP length says {len} bytes in all, the frame has {}",
            frame.len()
        )));
    }
    let header = Mbap {
        transaction: u16::from_be_bytes([frame[0], frame[1]]),
        unit: frame[6],
    };
    Ok((header, &frame[MBAP_LEN..]))
}

/// The request a response must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub operation: Operation,
    pub unit: u8,
    /// Modbus TCP only.
    pub transaction: u16,
}

/// Collects a response from bytes in any chunking and checks it against the request in
/// flight. One reader per connection; [`Reader::clear`] after a request is given up.
#[derive(Debug, Clone, Default)]
pub struct Reader {
    framing: Framing,
    buffer: Vec<u8>,
}

impl Reader {
    pub fn new(framing: Framing) -> Reader {
        Reader {
            framing,
            buffer: Vec::new(),
        }
    }

    pub fn clear(&mut self) {
        self.buffer.clear();
    }

    /// Whether bytes are waiting that do not make a whole response yet.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// Adds `data`; returns the reply once a whole response has arrived, `None` while more
    /// is needed. Bytes beyond the response are an error: one request is in flight, so
    /// nothing may follow its answer.
    pub fn push(&mut self, data: &[u8], expected: &Expected) -> Result<Option<Reply>, FrameError> {
        self.buffer.extend_from_slice(data);
        let Some(len) = (match self.framing {
            Framing::Tcp => self.tcp_len()?,
            Framing::Rtu => self.rtu_len(expected)?,
        }) else {
            return Ok(None);
        };
        if self.buffer.len() > len {
            return Err(FrameError::Malformed(format!(
                "{} bytes follow the reply ({})",
                self.buffer.len() - len,
                hex(&self.buffer[len..])
            )));
        }
        if self.buffer.len() < len {
            return Ok(None);
        }
        let frame = std::mem::take(&mut self.buffer);
        let (unit, pdu) = match self.framing {
            Framing::Tcp => {
                let (header, pdu) = tcp_unwrap(&frame)?;
                if header.transaction != expected.transaction {
                    return Err(FrameError::WrongTransaction {
                        expected: expected.transaction,
                        got: header.transaction,
                    });
                }
                (header.unit, pdu)
            }
            Framing::Rtu => rtu_unwrap(&frame)?,
        };
        if unit != expected.unit {
            return Err(FrameError::WrongUnit {
                expected: expected.unit,
                got: unit,
            });
        }
        expected.operation.parse_reply(pdu).map(Some)
    }

    fn tcp_len(&self) -> Result<Option<usize>, FrameError> {
        if self.buffer.len() < 6 {
            return Ok(None);
        }
        tcp_frame_len(&self.buffer).map(Some)
    }

    /// The length of the RTU frame being received, once its function code (and byte count,
    /// for reads) has arrived.
    fn rtu_len(&self, expected: &Expected) -> Result<Option<usize>, FrameError> {
        let Some(&function) = self.buffer.get(1) else {
            return Ok(None);
        };
        // Unit, function, then data, then two bytes of CRC.
        let len = match function {
            f if f & 0x80 != 0 => 1 + 2 + 2,
            1..=4 => {
                let Some(&count) = self.buffer.get(2) else {
                    return Ok(None);
                };
                // A count that does not fit the read would make the reader wait for bytes
                // that never come; say so now.
                if let Some(wanted) = expected.operation.answer_bytes()
                    && function == expected.operation.function_code()
                    && usize::from(count) != wanted
                {
                    return Err(FrameError::Malformed(format!(
                        "byte count {count} where the read needs {wanted}"
                    )));
                }
                3 + usize::from(count) + 2
            }
            5 | 6 | 15 | 16 => 1 + 5 + 2,
            other => {
                return Err(FrameError::Malformed(format!(
                    "unknown function code {other} in RTU reply ({})",
                    hex(&self.buffer)
                )));
            }
        };
        Ok(Some(len))
    }
}

/// Coils as bytes, first coil in the least significant bit.
pub fn pack_bits(bits: &[bool]) -> Vec<u8> {
    bits.chunks(8)
        .map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .fold(0u8, |byte, (i, &on)| byte | (u8::from(on) << i))
        })
        .collect()
}

/// Every bit of `bytes`, least significant first.
pub fn unpack_bits(bytes: &[u8]) -> Vec<bool> {
    bytes
        .iter()
        .flat_map(|byte| (0..8).map(move |i| byte >> i & 1 == 1))
        .collect()
}

/// `01 03 00 0A` for logs and errors.
pub fn hex(bytes: &[u8]) -> Hex<'_> {
    Hex(bytes)
}

pub struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn read(table: Table, start: u16, count: u16) -> Operation {
        Operation::Read(Read {
            table,
            start,
            count,
        })
    }

    fn rtu(unit: u8, operation: &Operation) -> Vec<u8> {
        rtu_wrap(unit, &operation.encode())
    }

    #[test]
    fn rtu_requests_match_the_spec_vectors() {
        let cases = [
            (1, read(Table::Holding, 0, 10), "01 03 00 00 00 0A C5 CD"),
            (17, read(Table::Holding, 107, 3), "11 03 00 6B 00 03 76 87"),
            (
                1,
                Operation::Write(WriteRequest::SingleRegister {
                    address: 1,
                    value: 42,
                }),
                "01 06 00 01 00 2A 59 D5",
            ),
            (
                1,
                Operation::Write(WriteRequest::SingleCoil {
                    address: 1,
                    value: true,
                }),
                "01 05 00 01 FF 00 DD FA",
            ),
            (
                1,
                Operation::Write(WriteRequest::MultipleRegisters {
                    address: 2,
                    values: vec![10, 258],
                }),
                "01 10 00 02 00 02 04 00 0A 01 02 D2 25",
            ),
            (
                1,
                Operation::Write(WriteRequest::MultipleCoils {
                    address: 0,
                    values: vec![false, true, false, true],
                }),
                "01 0F 00 00 00 04 01 0A BE 91",
            ),
            (1, read(Table::Coil, 0, 8), "01 01 00 00 00 08 3D CC"),
            (
                1,
                read(Table::DiscreteInput, 0, 8),
                "01 02 00 00 00 08 79 CC",
            ),
            (1, read(Table::Input, 0, 2), "01 04 00 00 00 02 71 CB"),
        ];
        for (unit, operation, wire) in cases {
            assert_eq!(rtu(unit, &operation), bytes(wire), "{operation:?}");
        }
        assert_eq!(crc16(&bytes("01 83 02")).to_le_bytes(), [0xC0, 0xF1]);
    }

    #[test]
    fn tcp_requests_match_the_captured_vectors() {
        let header = |transaction| Mbap {
            transaction,
            unit: 1,
        };
        assert_eq!(
            tcp_wrap(header(1), &read(Table::Holding, 0, 10).encode()),
            bytes("00 01 00 00 00 06 01 03 00 00 00 0A")
        );
        let write = Operation::Write(WriteRequest::MultipleRegisters {
            address: 2,
            values: vec![10, 258],
        });
        assert_eq!(
            tcp_wrap(header(11), &write.encode()),
            bytes("00 0B 00 00 00 0B 01 10 00 02 00 02 04 00 0A 01 02")
        );
        let frame = bytes("00 0C 00 00 00 06 01 0F 00 00 00 04");
        let (mbap, pdu) = tcp_unwrap(&frame).unwrap();
        assert_eq!(mbap, header(12));
        assert_eq!(pdu, bytes("0F 00 00 00 04"));
    }

    fn expected(operation: Operation, transaction: u16) -> Expected {
        Expected {
            operation,
            unit: 1,
            transaction,
        }
    }

    #[test]
    fn tcp_replies_in_any_chunking() {
        let want = expected(read(Table::Input, 0, 2), 13);
        let reply = bytes("00 0D 00 00 00 07 01 04 04 00 C8 00 C9");
        for split in 0..reply.len() {
            let mut reader = Reader::new(Framing::Tcp);
            assert_eq!(reader.push(&reply[..split], &want), Ok(None), "{split}");
            assert_eq!(
                reader.push(&reply[split..], &want),
                Ok(Some(Reply::Data(plan::Response::Registers(vec![200, 201])))),
            );
            assert!(reader.is_empty());
        }
        let mut reader = Reader::new(Framing::Tcp);
        let exception = reader
            .push(
                &bytes("00 02 00 00 00 03 01 83 02"),
                &expected(read(Table::Holding, 200, 1), 2),
            )
            .unwrap();
        assert_eq!(
            exception,
            Some(Reply::Exception(Exception::IllegalDataAddress))
        );
        let written = Reader::new(Framing::Tcp)
            .push(
                &bytes("00 03 00 00 00 06 01 06 00 01 00 2A"),
                &expected(
                    Operation::Write(WriteRequest::SingleRegister {
                        address: 1,
                        value: 42,
                    }),
                    3,
                ),
            )
            .unwrap();
        assert_eq!(written, Some(Reply::Written));
    }

    #[test]
    fn tcp_errors() {
        let want = expected(read(Table::Input, 0, 2), 13);
        let push = |wire: &str| Reader::new(Framing::Tcp).push(&bytes(wire), &want);
        assert_eq!(
            push("00 0E 00 00 00 07 01 04 04 00 C8 00 C9"),
            Err(FrameError::WrongTransaction {
                expected: 13,
                got: 14
            })
        );
        assert_eq!(
            push("00 0D 00 00 00 07 02 04 04 00 C8 00 C9"),
            Err(FrameError::WrongUnit {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(
            push("00 0D 00 01 00 07 01 04 04 00 C8 00 C9"),
            Err(FrameError::WrongProtocol(1))
        );
        assert_eq!(
            push("00 0D 00 00 00 07 01 03 04 00 C8 00 C9"),
            Err(FrameError::WrongFunction {
                expected: 4,
                got: 3
            })
        );
        assert!(matches!(
            push("00 0D 00 00 00 05 01 04 02 00 C8"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            push("00 0D 00 00 01 00"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            push("00 0D 00 00 00 07 01 04 04 00 C8 00 C9 00"),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn rtu_replies_in_any_chunking() {
        let want = expected(read(Table::Holding, 0, 2), 0);
        let reply = bytes("01 03 04 00 64 00 2A 3A 33");
        for split in 0..reply.len() {
            let mut reader = Reader::new(Framing::Rtu);
            assert_eq!(reader.push(&reply[..split], &want), Ok(None), "{split}");
            assert_eq!(
                reader.push(&reply[split..], &want),
                Ok(Some(Reply::Data(plan::Response::Registers(vec![100, 42])))),
            );
        }
        let exception = Reader::new(Framing::Rtu)
            .push(&bytes("01 83 02 C0 F1"), &want)
            .unwrap();
        assert_eq!(
            exception,
            Some(Reply::Exception(Exception::IllegalDataAddress))
        );
        let coils = expected(read(Table::Coil, 0, 10), 0);
        let reply = rtu_wrap(1, &bytes("01 02 05 02"));
        assert_eq!(
            Reader::new(Framing::Rtu).push(&reply, &coils).unwrap(),
            Some(Reply::Data(plan::Response::Bits(vec![
                true, false, true, false, false, false, false, false, false, true
            ])))
        );
    }

    #[test]
    fn rtu_errors() {
        let want = expected(read(Table::Holding, 0, 2), 0);
        let push = |frame: &[u8]| Reader::new(Framing::Rtu).push(frame, &want);
        assert_eq!(
            push(&bytes("01 03 04 00 64 00 2A 3A 34")),
            Err(FrameError::BadCrc {
                computed: 0x333A,
                got: 0x343A
            })
        );
        assert_eq!(
            push(&rtu_wrap(2, &bytes("03 04 00 64 00 2A"))),
            Err(FrameError::WrongUnit {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(
            push(&rtu_wrap(1, &bytes("06 00 01 00 2A"))),
            Err(FrameError::WrongFunction {
                expected: 3,
                got: 6
            })
        );
        assert!(matches!(
            push(&bytes("01 03 06")),
            Err(FrameError::Malformed(m)) if m.contains("byte count 6")
        ));
        assert!(matches!(
            push(&bytes("01 2B 00")),
            Err(FrameError::Malformed(m)) if m.contains("unknown function code 43")
        ));
        assert!(matches!(
            push(&bytes("01 83 02 C0 F2")),
            Err(FrameError::BadCrc { .. })
        ));
        let echo = expected(
            Operation::Write(WriteRequest::SingleCoil {
                address: 1,
                value: true,
            }),
            0,
        );
        assert!(matches!(
            Reader::new(Framing::Rtu).push(&rtu_wrap(1, &bytes("05 00 02 FF 00")), &echo),
            Err(FrameError::Malformed(m)) if m.contains("echo")
        ));
        assert_eq!(
            Reader::new(Framing::Rtu).push(&bytes("01 05 00 01 FF 00 DD FA"), &echo),
            Ok(Some(Reply::Written))
        );
    }

    #[test]
    fn rtu_unwrap_checks_the_crc() {
        assert_eq!(
            rtu_unwrap(&bytes("11 03 00 6B 00 03 76 87")),
            Ok((17, &bytes("03 00 6B 00 03")[..]))
        );
        assert!(matches!(
            rtu_unwrap(&bytes("11 03 00 6B 00 03 87 76")),
            Err(FrameError::BadCrc { .. })
        ));
        assert!(matches!(
            rtu_unwrap(&bytes("11 03 00")),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn silence_is_three_and_a_half_characters() {
        let at_9600 = rtu_silence(9600);
        assert!(
            at_9600 > Duration::from_micros(4000) && at_9600 < Duration::from_micros(4020),
            "{at_9600:?}"
        );
        let at_19200 = rtu_silence(19200);
        assert!(
            at_19200 > Duration::from_micros(2000) && at_19200 < Duration::from_micros(2010),
            "{at_19200:?}"
        );
        assert_eq!(rtu_silence(38400), Duration::from_micros(1750));
        assert_eq!(rtu_silence(115200), Duration::from_micros(1750));
    }

    #[test]
    fn bits_pack_least_significant_first() {
        let bits = [true, false, true, true, false, false, false, false, true];
        assert_eq!(pack_bits(&bits), [0x0D, 0x01]);
        assert_eq!(&unpack_bits(&[0x0D, 0x01])[..9], bits);
    }
}
