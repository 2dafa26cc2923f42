#!/usr/bin/env python3
"""Checks a Modbus device (our simulator) with the pymodbus 3.16.1 client, a Modbus stack
nobody on this project wrote, over Modbus TCP or Modbus RTU on a serial line (a pty).

The register layout (see tests/peer_pymodbus.rs, which builds the same map):

    coils 0..2           lamp, mute, fan
    holding 0..1         setpoint   f32  ABCD (big-endian)
    holding 2..3         gain       f32  CDAB (word-swapped)
    holding 4            level      u16
    holding 6..7         offset     i32  CDAB
    holding 8..9         position   i32  ABCD
    input 0..1           temperature f32 CDAB

Values are decoded and encoded with pymodbus' own helpers (convert_from_registers /
convert_to_registers), so our word orders are checked against an independent codec.

Prints `ok <check>` per passed check; exits non-zero with a message on the first failure.
Every request is bounded by the client's timeout, so a silent device fails the run.

    python modbus_client.py --tcp 127.0.0.1:5020
    python modbus_client.py --rtu /dev/pts/7
"""

import argparse
import sys

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.pdu import ExceptionResponse

# Bound on each request; the simulator answers in milliseconds.
REQUEST_TIMEOUT_S = 2.0
UNIT = 1
# Exception 02: the address is not one the device has.
ILLEGAL_DATA_ADDRESS = 2
# Beyond every table of the map.
UNMAPPED_ADDRESS = 200

DT = ModbusTcpClient.DATATYPE
BIG, LITTLE = "big", "little"  # pymodbus word orders: ABCD and CDAB

# What the Rust test sets before the run, and what this script writes.
INITIAL = {
    "coils": [True, False, False],
    "setpoint": 22.5,
    "gain": -1.25,
    "level": 1234,
    "offset": -123456,
    "position": 123456,
    "temperature": 21.5,
}
WRITTEN = {
    "coils": [False, True, True],
    "setpoint": 48.25,
    "gain": 0.5,
    "level": 4321,
    "offset": -7,
}


class CheckFailed(Exception):
    pass


def ok(check):
    print(f"ok {check}", flush=True)


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def answered(response, what):
    """The response, or a failure naming the request if the device refused it."""
    expect(not response.isError(), f"{what}: device answered {response}")
    return response


def read_coils(client):
    response = answered(client.read_coils(0, count=3, device_id=UNIT), "read coils 0..2")
    # pymodbus pads the bits to whole bytes.
    return list(response.bits[:3])


def read_holding(client):
    registers = answered(client.read_holding_registers(0, count=10, device_id=UNIT), "read holding 0..9").registers
    expect(len(registers) == 10, f"holding read returned {len(registers)} registers")
    return {
        "setpoint": client.convert_from_registers(registers[0:2], DT.FLOAT32, word_order=BIG),
        "gain": client.convert_from_registers(registers[2:4], DT.FLOAT32, word_order=LITTLE),
        "level": client.convert_from_registers(registers[4:5], DT.UINT16),
        "offset": client.convert_from_registers(registers[6:8], DT.INT32, word_order=LITTLE),
        "position": client.convert_from_registers(registers[8:10], DT.INT32, word_order=BIG),
    }


def expect_values(got, wanted, what):
    for name, value in wanted.items():
        expect(got[name] == value, f"{what}: {name} = {got[name]!r}, expected {value!r}")


def expect_illegal_address(response, what):
    expect(
        isinstance(response, ExceptionResponse) and response.exception_code == ILLEGAL_DATA_ADDRESS,
        f"{what}: expected exception 02 (illegal data address), got {response}",
    )


def run_checks(client):
    expect(client.connect(), "cannot connect")
    ok("connect")

    coils = read_coils(client)
    expect(coils == INITIAL["coils"], f"coils {coils}, expected {INITIAL['coils']}")
    ok(f"read coils {coils}")

    holding = read_holding(client)
    expect_values(holding, {k: v for k, v in INITIAL.items() if k in holding}, "initial holding")
    ok("read holding registers (f32 ABCD/CDAB, u16, i32 CDAB/ABCD)")

    inputs = answered(client.read_input_registers(0, count=2, device_id=UNIT), "read input 0..1").registers
    temperature = client.convert_from_registers(inputs, DT.FLOAT32, word_order=LITTLE)
    expect(temperature == INITIAL["temperature"], f"temperature {temperature}, expected {INITIAL['temperature']}")
    ok(f"read input registers (temperature {temperature})")

    # Single coil (FC 5), then several (FC 15).
    answered(client.write_coil(1, True, device_id=UNIT), "write coil 1")
    coils = read_coils(client)
    expect(coils == [True, True, False], f"coils after writing coil 1: {coils}")
    ok("write coil")
    answered(client.write_coils(0, WRITTEN["coils"], device_id=UNIT), "write coils 0..2")
    coils = read_coils(client)
    expect(coils == WRITTEN["coils"], f"coils after writing 0..2: {coils}, expected {WRITTEN['coils']}")
    ok("write coils")

    # Several registers (FC 16) per 32-bit value, one register (FC 6) for the u16.
    writes = [
        (0, client.convert_to_registers(WRITTEN["setpoint"], DT.FLOAT32, word_order=BIG)),
        (2, client.convert_to_registers(WRITTEN["gain"], DT.FLOAT32, word_order=LITTLE)),
        (6, client.convert_to_registers(WRITTEN["offset"], DT.INT32, word_order=LITTLE)),
    ]
    for address, registers in writes:
        answered(client.write_registers(address, registers, device_id=UNIT), f"write registers @{address}")
    answered(client.write_register(4, WRITTEN["level"], device_id=UNIT), "write register 4")
    holding = read_holding(client)
    expect_values(holding, {k: v for k, v in WRITTEN.items() if k in holding}, "holding after writes")
    expect(holding["position"] == INITIAL["position"], f"position changed to {holding['position']}")
    ok("write registers, read back")

    expect_illegal_address(
        client.read_holding_registers(UNMAPPED_ADDRESS, count=1, device_id=UNIT), "read unmapped holding"
    )
    expect_illegal_address(client.read_coils(UNMAPPED_ADDRESS, count=1, device_id=UNIT), "read unmapped coil")
    expect_illegal_address(
        client.write_register(UNMAPPED_ADDRESS, 1, device_id=UNIT), "write unmapped holding"
    )
    ok("unmapped addresses refused with exception 02")


def client_for(args):
    if args.tcp:
        host, port = args.tcp.rsplit(":", 1)
        return ModbusTcpClient(host, port=int(port), timeout=REQUEST_TIMEOUT_S, retries=0)
    # A pty ignores the line settings; 9600 8N1 is what a real line would use.
    return ModbusSerialClient(
        args.rtu, framer=FramerType.RTU, baudrate=9600, timeout=REQUEST_TIMEOUT_S, retries=0
    )


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    transport = parser.add_mutually_exclusive_group(required=True)
    transport.add_argument("--tcp", metavar="HOST:PORT", help="Modbus TCP server address")
    transport.add_argument("--rtu", metavar="PATH", help="serial device speaking Modbus RTU")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    modbus = client_for(arguments)
    try:
        run_checks(modbus)
    except CheckFailed as failure:
        sys.exit(f"FAIL pymodbus client: {failure}")
    except Exception as error:  # the library's own errors: connection, framing, timeout
        sys.exit(f"FAIL pymodbus client: {type(error).__name__}: {error}")
    finally:
        modbus.close()
