#!/usr/bin/env python3
"""Checks a PJLink projector (our simulator) with aiopjlink 1.0.5, a client nobody on
this project wrote.

Prints `ok <check>` per passed check; exits non-zero with a message on the first failure.
Every wait is bounded, so a broken simulator fails the run instead of hanging it.

    python pjlink_aiopjlink.py --host 127.0.0.1 --port 14352 --password secret --expect-class 1
"""

import argparse
import asyncio
import sys

from aiopjlink import PJLink, Power, Sources
from aiopjlink.projector import PJClass, PJLinkPassword

# How long the projector may take to warm up before the check fails.
WARM_UP_LIMIT_S = 15.0
# Bound on any single check, on top of aiopjlink's own per-read timeout.
CHECK_LIMIT_S = 10.0


class CheckFailed(Exception):
    pass


def ok(check):
    print(f"ok {check}", flush=True)


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


async def wait_until_on(link):
    """Polls POWR until the projector reports on, through its warm-up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WARM_UP_LIMIT_S
    while True:
        state = await link.power.get()
        if state == Power.State.ON:
            return
        expect(
            state in (Power.State.WARMING, Power.State.OFF),
            f"unexpected power state while warming up: {state}",
        )
        expect(loop.time() < deadline, f"projector not on after {WARM_UP_LIMIT_S} s (last state {state})")
        await asyncio.sleep(0.1)


async def run_checks(args):
    mode, index = Sources.Mode(args.input[0]), args.input[1]
    async with PJLink(address=args.host, port=args.port, password=args.password, timeout=4) as link:
        ok("connect" + (" with password" if args.password else ""))

        state = await link.power.get()
        expect(isinstance(state, Power.State), f"power query gave {state!r}")
        ok(f"power query ({state.name.lower()})")

        await link.power.turn_on()
        ok("power on")

        await wait_until_on(link)
        ok("power reached on")

        await link.sources.set(mode, index)
        ok(f"input set {args.input}")

        got = await link.sources.get()
        expect(got == (mode, index), f"input read back {got}, expected {(mode, index)}")
        ok(f"input read back {args.input}")

        hours = await link.lamps.hours()
        expect(isinstance(hours, int) and hours >= 0, f"lamp hours {hours!r}")
        ok(f"lamp hours ({hours})")

        errors = await link.errors.query()
        expect(len(errors) == 6, f"error status has {len(errors)} categories, expected 6")
        ok("error status (" + ", ".join(f"{c.value}={lvl.name.lower()}" for c, lvl in errors.items()) + ")")

        pjclass = await link.info.pjlink_class()
        expected = PJClass(str(args.expect_class))
        expect(pjclass == expected, f"class {pjclass}, expected {expected}")
        ok(f"class {pjclass.value}")

        if expected == PJClass.TWO:
            serial = await link.info.serial_number()
            expect(serial != "", "empty serial number")
            ok(f"class 2 serial number ({serial})")


async def check_wrong_password(args):
    """A wrong password must make aiopjlink raise its password error (PJLINK ERRA)."""
    try:
        async with PJLink(address=args.host, port=args.port, password=args.password + "-wrong", timeout=4):
            pass
    except PJLinkPassword:
        ok("wrong password rejected")
        return
    raise CheckFailed("a wrong password was accepted")


async def main(args):
    await asyncio.wait_for(run_checks(args), CHECK_LIMIT_S + WARM_UP_LIMIT_S)
    if args.password is not None:
        await asyncio.wait_for(check_wrong_password(args), CHECK_LIMIT_S)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--password", help="projector password; also checks that a wrong one is refused")
    parser.add_argument("--expect-class", type=int, choices=(1, 2), required=True)
    parser.add_argument("--input", default="32", help="input code to select, e.g. 32 (type digit + index)")
    args = parser.parse_args()
    if len(args.input) != 2 or args.input[0] not in "123456":
        parser.error(f"--input {args.input!r} is not a PJLink input code like 32")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    try:
        asyncio.run(main(arguments))
    except CheckFailed as failure:
        sys.exit(f"FAIL aiopjlink peer: {failure}")
    except asyncio.TimeoutError:
        sys.exit("FAIL aiopjlink peer: a check did not finish in time")
    except Exception as error:  # the library's own errors: protocol, ERRn, connection
        sys.exit(f"FAIL aiopjlink peer: {type(error).__name__}: {error}")
