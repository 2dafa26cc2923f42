//! Writes and exceptions: which function a write uses, as data for the transport to send,
//! and what a device's exception code means for the panel that asked.
//!
//! A write to one point is one request, except a flag in a holding register: Modbus has no
//! "write one bit of a register" in the functions we ship, so that takes a read of the
//! register, the bit changed, and the register written back ([`BitUpdate`]). That is not
//! atomic: the device or another master may change the register's other bits between
//! the read and the write. FC 22 (mask write register) would be, but few AV devices
//! implement it.

use serde_json::Value;

use crate::{DeviceError, DeviceErrorKind};

use super::codec::{self, Encoded};
use super::map::{Kind, MAX_COILS_PER_WRITE, MAX_REGISTERS_PER_WRITE, Point, Table};
use super::plan::Read;

/// One write request, by function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteRequest {
    /// FC 5: `FF00` on, `0000` off.
    SingleCoil { address: u16, value: bool },
    /// FC 15, at most 1968 coils.
    MultipleCoils { address: u16, values: Vec<bool> },
    /// FC 6.
    SingleRegister { address: u16, value: u16 },
    /// FC 16, at most 123 registers.
    MultipleRegisters { address: u16, values: Vec<u16> },
}

impl WriteRequest {
    /// FC 5 for one coil, FC 15 for several. `None` when empty or above the FC 15 limit.
    pub fn coils(address: u16, values: Vec<bool>) -> Option<WriteRequest> {
        match values.len() {
            0 => None,
            1 => Some(WriteRequest::SingleCoil {
                address,
                value: values[0],
            }),
            n if n <= usize::from(MAX_COILS_PER_WRITE) && fits(address, n) => {
                Some(WriteRequest::MultipleCoils { address, values })
            }
            _ => None,
        }
    }

    /// FC 6 for one register, FC 16 for several. `None` when empty or above the FC 16
    /// limit.
    pub fn registers(address: u16, values: Vec<u16>) -> Option<WriteRequest> {
        match values.len() {
            0 => None,
            1 => Some(WriteRequest::SingleRegister {
                address,
                value: values[0],
            }),
            n if n <= usize::from(MAX_REGISTERS_PER_WRITE) && fits(address, n) => {
                Some(WriteRequest::MultipleRegisters { address, values })
            }
            _ => None,
        }
    }

    pub fn function_code(&self) -> u8 {
        match self {
            WriteRequest::SingleCoil { .. } => 5,
            WriteRequest::MultipleCoils { .. } => 15,
            WriteRequest::SingleRegister { .. } => 6,
            WriteRequest::MultipleRegisters { .. } => 16,
        }
    }

    pub fn address(&self) -> u16 {
        match self {
            WriteRequest::SingleCoil { address, .. }
            | WriteRequest::MultipleCoils { address, .. }
            | WriteRequest::SingleRegister { address, .. }
            | WriteRequest::MultipleRegisters { address, .. } => *address,
        }
    }
}

/// Whether `count` addresses from `address` stay within the 16-bit address space.
fn fits(address: u16, count: usize) -> bool {
    usize::from(address) + count <= 65536
}

/// Setting or clearing one bit of a holding register, in two steps: send [`BitUpdate::read`],
/// then send the write [`BitUpdate::apply`] makes from the register's current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitUpdate {
    pub address: u16,
    /// 0 = least significant, of the register as the point decodes it.
    pub bit: u8,
    pub value: bool,
    /// Whether the point's order swaps the register's bytes (`BADC`, `DCBA`), so bit 0 is
    /// bit 8 on the wire.
    pub byte_swapped: bool,
}

impl BitUpdate {
    /// Step 1: read the register (FC 3, one register).
    pub fn read(&self) -> Read {
        Read {
            table: Table::Holding,
            start: self.address,
            count: 1,
        }
    }

    /// Step 2: the register with the bit changed, written back with FC 6. `current` is the
    /// register as read off the wire; every other bit goes back as it came.
    pub fn apply(&self, current: u16) -> WriteRequest {
        let mask = 1u16 << self.bit;
        let mask = if self.byte_swapped {
            mask.swap_bytes()
        } else {
            mask
        };
        let value = if self.value {
            current | mask
        } else {
            current & !mask
        };
        WriteRequest::SingleRegister {
            address: self.address,
            value,
        }
    }
}

/// What writing one point takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WritePlan {
    /// One request.
    Direct(WriteRequest),
    /// Read the register, change the bit, write it back (see [`BitUpdate`]).
    ReadModifyWrite(BitUpdate),
}

/// How to write `value` to `point`: checks the point is writable and the value fits, then
/// picks the function (FC 5 for a coil, FC 6 for one register, FC 16 for more, a
/// read-modify-write for a bit of a register).
pub fn plan_write(point: &Point, value: &Value) -> Result<WritePlan, DeviceError> {
    if !point.writable {
        return Err(DeviceError::new(
            DeviceErrorKind::Unsupported,
            format!("point `{}` is read-only", point.name),
        ));
    }
    let plan = match (codec::encode(point, value)?, point.kind) {
        (Encoded::Bit(value), Kind::Bit(bit)) => WritePlan::ReadModifyWrite(BitUpdate {
            address: point.address,
            bit,
            value,
            byte_swapped: point.order.swaps_bytes(),
        }),
        (Encoded::Bit(value), _) => WritePlan::Direct(WriteRequest::SingleCoil {
            address: point.address,
            value,
        }),
        (Encoded::Registers(values), _) => WritePlan::Direct(
            // Validation keeps writable points within one FC 16 write.
            WriteRequest::registers(point.address, values).ok_or_else(|| {
                DeviceError::new(
                    DeviceErrorKind::InvalidArgs,
                    format!("point `{}` is too wide for one write", point.name),
                )
            })?,
        ),
    };
    Ok(plan)
}

/// A Modbus exception code: the device understood the request and refused it.
///
/// Codes 07 and 09 are not in the current spec; 07 (negative acknowledge) survives from
/// Modicon programming functions and some devices still send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Exception {
    #[error("illegal function (01): the device does not support this request")]
    IllegalFunction,
    #[error(
        "illegal data address (02): the device has no such register or coil (check the register map and whether its addresses start at 0 or 1)"
    )]
    IllegalDataAddress,
    #[error("illegal data value (03): the device refused the value or the quantity")]
    IllegalDataValue,
    #[error("server device failure (04): the device failed while performing the request")]
    ServerDeviceFailure,
    #[error("acknowledge (05): the device accepted the request but has not finished it")]
    Acknowledge,
    #[error("server device busy (06): the device is busy, try again later")]
    ServerDeviceBusy,
    #[error("negative acknowledge (07): the device cannot perform the request")]
    NegativeAcknowledge,
    #[error("memory parity error (08): the device found corrupt memory")]
    MemoryParityError,
    #[error(
        "gateway path unavailable (0A): the gateway has no route to this unit id (check the unit id and the gateway's configuration)"
    )]
    GatewayPathUnavailable,
    #[error(
        "gateway target failed to respond (0B): nothing behind the gateway answered at this unit id (check the unit id, wiring and the device's power)"
    )]
    GatewayTargetFailedToRespond,
    /// A code the spec does not define.
    #[error("unknown exception code {0:02X}")]
    Other(u8),
}

impl Exception {
    /// The exception for a code from an exception response (the byte after `fc | 0x80`).
    pub fn from_code(code: u8) -> Exception {
        match code {
            0x01 => Exception::IllegalFunction,
            0x02 => Exception::IllegalDataAddress,
            0x03 => Exception::IllegalDataValue,
            0x04 => Exception::ServerDeviceFailure,
            0x05 => Exception::Acknowledge,
            0x06 => Exception::ServerDeviceBusy,
            0x07 => Exception::NegativeAcknowledge,
            0x08 => Exception::MemoryParityError,
            0x0A => Exception::GatewayPathUnavailable,
            0x0B => Exception::GatewayTargetFailedToRespond,
            other => Exception::Other(other),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Exception::IllegalFunction => 0x01,
            Exception::IllegalDataAddress => 0x02,
            Exception::IllegalDataValue => 0x03,
            Exception::ServerDeviceFailure => 0x04,
            Exception::Acknowledge => 0x05,
            Exception::ServerDeviceBusy => 0x06,
            Exception::NegativeAcknowledge => 0x07,
            Exception::MemoryParityError => 0x08,
            Exception::GatewayPathUnavailable => 0x0A,
            Exception::GatewayTargetFailedToRespond => 0x0B,
            Exception::Other(code) => code,
        }
    }

    /// What the panel is told: a function the device lacks is unsupported, an address or
    /// value it refuses is the caller's argument, busy is worth trying later, the rest
    /// is a failure.
    pub fn kind(self) -> DeviceErrorKind {
        match self {
            Exception::IllegalFunction => DeviceErrorKind::Unsupported,
            Exception::IllegalDataAddress | Exception::IllegalDataValue => {
                DeviceErrorKind::InvalidArgs
            }
            Exception::Acknowledge | Exception::ServerDeviceBusy => DeviceErrorKind::Busy,
            _ => DeviceErrorKind::Failed,
        }
    }

    /// Whether the caller should repeat the request after a backoff before giving up
    /// (only 06: the device said so itself).
    pub fn is_retryable(self) -> bool {
        self == Exception::ServerDeviceBusy
    }

    /// The error for a request, named as in logs (`write point `x``, `read holding
    /// 0..=9 (FC 3)`).
    pub fn device_error(self, request: &str) -> DeviceError {
        DeviceError::new(self.kind(), format!("{request}: modbus exception {self}"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::modbus::map::WordOrder;
    use serde_json::json;

    fn point(table: Table, address: u16, kind: Kind) -> Point {
        Point {
            name: "p".into(),
            table,
            address,
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

    fn direct(point: &Point, value: Value) -> WriteRequest {
        match plan_write(point, &value) {
            Ok(WritePlan::Direct(request)) => request,
            other => panic!("{value}: {other:?}"),
        }
    }

    #[test]
    fn coils_use_fc5() {
        let request = direct(&point(Table::Coil, 3, Kind::Bool), json!(true));
        assert_eq!(
            request,
            WriteRequest::SingleCoil {
                address: 3,
                value: true
            }
        );
        assert_eq!(request.function_code(), 5);
        assert_eq!(request.address(), 3);
    }

    #[test]
    fn one_register_uses_fc6_and_more_use_fc16() {
        let request = direct(&point(Table::Holding, 1, Kind::U16), json!(42));
        assert_eq!(
            request,
            WriteRequest::SingleRegister {
                address: 1,
                value: 42
            }
        );
        assert_eq!(request.function_code(), 6);
        let request = direct(&point(Table::Holding, 2, Kind::F32), json!(22.5));
        assert_eq!(
            request,
            WriteRequest::MultipleRegisters {
                address: 2,
                values: vec![0x41B4, 0]
            }
        );
        assert_eq!(request.function_code(), 16);
        let text = direct(
            &point(Table::Holding, 9, Kind::String { length: 1 }),
            json!("A"),
        );
        assert_eq!(text.function_code(), 6, "a one-register string is FC 6");
        assert_eq!(
            direct(&point(Table::Holding, 0, Kind::I64), json!(-1)).function_code(),
            16
        );
    }

    #[test]
    fn several_coils_or_registers_pick_the_multiple_functions() {
        let one = WriteRequest::coils(0, vec![true]).unwrap();
        assert_eq!(one.function_code(), 5);
        let four = WriteRequest::coils(0, vec![false, true, false, true]).unwrap();
        assert_eq!(four.function_code(), 15);
        assert!(WriteRequest::coils(0, vec![]).is_none());
        assert!(WriteRequest::coils(0, vec![true; 1969]).is_none());
        assert!(WriteRequest::coils(0, vec![true; 1968]).is_some());
        assert!(WriteRequest::coils(65535, vec![true; 2]).is_none());
        assert_eq!(
            WriteRequest::registers(7, vec![1]).unwrap().function_code(),
            6
        );
        assert_eq!(
            WriteRequest::registers(7, vec![1, 2])
                .unwrap()
                .function_code(),
            16
        );
        assert!(WriteRequest::registers(0, vec![0; 124]).is_none());
        assert!(WriteRequest::registers(0, vec![]).is_none());
    }

    #[test]
    fn bits_of_registers_are_read_modify_write() {
        let plan = plan_write(&point(Table::Holding, 12, Kind::Bit(3)), &json!(true)).unwrap();
        let WritePlan::ReadModifyWrite(update) = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(
            update,
            BitUpdate {
                address: 12,
                bit: 3,
                value: true,
                byte_swapped: false,
            }
        );
        assert_eq!(
            update.read(),
            Read {
                table: Table::Holding,
                start: 12,
                count: 1
            }
        );
        assert_eq!(update.read().function_code(), 3);
        let write = update.apply(0b0001);
        assert_eq!(
            write,
            WriteRequest::SingleRegister {
                address: 12,
                value: 0b1001
            }
        );
        assert_eq!(write.function_code(), 6);
        let clear = BitUpdate {
            value: false,
            ..update
        };
        assert_eq!(
            clear.apply(0xFFFF),
            WriteRequest::SingleRegister {
                address: 12,
                value: 0xFFF7
            }
        );
        // Byte-swapped registers: bit 3 of the value is bit 11 on the wire.
        assert_eq!(
            BitUpdate {
                byte_swapped: true,
                ..update
            }
            .apply(0),
            WriteRequest::SingleRegister {
                address: 12,
                value: 0x0800
            }
        );
    }

    #[test]
    fn writes_are_refused_with_the_right_kind() {
        let mut read_only = point(Table::Holding, 0, Kind::U16);
        read_only.writable = false;
        let error = plan_write(&read_only, &json!(1)).unwrap_err();
        assert_eq!(error.kind, DeviceErrorKind::Unsupported);
        assert!(error.message.contains("read-only"), "{error}");
        let error = plan_write(&point(Table::Holding, 0, Kind::U16), &json!(-1)).unwrap_err();
        assert_eq!(error.kind, DeviceErrorKind::InvalidArgs);
        assert!(error.message.contains("out of range"), "{error}");
        let error = plan_write(&point(Table::Coil, 0, Kind::Bool), &json!("on")).unwrap_err();
        assert_eq!(error.kind, DeviceErrorKind::InvalidArgs);
    }

    #[test]
    fn exceptions_map_to_error_kinds() {
        use DeviceErrorKind::*;
        let expected = [
            (1, Unsupported),
            (2, InvalidArgs),
            (3, InvalidArgs),
            (4, Failed),
            (5, Busy),
            (6, Busy),
            (7, Failed),
            (8, Failed),
            (9, Failed),
            (10, Failed),
            (11, Failed),
            (0x42, Failed),
        ];
        for (code, kind) in expected {
            let exception = Exception::from_code(code);
            assert_eq!(exception.code(), code);
            assert_eq!(exception.kind(), kind, "{exception}");
            assert_eq!(exception.is_retryable(), code == 6, "{exception}");
        }
        assert_eq!(Exception::from_code(9), Exception::Other(9));
        assert_eq!(
            Exception::from_code(0x0B),
            Exception::GatewayTargetFailedToRespond
        );
    }

    #[test]
    fn exception_messages_say_what_to_check() {
        let error = Exception::IllegalDataAddress.device_error("read holding 200..=200 (FC 3)");
        assert_eq!(error.kind, DeviceErrorKind::InvalidArgs);
        assert!(
            error.message.starts_with(
                "read holding 200..=200 (FC 3): modbus exception illegal data address (02)"
            ),
            "{error}"
        );
        assert!(
            Exception::GatewayPathUnavailable
                .to_string()
                .contains("unit id")
        );
        assert_eq!(
            Exception::Other(0x42).to_string(),
            "unknown exception code 42"
        );
        assert!(Exception::ServerDeviceBusy.to_string().contains("(06)"));
    }
}
