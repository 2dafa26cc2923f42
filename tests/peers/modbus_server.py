#!/usr/bin/env python3
"""A Modbus device served by pymodbus 3.16.1, a Modbus stack nobody on this project wrote,
for our Modbus driver to poll and write, over Modbus TCP or Modbus RTU on a pty.

Unit 1 holds (PDU addresses, 0-based):

    coils 0..1      power = True, mute = False
    holding 0..1    setpoint    f32 CDAB (word-swapped) = 22.5
    holding 2       level       u16 = 1234
    holding 4..5    offset      i32 ABCD (big-endian) = -123456
    input 0..1      temperature f32 CDAB = 21.5

Protocol on stdout, one line each:

    ready tcp 127.0.0.1:<port>      (--tcp: listening on a free port)
    ready rtu /dev/pts/<n>          (--rtu: the serial device to open)
    final {"coils": [...], "holding": [...], "input": [...]}

The device runs until stdin closes, then prints the raw table contents (what the driver's
writes left behind) as JSON and exits. A hard deadline stops it if stdin never closes.

For RTU the script makes a null-modem cable out of two pseudo-terminals: pymodbus opens
the device end of one, the gateway the device end of the other, and the script copies
bytes between their controlling ends (as `socat PTY PTY` would).

    python modbus_server.py --tcp
    python modbus_server.py --rtu
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import tty

from pymodbus import FramerType
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

UNIT = 1
# The server stops on its own after this long, in case the test never closes stdin.
LIFETIME_LIMIT_S = 60.0
# Table sizes; the map above fits with room to spare, so reads spanning gaps succeed.
COILS, HOLDING, INPUT = 8, 10, 4

DT = ModbusClientMixin.DATATYPE


def initial_tables():
    holding = [0] * HOLDING
    holding[0:2] = ModbusClientMixin.convert_to_registers(22.5, DT.FLOAT32, word_order="little")
    holding[2] = 1234
    holding[4:6] = ModbusClientMixin.convert_to_registers(-123456, DT.INT32, word_order="big")
    inputs = [0] * INPUT
    inputs[0:2] = ModbusClientMixin.convert_to_registers(21.5, DT.FLOAT32, word_order="little")
    coils = [False] * COILS
    coils[0] = True
    return coils, holding, inputs


def context():
    coils, holding, inputs = initial_tables()
    # pymodbus 3.16.1 offsets a block's address by one: a block at 1 serves PDU address 0
    # (PROTOCOLS.md §3.7).
    device = ModbusDeviceContext(
        co=ModbusSequentialDataBlock(1, coils),
        hr=ModbusSequentialDataBlock(1, holding),
        ir=ModbusSequentialDataBlock(1, inputs),
    )
    return ModbusServerContext(devices={UNIT: device}, single=False)


class NullModem:
    """Two pseudo-terminals whose controlling ends are joined, so two programs that each
    open a serial device path talk to each other."""

    def __init__(self):
        self.ends = []
        for _ in range(2):
            controller, device = os.openpty()
            # Raw both ways: no echo, no CR/LF translation, every byte passed through.
            tty.setraw(device)
            # Keeping the device end open here keeps the controlling end readable (no
            # EIO) while the other program has not opened it yet.
            self.ends.append((controller, device, os.ttyname(device)))

    def path(self, index):
        return self.ends[index][2]

    def start(self, loop):
        (first, _, _), (second, _, _) = self.ends
        loop.add_reader(first, self._copy, first, second)
        loop.add_reader(second, self._copy, second, first)

    @staticmethod
    def _copy(source, target):
        data = os.read(source, 4096)
        if data:
            os.write(target, data)


async def read_tables(server):
    async def values(function_code, count):
        return list(await server.async_getValues(UNIT, function_code, 0, count))

    return {
        "coils": [bool(bit) for bit in await values(1, COILS)],
        "holding": await values(3, HOLDING),
        "input": await values(4, INPUT),
    }


async def until_stdin_closes():
    """Reads (and discards) stdin until EOF; stdin carries no commands, only the test's
    "done" signal. Read through the event loop so the lifetime deadline can cancel it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def serve(args):
    loop = asyncio.get_running_loop()
    if args.tcp:
        server = ModbusTcpServer(context(), framer=FramerType.SOCKET, address=("127.0.0.1", 0))
        await server.serve_forever(background=True)
        host, port = server.transport.sockets[0].getsockname()[:2]
        ready = f"ready tcp {host}:{port}"
    else:
        cable = NullModem()
        cable.start(loop)
        server = ModbusSerialServer(
            context(), framer=FramerType.RTU, port=cable.path(0), baudrate=9600
        )
        await server.serve_forever(background=True)
        ready = f"ready rtu {cable.path(1)}"
    print(ready, flush=True)
    try:
        await asyncio.wait_for(until_stdin_closes(), LIFETIME_LIMIT_S)
    finally:
        tables = await read_tables(server)
        await server.shutdown()
    print("final " + json.dumps(tables), flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    transport = parser.add_mutually_exclusive_group(required=True)
    transport.add_argument("--tcp", action="store_true", help="Modbus TCP on 127.0.0.1, a free port")
    transport.add_argument("--rtu", action="store_true", help="Modbus RTU on a new pseudo-terminal")
    return parser.parse_args()


if __name__ == "__main__":
    # pymodbus logs deprecation warnings for the datastore classes; keep stderr for errors.
    logging.getLogger("pymodbus").setLevel(logging.ERROR)
    arguments = parse_args()
    try:
        asyncio.run(serve(arguments))
    except asyncio.TimeoutError:
        sys.exit(f"FAIL pymodbus server: stdin still open after {LIFETIME_LIMIT_S} s")
